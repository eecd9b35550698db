"""Helpers for testing code that uses breaker: a fake clock, states, a Consul-compatible server.

`FakeClock`, `force_state` and `adopt` are light. `ConsulServer`, `ACLRule` and
`FaultProxy` (an HTTP server and a TCP proxy, with the socket, ssl and http.server
modules they need) load on first use, so a test that only needs a clock pays for none.
"""

from __future__ import annotations

import importlib
import typing

from breaker._engine import Breaker
from breaker._policy import Policy
from breaker._state import State
from breaker.testing._clock import FakeClock

if typing.TYPE_CHECKING:
    from breaker.testing._proxy import FaultProxy
    from breaker.testing._server import ACLRule, ConsulServer

__all__ = ["ACLRule", "ConsulServer", "FakeClock", "FaultProxy", "adopt", "force_state"]

_LAZY = {
    "ACLRule": "breaker.testing._server",
    "ConsulServer": "breaker.testing._server",
    "FaultProxy": "breaker.testing._proxy",
}


def force_state(brk: Breaker, state: State | str) -> None:
    """Move ``brk`` to ``state`` now (an open breaker's timeout starts at this moment)."""
    brk._force(State(state))


def adopt(brk: Breaker, policy: Policy) -> None:
    """Make ``brk`` use ``policy`` now, as its provider does when its document changes."""
    brk._adopt(policy)


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
