"""Commands on whole documents: validate, schema, ls, get, put, rm."""

from __future__ import annotations

import argparse
import importlib.resources
from collections.abc import Iterable
from typing import Any, TextIO

from breaker._cli._app import EXIT_INVALID, EXIT_OK, CLIError, Commands, Context, index
from breaker._cli._client import Client, checked_name, layered, prefix_of
from breaker._cli._output import (
    SERVICE_DEFAULT,
    change_json,
    change_lines,
    describe,
    document_json,
    dump,
    mode_text,
    services_keep,
)
from breaker._layers import Document, Layers, Problem, judge, judge_alone
from breaker._names import DEFAULT_DOCUMENT
from breaker._policy import unknown_keys_message

_CAS_HELP = (
    "write only if the document's ModifyIndex is still INDEX (from `breaker get`; "
    "0: only if it does not exist)"
)
_NAME_HELP = "breaker name, or _default for the service default"


def register(commands: Commands) -> None:
    """Add this group's commands."""
    sub = commands.add(
        "validate", cmd_validate, "check policy files (- for stdin), each alone", consul=False
    )
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.add_argument(
        "--allow-unknown",
        action="store_true",
        help="warn about unknown keys instead of failing (services ignore them)",
    )
    commands.add(
        "schema",
        cmd_schema,
        "print the JSON Schema of a policy document",
        output=False,
        consul=False,
    )
    commands.add("ls", cmd_ls, "list the documents under --path: mode, document, or why invalid")
    sub = commands.add("get", cmd_get, "show a document, its ModifyIndex and its resolved policy")
    sub.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sub = commands.add(
        "put",
        cmd_put,
        "validate FILE (- for stdin) and write it as NAME's policy",
        history="write",
    )
    sub.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sub.add_argument("file", metavar="FILE")
    sub.add_argument("--index", type=index, help=_CAS_HELP)
    sub.add_argument("--create", action="store_true", help="create NAME's document if it has none")
    sub.add_argument(
        "--force",
        action="store_true",
        help="write even with unknown keys, documents it makes invalid, or a concurrent edit",
    )
    sub = commands.add("rm", cmd_rm, "delete NAME's document", history="write")
    sub.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sub.add_argument("--index", type=index, help=_CAS_HELP.replace("write", "delete"))
    sub.add_argument(
        "--force",
        action="store_true",
        help="delete even if it changed meanwhile, is gone, or others depend on it",
    )


def read_input(file: str, stdin: TextIO) -> tuple[str, bytes]:
    """Return a label for ``file`` and its bytes (``-``: stdin); raise OSError."""
    if file == "-":
        buffer = getattr(stdin, "buffer", None)
        return "<stdin>", buffer.read() if buffer is not None else stdin.read().encode()
    with open(file, "rb") as f:
        return file, f.read()


def _lines(problems: Iterable[Problem]) -> str:
    return "; ".join(str(p) for p in problems)


# -- validate, schema ------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace, ctx: Context) -> int:
    """Check policy files on their own; exit 1 naming every error of each invalid one."""
    results: list[dict[str, Any]] = []
    for file in args.files:
        try:
            label, raw = read_input(file, ctx.stdin)
        except OSError as exc:
            error = Problem(None, f"cannot read the file: {exc.strerror}")
            results.append({"file": file, "label": file, "errors": [error], "warnings": []})
            continue
        doc, problems = judge_alone(raw)
        unknown = list(doc.unknown_problems())
        errors = [*problems, *([] if args.allow_unknown else unknown)]
        warnings = unknown if args.allow_unknown else []
        results.append({"file": file, "label": label, "errors": errors, "warnings": warnings})
    if args.json:
        ctx.out(
            dump(
                [
                    {
                        "file": r["file"],
                        "valid": not r["errors"],
                        "errors": [e.to_dict() for e in r["errors"]],
                        "warnings": [str(w) for w in r["warnings"]],
                    }
                    for r in results
                ]
            )
        )
    else:
        for result in results:
            label = result["label"]
            for warning in result["warnings"]:
                ctx.err(f"warning: {label}: {warning}")
            if not result["errors"]:
                ctx.out(f"{label}: OK")
            elif result["errors"][0].message.startswith("cannot read the file"):
                ctx.out(f"{label}: UNREADABLE: {result['errors'][0]}")
            else:
                for error in result["errors"]:
                    ctx.out(f"{label}: INVALID: {error}")
    return EXIT_INVALID if any(r["errors"] for r in results) else EXIT_OK


