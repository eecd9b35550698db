"""Run every benchmark and print one table: ``python3 tasks.py bench`` (``--smoke``: seconds).

Ratios against peers measured in the same run are the result; absolute times are only
context (these machines are shared and noisy). Without ``--smoke`` the table is also
written to ``benchmarks/RESULTS.rst`` with the machine, the Python and the date.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import gc
import json
import logging
import os
import platform
import random
import statistics
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.rst"

Row = tuple[str, str, str]  # what, value, note


class Report:
    """Sections of rows, printed as they come and rendered as one table at the end."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, list[Row]]] = []
        self.targets: list[tuple[str, str, str]] = []

    def section(self, title: str) -> list[Row]:
        rows: list[Row] = []
        self.sections.append((title, rows))
        print(f"\n== {title}", flush=True)
        return rows

    def add(self, rows: list[Row], what: str, value: str, note: str = "") -> None:
        rows.append((what, value, note))
        print(f"  {what:52} {value:>16}  {note}", flush=True)

    def target(self, name: str, measured: str, verdict: bool | None) -> None:
        mark = {True: "met", False: "MISSED", None: "n/a"}[verdict]
        self.targets.append((name, measured, mark))

    def render(self) -> str:
        lines: list[str] = []
        for title, rows in self.sections:
            lines += [title, "-" * len(title), ""]
            lines += _table(["measurement", "value", "note"], [list(r) for r in rows])
            lines.append("")
        title = "Targets"
        lines += [title, "-" * len(title), ""]
        lines += _table(["target", "measured", "verdict"], [list(t) for t in self.targets])
        return "\n".join(lines)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    rule = "  ".join("=" * w for w in widths)

    def line(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [rule, line(header), rule, *[line(r) for r in rows], rule]


def ns(seconds: float) -> str:
    return f"{seconds * 1e9:,.0f} ns"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


# -- 1 & 2: every way in, every feature, rejection (interleaved, one process) -----------------


def paths(report: Report, smoke: bool) -> None:
    import paths as ways  # benchmarks/paths.py

    times = ways.run(smoke)

    def median(name: str) -> float:
        return statistics.median(times[name])

    rows = report.section("Peers and floors: per-call time of the same trivial call")
    for bare, floor, peers in ways.COMPARISONS.values():
        for name in (bare, floor, *peers):
            note = "the unguarded call" if name == bare else ""
            if name == floor:
                note = "a hand-written minimal wrapper of the same shape"
            if not any(r[0] == name for r in rows):
                report.add(rows, name, ns(median(name)), note)
    for name in (
        "circuitbreaker decorator, rejecting",
        "pybreaker decorator, rejecting",
        "circuitbreaker async decorator, rejecting",
        "aiobreaker, rejecting",
    ):
        report.add(rows, name, ns(median(name)), "an open breaker's rejection")

    rows = report.section("Every way in: this project beside the cheapest peer for that way")
    overhead: dict[str, tuple[float, str]] = {}
    worst: dict[str, tuple[float, str]] = {
        "rate": (0.0, ""),
        "slow": (0.0, ""),
        "limit": (0.0, ""),
        "reject": (0.0, ""),
    }
    for path, (bare, floor, peers) in ways.COMPARISONS.items():
        peer = ways.cheapest(times, peers)
        plain = f"{path}/plain"
        to_peer = ways.ratio(times, plain, peer, less=bare)
        to_floor = ways.ratio(times, plain, floor, less=bare)
        overhead[path] = (to_peer, peer)
        report.add(
            rows,
            path,
            ns(median(plain)),
            f"overhead {to_peer:.2f}x {peer}'s (the cheapest), {to_floor:.2f}x the floor's",
        )
        for feature, label in (
            ("rate", "failureRate on"),
            ("slow", "slowCallDuration on"),
            ("limit", "maxConcurrentCalls on, not reached"),
        ):
            r = ways.ratio(times, f"{path}/{feature}", plain)
            worst[feature] = max(worst[feature], (r, path))
            report.add(
                rows, f"{path}, {label}", ns(median(f"{path}/{feature}")), f"{r:.2f}x without"
            )
        reject_ref = ways.rejection_reference(path)
        r = ways.ratio(times, f"{path}/reject", reject_ref)
        worst["reject"] = max(worst["reject"], (r, path))
        report.add(
            rows, f"{path}, rejecting", ns(median(f"{path}/reject")), f"{r:.2f}x {reject_ref}"
        )

    def target(text: str, paths: tuple[str, ...], limit: float) -> None:
        got = max((overhead[p][0], p) for p in paths)
        report.target(text, f"{got[0]:.2f}x ({got[1]})", got[0] <= limit)

    target(
        "@circuit overhead <= 0.5x circuitbreaker's, function and method",
        ("@circuit", "@circuit method"),
        0.5,
    )
    target(
        "async @circuit overhead <= 0.5x the cheapest async peer's",
        ("async @circuit", "async @circuit method"),
        0.5,
    )
    target("guard() overhead <= 0.6x purgatory's with", ("guard()",), 0.6)
    target(
        "async with guard() overhead <= 0.5x purgatory's async with", ("async with guard()",), 0.5
    )
    for feature, text, limit in (
        (
            "reject",
            "rejection <= 0.8x circuitbreaker's decorator rejection (async: its async one)",
            0.8,
        ),
        ("rate", "failureRate on <= 1.3x without, every way", 1.3),
        ("slow", "slowCallDuration on <= 1.6x without, every way", 1.6),
        ("limit", "maxConcurrentCalls on, not reached, <= 1.5x without, every way", 1.5),
    ):
        r, path = worst[feature]
        report.target(text, f"{r:.2f}x (worst: {path})", r <= limit)
    counting = max(
        (ways.ratio(times, f"{path}/plain", f"{path}/uncounted"), path)
        for path in ("@circuit", "guard()", "Breaker.do")
    )
    for path in ("@circuit", "guard()", "Breaker.do"):
        r = ways.ratio(times, f"{path}/plain", f"{path}/uncounted")
        report.add(rows, f"{path}, counting calls in flight", f"{r:.2f}x", "the same path without")
    report.add(
        rows,
        "counting calls in flight, worst",
        f"{counting[0]:.2f}x",
        f"{counting[1]}: one increment on every path (issue 18's in_flight)",
    )


# -- 2c: every way in, now beside the code before this round ----------------------------------


def then(report: Report, smoke: bool) -> None:
    import then as before  # benchmarks/then.py

    rows = report.section(
        f"Every way in, no load-protection key set, beside the same way at {before.THEN}"
    )
    target = f"no load-protection key set: every way <= 1.05x its cost at {before.THEN}"
    try:
        times = before.run(smoke)
    except before.Unavailable as exc:
        report.add(rows, "not measured", "n/a", str(exc))
        report.target(target, "n/a", None)
        return
    worst = (0.0, "")
    for way in before.WAYS:
        r = before.ratio(times, way)
        worst = max(worst, (r, way))
        report.add(
            rows,
            way,
            ns(statistics.median(times[f"{way}/now"])),
            f"overhead {r:.2f}x its overhead at {before.THEN} "
            f"({ns(statistics.median(times[f'{way}/then']))} then)",
        )
    report.target(
        target,
        f"{worst[0]:.2f}x (worst: {worst[1]})",
        worst[0] <= 1.05,
    )


# -- 3: concurrency ---------------------------------------------------------------------------


def threads(report: Report, smoke: bool) -> None:
    import pybreaker

    import breaker

    n, calls, pause = 16, (2 if smoke else 20), 0.01
    provider = _memory_provider()
    brk = provider.get_breaker("threads")
    pb = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    sleeper = provider.circuit("threads-deco")(time.sleep)

    def run(call: Callable[[], object]) -> float:
        barrier = threading.Barrier(n + 1)

        def worker() -> None:
            barrier.wait()
            for _ in range(calls):
                call()

        workers = [threading.Thread(target=worker) for _ in range(n)]
        for w in workers:
            w.start()
        barrier.wait()
        t0 = time.perf_counter()
        for w in workers:
            w.join()
        return time.perf_counter() - t0

    cases: dict[str, Callable[[], object]] = {
        "unguarded": lambda: time.sleep(pause),
        "pybreaker call()": lambda: pb.call(time.sleep, pause),
        "breaker Breaker.do": lambda: brk.do(time.sleep, pause),
        "breaker @circuit": lambda: sleeper(pause),
    }
    repeats = 1 if smoke else 3
    elapsed = {name: min(run(call) for _ in range(repeats)) for name, call in cases.items()}
    rows = report.section(f"Concurrency: {n} threads x {calls} calls of 10 ms through one breaker")
    for name, t in elapsed.items():
        rel = elapsed["unguarded"] / t
        report.add(rows, name, ms(t), f"throughput {rel:.2f}x unguarded")
    ours = min(
        elapsed["unguarded"] / elapsed[name] for name in ("breaker Breaker.do", "breaker @circuit")
    )
    report.target(
        "16-thread throughput >= 0.95x unguarded, counts exact", f"{ours:.2f}x", ours >= 0.95
    )
    provider.close()
    del breaker


def tasks(report: Report, smoke: bool) -> None:
    from datetime import timedelta

    import aiobreaker
    from purgatory import AsyncCircuitBreakerFactory

    n, calls = 200, (2 if smoke else 10)
    provider = _memory_provider()

    async def nap() -> None:
        await asyncio.sleep(0.01)

    async def run(make: Callable[[], Awaitable[Callable[[], Awaitable[object]]]]) -> float:
        call = await make()

        async def worker() -> None:
            for _ in range(calls):
                await call()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(n)))
        return time.perf_counter() - t0

    def ready(call: Callable[[], Awaitable[object]]) -> Any:
        async def make() -> Callable[[], Awaitable[object]]:
            return call

        return make

    ab = aiobreaker.CircuitBreaker(fail_max=5, timeout_duration=timedelta(minutes=1))

    async def purgatory() -> Callable[[], Awaitable[object]]:
        factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=60)
        await factory.initialize()
        return factory("tasks")(nap)

    async def guarded() -> None:
        async with provider.guard("tasks-guard"):
            await nap()

    cases = {
        "unguarded": ready(nap),
        "aiobreaker call_async()": ready(lambda: ab.call_async(nap)),
        "purgatory decorator": purgatory,
        "breaker @circuit": ready(provider.circuit("tasks-deco")(nap)),
        "breaker async with guard()": ready(guarded),
    }
    repeats = 1 if smoke else 3

    async def main() -> dict[str, float]:
        # A loop, not a dict comprehension around an await: Python 3.10 rejects that.
        best = {}
        for name, make in cases.items():
            best[name] = min([await run(make) for _ in range(repeats)])
        return best

    elapsed = asyncio.run(main())
    rows = report.section(f"Concurrency: {n} asyncio tasks x {calls} awaits of asyncio.sleep(0.01)")
    for name, t in elapsed.items():
        report.add(rows, name, ms(t), f"throughput {elapsed['unguarded'] / t:.2f}x unguarded")
    provider.close()


