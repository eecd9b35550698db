"""The breaker state machine: the seed's scenarios, trial slots, what counts, the richer
failure model (results, slow calls, rates, growing open periods), modes, statistics and
concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from breaker import (
    Breaker,
    BreakerOpenError,
    ErrBreakerOpen,
    Guard,
    Mode,
    Outcome,
    Policy,
    State,
)
from breaker._engine import _breaker as breaker_module
from breaker.testing import FakeClock, adopt, force_state

from .helpers import Abort, Boom, NotFound, eventually, fail, ok

Notify = Callable[[Breaker, State, State], None]


def adopt_at(brk: Breaker, policy: Policy, mode_deadline: float) -> None:
    """Adopt ``policy`` as a provider does: with the mode's deadline fixed at first adoption."""
    brk._adopt(policy, mode_deadline=mode_deadline)


def make(clock: FakeClock, notify: Notify | None = None, **policy: object) -> Breaker:
    extra = {} if notify is None else {"notify": notify}
    return Breaker("payments", Policy(**policy), clock=clock, wall=clock.wall, **extra)  # type: ignore[arg-type]


def trip(brk: Breaker) -> None:
    for _ in range(brk.policy.failure_threshold):
        with pytest.raises(Boom):
            brk.do(fail)
    assert brk.state is State.OPEN


def enter(brk: Breaker) -> Guard:
    """Start a call that stays in flight until `leave` (a guard entered but not left)."""
    return Guard(brk).__enter__()


def leave(call: Guard, exc: BaseException | None = None) -> None:
    call.__exit__(None if exc is None else type(exc), exc, None)


class TestSeedScenarios:
    def test_success_returns_the_result(self, clock: FakeClock) -> None:
        brk = make(clock)
        assert brk.do(ok) == "ok"
        assert brk.do(lambda a, b=0: a + b, 1, b=2) == 3
        assert brk.state is State.CLOSED

    def test_failure_propagates_the_original_error(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=3)
        with pytest.raises(Boom, match="downstream failed"):
            brk.do(fail)
        assert brk.state is State.CLOSED

    def test_consecutive_failures_trip_and_a_success_resets_the_run(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=3)
        for _ in range(2):
            with pytest.raises(Boom):
                brk.do(fail)
        brk.do(ok)
        for _ in range(2):
            with pytest.raises(Boom):
                brk.do(fail)
        assert brk.state is State.CLOSED
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.OPEN

    def test_open_rejects_at_once_without_running(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, open_state_timeout=30)
        trip(brk)
        ran = []
        clock.advance(12)
        with pytest.raises(BreakerOpenError) as info:
            brk.do(lambda: ran.append(1))
        assert ran == []
        err = info.value
        assert err.name == "payments"
        assert err.state is State.OPEN
        assert err.retry_after == pytest.approx(18)
        assert brk.retry_after == pytest.approx(18)
        assert "payments" in str(err) and "18.000s" in str(err)
        assert ErrBreakerOpen is BreakerOpenError

    def test_half_open_then_success_closes(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=2, open_state_timeout=30)
        trip(brk)
        clock.advance(30)
        assert brk.state is State.HALF_OPEN
        assert brk.retry_after == 0.0
        brk.do(ok)
        assert brk.state is State.HALF_OPEN
        brk.do(ok)
        assert brk.state is State.CLOSED
        brk.do(ok)

    def test_half_open_then_failure_reopens_with_a_fresh_timeout(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=2, open_state_timeout=30)
        trip(brk)
        clock.advance(31)
        brk.do(ok)
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.OPEN
        clock.advance(29)
        with pytest.raises(BreakerOpenError) as info:
            brk.do(ok)
        assert info.value.retry_after == pytest.approx(1)
        clock.advance(1)
        assert brk.do(ok) == "ok"

    def test_half_open_admits_at_most_success_threshold_trials(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=2, open_state_timeout=5)
        trip(brk)
        clock.advance(5)
        first, second = enter(brk), enter(brk)
        clock.advance(1)
        with pytest.raises(BreakerOpenError) as info:
            brk.do(ok)
        assert info.value.state is State.HALF_OPEN
        assert info.value.retry_after == pytest.approx(4)  # when the oldest trial goes stale
        assert "trial calls are under way" in str(info.value)
        leave(first)
        # A verdict frees no slot: only success_threshold trials per half-open period.
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        leave(second)
        assert brk.state is State.CLOSED


