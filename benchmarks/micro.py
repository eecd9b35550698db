"""Per-call cost of a guarded call (closed breaker) and of a rejection (open), with pyperf.

A pyperf script: ``python benchmarks/micro.py -o out.json`` (``benchmarks/run.py`` runs
it and turns the numbers into ratios). Every peer runs in the same process layout, the
same loop and on the same trivial function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import aiobreaker
import circuitbreaker
import pybreaker
import pyperf
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

import breaker

PREFIX = "bench/breakers/"
HOUR = 3600


def f() -> int:
    return 1


async def af() -> int:
    return 1


def boom() -> int:
    raise RuntimeError("down")


async def aboom() -> int:
    raise RuntimeError("down")


def sync_timer(call: Callable[[], object], rejects: type[BaseException] | None = None) -> Any:
    """Return a pyperf time function that makes ``loops`` calls (catching ``rejects``)."""
    if rejects is None:

        def time_calls(loops: int) -> float:
            it = range(loops)
            t0 = time.perf_counter()
            for _ in it:
                call()
            return time.perf_counter() - t0

        return time_calls

    def time_rejections(loops: int) -> float:
        it = range(loops)
        t0 = time.perf_counter()
        for _ in it:
            try:  # noqa: SIM105 - suppress() would add its own cost to every rejection timed
                call()
            except rejects:
                pass
        return time.perf_counter() - t0

    return time_rejections


def async_timer(
    make: Callable[[], Awaitable[Callable[[], Awaitable[object]]]],
    rejects: type[BaseException] | None = None,
) -> Any:
    """Return a pyperf time function that awaits ``loops`` calls inside one event loop."""

    def time_calls(loops: int) -> float:
        async def main() -> float:
            call = await make()
            it = range(loops)
            if rejects is None:
                t0 = time.perf_counter()
                for _ in it:
                    await call()
                return time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in it:
                try:  # noqa: SIM105 - as above
                    await call()
                except rejects:
                    pass
            return time.perf_counter() - t0

        return asyncio.run(main())

    return time_calls


def provider() -> breaker.Provider:
    coord = breaker.MemoryCoord()
    return breaker.new(
        breaker.Config("bench", PREFIX),
        coord=coord,
        default_policy=breaker.Policy(failure_threshold=1, open_state_timeout=HOUR),
    )


def main() -> None:
    logging.getLogger("breaker").setLevel(logging.ERROR)  # the forced trips would log
    runner = pyperf.Runner()
    runner.metadata["description"] = "per-call cost of circuit breakers"
    p = provider()
    breaker.set_default_provider(p)

    # -- closed breaker, successful trivial call --------------------------------------------
    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=HOUR)
    fab = circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=HOUR)
    brk = p.get_breaker("do")
    sync_closed: dict[str, Callable[[], object]] = {
        "sync/bare": f,
        "sync/pybreaker call()": lambda: pb.call(f),
        "sync/pybreaker decorator": pb(f),
        "sync/circuitbreaker decorator": fab(f),
        "sync/breaker @circuit": p.circuit("deco")(f),
        "sync/breaker.circuit (default provider)": breaker.circuit("deco-default")(f),
        "sync/breaker guard()": lambda: _guarded(p),
        "sync/breaker Breaker.do": lambda: brk.do(f),
    }
    for name, call in sync_closed.items():
        runner.bench_time_func(name, sync_timer(call))

    # -- open breaker: the fast-fail path ---------------------------------------------------
    pb_open = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=HOUR)
    pb_open.open()
    fab_open = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=HOUR)
    fab_boom = fab_open(boom)
    with contextlib.suppress(RuntimeError):
        fab_boom()  # trips it
    open_brk = p.get_breaker("open-do")
    breaker.testing.force_state(open_brk, "open")
    open_deco = p.circuit("open-deco")(f)
    breaker.testing.force_state(p.get_breaker("open-deco"), "open")
    breaker.testing.force_state(p.get_breaker("open-guard"), "open")
    sync_open: dict[str, tuple[Callable[[], object], type[BaseException]]] = {
        "reject/pybreaker call()": (lambda: pb_open.call(f), pybreaker.CircuitBreakerError),
        "reject/pybreaker decorator": (pb_open(f), pybreaker.CircuitBreakerError),
        "reject/circuitbreaker decorator": (fab_open(f), circuitbreaker.CircuitBreakerError),
        "reject/breaker @circuit": (open_deco, breaker.BreakerOpenError),
        "reject/breaker guard()": (lambda: _guarded(p, "open-guard"), breaker.BreakerOpenError),
        "reject/breaker Breaker.do": (lambda: open_brk.do(f), breaker.BreakerOpenError),
    }
    for name, (call, rejects) in sync_open.items():
        runner.bench_time_func(name, sync_timer(call, rejects))

    # -- asyncio ----------------------------------------------------------------------------
    for name, make, rejects in _async_cases(p):
        runner.bench_time_func(name, async_timer(make, rejects))


def _guarded(p: breaker.Provider, name: str = "guard") -> int:
    with p.guard(name):
        return f()


def _async_cases(
    p: breaker.Provider,
) -> list[tuple[str, Callable[[], Awaitable[Callable[[], Awaitable[object]]]], Any]]:
    ab = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(hours=1))
    ab_deco = ab(af)
    ab_open = aiobreaker.CircuitBreaker(fail_max=1, timeout_duration=timedelta(hours=1))
    ab_open.open()
    deco = p.circuit("async-deco")(af)
    open_deco = p.circuit("async-open-deco")(af)
    breaker.testing.force_state(p.get_breaker("async-open-deco"), "open")
    breaker.testing.force_state(p.get_breaker("async-open-guard"), "open")
    brk = p.get_breaker("async-do")

    async def guarded(name: str = "async-guard") -> int:
        async with p.guard(name):
            return await af()

    def ready(call: Callable[[], Awaitable[object]]) -> Any:
        async def make() -> Callable[[], Awaitable[object]]:
            return call

        return make

    async def purgatory_closed() -> Callable[[], Awaitable[object]]:
        factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=HOUR)
        await factory.initialize()
        return factory("purgatory")(af)

    async def purgatory_context() -> Callable[[], Awaitable[object]]:
        factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=HOUR)
        await factory.initialize()

        async def call() -> int:
            async with await factory.get_breaker("purgatory-ctx"):
                return await af()

        return call

    async def purgatory_open() -> Callable[[], Awaitable[object]]:
        factory = AsyncCircuitBreakerFactory(default_threshold=1, default_ttl=HOUR)
        await factory.initialize()
        failing = factory("purgatory-open")(aboom)
        with contextlib.suppress(RuntimeError):
            await failing()  # trips it
        return factory("purgatory-open")(af)

    return [
        ("async/bare", ready(af), None),
        ("async/aiobreaker call_async()", ready(lambda: ab.call_async(af)), None),
        ("async/aiobreaker decorator", ready(ab_deco), None),
        ("async/purgatory decorator", purgatory_closed, None),
        ("async/purgatory async with", purgatory_context, None),
        ("async/breaker @circuit", ready(deco), None),
        ("async/breaker async with guard()", ready(guarded), None),
        ("async/breaker Breaker.do_async", ready(lambda: brk.do_async(af)), None),
        (
            "reject-async/aiobreaker call_async()",
            ready(lambda: ab_open.call_async(af)),
            aiobreaker.CircuitBreakerError,
        ),
        ("reject-async/purgatory decorator", purgatory_open, OpenedState),
        ("reject-async/breaker @circuit", ready(open_deco), breaker.BreakerOpenError),
        (
            "reject-async/breaker async with guard()",
            ready(lambda: guarded("async-open-guard")),
            breaker.BreakerOpenError,
        ),
    ]


if __name__ == "__main__":
    import breaker.testing

    main()
