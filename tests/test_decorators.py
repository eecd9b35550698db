"""@circuit on every kind of callable, guard() sync and async, exclude and fallback."""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from typing import Any

import pytest

import breaker
from breaker import BreakerOpenError, MemoryCoord, Policy, State
from breaker.testing import FakeClock, adopt

from .helpers import PREFIX, Boom, NotFound


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class TestCallableKinds:
    def test_plain_function_keeps_name_doc_signature(self, provider: breaker.Provider) -> None:
        @provider.circuit("payments")
        def charge(amount: int, *, currency: str = "EUR") -> str:
            """Charge a card."""
            return f"{amount} {currency}"

        assert charge(5, currency="USD") == "5 USD"
        assert charge.__name__ == "charge"
        assert charge.__doc__ == "Charge a card."
        assert (
            str(inspect.signature(charge)) == "(amount: 'int', *, currency: 'str' = 'EUR') -> 'str'"
        )
        assert not inspect.iscoroutinefunction(charge)

    def test_methods_classmethods_staticmethods(self, provider: breaker.Provider) -> None:
        class Client:
            rate = 2

            def __init__(self) -> None:
                self.calls = 0

            @provider.circuit("payments")
            def method(self, x: int) -> int:
                self.calls += 1
                return x * self.rate

            @classmethod
            @provider.circuit("payments")
            def cm_inner(cls, x: int) -> int:
                return x * cls.rate

            @provider.circuit("payments")
            @classmethod
            def cm_outer(cls, x: int) -> int:
                return x * cls.rate + 1

            @staticmethod
            @provider.circuit("payments")
            def sm_inner(x: int) -> int:
                return x

            @provider.circuit("payments")
            @staticmethod
            def sm_outer(x: int) -> int:
                return -x

        c = Client()
        assert c.method(3) == 6 and c.calls == 1
        assert Client.method(c, 4) == 8
        assert Client.cm_inner(3) == 6 and c.cm_inner(3) == 6
        assert Client.cm_outer(3) == 7 and c.cm_outer(3) == 7
        assert Client.sm_inner(3) == 3 and c.sm_inner(3) == 3
        assert Client.sm_outer(3) == -3 and c.sm_outer(3) == -3
        assert Client.method.__name__ == "method"
        assert str(inspect.signature(c.method)) == "(x: 'int') -> 'int'"

    def test_a_method_binds_as_functions_do_and_keeps_what_wrapt_keeps(
        self, provider: breaker.Provider
    ) -> None:
        def charge(self: object, amount: int, *, currency: str = "EUR") -> str:
            """Charge a card."""
            return f"{amount} {currency}"

        decorated = provider.circuit("payments")(charge)

        class Client:
            pay = decorated

        c = Client()
        assert c.pay(5, currency="USD") == "5 USD"
        # Bound like any function: a bound method of a plain function, no per-access wrapper.
        assert type(Client.__dict__["pay"]) is types.FunctionType
        assert isinstance(c.pay, types.MethodType) and c.pay.__self__ is c
        assert c.pay.__wrapped__ is charge and Client.pay.__wrapped__ is charge
        assert inspect.unwrap(c.pay) is charge
        assert c.pay.__name__ == "charge" and c.pay.__doc__ == "Charge a card."
        assert (
            str(inspect.signature(c.pay)) == "(amount: 'int', *, currency: 'str' = 'EUR') -> 'str'"
        )
        assert Client.pay(c, 1) == "1 EUR"
        # The decorated object itself stays a wrapt wrapper, usable as a function.
        assert decorated(None, 2) == "2 EUR"
        assert provider.get_breaker("payments").stats().calls["success"] == 3

    def test_an_async_method_stays_a_coroutine_function(self, provider: breaker.Provider) -> None:
        class Client:
            @provider.circuit("payments")
            async def get(self, x: int) -> int:
                return x

        assert type(Client.__dict__["get"]) is types.FunctionType
        assert inspect.iscoroutinefunction(Client.get)
        assert inspect.iscoroutinefunction(Client().get)
        assert run(Client().get(4)) == 4

    def test_methods_trip_reject_and_fall_back_like_functions(
        self, provider: breaker.Provider
    ) -> None:
        class Client:
            @provider.circuit("payments", fallback=lambda exc, self, x: ("fallback", x))
            def get(self, x: int) -> object:
                raise Boom

        c = Client()
        for _ in range(3):
            assert c.get(1) == ("fallback", 1)
        assert provider.get_breaker("payments").state is State.OPEN
        assert c.get(2) == ("fallback", 2)  # rejected, fallback with self's arguments
        assert provider.get_breaker("payments").stats().calls["rejected"] == 1

    def test_async_function(self, provider: breaker.Provider) -> None:
        @provider.circuit("payments")
        async def fetch(x: int) -> int:
            """Fetch."""
            await asyncio.sleep(0)
            return x + 1

        assert inspect.iscoroutinefunction(fetch)
        assert asyncio.iscoroutinefunction(fetch)
        assert fetch.__name__ == "fetch" and fetch.__doc__ == "Fetch."
        assert run(fetch(1)) == 2

    def test_async_method(self, provider: breaker.Provider) -> None:
        class Client:
            @provider.circuit("payments")
            async def get(self, x: int) -> int:
                return x

        assert inspect.iscoroutinefunction(Client().get)
        assert run(Client().get(9)) == 9

    def test_generator_functions_are_refused(self, provider: breaker.Provider) -> None:
        with pytest.raises(TypeError, match="generator"):

            @provider.circuit("payments")
            def stream() -> Any:
                yield 1

        with pytest.raises(TypeError, match="generator"):

            @provider.circuit("payments")
            async def astream() -> Any:
                yield 1

    def test_bad_arguments(self, provider: breaker.Provider) -> None:
        with pytest.raises(ValueError):
            provider.circuit("")
        with pytest.raises(TypeError, match="exclude"):
            provider.circuit("p", exclude=[42])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="fallback"):
            provider.circuit("p", fallback=3)  # type: ignore[arg-type]


