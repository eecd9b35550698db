"""Faults a real cluster shows, injected on demand: RPC errors, silence, leader elections.

* A queued failure answers the next RPC the way Consul answers an RPC error: the status
  and the error text, and none of the query headers (``X-Consul-Index``,
  ``-KnownLeader``, ``-LastContact``), which Consul sets only on success.
* A hang reads the request and never answers until released or the server stops.
* During a leader election every RPC that needs the leader waits (as Consul's
  ``rpc_hold_timeout``, 7 s by default): it proceeds when a leader is elected, or fails with
  500 "No cluster leader" when the hold runs out. Stale reads are served at once by any
  server, with ``X-Consul-KnownLeader: false``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

from breaker.testing._server._http import Dropped, HTTPError

NO_LEADER = "No cluster leader"
"""The error text of ``structs.ErrNoLeader``, what a leaderless cluster answers with a 500."""

RPC_HOLD_TIMEOUT = 7.0
"""Consul's default ``rpc_hold_timeout``: how long an RPC waits for a leader."""


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
        self.held = 0  # requests a hang holds now
        self._election_started: float | None = None
        self._election_ends: float | None = None
        self._hold = RPC_HOLD_TIMEOUT

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
            self.held += 1
            try:
                while self._hang_gen == generation and not cancelled():
                    self._cond.wait()
            finally:
                self.held -= 1
        raise Dropped

    def release(self) -> None:
        """Forget every hang (the server is stopping: held requests are dropped)."""
        with self._cond:
            self._hang = False
            self._hang_next = 0
            self._hang_gen += 1
            self._cond.notify_all()

    # -- leader elections ------------------------------------------------------------------

    def begin_election(self, duration: float | None, rpc_hold_timeout: float) -> None:
        """Lose the leader now; elect one after ``duration`` seconds (None: at `end_election`)."""
        if rpc_hold_timeout < 0 or (duration is not None and duration < 0):
            raise ValueError("durations must not be negative")
        with self._cond:
            now = time.monotonic()
            self._election_started = now
            self._election_ends = None if duration is None else now + duration
            self._hold = rpc_hold_timeout

    def end_election(self) -> None:
        """Elect a leader now: held RPCs proceed."""
        with self._cond:
            self._election_started = None
            self._election_ends = None
            self._cond.notify_all()

    def leaderless_since(self) -> float | None:
        """Return when the running election began (monotonic), or None with a leader."""
        with self._cond:
            if self._election_started is None:
                return None
            if self._election_ends is not None and time.monotonic() >= self._election_ends:
                self._election_started = self._election_ends = None
                return None
            return self._election_started

    def wait_for_leader(self, cancelled: Callable[[], bool]) -> None:
        """Hold an RPC through an election; raise the 500 Consul answers when the hold ends."""
        with self._cond:
            if self.leaderless_since() is None:
                return
            deadline = time.monotonic() + self._hold
            while self.leaderless_since() is not None:
                if cancelled():
                    raise Dropped
                now = time.monotonic()
                if now >= deadline:
                    raise HTTPError(500, NO_LEADER)
                ends = self._election_ends
                self._cond.wait(min(deadline, ends if ends is not None else deadline) - now)

    def rpc(self, cancelled: Callable[[], bool], *, stale: bool) -> Leadership:
        """Pass one RPC through the armed faults; return what it learns of the leader.

        Raises a queued failure first; then, during an election, serves a stale read at
        once and holds any other RPC for a leader (`wait_for_leader`).
        """
        failure = self.take_failure()
        if failure is not None:
            raise failure
        since = self.leaderless_since()
        if since is None:
            return Leadership(True, 0)
        if stale:
            return Leadership(False, int((time.monotonic() - since) * 1000))
        self.wait_for_leader(cancelled)
        return Leadership(True, 0)


@dataclass(frozen=True)
class Leadership:
    """What an RPC reports of the leader: known or not, and ms since the last contact."""

    known: bool
    last_contact_ms: int
