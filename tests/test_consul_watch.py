"""The Consul watch loop: pacing, backoff, re-sync, and what each fault costs.

Most tests run the loop in the test's own thread against `FakeConsul`, a model of Consul's
KV on a `FakeClock` with production timing (wait 55 s, timeout 5 s): no sleeping, exact
times. The tests at the end drive the real client through `FaultProxy` in front of the
embedded server, for what only real sockets show (a held read, keepalive, a rewritten index).
"""

from __future__ import annotations

import base64
import heapq
import itertools
import json
import logging
import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import attrs
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

import breaker
from breaker import CoordError
from breaker.coord import CoordHealth, Snapshot
from breaker.coord.consul import ConsulSettings, _decode
from breaker.coord.consul._adapter import ConsulKV
from breaker.coord.consul._backoff import BACKOFF_CAP, BACKOFF_FIRST, GROWTH, backoff
from breaker.coord.consul._decode import Listing, read_listing
from breaker.coord.consul._transport import Transport, keepalive_options
from breaker.coord.consul._watch import HOLD, ConsulWatch, Timing
from breaker.testing import ConsulServer, FakeClock, FaultProxy

from .helpers import PREFIX, FakeSleep, eventually

KEY = PREFIX + "payments.json"
PRODUCTION = Timing()
WALL_OFFSET = 1_700_000_000.0


def doc(failure_threshold: int) -> bytes:
    return json.dumps({"failureThreshold": failure_threshold}).encode()


# -- a Consul on the fake clock --------------------------------------------------------


@dataclass
class Read:
    start: float
    index: int
    wait: float | None
    read_timeout: float
    end: float = math.nan
    outcome: str = ""


class FakeConsul:
    """Consul's KV as one watcher sees it, on a fake clock, with faults in fake time.

    A read with an index blocks until the index passes it or the wait runs out (no jitter);
    events scheduled with `at` run when the clock reaches them, during a blocking read or a
    watcher's sleep. It is also the watcher's `Link` and, through `sleep`, its sleep.
    """

    def __init__(self, clock: FakeClock, *, until: float = 300.0, index: int = 1) -> None:
        self.clock = clock
        self.t0 = clock()
        self.until = self.t0 + until
        self.index = index
        self.entries: dict[str, tuple[bytes, int]] = {}
        self.reads: list[Read] = []
        self.pauses: list[float] = []
        self.latency = 0.0
        self.reported_index: int | None = None  # an agent that reports this X-Consul-Index
        self.refuse_until = -math.inf  # connections refused
        self.leaderless_until = -math.inf  # reads held up to HOLD, then "No cluster leader"
        self.fault: Callable[[Read], CoordError | None] | None = None
        self.watch: ConsulWatch | None = None
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._interrupt: CoordError | None = None
        self._wake = False
        self._abandoned: Listing | None = None
        self.answer_early = False  # blocking reads come back at once, index unchanged

    # the store
    def put(self, key: str, value: bytes) -> None:
        self.index += 1
        self.entries[key] = (value, self.index)
        self._wake = True

    def rebuild(self) -> None:
        """A new cluster restored from the data: indexes start over at 1."""
        self.entries = {k: (v, 1) for k, (v, _) in self.entries.items()}
        self.index = 1
        self.drop("connection reset by peer")

    def restore(self, entries: dict[str, tuple[bytes, int]], index: int) -> None:
        """A snapshot restore: older entries with their indexes; blocking reads are woken.

        As Consul's blockingquery.Query does when the state store is abandoned, a woken
        read answers with what it read before the restore.
        """
        self._abandoned = Listing.of(self.index, self.entries)
        self.entries = dict(entries)
        self.index = index
        self._wake = True

    def drop(self, why: str, status: int | None = None) -> None:
        """End the read in flight with an error."""
        self._interrupt = CoordError(why, condition=why, status=status)

    # fake time
    def now(self) -> float:
        return self.clock() - self.t0

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._events, (self.t0 + t, next(self._seq), fn))

    def _move(self, t: float) -> None:
        if t > self.clock():
            self.clock.advance(t - self.clock())

    def advance_to(self, t: float) -> None:
        while self._events and self._events[0][0] <= t:
            when, _, fn = heapq.heappop(self._events)
            self._move(when)
            fn()
        self._move(t)

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        self.pauses.append(seconds)
        target = self.clock() + seconds
        if target >= self.until:
            self.advance_to(self.until)
            self._stop()
            return True
        self.advance_to(target)
        return stop.is_set()

    def _stop(self) -> None:
        assert self.watch is not None
        self.watch.stop()

    # the Link
    def list(
        self,
        prefix: str,
        *,
        index: int = 0,
        wait: float | None = None,
        read_timeout: float,
        known: Listing | None = None,
    ) -> Listing:
        start = self.clock()
        if start >= self.until:
            self._stop()
            raise CoordError("closed", condition="closed")
        read = Read(self.now(), index, wait, read_timeout)
        self.reads.append(read)
        try:
            listing = self._answer(start, index, wait, read_timeout)
        except CoordError as exc:
            read.outcome = exc.condition
            raise
        finally:
            read.end = self.now()
        read.outcome = f"index {listing.index}"
        return listing

    def _answer(self, start: float, index: int, wait: float | None, read_timeout: float) -> Listing:
        deadline = start + read_timeout
        self._interrupt = None
        if start < self.t0 + self.refuse_until:
            raise CoordError("connection refused", condition="refused")
        if self.fault is not None:
            error = self.fault(self.reads[-1])
            if error is not None:
                raise error
        ready = start + self.latency
        held = start < self.t0 + self.leaderless_until
        if held:
            ready = max(ready, min(self.t0 + self.leaderless_until, start + HOLD))
        if ready > deadline:
            self.advance_to(deadline)
            raise CoordError("timeout", condition="timeout")
        self.advance_to(ready)
        if self.clock() < self.t0 + self.leaderless_until:
            raise CoordError("HTTP 500: No cluster leader", condition="HTTP 500", status=500)
        if index > 0 and self.answer_early:
            return Listing.of(index, self.entries)
        if index > 0:
            assert wait is not None
            end = min(ready + wait, deadline)
            self._wake = False
            while self.index <= index and not self._wake:
                if not self._events or self._events[0][0] > end:
                    break
                when, _, fn = heapq.heappop(self._events)
                self._move(when)
                fn()
                if self._interrupt is not None:
                    error, self._interrupt = self._interrupt, None
                    raise error
            if self.index <= index and not self._wake:
                self.advance_to(end)
                if end >= deadline:
                    raise CoordError("timeout", condition="timeout")
            if self._abandoned is not None:
                abandoned, self._abandoned = self._abandoned, None
                return abandoned
        self._abandoned = None
        reported = self.index if self.reported_index is None else self.reported_index
        return Listing.of(reported, self.entries)

    def cut(self) -> None:
        pass

    def close(self) -> None:
        pass

    def release(self) -> None:
        pass


