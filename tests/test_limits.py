"""Load protection: maxConcurrentCalls (waiting, rejecting, changed live), async timeouts,
and hung calls counted while they hang; on every way in, in every mode."""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import breaker
from breaker import (
    Breaker,
    BreakerOpenError,
    BulkheadFullError,
    CallTimeoutError,
    MemoryCoord,
    Mode,
    Policy,
    RejectedError,
    State,
)
from breaker._engine._limits import Deadline, Timers, Waiter
from breaker.testing import FakeClock, adopt, force_state

from .helpers import PREFIX, Boom, eventually

TIMEOUT = 5.0


def make(clock: Callable[[], float] | None = None, **policy: Any) -> Breaker:
    return Breaker("payments", Policy(**policy), clock=clock or time.monotonic)


class Gate:
    """Calls that block until released: a downstream that holds its callers."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()

    def call(self) -> str:
        self.entered.release()
        assert self.release.wait(TIMEOUT)
        return "ok"

    def wait_entered(self, n: int) -> None:
        for _ in range(n):
            assert self.entered.acquire(timeout=TIMEOUT)


def run_threads(target: Callable[[], Any], n: int) -> tuple[list[Any], list[threading.Thread]]:
    results: list[Any] = []

    def worker() -> None:
        try:
            results.append(target())
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    return results, threads


class TestConcurrencyLimit:
    def test_a_limit_of_3_under_10_callers_admits_3_and_rejects_7(self) -> None:
        brk = make(max_concurrent_calls=3)
        gate = Gate()
        results, threads = run_threads(lambda: brk.do(gate.call), 10)
        gate.wait_entered(3)
        eventually(lambda: len(results) == 7)  # the rest were turned away at once
        assert all(isinstance(r, BulkheadFullError) for r in results)
        assert brk.stats().in_flight == 3
        gate.release.set()
        for t in threads:
            t.join(TIMEOUT)
        assert results.count("ok") == 3
        stats = brk.stats()
        assert stats.calls["bulkhead_full"] == 7 and stats.calls["success"] == 3
        assert stats.calls["failure"] == 0 and brk.state is State.CLOSED  # not the downstream's
        assert stats.in_flight == 0

    def test_the_rejection_says_what_and_is_a_rejected_error(self) -> None:
        brk = make(max_concurrent_calls=1)
        gate = Gate()
        _, threads = run_threads(lambda: brk.do(gate.call), 1)
        gate.wait_entered(1)
        with pytest.raises(RejectedError) as info:
            brk.do(lambda: None)
        assert isinstance(info.value, BulkheadFullError)
        assert info.value.name == "payments" and info.value.limit == 1
        assert info.value.retry_after == 0.0
        assert "1 calls in flight" in str(info.value)
        gate.release.set()
        threads[0].join(TIMEOUT)

    def test_a_waiter_gets_in_when_a_slot_frees_within_max_wait(self) -> None:
        brk = make(max_concurrent_calls=1, max_wait_duration=TIMEOUT)
        gate = Gate()
        first, first_threads = run_threads(lambda: brk.do(gate.call), 1)
        gate.wait_entered(1)
        second, second_threads = run_threads(lambda: brk.do(lambda: "second"), 1)
        eventually(lambda: brk._waiters)  # waiting, not rejected
        assert second == []
        gate.release.set()
        for t in first_threads + second_threads:
            t.join(TIMEOUT)
        assert first == ["ok"] and second == ["second"]
        assert brk.stats().calls["bulkhead_full"] == 0

    def test_a_waiter_is_rejected_when_no_slot_frees_in_time(self) -> None:
        brk = make(max_concurrent_calls=1, max_wait_duration=0.05)
        gate = Gate()
        _, threads = run_threads(lambda: brk.do(gate.call), 1)
        gate.wait_entered(1)
        t0 = time.monotonic()
        with pytest.raises(BulkheadFullError) as info:
            brk.do(lambda: None)
        assert time.monotonic() - t0 >= 0.05
        assert "waited 0.050s" in str(info.value)
        assert not brk._waiters
        gate.release.set()
        threads[0].join(TIMEOUT)

    def test_waiters_get_in_first_come_first_served(self) -> None:
        brk = make(max_concurrent_calls=1, max_wait_duration=TIMEOUT)
        gate = Gate()
        _, threads = run_threads(lambda: brk.do(gate.call), 1)
        gate.wait_entered(1)
        order: list[int] = []
        waiters = []
        for i in range(3):
            _, ts = run_threads(lambda i=i: brk.do(order.append, i), 1)  # type: ignore[misc]
            waiters += ts
            eventually(lambda i=i: len(brk._waiters or ()) == i + 1)  # type: ignore[misc]
        gate.release.set()
        for t in threads + waiters:
            t.join(TIMEOUT)
        assert order == [0, 1, 2]

    def test_the_limit_changes_live_from_the_coord(self) -> None:
        coord = MemoryCoord(
            {PREFIX + "payments.json": '{"maxConcurrentCalls": 1, "maxWaitDuration": "5s"}'}
        )
        config = breaker.Config("checkout", PREFIX)
        with breaker.new(config, coord=coord) as provider:
            brk = provider.get_breaker("payments")
            gate = Gate()
            results, threads = run_threads(lambda: brk.do(gate.call), 4)
            gate.wait_entered(1)
            eventually(lambda: len(brk._waiters or ()) == 3)
            # Raising the limit lets the waiters in at once.
            coord.put(
                PREFIX + "payments.json", '{"maxConcurrentCalls": 4, "maxWaitDuration": "5s"}'
            )
            gate.wait_entered(3)
            assert brk.stats().in_flight == 4
            # Lowering it below the calls in flight rejects new calls until enough end.
            coord.put(PREFIX + "payments.json", '{"maxConcurrentCalls": 2}')
            with pytest.raises(BulkheadFullError):
                brk.do(lambda: None)
            gate.release.set()
            for t in threads:
                t.join(TIMEOUT)
            assert results == ["ok"] * 4
            assert brk.do(lambda: "room again") == "room again"

    def test_an_open_breaker_rejects_before_the_limit_is_asked(self) -> None:
        brk = make(max_concurrent_calls=1, failure_threshold=1)
        with pytest.raises(Boom):
            brk.do(_fail)
        with pytest.raises(BreakerOpenError):
            brk.do(lambda: None)
        assert brk.stats().calls["bulkhead_full"] == 0

    def test_a_trial_rejected_by_the_limit_gives_its_half_open_slot_back(self) -> None:
        clock = FakeClock()
        brk = make(clock, max_concurrent_calls=1, failure_threshold=1, success_threshold=2)
        force_state(brk, "half-open")
        held = brk._admit()  # a trial in flight: the limit is reached
        with pytest.raises(BulkheadFullError):
            brk.do(lambda: None)
        assert brk._m.era.admitted == 1  # the rejected call's slot went back
        brk._settle(held)
        assert brk.do(lambda: "trial") == "trial"
        assert brk.state is State.CLOSED

    def test_shadow_mode_counts_what_the_limit_would_reject_and_runs_it(self) -> None:
        brk = make(max_concurrent_calls=1, mode="shadow")
        gate = Gate()
        results, threads = run_threads(lambda: brk.do(gate.call), 3)
        gate.wait_entered(3)  # all run
        assert brk.stats().calls["bulkhead_full"] == 2
        gate.release.set()
        for t in threads:
            t.join(TIMEOUT)
        assert results == ["ok"] * 3
        calls = brk.stats().calls
        assert calls["success"] == 1  # the two over the limit ran uncounted
        assert brk.stats().in_flight == 0

    def test_shadow_counts_a_call_an_open_breaker_would_reject_once(self) -> None:
        brk = make(max_concurrent_calls=1, mode="shadow")
        force_state(brk, "open")
        gate = Gate()
        results, threads = run_threads(lambda: brk.do(gate.call), 2)
        gate.wait_entered(2)  # both run: shadow rejects nothing
        gate.release.set()
        for t in threads:
            t.join(TIMEOUT)
        assert results == ["ok", "ok"]
        calls = brk.stats().calls  # the breaker would have turned both away, before the limit
        assert (calls["rejected"], calls["bulkhead_full"]) == (2, 0)

    def test_disabled_turns_the_limit_off_and_forced_open_rejects_all(self) -> None:
        brk = make(max_concurrent_calls=1, mode="disabled")
        gate = Gate()
        results, threads = run_threads(lambda: brk.do(gate.call), 3)
        gate.wait_entered(3)
        gate.release.set()
        for t in threads:
            t.join(TIMEOUT)
        assert results == ["ok"] * 3
        adopt(brk, Policy(max_concurrent_calls=1, mode="forced-open"))
        with pytest.raises(BreakerOpenError):
            brk.do(lambda: None)

    def test_a_waiting_caller_interrupted_gives_up_its_place(self) -> None:
        brk = make(max_concurrent_calls=1, max_wait_duration=TIMEOUT)

        async def scenario() -> None:
            gate = asyncio.Event()

            async def hold() -> None:
                await gate.wait()

            holder = asyncio.ensure_future(brk.do_async(hold))
            await asyncio.sleep(0)
            waiter = asyncio.ensure_future(brk.do_async(hold))
            for _ in range(10):
                await asyncio.sleep(0)
            assert len(brk._waiters or ()) == 1
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert not brk._waiters
            gate.set()
            await holder

        asyncio.run(scenario())
        assert brk.stats().in_flight == 0

    def test_asyncio_tasks_wait_and_are_rejected_without_blocking_the_loop(self) -> None:
        brk = make(max_concurrent_calls=3)

        async def scenario() -> list[object]:
            gate = asyncio.Event()

            async def hold() -> str:
                await gate.wait()
                return "ok"

            tasks = [asyncio.ensure_future(brk.do_async(hold)) for _ in range(10)]
            for _ in range(5):
                await asyncio.sleep(0)
            assert brk.stats().in_flight == 3
            gate.set()
            return await asyncio.gather(*tasks, return_exceptions=True)

        results = asyncio.run(scenario())
        assert results.count("ok") == 3
        assert sum(isinstance(r, BulkheadFullError) for r in results) == 7

    def test_an_async_waiter_gets_a_slot_another_thread_freed(self) -> None:
        brk = make(max_concurrent_calls=1, max_wait_duration=TIMEOUT)
        gate = Gate()
        _, threads = run_threads(lambda: brk.do(gate.call), 1)
        gate.wait_entered(1)

        async def scenario() -> str:
            async def work() -> str:
                return "async"

            task = asyncio.ensure_future(brk.do_async(work))
            for _ in range(10):
                await asyncio.sleep(0)
            assert not task.done()
            gate.release.set()  # the thread's call ends and hands its slot to the task
            return await task

        assert asyncio.run(scenario()) == "async"
        threads[0].join(TIMEOUT)


LONG = 30.0  # a wait no test sits out: a caller still waiting when it is joined fails it


def held_with_waiters(
    brk: Breaker, waiting: int
) -> tuple[Gate, list[threading.Thread], list[Any], list[threading.Thread]]:
    """Hold ``brk``'s one slot in a thread; queue ``waiting`` callers behind it."""
    gate = Gate()
    _, holders = run_threads(lambda: brk.do(gate.call), 1)
    gate.wait_entered(1)
    results, waiters = run_threads(lambda: brk.do(lambda: "ran"), waiting)
    eventually(lambda: len(brk._waiters or ()) == waiting)
    return gate, holders, results, waiters


