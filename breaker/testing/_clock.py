"""A clock for tests: time moves only when the test says so."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timezone

_WALL_START = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()


class FakeClock:
    """A monotonic clock that only moves when `advance` is called; pass it as ``new(clock=...)``.

    `wall` is a matching wall clock (Unix time, starting at 2026-01-01T00:00:00Z), for
    ``new(wall_clock=clock.wall)``, so a policy's ``modeUntil`` expires on this clock too.
    Work the engine does on a timer (rate windows, hung calls) runs when `advance` is
    called, in the calling thread.
    """

    def __init__(self, start: float = 1000.0, *, wall_start: float = _WALL_START) -> None:
        self._start = start
        self._now = start
        self._wall_start = wall_start
        self._lock = threading.Lock()
        self._on_advance: list[weakref.WeakMethod[Callable[[], None]]] = []

    def __call__(self) -> float:
        return self._now

    def wall(self) -> float:
        """Return the wall-clock time (Unix seconds) that goes with the current reading."""
        return self._wall_start + (self._now - self._start)

    def datetime(self) -> datetime:
        """Return `wall` as an aware UTC datetime (handy for ``modeUntil``)."""
        return datetime.fromtimestamp(self.wall(), timezone.utc)

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (negative: back), as NTP does; the clock stays put."""
        with self._lock:
            self._wall_start += seconds

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        with self._lock:
            self._now += seconds
            refs = self._on_advance
            hooks = [ref() for ref in refs]
            self._on_advance = [ref for ref, hook in zip(refs, hooks, strict=True) if hook]
        for hook in hooks:
            if hook is not None:
                hook()

    def on_advance(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (a bound method, held weakly) after each `advance`."""
        with self._lock:
            self._on_advance.append(weakref.WeakMethod(callback))