class TestTripping:
    def test_decorated_function_trips_and_rejects(
        self, provider: breaker.Provider, clock: FakeClock
    ) -> None:
        calls = []

        @provider.circuit("payments")
        def charge() -> None:
            calls.append(1)
            raise Boom

        for _ in range(3):
            with pytest.raises(Boom):
                charge()
        with pytest.raises(BreakerOpenError) as info:
            charge()
        assert len(calls) == 3
        assert info.value.name == "payments" and info.value.retry_after == pytest.approx(10)
        assert provider.get_breaker("payments").state is State.OPEN

    def test_async_decorated_function_trips(self, provider: breaker.Provider) -> None:
        @provider.circuit("payments")
        async def charge() -> None:
            raise Boom

        async def main() -> None:
            for _ in range(3):
                with pytest.raises(Boom):
                    await charge()
            with pytest.raises(BreakerOpenError):
                await charge()

        run(main())

    def test_base_exception_propagates_and_is_not_counted(self, provider: breaker.Provider) -> None:
        @provider.circuit("payments")
        def interrupted() -> None:
            raise KeyboardInterrupt

        for _ in range(5):
            with pytest.raises(KeyboardInterrupt):
                interrupted()
        assert provider.get_breaker("payments").state is State.CLOSED


class TestExclude:
    def test_excluded_types_propagate_and_count_as_success(
        self, provider: breaker.Provider
    ) -> None:
        @provider.circuit("payments", exclude=[NotFound])
        def lookup(kind: str) -> None:
            raise NotFound if kind == "missing" else Boom

        for _ in range(2):
            with pytest.raises(Boom):
                lookup("down")
        with pytest.raises(NotFound):
            lookup("missing")  # resets the run of failures
        for _ in range(2):
            with pytest.raises(Boom):
                lookup("down")
        assert provider.get_breaker("payments").state is State.CLOSED

    def test_predicates(self, provider: breaker.Provider) -> None:
        class HTTPError(Exception):
            def __init__(self, status: int) -> None:
                self.status = status

        def client_error(exc: BaseException) -> bool:
            return isinstance(exc, HTTPError) and exc.status < 500

        @provider.circuit("payments", exclude=[client_error])
        def call(status: int) -> None:
            raise HTTPError(status)

        for _ in range(10):
            with pytest.raises(HTTPError):
                call(404)
        assert provider.get_breaker("payments").state is State.CLOSED
        for _ in range(3):
            with pytest.raises(HTTPError):
                call(503)
        assert provider.get_breaker("payments").state is State.OPEN

    def test_a_raising_predicate_counts_the_error(
        self, provider: breaker.Provider, caplog: pytest.LogCaptureFixture
    ) -> None:
        def broken(exc: BaseException) -> bool:
            raise AttributeError("oops")

        @provider.circuit("payments", exclude=[broken])
        def call() -> None:
            raise Boom

        for _ in range(3):
            with pytest.raises(Boom):
                call()
        assert provider.get_breaker("payments").state is State.OPEN
        assert "exclude predicate" in caplog.text