class TestWaitersFollowTheBreaker:
    """A caller waiting for a slot is answered as the breaker stands now, not as it stood."""

    def test_forcing_open_turns_the_waiters_away_at_once(self) -> None:
        brk = make(max_concurrent_calls=1, max_wait_duration=LONG)
        gate, holders, results, waiters = held_with_waiters(brk, 3)
        adopt(brk, Policy(max_concurrent_calls=1, max_wait_duration=LONG, mode="forced-open"))
        for t in waiters:
            t.join(TIMEOUT)
        assert len(results) == 3
        assert all(isinstance(r, BreakerOpenError) and r.mode is Mode.FORCED_OPEN for r in results)
        assert not brk._waiters
        assert brk.stats().calls["rejected"] == 3 and brk.stats().calls["bulkhead_full"] == 0
        gate.release.set()
        holders[0].join(TIMEOUT)
        assert brk.stats().in_flight == 0

    def test_a_trip_turns_the_waiters_away_and_none_of_them_runs(self) -> None:
        brk = make(max_concurrent_calls=1, max_wait_duration=LONG, failure_threshold=1)
        gate = Gate()

        def failing() -> None:
            gate.call()
            raise Boom

        _, holders = run_threads(lambda: brk.do(failing), 1)
        gate.wait_entered(1)
        ran: list[int] = []
        results, waiters = run_threads(lambda: brk.do(ran.append, 1), 2)
        eventually(lambda: len(brk._waiters or ()) == 2)
        gate.release.set()  # the call in flight fails: the breaker trips
        for t in holders + waiters:
            t.join(TIMEOUT)
        assert brk.state is State.OPEN
        assert ran == []
        assert len(results) == 2 and all(isinstance(r, BreakerOpenError) for r in results)
        assert brk.stats().in_flight == 0

    def test_a_shorter_wait_turns_away_the_waiters_it_has_run_out(self) -> None:
        clock = FakeClock()
        brk = make(clock, max_concurrent_calls=1, max_wait_duration=LONG)
        gate = Gate()
        _, holders = run_threads(lambda: brk.do(gate.call), 1)
        gate.wait_entered(1)
        early, early_threads = run_threads(lambda: brk.do(lambda: "early"), 1)
        eventually(lambda: len(brk._waiters or ()) == 1)
        clock.advance(10)
        late, late_threads = run_threads(lambda: brk.do(lambda: "late"), 1)
        eventually(lambda: len(brk._waiters or ()) == 2)
        # 5s: the early caller has waited 10s, past it; the late one has just come.
        adopt(brk, Policy(max_concurrent_calls=1, max_wait_duration=5.0))
        early_threads[0].join(TIMEOUT)
        assert len(early) == 1 and isinstance(early[0], BulkheadFullError)
        assert "waited 10.000s" in str(early[0])
        assert len(brk._waiters or ()) == 1 and late == []  # still within its 5s
        adopt(brk, Policy(max_concurrent_calls=1, max_wait_duration=LONG))
        gate.release.set()
        for t in holders + late_threads:
            t.join(TIMEOUT)
        assert late == ["late"]
        assert brk.stats().calls["bulkhead_full"] == 1

    def test_a_task_keeps_waiting_by_a_wait_that_moved_and_gets_in(self) -> None:
        clock = FakeClock()
        brk = make(clock, max_concurrent_calls=1, max_wait_duration=LONG)

        async def scenario() -> str:
            gate = asyncio.Event()

            async def hold() -> None:
                await gate.wait()

            async def work() -> str:
                return "in"

            holder = asyncio.ensure_future(brk.do_async(hold))
            await asyncio.sleep(0)
            waiter = asyncio.ensure_future(brk.do_async(work))
            while not brk._waiters:
                await asyncio.sleep(0)
            clock.advance(2)
            adopt(brk, Policy(max_concurrent_calls=1, max_wait_duration=3.0))  # 1s left
            for _ in range(10):
                await asyncio.sleep(0)  # the task wakes, finds time left, waits again
            assert not waiter.done() and len(brk._waiters or ()) == 1
            gate.set()
            await holder
            return await asyncio.wait_for(waiter, TIMEOUT)

        assert asyncio.run(scenario()) == "in"
        assert brk.stats().in_flight == 0

    def test_the_longest_wait_a_policy_allows_waits_and_lets_the_caller_in(self) -> None:
        brk = make(max_concurrent_calls=1)
        adopt(
            brk,
            Policy.from_dict(
                {"maxConcurrentCalls": 1, "maxWaitDuration": "2562047h47m16.854775807s"}
            ),
        )
        gate = Gate()
        _, holders = run_threads(lambda: brk.do(gate.call), 1)
        gate.wait_entered(1)
        results, waiters = run_threads(lambda: brk.do(lambda: "in"), 1)
        eventually(lambda: len(brk._waiters or ()) == 1)
        gate.release.set()
        for t in holders + waiters:
            t.join(TIMEOUT)
        assert results == ["in"]  # not an OverflowError from the lock's timeout

    def test_a_waiter_whose_loop_closed_does_not_break_the_caller_that_frees_a_slot(
        self,
    ) -> None:
        loop = asyncio.new_event_loop()
        waiter = Waiter(loop, 0.0, 1.0)
        loop.close()
        waiter.grant()  # the caller handing on its slot carries on
        assert waiter.granted

    def test_a_wait_is_woken_once_until_rearmed(self) -> None:
        waiter = Waiter(None, 0.0, 1.0)
        assert waiter.wait(0.0) is False  # nothing woke it
        waiter.nudge()
        waiter.nudge()
        assert waiter.wait(0.0) is True and waiter.wait(0.0) is False
        waiter.rearm()
        waiter.grant()
        assert waiter.granted and waiter.wait(0.0) is True

    def test_the_wait_for_a_slot_makes_no_call_slow_nor_hung(self, clock: FakeClock) -> None:
        brk = make(
            clock,
            max_concurrent_calls=1,
            max_wait_duration=LONG,
            slow_call_duration=1.0,
            failure_threshold=10,
        )
        held = breaker.Guard(brk).__enter__()  # the slot, taken in this thread
        results, waiters = run_threads(lambda: brk.do(lambda: "ran"), 1)
        eventually(lambda: len(brk._waiters or ()) == 1)
        clock.advance(5)
        assert brk.stats().calls["slow"] == 1  # the call holding the slot hangs; not the waiter
        held.__exit__(None, None, None)
        waiters[0].join(TIMEOUT)
        assert results == ["ran"]
        stats = brk.stats()  # timed from when it got the slot: not slow
        assert (stats.calls["slow"], stats.calls["success"]) == (1, 1)

    def test_the_trials_in_flight_are_forgotten_and_the_answered_keep_their_slots(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, success_threshold=3)  # what a forked child does (test_fork.py)
        force_state(brk, "half-open")
        answered, _ = brk._admit(), brk._admit()
        brk._settle(answered)
        brk._m.forget_trials()
        assert brk._m.era.admitted == 1 and not brk._m.era.trials
        assert brk.do(lambda: "a trial again") == "a trial again"

    def test_a_trial_that_waited_goes_last_among_the_trials(self, clock: FakeClock) -> None:
        brk = make(clock, success_threshold=3)
        force_state(brk, "half-open")
        first, second = brk._admit(), brk._admit()
        clock.advance(2)
        brk._m.restart(first, clock())  # type: ignore[arg-type]
        assert list(brk._m.era.trials) == [second, first]  # the oldest is evicted first
        assert first.started == clock()  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        "change",
        [
            {"mode": "disabled"},
            {"mode": "shadow"},
            {"max_concurrent_calls": 0},
            {"max_concurrent_calls": 3},
        ],
    )
    def test_lifting_the_limit_lets_the_waiters_in_at_once(self, change: dict[str, Any]) -> None:
        brk = make(max_concurrent_calls=1, max_wait_duration=LONG)
        gate, holders, results, waiters = held_with_waiters(brk, 2)
        adopt(brk, Policy(**{"max_concurrent_calls": 1, "max_wait_duration": LONG, **change}))
        for t in waiters:
            t.join(TIMEOUT)
        assert results == ["ran", "ran"]
        gate.release.set()
        holders[0].join(TIMEOUT)
        assert brk.stats().in_flight == 0

    def test_every_way_in_waiting_is_turned_away_when_forced_open(self) -> None:
        coord = MemoryCoord(
            {PREFIX + "payments.json": '{"maxConcurrentCalls": 1, "maxWaitDuration": "30s"}'}
        )
        with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:
            brk = provider.get_breaker("payments")

            @provider.circuit("payments")
            def function() -> str:
                return "ran"

            @provider.circuit("payments")
            async def afunction() -> str:
                return "ran"

            class Client:
                @provider.circuit("payments")
                def method(self) -> str:
                    return "ran"

                @provider.circuit("payments")
                async def amethod(self) -> str:
                    return "ran"

            def guarded() -> str:
                with provider.guard("payments"):
                    return "ran"

            async def aguarded() -> str:
                async with provider.guard("payments"):
                    return "ran"

            async def work() -> str:
                return "ran"

            held = provider.guard("payments").__enter__()
            sync_ways = [lambda: brk.do(lambda: "ran"), function, Client().method, guarded]
            results: list[Any] = []
            threads = []
            for way in sync_ways:
                got, started = run_threads(way, 1)
                results += [got]
                threads += started
            async_ways = [lambda: brk.do_async(work), afunction, Client().amethod, aguarded]

            async def scenario() -> list[Any]:
                tasks = [asyncio.ensure_future(way()) for way in async_ways]
                while len(brk._waiters or ()) < 8:
                    await asyncio.sleep(0.002)
                coord.put(
                    PREFIX + "payments.json", '{"maxConcurrentCalls": 1, "mode": "forced-open"}'
                )
                return await asyncio.wait_for(
                    asyncio.gather(*tasks, return_exceptions=True), TIMEOUT
                )

            eventually(lambda: len(brk._waiters or ()) == 4)
            awaited = asyncio.run(scenario())
            for t in threads:
                t.join(TIMEOUT)
            outcomes = [r[0] for r in results if r] + awaited
            assert len(outcomes) == 8
            assert all(isinstance(r, BreakerOpenError) for r in outcomes), outcomes
            held.__exit__(None, None, None)
            assert brk.stats().in_flight == 0


