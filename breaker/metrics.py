"""Prometheus and OpenTelemetry metrics for the breakers of any number of providers.

Nothing here adds work to a call: breakers keep plain counters on their fast paths and a
scrape reads them (one lock-free read per breaker). The exception is the call-duration
histogram, which is opt-in because it times every call. Both exporters are optional
extras (``pip install 'consul-breaker[prometheus]'``, ``'consul-breaker[otel]'``);
importing this module imports neither library.

``PrometheusMetrics(provider, registry=...)`` and ``OpenTelemetryMetrics(provider,
meter_provider=...)`` export one provider. Every provider exported to one registry (one
meter provider) is served by one collector (one set of instruments), so providers can
come and go: a closed provider, or a closed export, stops reporting, and a new one
reports at once. Each series carries the provider's ``service``.

Per-breaker series are bounded: ``breaker_limit`` breakers of each provider (100 unless
set) have series of their own, the others are folded into series labelled
``breaker="_other"`` (a name no breaker can have). A breaker keeps its own series once it
has them, for as long as it lives; free places go first to breakers that need an
operator's eye (not closed, or in a mode other than ``auto``), then to the busiest (most
calls). When every place is taken, such a breaker takes the place of the quietest closed
``auto`` breaker. The folded counters never go down as breakers move in, out or away.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from breaker._state import Mode, Outcome, State

if TYPE_CHECKING:
    from breaker._engine import Breaker
    from breaker._provider import Provider

__all__ = [
    "DEFAULT_BREAKER_LIMIT",
    "DEFAULT_BUCKETS",
    "MAX_BUCKETS",
    "OTHER",
    "OpenTelemetryMetrics",
    "PrometheusMetrics",
]

_log = logging.getLogger("breaker")

DEFAULT_BREAKER_LIMIT = 100
"""Breakers of one provider that have series of their own unless ``breaker_limit`` says."""
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the call-duration histogram's buckets, and +Inf."""
MAX_BUCKETS = 30
"""The most bucket bounds a histogram may have: each is a series per breaker."""
OTHER = "_other"
"""The ``breaker`` label of the series that fold the breakers beyond ``breaker_limit``."""

_STATES = tuple(s.value for s in State)
_MODES = tuple(m.value for m in Mode)
_OUTCOMES = tuple(o.value for o in Outcome)
_PAIRS = tuple((a, b) for a in _STATES for b in _STATES if a != b)
_N_CALLS = len(_OUTCOMES)
_N_COUNTERS = _N_CALLS + len(_PAIRS)  # a breaker's counters: calls, then transitions
_CLOSED = State.CLOSED.value
_AUTO = Mode.AUTO.value

_Reading = tuple[
    str, str, tuple[int, ...], int, dict[tuple[str, str], int] | None, float | None, float | None
]
"""What `Breaker._reading` returns: state and mode values, calls, in flight, transitions, rates."""


def _require(module: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        raise ImportError(
            f"{module} is not installed: pip install 'consul-breaker[{extra}]'"
        ) from exc


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"breaker_limit: expected an integer >= 0, got {limit!r}")
    return limit


def _check_buckets(buckets: Iterable[float]) -> tuple[float, ...]:
    bounds = tuple(float(b) for b in buckets)
    if not 1 <= len(bounds) <= MAX_BUCKETS:
        raise ValueError(f"buckets: expected 1 to {MAX_BUCKETS} bounds, got {len(bounds)}")
    if any(not (math.isfinite(b) and b > 0) for b in bounds) or any(
        a >= b for a, b in itertools.pairwise(bounds)
    ):
        raise ValueError(f"buckets: expected increasing finite seconds > 0, got {bounds!r}")
    return bounds


# -- call durations (opt-in) ----------------------------------------------------------------------


