"""``history NAME`` and ``rollback NAME``: what the CLI changed, by whom and why; undo it."""

from __future__ import annotations

import argparse
from typing import Any

import attrs

from breaker._cli._app import EXIT_INVALID, EXIT_OK, CLIError, Commands, Context
from breaker._cli._client import Client, checked_name, layered
from breaker._cli._documents import broken_by, print_change, refused
from breaker._cli._journal import Entry
from breaker._cli._output import change_json, change_lines, document_json, dump
from breaker._layers import Document, judge, judge_alone
from breaker._names import DEFAULT_DOCUMENT

_NAME_HELP = "breaker name, or _default for the service default"


def register(commands: Commands) -> None:
    """Add this group's commands."""
    sub = commands.add(
        "history",
        cmd_history,
        "list the changes made to NAME's document, newest first, and those made elsewhere",
        history="read",
    )
    sub.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sub = commands.add(
        "rollback",
        cmd_rollback,
        "write back NAME's document as it was before its latest (or a chosen) change",
        history="write",
    )
    sub.add_argument("name", metavar="NAME", help=_NAME_HELP)
    sub.add_argument(
        "--to",
        type=_entry_id,
        metavar="ENTRY",
        help="the entry (#N in `breaker history`) whose change to undo, and every later one",
    )
    sub.add_argument(
        "--force",
        action="store_true",
        help="write even if the document changed outside the CLI, meanwhile, or would be invalid",
    )


def _entry_id(text: str) -> int:
    try:
        value = int(text.lstrip("#"))
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected an entry number (#N in `breaker history`), got {text!r}"
        )
    return value


@attrs.frozen
class Outside:
    """A change made outside the CLI: the document's ModifyIndex moved without an entry."""

    index: int | None
    """Where the last entry left the document (None: absent)."""
    modify_index: int | None
    """Where the next entry found it, or where it is now (None: absent)."""
    before: bytes | None
    after: bytes | None


Event = Entry | Outside


def timeline(entries: list[Entry], current: tuple[bytes, int] | None) -> list[Event]:
    """Return the entries, newest first, with the changes made outside the CLI among them.

    Between two entries, the later one's document index is where the earlier one left
    it, unless someone else wrote it in between; after the newest, the document is
    where it left it, unless someone wrote it since.
    """
    events: list[Event] = []
    previous: Entry | None = None
    for entry in entries:
        if previous is not None and entry.index != previous.after_index:
            events.append(Outside(previous.after_index, entry.index, previous.after, entry.before))
        events.append(entry)
        previous = entry
    now = None if current is None else current[1]
    if previous is not None and now != previous.after_index:
        events.append(Outside(previous.after_index, now, previous.after, current and current[0]))
    return events[::-1]


def _doc(raw: bytes | None) -> Document | None:
    return None if raw is None else judge(raw)


def _json_doc(raw: bytes | None) -> Any:
    return None if raw is None else document_json(judge(raw))


def event_json(event: Event) -> dict[str, Any]:
    """Return what ``history --json`` says of one event."""
    changes = change_json(_doc(event.before), _doc(event.after))
    if isinstance(event, Outside):
        return {
            "id": None,
            "outside": True,
            "index": event.index,
            "modify_index": event.modify_index,
            "before": _json_doc(event.before),
            "after": _json_doc(event.after),
            "changes": changes,
        }
    return {
        "id": event.id,
        "outside": False,
        "action": event.action,
        "at": event.at,
        "by": event.by,
        "reason": event.reason,
        "index": event.index,
        "modify_index": event.after_index,
        "before": _json_doc(event.before),
        "after": _json_doc(event.after),
        "changes": changes,
        **event.extra,
    }


def _index(index: int | None) -> str:
    return "absent" if index is None else str(index)


def event_lines(event: Event) -> list[str]:
    """Return one event as lines for people: a headline, then what changed."""
    if isinstance(event, Outside):
        head = (
            f"!   outside the CLI: ModifyIndex {_index(event.index)} -> "
            f"{_index(event.modify_index)}, no history entry"
        )
    else:
        head = f"#{event.id}  {event.at}  {event.action} by {event.by}"
        if event.reason:
            head += f": {event.reason}"
    changed = change_lines(_doc(event.before), _doc(event.after))
    return [head, *(f"    {line}" for line in changed or ["(the same content, written anew)"])]


