"""``.. breaker-metrics::``: the table of Prometheus metrics, from a scrape made at build time.

The build exports a provider with one breaker that has seen a success, a failure and a
trip (with a failure rate, and the opt-in call durations) to a fresh prometheus_client
registry, scrapes it, and writes down what came back:
each metric's name as exposed, its type, its labels and its help. A metric added to (or
renamed in) the collector shows up here without an edit.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from cli_reference import rst_text
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

import breaker
from breaker.metrics import PrometheusMetrics


def scrape() -> list[Any]:
    """Return the metric families of a scrape of a provider whose one breaker has tripped."""
    config = breaker.Config("checkout", "/config/dev/checkout/breakers/")
    one = breaker.Policy(failure_threshold=1, failure_rate=0.5)  # the rate series too
    quiet = logging.NullHandler()  # the trip logs a WARNING; the build has no use for it
    logging.getLogger("breaker").addHandler(quiet)
    try:
        with breaker.new(config, coord=breaker.MemoryCoord(), default_policy=one) as provider:
            brk = provider.get_breaker("payments")
            brk.do(lambda: None)
            with contextlib.suppress(ZeroDivisionError):
                brk.do(lambda: 1 / 0)
            return list(export(provider).collect())
    finally:
        logging.getLogger("breaker").removeHandler(quiet)


def export(provider: breaker.Provider) -> Any:
    """Return a fresh prometheus_client registry that ``provider`` is exported to."""
    import prometheus_client

    registry = prometheus_client.CollectorRegistry()
    PrometheusMetrics(provider, registry=registry, durations=True)  # the opt-in histogram too
    return registry


def table(families: list[Any]) -> list[str]:
    """Return a list-table of ``families``: name, type, labels, help."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 30 10 25 35",
        "",
        "   * - name",
        "     - type",
        "     - labels",
        "     - help",
    ]
    for family in families:
        names = list(dict.fromkeys(sample.name for sample in family.samples)) or [family.name]
        labels = list(dict.fromkeys(k for sample in family.samples for k in sample.labels))
        lines += [
            "   * - " + ", ".join(f"``{name}``" for name in names),
            f"     - {family.type}",
            "     - " + (", ".join(labels) or "(none)"),
            f"     - {rst_text(family.documentation)}",
        ]
    return [*lines, ""]


class MetricsTable(SphinxDirective):
    """``.. breaker-metrics::``: what `PrometheusCollector` exposes, scraped at build time."""

    def run(self) -> list[nodes.Node]:
        node = nodes.section()
        node.document = self.state.document
        lines = StringList(table(scrape()), source="breaker.metrics scrape")
        nested_parse_with_titles(self.state, lines, node)
        return node.children