def _fail() -> None:
    raise Boom


class TestEveryWayIn:
    """The limit and the rejection on do, do_async, both decorators, both guards."""

    @pytest.fixture
    def provider(self) -> Iterator[breaker.Provider]:
        coord = MemoryCoord({PREFIX + "payments.json": '{"maxConcurrentCalls": 1}'})
        with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:
            yield provider

    def hold(self, provider: breaker.Provider) -> breaker.Guard:
        return provider.guard("payments").__enter__()

    def test_sync_ways(self, provider: breaker.Provider) -> None:
        held = self.hold(provider)

        @provider.circuit("payments")
        def function() -> None: ...

        class Client:
            @provider.circuit("payments")
            def method(self) -> None: ...

        brk = provider.get_breaker("payments")
        for way in (
            lambda: brk.do(lambda: None),
            function,
            Client().method,
            lambda: provider.guard("payments").__enter__(),
        ):
            with pytest.raises(BulkheadFullError):
                way()
        held.__exit__(None, None, None)
        assert brk.stats().calls["bulkhead_full"] == 4

    def test_async_ways(self, provider: breaker.Provider) -> None:
        @provider.circuit("payments")
        async def function() -> None: ...

        class Client:
            @provider.circuit("payments")
            async def method(self) -> None: ...

        brk = provider.get_breaker("payments")

        async def noop() -> None: ...

        async def scenario() -> None:
            held = self.hold(provider)
            for way in (
                lambda: brk.do_async(noop),
                function,
                Client().method,
                provider.guard("payments").__aenter__,
            ):
                with pytest.raises(BulkheadFullError):
                    await way()
            held.__exit__(None, None, None)

        asyncio.run(scenario())
        assert brk.stats().calls["bulkhead_full"] == 4

    def test_a_fallback_receives_the_rejection(self, provider: breaker.Provider) -> None:
        held = self.hold(provider)

        @provider.circuit("payments", fallback=lambda exc: type(exc).__name__)
        def function() -> str:
            return "ran"

        assert function() == "BulkheadFullError"
        held.__exit__(None, None, None)
        assert function() == "ran"


