"""Variants whose costs differ by a few percent, measured interleaved in one process.

pyperf runs one benchmark after another; on a shared virtual machine whose speed drifts by
half within seconds, that drift is larger than what a success counter or a failure-rate
window costs. Here every variant runs in turn, round after round (in reverse order every
other round), and two variants are compared round by round, so slow stretches of the
machine hit both alike and cancel in the ratio.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import circuitbreaker

import breaker
from breaker._decorators import _stand_in

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline.engine_0_1_0 import Breaker as Breaker_0_1_0


def f() -> int:
    return 1


def boom() -> int:
    raise RuntimeError("down")


class UncountedBreaker(breaker.Breaker):
    """Breaker.do without its success counter: what the counter costs, measured."""

    __slots__ = ()

    def do(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        era = self._fast
        ticket = era if era is not None else self._admit()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(ticket, exc)
            raise
        if ticket is not era or self._fast is not era:  # what the countdown stands for
            self._settle(ticket)
        return result


def uncounted_circuit(provider: breaker.Provider, name: str, fn: Callable[..., Any]) -> Any:
    """@circuit as built, with the success counting of its fast path taken out.

    The wrapper is the real one; only the lines that count down (and thereby notice a
    changed breaker) are replaced by the re-check they stand for.
    """
    import inspect

    from breaker import _decorators

    source = inspect.getsource(_decorators._sync_wrapper)
    counted = """        if ticket is era and not failed:
            brk._left -= 1
            if brk._left <= 0:
                brk._spent(ticket)
"""
    assert counted in source, "the wrapper changed: update this benchmark"
    uncounted = """        if ticket is era and not failed and brk._fast is era:
            pass
"""
    namespace = dict(vars(_decorators))
    exec(source.replace(counted, uncounted), namespace)
    brk = provider.get_breaker(name)
    wrapper = namespace["_sync_wrapper"](brk, None, None, None, None, fn.__qualname__)
    import wrapt

    return wrapt.FunctionWrapper(_stand_in(fn), wrapper)


def variants(provider: breaker.Provider) -> dict[str, tuple[str, dict[str, Any]]]:
    """Return each variant as a statement and the names it uses."""
    policy = breaker.Policy()
    fab_open = circuitbreaker.CircuitBreaker(failure_threshold=1, recovery_timeout=3600)
    with contextlib.suppress(RuntimeError):
        fab_open(boom)()  # trips it
    ours_open = provider.circuit("paired-open")(f)
    breaker.testing.force_state(provider.get_breaker("paired-open"), "open")
    reject = "try:\n    g()\nexcept Exception:\n    pass"
    rated = provider.get_breaker("paired-rate")
    breaker.testing.adopt(rated, breaker.Policy(failure_rate=0.5))
    return {
        "bare": ("f()", {"f": f}),
        "Breaker.do": ("brk.do(f)", {"brk": provider.get_breaker("paired-do"), "f": f}),
        "Breaker.do, 0.1.0": (
            "brk.do(f)",
            {"brk": Breaker_0_1_0("paired-old", policy, clock=time.monotonic), "f": f},
        ),
        "Breaker.do, no counter": (
            "brk.do(f)",
            {"brk": UncountedBreaker("paired-uncounted", policy, clock=time.monotonic), "f": f},
        ),
        "Breaker.do, failure rate set": ("brk.do(f)", {"brk": rated, "f": f}),
        "@circuit": ("g()", {"g": provider.circuit("paired-deco")(f)}),
        "@circuit, no counter": ("g()", {"g": uncounted_circuit(provider, "paired-nc", f)}),
        "circuitbreaker decorator": (
            "g()",
            {"g": circuitbreaker.CircuitBreaker(failure_threshold=5, recovery_timeout=3600)(f)},
        ),
        "@circuit, rejecting": (reject, {"g": ours_open}),
        "circuitbreaker decorator, rejecting": (reject, {"g": fab_open(f)}),
    }


def measure(
    cases: Mapping[str, tuple[str, dict[str, Any]]], *, rounds: int, number: int
) -> dict[str, list[float]]:
    """Return each case's time per call, in seconds, for every interleaved round."""
    timers = {name: timeit.Timer(stmt, globals=names) for name, (stmt, names) in cases.items()}
    times: dict[str, list[float]] = {name: [] for name in cases}
    order = list(timers.items())
    for _ in range(rounds):
        for name, timer in order:
            times[name].append(timer.timeit(number) / number)
        order.reverse()  # no variant always runs first or last in a round
    return times


def ratio(times: Mapping[str, list[float]], a: str, b: str, *, less: str | None = None) -> float:
    """Return the median over rounds of ``a``'s time over ``b``'s (``less`` taken off both).

    The two were measured moments apart in each round, so a slow stretch of the machine
    hits both; the median of those paired ratios is steadier than a ratio of two minima.
    """
    base = times[less] if less is not None else [0.0] * len(times[a])
    return statistics.median(
        (x - z) / (y - z) for x, y, z in zip(times[a], times[b], base, strict=True)
    )


def run(smoke: bool) -> dict[str, list[float]]:
    """Measure every variant (a few seconds; ``smoke``: a fraction of one)."""
    import breaker.testing

    provider = breaker.new(breaker.Config("paired", "bench/paired/"), coord=breaker.MemoryCoord())
    try:
        return measure(
            variants(provider), rounds=2 if smoke else 200, number=1_000 if smoke else 10_000
        )
    finally:
        provider.close()


if __name__ == "__main__":
    times = run(smoke="--smoke" in sys.argv)
    for name, seconds in times.items():
        print(f"{name:36} {min(seconds) * 1e9:8.1f} ns")
    for way in ("Breaker.do", "@circuit"):
        print(f"{way} counted / uncounted: {ratio(times, way, f'{way}, no counter'):.3f}x")