class Deliveries:
    """What a watch delivered, and when (seconds of fake time)."""

    def __init__(self, consul: FakeConsul) -> None:
        self.consul = consul
        self.log: list[tuple[float, Snapshot]] = []

    def __call__(self, snapshot: Snapshot) -> None:
        self.log.append((self.consul.now(), dict(snapshot)))

    def first_time(self, predicate: Callable[[Snapshot], bool]) -> float:
        return next(t for t, s in self.log if predicate(s))


def run_watch(
    consul: FakeConsul, timing: Timing = PRODUCTION, *, jitter: Iterator[float] | None = None
) -> tuple[ConsulWatch, Deliveries]:
    """Run a watch on ``consul`` in this thread until its ``until``."""
    got = Deliveries(consul)
    numbers = jitter if jitter is not None else iter(random.Random(1).random, None)
    watch = ConsulWatch(
        PREFIX,
        got,
        link=lambda: consul,
        timing=timing,
        clock=consul.clock,
        sleep=consul.sleep,
        wall_clock=lambda: WALL_OFFSET + consul.now(),
        random=lambda: next(numbers),
    )
    consul.watch = watch
    watch.run()
    return watch, got


def has(value: bytes) -> Callable[[Snapshot], bool]:
    return lambda snapshot: snapshot.get(KEY) == value


@pytest.fixture
def consul(clock: FakeClock) -> FakeConsul:
    fake = FakeConsul(clock, index=400)
    for i in range(100):
        fake.put(KEY, doc(1 + i % 9))
    fake.put(KEY, doc(1))
    return fake


# -- backoff, a pure function ----------------------------------------------------------


class TestBackoff:
    def test_schedule_grows_by_half_within_jitter_and_stops_at_the_cap(self) -> None:
        for failures in range(40):
            ceiling = min(BACKOFF_CAP, BACKOFF_FIRST * GROWTH**failures)
            low = backoff(failures, BACKOFF_FIRST, BACKOFF_CAP, 0.0)
            high = backoff(failures, BACKOFF_FIRST, BACKOFF_CAP, 0.999999)
            assert low == ceiling / 2
            assert ceiling / 2 < high <= ceiling
        assert backoff(0, 1.0, 30.0, 0.999999) <= 1.0  # the first retry within a second
        assert backoff(10**9, 1.0, 30.0, 0.5) <= 30.0  # no overflow after years of failures

    def test_retry_after_is_honoured_up_to_thirty_seconds_or_the_cap(self) -> None:
        assert backoff(0, 1.0, 30.0, 0.0, retry_after=7) == 7
        assert backoff(0, 1.0, 30.0, 0.0, retry_after=3600) == 30.0
        assert backoff(0, 0.05, 0.2, 0.0, retry_after=1) == 1.0
        assert backoff(0, 1.0, 120.0, 0.0, retry_after=90) == 90
        assert backoff(5, 1.0, 30.0, 0.0, retry_after=0) == backoff(5, 1.0, 30.0, 0.0)

    @given(st.lists(st.floats(0, 0.999999), min_size=1, max_size=40))
    def test_no_pause_exceeds_the_time_already_spent_plus_first(self, randoms: list[float]) -> None:
        """The recovery bound: after an outage of T s the next try comes within T + first."""
        spent = 0.0
        for failures, r in enumerate(randoms):
            pause = backoff(failures, BACKOFF_FIRST, BACKOFF_CAP, r)
            assert pause <= min(BACKOFF_CAP, spent + BACKOFF_FIRST) + 1e-9
            spent += pause


