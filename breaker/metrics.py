"""Prometheus and OpenTelemetry metrics for a provider's breakers, read at scrape time.

Nothing here adds work to a call: breakers keep plain counters on their fast paths and
these read them when a scraper asks. Both exporters are optional extras
(``pip install 'consul-breaker[prometheus]'``, ``'consul-breaker[otel]'``); importing
this module imports neither library.

=========================================  =========  ============================================
name (Prometheus)                          type       labels
=========================================  =========  ============================================
``breaker_state``                          gauge      service, breaker, state (1 current, 0 others)
``breaker_mode``                           gauge      service, breaker, mode (1 current, 0 others)
``breaker_calls_total``                    counter    service, breaker, outcome
``breaker_transitions_total``              counter    service, breaker, from, to
``breaker_coord_up``                       gauge      service
``breaker_coord_last_sync_timestamp_seconds``  gauge  service
``breaker_invalid_documents_total``        counter    service
=========================================  =========  ============================================

OpenTelemetry instruments carry the same values and attributes under dotted names
(``breaker.state``, ``breaker.calls``, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from breaker._state import Mode, Outcome, State

if TYPE_CHECKING:
    from breaker._engine import Breaker
    from breaker._provider import Provider

__all__ = ["OpenTelemetryMetrics", "PrometheusCollector"]

_STATES = [s.value for s in State]
_MODES = [m.value for m in Mode]
_OUTCOMES = [o.value for o in Outcome]


def _require(module: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise ImportError(
            f"{module} is not installed: pip install 'consul-breaker[{extra}]'"
        ) from exc


class _Reading:
    """One consistent read of a provider, shared by every metric of one scrape."""

    def __init__(self, provider: Provider) -> None:
        service = provider.config.service_name
        self.service = service
        self.breakers: list[tuple[str, Breaker]] = sorted(provider.breakers().items())
        self.health = provider.health()
        self.invalid = provider.rejected_documents

    def states(self) -> Iterator[tuple[dict[str, str], int]]:
        for name, brk in self.breakers:
            current = brk.state.value
            for state in _STATES:
                labels = {"service": self.service, "breaker": name, "state": state}
                yield labels, int(state == current)

    def modes(self) -> Iterator[tuple[dict[str, str], int]]:
        for name, brk in self.breakers:
            current = brk.mode.value
            for mode in _MODES:
                labels = {"service": self.service, "breaker": name, "mode": mode}
                yield labels, int(mode == current)

    def calls(self) -> Iterator[tuple[dict[str, str], int]]:
        for name, brk in self.breakers:
            calls = brk.stats().calls
            for outcome in _OUTCOMES:
                labels = {"service": self.service, "breaker": name, "outcome": outcome}
                yield labels, calls.get(outcome, 0)

    def transitions(self) -> Iterator[tuple[dict[str, str], int]]:
        for name, brk in self.breakers:
            for (old, new), count in sorted(brk.stats().transitions.items()):
                labels = {"service": self.service, "breaker": name, "from": old, "to": new}
                yield labels, count


class PrometheusCollector:
    """A prometheus_client collector: ``registry.register(PrometheusCollector(provider))``.

    It reads the provider when the registry is scraped; register one per provider.
    """

    def __init__(self, provider: Provider) -> None:
        self._core = _require("prometheus_client.core", "prometheus")
        self._provider = provider

    def describe(self) -> Iterable[Any]:
        """Return the metric families without samples, so a registry can check names."""
        return list(self._families(None))

    def collect(self) -> Iterable[Any]:
        """Return every metric family with the provider's current values."""
        return list(self._families(_Reading(self._provider)))

    def _families(self, reading: _Reading | None) -> Iterator[Any]:
        core = self._core
        breaker_labels = ["service", "breaker"]
        specs: list[tuple[str, str, Any, list[str], Callable[[_Reading], Iterable[Any]]]] = [
            (
                "breaker_state",
                "1 for the breaker's current state, 0 for the others",
                core.GaugeMetricFamily,
                [*breaker_labels, "state"],
                _Reading.states,
            ),
            (
                "breaker_mode",
                "1 for the mode in effect (auto, forced-open, disabled, shadow), 0 for the others",
                core.GaugeMetricFamily,
                [*breaker_labels, "mode"],
                _Reading.modes,
            ),
            (
                "breaker_calls",
                "Calls through the breaker by outcome",
                core.CounterMetricFamily,
                [*breaker_labels, "outcome"],
                _Reading.calls,
            ),
            (
                "breaker_transitions",
                "State changes of the breaker",
                core.CounterMetricFamily,
                [*breaker_labels, "from", "to"],
                _Reading.transitions,
            ),
        ]
        for name, doc, family_type, labels, samples in specs:
            family = family_type(name, doc, labels=labels)
            if reading is not None:
                for values, value in samples(reading):
                    family.add_metric([values[label] for label in labels], value)
            yield family
        up = core.GaugeMetricFamily(
            "breaker_coord_up", "1 when the last read of the coord succeeded", labels=["service"]
        )
        synced = core.GaugeMetricFamily(
            "breaker_coord_last_sync_timestamp_seconds",
            "Unix time of the last successful read of the coord",
            labels=["service"],
        )
        invalid = core.CounterMetricFamily(
            "breaker_invalid_documents",
            "Policy documents rejected as invalid",
            labels=["service"],
        )
        if reading is not None:
            up.add_metric([reading.service], int(reading.health.up))
            if reading.health.last_sync is not None:
                synced.add_metric([reading.service], reading.health.last_sync)
            invalid.add_metric([reading.service], reading.invalid)
        yield from (up, synced, invalid)


