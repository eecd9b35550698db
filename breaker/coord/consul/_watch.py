"""The watch loop: blocking queries on one prefix, paced, backed off, re-synced after errors.

Time is injected: ``clock`` (monotonic seconds) and ``sleep`` (``(seconds, stop) -> bool``,
True when woken by `ConsulWatch.stop`), so pacing and backoff run on a fake clock in tests.
The network is a `Link`, so the loop runs against a scripted one too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

import attrs

from breaker._exceptions import CoordError
from breaker.coord._base import CoordHealth, OnChange
from breaker.coord.consul._backoff import BACKOFF_CAP, BACKOFF_FIRST, backoff
from breaker.coord.consul._decode import Listing

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_WAIT",
    "HOLD",
    "MIN_INTERVAL",
    "ConsulWatch",
    "Link",
    "Sleep",
    "Timing",
    "sleep_or_stop",
]

_log = logging.getLogger("breaker.consul")

DEFAULT_WAIT = 55.0
"""Blocking-query wait: with Consul's jitter (wait/16) an answer comes within 58.5 s, under
the 60 s idle timeout common in load balancers and proxies, while costing each process
about one request a minute when nothing changes."""
DEFAULT_TIMEOUT = 5.0
MIN_INTERVAL = 0.1
HOLD = 7.0
"""Consul's default ``rpc_hold_timeout``: how long a server holds a read while a leader is
elected before it answers "No cluster leader"."""
JITTER_FRACTION = 16
"""Consul adds up to wait/16 to a blocking query's wait."""
_JOIN_TIMEOUT = 5.0
_BURST = 2


class Link(Protocol):
    """Reach Consul for one watch, which owns the connection."""

    def list(
        self,
        prefix: str,
        *,
        index: int = 0,
        wait: float | None = None,
        read_timeout: float,
        known: Listing | None = None,
    ) -> Listing:
        """Return every entry under ``prefix``, blocking while the index is ``index`` if > 0.

        ``known`` is the listing read before, whose unchanged parts the answer may share.
        """
        ...

    def cut(self) -> None:
        """End a request in flight and any later one; called from any thread."""

    def close(self) -> None:
        """Release what the watch holds; called by the watch's own thread when it ends."""

    def release(self) -> None:
        """In a forked child: let go of what was inherited without touching it."""


Sleep = Callable[[float, threading.Event], bool]
"""Wait ``seconds`` or until the event is set; return True if it was set (a stop)."""


def sleep_or_stop(seconds: float, stop: threading.Event) -> bool:
    """Wait ``seconds`` unless stopped first; return True if stopped (the default ``sleep``)."""
    return stop.wait(seconds) if seconds > 0 else stop.is_set()


@attrs.frozen
class Timing:
    """Hold the watch's timing, in seconds (see `ConsulCoord` for what each means)."""

    wait: float = DEFAULT_WAIT
    timeout: float = DEFAULT_TIMEOUT
    min_interval: float = MIN_INTERVAL
    backoff_first: float = BACKOFF_FIRST
    backoff_cap: float = BACKOFF_CAP
    hold: float = HOLD

    @property
    def blocking_read_timeout(self) -> float:
        """Return how long a blocking query may take: wait, Consul's jitter, then timeout."""
        return self.wait * (JITTER_FRACTION + 1) / JITTER_FRACTION + self.timeout

    def sync_read_timeout(self, timeouts: int) -> float:
        """Return the read budget of an index-0 read after ``timeouts`` that timed out.

        Room for a read Consul holds during an election, doubled after each one that
        timed out (a slow link) up to a blocking query's budget.
        """
        base = self.timeout + self.hold
        return min(base * 2.0 ** min(timeouts, 30), max(base, self.blocking_read_timeout))