class _Durations:
    """How long the calls of one provider's breakers ran, by breaker, in fixed buckets.

    Installed on the provider's breakers (`Host.durations`), it is called with each
    call's duration: the breakers then time every call, going the way that reads the
    clock instead of their clock-free fast lane. ``by_name`` maps a breaker's name to
    its counts per bucket (the last one +Inf) followed by the sum of the durations;
    ``sinks`` are told of every call too (OpenTelemetry's histograms).
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.by_name: dict[str, list[float]] = {}
        self.sinks: tuple[Callable[[str, float], None], ...] = ()
        self.users = 0

    def __call__(self, name: str, seconds: float) -> None:
        counts = self.by_name.get(name)
        if counts is None:
            counts = self.by_name.setdefault(name, [0] * (len(self.bounds) + 2))
        # No lock: under the GIL a list item's += runs between two thread switches.
        counts[bisect.bisect_left(self.bounds, seconds)] += 1
        counts[-1] += seconds
        for sink in self.sinks:
            sink(name, seconds)


_durations_lock = threading.Lock()


def _time_calls(provider: Provider, bounds: tuple[float, ...]) -> _Durations:
    """Make ``provider``'s breakers time every call into a shared `_Durations`; return it."""
    with _durations_lock:
        host = provider._host
        durations = host.durations
        if isinstance(durations, _Durations):
            if durations.bounds != bounds:
                raise ValueError(
                    f"buckets: service {provider.config.service_name!r} already times its "
                    f"calls into buckets {durations.bounds!r}; one provider has one set"
                )
        else:
            durations = _Durations(bounds)
            host.durations = durations
            _refresh_lanes(provider)
        durations.users += 1
        return durations


def _stop_timing(provider: Provider | None, durations: _Durations) -> None:
    with _durations_lock:
        durations.users -= 1
        if durations.users or provider is None or provider._host.durations is not durations:
            return
        provider._host.durations = None
        _refresh_lanes(provider)


def _refresh_lanes(provider: Provider) -> None:
    # A breaker offers its fast lanes only while its host asks for no durations; one that
    # makes no call would keep offering them until something else made it look again.
    for brk in provider.breakers().values():
        with brk._lock:
            brk._refresh()


# -- one provider as one exporter sees it -----------------------------------------------------


class _Named:
    """A breaker with series of its own, as one scrape read it."""

    __slots__ = ("hist", "name", "reading")

    def __init__(self, name: str, reading: _Reading, hist: Sequence[float] | None) -> None:
        self.name = name
        self.reading = reading
        self.hist = hist


class _Fold:
    """The breakers beyond the limit, as one series each: counts, sums, and the counters."""

    __slots__ = ("breakers", "counters", "in_flight", "modes", "states")

    def __init__(self) -> None:
        self.breakers = 0
        self.states: Counter[str] = Counter()  # by value
        self.modes: Counter[str] = Counter()
        self.in_flight = 0
        self.counters: list[float] = []  # calls, transitions, then the histogram's


class _Scrape:
    """What one scrape read of one provider."""

    __slots__ = ("bounds", "health", "invalid", "named", "other", "service")

    def __init__(self, provider: Provider, bounds: tuple[float, ...] | None) -> None:
        self.service = provider.config.service_name
        self.health = provider.health()
        self.invalid = provider.rejected_documents
        self.bounds = bounds
        self.named: list[_Named] = []
        self.other: _Fold | None = None


