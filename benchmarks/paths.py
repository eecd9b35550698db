"""Every way in, with every feature, beside the cheapest peer offering that way and a floor.

A shared virtual machine's speed drifts by half within seconds, more than the differences
measured here. So every case runs in turn, round after round (in reverse order every
other round), in one process, and two cases are compared round by round: the median of
those paired ratios is steady where a ratio of two separate minima is not.

Paths: ``@circuit`` on a function and on a method, ``guard()``, ``Breaker.do``, and their
asyncio forms. Features: none (``plain``), a failure-rate window (``rate``), slow-call
timing (``slow``), a concurrency limit not reached (``limit``), and an open breaker
rejecting (``reject``). What counting calls in flight costs every path (one increment,
issue 18) is measured against the same path built without it (``uncounted``). Peers:
pybreaker, fabfuel circuitbreaker, aiobreaker and purgatory, each where it offers the
path. Floors: a hand-written minimal closure, method or context manager of the same
shape, doing nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import sys
import time
import timeit
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any

import aiobreaker
import circuitbreaker
import pybreaker
from purgatory import AsyncCircuitBreakerFactory, SyncCircuitBreakerFactory

import breaker
import breaker.testing

HOUR = 3600
FEATURES: dict[str, breaker.Policy] = {
    "plain": breaker.Policy(failure_threshold=5, open_state_timeout=HOUR),
    "rate": breaker.Policy(failure_threshold=5, open_state_timeout=HOUR, failure_rate=0.5),
    "slow": breaker.Policy(failure_threshold=5, open_state_timeout=HOUR, slow_call_duration=60),
    "limit": breaker.Policy(
        failure_threshold=5, open_state_timeout=HOUR, max_concurrent_calls=1000
    ),
}
SYNC_PATHS = ("@circuit", "@circuit method", "guard()", "Breaker.do")
ASYNC_PATHS = ("async @circuit", "async @circuit method", "async with guard()", "do_async")


def f() -> int:
    return 1


async def af() -> int:
    return 1


def boom() -> int:
    raise RuntimeError("down")


async def aboom() -> int:
    raise RuntimeError("down")


class Plain:
    def m(self) -> int:
        return 1

    async def am(self) -> int:
        return 1


class _Nothing:
    """The floor of a context manager: enter and leave, nothing else."""

    __slots__ = ()

    def __enter__(self) -> _Nothing:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> _Nothing:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def _floor_closure(fn: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return guarded


def _floor_async_closure(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def guarded(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    return guarded


class _FloorDo:
    """The floor of ``Breaker.do``: a method that calls."""

    def do(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    async def do_async(
        self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any
    ) -> Any:
        return await fn(*args, **kwargs)


Case = tuple[Callable[[], Any], type[BaseException] | None]


def _ours(provider: breaker.Provider) -> tuple[dict[str, Case], dict[str, Case]]:
    """Return this project's sync and async cases: every path with every feature."""
    sync: dict[str, Case] = {}
    async_: dict[str, Case] = {}
    for feature, policy in [*FEATURES.items(), ("reject", FEATURES["plain"])]:
        rejects = breaker.BreakerOpenError if feature == "reject" else None

        def named(path: str, feature: str = feature, policy: breaker.Policy = policy) -> str:
            name = f"{path}/{feature}"
            brk = provider.get_breaker(name)
            breaker.testing.adopt(brk, policy)
            if feature == "reject":
                breaker.testing.force_state(brk, "open")
            return name

        deco = provider.circuit(named("@circuit"))(f)
        method_name = named("@circuit method")

        class Methods:
            @provider.circuit(method_name)
            def m(self) -> int:
                return 1

        brk = provider.get_breaker(named("Breaker.do"))
        guard_name = named("guard()")

        def guarded(guard_name: str = guard_name) -> int:
            with provider.guard(guard_name):
                return f()

        obj = Methods()
        sync["@circuit/" + feature] = (deco, rejects)
        sync["@circuit method/" + feature] = (_method_caller(obj), rejects)
        sync["guard()/" + feature] = (guarded, rejects)
        sync["Breaker.do/" + feature] = (_do_caller(brk), rejects)

        adeco = provider.circuit(named("async @circuit"))(af)
        amethod_name = named("async @circuit method")

        class AsyncMethods:
            @provider.circuit(amethod_name)
            async def am(self) -> int:
                return 1

        abrk = provider.get_breaker(named("do_async"))
        aguard_name = named("async with guard()")

        async def aguarded(aguard_name: str = aguard_name) -> int:
            async with provider.guard(aguard_name):
                return await af()

        aobj = AsyncMethods()
        async_["async @circuit/" + feature] = (adeco, rejects)
        async_["async @circuit method/" + feature] = (_amethod_caller(aobj), rejects)
        async_["async with guard()/" + feature] = (aguarded, rejects)
        async_["do_async/" + feature] = (_ado_caller(abrk), rejects)
    return sync, async_


