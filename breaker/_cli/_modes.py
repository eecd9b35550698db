"""Commands on modes: force-open (the kill switch) and release."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from breaker._cli._app import EXIT_INVALID, EXIT_OK, CLIError, Commands, Context
from breaker._cli._app import duration as duration_type
from breaker._cli._client import Client, checked_name, layered
from breaker._cli._documents import print_change
from breaker._cli._output import SERVICE_DEFAULT, compact, dump, is_object
from breaker._layers import Layers, judge
from breaker._names import DEFAULT_DOCUMENT
from breaker._policy import format_timestamp
from breaker._state import Mode

_ATTEMPTS = 3  # read-modify-write rounds before giving up on a document that keeps changing
_NAME_HELP = "breaker name, or _default for every breaker of the service"

Update = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def register(commands: Commands) -> None:
    """Add this group's commands."""
    sub = commands.add(
        "force-open", cmd_force_open, "reject every call of NAME for a while", history="write"
    )
    sub.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sub.add_argument(
        "--for",
        dest="duration",
        required=True,
        type=duration_type,
        metavar="DURATION",
        help="how long: a Go duration (15m, 1h30m) or seconds; then auto again by itself",
    )
    sub.add_argument("--create", action="store_true", help="create NAME's document if it has none")
    sub = commands.add(
        "release", cmd_release, "end NAME's kill switch (or other mode)", history="write"
    )
    sub.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sub.add_argument(
        "--create", action="store_true", help="succeed when NAME has no document (nothing to do)"
    )


def cmd_force_open(args: argparse.Namespace, ctx: Context) -> int:
    """Set the kill switch: mode forced-open until now + DURATION, keeping the other keys."""
    until = ctx.now() + timedelta(seconds=args.duration)  # at most 292 years: never past 9999
    if until.microsecond:  # whole seconds read better, and the switch lasts at least DURATION
        until = until.replace(microsecond=0) + timedelta(seconds=1)
    stamp = format_timestamp(until)

    def update(document: dict[str, Any]) -> dict[str, Any]:
        document["mode"] = Mode.FORCED_OPEN.value
        document["modeUntil"] = stamp
        return document

    return _set_mode(ctx, args, update, "forced open", stamp, action="force-open")


def cmd_release(args: argparse.Namespace, ctx: Context) -> int:
    """Clear the kill switch (and any other mode): remove mode and modeUntil, nothing else."""

    def update(document: dict[str, Any]) -> dict[str, Any] | None:
        if "mode" not in document and "modeUntil" not in document:
            return None
        document.pop("mode", None)
        document.pop("modeUntil", None)
        return document

    return _set_mode(ctx, args, update, "released", action="release")


def dump_like(value: dict[str, Any], raw: bytes | None) -> bytes:
    """Serialise ``value`` in the layout of ``raw``: one line stays one line."""
    if raw is not None and b"\n" not in raw.strip():
        return compact(value).encode("utf-8")
    return (dump(value) + "\n").encode("utf-8")


def not_reached(layers: Layers) -> list[dict[str, str]]:
    """Return the breakers a mode written in ``_default.json`` does not reach, and why."""
    found = [
        {
            "name": name,
            "mode": mode.value,
            "reason": f'its own document sets mode "{mode.value}"; `breaker release {name}` '
            f"hands it to {SERVICE_DEFAULT}",
        }
        for name, mode in sorted(layers.mode_holders().items())
    ]
    for name, doc in sorted(layers.documents().items()):
        if name != DEFAULT_DOCUMENT and not doc.valid:
            found.append(
                {
                    "name": name,
                    "mode": "unknown",
                    "reason": "its document is invalid: services keep their last good version "
                    "of it, whose mode wins if it sets one",
                }
            )
    return found


def _set_mode(
    ctx: Context,
    args: argparse.Namespace,
    update: Update,
    done: str,
    until: str | None = None,
    *,
    action: str,
) -> int:
    """Apply ``update`` to a document with check-and-set, re-reading after a concurrent edit.

    ``update`` returns the new document, or None when there is nothing to change. The
    other keys are kept as they are, and so is an edit made between a read and a write.
    A document whose other settings do not fit on the layers below still takes its mode:
    a mode applies whatever the validity of the other layers.
    """
    name = checked_name(args.name)
    with Client(args, ctx) as client:
        key = client.key(name)
        for _ in range(_ATTEMPTS):
            snapshot = client.snapshot()
            current = client.get(name)
            if current is None and not args.create:
                raise client.missing(name, snapshot, "written")
            old = None if current is None else judge(current[0])
            if old is not None and not is_object(old):
                why = old.errors[0] if old.errors else "not an object"
                raise CLIError(
                    f"{key} holds no JSON object ({why}); fix it with `breaker put` first",
                    EXIT_INVALID,
                )
            at = None if current is None else current[1]
            document = update(dict(old.value) if old is not None else {})
            if document is None:
                why = "no mode to release" if current is not None else "no document"
                print_change(ctx, args, "unchanged", key, old, old, at, note=why)
                return EXIT_OK
            raw = dump_like(document, None if current is None else current[0])
            new = judge(raw)
            if not new.valid:
                raise CLIError(
                    f"refused: {key} would be invalid ({'; '.join(map(str, new.errors))}), and "
                    "services would keep its last good version; nothing written. Fix it with "
                    "`breaker put` first.",
                    EXIT_INVALID,
                )
            if client.change(name, raw, before=current, cas=True, action=action) is not None:
                after = layered({**snapshot, key: raw}, client.prefix, ctx)
                _report(ctx, args, done, key, name, old, new, at, until, after)
                return EXIT_OK
    raise CLIError(
        f"refused: {key} kept changing while being updated ({_ATTEMPTS} tries); nothing "
        "written. Try again.",
        EXIT_INVALID,
    )


def _report(
    ctx: Context,
    args: argparse.Namespace,
    action: str,
    key: str,
    name: str,
    old: Any,
    new: Any,
    at: int | None,
    until: str | None,
    after: Layers,
) -> None:
    misfit = after.invalid.get(name)
    if misfit is not None and name != DEFAULT_DOCUMENT:
        ctx.err(
            f"warning: {key} does not fit on {SERVICE_DEFAULT} "
            f"({'; '.join(map(str, misfit.problems))}): its mode applies, its other settings "
            "do not"
        )
    if name != DEFAULT_DOCUMENT:
        print_change(ctx, args, action, key, old, new, at, until=until)
        return
    missed = not_reached(after)
    lines = [f"not reached: {m['name']} ({m['reason']})" for m in missed]
    print_change(
        ctx,
        args,
        action,
        key,
        old,
        new,
        at,
        until=until,
        extra={"not_reached": missed},
        lines=lines,
    )