class _Pacer:
    """Pace reads with a token bucket: bursts of two, one per interval on average."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self._interval = interval
        self._clock = clock
        self._tokens = float(_BURST)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        if self._interval > 0:
            self._tokens = min(_BURST, self._tokens + (now - self._last) / self._interval)
        else:
            self._tokens = _BURST
        self._last = now

    def delay(self) -> float:
        """Return how long to wait before the next read may start."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) * self._interval

    def take(self) -> None:
        """Spend one read."""
        self._refill()
        self._tokens -= 1


class ConsulWatch:
    """Run blocking queries on one prefix, in a thread of its own.

    Rules (DESIGN.md section 7): the last ``X-Consul-Index`` is sent back as an integer,
    an index of 0 counts as 1, an index that goes backwards means read again from 0, and
    after any failed read the next one is an index-0 re-sync, so a cluster whose indexes
    started over can never hold the watch in a whole wait. Every read is paced; failures
    back off. ``on_change`` gets the full content of the prefix whenever a key's value or
    ModifyIndex changed, never concurrently with itself.
    """

    def __init__(
        self,
        prefix: str,
        on_change: OnChange,
        *,
        link: Callable[[], Link],
        timing: Timing,
        clock: Callable[[], float],
        sleep: Sleep,
        wall_clock: Callable[[], float],
        random: Callable[[], float],
        on_stop: Callable[[ConsulWatch], None] = lambda watch: None,
        start: Listing | None = None,
        start_sync: float | None = None,
    ) -> None:
        self.prefix = prefix
        self._on_change = on_change
        self._new_link = link
        self._timing = timing
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._random = random
        self._on_stop = on_stop
        # A listing the coord has just read: the watch blocks on its index at once, and is
        # up from the start (the read succeeded), with that read as its last sync.
        self._start = start
        self._health = CoordHealth(up=start is not None, last_sync=start_sync)
        self._stop_requested = False
        self._stopper: threading.Thread | None = None
        self._start_fresh()

    def _start_fresh(self) -> None:
        self._link = self._new_link()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self.run, name=f"breaker-consul-watch:{self.prefix}", daemon=True
        )

    def __repr__(self) -> str:
        return f"<ConsulWatch {self.prefix!r} {self._health}>"

    def start(self) -> None:
        """Run the loop in its thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, cutting a blocking query short; return once its thread is gone.

        Safe from any thread: called from the watch's own thread (from ``on_change``, or
        by a finalizer that runs there) it only marks the loop to end, never joins itself.
        """
        me = threading.current_thread()
        if self._stopper is me:
            return  # re-entered, e.g. by a finalizer that ran in the middle of this call
        self._stopper = me
        self._stop_requested = True
        self._link.cut()
        if me is not self._thread:
            # Event.set takes a lock that the watch thread may hold, so it is set only
            # from other threads; the watch thread checks the flag instead.
            self._wake.set()
            if self._thread.ident is not None:
                self._thread.join(_JOIN_TIMEOUT)
            else:  # never started: nobody else will release the connection
                self._link.close()
        self._on_stop(self)

    def health(self) -> CoordHealth:
        """Return whether the last read succeeded, when one last did, and the last error."""
        return self._health

    def restart_in_child(self) -> None:
        """In a forked child: run again on a new connection from index 0, unless stopped."""
        if self._stop_requested:
            return
        self._start = None
        inherited = self._link
        self._stopper = None
        self._start_fresh()
        inherited.release()
        self.start()

    def run(self) -> None:
        """Watch until stopped, in the calling thread; release the connection at the end."""
        link = self._link
        try:
            self._loop(link)
        finally:
            link.close()

    def _stopping(self) -> bool:
        return self._stop_requested

    def _loop(self, link: Link) -> None:
        timing = self._timing
        pacer = _Pacer(timing.min_interval, self._clock)
        seen, self._start = self._start, None
        index = 0 if seen is None else max(seen.index, 1)
        if seen is not None:
            self._deliver(seen)
        failures = 0
        timeouts = 0
        early = 0
        condition: str | None = None
        while not self._stop_requested:
            pause = pacer.delay()
            if pause > 0 and (self._sleep(pause, self._wake) or self._stopping()):
                return
            pacer.take()
            blocking = index > 0
            started = self._clock()
            try:
                listing = link.list(
                    self.prefix,
                    index=index,
                    wait=timing.wait if blocking else None,
                    read_timeout=(
                        timing.blocking_read_timeout
                        if blocking
                        else timing.sync_read_timeout(timeouts)
                    ),
                    known=seen,
                )
            except CoordError as exc:
                if self._stopping():
                    return
                self._health = attrs.evolve(self._health, up=False, last_error=str(exc))
                if exc.condition != condition:
                    condition = exc.condition
                    _log.warning(
                        "watching Consul prefix %r failed: %s; keeping the last good policies "
                        "and retrying with backoff",
                        self.prefix,
                        exc,
                    )
                if exc.condition == "timeout" and not blocking:
                    timeouts += 1
                delay = backoff(
                    failures,
                    timing.backoff_first,
                    timing.backoff_cap,
                    self._random(),
                    exc.retry_after,
                )
                failures += 1
                index = 0  # re-sync: the index we held may mean nothing to Consul now
                if self._sleep(delay, self._wake) or self._stopping():
                    return
                continue
            if condition is not None:
                _log.info(
                    "watching Consul prefix %r works again after %d failed attempts",
                    self.prefix,
                    failures,
                )
                condition = None
            failures = timeouts = 0
            self._health = CoordHealth(up=True, last_sync=self._wall_clock())
            took = self._clock() - started
            new_index = max(listing.index, 1)  # Consul's own sanity check: 0 counts as 1
            changed = seen is None or not listing.same_content(seen)
            seen = listing
            if blocking and new_index <= index and not changed and took < timing.wait:
                # Back before its wait could run out, with nothing new. Consul does that
                # when a snapshot restore abandons its state store: it answers with what it
                # read before, and the restored index is lower, so blocking again on ours
                # would wait out a whole wait. Read again from 0.
                index = 0
                if took < timing.wait / 2:
                    # At once: a proxy, a load balancer or an agent that does not hold
                    # blocking queries (or answers index 0). Back off while it lasts.
                    early += 1
                    if not self._early_answer(early, listing.index):
                        return
                continue
            if blocking and early:
                if early > 1:
                    _log.info(
                        "Consul holds blocking queries on %r again, after %d answers that "
                        "came at once",
                        self.prefix,
                        early,
                    )
                early = 0
            if new_index < index:
                # A snapshot restore or a new cluster: indexes start over. Read from 0, or
                # the next query would wait for an index that may never come.
                _log.info(
                    "Consul index for %r went backwards (%d < %d); starting over",
                    self.prefix,
                    new_index,
                    index,
                )
                index = 0
            else:
                index = new_index
            if changed and not self._stopping():
                self._deliver(listing)

    def _early_answer(self, early: int, reported: int) -> bool:
        """Pace blocking queries Consul answers at once; return False when stopped meanwhile.

        The first one is read again at once (a snapshot restore answers so); from the
        second on, each waits out a backoff, and the second is logged as a warning.
        """
        timing = self._timing
        if early == 1:
            _log.info(
                "Consul answered a blocking query on %r at once with nothing new "
                "(a snapshot restore?); reading it again from 0",
                self.prefix,
            )
            return True
        if early == 2:
            _log.warning(
                "Consul answers blocking queries on %r at once with nothing new (index %d): "
                "something between here and Consul does not hold them; backing off up to "
                "%gs between reads while it lasts",
                self.prefix,
                reported,
                timing.backoff_cap,
            )
        delay = backoff(early - 2, timing.backoff_first, timing.backoff_cap, self._random(), None)
        return not (self._sleep(delay, self._wake) or self._stopping())

    def _deliver(self, listing: Listing) -> None:
        try:
            self._on_change(listing.snapshot())
        except Exception:
            _log.exception("applying a Consul snapshot of %r failed", self.prefix)