@contextlib.contextmanager
def _without_in_flight() -> Iterator[None]:
    """Build the fast path as it was before it counted calls in flight, for comparison."""
    from breaker._engine import _paths

    admit = _paths._ADMIT
    counted = "if ticket is not None:\n    brk._admitted += 1\n"  # the plain lane's count
    assert counted in admit, "the fast path changed: update this benchmark"
    _paths._ADMIT = admit.replace(counted, "if ticket is not None:\n", 1)
    _paths._call_factory.cache_clear()
    try:
        yield
    finally:
        _paths._ADMIT = admit
        _paths._call_factory.cache_clear()


def _uncounted(provider: breaker.Provider) -> dict[str, Case]:
    """Return @circuit, guard() and Breaker.do without the in-flight count (plain policy)."""
    from breaker._engine import Guard, _paths

    with _without_in_flight():
        deco = provider.circuit("uncounted @circuit")(f)

        class UncountedBreaker(breaker.Breaker):
            __slots__ = ()
            do = _paths.method(breaker.Breaker.do)  # type: ignore[assignment]

        class UncountedGuard(Guard):
            __slots__ = ()
            __enter__ = _paths.guard(Guard.__enter__)  # type: ignore[assignment]

    brk = UncountedBreaker("uncounted do", FEATURES["plain"], clock=time.monotonic)
    provider.get_breaker("uncounted guard()")

    def guard(name: str, *, exclude: Any = ()) -> Guard:  # Provider.guard's body
        found = provider._breakers.get(name)
        return UncountedGuard(found if found is not None else provider.get_breaker(name), exclude)

    def guarded() -> int:
        with guard("uncounted guard()"):
            return f()

    return {
        "@circuit/uncounted": (deco, None),
        "guard()/uncounted": (guarded, None),
        "Breaker.do/uncounted": (_do_caller(brk), None),
    }


def _method_caller(obj: Any) -> Callable[[], Any]:
    def call() -> Any:
        return obj.m()  # the attribute access is part of a method call's cost

    return call


def _amethod_caller(obj: Any) -> Callable[[], Awaitable[Any]]:
    def call() -> Awaitable[Any]:
        return obj.am()  # type: ignore[no-any-return]

    return call


def _do_caller(brk: Any) -> Callable[[], Any]:
    def call() -> Any:
        return brk.do(f)

    return call


def _ado_caller(brk: Any) -> Callable[[], Awaitable[Any]]:
    def call() -> Awaitable[Any]:
        return brk.do_async(af)  # type: ignore[no-any-return]

    return call