class TestFallback:
    def test_a_fallback_that_cannot_take_the_calls_arguments_is_refused(
        self, provider: breaker.Provider
    ) -> None:
        def get(order_id: str, *, timeout: float = 1.0) -> str:
            return order_id

        for wrong in (
            lambda exc: None,  # forgets order_id
            lambda exc, order_id: None,  # forgets timeout, which callers may pass
            lambda order_id: None,  # forgets the error
        ):
            with pytest.raises(TypeError, match="must take the error and then what"):
                provider.circuit("payments", fallback=wrong)(get)
        for right in (
            lambda exc, order_id, timeout=0: None,
            lambda exc, *args, **kwargs: None,
        ):
            provider.circuit("payments", fallback=right)(get)

        class Client:
            @provider.circuit("payments", fallback=lambda exc, self, order_id: None)
            def get(self, order_id: str) -> str:
                return order_id

    def test_fallback_on_failure_and_on_rejection(self, provider: breaker.Provider) -> None:
        seen: list[tuple[type[BaseException], tuple[Any, ...], dict[str, Any]]] = []

        def cached(exc: BaseException, user: str, *, fresh: bool = False) -> str:
            seen.append((type(exc), (user,), {"fresh": fresh}))
            return f"cached {user}"

        calls = []

        @provider.circuit("profiles", fallback=cached)
        def profile(user: str, *, fresh: bool = False) -> str:
            calls.append(user)
            raise Boom

        for _ in range(4):
            assert profile("ann", fresh=True) == "cached ann"
        assert len(calls) == 3
        assert [s[0] for s in seen] == [Boom, Boom, Boom, BreakerOpenError]
        assert seen[0][1:] == (("ann",), {"fresh": True})

    def test_no_fallback_for_excluded_or_base_exceptions(self, provider: breaker.Provider) -> None:
        @provider.circuit("p", exclude=[NotFound], fallback=lambda exc, kind: "fallback")
        def call(kind: str) -> str:
            if kind == "missing":
                raise NotFound
            if kind == "interrupt":
                raise KeyboardInterrupt
            return "ok"

        with pytest.raises(NotFound):
            call("missing")
        with pytest.raises(KeyboardInterrupt):
            call("interrupt")
        assert call("fine") == "ok"

    def test_method_fallback_receives_self(self, provider: breaker.Provider) -> None:
        def cached(exc: BaseException, client: Client, key: str) -> str:
            return f"{client.name}:{key}:{type(exc).__name__}"

        class Client:
            @provider.circuit("p", fallback=cached)
            def get(self, key: str) -> str:
                raise Boom

            def __init__(self) -> None:
                self.name = "c"

        assert Client().get("k") == "c:k:Boom"

    def test_async_fallbacks_sync_and_async(self, provider: breaker.Provider) -> None:
        async def afb(exc: BaseException, x: int) -> str:
            await asyncio.sleep(0)
            return f"async {x}"

        @provider.circuit("a", fallback=afb)
        async def one(x: int) -> str:
            raise Boom

        @provider.circuit("b", fallback=lambda exc, x: f"sync {x}")
        async def two(x: int) -> str:
            raise Boom

        async def main() -> None:
            for _ in range(4):
                assert await one(1) == "async 1"
                assert await two(2) == "sync 2"

        run(main())
        assert provider.get_breaker("a").state is State.OPEN