def policy_schema() -> str:
    """Return the JSON Schema of a policy document, as shipped in the package."""
    return importlib.resources.files("breaker").joinpath("policy.schema.json").read_text("utf-8")


def cmd_schema(args: argparse.Namespace, ctx: Context) -> int:
    """Print the JSON Schema of a policy document."""
    ctx.stdout.write(policy_schema())
    return EXIT_OK


# -- ls, get ---------------------------------------------------------------------------------


def default_note(layers: Layers) -> str | None:
    """Return a warning when ``_default.json`` is invalid: what the others are judged on."""
    found = layers.invalid.get(DEFAULT_DOCUMENT)
    if found is None:
        return None
    return (
        f"{SERVICE_DEFAULT} is invalid ({_lines(found.problems)}); documents are checked "
        "against the built-in defaults, the services against their last good service default"
    )


def entry_json(layers: Layers, name: str, doc: Document) -> dict[str, Any]:
    """Return what ``ls --json`` and ``get --json`` say of one document."""
    found = layers.invalid.get(name)
    resolution = layers.default if name == DEFAULT_DOCUMENT else layers.resolved.get(name)
    if resolution is None:
        resolution = layers.default
    return {
        "name": name,
        "key": layers.key(name),
        "service_default": name == DEFAULT_DOCUMENT,
        "valid": found is None,
        "problems": [] if found is None else [p.to_dict() for p in found.problems],
        "unknown_keys": list(doc.unknown),
        "document": document_json(doc),
        "policy": None if found is not None else resolution.policy.to_dict(),
        "mode": mode_text(layers, resolution),
    }


def _row_mode(layers: Layers, name: str, doc: Document) -> tuple[str, str]:
    found = layers.invalid.get(name)
    if found is not None:
        return "INVALID", f"{_lines(found.problems)} ({services_keep(doc)})"
    resolution = layers.default if name == DEFAULT_DOCUMENT else layers.resolved[name]
    return mode_text(layers, resolution), describe(doc)


def cmd_ls(args: argparse.Namespace, ctx: Context) -> int:
    """List the policy documents under a prefix: mode, document, or why it is invalid."""
    with Client(args, ctx) as client:
        layers = layered(client.snapshot(), client.prefix, ctx)
    docs = layers.documents()
    names = sorted(docs, key=lambda n: (n != DEFAULT_DOCUMENT, n))
    if args.json:
        ctx.out(dump([entry_json(layers, n, docs[n]) for n in names]))
    elif not docs:
        ctx.out(f"no policy documents under {client.prefix}")
    else:
        rows = [("NAME", "MODE", "DOCUMENT")]
        for name in names:
            shown = name + (" (service default)" if name == DEFAULT_DOCUMENT else "")
            rows.append((shown, *_row_mode(layers, name, docs[name])))
        widths = [max(len(row[i]) for row in rows) for i in (0, 1)]
        for row in rows:
            ctx.out(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip())
    note = default_note(layers)
    if note and not args.json:
        ctx.err(f"warning: {note}")
    return EXIT_INVALID if layers.invalid else EXIT_OK