def cmd_history(args: argparse.Namespace, ctx: Context) -> int:
    """List the recorded changes of one document, newest first, and those made elsewhere."""
    name = checked_name(args.name)
    with Client(args, ctx) as client:
        key = client.key(name)
        entries, problems = client.journal.entries(name)
        current = client.journal.current(key)
    where = client.journal.entry_prefix(name)
    for problem in problems:
        ctx.err(f"warning: skipping {problem}")
    if not entries and current is None:
        raise CLIError(f"no document at {key} and no history under {where}", EXIT_INVALID)
    events = timeline(entries, current)
    now = None if current is None else current[1]
    if args.json:
        ctx.out(
            dump(
                {
                    "name": name,
                    "key": key,
                    "history": where,
                    "modify_index": now,
                    "changed_outside": bool(events) and isinstance(events[0], Outside),
                    "events": [event_json(e) for e in events],
                }
            )
        )
        return EXIT_OK
    count = f"{len(entries)} entr" + ("y" if len(entries) == 1 else "ies")
    ctx.out(f"{key}: ModifyIndex {_index(now)}; {count} under {where}")
    for event in events:
        for line in event_lines(event):
            ctx.out(line)
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace, ctx: Context) -> int:
    """Write back the document as it was before the latest (or the chosen) recorded change."""
    name = checked_name(args.name)
    with Client(args, ctx) as client:
        key = client.key(name)
        entries, problems = client.journal.entries(name)
        for problem in problems:
            ctx.err(f"warning: skipping {problem}")
        where = client.journal.entry_prefix(name)
        if not entries:
            raise CLIError(f"no history of {key} under {where}; nothing to roll back", EXIT_INVALID)
        target = entries[-1]
        if args.to is not None:
            found = [e for e in entries if e.id == args.to]
            if not found:
                raise CLIError(
                    f"no entry #{args.to} in the history of {key} (it holds #{entries[0].id} to "
                    f"#{entries[-1].id}); nothing written",
                    EXIT_INVALID,
                )
            target = found[0]
        current = client.get(name)
        at = None if current is None else current[1]
        latest = entries[-1]
        if at != latest.after_index and not args.force:
            raise CLIError(
                f"refused: {key} changed outside the CLI since #{latest.id} (ModifyIndex "
                f"{_index(latest.after_index)} -> {_index(at)}), and rolling back would undo "
                f"that unseen; nothing written. See `breaker history {args.name}`, or use --force.",
                EXIT_INVALID,
            )
        restore = target.before
        old = None if current is None else judge(current[0])
        new = _doc(restore)
        note = f"to before #{target.id}"
        if (current and current[0]) == restore:
            print_change(
                ctx, args, "unchanged", key, old, new, at, note=f"already as before #{target.id}"
            )
            return EXIT_OK
        if not args.force:
            _check(client, ctx, name, key, current, restore, target)
        if (
            client.change(
                name,
                restore,
                before=current,
                cas=not args.force,
                action="rollback",
                extra={"to": target.id},
            )
            is None
        ):
            raise refused(key, at)
    print_change(ctx, args, "rolled back", key, old, new, at, note=note, extra={"to": target.id})
    return EXIT_OK


def _check(
    client: Client,
    ctx: Context,
    name: str,
    key: str,
    current: tuple[bytes, int] | None,
    restore: bytes | None,
    target: Entry,
) -> None:
    """Refuse a rollback that the services would not take, or that breaks other documents."""
    what = f"the document before #{target.id}"
    if restore is not None:
        doc, problems = judge_alone(restore)
        if problems:
            raise CLIError(
                f"refused: {what} is invalid ({'; '.join(map(str, problems))}); nothing written. "
                "Use --force to write it anyway.",
                EXIT_INVALID,
            )
        for problem in doc.unknown_problems():
            ctx.err(f"warning: {what}: {problem}")
    snapshot = client.snapshot()
    if current is not None:
        snapshot[key] = current[0]
    before = layered(snapshot, client.prefix, ctx)
    if restore is None:
        snapshot.pop(key, None)
    else:
        snapshot[key] = restore
    after = layered(snapshot, client.prefix, ctx)
    if name == DEFAULT_DOCUMENT:
        broken = broken_by(before, after)
        if broken:
            listed = ", ".join(f"{n} ({'; '.join(map(str, p))})" for n, p in sorted(broken.items()))
            raise CLIError(
                f"refused: rolling back {key} would make these documents invalid: {listed}; "
                "nothing written. Fix them first, or use --force.",
                EXIT_INVALID,
            )
        return
    found = after.invalid.get(name)
    if found is not None and restore is not None:
        raise CLIError(
            f"refused: {what} does not apply now ({'; '.join(map(str, found.problems))}); "
            "nothing written. Use --force to write it anyway.",
            EXIT_INVALID,
        )
