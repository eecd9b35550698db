"""The breaker state machine (the seed's scenarios), its concurrency and its model."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from breaker import Breaker, BreakerOpenError, ErrBreakerOpen, Policy, State
from breaker.testing import FakeClock, force_state


class Boom(Exception):
    pass


def ok() -> str:
    return "ok"


def fail() -> None:
    raise Boom("downstream failed")


def make(clock: FakeClock, **policy: object) -> Breaker:
    return Breaker("payments", Policy(**policy), clock=clock)  # type: ignore[arg-type]


def trip(brk: Breaker) -> None:
    for _ in range(brk.policy.failure_threshold):
        with pytest.raises(Boom):
            brk.do(fail)
    assert brk.state is State.OPEN


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
        assert "payments" in str(err) and "18.000s" in str(err)
        assert ErrBreakerOpen is BreakerOpenError

    def test_half_open_then_success_closes(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=2, open_state_timeout=30)
        trip(brk)
        clock.advance(30)
        assert brk.state is State.HALF_OPEN
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
        first, second = brk._admit(), brk._admit()
        with pytest.raises(BreakerOpenError) as info:
            brk.do(ok)
        assert info.value.state is State.HALF_OPEN
        assert info.value.retry_after == pytest.approx(5)
        brk._succeeded(first)
        # A verdict frees no slot: only success_threshold trials per half-open period.
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        brk._succeeded(second)
        assert brk.state is State.CLOSED

    def test_trials_that_never_answer_release_their_slots_after_a_timeout(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=1, open_state_timeout=5)
        trip(brk)
        clock.advance(5)
        stuck = brk._admit()
        clock.advance(4.9)
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        clock.advance(0.1)
        brk.do(ok)
        assert brk.state is State.CLOSED
        brk._succeeded(stuck)  # the stale trial's verdict no longer counts
        brk._failed(stuck, Boom(), None)
        assert brk.state is State.CLOSED


class TestWhatCounts:
    def test_base_exceptions_are_neither_success_nor_failure(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=2)
        with pytest.raises(Boom):
            brk.do(fail)
        for exc in (KeyboardInterrupt(), SystemExit(3), GeneratorExit()):

            def raise_it(exc: BaseException = exc) -> None:
                raise exc

            with pytest.raises(type(exc)):
                brk.do(raise_it)
        assert brk.state is State.CLOSED
        assert brk._st.failures == 1  # neither reset (success) nor counted (failure)

    def test_base_exception_frees_a_half_open_slot(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, success_threshold=1, open_state_timeout=5)
        trip(brk)
        clock.advance(5)

        def interrupted() -> None:
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            brk.do(interrupted)
        assert brk.state is State.HALF_OPEN
        brk.do(ok)
        assert brk.state is State.CLOSED

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
        slow_call = brk._admit()  # admitted while closed
        trip(brk)
        clock.advance(5)
        trial = brk._admit()
        brk._succeeded(slow_call)  # answers late: must not close the half-open breaker
        assert brk.state is State.HALF_OPEN
        brk._failed(slow_call, Boom(), None)  # nor reopen it
        assert brk.state is State.HALF_OPEN
        brk._succeeded(trial)
        assert brk.state is State.CLOSED


class TestAsync:
    def test_do_async_scenarios(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=2, open_state_timeout=1)

        async def aok(x: int) -> int:
            await asyncio.sleep(0)
            return x * 2

        async def afail() -> None:
            await asyncio.sleep(0)
            raise Boom

        async def main() -> None:
            assert await brk.do_async(aok, 21) == 42
            for _ in range(2):
                with pytest.raises(Boom):
                    await brk.do_async(afail)
            with pytest.raises(BreakerOpenError):
                await brk.do_async(aok, 1)
            clock.advance(1)
            assert await brk.do_async(aok, 2) == 4

        asyncio.run(main())
        assert brk.state is State.CLOSED


class TestPolicyAdoption:
    def test_counts_survive_a_threshold_change(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=3)
        for _ in range(2):
            with pytest.raises(Boom):
                brk.do(fail)
        brk._adopt(Policy(failure_threshold=5))
        for _ in range(2):
            with pytest.raises(Boom):
                brk.do(fail)
        assert brk.state is State.CLOSED  # 4 of 5
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.OPEN

    def test_a_shorter_timeout_applies_to_the_current_open_period(self, clock: FakeClock) -> None:
        brk = make(clock, failure_threshold=1, open_state_timeout=60)
        trip(brk)
        clock.advance(10)
        brk._adopt(Policy(failure_threshold=1, open_state_timeout=5))
        assert brk.state is State.HALF_OPEN


class TestListeners:
    def test_transitions_are_reported_outside_the_lock(self, clock: FakeClock) -> None:
        seen: list[tuple[State, State, bool]] = []

        def notify(b: Breaker, old: State, new: State) -> None:
            # Reading the breaker here would deadlock if the lock were still held.
            seen.append((old, new, b._lock.acquire(blocking=False)))
            b._lock.release()

        brk = Breaker(
            "p", Policy(failure_threshold=1, open_state_timeout=1), clock=clock, notify=notify
        )
        trip(brk)
        clock.advance(1)
        brk.do(ok)
        assert seen == [
            (State.CLOSED, State.OPEN, True),
            (State.OPEN, State.HALF_OPEN, True),
            (State.HALF_OPEN, State.CLOSED, True),
        ]

    def test_a_failing_listener_cannot_hurt_the_call(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        def notify(b: Breaker, old: State, new: State) -> None:
            raise RuntimeError("listener bug")

        brk = Breaker("p", Policy(failure_threshold=1), clock=clock, notify=notify)
        with pytest.raises(Boom):
            brk.do(fail)
        assert brk.state is State.OPEN
        assert "state-change listener failed" in caplog.text

    def test_default_notify_logs_opening_as_warning(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        brk = make(clock, failure_threshold=1, open_state_timeout=1)
        with caplog.at_level(logging.INFO, logger="breaker"):
            trip(brk)
            clock.advance(1)
            brk.do(ok)
        levels = [(r.levelname, r.getMessage()) for r in caplog.records]
        assert levels == [
            ("WARNING", "breaker 'payments': closed -> open"),
            ("INFO", "breaker 'payments': open -> half-open"),
            ("INFO", "breaker 'payments': half-open -> closed"),
        ]

    def test_force_state(self, clock: FakeClock) -> None:
        brk = make(clock, open_state_timeout=5)
        force_state(brk, "open")
        assert brk.state is State.OPEN
        with pytest.raises(BreakerOpenError):
            brk.do(ok)
        force_state(brk, State.CLOSED)
        assert brk.do(ok) == "ok"


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

    def test_sixteen_threads_take_about_as_long_as_one(self) -> None:
        brk = Breaker("p", Policy(), clock=time.monotonic)
        n, calls, pause = 16, 5, 0.05

        def worker() -> None:
            for _ in range(calls):
                brk.do(time.sleep, pause)

        threads = [threading.Thread(target=worker) for _ in range(n)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        # Serialized, this would take n * calls * pause = 4 s; concurrent, 0.25 s.
        assert elapsed < calls * pause * 4

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
        deadline = time.monotonic() + 10
        while len(admitted) + len(rejected) < n and time.monotonic() < deadline:
            time.sleep(0.001)
        release.set()
        for t in threads:
            t.join()
        assert len(admitted) == 3
        assert len(rejected) == n - 3
        assert brk.state is State.CLOSED


class BreakerModel(RuleBasedStateMachine):
    """The engine against a small reference model of the seed's state machine."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.policy = Policy(failure_threshold=3, success_threshold=2, open_state_timeout=10)
        self.brk = Breaker("m", self.policy, clock=self.clock)
        self.state = "closed"
        self.failures = 0
        self.successes = 0
        self.opened = 0.0
        self.entered = 0.0
        self.admitted = 0
        self.in_flight: list[tuple[object, int]] = []  # (era token, model epoch)
        self.epoch = 0

    def _model_tick(self) -> None:
        if self.state == "open" and self.clock() - self.opened >= self.policy.open_state_timeout:
            self._enter("half-open")

    def _enter(self, state: str) -> None:
        self.state = state
        self.entered = self.clock()
        self.epoch += 1
        self.successes = 0
        self.admitted = 0
        if state == "closed":
            self.failures = 0
        if state == "open":
            self.opened = self.clock()

    @rule(seconds=st.sampled_from([0.5, 3, 9.99, 10, 25]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def admit(self) -> None:
        self._model_tick()
        if (
            self.state == "half-open"
            and self.admitted >= self.policy.success_threshold
            and self.clock() - self.entered >= self.policy.open_state_timeout
        ):
            self._enter("half-open")  # unanswered trials give up their slots
        expect_admitted = self.state == "closed" or (
            self.state == "half-open" and self.admitted < self.policy.success_threshold
        )
        try:
            token = self.brk._admit()
        except BreakerOpenError as exc:
            assert not expect_admitted
            assert exc.state.value == self.state
            return
        assert expect_admitted
        if self.state == "half-open":
            self.admitted += 1
        self.in_flight.append((token, self.epoch))

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), outcome=st.sampled_from(["success", "failure", "abort", "excluded"]))
    def finish(self, data: st.DataObject, outcome: str) -> None:
        index = data.draw(st.integers(0, len(self.in_flight) - 1))
        token, epoch = self.in_flight.pop(index)
        current = epoch == self.epoch
        if outcome in ("success", "excluded"):
            if outcome == "success":
                self.brk._succeeded(token)  # type: ignore[arg-type]
            else:
                from breaker._engine import exclusions

                self.brk._failed(token, Boom(), exclusions([Boom]))  # type: ignore[arg-type]
            if current and self.state == "closed":
                self.failures = 0
            elif current and self.state == "half-open":
                self.successes += 1
                if self.successes >= self.policy.success_threshold:
                    self._enter("closed")
        elif outcome == "failure":
            self.brk._failed(token, Boom(), None)  # type: ignore[arg-type]
            if current and self.state == "closed":
                self.failures += 1
                if self.failures >= self.policy.failure_threshold:
                    self._enter("open")
            elif current and self.state == "half-open":
                self._enter("open")
        else:
            self.brk._aborted(token)  # type: ignore[arg-type]
            if current and self.state == "half-open":
                self.admitted -= 1

    @rule(
        failure=st.integers(1, 5),
        success=st.integers(1, 4),
        timeout=st.sampled_from([5.0, 10.0, 20.0]),
    )
    def change_policy(self, failure: int, success: int, timeout: float) -> None:
        self.policy = Policy(
            failure_threshold=failure, success_threshold=success, open_state_timeout=timeout
        )
        self.brk._adopt(self.policy)

    @invariant()
    def same_state(self) -> None:
        self._model_tick()
        assert self.brk.state.value == self.state
        if self.state == "closed":
            assert self.brk._st.failures == self.failures


TestBreakerModel = BreakerModel.TestCase
TestBreakerModel.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


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


_unused: Callable[..., object] = ok