def cmd_get(args: argparse.Namespace, ctx: Context) -> int:
    """Show one document, its ModifyIndex and the policy it resolves to."""
    name = checked_name(args.name)
    with Client(args, ctx) as client:
        found = client.get(name)
        if found is None:
            uses = f"a breaker called {args.name!r} uses the service default"
            if name == DEFAULT_DOCUMENT:
                uses = "breakers without a document use the code's default policy"
            raise CLIError(f"no document at {client.key(name)}; {uses}", EXIT_INVALID)
        snapshot = client.snapshot()
    raw, modify_index = found
    key = client.key(name)
    snapshot[key] = raw  # judged as read, whatever changed in between
    layers = layered(snapshot, client.prefix, ctx)
    doc = layers.documents()[name]
    entry = entry_json(layers, name, doc)
    if args.json:
        entry["modify_index"] = modify_index
        ctx.out(dump(entry))
        return EXIT_OK if entry["valid"] else EXIT_INVALID
    notes = [unknown_keys_message(doc.unknown)] if doc.unknown else []
    note = default_note(layers) if name != DEFAULT_DOCUMENT else None
    for warning in [*notes, *([note] if note else [])]:
        ctx.err(f"warning: {warning}")
    ctx.out(f"key:          {key}")
    ctx.out(f"modify index: {modify_index}")
    if entry["valid"]:
        ctx.out(f"mode:         {entry['mode']}")
    ctx.out("document:")
    ctx.out(dump(doc.value) if entry["document"] is doc.value else entry["document"])
    invalid = layers.invalid.get(name)
    if invalid is not None:
        ctx.out(f"INVALID: {_lines(invalid.problems)} ({services_keep(doc)})")
        return EXIT_INVALID
    where = "the code's defaults"
    if name != DEFAULT_DOCUMENT:
        where = f"{SERVICE_DEFAULT} and " + where
    ctx.out(f"policy (with {where}):")
    ctx.out(dump(entry["policy"]))
    return EXIT_OK


# -- put, rm ---------------------------------------------------------------------------------


def print_change(
    ctx: Context,
    args: argparse.Namespace,
    action: str,
    key: str,
    old: Document | None,
    new: Document | None,
    previous_index: int | None,
    *,
    until: str | None = None,
    note: str = "",
    extra: dict[str, Any] | None = None,
    lines: Iterable[str] = (),
) -> None:
    """Print what a write did: a headline, then one ``key: old -> new`` line per change."""
    if args.json:
        ctx.out(
            dump(
                {
                    "action": action,
                    "key": key,
                    "previous_index": previous_index,
                    "changes": change_json(old, new),
                    **({"until": until} if until else {}),
                    **(extra or {}),
                }
            )
        )
        return
    ctx.out(
        f"{action} {key}" + (f" until {until}" if until else "") + (f" ({note})" if note else "")
    )
    for line in [*change_lines(old, new), *lines]:
        ctx.out(f"  {line}")


def refused(key: str, read: int | None, done: str = "written") -> CLIError:
    """Return the refusal of a write that lost its check-and-set."""
    what = "was created" if read is None else f"changed after it was read at ModifyIndex {read}"
    return CLIError(
        f"refused: {key} {what} (a concurrent edit); nothing {done}. Read it again with "
        "`breaker get`, or use --force.",
        EXIT_INVALID,
    )


def _moved(key: str, at: int | None, expected: int, done: str) -> CLIError:
    where = "does not exist" if at is None else f"is at ModifyIndex {at}"
    return CLIError(
        f"refused: {key} {where}, not {expected} (it changed since you read it); nothing "
        f"{done}. Read it again with `breaker get`, or use --force.",
        EXIT_INVALID,
    )


def broken_by(before: Layers, after: Layers) -> dict[str, tuple[Problem, ...]]:
    """Return the documents that a change of ``_default.json`` makes invalid, and why."""
    return {
        name: found.problems
        for name, found in after.invalid.items()
        if name != DEFAULT_DOCUMENT and name not in before.invalid
    }


def _breakage(doing: str, key: str, broken: dict[str, tuple[Problem, ...]], done: str) -> str:
    listed = ", ".join(f"{name} ({_lines(problems)})" for name, problems in sorted(broken.items()))
    return (
        f"refused: {doing} {key} would make these documents invalid: {listed}; nothing "
        f"{done}. Fix them first, or use --force."
    )