class _Export:
    """One provider exported to one collector: its options and who has series of their own.

    ``named`` maps the breakers with series of their own to the breaker object they were
    (a weak reference: a breaker made anew under a name is another breaker, and an id can
    be reused). ``folded`` does the same for each folded breaker, and ``last`` keeps its
    counts as last read. ``carry`` is what the folded counters keep of the breakers that
    left the fold (promoted, gone, made anew) minus the counts of those that joined it
    late (demoted), so that the folded counters never go down.

    A scrape keeps no object per breaker that the garbage collector must go on tracking
    (the weak references are made once, the counts are tuples of numbers): otherwise every
    scrape would leave thousands of new long-lived objects, and set off a full collection
    of the whole process every scrape or two.
    """

    def __init__(self, provider: Provider, limit: int, durations: _Durations | None) -> None:
        self.ref = weakref.ref(provider)
        self.service = provider.config.service_name
        self.limit = limit
        self.durations = durations
        self.named: dict[str, weakref.ref[Breaker]] = {}
        self.folded: dict[str, weakref.ref[Breaker]] = {}
        self.last: dict[str, _Counts] = {}
        self.carry: list[float] | None = None
        self._lock = threading.Lock()

    def provider(self) -> Provider | None:
        """Return the provider while it lives and is open."""
        provider = self.ref()
        if provider is None or provider._closed:
            return None
        return provider

    def read(self) -> _Scrape | None:
        """Read the provider now, or return None once it is closed or gone."""
        provider = self.provider()
        if provider is None:
            return None
        durations = self.durations
        scrape = _Scrape(provider, durations.bounds if durations else None)
        breakers = provider.breakers()
        readings = {name: brk._reading() for name, brk in breakers.items()}
        hists = durations.by_name if durations is not None else None
        with self._lock:
            named = self._select(breakers, readings)
            scrape.other = self._fold(breakers, readings, named, hists)
        for name in sorted(named):
            hist = hists.get(name) if hists is not None else None
            scrape.named.append(_Named(name, readings[name], hist))
        if hists is not None:
            for name in [n for n in hists if n not in readings]:
                hists.pop(name, None)  # the breaker is gone: the fold keeps what it counted
        return scrape

    def _select(
        self, breakers: Mapping[str, Breaker], readings: dict[str, _Reading]
    ) -> dict[str, weakref.ref[Breaker]]:
        """Return the breakers that have series of their own from now on."""
        limit = self.limit
        if len(readings) <= limit:
            old = self.named
            return {name: _same_ref(old.get(name), brk) for name, brk in breakers.items()}
        named = {
            name: ref
            for name, ref in self.named.items()
            if name in readings and ref() is breakers[name]
        }
        room = limit - len(named)
        waiting = sorted(
            (-sum(r[2]), name)
            for name, r in readings.items()
            if not (r[0] == _CLOSED and r[1] == _AUTO) and name not in named
        )
        if waiting:
            quiet = sorted(
                (sum(r[2]), name)
                for name in named
                for r in (readings[name],)
                if r[0] == _CLOSED and r[1] == _AUTO
            )
            for _, name in waiting:
                if room > 0:
                    room -= 1
                elif quiet:
                    del named[quiet.pop(0)[1]]
                else:
                    break
                named[name] = weakref.ref(breakers[name])
        if room > 0:
            busiest = sorted(
                (-sum(r[2]), name) for name, r in readings.items() if name not in named
            )
            for _, name in busiest[:room]:
                named[name] = weakref.ref(breakers[name])
        return named

    def _fold(
        self,
        breakers: Mapping[str, Breaker],
        readings: dict[str, _Reading],
        named: dict[str, weakref.ref[Breaker]],
        hists: dict[str, list[float]] | None,
    ) -> _Fold | None:
        """Sum the breakers without series of their own; keep the sums from going down."""
        carry = self.carry
        old_named, old_folded, old_last = self.named, self.folded, self.last
        folded: dict[str, weakref.ref[Breaker]] = {}
        last: dict[str, _Counts] = {}
        rs: list[_Reading] = []
        hs: list[tuple[float, ...] | None] = []  # with durations only
        kept = 0  # folded breakers that were folded at the last scrape too
        for name, r in readings.items():
            if name in named:
                continue
            brk = breakers[name]
            hist = None
            if hists is not None:
                live = hists.get(name)
                hist = tuple(live) if live is not None else None
                hs.append(hist)
            transitions = r[4]  # kept as numbers, which the collector stops tracking
            moved = None if transitions is None else tuple(transitions.get(p, 0) for p in _PAIRS)
            counts = (r[2], moved, hist)
            ref = old_folded.get(name)
            if ref is not None and ref() is brk:
                kept += 1
            else:
                ref = weakref.ref(brk)
                demoted = old_named.get(name)
                if demoted is not None and demoted() is brk:
                    carry = _add(carry, self._counters(counts), -1)  # count from here on
            folded[name] = ref
            last[name] = counts
            rs.append(r)
        if kept < len(old_folded):  # some left the fold (the usual scrape: none did)
            for name, ref in old_folded.items():
                if folded.get(name) is not ref:
                    carry = _add(carry, self._counters(old_last[name]), 1)  # keep its counts
        self.named, self.folded, self.last, self.carry = named, folded, last, carry
        if not folded and carry is None:
            return None
        fold = _Fold()
        fold.breakers = len(rs)
        fold.states.update(map(itemgetter(0), rs))
        fold.modes.update(map(itemgetter(1), rs))
        fold.in_flight = sum(map(itemgetter(3), rs))
        sums: list[float] = [sum(c) for c in zip(*map(itemgetter(2), rs), strict=True)]
        sums = sums or [0] * _N_CALLS
        moves = dict.fromkeys(_PAIRS, 0)
        for r in rs:
            if r[4]:
                for pair, n in r[4].items():
                    moves[pair] += n
        sums += moves.values()
        if self.durations is not None:
            blank = (0,) * (len(self.durations.bounds) + 2)
            sums += [
                sum(c) for c in zip(*(h if h is not None else blank for h in hs), strict=True)
            ] or blank
        if carry is not None:
            sums = [a + b for a, b in zip(sums, carry, strict=True)]
        fold.counters = sums
        return fold

    def _counters(self, counts: _Counts) -> list[float]:
        """Return a breaker's counters as the fold sums them: calls, transitions, durations."""
        calls, moves, hist = counts
        counters: list[float] = [*calls, *(moves or (0,) * len(_PAIRS))]
        if self.durations is not None:
            counters += hist if hist is not None else (0,) * (len(self.durations.bounds) + 2)
        return counters


