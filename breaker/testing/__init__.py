"""Helpers for testing code that uses breaker: a fake clock and a way to force states."""

from breaker._engine import Breaker
from breaker._state import State
from breaker.testing._clock import FakeClock


def force_state(brk: Breaker, state: State | str) -> None:
    """Move ``brk`` to ``state`` now (an open breaker's timeout starts at this moment)."""
    brk._force(State(state))


__all__ = ["FakeClock", "force_state"]
