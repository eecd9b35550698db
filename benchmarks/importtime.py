"""How long ``import breaker`` and ``import breaker.testing`` take, and what they load.

    python benchmarks/importtime.py [--runs N] [--json]

Each run is a fresh ``python -X importtime`` from the repository root that imports breaker,
lists the modules that added, then touches ``breaker.ConsulCoord``. ``import breaker`` is
breaker's cumulative time; "with ConsulCoord" adds whatever touching it imported on top,
which is what ``import breaker`` itself cost in 0.1.0, when it loaded everything up front.
Their ratio, measured in the same process, is the goal of issue 12 (at most 0.5) and does
not depend on how busy the machine is, unlike the times.

A second fresh process per run does the same for ``import breaker.testing`` (breaker
included, as a test module pays it), then touches ``ConsulServer`` and ``FaultProxy``,
which load on first use (issue 22): the modules it loads must include no server module
(`SERVER_MODULES`). Medians over the runs; bytecode is cached first.
``benchmarks/run.py`` puts the numbers in RESULTS.rst.
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
GOAL = 0.5
"""import breaker at most half of what it cost when it imported the Consul coord eagerly."""
HEAVY = ("consul", "grpc", "httpx", "requests", "urllib3")
"""Modules ``import breaker`` must not load: they come with extras and load on first use."""
SERVER_MODULES = (
    "breaker.testing._proxy",
    "breaker.testing._server",
    "email",
    "http.client",
    "http.server",
    "socketserver",
    "ssl",
)
"""Modules ``import breaker.testing`` must not load: the Consul stand-in and the fault proxy
load them when a test asks for a server."""
# -X importtime also lists imports that failed (a library probing for optional ones), so the
# modules come from sys.modules instead.
CODE = """if True:
    import sys
    before = set(sys.modules)
    import breaker
    print(*set(sys.modules) - before)
    breaker.ConsulCoord
"""
TESTING_CODE = """if True:
    import sys
    before = set(sys.modules)
    import breaker.testing
    print(*set(sys.modules) - before)
    breaker.testing.ConsulServer
    breaker.testing.FaultProxy
"""


@dataclass(frozen=True)
class ImportTime:
    """Medians in µs over the runs, the ratio goal, and what the imports loaded.

    The ``testing_`` fields are ``import breaker.testing``'s: its cumulative time (breaker's
    included), that plus loading the servers, the modules it loads beyond ``import
    breaker``, and which `SERVER_MODULES` it loaded (none, if it stays light).
    """

    median_us: int
    min_us: int
    with_consul_us: int
    ratio: float
    runs_us: list[int]
    third_party: list[str]
    testing_us: int
    testing_with_servers_us: int
    testing_added: list[str]
    testing_server_modules: list[str]


def parse(stderr: str, package: str = "breaker") -> tuple[int, int]:
    """Return ``package``'s cumulative µs, and that plus the top-level imports after it.

    Lines of ``-X importtime`` output come after the imports they include; a top-level
    import has one space before its name.
    """
    own = total = None
    for line in stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(fields) != 3:
            continue
        name = fields[2]
        if name == f" {package}":
            own = total = int(fields[1])
        elif total is not None and name.startswith(" ") and not name.startswith("  "):
            total += int(fields[1])
    if own is None or total is None:
        raise ValueError(f"no top-level import of {package} in the -X importtime output")
    return own, total


def third_party(modules: list[str]) -> list[str]:
    """Return the top-level names in ``modules`` that are neither stdlib nor breaker and that
    are found on sys.path (runtime internals such as ``cython_runtime`` are not)."""
    tops = {name.split(".")[0] for name in modules}
    tops -= {*sys.stdlib_module_names, "breaker"}
    return sorted(top for top in tops if PathFinder.find_spec(top) is not None)


def run_once(
    python: str = sys.executable, code: str = CODE, package: str = "breaker"
) -> tuple[int, int, list[str]]:
    """Run ``code`` in a fresh process: ``package``'s µs, µs with what the code touches
    after it, and the modules the import added."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(
        [python, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    own, total = parse(result.stderr, package)
    return own, total, result.stdout.split()


def server_modules(modules: list[str]) -> list[str]:
    """Return the `SERVER_MODULES` among ``modules``, or that one of them is a package of."""
    return sorted(
        server
        for server in SERVER_MODULES
        if any(m == server or m.startswith(server + ".") for m in modules)
    )


def measure(runs: int = 21, python: str = sys.executable) -> ImportTime:
    """Import breaker, then breaker.testing, in ``runs`` fresh processes each (after one
    warm-up) and summarise."""
    run_once(python)
    run_once(python, TESTING_CODE, "breaker.testing")
    own: list[int] = []
    total: list[int] = []
    modules: list[str] = []
    testing: list[int] = []
    servers: list[int] = []
    testing_modules: list[str] = []
    for _ in range(runs):
        us, with_consul, modules = run_once(python)
        own.append(us)
        total.append(with_consul)
        us, with_servers, testing_modules = run_once(python, TESTING_CODE, "breaker.testing")
        testing.append(us)
        servers.append(with_servers)
    return ImportTime(
        median_us=int(statistics.median(own)),
        min_us=min(own),
        with_consul_us=int(statistics.median(total)),
        ratio=statistics.median(o / t for o, t in zip(own, total, strict=True)),
        runs_us=own,
        third_party=third_party(modules),
        testing_us=int(statistics.median(testing)),
        testing_with_servers_us=int(statistics.median(servers)),
        testing_added=sorted(set(testing_modules) - set(modules)),
        testing_server_modules=server_modules(testing_modules),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = measure(args.runs)
    if args.json:
        print(json.dumps(asdict(result)))
        return
    print(f"import breaker: {result.median_us:,} µs (median of {args.runs} fresh processes)")
    print(f"  fastest run: {result.min_us:,} µs")
    print(f"  with ConsulCoord loaded too: {result.with_consul_us:,} µs")
    verdict = "met" if result.ratio <= GOAL else "not met"
    print(f"  ratio: {result.ratio:.2f} (goal <= {GOAL}: {verdict})")
    print(f"third-party modules imported: {', '.join(result.third_party) or 'none'}")
    heavy = [m for m in result.third_party if m in HEAVY]
    print(f"  of which should load only on use: {', '.join(heavy) or 'none'}")
    print(f"import breaker.testing: {result.testing_us:,} µs (breaker included)")
    print(f"  with ConsulServer and FaultProxy loaded too: {result.testing_with_servers_us:,} µs")
    added = result.testing_added
    print(f"  modules beyond import breaker: {len(added)}: {', '.join(added)}")
    servers = result.testing_server_modules
    print(f"  server modules it loads (should be none): {', '.join(servers) or 'none'}")


if __name__ == "__main__":
    main()
