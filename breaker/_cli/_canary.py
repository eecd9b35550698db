"""``breaker canary start|status|promote|abort``: try a policy on a slice of the fleet first.

A canary is the ``canary`` key of a breaker's document (`breaker._layers`, rule 5): the
candidate policy, the percentage of instances that run it, and ``abortIfOpen``. Each
write is recorded in the history, in the same transaction.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from breaker._cli._app import EXIT_INVALID, EXIT_OK, CLIError, Commands, Context
from breaker._cli._client import Client, checked_name, layered
from breaker._cli._documents import print_change, read_input, refused
from breaker._cli._fleet import STATES, fleet_parent, fleet_records
from breaker._cli._modes import dump_like
from breaker._cli._output import compact, dump, is_object
from breaker._layers import Document, canary_id, in_canary, judge
from breaker._names import DEFAULT_DOCUMENT, policy_name
from breaker._policy import CANARY_KEY

_NAME_HELP = "breaker name (a canary lives in a breaker's own document)"
_GROUPS = ("candidate", "stable", "aborted", "pending")
_LABELS = {
    "candidate": "runs the candidate",
    "stable": "runs the stable policy",
    "aborted": "went back (abortIfOpen)",
    "pending": "not on this canary yet",
}


def register(commands: Commands) -> None:
    """Add this group's commands."""
    group = commands.group("canary", "try a policy on a share of the instances, then promote it")
    sub = commands.add(
        "start",
        cmd_start,
        "add FILE (- for stdin) to NAME's document as a candidate that P%% of instances run",
        history="write",
        subparsers=group,
    )
    sub.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sub.add_argument("file", metavar="FILE", help="the candidate: policy keys, on top of NAME's")
    sub.add_argument(
        "--percent",
        type=_percent,
        required=True,
        metavar="P",
        help="the share of instances that run the candidate (0 < P <= 100)",
    )
    sub.add_argument(
        "--abort-if-open",
        action="store_true",
        help="an instance whose breaker trips under the candidate goes back to the stable policy",
    )
    sub.add_argument("--create", action="store_true", help="create NAME's document if it has none")
    sub.add_argument("--force", action="store_true", help="write even with unknown keys")
    sub = commands.add(
        "status",
        cmd_status,
        "show which instances run the candidate, and their breakers' states beside the rest",
        subparsers=group,
        parents=[fleet_parent()],
    )
    sub.add_argument("name", metavar="NAME", help=_NAME_HELP)
    for name, run, text in (
        ("promote", cmd_promote, "make the candidate NAME's policy, for every instance"),
        ("abort", cmd_abort, "remove the canary: every instance runs NAME's policy again"),
    ):
        sub = commands.add(name, run, text, history="write", subparsers=group)
        sub.add_argument("name", metavar="NAME", help=_NAME_HELP)


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        value = math.nan
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"expected a percentage, 0 < P <= 100, got {text!r}")
    return value


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() else value


def _canary_name(name: str) -> str:
    name = checked_name(name)
    if name == DEFAULT_DOCUMENT:
        raise CLIError(
            "a canary is tried per breaker (its share is hashed from the breaker's name); "
            "_default.json cannot hold one",
            EXIT_INVALID,
        )
    return name


def _read(
    client: Client, name: str, *, create: bool = False
) -> tuple[tuple[bytes, int] | None, dict[str, Any]]:
    """Return the document of ``name`` as read, and its JSON object (empty when absent)."""
    current = client.get(name)
    if current is None:
        if create:
            return None, {}
        raise client.missing(name, client.snapshot(), "written")
    doc = judge(current[0])
    if not is_object(doc):
        why = doc.errors[0] if doc.errors else "not an object"
        raise CLIError(
            f"{client.key(name)} holds no JSON object ({why}); fix it with `breaker put` first",
            EXIT_INVALID,
        )
    return current, dict(doc.value)


def _write(
    client: Client,
    ctx: Context,
    args: argparse.Namespace,
    name: str,
    current: tuple[bytes, int] | None,
    document: dict[str, Any],
    action: str,
    done: str,
) -> int:
    """Check ``document`` as the services would take it, write it with its history entry."""
    key = client.key(name)
    raw = dump_like(document, None if current is None else current[0])
    new = judge(raw)
    if not new.valid:
        raise CLIError(
            f"refused: {key} would be invalid ({'; '.join(map(str, new.errors))}); nothing written",
            EXIT_INVALID,
        )
    unknown = new.unknown_problems()
    if unknown and not getattr(args, "force", False):
        raise CLIError(
            f"refused: {'; '.join(map(str, unknown))}; nothing written (services would ignore "
            "it). Correct it, or use --force to write it anyway.",
            EXIT_INVALID,
        )
    for problem in unknown:
        ctx.err(f"warning: {problem}")
    snapshot = client.snapshot()
    after = layered({**snapshot, key: raw}, client.prefix, ctx)
    found = after.invalid.get(name)
    if found is not None:
        raise CLIError(
            f"refused: {key} would not apply ({'; '.join(map(str, found.problems))}); nothing "
            "written",
            EXIT_INVALID,
        )
    at = None if current is None else current[1]
    if client.change(name, raw, before=current, cas=True, action=action) is None:
        raise refused(key, at)
    old = None if current is None else judge(current[0])
    print_change(ctx, args, done, key, old, new, at)
    return EXIT_OK