def _sync_peers() -> dict[str, Case]:
    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=HOUR)
    fab = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR)
    pb_open = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=HOUR)
    pb_open.open()
    fab_open = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=HOUR)
    with contextlib.suppress(RuntimeError):
        fab_open(boom)()  # trips it
    purgatory = SyncCircuitBreakerFactory(default_threshold=5, default_ttl=HOUR)

    class PbMethods:
        @pb
        def m(self) -> int:
            return 1

    class FabMethods:
        @circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR)
        def m(self) -> int:
            return 1

    class FloorMethods:
        m = _floor_closure(Plain.m)

    def purgatory_with() -> int:
        with purgatory.get_breaker("with"):
            return f()

    def pybreaker_calling() -> int:
        with pb.calling():
            return f()

    def floor_with() -> int:
        with _Nothing():
            return f()

    floor_do = _FloorDo()
    pb_do = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=HOUR)
    fab_do = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR)
    return {
        "bare": (f, None),
        "bare method": (_method_caller(Plain()), None),
        "floor: closure": (_floor_closure(f), None),
        "floor: method": (_method_caller(FloorMethods()), None),
        "floor: with": (floor_with, None),
        "floor: do": (lambda: floor_do.do(f), None),
        "circuitbreaker decorator": (fab(f), None),
        "pybreaker decorator": (pb(f), None),
        "circuitbreaker method": (_method_caller(FabMethods()), None),
        "pybreaker method": (_method_caller(PbMethods()), None),
        "purgatory with": (purgatory_with, None),
        "pybreaker calling()": (pybreaker_calling, None),
        "circuitbreaker call()": (lambda: fab_do.call(f), None),
        "pybreaker call()": (lambda: pb_do.call(f), None),
        "circuitbreaker decorator, rejecting": (fab_open(f), circuitbreaker.CircuitBreakerError),
        "pybreaker decorator, rejecting": (pb_open(f), pybreaker.CircuitBreakerError),
    }


def _async_peers(loop: asyncio.AbstractEventLoop) -> dict[str, Case]:
    ab = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(hours=1))
    ab_open = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(hours=1))
    ab_open.open()

    async def purgatory_factory() -> Any:
        factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=HOUR)
        await factory.initialize()
        return factory

    purgatory = loop.run_until_complete(purgatory_factory())

    fab = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR)
    fab_open = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=HOUR)
    with contextlib.suppress(RuntimeError):
        loop.run_until_complete(fab_open(aboom)())  # trips it

    class AbMethods:
        @ab
        async def am(self) -> int:
            return 1

    class FabMethods:
        @circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR)
        async def am(self) -> int:
            return 1

    class PurgatoryMethods:
        @purgatory("purgatory-method")
        async def am(self) -> int:
            return 1

    class FloorMethods:
        am = _floor_async_closure(Plain.am)

    async def purgatory_with() -> int:
        async with await purgatory.get_breaker("with"):
            return await af()

    async def floor_with() -> int:
        async with _Nothing():
            return await af()

    floor_do = _FloorDo()
    return {
        "async bare": (af, None),
        "async bare method": (_amethod_caller(Plain()), None),
        "async floor: closure": (_floor_async_closure(af), None),
        "async floor: method": (_amethod_caller(FloorMethods()), None),
        "async floor: with": (floor_with, None),
        "async floor: do": (lambda: floor_do.do_async(af), None),
        "aiobreaker decorator": (ab(af), None),
        "purgatory decorator": (purgatory("purgatory")(af), None),
        "circuitbreaker async decorator": (fab(af), None),
        "aiobreaker method": (_amethod_caller(AbMethods()), None),
        "circuitbreaker async method": (_amethod_caller(FabMethods()), None),
        "purgatory method": (_amethod_caller(PurgatoryMethods()), None),
        "purgatory async with": (purgatory_with, None),
        "aiobreaker call_async()": (lambda: ab.call_async(af), None),
        "aiobreaker, rejecting": (lambda: ab_open.call_async(af), aiobreaker.CircuitBreakerError),
        "circuitbreaker async decorator, rejecting": (
            fab_open(af),
            circuitbreaker.CircuitBreakerError,
        ),
    }


def measure_sync(cases: Mapping[str, Case], *, rounds: int, number: int) -> dict[str, list[float]]:
    """Return each case's time per call, in seconds, for every interleaved round."""
    timers = {}
    for name, (call, rejects) in cases.items():
        if rejects is None:
            timers[name] = timeit.Timer("call()", globals={"call": call})
        else:
            stmt = "try:\n    call()\nexcept rejects:\n    pass"
            timers[name] = timeit.Timer(stmt, globals={"call": call, "rejects": rejects})
    times: dict[str, list[float]] = {name: [] for name in cases}
    order = list(timers.items())
    for _ in range(rounds):
        for name, timer in order:
            times[name].append(timer.timeit(number) / number)
        order.reverse()  # no case always runs first or last in a round
    return times


