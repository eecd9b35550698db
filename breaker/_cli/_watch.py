"""``breaker watch``: print each change under ``--path`` as it happens, judged as services do."""

from __future__ import annotations

import argparse
import threading
from typing import TYPE_CHECKING

from breaker._cli._app import EXIT_OK, Commands, Context
from breaker._cli._client import Client
from breaker._cli._output import SERVICE_DEFAULT, change_json, change_lines, compact, stamp
from breaker._layers import Document, Invalid, Layers
from breaker._policy import Policy

if TYPE_CHECKING:
    from breaker.coord._base import CoordHealth, Snapshot

_HEALTH_POLL = 0.2  # seconds between looks at the watch's health


def register(commands: Commands) -> None:
    """Add this group's commands."""
    commands.add("watch", cmd_watch, "print changes under --path as they happen")


class HealthReport:
    """Turn a watch's health into one line per change of condition."""

    def __init__(self) -> None:
        self._error: str | None = None

    def lines(self, health: CoordHealth, when: str) -> list[str]:
        """Return what to tell the operator about ``health`` (nothing when it is unchanged)."""
        error = None if health.up else health.last_error
        if error == self._error:
            return []
        before, self._error = self._error, error
        if error is None:
            return [f"{when}  Consul answers again"] if before else []
        return [f"{when}  Consul: {error}; still trying (services keep their policies)"]


def cmd_watch(args: argparse.Namespace, ctx: Context) -> int:
    """Stream changes to the documents under a prefix until Ctrl-C."""
    client = Client(args, ctx)
    lock = threading.Lock()
    broken = threading.Event()
    # One service's view, kept current: a document it would refuse is flagged, and so is
    # one a new service default turns invalid, or valid again.
    layers = Layers(Policy(), client.prefix, wall=ctx.wall, log=False)
    with client:
        layers.update(client.snapshot())
        known, invalid = layers.documents(), layers.invalid

        def on_change(snapshot: Snapshot) -> None:
            nonlocal known, invalid
            with lock:
                layers.update(snapshot)
                current, now_invalid = layers.documents(), layers.invalid
                when = stamp(ctx.now())
                for name in sorted(known.keys() | current.keys()):
                    old, new = known.get(name), current.get(name)
                    same = old is not None and new is not None and old.raw == new.raw
                    if same and (name in invalid) == (name in now_invalid):
                        continue
                    try:
                        _event(ctx, args, layers, when, name, old, new, now_invalid.get(name))
                    except BrokenPipeError:  # the reader went away: stop as Ctrl-C would
                        broken.set()
                        ctx.stop.set()
                known, invalid = current, now_invalid

        count = f"{len(known)} document" + ("" if len(known) == 1 else "s")
        watch = client.watch(on_change)
        report = HealthReport()
        try:
            # Said once the watch runs: from here on, Ctrl-C is the normal way out.
            ctx.err(f"watching {client.prefix} ({count}); Ctrl-C to stop")
            while not ctx.stop.wait(_HEALTH_POLL):
                for line in report.lines(watch.health(), stamp(ctx.now())):
                    ctx.err(line)
        except KeyboardInterrupt:
            pass
        finally:
            watch.stop()
    if broken.is_set():
        raise BrokenPipeError
    return EXIT_OK


def _event(
    ctx: Context,
    args: argparse.Namespace,
    layers: Layers,
    when: str,
    name: str,
    old: Document | None,
    new: Document | None,
    invalid: Invalid | None,
) -> None:
    kind = "created" if old is None else "deleted" if new is None else "changed"
    if old is not None and new is not None and old.raw == new.raw:
        kind = "revalidated"  # the service default changed under it
    error = None if invalid is None else "; ".join(str(p) for p in invalid.problems)
    if args.json:
        line = {
            "time": when,
            "name": name,
            "key": layers.key(name),
            "event": kind,
            "changes": change_json(old, new),
            "valid": new is None or invalid is None,
            "error": None if new is None else error,
        }
        ctx.out(compact(line), flush=True)
        return
    text = "; ".join(change_lines(old, new)) or "the same keys, written anew"
    flag = "" if new is None or invalid is None else f"  INVALID: {error}"
    if kind == "revalidated":
        text = f"by the new {SERVICE_DEFAULT}" + (flag or "  valid again")
        flag = ""
    ctx.out(f"{when}  {name}  {kind}  {text}{flag}", flush=True)