_Counts = tuple[tuple[int, ...], "tuple[int, ...] | None", "tuple[float, ...] | None"]
"""A folded breaker's counts as last read: calls, transitions in `_PAIRS` order, durations."""


def _same_ref(ref: weakref.ref[Breaker] | None, brk: Breaker) -> weakref.ref[Breaker]:
    """Return ``ref`` if it still points at ``brk``, else a new weak reference to it."""
    return ref if ref is not None and ref() is brk else weakref.ref(brk)


def _add(carry: list[float] | None, counters: list[float], sign: int) -> list[float]:
    if carry is None:
        carry = [0] * len(counters)
    return [a + sign * b for a, b in zip(carry, counters, strict=True)]


class _Hub:
    """The providers exported to one registry or meter provider, one export per service."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exports: dict[str, _Export] = {}

    def add(self, export: _Export) -> None:
        with self._lock:
            old = self._exports.get(export.service)
            self._exports[export.service] = export
        if old is None:
            return
        live = old.provider()
        if live is not None and live is not export.ref():
            _log.warning(
                "metrics: a second provider of service %r replaces the first in the same "
                "registry (close the first, or give each a service name of its own)",
                export.service,
            )
        self._drop(old)

    def remove(self, export: _Export) -> None:
        """Stop reporting ``export`` (if it is still the one of its service)."""
        with self._lock:
            if self._exports.get(export.service) is not export:
                return
            del self._exports[export.service]
        self._drop(export)

    def _drop(self, export: _Export) -> None:
        durations = export.durations
        if durations is not None:
            export.durations = None
            _stop_timing(export.ref(), durations)

    def read(self) -> list[_Scrape]:
        """Read every live export; forget those whose provider closed or went away."""
        scrapes = []
        with self._lock:
            exports = sorted(self._exports.items())
        for _, export in exports:
            scrape = export.read()
            if scrape is None:
                self.remove(export)
            else:
                scrapes.append(scrape)
        return scrapes


class _Handle:
    """One provider exported to one hub."""

    def __init__(self, hub: _Hub, export: _Export) -> None:
        self._hub = hub
        self._export = export
        hub.add(export)


def _export(
    provider: Provider, breaker_limit: int, durations: bool, buckets: Iterable[float]
) -> _Export:
    limit = _check_limit(breaker_limit)
    bounds = _check_buckets(buckets)
    recorder = _time_calls(provider, bounds) if durations else None
    return _Export(provider, limit, recorder)


# -- Prometheus -------------------------------------------------------------------------------


_HELP = {
    "state": '1 for the breaker\'s current state, 0 for the others; for breaker="_other", '
    "how many of the folded breakers are in each state",
    "mode": "1 for the mode in effect (auto, forced-open, disabled, shadow), 0 for the others; "
    'for breaker="_other", how many of the folded breakers are in each mode',
    "calls": "Calls through the breaker by outcome (rejected and bulkhead_full never ran)",
    "transitions": "State changes of the breaker",
    "in_flight": "Calls admitted by the breaker that have not ended yet",
    "failure_rate": "Share of the calls in the breaker's failure-rate window that failed "
    "(slow calls included), as the breaker judges it; only with a failureRate policy",
    "slow_call_rate": "Share of the calls in the breaker's failure-rate window that were slow; "
    "only with a failureRate policy",
    "duration": "How long calls through the breaker ran (opt-in)",
    "coord_up": "1 when the last read of the coord succeeded",
    "last_sync": "Unix time of the last successful read of the coord",
    "invalid": "Policy documents rejected as invalid",
}


class _Collector(_Hub):
    """The prometheus_client collector of one registry: every provider exported there."""

    def __init__(self) -> None:
        super().__init__()
        self._core = _require("prometheus_client.core", "prometheus")

    def describe(self) -> list[Any]:
        """Return the metric families without samples, so the registry can check names."""
        return self._families([])

    def collect(self) -> list[Any]:
        """Return every metric family with the current values of every live provider."""
        return self._families(self.read())

    def _families(self, scrapes: list[_Scrape]) -> list[Any]:
        core = self._core
        gauge, counter = core.GaugeMetricFamily, core.CounterMetricFamily
        b = ["service", "breaker"]
        state = gauge("breaker_state", _HELP["state"], labels=[*b, "state"])
        mode = gauge("breaker_mode", _HELP["mode"], labels=[*b, "mode"])
        calls = counter("breaker_calls", _HELP["calls"], labels=[*b, "outcome"])
        moves = counter("breaker_transitions", _HELP["transitions"], labels=[*b, "from", "to"])
        in_flight = gauge("breaker_in_flight", _HELP["in_flight"], labels=b)
        failure_rate = gauge("breaker_failure_rate", _HELP["failure_rate"], labels=b)
        slow_rate = gauge("breaker_slow_call_rate", _HELP["slow_call_rate"], labels=b)
        duration = core.HistogramMetricFamily(
            "breaker_call_duration_seconds", _HELP["duration"], labels=b
        )
        up = gauge("breaker_coord_up", _HELP["coord_up"], labels=["service"])
        synced = gauge(
            "breaker_coord_last_sync_timestamp_seconds", _HELP["last_sync"], labels=["service"]
        )
        invalid = counter("breaker_invalid_documents", _HELP["invalid"], labels=["service"])
        for s in scrapes:
            service = s.service
            for each in s.named:
                name = each.name
                st, md, counts, flying, transitions, f_rate, s_rate = each.reading
                for value in _STATES:
                    state.add_metric([service, name, value], int(value == st))
                for value in _MODES:
                    mode.add_metric([service, name, value], int(value == md))
                for outcome, count in zip(_OUTCOMES, counts, strict=True):
                    calls.add_metric([service, name, outcome], count)
                for (old, new), count in sorted((transitions or {}).items()):
                    moves.add_metric([service, name, old, new], count)
                in_flight.add_metric([service, name], flying)
                if f_rate is not None:
                    failure_rate.add_metric([service, name], f_rate)
                if s_rate is not None:
                    slow_rate.add_metric([service, name], s_rate)
                if s.bounds is not None:
                    hist = each.hist or [0] * (len(s.bounds) + 2)
                    duration.add_metric([service, name], *_buckets(s.bounds, hist))
            other = s.other
            if other is not None:
                for st in State:
                    state.add_metric([service, OTHER, st.value], other.states[st.value])
                for md in Mode:
                    mode.add_metric([service, OTHER, md.value], other.modes[md.value])
                counters = other.counters
                for outcome, n in zip(_OUTCOMES, counters[:_N_CALLS], strict=True):
                    calls.add_metric([service, OTHER, outcome], n)
                for (old, new), n in zip(_PAIRS, counters[_N_CALLS:_N_COUNTERS], strict=True):
                    if n:
                        moves.add_metric([service, OTHER, old, new], n)
                in_flight.add_metric([service, OTHER], other.in_flight)
                if s.bounds is not None:
                    duration.add_metric(
                        [service, OTHER], *_buckets(s.bounds, counters[_N_COUNTERS:])
                    )
            up.add_metric([service], int(s.health.up))
            if s.health.last_sync is not None:
                synced.add_metric([service], s.health.last_sync)
            invalid.add_metric([service], s.invalid)
        families = [state, mode, calls, moves, in_flight, failure_rate, slow_rate]
        if not scrapes or any(s.bounds is not None for s in scrapes):
            families.append(duration)
        return [*families, up, synced, invalid]


def _buckets(
    bounds: tuple[float, ...], counts: Sequence[float]
) -> tuple[list[tuple[str, float]], float]:
    """Return Prometheus's cumulative buckets and the sum, from counts per bucket and the sum."""
    cumulative = []
    total = 0.0
    for bound, count in zip((*(repr(b) for b in bounds), "+Inf"), counts[:-1], strict=True):
        total += count
        cumulative.append((bound, total))
    return cumulative, counts[-1]


