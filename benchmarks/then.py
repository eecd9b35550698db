"""Every way in, now beside the same way as it was before this round's engine, in one process.

Issue 18 asks that with none of its keys set every path cost what it cost when the issue
was filed, at most 1.05x. That code is commit ``THEN`` (the last before this round): its
``breaker/`` package is exported from git into a scratch folder, renamed ``breaker_then``
(its ``from breaker...`` imports rewritten), and imported beside ``breaker``. Both run
the default policy, with no load-protection key, measured round by round as in
``paths.py``; a way's ratio is the median of its per-round ratios, its unguarded call
taken off both.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

import paths as ways

import breaker

THEN = "5f6817e"
"""The last commit before this round's engine: what the round's issues measured."""

ROOT = Path(__file__).resolve().parent.parent
_FROM_BREAKER = re.compile(r"\bfrom breaker\b")


class Unavailable(Exception):
    """``THEN`` cannot be read here (no git, a shallow clone, an unpacked sdist)."""


def load_then(folder: Path) -> Any:
    """Export ``THEN``'s ``breaker/`` into ``folder`` as ``breaker_then``; import it."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", THEN, "breaker"],
            check=True,
            capture_output=True,
        ).stdout
    except OSError as exc:
        raise Unavailable(f"no git here ({exc})") from None
    except subprocess.CalledProcessError as exc:
        why = exc.stderr.decode(errors="replace").strip().splitlines()
        raise Unavailable(f"git cannot read {THEN} here ({why[0] if why else exc})") from None
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(folder, **safe)
    package = folder / "breaker_then"
    (folder / "breaker").rename(package)
    for source in package.rglob("*.py"):
        source.write_text(_FROM_BREAKER.sub("from breaker_then", source.read_text()))
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module("breaker_then")
    finally:
        sys.path.remove(str(folder))


def _cases(lib: Any, tag: str) -> tuple[dict[str, ways.Case], dict[str, ways.Case]]:
    """Return one library's eight ways in, each keyed ``"<way>/<tag>"``."""
    provider = lib.new(lib.Config(f"then-{tag}", f"bench/then/{tag}/"), coord=lib.MemoryCoord())

    @provider.circuit("@circuit")
    def deco() -> int:
        return 1

    class Methods:
        @provider.circuit("@circuit method")
        def m(self) -> int:
            return 1

        @provider.circuit("async @circuit method")
        async def am(self) -> int:
            return 1

    @provider.circuit("async @circuit")
    async def adeco() -> int:
        return 1

    def guarded() -> int:
        with provider.guard("guard()"):
            return ways.f()

    async def aguarded() -> int:
        async with provider.guard("async with guard()"):
            return await ways.af()

    obj = Methods()
    sync = {
        "@circuit": deco,
        "@circuit method": ways._method_caller(obj),
        "guard()": guarded,
        "Breaker.do": ways._do_caller(provider.get_breaker("Breaker.do")),
    }
    async_ = {
        "async @circuit": adeco,
        "async @circuit method": ways._amethod_caller(obj),
        "async with guard()": aguarded,
        "do_async": ways._ado_caller(provider.get_breaker("do_async")),
    }
    return (
        {f"{way}/{tag}": (call, None) for way, call in sync.items()},
        {f"{way}/{tag}": (call, None) for way, call in async_.items()},
    )


def run(smoke: bool) -> dict[str, list[float]]:
    """Measure every way, now and then (about 20 s; ``smoke``: a fraction of a second).

    Raises `Unavailable` where ``THEN`` cannot be read.
    """
    rounds, number = (2, 200) if smoke else (60, 5_000)
    logging.getLogger("breaker").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as scratch:
        then = load_then(Path(scratch))
        now_sync, now_async = _cases(breaker, "now")
        then_sync, then_async = _cases(then, "then")
        bare = {"bare": (ways.f, None), "bare method": (ways._method_caller(ways.Plain()), None)}
        times = ways.measure_sync({**bare, **now_sync, **then_sync}, rounds=rounds, number=number)
        loop = asyncio.new_event_loop()
        try:
            abare = {
                "async bare": (ways.af, None),
                "async bare method": (ways._amethod_caller(ways.Plain()), None),
            }
            times.update(
                ways.measure_async(
                    loop, {**abare, **now_async, **then_async}, rounds=rounds, number=number
                )
            )
        finally:
            loop.close()
    return times


WAYS = (*ways.SYNC_PATHS, *ways.ASYNC_PATHS)


def ratio(times: dict[str, list[float]], way: str) -> float:
    """Return a way's overhead now over its overhead then (median of per-round ratios)."""
    bare = ways.COMPARISONS[way][0]
    return ways.ratio(times, f"{way}/now", f"{way}/then", less=bare)


if __name__ == "__main__":
    results = run(smoke="--smoke" in sys.argv)
    for way in WAYS:
        print(f"{way:24} {ratio(results, way):.2f}x its overhead at {THEN}")
