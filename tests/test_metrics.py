"""Prometheus and OpenTelemetry metrics, read at scrape time."""

from __future__ import annotations

import subprocess
import sys

import pytest

import breaker
from breaker import Config, MemoryCoord, Policy
from breaker.testing import FakeClock

from .helpers import PREFIX, Boom, fail

prometheus_client = pytest.importorskip("prometheus_client")


@pytest.fixture
def provider(clock: FakeClock) -> breaker.Provider:
    coord = MemoryCoord(
        {
            PREFIX + "payments.json": '{"failureThreshold": 1}',
            PREFIX + "bad.json": '{"failureThreshold": "many"}',
        }
    )
    p = breaker.new(
        Config("checkout", PREFIX),
        coord=coord,
        clock=clock,
        default_policy=Policy(open_state_timeout=10),
    )
    payments = p.get_breaker("payments")
    with pytest.raises(Boom):
        payments.do(fail)
    with pytest.raises(breaker.BreakerOpenError):
        payments.do(lambda: None)
    p.get_breaker("inventory").do(lambda: None)
    yield p  # type: ignore[misc]
    p.close()


def scrape(provider: breaker.Provider) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from breaker.metrics import PrometheusCollector

    registry = prometheus_client.CollectorRegistry()
    registry.register(PrometheusCollector(provider))
    samples = {}
    for family in registry.collect():
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset({"service": "checkout", **kw}.items())


class TestPrometheus:
    def test_states_calls_transitions_and_the_coord(self, provider: breaker.Provider) -> None:
        samples = scrape(provider)
        assert samples[("breaker_state", labels(breaker="payments", state="open"))] == 1
        assert samples[("breaker_state", labels(breaker="payments", state="closed"))] == 0
        assert samples[("breaker_state", labels(breaker="inventory", state="closed"))] == 1
        assert samples[("breaker_mode", labels(breaker="payments", mode="auto"))] == 1
        calls = "breaker_calls_total"
        assert samples[(calls, labels(breaker="payments", outcome="failure"))] == 1
        assert samples[(calls, labels(breaker="payments", outcome="rejected"))] == 1
        assert samples[(calls, labels(breaker="inventory", outcome="success"))] == 1
        transition = labels(breaker="payments", **{"from": "closed", "to": "open"})
        assert samples[("breaker_transitions_total", transition)] == 1
        assert samples[("breaker_coord_up", labels())] == 1
        assert samples[("breaker_coord_last_sync_timestamp_seconds", labels())] > 1e9
        assert samples[("breaker_invalid_documents_total", labels())] == 1

    def test_values_are_read_when_scraped(self, provider: breaker.Provider) -> None:
        before = scrape(provider)[
            ("breaker_calls_total", labels(breaker="inventory", outcome="success"))
        ]
        provider.get_breaker("inventory").do(lambda: None)
        after = scrape(provider)[
            ("breaker_calls_total", labels(breaker="inventory", outcome="success"))
        ]
        assert (before, after) == (1, 2)

    def test_the_exposition_text_is_valid(self, provider: breaker.Provider) -> None:
        from breaker.metrics import PrometheusCollector

        registry = prometheus_client.CollectorRegistry()
        registry.register(PrometheusCollector(provider))
        text = prometheus_client.generate_latest(registry).decode()
        assert "# TYPE breaker_calls_total counter" in text
        assert 'breaker_state{breaker="payments",service="checkout",state="open"} 1.0' in text
        from prometheus_client.parser import text_string_to_metric_families

        parsed = list(text_string_to_metric_families(text))
        assert {f.name for f in parsed} >= {"breaker_state", "breaker_calls", "breaker_coord_up"}


class TestOpenTelemetry:
    def test_observable_instruments(self, provider: breaker.Provider) -> None:
        pytest.importorskip("opentelemetry.sdk")
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        from breaker.metrics import OpenTelemetryMetrics

        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader])
        instruments = OpenTelemetryMetrics(provider, meter_provider=meters)
        points = {}
        data = reader.get_metrics_data()
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        points[(metric.name, frozenset(point.attributes.items()))] = point.value
        assert points[("breaker.state", labels(breaker="payments", state="open"))] == 1
        assert points[("breaker.calls", labels(breaker="payments", outcome="failure"))] == 1
        assert points[("breaker.coord.up", labels())] == 1
        assert points[("breaker.invalid_documents", labels())] == 1
        instruments.close()
        meters.shutdown()


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
    from breaker.metrics import OpenTelemetryMetrics, PrometheusCollector

    monkeypatch.setitem(sys.modules, "prometheus_client.core", None)
    with pytest.raises(ImportError, match=r"consul-breaker\[prometheus\]"):
        PrometheusCollector(provider)
    monkeypatch.setitem(sys.modules, "opentelemetry.metrics", None)
    with pytest.raises(ImportError, match=r"consul-breaker\[otel\]"):
        OpenTelemetryMetrics(provider)


def test_a_coord_never_synced_has_no_last_sync_sample(clock: FakeClock) -> None:
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
        samples = scrape(p)
        assert samples[("breaker_coord_up", frozenset({"service": "s"}.items()))] == 0
        assert not any(name.startswith("breaker_coord_last_sync") for name, _ in samples)


def test_closed_opentelemetry_instruments_report_nothing(provider: breaker.Provider) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from breaker.metrics import OpenTelemetryMetrics

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    OpenTelemetryMetrics(provider, meter_provider=meters).close()
    data = reader.get_metrics_data()
    points = [
        point
        for resource in (data.resource_metrics if data else [])
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    ]
    assert points == []
    meters.shutdown()
