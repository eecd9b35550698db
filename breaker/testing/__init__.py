"""Helpers for testing code that uses breaker: a Consul-compatible server, a fake clock, states."""

from breaker._engine import Breaker
from breaker._policy import Policy
from breaker._state import State
from breaker.testing._clock import FakeClock
from breaker.testing._proxy import FaultProxy
from breaker.testing._server import ACLRule, ConsulServer


def force_state(brk: Breaker, state: State | str) -> None:
    """Move ``brk`` to ``state`` now (an open breaker's timeout starts at this moment)."""
    brk._force(State(state))


def adopt(brk: Breaker, policy: Policy) -> None:
    """Make ``brk`` use ``policy`` now, as its provider does when its document changes."""
    brk._adopt(policy)


__all__ = ["ACLRule", "ConsulServer", "FakeClock", "FaultProxy", "adopt", "force_state"]
