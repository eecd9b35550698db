"""Per-change cost: what the library does when one key under a prefix of N keys changes.

A blocking query returns every entry under the prefix, changed or not. Parsing that JSON
is the price of Consul's format; the rest is the library's own work: reading the listing
against the last one (decode what changed, keep the rest), comparing, and the provider
applying the snapshot. That work is measured alone, at 0, 1,000 and 10,000 other keys,
beside the JSON parse and the end-to-end latency through the embedded Consul stand-in.

Run by ``benchmarks/run.py`` (section ``change``); ``python benchmarks/change.py`` prints
the section alone.
"""

from __future__ import annotations

import base64
import json
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any, Protocol

PREFIX = "config/bench/change/breakers/"
CHANGED = PREFIX + "payments.json"
SIZES = (0, 1_000, 10_000)
BUDGET = {1_000: 0.001, 10_000: 0.005}
"""The library's own work per change (issue 21), beyond the JSON parse."""


class Report(Protocol):
    def section(self, title: str) -> list[tuple[str, str, str]]: ...

    def add(
        self, rows: list[tuple[str, str, str]], what: str, value: str, note: str = ""
    ) -> None: ...

    def target(self, name: str, measured: str, verdict: bool | None) -> None: ...


def _doc(threshold: int) -> bytes:
    return json.dumps({"failureThreshold": threshold, "openStateTimeout": "30s"}).encode()


def _body(entries: dict[str, tuple[bytes, int]]) -> str:
    """Return a recursive GET's answer as Consul writes it."""
    return json.dumps(
        [
            {
                "LockIndex": 0,
                "Key": key,
                "Flags": 0,
                "Value": base64.b64encode(value).decode(),
                "CreateIndex": index,
                "ModifyIndex": index,
            }
            for key, (value, index) in sorted(entries.items())
        ]
    )


def _best(fn: Callable[[], object], rounds: int) -> float:
    """Return the median of ``rounds`` timings of ``fn``."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def library_cost(others: int, rounds: int) -> dict[str, float]:
    """Time one change among ``others`` keys: the parse, the coord's reading, the apply."""
    import breaker
    from breaker.coord.consul import _decode

    entries = {f"{PREFIX}svc-{i:05d}.json": (_doc(3 + i % 7), 100 + i) for i in range(others)}
    entries[CHANGED] = (_doc(3), 99)
    index = 100 + others
    first = _decode.read_listing(200, {"X-Consul-Index": str(index)}, _body(entries), PREFIX)
    bodies = []
    for step in range(2):  # the changed key flips between two values, at a new index each
        index += 1
        entries[CHANGED] = (_doc(4 + step), index)
        bodies.append((index, _body(entries)))
    parsed = [(i, json.loads(body)) for i, body in bodies]

    def parse() -> object:
        return json.loads(bodies[0][1])

    def read() -> Any:
        listing = _decode._read_changes(parsed[0][0], parsed[0][1], first)
        listing.same_content(first)
        return listing.snapshot()

    listings = [_decode._read_changes(parsed[0][0], parsed[0][1], first)]
    listings.append(_decode._read_changes(parsed[1][0], parsed[1][1], listings[0]))
    snapshots = [listing.snapshot() for listing in listings]

    provider = breaker.new(
        breaker.Config("change", "/" + PREFIX), coord=breaker.MemoryCoord(), max_breakers=10**6
    )
    provider._apply(first.snapshot())
    for name in list(provider.policies)[:100]:  # live breakers adopt the changes they see
        provider.get_breaker(name)
    provider.get_breaker("payments")
    turn = [0]

    def apply() -> None:
        turn[0] ^= 1
        provider._apply(snapshots[turn[0]])

    # Rounds take turns, so that the machine's drift hits the three alike.
    times: dict[str, list[float]] = {"parse": [], "read": [], "apply": []}
    for _ in range(rounds):
        for name, fn in (("parse", parse), ("read", read), ("apply", apply)):
            times[name].append(_best(fn, 1))
    provider.close()
    result = {name: statistics.median(values) for name, values in times.items()}
    result["library"] = result["read"] + result["apply"]
    return result


def end_to_end(others: int, changes: int) -> list[float]:
    """Return the latencies from a PUT to the live breaker using it, through the stand-in."""
    import requests

    import breaker
    from breaker.testing import ConsulServer

    latencies = []
    with ConsulServer() as server:
        for i in range(others):
            server.put(f"{PREFIX}svc-{i:05d}.json", _doc(3 + i % 7))
        coord = breaker.ConsulCoord(server.addr)
        with (
            breaker.new(breaker.Config("change", "/" + PREFIX), coord=coord) as provider,
            requests.Session() as http,
        ):
            http.trust_env = False
            brk = provider.get_breaker("payments")
            for i in range(changes):
                target = 10 + i
                time.sleep(0.15)  # an operator's pace; back-to-back writes measure pacing
                t0 = time.perf_counter()
                http.put(f"{server.url}/v1/kv/{CHANGED}", data=_doc(target), timeout=5)
                while brk.policy.failure_threshold != target:
                    if time.perf_counter() - t0 > 10:
                        raise RuntimeError("a change did not propagate within 10 s")
                    time.sleep(0.0002)
                latencies.append(time.perf_counter() - t0)
    return sorted(latencies)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


def section(report: Report, smoke: bool) -> None:
    """Add the per-change section and its targets to ``report``."""
    logging.getLogger("breaker").setLevel(logging.ERROR)
    rows = report.section("Per-change cost: one key changes among N under the prefix")
    rounds = 3 if smoke else 41
    changes = 3 if smoke else 40
    for others in SIZES:
        cost = library_cost(others, rounds)
        label = f"{others:,} other keys"
        report.add(rows, f"{label}: JSON parse (Consul's format)", ms(cost["parse"]))
        report.add(rows, f"{label}: coord reads the listing", ms(cost["read"]), "decode, compare")
        report.add(rows, f"{label}: provider applies it", ms(cost["apply"]), "parse, swap, adopt")
        report.add(
            rows, f"{label}: library per change", ms(cost["library"]), "beyond the JSON parse"
        )
        latencies = end_to_end(others, changes)
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        report.add(
            rows,
            f"{label}: end to end p99",
            ms(p99),
            f"p50 {ms(latencies[len(latencies) // 2])}; PUT -> breaker, stand-in on loopback",
        )
        budget = BUDGET.get(others)
        if budget is not None:
            report.target(
                f"library per change <= {budget * 1e3:g} ms at {others:,} keys",
                ms(cost["library"]),
                cost["library"] <= budget if not smoke else None,
            )


if __name__ == "__main__":
    import sys

    class _Print:
        def section(self, title: str) -> list[tuple[str, str, str]]:
            print(f"\n== {title}")
            return []

        def add(
            self, rows: list[tuple[str, str, str]], what: str, value: str, note: str = ""
        ) -> None:
            print(f"  {what:52} {value:>12}  {note}")

        def target(self, name: str, measured: str, verdict: bool | None) -> None:
            print(f"  target: {name}: {measured} ({verdict})")

    section(_Print(), "--smoke" in sys.argv)