_collectors: weakref.WeakKeyDictionary[Any, _Collector] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


class PrometheusMetrics(_Handle):
    """Export ``provider``'s breakers to a prometheus_client registry, read when scraped.

    ``registry`` defaults to ``prometheus_client.REGISTRY``. Every provider exported to
    one registry shares one collector, registered with the first: any number of
    providers, each series labelled with its ``service``. ``breaker_limit`` bounds the
    breakers with series of their own (the others fold into ``breaker="_other"``).
    ``durations=True`` adds the histogram ``breaker_call_duration_seconds`` with
    ``buckets``; it makes the provider's breakers time every call. `close` stops
    reporting the provider here; so does closing the provider.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        registry: Any = None,
        breaker_limit: int = DEFAULT_BREAKER_LIMIT,
        durations: bool = False,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        client = _require("prometheus_client", "prometheus")
        if registry is None:
            registry = client.REGISTRY
        with _collectors_lock:
            collector = _collectors.get(registry)
            if collector is None:
                collector = _Collector()
                registry.register(collector)
                _collectors[registry] = collector
        super().__init__(collector, _export(provider, breaker_limit, durations, buckets))

    def close(self) -> None:
        """Stop reporting the provider here (closing the provider does too)."""
        self._hub.remove(self._export)


# -- OpenTelemetry ----------------------------------------------------------------------------


class _Instruments(_Hub):
    """The observable instruments of one meter provider: every provider exported there.

    One collection calls each instrument's callback in turn; the first to find that it
    already used the latest read reads the providers again, the others share that read.
    """

    def __init__(self, meters: Any, otel: Any) -> None:
        super().__init__()
        self._otel = otel
        self._latest: tuple[list[_Scrape], set[str]] | None = None
        self._histogram: Any = None
        self._bounds: tuple[float, ...] | None = None
        self._sinks: dict[_Export, Callable[[str, float], None]] = {}
        from breaker import __version__

        self._meter = meter = meters.get_meter("breaker", __version__)
        observe = self._observe
        meter.create_observable_gauge(
            "breaker.state",
            callbacks=[observe("state", _state_points)],
            description=_HELP["state"],
        )
        meter.create_observable_gauge(
            "breaker.mode",
            callbacks=[observe("mode", _mode_points)],
            description=_HELP["mode"],
        )
        meter.create_observable_counter(
            "breaker.calls",
            callbacks=[observe("calls", _call_points)],
            unit="{call}",
            description=_HELP["calls"],
        )
        meter.create_observable_counter(
            "breaker.transitions",
            callbacks=[observe("transitions", _transition_points)],
            unit="{transition}",
            description=_HELP["transitions"],
        )
        meter.create_observable_up_down_counter(
            "breaker.in_flight",
            callbacks=[observe("in_flight", _in_flight_points)],
            unit="{call}",
            description=_HELP["in_flight"],
        )
        meter.create_observable_gauge(
            "breaker.failure_rate",
            callbacks=[observe("failure_rate", _failure_rate_points)],
            unit="1",
            description=_HELP["failure_rate"],
        )
        meter.create_observable_gauge(
            "breaker.slow_call_rate",
            callbacks=[observe("slow_call_rate", _slow_call_rate_points)],
            unit="1",
            description=_HELP["slow_call_rate"],
        )
        meter.create_observable_gauge(
            "breaker.coord.up",
            callbacks=[observe("up", lambda s: [({"service": s.service}, int(s.health.up))])],
            description=_HELP["coord_up"],
        )
        meter.create_observable_gauge(
            "breaker.coord.last_sync_timestamp",
            callbacks=[observe("synced", _last_sync_points)],
            unit="s",
            description=_HELP["last_sync"],
        )
        meter.create_observable_counter(
            "breaker.invalid_documents",
            callbacks=[observe("invalid", lambda s: [({"service": s.service}, s.invalid)])],
            unit="{document}",
            description=_HELP["invalid"],
        )

    def add(self, export: _Export) -> None:
        durations = export.durations
        if durations is not None:
            if self._histogram is None:
                self._bounds = durations.bounds
                self._histogram = self._meter.create_histogram(
                    "breaker.call.duration",
                    unit="s",
                    description=_HELP["duration"],
                    explicit_bucket_boundaries_advisory=list(durations.bounds),
                )
            elif durations.bounds != self._bounds:
                _Hub._drop(self, export)
                raise ValueError(
                    f"buckets: this meter provider's breaker.call.duration has buckets "
                    f"{self._bounds!r}; every provider exported to it uses the same"
                )
            sink = _Sink(export, self._histogram)
            with _durations_lock:
                durations.sinks = (*durations.sinks, sink)
            self._sinks[export] = sink
        super().add(export)

    def _drop(self, export: _Export) -> None:
        sink = self._sinks.pop(export, None)
        durations = export.durations
        if sink is not None and durations is not None:
            with _durations_lock:
                durations.sinks = tuple(s for s in durations.sinks if s is not sink)
        super()._drop(export)

    def _observe(
        self, instrument: str, points: Callable[[_Scrape], Iterable[tuple[dict[str, str], float]]]
    ) -> Callable[[Any], Iterable[Any]]:
        observation = self._otel.Observation

        def callback(options: Any) -> Iterable[Any]:
            latest = self._latest
            if latest is None or instrument in latest[1]:
                latest = self._latest = (self.read(), set())
            scrapes, used = latest
            used.add(instrument)
            return [observation(value, attrs) for s in scrapes for attrs, value in points(s)]

        return callback


class _Sink:
    """Record each call's duration in the meter provider's histogram, under its breaker's series."""

    __slots__ = ("_export", "_histogram", "_other")

    def __init__(self, export: _Export, histogram: Any) -> None:
        self._export = export
        self._histogram = histogram
        self._other = {"service": export.service, "breaker": OTHER}

    def __call__(self, name: str, seconds: float) -> None:
        export = self._export
        if name in export.named or len(export.named) < export.limit:
            attributes = {"service": export.service, "breaker": name}
        else:
            attributes = self._other
        self._histogram.record(seconds, attributes)