# -- 4: propagation ---------------------------------------------------------------------------


def propagation(report: Report, smoke: bool) -> None:
    import requests

    import breaker
    from breaker.testing import ConsulServer

    changes = 5 if smoke else 120
    rows = report.section(f"Propagation: Consul PUT -> live breaker uses it ({changes} changes)")
    worst_p99 = 0.0
    for others in (0, 1000):
        prefix = "config/bench/checkout/breakers/"
        with ConsulServer() as server:
            for i in range(others):
                server.put(f"{prefix}other-{i:04d}.json", json.dumps({"failureThreshold": 3}))
            config = breaker.Config("checkout", "/" + prefix)
            coord = breaker.ConsulCoord(server.addr)
            with breaker.new(config, coord=coord) as provider, requests.Session() as http:
                http.trust_env = False
                brk = provider.get_breaker("payments")
                latencies = []
                for i in range(changes):
                    target = 2 + i
                    body = json.dumps({"failureThreshold": target})
                    # Changes 150 ms apart, as an operator's are (the watcher paces its
                    # queries 100 ms apart, so back-to-back writes would measure pacing).
                    time.sleep(0.15)
                    t0 = time.perf_counter()
                    http.put(f"{server.url}/v1/kv/{prefix}payments.json", data=body, timeout=5)
                    while brk.policy.failure_threshold != target:
                        if time.perf_counter() - t0 > 10:
                            raise RuntimeError("a change did not propagate within 10 s")
                        time.sleep(0.0002)
                    latencies.append(time.perf_counter() - t0)
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        worst_p99 = max(worst_p99, p99)
        label = f"with {others} other keys under the prefix"
        report.add(rows, label + ": p50", ms(p50))
        report.add(rows, label + ": p99", ms(p99), f"max {ms(latencies[-1])}")
    report.target("propagation p99 <= 50 ms on loopback", ms(worst_p99), worst_p99 <= 0.05)


