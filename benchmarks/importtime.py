"""How long ``import breaker`` takes, and which third-party modules it pulls in.

    python benchmarks/importtime.py [--runs N] [--json]

Each run is a fresh ``python -X importtime -c "import breaker"`` from the repository root;
the result is the median over the runs of ``breaker``'s cumulative time, with bytecode
cached (a warm-up run writes it first). ``benchmarks/run.py`` puts it in RESULTS.rst.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from importlib.machinery import PathFinder
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE_US = 84_000
"""0.1.0, before the lazy imports of issue 12 (python 3.11, 2-core AMD EPYC): the goal is at
most half of it."""
HEAVY = ("consul", "grpc", "httpx", "requests", "urllib3")
"""Modules ``import breaker`` must not load: they come with extras and load on first use."""


@dataclass(frozen=True)
class ImportTime:
    """The median cumulative import time of breaker, the fastest, each run's, what it imported."""

    median_us: int
    min_us: int
    runs_us: list[int]
    third_party: list[str]


def parse(stderr: str, package: str = "breaker") -> int:
    """Return ``package``'s cumulative import time in µs from ``-X importtime`` output."""
    for line in stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if line.startswith("import time:") and len(fields) == 3 and fields[2] == f" {package}":
            return int(fields[1])
    raise ValueError(f"no top-level import of {package} in the -X importtime output")


def third_party(modules: list[str]) -> list[str]:
    """Return the top-level names in ``modules`` that are neither stdlib nor breaker and that
    are found on sys.path (runtime internals such as ``cython_runtime`` are not)."""
    tops = {name.split(".")[0] for name in modules}
    tops -= {*sys.stdlib_module_names, "breaker"}
    return sorted(top for top in tops if PathFinder.find_spec(top) is not None)


# What the command of issue 12 does, plus a list of the modules that importing breaker added
# (-X importtime also lists imports that failed, such as a library probing for optional ones).
CODE = "import sys; before = set(sys.modules); import breaker; print(*set(sys.modules) - before)"


def run_once(python: str = sys.executable) -> tuple[int, list[str]]:
    """Import breaker in a fresh process; return its cumulative µs and the modules it added."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(
        [python, "-X", "importtime", "-c", CODE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return parse(result.stderr), result.stdout.split()


def measure(runs: int = 21, python: str = sys.executable) -> ImportTime:
    """Import breaker in ``runs`` fresh processes (after one warm-up) and summarise."""
    run_once(python)
    times: list[int] = []
    modules: list[str] = []
    for _ in range(runs):
        us, modules = run_once(python)
        times.append(us)
    return ImportTime(int(statistics.median(times)), min(times), times, third_party(modules))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = measure(args.runs)
    if args.json:
        print(json.dumps(asdict(result)))
        return
    print(
        f"import breaker: {result.median_us:,} µs, median of {args.runs} fresh processes"
        f" (fastest {result.min_us:,} µs)"
    )
    print(f"goal: at most {BASELINE_US // 2:,} µs, half of 0.1.0's {BASELINE_US:,} µs")
    print(f"third-party modules imported: {', '.join(result.third_party) or 'none'}")
    heavy = [m for m in result.third_party if m in HEAVY]
    print(f"of which should load only on use: {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