def _attrs(s: _Scrape, name: str, **more: str) -> dict[str, str]:
    return {"service": s.service, "breaker": name, **more}


def _state_points(s: _Scrape) -> Iterator[tuple[dict[str, str], float]]:
    for each in s.named:
        current = each.reading[0]
        for value in _STATES:
            yield _attrs(s, each.name, state=value), int(value == current)
    if s.other is not None:
        for st in State:
            yield _attrs(s, OTHER, state=st.value), s.other.states[st.value]


def _mode_points(s: _Scrape) -> Iterator[tuple[dict[str, str], float]]:
    for each in s.named:
        current = each.reading[1]
        for value in _MODES:
            yield _attrs(s, each.name, mode=value), int(value == current)
    if s.other is not None:
        for md in Mode:
            yield _attrs(s, OTHER, mode=md.value), s.other.modes[md.value]


def _call_points(s: _Scrape) -> Iterator[tuple[dict[str, str], float]]:
    for each in s.named:
        for outcome, count in zip(_OUTCOMES, each.reading[2], strict=True):
            yield _attrs(s, each.name, outcome=outcome), count
    if s.other is not None:
        for outcome, n in zip(_OUTCOMES, s.other.counters[:_N_CALLS], strict=True):
            yield _attrs(s, OTHER, outcome=outcome), n


