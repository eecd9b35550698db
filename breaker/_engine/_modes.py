"""The mode layer: an operator's mode, and when it ends.

A policy's ``mode`` says who decides whether calls run (see `Mode`); its ``modeUntil`` is an
instant on the wall clock that an operator wrote. A mode ends when the wall clock, read
each time the mode is checked, passes ``modeUntil``, or when a monotonic deadline fixed
when the mode was adopted passes, whichever comes first: a wall clock that jumps forward
ends the mode early, never late, and one that steps back cannot prolong it. A mode that
ended stays ended: adopting the same (mode, modeUntil) again does not bring it back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from breaker._policy import Policy, format_timestamp
from breaker._state import Mode

_log = logging.getLogger("breaker.state")

Clock = Callable[[], float]


class ModeEnd:
    """When a mode ends: a monotonic ``deadline`` or the wall clock at ``until``, if sooner."""

    __slots__ = ("deadline", "mode", "until", "wall", "when")

    def __init__(self, mode: Mode, when: datetime, deadline: float, wall: Clock) -> None:
        self.mode = mode
        self.when = when
        self.until = when.timestamp()
        self.deadline = deadline
        self.wall = wall

    def passed(self, now: float) -> bool:
        """Return whether the mode is over (``now`` is a monotonic reading)."""
        return now >= self.deadline or self.wall() >= self.until

    def remaining(self, now: float) -> float:
        """Return the seconds until the mode ends, by whichever clock ends it first."""
        return max(min(self.deadline - now, self.until - self.wall()), 0.0)

    def same(self, policy: Policy) -> bool:
        """Return whether ``policy`` sets the very mode and instant this one ends."""
        return policy.mode is self.mode and policy.mode_until == self.when


def mode_end(policy: Policy, now: float, wall: Clock, deadline: float | None) -> ModeEnd | None:
    """Return when ``policy``'s mode ends, or None if it has no end (or is auto).

    ``deadline`` is the monotonic deadline the provider fixed when the document setting the
    mode was first adopted; without one it is derived from the wall clock now.
    """
    when = policy.mode_until
    if policy.mode is Mode.AUTO or when is None:
        return None
    if deadline is None:
        deadline = now + (when.timestamp() - wall())
    return ModeEnd(policy.mode, when, deadline, wall)


def log_change(name: str, old: Mode, new: Mode) -> None:
    level = logging.WARNING if new is Mode.FORCED_OPEN or new is Mode.DISABLED else logging.INFO
    _log.log(level, "breaker %r: mode %s -> %s", name, old.value, new.value)


def log_expiry(name: str, end: ModeEnd) -> None:
    _log.warning(
        "breaker %r: mode %s expired (modeUntil %s); back to auto",
        name,
        end.mode.value,
        format_timestamp(end.when),
    )
