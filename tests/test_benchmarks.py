"""The benchmark suite's smoke mode: tiny counts, so it never rots (numbers are meaningless)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_benchmarks_run_in_smoke_mode() -> None:
    for peer in ("pybreaker", "circuitbreaker", "aiobreaker", "purgatory", "prometheus_client"):
        pytest.importorskip(peer)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sections = (
        "Peers and floors",
        "Every way in",
        "Concurrency",
        "Propagation",
        "Scale",
        "Metrics",
        "Per-change cost",
        "Fleet",
    )
    for section in sections:
        assert f"== {section}" in result.stdout
    assert "== Targets" in result.stdout