class TestTiming:
    def test_read_budgets_at_production_defaults(self) -> None:
        assert PRODUCTION.blocking_read_timeout == 55 * 17 / 16 + 5
        assert PRODUCTION.sync_read_timeout(0) == 5 + 7  # room for a read held in an election
        assert PRODUCTION.sync_read_timeout(1) == 24
        assert PRODUCTION.sync_read_timeout(2) == 48
        assert PRODUCTION.sync_read_timeout(9) == PRODUCTION.blocking_read_timeout


def test_a_404_is_an_empty_prefix_not_an_error() -> None:
    assert read_listing(404, {"X-Consul-Index": "42"}, "", PREFIX) == Listing(42)


def answer(entries: dict[str, tuple[bytes, int]]) -> str:
    """Return a recursive GET's body as Consul writes it (sorted by key)."""
    return json.dumps(
        [
            {
                "Key": key,
                "Value": base64.b64encode(value).decode() if value else None,
                "Flags": 0,
                "LockIndex": 0,
                "CreateIndex": index,
                "ModifyIndex": index,
            }
            for key, (value, index) in sorted(entries.items())
        ]
    )


def read(
    entries: dict[str, tuple[bytes, int]], index: int, known: Listing | None, trust: bool
) -> Listing:
    body = answer(entries)
    return read_listing(
        200, {"X-Consul-Index": str(index)}, body, PREFIX, known, trust_indexes=trust
    )