class TestDefaultProvider:
    def test_decorate_at_import_time_bind_at_start_up(
        self, coord: MemoryCoord, clock: FakeClock
    ) -> None:
        @breaker.circuit("payments")
        def charge(fail: bool) -> str:
            if fail:
                raise Boom
            return "ok"

        coord.put(PREFIX + "payments.json", '{"failureThreshold": 1}')
        with breaker.new(breaker.Config("s", PREFIX), coord=coord, clock=clock) as p:
            breaker.set_default_provider(p)
            with pytest.raises(Boom):
                charge(True)
            with pytest.raises(BreakerOpenError):
                charge(False)
            assert p.get_breaker("payments").state is State.OPEN

            with breaker.new(
                breaker.Config("s", PREFIX), coord=MemoryCoord(), clock=clock
            ) as other:
                breaker.set_default_provider(other)
                assert charge(False) == "ok"  # follows the new default provider

    def test_without_a_provider_calls_run_unguarded_with_one_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        @breaker.circuit("payments")
        def charge() -> str:
            return "ok"

        with caplog.at_level(logging.WARNING, logger="breaker"):
            assert charge() == "ok"
            assert charge() == "ok"
        assert caplog.text.count("no default provider") == 1

    def test_explicit_provider(self, provider: breaker.Provider) -> None:
        @breaker.circuit("payments", provider=provider, fallback=lambda exc: "fb")
        def charge() -> str:
            raise Boom

        assert charge() == "fb"
        assert provider.get_breaker("payments").stats().calls["failure"] == 1

    def test_clearing_the_default(self, provider: breaker.Provider) -> None:
        @breaker.circuit("payments")
        def charge() -> str:
            raise Boom

        breaker.set_default_provider(provider)
        with pytest.raises(Boom):
            charge()
        breaker.set_default_provider(None)
        with pytest.raises(Boom):
            charge()
        assert provider.get_breaker("payments").stats().calls["failure"] == 1


class TestGuard:
    def test_with_records_outcomes(self, provider: breaker.Provider) -> None:
        with provider.guard("payments") as call:
            assert call.breaker is provider.get_breaker("payments")
        for _ in range(3):
            with pytest.raises(Boom), provider.guard("payments"):
                raise Boom
        ran = []
        with pytest.raises(BreakerOpenError), provider.guard("payments"):
            ran.append(1)
        assert ran == []

    def test_async_with(self, provider: breaker.Provider) -> None:
        async def main() -> None:
            async with provider.guard("payments"):
                await asyncio.sleep(0)
            for _ in range(3):
                with pytest.raises(Boom):
                    async with provider.guard("payments"):
                        raise Boom
            with pytest.raises(BreakerOpenError):
                async with provider.guard("payments"):
                    pass

        run(main())

    def test_exclude_and_base_exceptions(self, provider: breaker.Provider) -> None:
        for _ in range(5):
            with pytest.raises(NotFound), provider.guard("payments", exclude=[NotFound]):
                raise NotFound
            with pytest.raises(KeyboardInterrupt), provider.guard("payments"):
                raise KeyboardInterrupt
        assert provider.get_breaker("payments").state is State.CLOSED

    def test_single_use(self, provider: breaker.Provider) -> None:
        g = provider.guard("payments")
        with g:
            pass
        with pytest.raises(RuntimeError, match="single-use"), g:
            pass

    def test_half_open_slot_is_released_on_cancel(
        self, provider: breaker.Provider, clock: FakeClock
    ) -> None:
        brk = provider.get_breaker("payments")
        adopt(brk, Policy(failure_threshold=1, success_threshold=1, open_state_timeout=1))
        with pytest.raises(Boom), provider.guard("payments"):
            raise Boom
        clock.advance(1)

        async def main() -> None:
            entered = asyncio.Event()

            async def trial() -> None:
                async with provider.guard("payments"):
                    entered.set()
                    await asyncio.sleep(3600)

            task = asyncio.create_task(trial())
            await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            async with provider.guard("payments"):
                pass

        run(main())
        assert brk.state is State.CLOSED


