"""Breaker states, policy modes, state-change events and call statistics."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs


class State(str, enum.Enum):
    """The state of a breaker; compares equal to its string value ("closed", ...)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"

    def __str__(self) -> str:
        return self.value


class Mode(str, enum.Enum):
    """Who decides whether calls run: the state machine, or an operator through the policy.

    ``auto``: the state machine decides. ``forced-open``: every call is rejected (a kill
    switch). ``disabled``: every call runs and the breaker never trips. ``shadow``: the
    state machine runs and reports as usual, but no call is ever rejected (a dry run).
    """

    AUTO = "auto"
    FORCED_OPEN = "forced-open"
    DISABLED = "disabled"
    SHADOW = "shadow"

    def __str__(self) -> str:
        return self.value


class Outcome(str, enum.Enum):
    """How a call through a breaker ended, as counted in `Stats`.

    Failures of the downstream: ``failure``, ``slow``, ``timeout``. Rejections, calls that
    never ran: ``rejected`` (the breaker was open), ``bulkhead_full`` (too many calls in
    flight). Neither: ``success``, ``excluded`` (an error that means the downstream
    answered), ``cancelled`` (ended by a BaseException).
    """

    SUCCESS = "success"
    FAILURE = "failure"
    SLOW = "slow"
    TIMEOUT = "timeout"
    EXCLUDED = "excluded"
    REJECTED = "rejected"
    BULKHEAD_FULL = "bulkhead_full"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class StateChange:
    """A breaker moved from one state to another; passed to state-change listeners."""

    service_name: str
    breaker: str
    old: State
    new: State


@attrs.frozen
class Stats:
    """What a breaker counted since it was created.

    ``calls`` maps each `Outcome` value to a count; every call that ended has exactly one
    outcome (``slow`` and ``timeout`` calls count as failures for the state machine;
    ``excluded`` errors as successes; ``cancelled`` calls, ended by a BaseException, as
    neither). ``transitions`` maps ``(old, new)`` state pairs to how often the breaker
    moved so. ``in_flight`` is how many admitted calls have not ended yet.
    """

    calls: Mapping[str, int]
    transitions: Mapping[tuple[str, str], int]
    in_flight: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable form, transitions keyed ``"closed->open"``."""
        return {
            "calls": dict(self.calls),
            "transitions": {f"{old}->{new}": n for (old, new), n in self.transitions.items()},
            "in_flight": self.in_flight,
        }