class TestTimeout:
    def test_an_async_call_past_its_timeout_is_cancelled_and_fails(self) -> None:
        brk = make(timeout=0.05, failure_threshold=2)
        cancelled = []

        async def hang() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

        async def scenario() -> None:
            for _ in range(2):
                with pytest.raises(CallTimeoutError) as info:
                    await brk.do_async(hang)
                assert isinstance(info.value, TimeoutError)
                assert info.value.timeout == 0.05 and "0.05s" in str(info.value)
            if sys.version_info >= (3, 11):  # Task.cancelling() is 3.11's
                assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]

        asyncio.run(scenario())
        assert cancelled == [True, True]
        assert brk.stats().calls["timeout"] == 2
        assert brk.state is State.OPEN  # timeouts are failures

    @staticmethod
    def async_ways(provider: breaker.Provider, work: Callable[[], Any]) -> list[Any]:
        """Each async way in, as a coroutine function running ``work``."""

        @provider.circuit("payments")
        async def function() -> Any:
            return await work()

        class Client:
            @provider.circuit("payments")
            async def method(self) -> Any:
                return await work()

        async def guarded() -> Any:
            async with provider.guard("payments"):
                return await work()

        brk = provider.get_breaker("payments")
        return [lambda: brk.do_async(work), function, Client().method, guarded]

    def test_a_lower_timeout_cuts_the_calls_in_flight_past_it(self) -> None:
        coord = MemoryCoord({PREFIX + "payments.json": '{"timeout": "60s"}'})
        with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:
            brk = provider.get_breaker("payments")

            async def hang() -> None:
                await asyncio.sleep(60)

            async def scenario() -> list[Any]:
                tasks = [asyncio.ensure_future(way()) for way in self.async_ways(provider, hang)]
                while brk.stats().in_flight < 4:
                    await asyncio.sleep(0.002)
                coord.put(PREFIX + "payments.json", '{"timeout": "10ms"}')
                return await asyncio.wait_for(
                    asyncio.gather(*tasks, return_exceptions=True), TIMEOUT
                )

            results = asyncio.run(scenario())
            assert all(isinstance(r, CallTimeoutError) for r in results), results
            assert [r.timeout for r in results] == [0.01] * 4
            assert brk.stats().calls["timeout"] == 4 and brk.stats().in_flight == 0

    @pytest.mark.parametrize(
        "policy",
        [
            {"timeout": 60.0},
            {},
            {"timeout": 0.05, "mode": "disabled"},
            {"timeout": 0.05, "mode": "shadow"},
        ],
        ids=["raised", "removed", "disabled", "shadow"],
    )
    def test_a_timeout_lifted_lets_the_calls_in_flight_run_on(self, policy: dict[str, Any]) -> None:
        coord = MemoryCoord({PREFIX + "payments.json": '{"timeout": "50ms"}'})
        with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:
            brk = provider.get_breaker("payments")

            async def scenario() -> list[Any]:
                release = asyncio.Event()

                async def wait() -> str:
                    await release.wait()
                    return "ok"

                tasks = [asyncio.ensure_future(way()) for way in self.async_ways(provider, wait)]
                while brk.stats().in_flight < 4:
                    await asyncio.sleep(0)
                adopt(brk, Policy(**policy))
                await asyncio.sleep(0.1)  # past the deadline the calls began with
                release.set()
                return await asyncio.gather(*tasks, return_exceptions=True)

            assert asyncio.run(scenario()) == ["ok"] * 4
            assert brk.stats().calls["timeout"] == 0

    def test_a_deadline_moves_until_its_call_ends_and_leaves_with_its_loop(self) -> None:
        timers = Timers(1.0)

        async def scenario() -> Deadline:
            deadline = Deadline("payments", 60.0, timers)
            deadline.move(None)  # no timeout: nothing fires
            deadline.move(30.0)
            await asyncio.sleep(0)
            assert deadline.seconds == 30.0 and deadline in timers
            assert deadline.finish(None) is None and deadline not in timers
            deadline.move(0.0)  # too late: the call ended
            await asyncio.sleep(0.01)
            return deadline

        loop = asyncio.new_event_loop()
        deadline = loop.run_until_complete(scenario())
        assert deadline.seconds == 30.0
        timers.add(deadline)  # a call its loop dropped before it ended
        loop.close()
        deadline.move(5.0)
        assert not timers

    def test_every_async_way_is_cut_short(self) -> None:
        coord = MemoryCoord({PREFIX + "payments.json": '{"timeout": "50ms"}'})
        with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:

            @provider.circuit("payments")
            async def function() -> None:
                await asyncio.sleep(60)

            class Client:
                @provider.circuit("payments")
                async def method(self) -> None:
                    await asyncio.sleep(60)

            async def guarded() -> None:
                async with provider.guard("payments"):
                    await asyncio.sleep(60)

            async def scenario() -> None:
                for way in (function, Client().method, guarded):
                    with pytest.raises(CallTimeoutError):
                        await way()

            asyncio.run(scenario())
            assert provider.get_breaker("payments").stats().calls["timeout"] == 3

    def test_a_guard_admitted_the_slow_way_still_finishes_its_deadline(self) -> None:
        # A failure leaves no lane: the next guard is admitted the slow way, on the era,
        # under a timeout. While its block runs the timeout is lifted and a success makes
        # that era the plain lane; leaving, the block must still finish its deadline, or
        # the deadline would cancel the task later, in whatever it awaits then.
        brk = make(timeout=0.05, failure_threshold=5)

        async def boom() -> None:
            raise Boom

        async def quick() -> str:
            return "ok"

        async def scenario() -> None:
            with pytest.raises(Boom):
                await brk.do_async(boom)
            guard = breaker.Guard(brk)
            async with guard:
                adopt(brk, Policy(failure_threshold=5))
                assert await brk.do_async(quick) == "ok"
                assert guard._ticket is brk._fast  # the era admitted it, now the plain lane
            await asyncio.sleep(0.1)  # past the block's deadline

        asyncio.run(scenario())
        assert brk.stats().calls["success"] == 2

    def test_a_fallback_replaces_a_timeout(self) -> None:
        coord = MemoryCoord({PREFIX + "payments.json": '{"timeout": "50ms"}'})
        with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:

            @provider.circuit("payments", fallback=lambda exc: "cached")
            async def function() -> str:
                await asyncio.sleep(60)
                return "fresh"

            assert asyncio.run(function()) == "cached"

    def test_a_call_within_its_timeout_and_sync_calls_are_untouched(self) -> None:
        brk = make(timeout=0.05)

        async def quick() -> str:
            return "ok"

        assert asyncio.run(brk.do_async(quick)) == "ok"
        assert brk.do(time.sleep, 0.06) is None  # sync calls are not cancelled
        assert brk.stats().calls["success"] == 2

    def test_someone_elses_cancellation_and_timeout_stay_theirs(self) -> None:
        brk = make(timeout=60)

        async def raises_timeout() -> None:
            raise TimeoutError("the callee's own")

        async def scenario() -> None:
            with pytest.raises(TimeoutError) as info:
                await brk.do_async(raises_timeout)
            assert not isinstance(info.value, CallTimeoutError)
            task = asyncio.ensure_future(brk.do_async(asyncio.sleep, 60))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(scenario())
        calls = brk.stats().calls
        assert calls["timeout"] == 0 and calls["failure"] == 1 and calls["cancelled"] == 1

    def test_shadow_counts_what_it_would_cut_and_cuts_nothing(self) -> None:
        brk = make(timeout=0.02, mode="shadow", failure_threshold=1)

        async def slow() -> str:
            await asyncio.sleep(0.05)
            return "done"

        assert asyncio.run(brk.do_async(slow)) == "done"
        assert brk.stats().calls["timeout"] == 1
        assert brk.state is State.OPEN  # the state machine runs in shadow mode
        assert brk.do(time.sleep, 0.03) is None  # and sync calls are not judged
        assert brk.stats().calls["timeout"] == 1

    def test_disabled_turns_the_timeout_off(self) -> None:
        brk = make(timeout=0.01, mode="disabled")

        async def slow() -> str:
            await asyncio.sleep(0.03)
            return "done"

        assert asyncio.run(brk.do_async(slow)) == "done"
        assert brk.stats().calls["timeout"] == 0