class TestFailureIf:
    def test_a_failed_result_counts_and_is_returned_unchanged(
        self, provider: breaker.Provider
    ) -> None:
        fallbacks = []

        @provider.circuit(
            "payments",
            failure_if=lambda status: status >= 500,
            fallback=lambda exc, code: fallbacks.append(exc) or -1,
        )
        def charge(code: int) -> int:
            return code

        assert [charge(503) for _ in range(3)] == [503, 503, 503]  # the caller has the response
        assert fallbacks == []  # the fallback is for errors and rejections only
        assert provider.get_breaker("payments").state is State.OPEN
        assert charge(200) == -1  # rejected now: the fallback answers
        assert isinstance(fallbacks[0], BreakerOpenError)

    def test_async_functions_too(self, provider: breaker.Provider) -> None:
        @provider.circuit("payments", failure_if=lambda status: status >= 500)
        async def charge(code: int) -> int:
            return code

        async def main() -> None:
            assert await charge(200) == 200
            for _ in range(3):
                assert await charge(502) == 502

        run(main())
        assert provider.get_breaker("payments").state is State.OPEN

    def test_a_raising_failure_if_is_logged_and_counts_as_a_failure(
        self, provider: breaker.Provider, caplog: pytest.LogCaptureFixture
    ) -> None:
        def judge(result: object) -> bool:
            raise RuntimeError("judge bug")

        @provider.circuit("payments", failure_if=judge)
        def charge() -> str:
            return "ok"

        assert charge() == "ok"
        assert provider.get_breaker("payments").stats().calls["failure"] == 1
        assert "failure_if" in caplog.text and "judge bug" in caplog.text

    def test_must_be_callable(self, provider: breaker.Provider) -> None:
        with pytest.raises(TypeError, match="failure_if"):
            provider.circuit("payments", failure_if=503)  # type: ignore[arg-type]


class TestWrappedFunction:
    def test_the_users_function_is_untouched_and_reachable(
        self, provider: breaker.Provider
    ) -> None:
        def charge(amount: int) -> int:
            """Charge a card."""
            return amount

        before = dict(charge.__dict__)
        guarded = provider.circuit("payments")(charge)
        assert charge.__dict__ == before and not hasattr(charge, "__self__")
        assert inspect.unwrap(guarded) is charge
        assert inspect.signature(guarded) == inspect.signature(charge)
        assert guarded.__name__ == "charge" and guarded.__doc__ == "Charge a card."
        assert guarded(3) == 3

    def test_defaults_closures_and_globals_are_shared(self, provider: breaker.Provider) -> None:
        seen = []

        def record(value: int = 7, *, tag: str = "t") -> tuple[int, str]:
            seen.append(value)
            return value, tag

        guarded = provider.circuit("payments")(record)
        assert guarded() == (7, "t")
        assert seen == [7]

    def test_async_functions_stay_coroutine_functions(self, provider: breaker.Provider) -> None:
        async def fetch() -> int:
            return 1

        guarded = provider.circuit("payments")(fetch)
        assert inspect.iscoroutinefunction(guarded)
        assert inspect.unwrap(guarded) is fetch
        assert run(guarded()) == 1


class TestForgottenAsync:
    def test_a_plain_def_that_returns_a_coroutine_is_reported_once(
        self, provider: breaker.Provider, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def downstream() -> str:
            return "ok"

        @provider.circuit("payments")
        def charge() -> Any:
            return downstream()

        for _ in range(3):
            coro = charge()
            assert run(coro) == "ok"
        warnings = [r for r in caplog.records if "returned an awaitable" in r.getMessage()]
        assert len(warnings) == 1
        message = warnings[0].getMessage()
        assert "charge" in message and "async def" in message


class TestSetDefaultProvider:
    def test_it_returns_a_context_manager_that_restores_the_previous_one(
        self, provider: breaker.Provider, coord: MemoryCoord, clock: FakeClock
    ) -> None:
        breaker.set_default_provider(provider)
        with breaker.new(breaker.Config("s", PREFIX), coord=MemoryCoord(), clock=clock) as other:
            with breaker.set_default_provider(other):
                assert breaker.get_default_provider() is other
            assert breaker.get_default_provider() is provider
        restore = breaker.set_default_provider(None)
        assert breaker.get_default_provider() is None
        restore.restore()
        assert breaker.get_default_provider() is provider