def change_cost(report: Report, smoke: bool) -> None:
    import change  # benchmarks/change.py

    change.section(report, smoke)


# -- 5: scale ---------------------------------------------------------------------------------


def scale(report: Report, smoke: bool) -> None:
    import pybreaker

    import breaker
    import breaker.testing

    sizes = (100, 1000) if smoke else (1_000, 10_000, 100_000)
    rows = report.section("Scale")
    n = sizes[-1] if smoke else 10_000

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    plain = [pybreaker.CircuitBreaker(name=f"svc-{i}") for i in range(n)]
    pb_bytes = _grown(before) / n
    del plain
    gc.collect()
    provider = _memory_provider()
    before = tracemalloc.take_snapshot()
    for i in range(n):
        provider.get_breaker(f"svc-{i}")
    idle_bytes = _grown(before) / n
    # A breaker that has tripped once and closed again carries pybreaker's object.
    before = tracemalloc.take_snapshot()
    for i in range(n):
        brk = provider.get_breaker(f"svc-{i}")
        breaker.testing.force_state(brk, "open")
        breaker.testing.force_state(brk, "closed")
    tripped_bytes = idle_bytes + _grown(before) / n
    tracemalloc.stop()
    provider.close()
    report.add(rows, "memory per pybreaker.CircuitBreaker", f"{pb_bytes:,.0f} B", f"{n:,} made")
    report.add(
        rows,
        "memory per idle breaker (registry entry and name included)",
        f"{idle_bytes:,.0f} B",
        "never left closed: no pybreaker object yet",
    )
    report.add(
        rows,
        "memory per breaker that tripped once and closed",
        f"{tripped_bytes:,.0f} B",
        "pybreaker's object included",
    )
    report.target(
        "memory per idle breaker <= 1,000 B, pybreaker's object included",
        f"{idle_bytes:,.0f} B (tripped once: {tripped_bytes:,.0f} B)",
        idle_bytes <= 1000,
    )

    # Two access patterns. A hot set: a service's call sites hit a few names over and
    # over, whatever the registry holds. Random names over the whole registry: the worst
    # case for CPU caches, where even a bare dict.get slows down as the registry grows; a
    # dict of the same names and breakers, probed in the same order, is its floor.
    lookups = 20_000 if smoke else 200_000
    repeats = 1 if smoke else 7
    hot: dict[int, float] = dict.fromkeys(sizes, float("inf"))
    ours: dict[int, float] = dict.fromkeys(sizes, float("inf"))
    floor: dict[int, float] = dict.fromkeys(sizes, float("inf"))
    setups = []
    for size in sizes:
        provider = _memory_provider()
        names = [f"grpc:/pkg.Service{i}/Method" for i in range(size)]
        for name in names:
            provider.get_breaker(name)
        plain = {name: provider.get_breaker(name) for name in names}
        hot_names = random.sample(names, 8)
        hot_picks = [random.choice(hot_names) for _ in range(lookups)]
        picks = [random.choice(names) for _ in range(lookups)]
        setups.append((size, provider, plain, hot_picks, picks))
    # Sizes take turns, round after round, so the machine's drift hits them alike.
    for _ in range(repeats):
        for size, provider, plain, hot_picks, picks in setups:
            hot[size] = min(hot[size], _per_lookup(provider.get_breaker, hot_picks, 1))
            ours[size] = min(ours[size], _per_lookup(provider.get_breaker, picks, 1))
            floor[size] = min(floor[size], _per_lookup(plain.get, picks, 1))
    vs_dict = {size: ours[size] / floor[size] for size in sizes}
    for size, provider, *_ in setups:
        report.add(rows, f"get_breaker with {size:,} breakers, 8 hot names", ns(hot[size]))
        report.add(
            rows,
            f"get_breaker with {size:,} breakers, random names",
            ns(ours[size]),
            f"a bare dict.get: {ns(floor[size])}",
        )
        provider.close()
    first, last = sizes[0], sizes[-1]
    flat = hot[last] / hot[first]
    report.add(
        rows, f"get_breaker, hot names, {last:,} vs {first:,}", f"{flat:.2f}x", "flat is 1.0x"
    )
    report.add(
        rows,
        f"get_breaker / dict.get, random names, {first:,} -> {last:,}",
        f"{vs_dict[first]:.2f}x -> {vs_dict[last]:.2f}x",
        "the registry adds a constant; the growth is the dict's (caches)",
    )
    report.target(
        f"get_breaker flat from {first:,} to {last:,}", f"{flat:.2f}x (hot names)", flat <= 1.5
    )

    count = 1_000 if smoke else 10_000
    prefix = "config/bench/reload/breakers/"
    coord = breaker.MemoryCoord(
        {f"{prefix}svc-{i}.json": json.dumps({"failureThreshold": 3}) for i in range(count)}
    )
    provider = breaker.new(breaker.Config("reload", prefix), coord=coord)
    for i in range(count):
        provider.get_breaker(f"svc-{i}")
    logging.getLogger("breaker").setLevel(logging.WARNING)

    def document(i: int, attempt: int, distinct: bool) -> bytes:
        if distinct:  # every document its own threshold and timeout, as a fleet's may be
            doc = {"failureThreshold": 4 + attempt + i % 1000, "openStateTimeout": f"{30 + i}s"}
        else:  # 0.1.0's benchmark: the same change in every document
            doc = {"failureThreshold": 4 + attempt, "openStateTimeout": "30s"}
        return json.dumps(doc).encode()

    took = {False: float("inf"), True: float("inf")}
    pace = float("inf")
    for attempt in range(1 if smoke else 3):
        for distinct in (False, True):
            pace = min(pace, _calibrate())
            changed = {
                f"{prefix}svc-{i}.json": document(i, 2 * attempt + distinct, distinct)
                for i in range(count)
            }
            t0 = time.perf_counter()
            provider._apply(changed)
            took[distinct] = min(took[distinct], time.perf_counter() - t0)
    # What an operator's edit costs: one document among thousands, or the service default.
    one = relayer = float("inf")
    for attempt in range(1 if smoke else 5):
        edited = dict(changed)
        edited[f"{prefix}svc-7.json"] = document(7, 100 + attempt, True)
        t0 = time.perf_counter()
        provider._apply(edited)
        one = min(one, time.perf_counter() - t0)
        edited[f"{prefix}_default.json"] = json.dumps({"successThreshold": 2 + attempt}).encode()
        t0 = time.perf_counter()
        provider._apply(edited)
        relayer = min(relayer, time.perf_counter() - t0)
        changed = edited
    provider.close()
    report.add(
        rows,
        "calibration loop (the machine's pace)",
        ms(pace),
        f"{ms(REFERENCE_PACE)} at the reference pace",
    )
    paced = {distinct: took[distinct] * REFERENCE_PACE / pace for distinct in took}
    for distinct, what in ((False, "identical (0.1.0's benchmark)"), (True, "all different")):
        report.add(
            rows,
            f"reload of {count:,} changed policies, {what}",
            ms(took[distinct]),
            f"{ms(paced[distinct])} at the reference pace; {count:,} live breakers adopt",
        )
    report.add(
        rows,
        f"reload of 1 changed policy among {count:,}",
        ms(one),
        "unchanged documents found by identity; one breaker adopts",
    )
    report.add(
        rows,
        f"new _default.json under {count:,} policies",
        ms(relayer),
        f"re-layers every name; {count:,} live breakers adopt",
    )
    report.target(
        f"{count:,}-policy reload <= 100 ms (0.1.0's workload, reference pace)",
        ms(paced[False]),
        paced[False] <= 0.1 if not smoke else None,
    )

    from breaker.testing import ConsulServer

    for total in (200, count) if smoke else (2_000, count):
        with ConsulServer() as server:
            for i in range(total):
                server.put(f"{prefix}svc-{i}.json", json.dumps({"failureThreshold": 3}))
            config = breaker.Config("reload", prefix)
            t0 = time.perf_counter()
            with breaker.new(config, coord=breaker.ConsulCoord(server.addr)) as provider:
                took = time.perf_counter() - t0
                assert len(provider.policies) == total
        report.add(
            rows,
            f"breaker.new over Consul with {total:,} policies",
            ms(took),
            "one recursive GET, parse, validate",
        )


