"""The ticker: what time alone makes due, done off the call path.

Successes on the plain lane count without reading the clock. A failure-rate window learns
where they belong when its bucket ends: at each bucket boundary the ticker folds every
window's new successes into the bucket that just ended (within the thread's wake-up
latency; a failure folds them at once, with its own clock reading). A call that hangs
counts as slow once it has run past slowCallDuration: with no traffic to notice it, the
ticker does, an eighth of slowCallDuration late at most. A ticker runs a daemon thread
only while some breaker of its provider needs one, and stops when the provider closes;
after that, breakers notice what is due when calls come.

Under a clock that runs timers itself when a test advances it (`breaker.testing.FakeClock`
offers ``on_advance``), the ticker runs in the advancing thread instead: no thread, and
tests stay deterministic.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from breaker._engine._breaker import Breaker

Clock = Callable[[], float]
_SLACK = 0.001  # waking a little late keeps a boundary's float rounding from spinning


def _boundary(now: float, width: float) -> int:
    """Return the index of the last bucket boundary at or before ``now``."""
    return math.floor(now / width + 1e-9)


class Ticker:
    """Call ``Breaker._tick`` on breakers every ``width`` seconds they asked for, on a grid."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._groups: dict[float, weakref.WeakSet[Breaker]] = {}  # by bucket width
        self._done: dict[float, int] = {}  # the last boundary ticked (its index), by width
        self._thread: threading.Thread | None = None
        self._closed = False
        on_advance = getattr(clock, "on_advance", None)
        self._driven = on_advance is not None
        if on_advance is not None:
            on_advance(self.run_due)

    def add(self, brk: Breaker, width: float) -> None:
        """Tick ``brk`` every ``width`` seconds, at multiples of ``width``."""
        with self._lock:
            group = self._groups.get(width)
            if group is None:
                group = self._groups[width] = weakref.WeakSet()
                self._done[width] = _boundary(self._clock(), width)
            group.add(brk)
            if self._closed or self._driven:
                return
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="breaker-ticker", daemon=True
                )
                self._thread.start()
            else:
                self._wake.notify()

    def discard(self, brk: Breaker, width: float) -> None:
        """Stop ticking ``brk`` every ``width`` seconds."""
        with self._lock:
            group = self._groups.get(width)
            if group is not None:
                group.discard(brk)
                if not group:
                    del self._groups[width], self._done[width]

    def run_due(self) -> None:
        """Tick every breaker whose bucket ended since it was last ticked."""
        now = self._clock()
        due: list[Breaker] = []
        with self._lock:
            for width, group in self._groups.items():
                boundary = _boundary(now, width)
                if boundary > self._done[width]:
                    self._done[width] = boundary
                    due.extend(group)
        for brk in dict.fromkeys(due):  # once each, though it asked for two periods
            brk._tick(now)

    def close(self) -> None:
        """Stop the thread (the provider closed); breakers keep working without it."""
        with self._lock:
            self._closed = True
            self._groups.clear()
            self._done.clear()
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    def _next_due(self) -> float | None:
        dues = [(done + 1) * width for width, done in self._done.items()]
        return min(dues) if dues else None

    def _run(self) -> None:
        while True:
            with self._lock:
                while True:
                    due = self._next_due()
                    if self._closed or due is None:
                        self._thread = None
                        return
                    delay = due - self._clock()
                    if delay <= 0:
                        break
                    self._wake.wait(delay + _SLACK)
            self.run_due()

    # -- fork -------------------------------------------------------------------------------------

    def lock_for_fork(self) -> None:
        self._lock.acquire()

    def unlock_after_fork(self) -> None:
        self._lock.release()

    def reset_after_fork(self) -> None:  # pragma: no cover - runs in a forked child
        """Give the child fresh locks and, if windows need it, a thread of its own."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread = None
        if self._groups and not self._closed and not self._driven:
            self._thread = threading.Thread(target=self._run, name="breaker-ticker", daemon=True)
            self._thread.start()
