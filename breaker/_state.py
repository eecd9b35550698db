"""Breaker states, state-change events and the error a rejected call raises."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs


class State(str, enum.Enum):
    """The state of a breaker; compares equal to its string value ("closed", ...)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class StateChange:
    """A breaker moved from one state to another; passed to state-change listeners."""

    service_name: str
    breaker: str
    old: State
    new: State


class BreakerOpenError(Exception):
    """Raise when a breaker rejects a call without running it.

    ``retry_after`` is the number of seconds until the breaker admits a trial call
    again (an HTTP layer can send it as Retry-After); 0.0 when that is now.
    """

    # Rejection is the hot path of an outage: the attributes read the exception's args,
    # so raising one costs no Python-level __init__.
    if TYPE_CHECKING:

        def __init__(self, name: str, state: State, retry_after: float) -> None: ...

    @property
    def name(self) -> str:
        """Return the name of the breaker that rejected the call."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def state(self) -> State:
        """Return the breaker's state when it rejected the call."""
        return self.args[1]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float:
        """Return the seconds until the breaker admits a trial call again."""
        return self.args[2]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        if self.state is State.HALF_OPEN:
            what = "is half-open and its trial calls are under way"
        else:
            what = "is open"
        return f"breaker {self.name!r} {what}; retry in {self.retry_after:.3f}s"


ErrBreakerOpen = BreakerOpenError
"""The seed contract's name for `BreakerOpenError` (the same class)."""