def cmd_put(args: argparse.Namespace, ctx: Context) -> int:
    """Validate a document and write it with check-and-set; print what changed."""
    name = checked_name(args.name)
    prefix_of(args.path)  # a usage error before anything else
    try:
        label, raw = read_input(args.file, ctx.stdin)
    except OSError as exc:
        raise CLIError(f"cannot read {args.file}: {exc.strerror}", EXIT_INVALID) from None
    new, problems = judge_alone(raw)
    if problems:  # before any request: an invalid document never needs Consul
        raise CLIError(f"{label}: INVALID: {_lines(problems)}; nothing written", EXIT_INVALID)
    unknown = new.unknown_problems()
    if unknown and not args.force:
        raise CLIError(
            f"{label}: {_lines(unknown)}; nothing written (services would ignore it). Correct "
            "it, or use --force to write it anyway.",
            EXIT_INVALID,
        )
    for problem in unknown:
        ctx.err(f"warning: {label}: {problem}")
    with Client(args, ctx) as client:
        key = client.key(name)
        current = client.get(name)
        snapshot = client.snapshot()
        at = None if current is None else current[1]
        if current is None and not (args.create or args.index == 0):
            raise client.missing(name, snapshot, "written")
        if args.index is not None and not args.force and args.index != (at or 0):
            raise _moved(key, at, args.index, "written")
        old = None if current is None else judge(current[0])
        if current is not None:
            snapshot[key] = current[0]
        before = layered(snapshot, client.prefix, ctx)
        after = layered({**snapshot, key: raw}, client.prefix, ctx)
        if name != DEFAULT_DOCUMENT:
            note = default_note(before)
            if note:
                ctx.err(f"warning: {note}")
            found = after.invalid.get(name)
            if found is not None:
                raise CLIError(
                    f"{label}: INVALID: {_lines(found.problems)}; nothing written", EXIT_INVALID
                )
        else:
            broken = broken_by(before, after)
            if broken and not args.force:
                raise CLIError(_breakage("writing", key, broken, "written"), EXIT_INVALID)
            for other, why in sorted(broken.items()):
                ctx.err(f"warning: {other} is invalid now ({_lines(why)})")
        if current is not None and current[0] == raw:
            print_change(ctx, args, "unchanged", key, old, new, at, note="same content")
            return EXIT_OK
        if client.change(name, raw, before=current, cas=not args.force, action="put") is None:
            raise refused(key, at)
    print_change(ctx, args, "created" if current is None else "updated", key, old, new, at)
    return EXIT_OK


def cmd_rm(args: argparse.Namespace, ctx: Context) -> int:
    """Delete a document with check-and-set (its breaker falls back to the service default)."""
    name = checked_name(args.name)
    with Client(args, ctx) as client:
        key = client.key(name)
        current = client.get(name)
        if current is None:
            if args.force:
                print_change(ctx, args, "unchanged", key, None, None, None, note="no such document")
                return EXIT_OK
            raise CLIError(f"no document at {key}; nothing deleted", EXIT_INVALID)
        raw, at = current
        if args.index is not None and not args.force and args.index != at:
            raise _moved(key, at, args.index, "deleted")
        if name == DEFAULT_DOCUMENT and not args.force:
            snapshot = client.snapshot()
            snapshot[key] = raw
            before = layered(snapshot, client.prefix, ctx)
            del snapshot[key]
            broken = broken_by(before, layered(snapshot, client.prefix, ctx))
            if broken:
                raise CLIError(_breakage("deleting", key, broken, "deleted"), EXIT_INVALID)
        if client.change(name, None, before=current, cas=not args.force, action="rm") is None:
            raise refused(key, at, "deleted")
    print_change(ctx, args, "deleted", key, judge(raw), None, at)
    return EXIT_OK