class OpenTelemetryMetrics:
    """Observable OpenTelemetry instruments for one provider, read at collection time.

    ``OpenTelemetryMetrics(provider)`` uses the global meter provider; pass
    ``meter_provider=`` to choose one. `close` stops reporting (instruments cannot be
    removed from a meter, so they report nothing afterwards).
    """

    def __init__(self, provider: Provider, *, meter_provider: Any = None) -> None:
        otel = _require("opentelemetry.metrics", "otel")
        self._provider = provider
        self._otel = otel
        self._closed = False
        meters = meter_provider if meter_provider is not None else otel.get_meter_provider()
        from breaker import __version__

        meter = meters.get_meter("breaker", __version__)
        meter.create_observable_gauge(
            "breaker.state",
            callbacks=[self._observe(_Reading.states)],
            description="1 for the breaker's current state, 0 for the others",
        )
        meter.create_observable_gauge(
            "breaker.mode",
            callbacks=[self._observe(_Reading.modes)],
            description="1 for the mode in effect, 0 for the others",
        )
        meter.create_observable_counter(
            "breaker.calls",
            callbacks=[self._observe(_Reading.calls)],
            unit="{call}",
            description="Calls through the breaker by outcome",
        )
        meter.create_observable_counter(
            "breaker.transitions",
            callbacks=[self._observe(_Reading.transitions)],
            unit="{transition}",
            description="State changes of the breaker",
        )
        meter.create_observable_gauge(
            "breaker.coord.up",
            callbacks=[self._observe(lambda r: [({"service": r.service}, int(r.health.up))])],
            description="1 when the last read of the coord succeeded",
        )
        meter.create_observable_gauge(
            "breaker.coord.last_sync_timestamp",
            callbacks=[self._observe(_last_sync)],
            unit="s",
            description="Unix time of the last successful read of the coord",
        )
        meter.create_observable_counter(
            "breaker.invalid_documents",
            callbacks=[self._observe(lambda r: [({"service": r.service}, r.invalid)])],
            unit="{document}",
            description="Policy documents rejected as invalid",
        )

    def close(self) -> None:
        """Stop reporting this provider."""
        self._closed = True

    def _observe(
        self, samples: Callable[[_Reading], Iterable[tuple[dict[str, str], float]]]
    ) -> Callable[[Any], Iterable[Any]]:
        def callback(options: Any) -> Iterable[Any]:
            if self._closed:
                return []
            reading = _Reading(self._provider)
            return [self._otel.Observation(value, labels) for labels, value in samples(reading)]

        return callback


def _last_sync(reading: _Reading) -> list[tuple[dict[str, str], float]]:
    if reading.health.last_sync is None:
        return []
    return [({"service": reading.service}, reading.health.last_sync)]