def _transition_points(s: _Scrape) -> Iterator[tuple[dict[str, str], float]]:
    for each in s.named:
        for (old, new), count in sorted((each.reading[4] or {}).items()):
            yield _attrs(s, each.name, **{"from": old, "to": new}), count
    if s.other is not None:
        for (old, new), n in zip(_PAIRS, s.other.counters[_N_CALLS:_N_COUNTERS], strict=True):
            if n:
                yield _attrs(s, OTHER, **{"from": old, "to": new}), n


def _in_flight_points(s: _Scrape) -> Iterator[tuple[dict[str, str], float]]:
    for each in s.named:
        yield _attrs(s, each.name), each.reading[3]
    if s.other is not None:
        yield _attrs(s, OTHER), s.other.in_flight


def _failure_rate_points(s: _Scrape) -> Iterator[tuple[dict[str, str], float]]:
    for each in s.named:
        rate = each.reading[5]
        if rate is not None:
            yield _attrs(s, each.name), rate


def _slow_call_rate_points(s: _Scrape) -> Iterator[tuple[dict[str, str], float]]:
    for each in s.named:
        rate = each.reading[6]
        if rate is not None:
            yield _attrs(s, each.name), rate


def _last_sync_points(s: _Scrape) -> list[tuple[dict[str, str], float]]:
    if s.health.last_sync is None:
        return []
    return [({"service": s.service}, s.health.last_sync)]


