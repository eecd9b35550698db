"""Prometheus and OpenTelemetry metrics, read at scrape time, for any number of providers."""

from __future__ import annotations

import gc
import json
import logging
import random
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import breaker
from breaker import Config, MemoryCoord, Outcome, Policy
from breaker.testing import FakeClock, force_state

from .helpers import PREFIX, Abort, Boom, NotFound, fail

prometheus_client = pytest.importorskip("prometheus_client")

from breaker.metrics import (  # noqa: E402 - after the skip: it needs no exporter, the tests do
    DEFAULT_BREAKER_LIMIT,
    OTHER,
    OpenTelemetryMetrics,
    PrometheusMetrics,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
OUTCOMES = [o.value for o in Outcome]


def make_provider(
    clock: FakeClock, service: str = "checkout", documents: dict[str, str] | None = None, **kw: Any
) -> breaker.Provider:
    coord = MemoryCoord({PREFIX + k + ".json": v for k, v in (documents or {}).items()})
    return breaker.new(
        Config(service, PREFIX),
        coord=coord,
        clock=clock,
        wall_clock=clock.wall,
        default_policy=Policy(open_state_timeout=10),
        **kw,
    )


@pytest.fixture
def provider(clock: FakeClock) -> Iterator[breaker.Provider]:
    p = make_provider(
        clock, documents={"payments": '{"failureThreshold": 1}', "bad": '{"failureThreshold": "x"}'}
    )
    payments = p.get_breaker("payments")
    with pytest.raises(Boom):
        payments.do(fail)
    with pytest.raises(breaker.BreakerOpenError):
        payments.do(lambda: None)
    p.get_breaker("inventory").do(lambda: None)
    yield p
    p.close()


@pytest.fixture
def registry() -> Any:
    return prometheus_client.CollectorRegistry()


def scrape(registry: Any) -> Samples:
    samples = {}
    for family in registry.collect():
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def labels(service: str = "checkout", **kw: str) -> frozenset[tuple[str, str]]:
    return frozenset({"service": service, **kw}.items())


def calls(
    samples: Samples, name: str, outcome: str = "success", service: str = "checkout"
) -> float:
    return samples[("breaker_calls_total", labels(service, breaker=name, outcome=outcome))]


def breakers_in(samples: Samples, service: str = "checkout") -> set[str]:
    return {
        dict(key)["breaker"]
        for metric, key in samples
        if metric == "breaker_state" and dict(key)["service"] == service
    }


class TestPrometheus:
    def test_states_calls_transitions_and_the_coord(
        self, provider: breaker.Provider, registry: Any
    ) -> None:
        PrometheusMetrics(provider, registry=registry)
        samples = scrape(registry)
        assert samples[("breaker_state", labels(breaker="payments", state="open"))] == 1
        assert samples[("breaker_state", labels(breaker="payments", state="closed"))] == 0
        assert samples[("breaker_state", labels(breaker="inventory", state="closed"))] == 1
        assert samples[("breaker_mode", labels(breaker="payments", mode="auto"))] == 1
        assert calls(samples, "payments", "failure") == 1
        assert calls(samples, "payments", "rejected") == 1
        assert calls(samples, "inventory", "success") == 1
        for outcome in ("timeout", "bulkhead_full"):  # issue 18's outcomes, from Outcome
            assert calls(samples, "inventory", outcome) == 0
        assert samples[("breaker_in_flight", labels(breaker="inventory"))] == 0
        transition = labels(breaker="payments", **{"from": "closed", "to": "open"})
        assert samples[("breaker_transitions_total", transition)] == 1
        assert samples[("breaker_coord_up", labels())] == 1
        assert samples[("breaker_coord_last_sync_timestamp_seconds", labels())] > 1e9
        assert samples[("breaker_invalid_documents_total", labels())] == 1
        assert not any(name.startswith("breaker_call_duration") for name, _ in samples)

    def test_every_outcome_has_a_series(self, provider: breaker.Provider, registry: Any) -> None:
        PrometheusMetrics(provider, registry=registry)
        samples = scrape(registry)
        for outcome in OUTCOMES:
            assert ("breaker_calls_total", labels(breaker="inventory", outcome=outcome)) in samples

    def test_values_are_read_when_scraped(self, provider: breaker.Provider, registry: Any) -> None:
        PrometheusMetrics(provider, registry=registry)
        before = calls(scrape(registry), "inventory")
        provider.get_breaker("inventory").do(lambda: None)
        assert (before, calls(scrape(registry), "inventory")) == (1, 2)

    def test_the_exposition_text_is_valid(self, provider: breaker.Provider, registry: Any) -> None:
        PrometheusMetrics(provider, registry=registry, durations=True)
        provider.get_breaker("inventory").do(lambda: None)
        text = prometheus_client.generate_latest(registry).decode()
        assert "# TYPE breaker_calls_total counter" in text
        assert "# TYPE breaker_call_duration_seconds histogram" in text
        assert 'breaker_state{breaker="payments",service="checkout",state="open"} 1.0' in text
        from prometheus_client.parser import text_string_to_metric_families

        parsed = list(text_string_to_metric_families(text))
        names = [f.name for f in parsed]
        assert len(names) == len(set(names))  # one family per name
        assert {"breaker_state", "breaker_calls", "breaker_call_duration_seconds"} <= set(names)

    def test_the_default_registry(self, provider: breaker.Provider) -> None:
        exported = PrometheusMetrics(provider)
        try:
            assert calls(scrape(prometheus_client.REGISTRY), "inventory") == 1
        finally:
            exported.close()
        assert not breakers_in(scrape(prometheus_client.REGISTRY))

    def test_collect_reads_no_breaker_under_its_lock(
        self, provider: breaker.Provider, registry: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def no_stats(self: breaker.Breaker) -> None:
            raise AssertionError("a scrape must not call stats(): it takes the breaker's lock")

        monkeypatch.setattr(breaker.Breaker, "stats", no_stats)
        PrometheusMetrics(provider, registry=registry)
        brk = provider.get_breaker("inventory")
        scraped: list[Samples] = []
        with brk._lock:  # a call settling right now holds it
            thread = threading.Thread(target=lambda: scraped.append(scrape(registry)))
            thread.start()
            thread.join(timeout=10)
        assert scraped and calls(scraped[0], "inventory") == 1


class TestManyProviders:
    def test_providers_share_one_registry(self, clock: FakeClock, registry: Any) -> None:
        # Each used to register a collector of its own: DuplicateTimeseries at start-up.
        with (
            make_provider(clock, "checkout") as one,
            make_provider(clock, "search") as two,
            make_provider(clock, "billing") as three,
        ):
            for p in (one, two, three):
                PrometheusMetrics(p, registry=registry)
                p.get_breaker("db").do(lambda: None)
            samples = scrape(registry)
            for service in ("checkout", "search", "billing"):
                assert calls(samples, "db", service=service) == 1
                assert samples[("breaker_coord_up", labels(service))] == 1

    def test_created_closed_and_created_again(self, clock: FakeClock, registry: Any) -> None:
        first = make_provider(clock)
        PrometheusMetrics(first, registry=registry)
        first.get_breaker("db").do(lambda: None)
        assert calls(scrape(registry), "db") == 1
        first.close()
        assert breakers_in(scrape(registry)) == set()  # a closed provider stops reporting
        assert ("breaker_coord_up", labels()) not in scrape(registry)
        with make_provider(clock) as second:
            PrometheusMetrics(second, registry=registry)
            second.get_breaker("db").do(lambda: None)
            second.get_breaker("db").do(lambda: None)
            assert calls(scrape(registry), "db") == 2

    def test_closing_the_export_stops_reporting(
        self, provider: breaker.Provider, registry: Any
    ) -> None:
        exported = PrometheusMetrics(provider, registry=registry)
        assert breakers_in(scrape(registry)) == {"payments", "inventory"}
        exported.close()
        exported.close()
        assert breakers_in(scrape(registry)) == set()
        PrometheusMetrics(provider, registry=registry)
        assert breakers_in(scrape(registry)) == {"payments", "inventory"}

    def test_a_second_live_provider_of_a_service_replaces_the_first(
        self, clock: FakeClock, registry: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        with make_provider(clock) as old, make_provider(clock) as new:
            first = PrometheusMetrics(old, registry=registry)
            old.get_breaker("old-only").do(lambda: None)
            with caplog.at_level(logging.WARNING, logger="breaker"):
                PrometheusMetrics(new, registry=registry)
            assert "a second provider of service 'checkout' replaces the first" in caplog.text
            new.get_breaker("new-only").do(lambda: None)
            first.close()  # no longer the one reported: nothing changes
            assert breakers_in(scrape(registry)) == {"new-only"}

    def test_the_same_provider_twice_is_reported_once(
        self, provider: breaker.Provider, registry: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        PrometheusMetrics(provider, registry=registry)
        with caplog.at_level(logging.WARNING, logger="breaker"):
            PrometheusMetrics(provider, registry=registry)
        assert caplog.text == ""
        assert calls(scrape(registry), "inventory") == 1

    def test_a_forgotten_provider_stops_reporting(self, clock: FakeClock, registry: Any) -> None:
        p = make_provider(clock)
        PrometheusMetrics(p, registry=registry)
        p.close()
        del p
        gc.collect()
        assert breakers_in(scrape(registry)) == set()


def hot(p: breaker.Provider, name: str, n: int) -> breaker.Breaker:
    brk = p.get_breaker(name)
    for _ in range(n):
        brk.do(lambda: None)
    return brk


class TestSeriesBound:
    def test_the_busiest_breakers_have_series_the_rest_fold(
        self, clock: FakeClock, registry: Any
    ) -> None:
        with make_provider(clock) as p:
            PrometheusMetrics(p, registry=registry, breaker_limit=2)
            for i, name in enumerate(["a", "b", "c", "d", "e"]):
                hot(p, name, 10 - i)
            samples = scrape(registry)
            assert breakers_in(samples) == {"a", "b", OTHER}
            assert calls(samples, OTHER) == 8 + 7 + 6
            assert samples[("breaker_state", labels(breaker=OTHER, state="closed"))] == 3
            assert samples[("breaker_mode", labels(breaker=OTHER, mode="auto"))] == 3
            assert samples[("breaker_in_flight", labels(breaker=OTHER))] == 0
            # Each breaker with its own series makes a fixed number of them; the fold as many.
            per_breaker = sum(1 for _, key in samples if dict(key).get("breaker") == "a")
            assert sum(1 for _, key in samples if dict(key).get("breaker") == OTHER) <= per_breaker

    def test_the_default_bound(self, clock: FakeClock, registry: Any) -> None:
        with make_provider(clock) as p:
            PrometheusMetrics(p, registry=registry)
            for i in range(DEFAULT_BREAKER_LIMIT + 50):
                p.get_breaker(f"host-{i}")
            samples = scrape(registry)
            assert len(breakers_in(samples)) == DEFAULT_BREAKER_LIMIT + 1  # and _other
            assert samples[("breaker_state", labels(breaker=OTHER, state="closed"))] == 50

    def test_no_fold_while_every_breaker_fits(
        self, provider: breaker.Provider, registry: Any
    ) -> None:
        PrometheusMetrics(provider, registry=registry, breaker_limit=2)
        assert breakers_in(scrape(registry)) == {"payments", "inventory"}

    def test_breakers_keep_their_series(self, clock: FakeClock, registry: Any) -> None:
        with make_provider(clock) as p:
            PrometheusMetrics(p, registry=registry, breaker_limit=2)
            hot(p, "a", 3)
            hot(p, "b", 2)
            hot(p, "c", 1)
            assert breakers_in(scrape(registry)) == {"a", "b", OTHER}
            hot(p, "c", 50)  # now the busiest, but a and b keep theirs: no churn of series
            hot(p, "new", 80)
            assert breakers_in(scrape(registry)) == {"a", "b", OTHER}

    def test_a_breaker_that_needs_an_eye_takes_the_quietest_place(
        self, clock: FakeClock, registry: Any
    ) -> None:
        with make_provider(clock) as p:
            PrometheusMetrics(p, registry=registry, breaker_limit=2)
            hot(p, "a", 3)
            hot(p, "b", 2)
            for name in ("c", "d", "e"):
                hot(p, name, 1)
            assert breakers_in(scrape(registry)) == {"a", "b", OTHER}
            force_state(p.get_breaker("d"), "open")
            samples = scrape(registry)
            assert breakers_in(samples) == {"a", "d", OTHER}
            assert samples[("breaker_state", labels(breaker="d", state="open"))] == 1
            force_state(p.get_breaker("d"), "closed")
            assert breakers_in(scrape(registry)) == {"a", "d", OTHER}  # and keeps it

    def test_breakers_in_a_mode_need_an_eye_too(self, clock: FakeClock, registry: Any) -> None:
        documents = {"quiet": '{"mode": "shadow"}'}
        with make_provider(clock, documents=documents) as p:
            PrometheusMetrics(p, registry=registry, breaker_limit=1)
            hot(p, "busy", 5)
            p.get_breaker("quiet")
            assert breakers_in(scrape(registry)) == {"quiet", OTHER}

    def test_when_every_place_needs_an_eye_the_rest_fold(
        self, clock: FakeClock, registry: Any
    ) -> None:
        with make_provider(clock) as p:
            PrometheusMetrics(p, registry=registry, breaker_limit=1)
            for name in ("a", "b", "c"):
                force_state(hot(p, name, 1), "open")
            samples = scrape(registry)
            assert breakers_in(samples) == {"a", OTHER}
            assert samples[("breaker_state", labels(breaker=OTHER, state="open"))] == 2

    def test_a_limit_of_zero_folds_everything(
        self, provider: breaker.Provider, registry: Any
    ) -> None:
        PrometheusMetrics(provider, registry=registry, breaker_limit=0)
        samples = scrape(registry)
        assert breakers_in(samples) == {OTHER}
        assert calls(samples, OTHER, "failure") == 1

    @pytest.mark.parametrize("limit", [-1, 1.5, True, "10"])
    def test_a_bad_limit(self, provider: breaker.Provider, registry: Any, limit: Any) -> None:
        with pytest.raises(ValueError, match="breaker_limit: expected an integer >= 0"):
            PrometheusMetrics(provider, registry=registry, breaker_limit=limit)

    def test_the_fold_keeps_nothing_the_garbage_collector_tracks(
        self, clock: FakeClock, registry: Any
    ) -> None:
        # Else every scrape would leave a new long-lived object or two per folded breaker,
        # and thousands of breakers would set off a full collection every scrape or two.
        with make_provider(clock) as p:
            metrics = PrometheusMetrics(p, registry=registry, breaker_limit=1)
            for name in ("a", "b", "c"):
                hot(p, name, 1)
            force_state(p.get_breaker("c"), "open")
            force_state(p.get_breaker("c"), "closed")  # transitions counted too
            refs = dict(metrics._export.folded)
            scrape(registry)
            assert calls(scrape(registry), OTHER) == 2
            export = metrics._export
            assert {n: r for n, r in export.folded.items() if n in refs} == refs  # made once
            gc.collect()
            gc.collect()  # the first stops tracking the counts within, the second their tuple
            assert export.last and not any(map(gc.is_tracked, export.last.values()))

    def test_the_fold_never_goes_down(self, clock: FakeClock, registry: Any) -> None:
        with make_provider(clock) as p:
            PrometheusMetrics(p, registry=registry, breaker_limit=1)
            hot(p, "hot", 5)
            hot(p, "a", 2)
            hot(p, "b", 1)
            assert calls(scrape(registry), OTHER) == 3
            force_state(p.get_breaker("b"), "open")  # b in, hot out
            samples = scrape(registry)
            assert breakers_in(samples) == {"b", OTHER}
            assert calls(samples, OTHER) == 3  # hot's 5 arrive, b's 1 leaves: neither jumps
            hot(p, "hot", 4)
            assert calls(scrape(registry), OTHER) == 7  # what hot did since

    @pytest.mark.parametrize("seed", range(6))
    def test_the_fold_counts_every_call_once_and_never_goes_down(
        self, clock: FakeClock, registry: Any, seed: int
    ) -> None:
        rng = random.Random(seed)
        names = [f"b{i}" for i in range(8)]
        with make_provider(clock, max_breakers=4) as p:
            PrometheusMetrics(p, registry=registry, breaker_limit=3)
            before, live = scrape(registry), alive(p)
            highest: dict[str, float] = {}
            for _ in range(80):
                made = sum(act(p, rng, names) for _ in range(rng.randint(0, 3)))
                gc.collect()
                after = scrape(registry)
                for outcome in OUTCOMES:
                    value = after.get(
                        ("breaker_calls_total", labels(breaker=OTHER, outcome=outcome))
                    )
                    if value is not None:
                        assert value >= highest.get(outcome, 0)
                        highest[outcome] = value
                if breakers_in(before) == breakers_in(after) and still(live, p):
                    # The same breakers with series of their own, none gone: exact.
                    assert successes(after) - successes(before) == made
                before, live = after, alive(p)


def act(p: breaker.Provider, rng: random.Random, names: list[str]) -> int:
    """Do something to a breaker: force a state or make calls; return the successes."""
    brk = p.get_breaker(rng.choice(names))
    if rng.random() < 0.15:
        force_state(brk, rng.choice(["open", "closed", "half-open"]))
        return 0
    made = 0
    for _ in range(rng.randint(1, 4)):
        try:
            brk.do(lambda: None)
        except breaker.BreakerOpenError:
            continue
        made += 1
    return made


def alive(p: breaker.Provider) -> dict[str, weakref.ref[breaker.Breaker]]:
    return {name: weakref.ref(brk) for name, brk in p.breakers().items()}


def still(before: dict[str, weakref.ref[breaker.Breaker]], p: breaker.Provider) -> bool:
    now = p.breakers()
    return all(ref() is not None and now.get(name) is ref() for name, ref in before.items())


def successes(samples: Samples) -> float:
    return sum(
        value
        for (metric, key), value in samples.items()
        if metric == "breaker_calls_total" and dict(key)["outcome"] == "success"
    )


class TestRates:
    POLICY = (
        '{"failureRate": 0.5, "minimumCalls": 100, "rateWindow": "10s", "slowCallDuration": "1s"}'
    )

    def test_failure_and_slow_call_rates_of_the_window(
        self, clock: FakeClock, registry: Any
    ) -> None:
        with make_provider(clock, documents={"db": self.POLICY}) as p:
            PrometheusMetrics(p, registry=registry)
            brk = p.get_breaker("db")
            for _ in range(5):
                brk.do(lambda: None)
            brk.do(lambda: clock.advance(2))  # slow
            with pytest.raises(Boom):
                brk.do(fail)
            with pytest.raises(Boom):
                brk.do(lambda: (clock.advance(2), fail()))  # slow, however it ended
            samples = scrape(registry)
            assert samples[("breaker_failure_rate", labels(breaker="db"))] == 3 / 8
            assert samples[("breaker_slow_call_rate", labels(breaker="db"))] == 2 / 8
            clock.advance(12)  # the window moves on: those calls leave it
            brk.do(lambda: None)
            samples = scrape(registry)
            assert samples[("breaker_failure_rate", labels(breaker="db"))] == 0
            assert samples[("breaker_slow_call_rate", labels(breaker="db"))] == 0

    def test_no_rate_without_a_window_or_a_call(self, clock: FakeClock, registry: Any) -> None:
        with make_provider(clock, documents={"db": self.POLICY}) as p:
            PrometheusMetrics(p, registry=registry)
            p.get_breaker("db")
            p.get_breaker("plain").do(lambda: None)
            samples = scrape(registry)
            assert not any(name.endswith("_rate") for name, _ in samples)


class TestDurations:
    def test_an_opt_in_histogram_with_bounded_buckets(
        self, clock: FakeClock, registry: Any
    ) -> None:
        with make_provider(clock) as p:
            brk = p.get_breaker("db")
            exported = PrometheusMetrics(
                p, registry=registry, durations=True, buckets=(0.01, 0.1, 1)
            )
            brk.do(lambda: clock.advance(0.05))
            brk.do(lambda: clock.advance(0.5))
            with pytest.raises(Boom):
                brk.do(lambda: (clock.advance(5), fail()))
            brk.do(lambda: None)
            samples = scrape(registry)

            def bucket(le: str) -> float:
                return samples[
                    ("breaker_call_duration_seconds_bucket", labels(breaker="db", le=le))
                ]

            assert [bucket(le) for le in ("0.01", "0.1", "1.0", "+Inf")] == [1, 2, 3, 4]
            assert samples[("breaker_call_duration_seconds_count", labels(breaker="db"))] == 4
            total = samples[("breaker_call_duration_seconds_sum", labels(breaker="db"))]
            assert total == pytest.approx(5.55)
            exported.close()
            assert not any(n.startswith("breaker_call_duration") for n, _ in scrape(registry))

    def test_every_way_in_is_timed(self, clock: FakeClock, registry: Any) -> None:
        import asyncio

        with make_provider(clock) as p:
            PrometheusMetrics(p, registry=registry, durations=True)

            @p.circuit("db")
            def decorated() -> None:
                clock.advance(0.003)

            @p.circuit("db")
            async def adecorated() -> None:
                clock.advance(0.003)

            async def guarded() -> None:
                async with p.guard("db"):
                    clock.advance(0.003)

            decorated()
            asyncio.run(adecorated())
            asyncio.run(guarded())
            with p.guard("db"):
                clock.advance(0.003)
            p.get_breaker("db").do(clock.advance, 0.003)
            samples = scrape(registry)
            le = labels(breaker="db", le="0.005")
            assert samples[("breaker_call_duration_seconds_bucket", le)] == 5

    def test_breakers_time_calls_only_while_asked(self, clock: FakeClock, registry: Any) -> None:
        with make_provider(clock) as p:
            brk = p.get_breaker("db")
            assert brk._fast is not None  # the clock-free lane
            exported = PrometheusMetrics(p, registry=registry, durations=True)
            other = OpenTelemetryMetrics(p, meter_provider=_meters()[1], durations=True)
            later = p.get_breaker("later")
            assert brk._fast is None and later._fast is None
            exported.close()
            assert brk._fast is None  # the other export still asks
            other.close()
            assert brk._fast is not None and later._fast is not None

    def test_a_closed_provider_stops_timing(self, clock: FakeClock, registry: Any) -> None:
        p = make_provider(clock)
        brk = p.get_breaker("db")
        PrometheusMetrics(p, registry=registry, durations=True)
        p.close()
        scrape(registry)
        assert brk._fast is not None

    def test_the_fold_has_a_histogram_too(self, clock: FakeClock, registry: Any) -> None:
        with make_provider(clock) as p:
            PrometheusMetrics(p, registry=registry, durations=True, breaker_limit=1)
            hot(p, "a", 3)
            p.get_breaker("b").do(clock.advance, 2)
            samples = scrape(registry)
            count = ("breaker_call_duration_seconds_count", labels(breaker=OTHER))
            assert samples[count] == 1
            p.get_breaker("b").do(clock.advance, 2)
            assert scrape(registry)[count] == 2

    def test_a_gone_breaker_leaves_its_durations_in_the_fold(
        self, clock: FakeClock, registry: Any
    ) -> None:
        with make_provider(clock, max_breakers=1) as p:
            exported = PrometheusMetrics(p, registry=registry, durations=True, breaker_limit=0)
            p.get_breaker("a").do(clock.advance, 2)
            p.get_breaker("idle")
            count = ("breaker_call_duration_seconds_count", labels(breaker=OTHER))
            assert scrape(registry)[count] == 1
            for name in ("b", "c", "d"):  # past max_breakers: idle ones are let go
                p.get_breaker(name)
            gc.collect()
            assert "a" not in p.breakers() and "idle" not in p.breakers()
            samples = scrape(registry)
            assert samples[count] == 1
            assert calls(samples, OTHER) == 1
            assert exported._export.durations is not None
            assert set(exported._export.durations.by_name) <= set(p.breakers())

    def test_one_provider_one_set_of_buckets(self, clock: FakeClock, registry: Any) -> None:
        with make_provider(clock) as p:
            PrometheusMetrics(p, registry=registry, durations=True)
            with pytest.raises(ValueError, match="already times its calls into buckets"):
                PrometheusMetrics(
                    p, registry=prometheus_client.CollectorRegistry(), durations=True, buckets=[1]
                )

    @pytest.mark.parametrize(
        "buckets", [[], [0.1, 0.1], [1, 0.5], [0], [float("inf")], list(range(1, 40))]
    )
    def test_bad_buckets(self, provider: breaker.Provider, registry: Any, buckets: Any) -> None:
        with pytest.raises(ValueError, match="buckets: expected"):
            PrometheusMetrics(provider, registry=registry, durations=True, buckets=buckets)


class TestReading:
    """`Breaker._reading`, the one read a scrape makes of a breaker: lock-free, like stats()."""

    def check(self, brk: breaker.Breaker) -> None:
        reading = brk._reading()
        stats = brk.stats()
        assert dict(zip(OUTCOMES, reading[2], strict=True)) == dict(stats.calls)
        assert reading[3] == stats.in_flight
        assert (reading[4] or {}) == dict(stats.transitions)
        assert (reading[0], reading[1]) == (brk.state, brk.mode)

    def test_it_agrees_with_stats(self, clock: FakeClock) -> None:
        documents = {"db": '{"failureThreshold": 2, "slowCallDuration": "1s"}'}
        with make_provider(clock, documents=documents) as p:
            brk = p.get_breaker("db")
            self.check(brk)
            brk.do(lambda: None)
            with pytest.raises(Abort), p.guard("db"):
                raise Abort
            with pytest.raises(NotFound), p.guard("db", exclude=[NotFound]):
                raise NotFound
            brk.do(clock.advance, 2)
            with pytest.raises(Boom):
                brk.do(fail)
            with pytest.raises(breaker.BreakerOpenError):
                brk.do(lambda: None)
            self.check(brk)
            clock.advance(10)
            self.check(brk)
            brk.do(lambda: None)
            self.check(brk)

    def test_it_reads_what_time_alone_changed_without_changing_it(self, clock: FakeClock) -> None:
        until = (clock.datetime().replace(microsecond=0)).timestamp() + 60
        from datetime import datetime, timezone

        stamp = datetime.fromtimestamp(until, timezone.utc).isoformat()
        documents = {
            "kill": json.dumps({"mode": "forced-open", "modeUntil": stamp}),
            "dry": json.dumps({"mode": "shadow", "modeUntil": stamp}),
        }
        with make_provider(clock, documents=documents) as p:
            opened = p.get_breaker("opened")
            force_state(opened, "open")
            kill, dry = p.get_breaker("kill"), p.get_breaker("dry")
            assert kill._reading()[:2] == ("open", "forced-open")
            assert dry._reading()[:2] == ("closed", "shadow")
            clock.advance(61)
            assert opened._reading()[0] == "half-open"
            assert kill._reading()[:2] == ("half-open", "auto")
            assert dry._reading()[:2] == ("closed", "auto")
            assert opened._m.era.state == "open" and kill._mode is breaker.Mode.FORCED_OPEN
            assert dry._mode is breaker.Mode.SHADOW
            assert (opened.state, kill.state, kill.mode) == ("half-open", "half-open", "auto")

    def test_it_is_a_tuple_the_garbage_collector_stops_tracking(self, clock: FakeClock) -> None:
        documents = {"db": '{"failureRate": 0.5, "slowCallDuration": "1s"}'}
        with make_provider(clock, documents=documents) as p:
            brk = p.get_breaker("db")
            brk.do(lambda: None)
            reading = brk._reading()
            gc.collect()
            gc.collect()  # the first stops tracking the counts within, the second the tuple
            assert not gc.is_tracked(reading)  # a scrape reads thousands of these

    def test_it_takes_no_lock(self, clock: FakeClock) -> None:
        with make_provider(clock) as p:
            brk = p.get_breaker("db")
            read: list[object] = []
            with brk._lock:
                thread = threading.Thread(target=lambda: read.append(brk._reading()))
                thread.start()
                thread.join(timeout=10)
            assert read


def _meters() -> tuple[Any, Any]:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    return reader, MeterProvider(metric_readers=[reader])


def points(reader: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], Any]:
    found = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", point)
                    found[(metric.name, frozenset(point.attributes.items()))] = value
    return found


class TestOpenTelemetry:
    def test_observable_instruments(self, provider: breaker.Provider) -> None:
        reader, meters = _meters()
        instruments = OpenTelemetryMetrics(provider, meter_provider=meters)
        found = points(reader)
        assert found[("breaker.state", labels(breaker="payments", state="open"))] == 1
        assert found[("breaker.mode", labels(breaker="payments", mode="auto"))] == 1
        assert found[("breaker.calls", labels(breaker="payments", outcome="failure"))] == 1
        assert found[("breaker.calls", labels(breaker="inventory", outcome="timeout"))] == 0
        assert found[("breaker.in_flight", labels(breaker="inventory"))] == 0
        transition = labels(breaker="payments", **{"from": "closed", "to": "open"})
        assert found[("breaker.transitions", transition)] == 1
        assert found[("breaker.coord.up", labels())] == 1
        assert found[("breaker.coord.last_sync_timestamp", labels())] > 1e9
        assert found[("breaker.invalid_documents", labels())] == 1
        provider.get_breaker("inventory").do(lambda: None)
        found = points(reader)  # a new collection reads the providers again
        assert found[("breaker.calls", labels(breaker="inventory", outcome="success"))] == 2
        instruments.close()
        assert points(reader) == {}
        meters.shutdown()

    def test_providers_share_one_meter_provider(self, clock: FakeClock) -> None:
        # The second set of instruments used to be dropped by the meter, silently.
        reader, meters = _meters()
        with make_provider(clock, "checkout") as one, make_provider(clock, "search") as two:
            for p in (one, two):
                OpenTelemetryMetrics(p, meter_provider=meters)
                p.get_breaker("db").do(lambda: None)
            found = points(reader)
            for service in ("checkout", "search"):
                key = labels(service, breaker="db", outcome="success")
                assert found[("breaker.calls", key)] == 1
        meters.shutdown()

    def test_created_closed_and_created_again(self, clock: FakeClock) -> None:
        reader, meters = _meters()
        first = make_provider(clock)
        OpenTelemetryMetrics(first, meter_provider=meters)
        first.close()
        assert points(reader) == {}
        with make_provider(clock) as second:
            OpenTelemetryMetrics(second, meter_provider=meters)
            second.get_breaker("db").do(lambda: None)
            key = labels(breaker="db", outcome="success")
            assert points(reader)[("breaker.calls", key)] == 1
        meters.shutdown()

    def test_the_bound_and_the_rates(self, clock: FakeClock) -> None:
        reader, meters = _meters()
        documents = {"a": TestRates.POLICY}
        with make_provider(clock, documents=documents) as p:
            OpenTelemetryMetrics(p, meter_provider=meters, breaker_limit=1)
            hot(p, "a", 3)
            with pytest.raises(Boom):
                p.get_breaker("a").do(fail)
            hot(p, "b", 1)
            hot(p, "c", 1)
            found = points(reader)
            assert found[("breaker.calls", labels(breaker=OTHER, outcome="success"))] == 2
            assert found[("breaker.state", labels(breaker=OTHER, state="closed"))] == 2
            assert found[("breaker.in_flight", labels(breaker=OTHER))] == 0
            assert found[("breaker.failure_rate", labels(breaker="a"))] == 0.25
            assert found[("breaker.slow_call_rate", labels(breaker="a"))] == 0
            force_state(p.get_breaker("b"), "open")
            found = points(reader)
            transition = labels(breaker="b", **{"from": "closed", "to": "open"})
            assert found[("breaker.transitions", transition)] == 1
            force_state(p.get_breaker("c"), "open")
            found = points(reader)
            transition = labels(breaker=OTHER, **{"from": "closed", "to": "open"})
            assert found[("breaker.transitions", transition)] == 1
            assert found[("breaker.mode", labels(breaker=OTHER, mode="auto"))] == 2
        meters.shutdown()

    def test_the_duration_histogram(self, clock: FakeClock) -> None:
        reader, meters = _meters()
        with make_provider(clock) as p:
            exported = OpenTelemetryMetrics(
                p, meter_provider=meters, durations=True, buckets=[0.1, 1], breaker_limit=1
            )
            p.get_breaker("a").do(clock.advance, 0.05)
            p.get_breaker("a").do(clock.advance, 0.5)
            points(reader)  # "a" has its place now: "b" folds
            p.get_breaker("b").do(clock.advance, 5)
            found = points(reader)
            a = found[("breaker.call.duration", labels(breaker="a"))]
            assert (list(a.explicit_bounds), list(a.bucket_counts)) == ([0.1, 1], [1, 1, 0])
            assert a.sum == pytest.approx(0.55)
            other = found[("breaker.call.duration", labels(breaker=OTHER))]
            assert list(other.bucket_counts) == [0, 0, 1]
            with make_provider(clock, "search") as two:
                with pytest.raises(ValueError, match="every provider exported to it uses the same"):
                    OpenTelemetryMetrics(two, meter_provider=meters, durations=True)
                assert two.get_breaker("x")._fast is not None  # no timing left behind
                OpenTelemetryMetrics(two, meter_provider=meters, durations=True, buckets=[0.1, 1])
                two.get_breaker("x").do(clock.advance, 0.5)
                x = points(reader)[("breaker.call.duration", labels("search", breaker="x"))]
                assert list(x.bucket_counts) == [0, 1, 0]
            exported.close()
            p.get_breaker("a").do(clock.advance, 0.05)
            assert p.get_breaker("a")._fast is not None
        meters.shutdown()

    def test_the_global_meter_provider(self, provider: breaker.Provider) -> None:
        pytest.importorskip("opentelemetry.sdk")
        from opentelemetry import metrics

        exported = OpenTelemetryMetrics(provider)  # a no-op provider unless one is set
        assert metrics.get_meter_provider() is not None
        exported.close()


def test_importing_the_module_imports_no_exporter() -> None:
    code = (
        "import sys, breaker.metrics; "
        "print(sorted(m for m in ('prometheus_client', 'opentelemetry') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_exporter_names_the_extra(
    provider: breaker.Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"consul-breaker\[prometheus\]"):
        PrometheusMetrics(provider)
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    with pytest.raises(ImportError, match=r"consul-breaker\[otel\]"):
        OpenTelemetryMetrics(provider)


def test_a_coord_never_synced_has_no_last_sync_sample(clock: FakeClock, registry: Any) -> None:
    class Down(MemoryCoord):
        def load(self, prefix: str) -> breaker.coord.Snapshot:
            raise breaker.CoordError("consul is down")

        def watch(self, prefix: str, on_change: breaker.coord.OnChange) -> breaker.coord.Watch:
            inner = super().watch(prefix, on_change)

            class Watch:
                def stop(self) -> None:
                    inner.stop()

                def health(self) -> breaker.CoordHealth:
                    return breaker.CoordHealth(up=False, last_error="consul is down")

            return Watch()

    with breaker.new(Config("s", PREFIX), coord=Down(), clock=clock) as p:
        PrometheusMetrics(p, registry=registry)
        samples = scrape(registry)
        assert samples[("breaker_coord_up", frozenset({"service": "s"}.items()))] == 0
        assert not any(name.startswith("breaker_coord_last_sync") for name, _ in samples)
        reader, meters = _meters()
        OpenTelemetryMetrics(p, meter_provider=meters)
        found = points(reader)
        assert found[("breaker.coord.up", labels("s"))] == 0
        assert not any(name == "breaker.coord.last_sync_timestamp" for name, _ in found)
        meters.shutdown()