class TestHungCalls:
    def test_a_hung_call_counts_as_slow_while_it_hangs_and_once(self, clock: FakeClock) -> None:
        brk = make(clock, slow_call_duration=2, failure_threshold=1)
        call = breaker.Guard(brk).__enter__()
        clock.advance(1.5)
        assert brk.state is State.CLOSED
        clock.advance(1.0)  # past 2 s, and past the slice it started in: the ticker sees it
        assert brk.state is State.OPEN  # tripped while the call still hangs
        assert brk.stats().calls["slow"] == 1 and brk.stats().in_flight == 1
        call.__exit__(None, None, None)  # it ends at last: counted once already
        stats = brk.stats()
        assert stats.calls["slow"] == 1 and stats.calls["success"] == 0
        assert stats.in_flight == 0

    def test_hung_calls_trip_the_breaker_as_they_pass_the_limit(self, clock: FakeClock) -> None:
        brk = make(clock, slow_call_duration=2, failure_threshold=3)
        calls = []
        for _ in range(3):
            calls.append(breaker.Guard(brk).__enter__())
            clock.advance(1)
        assert brk.stats().calls["slow"] == 1  # the first has hung for 3 s; the others not yet
        clock.advance(1)
        assert brk.stats().calls["slow"] == 2
        clock.advance(1)
        assert brk.state is State.OPEN
        for call in calls:
            call.__exit__(Boom, Boom(), None)
        assert brk.stats().calls == {**brk.stats().calls, "slow": 3, "failure": 0}

    def test_a_call_that_ends_in_time_or_just_late_counts_as_it_ended(
        self, clock: FakeClock
    ) -> None:
        brk = make(clock, slow_call_duration=2)

        def taking(seconds: float) -> str:
            clock.advance(seconds)
            return "ok"

        brk.do(taking, 1.9)
        brk.do(taking, 2.1)  # slow, by its own clock reading at the end
        calls = brk.stats().calls
        assert calls["success"] == 1 and calls["slow"] == 1

    def test_a_call_admitted_untimed_is_not_judged_by_a_timing_set_while_it_ran(
        self, clock: FakeClock
    ) -> None:
        # Admitted on a lane that limits but does not time: its start was never read.
        brk = make(clock, max_concurrent_calls=5)
        call = breaker.Guard(brk).__enter__()
        clock.advance(0.5)
        adopt(brk, Policy(max_concurrent_calls=5, slow_call_duration=1))
        call.__exit__(None, None, None)
        calls = brk.stats().calls
        assert calls["slow"] == 0 and calls["success"] == 1

    def test_calls_on_the_slow_way_are_watched_too(self, clock: FakeClock) -> None:
        brk = make(clock, slow_call_duration=2, failure_threshold=2)
        with pytest.raises(Boom):
            brk.do(_fail)  # a failure run: calls take the slow way
        call = breaker.Guard(brk).__enter__()
        assert call._ticket.__class__.__name__ == "Call"
        clock.advance(2.5)
        assert brk.state is State.OPEN
        call.__exit__(None, None, None)
        assert brk.stats().calls["slow"] == 1

    def test_a_hung_downstream_trips_a_real_breaker_by_its_ticker(self) -> None:
        coord = MemoryCoord(
            {PREFIX + "payments.json": '{"slowCallDuration": "100ms", "failureThreshold": 1}'}
        )
        with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:
            brk = provider.get_breaker("payments")
            gate = Gate()
            results, threads = run_threads(lambda: brk.do(gate.call), 1)
            gate.wait_entered(1)
            eventually(lambda: brk.state is State.OPEN, timeout=TIMEOUT)  # no other traffic
            assert brk.stats().in_flight == 1
            gate.release.set()
            threads[0].join(TIMEOUT)
            assert results == ["ok"]
            assert brk.stats().calls["slow"] == 1 and brk.stats().calls["success"] == 0

    def test_a_call_the_limit_turns_away_is_not_watched(self, clock: FakeClock) -> None:
        brk = make(clock, slow_call_duration=2, max_concurrent_calls=1, failure_threshold=5)
        held = breaker.Guard(brk).__enter__()
        with pytest.raises(BulkheadFullError):  # the slow way: a timed call, then no slot
            brk.do(lambda: None)
        clock.advance(3)
        assert brk.stats().calls["slow"] == 1  # the held call only
        held.__exit__(None, None, None)

    def test_turning_slow_timing_off_forgets_the_watched_calls(self, clock: FakeClock) -> None:
        brk = make(clock, slow_call_duration=2, failure_threshold=1)
        call = breaker.Guard(brk).__enter__()
        adopt(brk, Policy(failure_threshold=1))
        clock.advance(10)
        assert brk.state is State.CLOSED
        call.__exit__(None, None, None)
        assert brk.stats().calls["success"] == 1