class TestTrialSlots:
    def test_a_trial_that_never_answers_gives_up_its_slot_after_a_timeout(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=1, open_state_timeout=5)
        trip(brk)
        clock.advance(5)
        stuck = enter(brk)
        clock.advance(4.9)
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        clock.advance(0.1)
        brk.do(ok)
        assert brk.state is State.CLOSED
        leave(stuck, Boom())  # the stale trial's verdict no longer counts
        assert brk.state is State.CLOSED

    def test_a_young_trial_keeps_its_slot_in_an_old_half_open_period(
        self, clock: FakeClock
    ) -> None:
        """Staleness runs from each trial's admission, not from the start of half-open."""
        brk = make(clock, failure_threshold=1, success_threshold=1, open_state_timeout=10)
        trip(brk)
        clock.advance(10)
        assert brk.state is State.HALF_OPEN  # a health check read it: half-open began here
        clock.advance(25)  # sparse traffic: the half-open period is now 25 s old
        trial = enter(brk)
        clock.advance(1.5)
        with pytest.raises(BreakerOpenError) as info:
            brk.do(ok)  # must not take the slot of a trial admitted 1.5 s ago
        assert info.value.retry_after == pytest.approx(8.5)
        leave(trial, Boom())
        assert brk.state is State.OPEN  # the trial's failure counted

    def test_a_cancelled_trial_frees_its_slot(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=1, open_state_timeout=5)
        trip(brk)
        clock.advance(5)
        trial = enter(brk)
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        leave(trial, Abort())
        brk.do(ok)
        assert brk.state is State.CLOSED