class TestReadListing:
    """Issue 21 gap 6: per change, the library decodes what changed and nothing else."""

    def entries(self, n: int) -> dict[str, tuple[bytes, int]]:
        return {f"{PREFIX}svc-{i:05d}.json": (doc(1 + i % 9), 10 + i) for i in range(n)}

    def test_unchanged_entries_are_the_same_objects_and_only_the_change_is_decoded(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        entries = self.entries(1000)
        first = read(entries, 2000, None, trust=False)
        decoded: list[str] = []
        real = _decode._decode_raw

        def counting(entry: object) -> tuple[str, int, bytes]:
            result = real(entry)
            decoded.append(result[0])
            return result

        monkeypatch.setattr(_decode, "_decode_raw", counting)
        changed_key = f"{PREFIX}svc-00500.json"
        entries[changed_key] = (doc(42), 2001)
        second = read(entries, 2001, first, trust=True)
        assert decoded == [changed_key]
        assert second.values[changed_key] == doc(42)
        assert all(
            second.values[key] is first.values[key] for key in first.keys if key != changed_key
        )
        assert not second.same_content(first)
        decoded.clear()
        third = read(entries, 2005, second, trust=True)  # nothing changed: nothing decoded
        assert decoded == [] and third.values is second.values and third.same_content(second)

    def test_keys_added_and_deleted(self) -> None:
        entries = self.entries(50)
        first = read(entries, 100, None, trust=False)
        del entries[f"{PREFIX}svc-00003.json"]
        entries[f"{PREFIX}new.json"] = (doc(5), 101)
        second = read(entries, 101, first, trust=True)
        assert second.entries == entries
        kept = f"{PREFIX}svc-00004.json"
        assert second.values[kept] is first.values[kept]

    def test_a_re_sync_compares_values_but_keeps_equal_ones_identical(self) -> None:
        entries = self.entries(20)
        first = read(entries, 100, None, trust=False)
        key = f"{PREFIX}svc-00007.json"
        # A rebuilt cluster: the same key at the same ModifyIndex with another value.
        entries[key] = (doc(99), entries[key][1])
        resynced = read(entries, 30, first, trust=False)
        assert resynced.values[key] == doc(99)
        other = f"{PREFIX}svc-00008.json"
        assert resynced.values[other] is first.values[other]
        # A blocking answer whose index went back is not trusted either.
        backwards = read(entries, 30, first, trust=True)
        assert backwards.values[key] == doc(99)

    def test_an_odd_entry_in_a_trusted_answer_gets_the_full_reading(self) -> None:
        entries = self.entries(3)
        first = read(entries, 100, None, trust=False)
        body = json.loads(answer(entries))
        body[1]["ModifyIndex"] = "7"
        with pytest.raises(CoordError, match="bad Value or ModifyIndex"):
            read_listing(
                200, {"X-Consul-Index": "101"}, json.dumps(body), PREFIX, first, trust_indexes=True
            )
        twice = [body[0], body[0], body[2]]  # the same length, a key listed twice
        with pytest.raises(CoordError, match="listed twice"):
            read_listing(
                200, {"X-Consul-Index": "101"}, json.dumps(twice), PREFIX, first, trust_indexes=True
            )
        del body[1]["ModifyIndex"]  # missing counts as 0, as before
        listing = read_listing(
            200, {"X-Consul-Index": "101"}, json.dumps(body), PREFIX, first, trust_indexes=True
        )
        assert listing.indexes[1] == 0

    @settings(max_examples=200, deadline=None)
    @given(
        before=st.dictionaries(
            st.sampled_from("abcdefgh"), st.tuples(st.binary(max_size=4), st.integers(1, 5))
        ),
        after=st.dictionaries(
            st.sampled_from("abcdefgh"), st.tuples(st.binary(max_size=4), st.integers(1, 5))
        ),
    )
    def test_reading_changes_reads_what_reading_everything_reads(
        self, before: dict[str, tuple[bytes, int]], after: dict[str, tuple[bytes, int]]
    ) -> None:
        # One history: a (key, ModifyIndex) pair names one value, and whatever was written
        # after the known listing (index 50) has a ModifyIndex above 50.
        after = {
            key: (before[key][0], index)
            if before.get(key, (b"", 0))[1] == index
            else (v, 50 + index)
            for key, (v, index) in after.items()
        }
        known = read(before, 50, None, trust=False)
        fast = read(after, 60, known, trust=True)
        full = read(after, 60, None, trust=False)
        assert fast.entries == full.entries
        assert list(fast.keys) == list(full.keys)
        assert fast.same_content(full) and full.same_content(fast)


# -- the loop on a fake clock ----------------------------------------------------------


class TestLoop:
    def test_reads_then_blocks_on_the_index_as_an_integer(self, consul: FakeConsul) -> None:
        consul.until = consul.clock() + 200
        consul.at(30, lambda: consul.put(KEY, doc(7)))
        _, got = run_watch(consul)
        assert [(r.start, r.index, r.wait) for r in consul.reads[:4]] == [
            (0, 0, None),
            (0, 501, 55),
            (30, 502, 55),  # the change at 30 s arrived at once, and the bucket had room
            (85, 502, 55),  # nothing changed: Consul answered when the wait ran out
        ]
        assert [t for t, _ in got.log] == [0, 30]

    def test_the_same_content_is_not_delivered_twice(self, consul: FakeConsul) -> None:
        consul.at(20, lambda: consul.put(KEY, doc(1)))  # same value, new ModifyIndex
        _, got = run_watch(consul)
        assert [t for t, _ in got.log] == [0, 20]  # a redundant snapshot is allowed
        consul2 = FakeConsul(FakeClock(), until=100)
        consul2.put(KEY, doc(1))
        consul2.at(10, lambda: setattr(consul2, "index", consul2.index + 1))  # elsewhere
        _, got2 = run_watch(consul2)
        assert [t for t, _ in got2.log] == [0]

    def test_health_follows_every_read(self, consul: FakeConsul) -> None:
        seen: list[CoordHealth] = []
        consul.refuse_until = 0  # nothing refused yet
        consul.at(10, lambda: consul.drop("connection reset by peer"))
        consul.at(10, lambda: setattr(consul, "refuse_until", 40))

        def fault(read: Read) -> CoordError | None:
            assert consul.watch is not None
            seen.append(consul.watch.health())
            return None

        consul.fault = fault
        consul.until = consul.clock() + 100
        watch, _ = run_watch(consul)
        assert seen[0] == CoordHealth(up=False)  # before the first read
        assert seen[1] == CoordHealth(up=True, last_sync=WALL_OFFSET)
        failed = next(h for h in seen if not h.up and h.last_error)
        assert failed.last_sync == WALL_OFFSET  # the last good read, kept while failing
        assert failed.last_error == "connection refused"  # the latest failure
        final = watch.health()
        assert final.up and final.last_error is None
        assert final.last_sync is not None and final.last_sync >= WALL_OFFSET + 40

    def test_a_min_interval_of_0_turns_pacing_off(self, consul: FakeConsul) -> None:
        writes = itertools.count(2)

        def change_every_time(read: Read) -> None:
            consul.put(KEY, doc(next(writes)))  # every read answers at once, with news

        consul.fault = change_every_time
        consul.latency = 0.01
        consul.until = consul.clock() + 1
        run_watch(consul, attrs.evolve(PRODUCTION, min_interval=0))
        assert consul.pauses == []
        starts = [r.start for r in consul.reads]
        assert len(starts) > 90  # one every 10 ms; paced, it would be a burst of 2, then 10
        assert all(b - a == pytest.approx(0.01) for a, b in itertools.pairwise(starts))

    def test_repr_names_the_prefix_and_the_health(self, consul: FakeConsul) -> None:
        consul.until = consul.clock() + 1
        watch, _ = run_watch(consul)
        assert repr(watch) == f"<ConsulWatch {PREFIX!r} {watch.health()}>"
        assert "up=True" in repr(watch)

    def test_a_callback_that_raises_is_logged_and_the_watch_goes_on(
        self, consul: FakeConsul, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[float] = []

        def boom(snapshot: Snapshot) -> None:
            calls.append(consul.now())
            raise RuntimeError("bad callback")

        consul.at(10, lambda: consul.put(KEY, doc(2)))
        consul.until = consul.clock() + 30
        watch = ConsulWatch(
            PREFIX,
            boom,
            link=lambda: consul,
            timing=PRODUCTION,
            clock=consul.clock,
            sleep=consul.sleep,
            wall_clock=time.time,
            random=random.Random(1).random,
        )
        consul.watch = watch
        watch.run()
        assert calls == [0, 10]
        assert "bad callback" in caplog.text


class TestGaps:
    """Issue #8's watcher gaps, at production timing, in fake time."""

    def test_start_up_through_a_link_that_answers_in_6_5_s(self, consul: FakeConsul) -> None:
        consul.latency = 6.5
        _, got = run_watch(consul)
        assert consul.reads[0].read_timeout == 12  # not 5 s: a held read fits
        assert got.first_time(has(doc(1))) == 6.5

    def test_a_link_slower_than_any_budget_gets_longer_reads(self, consul: FakeConsul) -> None:
        consul.latency = 20
        _, got = run_watch(consul)
        assert [r.read_timeout for r in consul.reads[:2]] == [12, 24]
        assert got.first_time(has(doc(1))) <= 12 + BACKOFF_FIRST + 20

    def test_a_change_after_a_rebuild_is_applied_at_once(self, consul: FakeConsul) -> None:
        consul.at(10, consul.rebuild)  # cuts the blocking query on index 501
        consul.at(12, lambda: consul.put(KEY, doc(2)))  # index 2, far below 501
        _, got = run_watch(consul)
        resync = consul.reads[2]
        assert resync.index == 0 and resync.start <= 10 + BACKOFF_FIRST
        assert got.first_time(has(doc(2))) == 12

    def test_a_rebuild_behind_a_live_agent_answering_5xx(self, consul: FakeConsul) -> None:
        consul.at(10, lambda: consul.drop("HTTP 500", status=500))
        consul.at(10, lambda: consul.rebuild())
        consul.at(10, lambda: setattr(consul, "leaderless_until", 20))
        consul.at(21, lambda: consul.put(KEY, doc(2)))
        _, got = run_watch(consul)
        after = [r for r in consul.reads if r.start > 10]
        assert after[0].index == 0  # after a 5xx, re-sync; never block on index 501 again
        assert all(r.index < 501 for r in after)
        assert got.first_time(has(doc(2))) == 21

    def test_index_0_for_a_minute_is_backed_off_with_one_warning(
        self, consul: FakeConsul, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Issue 21: an agent (or proxy) that answers index 0 at once, for a whole minute."""
        consul.reported_index = 0
        consul.until = consul.clock() + 60
        with caplog.at_level(logging.INFO, logger="breaker"):
            _, got = run_watch(consul)
        assert [r.index for r in consul.reads[:4]] == [0, 1, 0, 1]  # 0 counts as 1
        # Before: 10 reads a second, 600 in the minute. Now each blocking read that comes
        # back at once is followed by a re-sync and a backoff that grows to the cap.
        assert len(consul.reads) <= 2 * 12, len(consul.reads)
        assert_paced([r.start for r in consul.reads], PRODUCTION.min_interval)
        ceilings = [min(BACKOFF_CAP, BACKOFF_FIRST * GROWTH**n) for n in range(len(consul.pauses))]
        backoffs = [p for p in consul.pauses if p > PRODUCTION.min_interval]
        assert backoffs and all(
            c / 2 <= p <= c for p, c in zip(backoffs, ceilings, strict=False)
        ), backoffs
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "at once with nothing new (index 0)" in warnings[0].getMessage()
        assert [t for t, _ in got.log] == [0]  # nothing changed: one delivery

    def test_a_blocking_query_held_again_ends_the_backoff(
        self, consul: FakeConsul, caplog: pytest.LogCaptureFixture
    ) -> None:
        consul.answer_early = True
        consul.at(20, lambda: setattr(consul, "answer_early", False))
        consul.at(100, lambda: consul.put(KEY, doc(5)))
        consul.until = consul.clock() + 200
        with caplog.at_level(logging.INFO, logger="breaker"):
            _, got = run_watch(consul)
        assert got.first_time(has(doc(5))) == 100  # held again: a change arrives at once
        assert "Consul holds blocking queries on" in caplog.text
        late = [r for r in consul.reads if r.start > 60]
        assert all(r.index > 0 for r in late) and len(late) <= 3

    def test_an_answer_late_in_the_wait_re_syncs_without_backing_off(
        self, consul: FakeConsul
    ) -> None:
        """An agent whose max_query_time is below our wait answers unchanged, not at once."""
        consul.until = consul.clock() + 200
        original = consul._answer

        def clamped(start: float, index: int, wait: float | None, read_timeout: float) -> Listing:
            if index > 0:
                consul.advance_to(start + 40)  # max_query_time 40 s: back after 40 s
                return Listing.of(index, consul.entries)
            return original(start, index, wait, read_timeout)

        consul._answer = clamped  # type: ignore[method-assign]
        run_watch(consul)
        blocking = [r for r in consul.reads if r.index > 0]
        assert len(blocking) == 5 and all(r.end - r.start == 40 for r in blocking)
        assert all(p <= PRODUCTION.min_interval for p in consul.pauses)  # never backed off

    def test_a_snapshot_restore_is_delivered_at_once(self, consul: FakeConsul) -> None:
        consul.index = 500
        restored = {KEY: (doc(5), 300)}
        consul.at(10, lambda: consul.restore(restored, 300))
        consul.at(11, lambda: consul.put(KEY, doc(6)))
        _, got = run_watch(consul)
        woken = consul.reads[1]
        assert (woken.end, woken.outcome) == (10, "index 500")  # what it read before
        assert consul.reads[2].index == 0  # back early, unchanged: read again from 0
        assert got.first_time(has(doc(5))) == 10  # not a whole wait later
        assert got.first_time(has(doc(6))) == 11

    def test_early_unchanged_answers_that_keep_coming_back_off(self, consul: FakeConsul) -> None:
        """A proxy that answers blocking queries early with the same index cannot make it spin."""
        consul.until = consul.clock() + 120
        consul.answer_early = True
        run_watch(consul)
        blocking = [r for r in consul.reads if r.index > 0]
        assert all(r.end == r.start for r in blocking)  # every blocking read came back at once
        assert len(consul.reads) < 60  # backed off: not 10 reads a second for 2 minutes

    def test_a_leader_election_costs_its_own_length(self, consul: FakeConsul) -> None:
        consul.at(10, lambda: consul.drop("HTTP 500", status=500))
        consul.at(10, lambda: setattr(consul, "leaderless_until", 15))
        consul.at(12, lambda: consul.put(KEY, doc(2)))  # accepted by the new leader's log
        _, got = run_watch(consul)
        assert got.first_time(has(doc(2))) == 15  # the held re-sync read answered at once

    @pytest.mark.parametrize("failures", range(1, 12))
    def test_an_outage_that_ends_just_after_a_failed_try_costs_at_most_itself(
        self, failures: int
    ) -> None:
        """The worst case: short pauses so far, then the longest one the jitter allows."""
        jitter = [0.0] * failures + [0.999999] * 50
        tries = list(itertools.accumulate(backoff(n, 1.0, 30.0, 0.0) for n in range(failures)))
        outage = tries[-1] + 0.001  # Consul answers again a moment after the last try failed
        consul = FakeConsul(FakeClock(), until=10 + outage + 100)
        consul.put(KEY, doc(1))
        consul.at(10, lambda: consul.drop("connection reset by peer"))
        consul.at(10, lambda: setattr(consul, "refuse_until", 10 + outage))
        consul.at(10 + outage, lambda: consul.put(KEY, doc(2)))
        _, got = run_watch(consul, jitter=iter(jitter))
        recovered = got.first_time(has(doc(2))) - (10 + outage)
        assert recovered <= min(outage + BACKOFF_FIRST, BACKOFF_CAP)

    @settings(max_examples=100, deadline=None)
    @given(
        outage=st.floats(0.5, 900),
        jitter=st.lists(st.floats(0, 0.999999), min_size=1, max_size=40),
    )
    def test_after_an_outage_of_t_seconds_the_next_try_comes_within_t_plus_first(
        self, outage: float, jitter: list[float]
    ) -> None:
        consul = FakeConsul(FakeClock(), until=10 + outage + 100)
        consul.put(KEY, doc(1))
        consul.at(10, lambda: consul.drop("connection reset by peer"))
        consul.at(10, lambda: setattr(consul, "refuse_until", 10 + outage))
        consul.at(10 + outage, lambda: consul.put(KEY, doc(2)))
        _, got = run_watch(consul, jitter=itertools.cycle(jitter))
        recovered = got.first_time(has(doc(2))) - (10 + outage)
        assert recovered <= min(outage + BACKOFF_FIRST, BACKOFF_CAP) + 1e-6

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(
            st.one_of(
                st.integers(0, 30).map(lambda i: ("index", i)),
                st.sampled_from([("error", 500), ("error", 429), ("error", "timeout")]),
            ),
            min_size=1,
            max_size=80,
        )
    )
    def test_never_more_than_ten_reads_a_second_whatever_consul_answers(
        self, answers: list[tuple[str, object]]
    ) -> None:
        clock = FakeClock()
        consul = FakeConsul(clock, until=1e9)
        consul.put(KEY, doc(1))
        script = iter(answers)

        def fault(read: Read) -> CoordError | None:
            kind, value = next(script, ("stop", None))
            if kind == "stop":
                consul.until = clock()  # the next sleep or read ends the run
                return CoordError("done", condition="done")
            if kind == "error":
                retry_after = 0.0 if value == 429 else None
                return CoordError(str(value), condition=str(value), retry_after=retry_after)
            consul.reported_index = int(str(value))
            consul.index = consul.index + 1  # every read answers at once
            return None

        consul.fault = fault
        run_watch(consul)
        assert_paced([r.start for r in consul.reads], PRODUCTION.min_interval)


def assert_paced(starts: list[float], interval: float) -> None:
    """Check the token bucket: any n consecutive reads span at least (n - 2) intervals."""
    for i, j in itertools.combinations(range(len(starts)), 2):
        assert starts[j] - starts[i] >= (j - i - 1) * interval - 1e-9, (i, j, starts[i : j + 1])


# -- the real client through a fault proxy ---------------------------------------------


class SleepUntil(FakeSleep):
    """A `FakeSleep` that parks once the fake clock reaches ``until``."""

    def __init__(self, clock: FakeClock, *, until: float) -> None:
        super().__init__(clock)
        self.until = until

    def __call__(self, seconds: float, stop: threading.Event) -> bool:
        if self.clock() + seconds >= self.until:
            self.parked.set()
            return stop.wait()
        return super().__call__(seconds, stop)


class Collect:
    """Collect a watch's snapshots; wait for one that satisfies a test."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.snapshots: list[Snapshot] = []

    def __call__(self, snapshot: Snapshot) -> None:
        with self.cond:
            self.snapshots.append(dict(snapshot))
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[Snapshot], bool], timeout: float) -> None:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(map(predicate, self.snapshots)), timeout)
        assert ok, f"no matching snapshot within {timeout} s: {self.snapshots[-3:]}"