def test_status_shows_calls_in_flight_and_both_families() -> None:
    coord = MemoryCoord({PREFIX + "payments.json": '{"maxConcurrentCalls": 1}'})
    with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:
        held = provider.guard("payments").__enter__()
        with pytest.raises(BulkheadFullError):
            provider.get_breaker("payments").do(lambda: None)
        stats = provider.status()["breakers"]["payments"]["stats"]
        assert stats["in_flight"] == 1
        assert stats["calls"]["bulkhead_full"] == 1 and stats["calls"]["timeout"] == 0
        held.__exit__(None, None, None)


def test_callers_of_every_kind_under_a_policy_that_keeps_changing_all_get_an_answer() -> None:
    """Threads and tasks call through one breaker (do, guards, sync and async) while its
    limit, wait, timeout, slow-call timing, rate window, threshold and mode change under
    them: every call ends and counts exactly once, none is left in flight or waiting,
    and the lock is free after."""
    rng = random.Random(7)
    brk = make(max_concurrent_calls=2, max_wait_duration=0.05)
    stop = threading.Event()
    unexpected: list[BaseException] = []
    expected = (Boom, RejectedError, CallTimeoutError)
    attempts = itertools.count()

    def work() -> None:
        time.sleep(0.001)
        if threading.get_ident() % 5 == 0:
            raise Boom

    def caller(way: int) -> None:
        while not stop.is_set():
            next(attempts)
            try:
                if way % 2:
                    brk.do(work)
                else:
                    with breaker.Guard(brk):
                        work()
            except expected:
                pass
            except BaseException as exc:  # pragma: no cover - what the test is for
                unexpected.append(exc)

    async def acaller(way: int) -> None:
        async def awork() -> None:
            await asyncio.sleep(0.001)

        while not stop.is_set():
            next(attempts)
            try:
                if way % 2:
                    await brk.do_async(awork)
                else:
                    async with breaker.Guard(brk):
                        await awork()
            except expected:
                pass
            except BaseException as exc:  # pragma: no cover - what the test is for
                unexpected.append(exc)

    def tasks() -> None:
        async def main() -> None:
            await asyncio.gather(*(acaller(way) for way in range(4)))

        asyncio.run(main())

    def chaos() -> None:
        while not stop.is_set():
            adopt(
                brk,
                Policy(
                    max_concurrent_calls=rng.choice([0, 1, 2, 3]),
                    max_wait_duration=rng.choice([0.0, 0.001, 0.05]),
                    mode=rng.choice(["auto", "auto", "forced-open", "disabled", "shadow"]),
                    slow_call_duration=rng.choice([None, 0.0005, 1.0]),
                    timeout=rng.choice([None, 0.0005, 1.0]),
                    failure_threshold=rng.choice([1, 3]),
                    failure_rate=rng.choice([None, 0.5]),
                    open_state_timeout=0.005,
                ),
            )
            time.sleep(0.002)

    threads = [threading.Thread(target=caller, args=(way,), daemon=True) for way in range(4)]
    threads += [threading.Thread(target=tasks, daemon=True)]
    threads += [threading.Thread(target=chaos, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(TIMEOUT)
    assert not [t for t in threads if t.is_alive()], "a caller never got an answer"
    assert unexpected == []
    adopt(brk, Policy())
    stats = brk.stats()
    assert sum(stats.calls.values()) == next(attempts)  # one outcome a call, every call
    assert stats.in_flight == 0 and not brk._waiters
    assert brk._lock.acquire(timeout=1)
    brk._lock.release()