def measure_async(
    loop: asyncio.AbstractEventLoop, cases: Mapping[str, Case], *, rounds: int, number: int
) -> dict[str, list[float]]:
    """Return each case's time per awaited call, in seconds, for every interleaved round."""

    async def timed(call: Callable[[], Awaitable[Any]], rejects: Any) -> float:
        it = range(number)
        if rejects is None:
            t0 = time.perf_counter()
            for _ in it:
                await call()
            return time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in it:
            try:  # noqa: SIM105 - suppress() would add its own cost to every rejection
                await call()
            except rejects:
                pass
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases.items())
    for _ in range(rounds):
        for name, (call, rejects) in order:
            times[name].append(loop.run_until_complete(timed(call, rejects)) / number)
        order.reverse()
    return times


def ratio(times: Mapping[str, list[float]], a: str, b: str, *, less: str | None = None) -> float:
    """Return the median over rounds of ``a``'s time over ``b``'s (``less`` taken off both)."""
    base = times[less] if less is not None else [0.0] * len(times[a])
    return statistics.median(
        (x - z) / (y - z) for x, y, z in zip(times[a], times[b], base, strict=True)
    )


def run(smoke: bool) -> dict[str, list[float]]:
    """Measure every case (about a minute; ``smoke``: a fraction of a second)."""
    rounds, number = (2, 200) if smoke else (60, 5_000)
    logging.getLogger("breaker").setLevel(logging.ERROR)  # the forced trips would log
    provider = breaker.new(breaker.Config("paths", "bench/paths/"), coord=breaker.MemoryCoord())
    loop = asyncio.new_event_loop()
    try:
        ours_sync, ours_async = _ours(provider)
        cases = {**_sync_peers(), **ours_sync, **_uncounted(provider)}
        times = measure_sync(cases, rounds=rounds, number=number)
        times.update(
            measure_async(loop, {**_async_peers(loop), **ours_async}, rounds=rounds, number=number)
        )
        return times
    finally:
        loop.close()
        provider.close()


# What each path is compared with: its unguarded call, its floor, the peers offering it.
COMPARISONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "@circuit": ("bare", "floor: closure", ("circuitbreaker decorator", "pybreaker decorator")),
    "@circuit method": (
        "bare method",
        "floor: method",
        ("circuitbreaker method", "pybreaker method"),
    ),
    "guard()": ("bare", "floor: with", ("purgatory with", "pybreaker calling()")),
    "Breaker.do": ("bare", "floor: do", ("circuitbreaker call()", "pybreaker call()")),
    "async @circuit": (
        "async bare",
        "async floor: closure",
        ("aiobreaker decorator", "purgatory decorator", "circuitbreaker async decorator"),
    ),
    "async @circuit method": (
        "async bare method",
        "async floor: method",
        ("aiobreaker method", "purgatory method", "circuitbreaker async method"),
    ),
    "async with guard()": ("async bare", "async floor: with", ("purgatory async with",)),
    "do_async": ("async bare", "async floor: do", ("aiobreaker call_async()",)),
}


def rejection_reference(path: str) -> str:
    """Return the rejection a way in is compared with: circuitbreaker's, sync or async."""
    if path in ASYNC_PATHS:
        return "circuitbreaker async decorator, rejecting"
    return "circuitbreaker decorator, rejecting"


def cheapest(times: Mapping[str, list[float]], peers: tuple[str, ...]) -> str:
    """Return the peer with the lowest median time."""
    return min(peers, key=lambda name: statistics.median(times[name]))


if __name__ == "__main__":
    results = run(smoke="--smoke" in sys.argv)
    for path, (bare, floor, peers) in COMPARISONS.items():
        peer = cheapest(results, peers)
        plain = f"{path}/plain"
        print(
            f"{path:24} {statistics.median(results[plain]) * 1e9:7.1f} ns  "
            f"overhead {ratio(results, plain, peer, less=bare):.2f}x {peer}, "
            f"{ratio(results, plain, floor, less=bare):.2f}x floor; "
            f"rate {ratio(results, f'{path}/rate', plain):.2f}x, "
            f"slow {ratio(results, f'{path}/slow', plain):.2f}x, "
            f"reject {ratio(results, f'{path}/reject', rejection_reference(path)):.2f}x"
        )
