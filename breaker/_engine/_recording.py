"""Outcome recording: what counts as a failure, the failure-rate window, the timed lane.

A call ends in one `Outcome`. `Exclusions` decide which errors mean the downstream
answered (they count as successes). The `Window` keeps the calls and failures (and, of
those, the slow calls) that ended over the last ``rateWindow``. A `Lane` is what the fast
path needs to time a call and to notice that a success no longer belongs to the window's
current bucket.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, cast

from breaker._engine._machine import Era
from breaker._policy import Policy

_log = logging.getLogger("breaker.state")

BUCKETS = 10  # a rate window is kept in this many buckets


class Exclusions:
    """Exception types and predicates whose matches count as success (the downstream answered)."""

    __slots__ = ("predicates", "types")

    def __init__(self, items: Iterable[type[BaseException] | Callable[[BaseException], bool]]):
        types: list[type[BaseException]] = []
        predicates: list[Callable[[BaseException], bool]] = []
        for item in items:
            if isinstance(item, type) and issubclass(item, BaseException):
                types.append(item)
            elif callable(item):
                predicates.append(cast("Callable[[BaseException], bool]", item))
            else:
                raise TypeError(f"exclude: expected exception types or predicates, got {item!r}")
        self.types = tuple(types)
        self.predicates = tuple(predicates)

    def matches(self, exc: BaseException) -> bool:
        """Return whether ``exc`` is excluded; a predicate that raises excludes nothing."""
        if isinstance(exc, self.types):
            return True
        for predicate in self.predicates:
            try:
                if predicate(exc):
                    return True
            except Exception:
                _log.exception("exclude predicate %r raised; counting the error", predicate)
        return False


def exclusions(
    items: Iterable[type[BaseException] | Callable[[BaseException], bool]],
) -> Exclusions | None:
    """Return the Exclusions for ``items``, or None when there are none."""
    if isinstance(items, (tuple, list)) and not items:
        return None
    built = Exclusions(items)
    return built if built.types or built.predicates else None


def judge(failure_if: Callable[[Any], object], result: object) -> bool:
    """Return whether ``failure_if`` calls ``result`` a failure; one that raises says yes."""
    try:
        return bool(failure_if(result))
    except Exception:
        _log.exception("failure_if %r raised; counting the call as a failure", failure_if)
        return True


class Window:
    """Calls and failures that ended over the last ``length`` seconds, in buckets.

    Buckets lie on a fixed grid of a tenth of the window, and a bucket counts while any
    of it is inside the window, so the window reaches back up to a tenth further than
    ``length``. ``end`` is where the current bucket ends. Successes the fast path counted
    (the breaker's success count beyond ``seen``) are folded into the current bucket at
    its end by the ticker, or earlier by any call the breaker settles itself.
    """

    __slots__ = ("buckets", "calls", "end", "failures", "length", "seen", "slow", "width")

    def __init__(self, length: float, now: float, seen: int) -> None:
        self.buckets: deque[list[float]] = deque()  # [end, calls, failures, slow], oldest first
        self.calls = 0
        self.failures = 0
        self.slow = 0  # of the failures, the slow calls (for metrics)
        self.length = length
        self.width = length / BUCKETS
        self.end = self._grid_end(now)
        self.seen = seen

    def _grid_end(self, now: float) -> float:
        end = (math.floor(now / self.width) + 1) * self.width
        if self.buckets and self.buckets[-1][0] > end:  # after a resize
            return self.buckets[-1][0]
        return end

    def fold(self, ok: int, now: float) -> None:
        """Put the successes counted since the last fold in the current bucket; go on to ``now``."""
        pending = ok - self.seen
        if pending > 0:
            self.seen = ok
            self._add(pending, 0)
        if now >= self.end:
            self.end = self._grid_end(now)
        self._expire(now)

    def record(self, ok: int, now: float, calls: int, failures: int, slow: int = 0) -> None:
        """Count calls that ended at ``now`` (successes counted so far go before them)."""
        self.fold(ok, now)
        self._add(calls, failures, slow)

    def exceeded(self, policy: Policy) -> bool:
        """Return whether the failure rate trips the breaker (as of the last fold)."""
        if not self.failures or self.calls < policy.minimum_calls:
            return False
        return self.failures / self.calls >= cast(float, policy.failure_rate)

    def resize(self, length: float, ok: int, now: float) -> None:
        """Adopt a new length; buckets already counted keep their place."""
        self.fold(ok, now)
        self.length = length
        self.width = length / BUCKETS
        self.end = self._grid_end(now)
        self._expire(now)

    def clear(self, ok: int, now: float) -> None:
        """Forget every call (the breaker closed): start from the current success count."""
        self.buckets.clear()
        self.calls = self.failures = self.slow = 0
        self.seen = ok
        self.end = self._grid_end(now)

    def _add(self, calls: int, failures: int, slow: int = 0) -> None:
        buckets = self.buckets
        if buckets and buckets[-1][0] == self.end:
            last = buckets[-1]
            last[1] += calls
            last[2] += failures
            last[3] += slow
        else:
            buckets.append([self.end, calls, failures, slow])
        self.calls += calls
        self.failures += failures
        self.slow += slow

    def _expire(self, now: float) -> None:
        buckets = self.buckets
        horizon = now - self.length
        while buckets and buckets[0][0] <= horizon:
            _, calls, failures, slow = buckets.popleft()
            self.calls -= int(calls)
            self.failures -= int(failures)
            self.slow -= int(slow)


class Lane:
    """A closed era as the fast path sees it when calls need more than counting.

    A call is admitted at once while fewer than ``limit`` are in flight (0: no limit);
    ``clocked`` says its start is read; a success counts at once if it took at most
    ``slow`` seconds.
    ``timeout`` is an async call's timeout: positive, enforced; negative, measured only
    (mode shadow); None, none.

    A clocked lane is also a slice of time for spotting hung calls: it admits calls that
    start before ``end`` and counts those in flight (``n``). Once ``end + slow`` has
    passed, every call it still counts has run longer than ``slow``: the breaker counts
    them slow (``hung``) while they hang. ``until`` is the earlier of ``end`` and the
    breaker's next such moment: a call that starts or succeeds after it goes the slow
    way, which looks.
    """

    __slots__ = ("clocked", "end", "era", "hung", "limit", "n", "slow", "timeout", "until")

    def __init__(
        self,
        era: Era,
        slow: float,
        limit: int,
        timeout: float | None,
        clocked: bool,
        end: float,
    ) -> None:
        self.era = era
        self.slow = slow
        self.limit = limit
        self.timeout = timeout
        self.clocked = clocked
        self.end = end
        self.until = end
        self.n = 0
        self.hung = False

    def fits(self, era: Era, slow: float, limit: int, timeout: float | None) -> bool:
        """Return whether this lane still describes ``era`` with these settings."""
        return (
            self.era is era
            and self.slow == slow
            and self.limit == limit
            and self.timeout == timeout
        )