# -- 6: metrics --------------------------------------------------------------------------------


def metrics(report: Report, smoke: bool) -> None:
    import prometheus_client

    import breaker
    import breaker.testing
    from breaker.metrics import DEFAULT_BREAKER_LIMIT, PrometheusMetrics

    count = 1_000 if smoke else 10_000
    rows = report.section(f"Metrics: a Prometheus scrape of {count:,} breakers")
    provider = _memory_provider()
    for i in range(count):  # every breaker called; one in a hundred tripped, a few still open
        brk = provider.get_breaker(f"svc-{i}")
        brk.do(lambda: None)
        if i % 100 == 0:
            breaker.testing.force_state(brk, "open")
            if i % 300:
                breaker.testing.force_state(brk, "closed")
    registry = prometheus_client.CollectorRegistry()
    PrometheusMetrics(provider, registry=registry)
    repeats = 3 if smoke else 15
    took = pace = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        families = list(registry.collect())  # what a scrape asks the one collector
        took = min(took, time.perf_counter() - t0)
    pace = _calibrate() if not smoke else REFERENCE_PACE
    series = sum(len(f.samples) for f in families)
    paced = took * REFERENCE_PACE / pace
    report.add(
        rows,
        f"collect() of {count:,} breakers",
        ms(took),
        f"{ms(paced)} at the reference pace; {series:,} series "
        f"({DEFAULT_BREAKER_LIMIT} breakers with their own, the rest folded)",
    )
    text_took = float("inf")
    for _ in range(1 if smoke else 3):
        t0 = time.perf_counter()
        text = prometheus_client.generate_latest(registry)
        text_took = min(text_took, time.perf_counter() - t0)
    report.add(
        rows,
        "... and the exposition text (generate_latest)",
        ms(text_took),
        f"{len(text):,} bytes; prometheus_client's formatting",
    )
    breakers = list(provider.breakers().values())
    t0 = time.perf_counter()
    for brk in breakers:
        brk.stats()
    report.add(
        rows,
        f"stats() of {count:,} breakers, for comparison",
        ms(time.perf_counter() - t0),
        "each under the breaker's lock; the scrape before called it twice a breaker",
    )
    report.target(
        f"scrape of {count:,} breakers <= 30 ms (reference pace)",
        ms(paced),
        paced <= 0.03 if not smoke else None,
    )

    # The opt-in histogram times every call: what that costs on Breaker.do.
    brk = provider.get_breaker("timed")
    calls = 20_000 if smoke else 200_000

    def per_call() -> float:
        best = float("inf")
        for _ in range(1 if smoke else 5):
            t0 = time.perf_counter()
            for _ in range(calls):
                brk.do(_nothing)
            best = min(best, (time.perf_counter() - t0) / calls)
        return best

    plain = per_call()
    timed = PrometheusMetrics(provider, registry=registry, durations=True)
    with_durations = per_call()
    timed.close()
    report.add(rows, "Breaker.do, no histogram", ns(plain))
    report.add(
        rows,
        "Breaker.do while the duration histogram is on",
        ns(with_durations),
        f"+{ns(with_durations - plain)} a call: every call timed, the slow way",
    )
    provider.close()