_instruments: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()


class OpenTelemetryMetrics(_Handle):
    """Export ``provider``'s breakers as OpenTelemetry instruments, read at collection time.

    ``meter_provider`` defaults to the global one. Every provider exported to one meter
    provider shares one set of instruments (a meter keeps the first instrument of a
    name and ignores the rest): any number of providers, each observation carrying its
    ``service``. ``breaker_limit``, ``durations`` and ``buckets`` are as for
    `PrometheusMetrics`; the histogram is ``breaker.call.duration``, one set of buckets
    per meter provider. `close` stops reporting the provider (instruments cannot be
    removed from a meter; they report the other providers); so does closing the provider.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        meter_provider: Any = None,
        breaker_limit: int = DEFAULT_BREAKER_LIMIT,
        durations: bool = False,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
    ) -> None:
        otel = _require("opentelemetry.metrics", "otel")
        meters = meter_provider if meter_provider is not None else otel.get_meter_provider()
        with _collectors_lock:
            instruments = _instruments.get(meters)
            if instruments is None:
                instruments = _instruments[meters] = _Instruments(meters, otel)
        super().__init__(instruments, _export(provider, breaker_limit, durations, buckets))

    def close(self) -> None:
        """Stop reporting the provider here (closing the provider does too)."""
        self._hub.remove(self._export)