def cmd_start(args: argparse.Namespace, ctx: Context) -> int:
    """Add a canary to a breaker's document: the candidate, the percentage, the abort rule."""
    name = _canary_name(args.name)
    try:
        label, raw = read_input(args.file, ctx.stdin)
    except OSError as exc:
        raise CLIError(f"cannot read {args.file}: {exc.strerror}", EXIT_INVALID) from None
    candidate = judge(raw)
    if not isinstance(candidate.value, dict):
        why = candidate.errors[0] if candidate.errors else "not an object"
        raise CLIError(f"{label}: INVALID: {why}; nothing written", EXIT_INVALID)
    with Client(args, ctx) as client:
        current, document = _read(client, name, create=args.create)
        if CANARY_KEY in document:
            raise CLIError(
                f"refused: {client.key(name)} already holds a canary; promote or abort it "
                "first; nothing written",
                EXIT_INVALID,
            )
        document[CANARY_KEY] = {
            "policy": candidate.value,
            "percent": _number(args.percent),
            "abortIfOpen": args.abort_if_open,
        }
        return _write(client, ctx, args, name, current, document, "canary-start", "canary started")


def _running(client: Client, name: str) -> tuple[tuple[bytes, int] | None, dict[str, Any]]:
    current, document = _read(client, name)
    if CANARY_KEY not in document:
        raise CLIError(f"no canary in {client.key(name)}; nothing written", EXIT_INVALID)
    doc = judge(current[0]) if current is not None else None
    if doc is None or doc.canary is None:
        problems = "; ".join(str(p) for p in (doc.errors if doc is not None else ()))
        raise CLIError(
            f"the canary in {client.key(name)} is invalid ({problems}); fix it with "
            "`breaker put` first",
            EXIT_INVALID,
        )
    return current, document


def cmd_promote(args: argparse.Namespace, ctx: Context) -> int:
    """Make the candidate the document: its keys replace the document's; the canary goes."""
    name = _canary_name(args.name)
    with Client(args, ctx) as client:
        current, document = _running(client, name)
        candidate = document.pop(CANARY_KEY)["policy"]
        document.update(candidate)
        return _write(
            client, ctx, args, name, current, document, "canary-promote", "canary promoted"
        )


def cmd_abort(args: argparse.Namespace, ctx: Context) -> int:
    """Remove the canary: every instance runs the document's policy again."""
    name = _canary_name(args.name)
    with Client(args, ctx) as client:
        current, document = _running(client, name)
        del document[CANARY_KEY]
        return _write(client, ctx, args, name, current, document, "canary-abort", "canary aborted")


# -- status -------------------------------------------------------------------------------------


def group_of(entry: dict[str, Any], cid: str) -> str:
    """Return which group a fleet record's breaker is in, for the canary ``cid``."""
    found = entry.get("canary")
    if not isinstance(found, dict) or found.get("id") != cid:
        return "pending"  # it has not taken this canary (yet), or runs an older one
    if found.get("aborted") is True:
        return "aborted"
    return "candidate" if found.get("runs") == "candidate" else "stable"


def cmd_status(args: argparse.Namespace, ctx: Context) -> int:
    """Show which instances run the candidate and their states, beside the rest."""
    name = _canary_name(args.name)
    with Client(args, ctx) as client:
        key = client.key(name)
        current = client.get(name)
        doc: Document | None = None if current is None else judge(current[0])
        if doc is None or doc.canary is None:
            what = "no document" if doc is None else "no canary"
            if doc is not None and isinstance(doc.value, dict) and CANARY_KEY in doc.value:
                what = "an invalid canary"
            raise CLIError(f"{what} at {key}", EXIT_INVALID)
        prefix, records = fleet_records(client, args)
    canary = doc.canary
    cid = canary_id(canary)
    groups: dict[str, dict[str, list[str]]] = {g: {s: [] for s in STATES} for g in _GROUPS}
    instances: list[str] = []
    for record in records:
        for brk_name, entry in sorted(record["breakers"].items()):
            if policy_name(brk_name) != name:
                continue
            instance = str(record["instance"])
            label = instance if brk_name == name else f"{instance} ({brk_name})"
            instances.append(instance)
            groups[group_of(entry, cid)][entry["state"]].append(label)
    named = sorted({i for i in instances if in_canary(i, name, canary.percent)})
    summary = {
        "id": cid,
        "percent": _number(canary.percent),
        "abortIfOpen": canary.abort_if_open,
        "policy": canary.value.get("policy"),
    }
    if args.json:
        ctx.out(
            dump(
                {
                    "name": name,
                    "key": key,
                    "fleet": prefix,
                    "canary": summary,
                    "instances": sorted(set(instances)),
                    "named": named,
                    **groups,
                }
            )
        )
        return EXIT_OK
    rule = ", abortIfOpen" if canary.abort_if_open else ""
    ctx.out(f"canary {cid} of {name}: {summary['percent']}% of instances{rule}")
    ctx.out(f"candidate: {compact(summary['policy'])}")
    total = len(instances)
    width = max(len(label) for label in _LABELS.values())
    for group in _GROUPS:
        members = groups[group]
        count = sum(len(ids) for ids in members.values())
        if group in ("aborted", "pending") and not count:
            continue
        text = f"{_LABELS[group]:<{width}}  {count:>{len(str(total))}} of {total}"
        if group == "stable":
            parts = [
                f"{s} {len(members[s])}" + (f" ({', '.join(members[s])})" if s != "closed" else "")
                for s in STATES
                if members[s]
            ]
        else:
            parts = [f"{i} {s}" for i, s in sorted((i, s) for s in STATES for i in members[s])]
        ctx.out(text + (f": {', '.join(parts)}" if parts else ""))
    return EXIT_OK
