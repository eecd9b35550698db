"""Faults a real cluster shows, injected on demand: RPC errors and silence.

* A queued failure answers the next RPC the way Consul answers an RPC error: the status
  and the error text, and none of the query headers (``X-Consul-Index``,
  ``-KnownLeader``, ``-LastContact``), which Consul sets only on success.
* A hang reads the request and never answers until released or the server stops.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from http import HTTPStatus

from breaker.testing._server._http import Dropped, HTTPError

NO_LEADER = "No cluster leader"
"""The error text of ``structs.ErrNoLeader``, what a leaderless cluster answers with a 500."""


def default_body(status: int) -> str:
    """Return the text Consul sends with ``status`` for an RPC error.

    500 is what a leaderless cluster answers; 429 is the RPC rate limiter, which Consul
    answers with an empty body; anything else gets the status phrase.
    """
    if status == 500:
        return NO_LEADER
    if status == 429:
        return ""
    return HTTPStatus(status).phrase


class Faults:
    """The faults armed on a server; ``cond`` is the store's condition, shared."""

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self._failures: deque[HTTPError] = deque()
        self._hang = False
        self._hang_next = 0
        self._hang_gen = 0

    # -- RPC errors ------------------------------------------------------------------------

    def fail_next(
        self, n: int, status: int, body: str | None, headers: Mapping[str, str] | None
    ) -> None:
        """Queue ``n`` RPC errors after the ones already queued."""
        text = default_body(status) if body is None else body
        extra = tuple((headers or {}).items())
        with self._cond:
            for _ in range(n):
                self._failures.append(HTTPError(status, text, extra))

    def take_failure(self) -> HTTPError | None:
        """Return the next queued RPC error, if any."""
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

    def rpc(self) -> None:
        """Pass one RPC through the armed faults: raise the next queued failure, if any."""
        failure = self.take_failure()
        if failure is not None:
            raise failure