def _nothing() -> None:
    pass


REFERENCE_PACE = 0.13
"""Seconds `_calibrate` took at this VM's fastest observed pace (128-219 ms within a minute)."""


def _calibrate() -> float:
    """Return the best of three timings of a fixed pure-Python loop: the machine's pace now."""
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        total = 0
        for i in range(3_000_000):
            total += i
        best = min(best, time.perf_counter() - t0)
    return best


def _per_lookup(get: Callable[[str], object], picks: list[str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for name in picks:
            get(name)
        best = min(best, (time.perf_counter() - t0) / len(picks))
    return best


def _grown(before: tracemalloc.Snapshot) -> int:
    after = tracemalloc.take_snapshot()
    return sum(s.size_diff for s in after.compare_to(before, "filename"))


def _memory_provider() -> Any:
    import breaker

    return breaker.new(breaker.Config("bench", "bench/breakers/"), coord=breaker.MemoryCoord())


# -- 5b: the fleet's load on Consul (benchmarks/fleet.py) --------------------------------------


def fleet(report: Report, smoke: bool) -> None:
    import fleet as measured  # benchmarks/fleet.py

    numbers = measured.run(smoke)
    rows = report.section("Fleet: one instance's record in Consul (fleet_ttl 15 s)")
    idle = numbers["idle"]
    report.add(
        rows,
        "idle: requests per instance per minute",
        f"{idle['total']:.2f}",
        f"{idle['renew']:.2f} renewals, {idle['write']:.2f} writes, {idle['create']:.2f} "
        "session creations (simulated minutes on the stand-in)",
    )
    report.add(
        rows,
        "idle: policy watcher, for comparison",
        f"{60 / 55:.2f}",
        "one blocking query per 55 s wait (not measured here)",
    )
    storm = numbers["storm"]
    report.add(
        rows,
        f"storm of {storm['transitions/s']:.0f} transitions/s: record writes per second",
        f"{storm['writes/s']:.2f}",
        f"{storm['writes']:.0f} writes, real time",
    )
    trip, busy = numbers["trip"], numbers["trip-busy"]
    report.add(
        rows,
        "trip -> Provider.fleet() shows it, after a quiet second: p50",
        ms(trip["p50"]),
        f"max {ms(trip['max'])}",
    )
    report.add(
        rows,
        "trip -> Provider.fleet() shows it, changes 0.3 s apart: p50",
        ms(busy["p50"]),
        f"max {ms(busy['max'])}; at most one write a second",
    )
    report.target(
        "idle fleet load <= 1 renewal per fleet_ttl/2",
        f"{idle['renew']:.2f}/min",
        idle["renew"] <= 8.0,
    )
    report.target(
        "record writes <= 1/s under 100 transitions/s",
        f"{storm['writes/s']:.2f}/s",
        storm["writes"] <= storm["seconds"] + 1,  # one a second, and one at the window's edge
    )
    worst = max(trip["max"], busy["max"])
    report.target("trip shows in the fleet view within 2 s", ms(worst), worst <= 2.0)


# -- 7: import time (benchmarks/importtime.py) ------------------------------------------------


def import_time(report: Report, smoke: bool) -> None:
    import importtime  # beside this script

    result = importtime.measure(runs=3 if smoke else 21)
    median = ms(result.median_us / 1e6)
    rows = report.section(
        "Import time: python -X importtime -c 'import breaker' (and breaker.testing)"
    )
    note = f"median of {len(result.runs_us)} fresh processes, fastest {ms(result.min_us / 1e6)}"
    report.add(rows, "import breaker (cumulative)", median, note)
    with_consul = ms(result.with_consul_us / 1e6)
    report.add(rows, "... and then breaker.ConsulCoord", with_consul, "what 0.1.0 imported")
    modules = ", ".join(result.third_party) or "none"
    report.add(
        rows, "third-party modules import breaker loads", str(len(result.third_party)), modules
    )
    testing = ms(result.testing_us / 1e6)
    report.add(rows, "import breaker.testing (cumulative)", testing, "breaker included")
    servers = ms(result.testing_with_servers_us / 1e6)
    report.add(rows, "... and then ConsulServer, FaultProxy", servers, "loaded on first use")
    added = result.testing_added
    report.add(
        rows, "modules import breaker.testing adds", str(len(added)), ", ".join(added) or "none"
    )
    ratio = f"{result.ratio:.2f}x"
    goal = importtime.GOAL
    report.target(f"import breaker <= {goal}x of it with ConsulCoord", ratio, result.ratio <= goal)
    loaded = result.testing_server_modules
    report.target(
        "import breaker.testing loads no server module", ", ".join(loaded) or "none", not loaded
    )


# -- the run ----------------------------------------------------------------------------------


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for dist in (
        "consul-breaker",
        "pybreaker",
        "wrapt",
        "attrs",
        "python-consul",
        "circuitbreaker",
        "aiobreaker",
        "purgatory",
        "prometheus-client",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{dist} {metadata.version(dist)}")
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"- python: {platform.python_implementation()} {platform.python_version()}",
        f"- packages: {', '.join(versions)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks it runs")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="sections: paths then threads tasks propagation change scale metrics fleet import",
    )
    args = parser.parse_args()
    logging.getLogger("breaker").setLevel(logging.ERROR)
    report = Report()
    sections = {
        "paths": paths,
        "then": then,
        "threads": threads,
        "tasks": tasks,
        "propagation": propagation,
        "change": change_cost,
        "scale": scale,
        "metrics": metrics,
        "fleet": fleet,
        "import": import_time,
    }
    for name, run in sections.items():
        if args.only is None or name in args.only:
            run(report, args.smoke)
    print("\n== Targets")
    for target in report.targets:
        print(f"  {target[0]:60} {target[1]:>22}  {target[2]}")
    if args.smoke or args.only is not None:
        return
    command = "python3 tasks.py bench   (= python benchmarks/run.py)"
    header = [
        "Benchmark results",
        "=================",
        "",
        f"Produced by ``{command}``.",
        "",
        *machine(),
        "",
        "Ratios compare peers measured in the same run; absolute times",
        "are context only (a shared, noisy machine).",
        "",
        "",
    ]
    notes = HERE / "NOTES.rst"
    text = "\n".join(header) + report.render() + "\n"
    if notes.exists():
        text += "\n" + notes.read_text()
    RESULTS.write_text(text)
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
