"""Breaker states and state-change events."""

from __future__ import annotations

import enum

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