class TestWhatCounts:
    def test_base_exceptions_are_neither_success_nor_failure(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=2)
        with pytest.raises(Boom):
            brk.do(fail)
        for exc in (KeyboardInterrupt(), SystemExit(3), GeneratorExit(), Abort()):

            def raise_it(exc: BaseException = exc) -> None:
                raise exc

            with pytest.raises(type(exc)):
                brk.do(raise_it)
        assert brk.state is State.CLOSED
        with pytest.raises(Boom):  # the run of failures was neither reset nor extended
            brk.do(fail)
        assert brk.state is State.OPEN
        assert brk.stats().calls["cancelled"] == 4

    def test_cancelled_trial_frees_its_slot(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=1, open_state_timeout=5)
        trip(brk)
        clock.advance(5)

        async def main() -> None:
            started = asyncio.Event()

            async def slow() -> None:
                started.set()
                await asyncio.sleep(3600)

            task = asyncio.create_task(brk.do_async(slow))
            await started.wait()
            with pytest.raises(BreakerOpenError):
                await brk.do_async(asyncio.sleep, 0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await brk.do_async(asyncio.sleep, 0)

        asyncio.run(main())
        assert brk.state is State.CLOSED

    def test_stale_outcomes_do_not_count(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=1, open_state_timeout=5)
        slow_call = enter(brk)  # admitted while closed
        trip(brk)
        clock.advance(5)
        trial = enter(brk)
        leave(slow_call)  # answers late: must not close the half-open breaker
        assert brk.state is State.HALF_OPEN
        leave(trial)
        assert brk.state is State.CLOSED


class TestPolicyAdoption:
    def test_counts_survive_a_threshold_change(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=3)
        for _ in range(2):
            with pytest.raises(Boom):
                brk.do(fail)
        adopt(brk, Policy(failure_threshold=5))
        for _ in range(2):
            with pytest.raises(Boom):
                brk.do(fail)
        assert brk.state is State.CLOSED  # 4 of 5
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.OPEN

    def test_a_lower_failure_threshold_trips_on_the_next_failure_not_by_itself(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, failure_threshold=5)
        for _ in range(3):
            with pytest.raises(Boom):
                brk.do(fail)
        adopt(brk, Policy(failure_threshold=2))
        assert brk.state is State.CLOSED
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.OPEN

    def test_a_shorter_timeout_applies_to_the_current_open_period(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, open_state_timeout=60)
        trip(brk)
        clock.advance(10)
        adopt(brk, Policy(failure_threshold=1, open_state_timeout=5))
        assert brk.state is State.HALF_OPEN

    def test_lowering_success_threshold_in_half_open_closes_at_once(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=5, open_state_timeout=5)
        trip(brk)
        clock.advance(5)
        for _ in range(3):
            brk.do(ok)
        assert brk.state is State.HALF_OPEN
        adopt(brk, Policy(failure_threshold=1, success_threshold=2, open_state_timeout=5))
        assert brk.state is State.CLOSED
        assert brk.do(ok) == "ok"

    def test_raising_success_threshold_in_half_open_opens_more_slots(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=1, open_state_timeout=5)
        trip(brk)
        clock.advance(5)
        first = enter(brk)
        adopt(brk, Policy(failure_threshold=1, success_threshold=2, open_state_timeout=5))
        second = enter(brk)
        leave(first)
        leave(second)
        assert brk.state is State.CLOSED


class TestListeners:
    def test_transitions_are_reported_outside_the_lock(self, clock: FakeClock) -> None:
        seen: list[tuple[State, State, bool]] = []

        def notify(b: Breaker, old: State, new: State) -> None:
            # stats() takes the breaker's lock: this would deadlock if it were still held.
            seen.append((old, new, b.stats().calls["success"] >= 0))

        brk = make(clock, notify, failure_threshold=1, open_state_timeout=1)
        trip(brk)
        clock.advance(1)
        brk.do(ok)
        assert seen == [
            (State.CLOSED, State.OPEN, True),
            (State.OPEN, State.HALF_OPEN, True),
            (State.HALF_OPEN, State.CLOSED, True),
        ]

    def test_a_listener_may_call_back_into_the_breaker(self, clock: FakeClock) -> None:
        seen: list[tuple[State, State]] = []

        def notify(b: Breaker, old: State, new: State) -> None:
            seen.append((old, new))
            if new is State.OPEN and len(seen) == 1:
                force_state(b, State.CLOSED)  # reported after this listener returns
            assert b.state in State

        brk = make(clock, notify, failure_threshold=1)
        trip_once = pytest.raises(Boom)
        with trip_once:
            brk.do(fail)
        assert seen == [(State.CLOSED, State.OPEN), (State.OPEN, State.CLOSED)]
        assert brk.state is State.CLOSED

    def test_a_failing_listener_cannot_hurt_the_call(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        def notify(b: Breaker, old: State, new: State) -> None:
            raise RuntimeError("listener bug")

        brk = make(clock, notify, failure_threshold=1)
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.OPEN
        assert "state-change listener failed" in caplog.text

    def test_default_notify_logs_opening_as_warning(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        brk = make(clock, failure_threshold=1, open_state_timeout=1)
        with caplog.at_level(logging.INFO, logger="breaker.state"):
            trip(brk)
            clock.advance(1)
            brk.do(ok)
        assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
            ("breaker.state", "WARNING", "breaker 'payments': closed -> open"),
            ("breaker.state", "INFO", "breaker 'payments': open -> half-open"),
            ("breaker.state", "INFO", "breaker 'payments': half-open -> closed"),
        ]

    def test_each_breaker_reports_its_transitions_in_order_under_threads(self) -> None:
        """16 threads flip one breaker as fast as they can; listeners see a chain."""
        seen: list[tuple[State, State]] = []
        gauge: list[State] = [State.CLOSED]

        def notify(b: Breaker, old: State, new: State) -> None:
            time.sleep(0.00005)  # a listener does some work (other threads run meanwhile)
            seen.append((old, new))
            gauge[0] = new  # a gauge kept by a listener

        brk = Breaker(
            "p",
            Policy(failure_threshold=1, success_threshold=1, open_state_timeout=1e-9),
            clock=time.monotonic,
            notify=notify,
        )
        start = threading.Barrier(16)

        def worker(seed: int) -> None:
            rng = random.Random(seed)
            start.wait()
            for _ in range(300):
                with contextlib.suppress(Boom, BreakerOpenError):
                    brk.do(fail if rng.random() < 0.5 else ok)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(seen) > 100
        breaks = [(a, b) for a, b in itertools.pairwise(seen) if a[1] != b[0]]
        assert breaks == []
        assert seen[0][0] is State.CLOSED
        final = brk.state  # a catch-up transition, if any, is delivered before this returns
        assert gauge[0] is final
        assert sum(brk.stats().transitions.values()) == len(seen)

    def test_force_state(self, clock: FakeClock) -> None:
        brk = make(clock, open_state_timeout=5)
        force_state(brk, "open")
        assert brk.state is State.OPEN
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        force_state(brk, State.CLOSED)
        assert brk.do(ok) == "ok"


class TestRetryAfter:
    def test_retry_after_is_read_where_the_decision_is_made(self) -> None:
        """A trip between the caller's clock reading and its state reading must not inflate it."""
        now = [0.0]
        hook: list[Callable[[], None]] = []

        def clock() -> float:
            now[0] += 5.0  # every reading is later than the last, as under contention
            reading = now[0]
            if hook:
                hook.pop()()  # after this reading, another thread trips the breaker anew
            return reading

        brk = Breaker("p", Policy(failure_threshold=1, open_state_timeout=60), clock=clock)
        with pytest.raises(Boom):
            brk.do(fail)
        hook.append(lambda: force_state(brk, State.OPEN))
        with pytest.raises(BreakerOpenError) as info:
            brk.do(ok)
        assert 0 < info.value.retry_after <= 60


class TestFailureModel:
    def test_a_failed_result_counts_and_is_still_returned(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=2)
        for _ in range(2):
            with Guard(brk) as call:
                status = 503
                if status >= 500:
                    call.record_failure()
        assert brk.state is State.OPEN
        assert brk.stats().calls["failure"] == 2

    def test_record_failure_with_async_with(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1)

        async def main() -> None:
            async with Guard(brk) as call:
                call.record_failure()

        asyncio.run(main())
        assert brk.state is State.OPEN

    def test_slow_calls_fail_however_they_end(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=3, slow_call_duration=2)

        def slow(result: object = "ok", exc: BaseException | None = None) -> object:
            clock.advance(2.5)
            if exc is not None:
                raise exc
            return result

        assert brk.do(slow) == "ok"  # returned, but slow: a failure
        with pytest.raises(NotFound), Guard(brk, exclude=[NotFound]):
            slow(exc=NotFound())  # excluded, but slow: a failure
        with pytest.raises(Abort):
            brk.do(slow, exc=Abort())  # interrupted, but slow: a failure
        assert brk.state is State.OPEN
        assert brk.stats().calls["slow"] == 3

    def test_a_call_just_under_the_slow_duration_is_not_slow(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, slow_call_duration=2)

        def quick() -> str:
            clock.advance(2)
            return "ok"

        assert brk.do(quick) == "ok"
        assert brk.state is State.CLOSED
        assert brk.stats().calls["success"] == 1

    def test_an_outer_asyncio_timeout_after_the_slow_duration_is_a_failure(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, failure_threshold=2, slow_call_duration=2)

        async def charge(takes: float) -> None:
            clock.advance(takes)
            await asyncio.sleep(3600)  # the downstream hangs

        async def main(takes: float) -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(brk.do_async(charge, takes), 0.01)

        asyncio.run(main(1.0))  # cancelled sooner than the slow duration: neutral
        assert brk.stats().calls["cancelled"] == 1
        asyncio.run(main(3.0))
        asyncio.run(main(3.0))
        assert brk.state is State.OPEN
        assert brk.stats().calls["slow"] == 2

    def test_a_failure_rate_trips_where_consecutive_failures_never_reach_the_threshold(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, failure_threshold=5, failure_rate=0.5, minimum_calls=10, rate_window=60)
        for i in range(9):
            if i % 2:
                with pytest.raises(Boom):
                    brk.do(fail)
            else:
                brk.do(ok)
            clock.advance(1)
        assert brk.state is State.CLOSED  # 4 of 9: under the minimum of calls
        with pytest.raises(Boom):
            brk.do(fail)  # 5 of 10
        assert brk.state is State.OPEN

    def test_a_success_can_complete_the_minimum_calls_and_trip(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=0, failure_rate=0.5, minimum_calls=4)
        with pytest.raises(Boom):
            brk.do(fail)
        with pytest.raises(Boom):
            brk.do(fail)
        brk.do(ok)
        assert brk.state is State.CLOSED
        brk.do(ok)  # 2 of 4
        assert brk.state is State.OPEN

    def test_old_calls_leave_the_window(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=0, failure_rate=0.5, minimum_calls=4, rate_window=10)
        for _ in range(3):
            with pytest.raises(Boom):
                brk.do(fail)
        clock.advance(11.5)  # beyond the window and its last bucket
        for _ in range(3):
            brk.do(ok)
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.CLOSED  # 1 of 4: the old failures expired

    def test_excluded_errors_are_not_failures_of_the_rate(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=0, failure_rate=0.5, minimum_calls=4)
        for _ in range(3):
            with pytest.raises(NotFound), Guard(brk, exclude=[NotFound]):
                raise NotFound
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.CLOSED
        assert brk.stats().calls["excluded"] == 3

    def test_the_window_starts_empty_when_the_breaker_closes(self, clock: FakeClock) -> None:
        brk = make(
            clock,
            failure_threshold=0,
            failure_rate=0.5,
            minimum_calls=2,
            open_state_timeout=5,
        )
        for _ in range(2):
            with pytest.raises(Boom):
                brk.do(fail)
        assert brk.state is State.OPEN
        clock.advance(5)
        brk.do(ok)
        assert brk.state is State.CLOSED
        with pytest.raises(Boom):
            brk.do(fail)  # 1 of 1 in the new window: under the minimum
        assert brk.state is State.CLOSED

    def test_every_success_counts_in_the_bucket_of_its_own_time(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=0, failure_rate=0.5, minimum_calls=1, rate_window=10)
        for _ in range(1000):
            brk.do(ok)  # all at one instant, on the lock-free lane
        clock.advance(30)  # the window has moved on
        with pytest.raises(Boom):
            brk.do(fail)
        window = brk._window
        assert window is not None
        assert (window.calls, window.failures) == (1, 1)  # none of the old successes
        assert brk.stats().calls["success"] == 1000

    def test_old_successes_are_not_fresh_after_an_idle_hour(self, clock: FakeClock) -> None:
        """Issue 16, defect 1: 30 successes, an idle hour, then failures: 10 failures trip."""
        brk = make(clock, failure_threshold=0, failure_rate=0.5, minimum_calls=10, rate_window="1m")
        for _ in range(30):
            brk.do(ok)
        clock.advance(3600)
        for _ in range(9):
            with pytest.raises(Boom):
                brk.do(fail)
        assert brk.state is State.CLOSED  # 9 calls: under the minimum
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.OPEN

    def test_successes_spread_over_buckets_expire_bucket_by_bucket(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=0, failure_rate=0.5, minimum_calls=4, rate_window=10)
        for _ in range(10):
            brk.do(ok)
            clock.advance(1)  # one success per bucket, all on the lock-free lane
        clock.advance(5.5)  # the window now holds the last 4 or 5 of them
        for _ in range(4):
            with pytest.raises(Boom):
                brk.do(fail)
        window = brk._window
        assert window is not None
        assert window.failures == 4
        assert window.calls - 4 in (4, 5)  # a bucket counts while any of it is inside

    def test_open_periods_grow_after_failed_trials_up_to_a_cap(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, open_state_timeout=10, max_open_state_timeout=35)
        trip(brk)
        periods = []
        for _ in range(4):
            periods.append(brk.retry_after)
            clock.advance(brk.retry_after)
            with pytest.raises(Boom):
                brk.do(fail)  # the trial fails
        periods.append(brk.retry_after)
        assert periods == [10, 20, 35, 35, 35]
        clock.advance(35)
        brk.do(ok)
        assert brk.state is State.CLOSED
        trip(brk)
        assert brk.retry_after == 10  # closing reset it

    def test_the_rate_rule_costs_no_lock_while_closed_with_nothing_counted(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, failure_rate=0.5)
        brk.do(ok)
        assert brk._fast is brk._m.era  # the plain lane: the ticker places its successes


class TestModes:
    def test_a_timed_call_after_disabled_ends_runs_and_keeps_the_lock_free(
        self, clock: FakeClock
    ) -> None:
        """The first call after a mode ends is admitted under the lock: a timed one took
        the lock again there (it is not reentrant) and hung every caller of the breaker."""
        until = clock.datetime() + timedelta(seconds=10)
        brk = make(clock, mode="disabled", mode_until=until, slow_call_duration=1.0)
        clock.advance(10)
        done: list[str] = []
        thread = threading.Thread(target=lambda: done.append(brk.do(lambda: "ran")), daemon=True)
        thread.start()
        thread.join(5)
        assert done == ["ran"], "the call hung"
        assert brk.mode is Mode.AUTO and brk._lock.acquire(timeout=1)
        brk._lock.release()
        guard = Guard(brk).__enter__()  # and it watches a timed call as before
        clock.advance(2)
        assert brk.stats().calls["slow"] == 1
        guard.__exit__(None, None, None)

    def test_forced_open_rejects_every_call_until_mode_until(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        until = clock.datetime() + timedelta(minutes=10)
        brk = make(clock, mode="forced-open", mode_until=until)
        assert brk.state is State.OPEN and brk.mode is Mode.FORCED_OPEN
        ran = []
        with pytest.raises(BreakerOpenError) as info:
            brk.do(lambda: ran.append(1))
        assert ran == []
        assert info.value.retry_after == pytest.approx(600)
        assert "forced open" in str(info.value)
        clock.advance(599)
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        clock.advance(1)
        with caplog.at_level(logging.INFO, logger="breaker.state"):
            assert brk.mode is Mode.AUTO  # expired by itself, with no write
            assert brk.state is State.HALF_OPEN  # trial calls decide
        assert "mode forced-open expired" in caplog.text
        brk.do(ok)
        assert brk.state is State.CLOSED

    @pytest.mark.parametrize(
        "keys",
        [{}, {"slow_call_duration": 60}, {"max_concurrent_calls": 5}],
        ids=["plain lane", "timed lane", "limit lane"],
    )
    def test_no_call_runs_once_the_mode_reads_forced_open(
        self, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, keys: dict[str, Any]
    ) -> None:
        # A mode changes under the breaker's lock, and its log line may hand the GIL to
        # another thread: a call made then must meet the new mode, not the lane before it.
        brk = make(clock, **keys)
        brk.do(ok)  # the fast lanes are open
        seen: list[tuple[Mode, list[int]]] = []

        def midway(name: str, old: Mode, new: Mode) -> None:
            ran: list[int] = []
            with contextlib.suppress(BreakerOpenError):
                brk.do(lambda: ran.append(1))
            seen.append((brk._mode, ran))

        monkeypatch.setattr(breaker_module, "log_change", midway)
        adopt(brk, Policy(mode="forced-open", **keys))
        assert seen == [(Mode.FORCED_OPEN, [])]
        assert brk.stats().calls["rejected"] == 1

    @pytest.mark.parametrize(
        "keys", [{"slow_call_duration": 60}, {"max_concurrent_calls": 5}], ids=["timed", "limit"]
    )
    def test_a_change_that_changes_nothing_keeps_the_lane(
        self, clock: FakeClock, keys: dict[str, Any]
    ) -> None:
        # Calls admitted on a lane settle fast only while it is current: a lane made anew
        # by every locked section would send them all the slow way, each making another.
        brk = make(clock, **keys)
        lane = brk._timed
        assert lane is not None
        adopt(brk, Policy(**keys))
        assert brk._timed is lane and lane.until > clock()

    def test_forced_open_without_an_expiry_reports_the_open_state_timeout(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, mode="forced-open", open_state_timeout=30)
        clock.advance(3600)
        with pytest.raises(BreakerOpenError) as info:
            brk.do(ok)
        assert info.value.retry_after == 30

    def test_a_mode_until_in_the_past_means_auto(self, clock: FakeClock) -> None:
        brk = make(clock, mode="forced-open", mode_until=clock.datetime() - timedelta(seconds=1))
        assert brk.mode is Mode.AUTO
        assert brk.do(ok) == "ok"

    def test_a_mode_ends_when_the_wall_clock_reaches_mode_until(self, clock: FakeClock) -> None:
        # Adopted while the wall clock is a day behind, then NTP steps it right: the kill
        # switch ends 15 minutes after it was set, not a day and 15 minutes.
        until = clock.datetime() + timedelta(minutes=15)
        clock.step_wall(-86_400)
        brk = make(clock, mode="forced-open", mode_until=until)
        assert brk.retry_after == pytest.approx(86_400 + 900)
        clock.step_wall(86_400)
        assert brk.retry_after == pytest.approx(900)  # the nearer of the two ends
        with pytest.raises(BreakerOpenError) as info:
            brk.do(ok)
        assert info.value.retry_after == pytest.approx(900)
        clock.advance(899)
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        clock.advance(1)
        assert brk.do(ok) == "ok"  # a trial call: the switch ended
        assert (brk.mode, brk.state) == (Mode.AUTO, State.CLOSED)

    def test_a_disabled_mode_ends_by_the_wall_clock_too(self, clock: FakeClock) -> None:
        until = clock.datetime() + timedelta(minutes=15)
        clock.step_wall(-86_400)
        brk = make(clock, failure_threshold=1, mode="disabled", mode_until=until)
        clock.step_wall(86_400)
        clock.advance(900)
        with pytest.raises(Boom):
            brk.do(fail)  # counted by the state machine again: it trips
        assert (brk.mode, brk.state) == (Mode.AUTO, State.OPEN)

    def test_a_mode_deadline_bounds_a_wall_clock_that_steps_back(self, clock: FakeClock) -> None:
        until = clock.datetime() + timedelta(minutes=15)
        policy = Policy(mode="forced-open", mode_until=until)
        deadline = clock() + 900
        brk = make(clock)
        adopt_at(brk, policy, deadline)
        assert brk.mode is Mode.FORCED_OPEN
        clock.advance(900)
        assert brk.mode is Mode.AUTO
        clock.step_wall(-600)  # modeUntil is 10 minutes ahead on the wall clock again
        adopt_at(brk, policy, deadline)  # re-layered by an unrelated edit: the same deadline
        assert brk.mode is Mode.AUTO
        assert brk.do(ok) == "ok"

    def test_a_mode_deadline_may_end_a_mode_before_mode_until(self, clock: FakeClock) -> None:
        until = clock.datetime() + timedelta(minutes=15)
        brk = make(clock)
        adopt_at(brk, Policy(mode="forced-open", mode_until=until), clock() + 60)
        assert brk.retry_after == pytest.approx(60)
        clock.advance(60)
        assert brk.mode is Mode.AUTO

    def test_disabled_runs_every_call_and_never_trips(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, mode="disabled")
        for _ in range(5):
            with pytest.raises(Boom):
                brk.do(fail)
        assert brk.state is State.CLOSED
        assert brk.stats().calls["failure"] == 5
        adopt(brk, Policy(failure_threshold=1))
        assert brk.state is State.CLOSED  # nothing was counted while disabled
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.OPEN

    def test_disabling_an_open_breaker_closes_it(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1)
        trip(brk)
        adopt(brk, Policy(failure_threshold=1, mode="disabled"))
        assert brk.state is State.CLOSED
        assert brk.do(ok) == "ok"

    def test_shadow_reports_what_it_would_do_but_never_rejects(self, clock: FakeClock) -> None:
        seen: list[tuple[State, State]] = []
        brk = make(
            clock,
            lambda b, o, n: seen.append((o, n)),
            failure_threshold=2,
            success_threshold=1,
            open_state_timeout=5,
            mode="shadow",
        )
        for _ in range(2):
            with pytest.raises(Boom):
                brk.do(fail)
        assert brk.state is State.OPEN
        assert brk.do(ok) == "ok"  # would have been rejected: runs, uncounted
        with pytest.raises(Boom):
            brk.do(fail)  # so does this, and it changes nothing
        assert brk.state is State.OPEN
        clock.advance(5)
        brk.do(ok)  # a real trial
        assert brk.state is State.CLOSED
        assert seen == [
            (State.CLOSED, State.OPEN),
            (State.OPEN, State.HALF_OPEN),
            (State.HALF_OPEN, State.CLOSED),
        ]
        assert brk.stats().calls == {
            "success": 1,
            "failure": 2,
            "slow": 0,
            "timeout": 0,
            "excluded": 0,
            "rejected": 2,
            "bulkhead_full": 0,
            "cancelled": 0,
        }

    def test_shadow_to_auto_keeps_the_state_and_enforces_it(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, mode="shadow")
        with pytest.raises(Boom):
            brk.do(fail)
        adopt(brk, Policy(failure_threshold=1))
        with pytest.raises(BreakerOpenError):
            brk.do(ok)


class TestStats:
    def test_every_outcome_is_counted_once(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=2, open_state_timeout=1)
        brk.do(ok)
        with pytest.raises(NotFound), Guard(brk, exclude=[NotFound]):
            raise NotFound
        with pytest.raises(Abort), Guard(brk):
            raise Abort
        for _ in range(2):
            with pytest.raises(Boom):
                brk.do(fail)
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        stats = brk.stats()
        assert stats.calls == {
            "success": 1,
            "failure": 2,
            "slow": 0,
            "timeout": 0,
            "excluded": 1,
            "rejected": 1,
            "bulkhead_full": 0,
            "cancelled": 1,
        }
        assert stats.transitions == {("closed", "open"): 1}
        assert stats.to_dict() == {
            "calls": stats.calls,
            "transitions": {"closed->open": 1},
            "in_flight": 0,
        }

    def test_lock_free_counters_are_exact_under_threads(self) -> None:
        brk = Breaker("p", Policy(), clock=time.monotonic)
        n, calls = 8, 5000
        start = threading.Barrier(n)

        def worker() -> None:
            start.wait()
            for _ in range(calls):
                brk.do(ok)

        threads = [threading.Thread(target=worker) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert brk.stats().calls["success"] == n * calls


class TestNoSerialization:
    """No lock is held while user code runs."""

    def test_threads_overlap_inside_one_breaker(self) -> None:
        brk = Breaker("p", Policy(), clock=time.monotonic)
        n = 16
        inside = threading.Barrier(n, timeout=10)

        def call() -> None:
            # Every thread must be inside the guarded function at the same time to pass
            # the barrier; a lock around user code would make this time out.
            brk.do(inside.wait)

        threads = [threading.Thread(target=call) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert not inside.broken

    def test_threads_overlap_with_every_rule_on(self) -> None:
        policy = Policy(slow_call_duration=60, failure_rate=0.9, max_open_state_timeout=600)
        brk = Breaker("p", policy, clock=time.monotonic)
        n = 16
        inside = threading.Barrier(n, timeout=10)
        threads = [threading.Thread(target=brk.do, args=(inside.wait,)) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert not inside.broken

    def test_event_loop_is_never_blocked_by_another_call(self) -> None:
        brk = Breaker("p", Policy(), clock=time.monotonic)

        async def main() -> None:
            gate = asyncio.Event()
            entered = 0

            async def wait_gate() -> None:
                nonlocal entered
                entered += 1
                await gate.wait()

            tasks = [asyncio.create_task(brk.do_async(wait_gate)) for _ in range(200)]
            while entered < 200:
                await asyncio.sleep(0)
            gate.set()
            await asyncio.gather(*tasks)

        asyncio.run(asyncio.wait_for(main(), 10))


class TestHalfOpenUnderConcurrency:
    def test_exactly_success_threshold_threads_get_through(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=3, open_state_timeout=1)
        trip(brk)
        clock.advance(1)
        n = 32
        start = threading.Barrier(n)
        release = threading.Event()
        admitted = []
        rejected = []
        lock = threading.Lock()

        def trial() -> None:
            with lock:
                admitted.append(1)
            release.wait(10)

        def worker() -> None:
            start.wait()
            try:
                brk.do(trial)
            except BreakerOpenError:
                with lock:
                    rejected.append(1)

        threads = [threading.Thread(target=worker) for _ in range(n)]
        for t in threads:
            t.start()
        eventually(lambda: len(admitted) + len(rejected) == n)
        release.set()
        for t in threads:
            t.join()
        assert len(admitted) == 3
        assert len(rejected) == n - 3
        assert brk.state is State.CLOSED


def test_repr_names_state_and_policy(clock: FakeClock) -> None:
    text = repr(make(clock))
    assert "payments" in text and "closed" in text and "failure_threshold=5" in text
    assert "pybreaker" not in text.lower()


def test_no_pybreaker_in_errors(clock: FakeClock) -> None:
    brk = make(clock, failure_threshold=1)
    trip(brk)
    with pytest.raises(BreakerOpenError) as info:
        brk.do(ok)
    assert type(info.value).__module__.startswith("breaker")
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_errors_and_outcomes_read_as_text() -> None:
    assert str(Outcome.SLOW) == "slow" and str(Mode.SHADOW) == "shadow"
    by_hand = BreakerOpenError("payments is down")  # as library error subclasses may be built
    assert str(by_hand) == "payments is down"
    rejected = BreakerOpenError("payments", State.OPEN, 1.5)
    assert rejected.mode is Mode.AUTO and "retry in 1.500s" in str(rejected)