def blocking_reads(server: ConsulServer) -> int:
    return sum(1 for r in server.requests_log if "index" in r.query)


@pytest.fixture
def server() -> Iterator[ConsulServer]:
    with ConsulServer(jitter=False) as server:
        for i in range(30):
            server.put(KEY, doc(1 + i % 5))
        server.put(KEY, doc(1))
        yield server


@pytest.fixture
def proxy(server: ConsulServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.addr) as proxy:
        yield proxy


@pytest.mark.fault_injection
class TestGapsThroughAProxy:
    """Issue #8's gaps with the real client, production wait and timeout, real sockets."""

    def test_start_up_through_a_link_that_answers_in_6_5_s(
        self, server: ConsulServer, proxy: FaultProxy
    ) -> None:
        proxy.set_latency(to_client=6.5)
        coord = breaker.ConsulCoord(proxy.addr)  # wait 55 s, timeout 5 s
        got = Collect()
        coord.watch(PREFIX, got)
        got.wait_for(has(doc(1)), timeout=9)  # before: cut off at 5 s, every time
        proxy.set_latency()
        coord.close()

    def test_a_change_after_a_rebuilt_cluster_answers_5xx_arrives_at_once(
        self, server: ConsulServer, proxy: FaultProxy
    ) -> None:
        clock = FakeClock()
        rebuilt = threading.Event()

        def rebuild_while_backing_off(seconds: float) -> None:
            if watch.health().last_error and not rebuilt.is_set():
                server.restart(reset_index=True)  # indexes start over at 1
                rebuilt.set()

        sleep = FakeSleep(clock, on_pause=rebuild_while_backing_off)
        coord = breaker.ConsulCoord(proxy.addr, clock=clock, sleep=sleep)
        got = Collect()
        watch = coord.watch(PREFIX, got)
        got.wait_for(has(doc(1)), timeout=5)
        eventually(lambda: blocking_reads(server) >= 1)
        server.fail_next(1, status=500, body="No cluster leader")
        server.put(KEY, doc(2))  # wakes the blocking query; the next one gets the 500
        assert rebuilt.wait(5)
        server.clear_requests_log()
        server.put(KEY, doc(3))  # index 2, far below the index the watcher last held
        got.wait_for(has(doc(3)), timeout=5)  # before: only when the 55 s wait ran out
        assert "index" not in server.requests_log[0].query  # the re-sync read
        coord.close()

    def test_a_snapshot_restore_is_applied_at_once(self, server: ConsulServer) -> None:
        """Consul wakes blocked queries with what they read before: not a whole wait later."""
        server.put(KEY, doc(2))
        snapshot = server.snapshot()
        for i in range(5):
            server.put(KEY, doc(3 + i))  # the index moves on past the snapshot's
        coord = breaker.ConsulCoord(server.addr)  # wait 55 s, timeout 5 s
        got = Collect()
        coord.watch(PREFIX, got)
        got.wait_for(has(doc(7)), timeout=5)
        eventually(lambda: server.blocking_queries >= 1)
        server.restore(snapshot)
        got.wait_for(has(doc(2)), timeout=5)  # before: only when the 55 s wait ran out
        coord.close()

    def test_index_0_for_a_minute_is_backed_off_with_one_warning(
        self, server: ConsulServer, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Issue 21 through the proxy: every answer says index 0, for a simulated minute."""
        proxy.rewrite_header("X-Consul-Index", "0")
        clock = FakeClock()
        sleep = SleepUntil(clock, until=clock() + 60)
        with caplog.at_level(logging.WARNING, logger="breaker"):
            coord = breaker.ConsulCoord(proxy.addr, clock=clock, sleep=sleep)
            coord.watch(PREFIX, Collect())
            assert sleep.parked.wait(10)
            coord.close()
        reads = server.requests_log
        assert [r.query.get("index") for r in reads[:4]] == [None, "1", None, "1"]
        # Before: 10 reads a second, 600 in the minute.
        assert len(reads) <= 2 * 12, len(reads)
        assert max(sleep.pauses) > 10  # backed off towards the 30 s cap
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "(index 0)" in warnings[0], warnings

    @pytest.mark.skipif(not FaultProxy.can_sever(), reason="needs Linux and CAP_NET_ADMIN")
    def test_a_connection_that_vanished_is_noticed_by_keepalive(
        self, server: ConsulServer, proxy: FaultProxy
    ) -> None:
        coord = breaker.ConsulCoord(proxy.addr, keepalive=1)  # wait 55 s, timeout 5 s
        got = Collect()
        watch = coord.watch(PREFIX, got)
        got.wait_for(has(doc(1)), timeout=5)
        eventually(lambda: blocking_reads(server) >= 1)
        proxy.sever()  # the blocking query's connection is gone; the client is not told
        server.put(KEY, doc(2))
        got.wait_for(has(doc(2)), timeout=10)  # before: only after 55 * 17/16 + 5 s
        assert watch.health().up
        coord.close()


class TestStop:
    def test_a_stop_re_entered_in_the_middle_of_stop_returns(self, clock: FakeClock) -> None:
        """As when a finalizer that closes the coord runs inside stop() itself."""
        consul = FakeConsul(clock)
        reentered: list[str] = []

        class Reentrant(FakeConsul):
            def cut(self) -> None:
                watch.stop()
                reentered.append("cut")

        link = Reentrant(clock)
        watch = ConsulWatch(
            PREFIX,
            lambda snapshot: None,
            link=lambda: link,
            timing=PRODUCTION,
            clock=clock,
            sleep=consul.sleep,
            wall_clock=time.time,
            random=random.random,
        )
        watch.stop()
        assert reentered == ["cut"]
        assert watch.health() == CoordHealth(up=False)


def test_every_connection_has_tcp_keepalive(server: ConsulServer) -> None:
    """The part of gap 4 that needs no privileges: the options are on every socket."""
    settings = ConsulSettings.resolve(server.addr, environ={})
    transport = Transport(settings, keepalive=10)
    ConsulKV(transport, timeout=2).list(PREFIX, read_timeout=2)
    sockets = list(transport._socks._socks)
    assert sockets
    for sock in sockets:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 10_000
    transport.close()
    assert keepalive_options(None) == []


@pytest.mark.fault_injection
class TestFaultProxy:
    """The proxy the gap tests stand on."""

    def get(self, proxy: FaultProxy, *, timeout: float = 5.0, query: str = "") -> requests.Response:
        with requests.Session() as session:
            session.trust_env = False
            return session.get(f"{proxy.url}/v1/kv/{KEY}{query}", timeout=timeout)

    def test_forwards_and_rewrites_a_response_header(
        self, server: ConsulServer, proxy: FaultProxy
    ) -> None:
        first = self.get(proxy)
        assert first.status_code == 200 and first.headers["X-Consul-Index"] == str(server.index)
        proxy.rewrite_header("X-Consul-Index", "0")
        with requests.Session() as session:  # several answers on one kept-alive connection
            for _ in range(3):
                answer = session.get(f"{proxy.url}/v1/kv/{KEY}", timeout=5)
                assert answer.headers["X-Consul-Index"] == "0"
                assert answer.json()[0]["Key"] == KEY  # the body is intact
        proxy.rewrite_header("X-Consul-Index", None)
        assert self.get(proxy).headers["X-Consul-Index"] == str(server.index)
        assert proxy.accepted == 3

    def test_latency_holds_answers_back(self, proxy: FaultProxy) -> None:
        proxy.set_latency(to_client=2.0)
        with pytest.raises(requests.Timeout):
            self.get(proxy, timeout=0.2)
        proxy.set_latency()
        assert self.get(proxy).status_code == 200

    def test_pause_holds_everything_and_resume_delivers_it(self, proxy: FaultProxy) -> None:
        proxy.pause()
        answers: list[int] = []
        thread = threading.Thread(target=lambda: answers.append(self.get(proxy).status_code))
        thread.start()
        thread.join(0.3)
        assert answers == []
        proxy.resume()
        thread.join(5)
        assert answers == [200]

    def test_a_black_hole_answers_nothing_and_closes_nothing(self, proxy: FaultProxy) -> None:
        proxy.blackhole()
        with pytest.raises(requests.Timeout):
            self.get(proxy, timeout=0.2)
        proxy.blackhole(False)
        assert self.get(proxy).status_code == 200

    def test_reset_aborts_a_query_in_flight(self, server: ConsulServer, proxy: FaultProxy) -> None:
        errors: list[BaseException] = []

        def blocking_get() -> None:
            try:
                self.get(proxy, query=f"?index={server.index}&wait=30s")
            except requests.ConnectionError as exc:
                errors.append(exc)

        thread = threading.Thread(target=blocking_get)
        thread.start()
        eventually(lambda: blocking_reads(server) == 1)
        proxy.reset()
        thread.join(5)
        assert len(errors) == 1 and "reset" in str(errors[0]).lower()

    @pytest.mark.skipif(not FaultProxy.can_sever(), reason="needs Linux and CAP_NET_ADMIN")
    def test_sever_leaves_the_client_to_find_out_by_itself(self, proxy: FaultProxy) -> None:
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            eventually(lambda: proxy.open_connections == 1)
            proxy.sever()
            assert proxy.open_connections == 0
            client.settimeout(0.2)
            with pytest.raises(TimeoutError):
                client.recv(1)  # silence: no FIN, no reset
            client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
            client.settimeout(10)
            with pytest.raises(ConnectionResetError):
                client.recv(1)  # the first keepalive probe finds nobody
