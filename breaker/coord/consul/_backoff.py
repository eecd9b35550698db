"""How long the watcher waits after failed reads: a pure function, so tests need no clock."""

from __future__ import annotations

__all__ = ["BACKOFF_CAP", "BACKOFF_FIRST", "GROWTH", "RETRY_AFTER_CAP", "backoff"]

BACKOFF_FIRST = 1.0
"""The first retry comes within this many seconds of the first failure."""
BACKOFF_CAP = 30.0
"""No pause is longer than this, however long Consul has been away."""
GROWTH = 1.5
"""Each pause's ceiling is this many times the last one's.

With pauses jittered between half and all of the ceiling, a ceiling never exceeds the
shortest possible sum of the pauses before it plus ``first``: so after an outage of T
seconds the next attempt comes within min(T + first, cap) of Consul answering again.
Doubling (the usual choice) allows twice the outage.
"""
RETRY_AFTER_CAP = 30.0
"""A server's Retry-After is honoured up to this many seconds (or ``cap``, if larger)."""


def backoff(
    failures: int,
    first: float,
    cap: float,
    random: float,
    retry_after: float | None = None,
) -> float:
    """Return the pause after ``failures`` earlier consecutive failures (0 for the first).

    ``random`` is a number in [0, 1) that picks the pause between half of the ceiling and
    all of it (jitter, so that processes that lost Consul together do not return together).
    """
    ceiling = min(cap, first * GROWTH ** min(failures, 200))
    delay = ceiling * (0.5 + random / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(cap, RETRY_AFTER_CAP)))
    return delay
