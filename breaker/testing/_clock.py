"""A clock for tests: time moves only when the test says so."""

from __future__ import annotations

import threading


class FakeClock:
    """A monotonic clock that only moves when `advance` is called; pass it as ``new(clock=...)``."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        with self._lock:
            self._now += seconds
