"""Faults injected on demand: error answers and silence.

* A queued failure answers the next request with its status and body, whatever the request.
* A hang reads the request and never answers until released or the server stops.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from http import HTTPStatus

from breaker.testing._server._http import Dropped, HTTPError


class Faults:
    """The faults armed on a server; ``cond`` is the store's condition, shared."""

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self._failures: deque[HTTPError] = deque()
        self._hang = False
        self._hang_next = 0
        self._hang_gen = 0

    # -- error answers ---------------------------------------------------------------------

    def fail_next(
        self, n: int, status: int, body: str | None, headers: Mapping[str, str] | None
    ) -> None:
        """Queue ``n`` failures after the ones already queued."""
        text = HTTPStatus(status).phrase if body is None else body
        extra = tuple((headers or {}).items())
        with self._cond:
            for _ in range(n):
                self._failures.append(HTTPError(status, text, extra))

    def take_failure(self) -> HTTPError | None:
        """Return the next queued failure, if any."""
        with self._cond:
            return self._failures.popleft() if self._failures else None

    # -- silence ---------------------------------------------------------------------------

    def hang_next(self, n: int) -> None:
        """Hold the next ``n`` requests unanswered."""
        with self._cond:
            self._hang_next += n

    def hang(self, enabled: bool) -> None:
        """Hold every request unanswered; ``False`` drops the held ones."""
        with self._cond:
            self._hang = enabled
            if not enabled:
                self._hang_next = 0
                self._hang_gen += 1
                self._cond.notify_all()

    def hold_if_hanging(self, cancelled: Callable[[], bool]) -> None:
        """Return at once, or hold the request until released and raise `Dropped`."""
        with self._cond:
            if not self._hang and self._hang_next <= 0:
                return
            if not self._hang:
                self._hang_next -= 1
            generation = self._hang_gen
            while self._hang_gen == generation and not cancelled():
                self._cond.wait()
        raise Dropped

    def release(self) -> None:
        """Forget every hang (the server is stopping: held requests are dropped)."""
        with self._cond:
            self._hang = False
            self._hang_next = 0
            self._hang_gen += 1
            self._cond.notify_all()
