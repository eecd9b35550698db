"""The operators' CLI (``breaker``, ``python -m breaker``): check, read and change policies.

Every command that talks to Consul resolves the agent as `ConsulCoord` does (the consul
CLI's environment; ``--addr``, ``--token`` and friends win) and imports the Consul coord
only when it runs: ``validate`` and ``schema`` work without the Consul extra.

Exit status: 0 success; 1 an invalid document, or a refused or impossible change (a
concurrent edit, no such document); 2 a usage error; 3 any other error (Consul unreachable,
permission denied, bad connection settings). Writes use Consul's check-and-set, so an edit
made by someone else since the document was read is never silently overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.resources
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from breaker._duration import parse_go_duration
from breaker._exceptions import CoordError, PolicyError
from breaker._policy import Policy, decode_document, format_timestamp
from breaker._provider import DEFAULT_DOCUMENT, Config, policy_name
from breaker._state import Mode

if TYPE_CHECKING:
    from breaker.coord._base import CoordHealth, Snapshot
    from breaker.coord.consul import ConsulCoord

__all__ = ["EXIT_ERROR", "EXIT_INVALID", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_INVALID = 1
"""An invalid document, or a refused change (a concurrent edit, no such document)."""
EXIT_USAGE = 2
EXIT_ERROR = 3
"""Anything else: Consul unreachable, permission denied, bad connection settings."""

Now = Callable[[], datetime]

_SUFFIX = ".json"
_ATTEMPTS = 3  # read-modify-write rounds for force-open and release before giving up
_HEALTH_POLL = 0.2  # seconds between looks at the watch's health
_ABSENT = "(absent)"
_CONSUL_OPTIONS = (
    "token",
    "token_file",
    "ca_file",
    "ca_path",
    "client_cert",
    "client_key",
    "datacenter",
)
_EPILOG = """\
exit status: 0 success; 1 an invalid document, or a refused or impossible change (a
concurrent edit, no such document); 2 a usage error; 3 any other error (Consul unreachable,
permission denied, bad connection settings)."""


class CLIError(Exception):
    """Raise to end a command with ``message`` on stderr and exit status ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class _Context:
    """What a command reads and writes besides its arguments; tests replace each part."""

    now: Now
    stop: threading.Event
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO

    def out(self, text: str = "", *, flush: bool = False) -> None:
        """Print a line of the command's result."""
        print(text, file=self.stdout, flush=flush)

    def err(self, text: str) -> None:
        """Print a line for the operator: a warning, an error, the watch's news."""
        print(text, file=self.stderr, flush=True)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


# -- documents -------------------------------------------------------------------------------


@attrs.frozen
class Checked:
    """One policy document and the verdict on it."""

    raw: bytes
    is_json: bool = False
    value: Any = None
    """The decoded JSON (meaningful when ``is_json``)."""
    policy: Policy | None = None
    """The policy it resolves to; None when it is invalid."""
    error: str | None = None
    warnings: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        """Say whether the document passed."""
        return self.error is None


@contextlib.contextmanager
def _policy_warnings() -> Iterator[list[str]]:
    """Collect the warnings `Policy` logs in this thread (unknown keys) instead of logging them."""
    found: list[str] = []
    me = threading.get_ident()

    def keep(record: logging.LogRecord) -> bool:
        if record.thread == me and record.levelno >= logging.WARNING:
            found.append(record.getMessage())
            return False
        return True

    logger = logging.getLogger("breaker.policies")
    logger.addFilter(keep)
    try:
        yield found
    finally:
        logger.removeFilter(keep)


def _parse(value: Any, base: Policy | None) -> tuple[Policy | None, str | None]:
    try:
        return Policy.from_dict(value, base=base), None
    except PolicyError as exc:
        return None, str(exc)


def check(raw: bytes, *, base: Policy | None = None, strict: bool = True) -> Checked:
    """Judge ``raw`` as the services will: on top of ``base``, the service default.

    ``strict`` also holds it on its own (with the code's defaults), as ``validate`` and
    the schema do, so that a document that is written stays valid when the service
    default changes. An error that only ``base`` causes says so.
    """
    try:
        value = decode_document(raw)
    except PolicyError as exc:
        return Checked(raw, error=str(exc))
    with _policy_warnings() as warnings:
        policy, alone = _parse(value, None)
        error = alone
        if base is not None:
            policy, on_base = _parse(value, base)
            if on_base is None:
                error = alone if strict else None
            elif alone is None:
                error = f"on top of {DEFAULT_DOCUMENT}{_SUFFIX}: {on_base}"
    return Checked(
        raw,
        is_json=True,
        value=value,
        policy=None if error else policy,
        error=error,
        warnings=tuple(dict.fromkeys(warnings)),  # a second parse warns again
    )


_MISSING: Any = object()


def _show(value: Any) -> str:
    return _ABSENT if value is _MISSING else _compact(value)


def _same(a: Any, b: Any) -> bool:
    # 1, 1.0 and true are equal in Python and different documents.
    return a is b or (a is not _MISSING and b is not _MISSING and json.dumps(a) == json.dumps(b))


def _describe_document(doc: Checked | None) -> str:
    if doc is None:
        return _ABSENT
    if doc.is_json:
        return _compact(doc.value)
    text = doc.raw.decode("utf-8", "replace")
    return f"(not JSON: {text[:60]!r})"


def changes(old: Checked | None, new: Checked | None) -> list[tuple[str | None, Any, Any]]:
    """Return what changed between two documents: (key, old, new), ``_MISSING`` for absent.

    Two JSON objects are compared key by key; anything else, and an empty object that
    appears or goes, as a whole (key None).
    """
    old_obj = old is None or (old.is_json and isinstance(old.value, dict))
    new_obj = new is None or (new.is_json and isinstance(new.value, dict))
    if not (old_obj and new_obj):
        if old is not None and new is not None and old.raw == new.raw:
            return []
        return [(None, old, new)]
    a: dict[str, Any] = {} if old is None else old.value
    b: dict[str, Any] = {} if new is None else new.value
    found: list[tuple[str | None, Any, Any]] = []
    for key in [*a, *(k for k in b if k not in a)]:
        before, after = a.get(key, _MISSING), b.get(key, _MISSING)
        if not _same(before, after):
            found.append((key, before, after))
    if not found and (old is None) != (new is None):
        return [(None, old, new)]
    return found


def change_lines(old: Checked | None, new: Checked | None) -> list[str]:
    """Return the changes between two documents as ``key: old -> new`` lines."""
    lines = []
    for key, before, after in changes(old, new):
        if key is None:
            lines.append(f"{_describe_document(before)} -> {_describe_document(after)}")
        else:
            lines.append(f"{key}: {_show(before)} -> {_show(after)}")
    return lines


def change_json(old: Checked | None, new: Checked | None) -> list[dict[str, Any]]:
    """Return the changes as JSON objects; ``old``/``new`` are left out when absent."""
    found = []
    for key, before, after in changes(old, new):
        entry: dict[str, Any] = {"key": key}
        if key is None:
            before = _MISSING if before is None else _document_json(before)
            after = _MISSING if after is None else _document_json(after)
        if before is not _MISSING:
            entry["old"] = before
        if after is not _MISSING:
            entry["new"] = after
        found.append(entry)
    return found


def _document_json(doc: Checked | None) -> Any:
    if doc is None:
        return None
    return doc.value if doc.is_json else doc.raw.decode("utf-8", "replace")


def effective_mode(policy: Policy, now: datetime) -> str:
    """Return the mode a breaker with ``policy`` is in at ``now``, and until when."""
    until = policy.mode_until
    if policy.mode is Mode.AUTO:
        return str(Mode.AUTO)
    if until is None:
        return str(policy.mode)
    if until <= now:
        return f"auto ({policy.mode.value} ended {format_timestamp(until)})"
    return f"{policy.mode.value} until {format_timestamp(until)}"


# -- keys and Consul ---------------------------------------------------------------------------


def _prefix(path: str) -> str:
    try:
        return Config(service_name="breaker-cli", policies_path=path).prefix
    except ValueError as exc:
        raise CLIError(str(exc).replace("Config.policies_path", "--path"), EXIT_USAGE) from None


def _key(prefix: str, name: str) -> str:
    stem = policy_name(name)
    parts = stem.split("/")
    if not stem or "" in parts or any(part in (".", "..") for part in parts):
        raise CLIError(
            f"{name!r} is not a breaker name (no empty, '.' or '..' part between slashes)",
            EXIT_USAGE,
        )
    return prefix + stem + _SUFFIX


def _connect(args: argparse.Namespace) -> ConsulCoord:
    try:
        from breaker.coord.consul import ConsulCoord
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    options = {name: getattr(args, name) for name in _CONSUL_OPTIONS if getattr(args, name)}
    try:
        if args.timeout is not None:
            return ConsulCoord(args.addr, timeout=args.timeout, **options)
        return ConsulCoord(args.addr, **options)
    except ValueError as exc:
        raise CLIError(f"Consul settings: {exc}") from None


@contextlib.contextmanager
def _consul(args: argparse.Namespace) -> Iterator[ConsulCoord]:
    coord = _connect(args)
    try:
        yield coord
    finally:
        coord.close()


def _policy_documents(snapshot: Snapshot, prefix: str) -> dict[str, bytes]:
    """Return the ``<name>.json`` documents under ``prefix`` by name, as the provider reads them."""
    found = {}
    for key, value in snapshot.items():
        if key.startswith(prefix) and key.endswith(_SUFFIX):
            name = key[len(prefix) : -len(_SUFFIX)]
            if name:
                found[name] = value
    return found


def _base_of(default: Checked | None) -> tuple[Policy | None, str | None]:
    """Return the base for breaker documents, and a warning when ``_default.json`` is invalid."""
    if default is None:
        return None, None
    if default.policy is None:
        return None, (
            f"{DEFAULT_DOCUMENT}{_SUFFIX} is invalid ({default.error}); documents are checked "
            "against the code's defaults, the services against their last good service default"
        )
    return default.policy, None


def _check_named(name: str, raw: bytes, base: Policy | None, *, strict: bool) -> Checked:
    """Judge the document of ``name``: the service default itself stands on the code's."""
    if policy_name(name) == DEFAULT_DOCUMENT:
        return check(raw)
    return check(raw, base=base, strict=strict)


def _service_default(coord: ConsulCoord, prefix: str) -> Checked | None:
    found = coord.get(prefix + DEFAULT_DOCUMENT + _SUFFIX)
    return None if found is None else check(found[0])


# -- commands ----------------------------------------------------------------------------------


def _read_input(file: str, stdin: TextIO) -> tuple[str, bytes]:
    """Return a label for ``file`` and its bytes (``-``: stdin); raise OSError."""
    if file == "-":
        stream = stdin
        buffer = getattr(stream, "buffer", None)
        return "<stdin>", buffer.read() if buffer is not None else stream.read().encode()
    with open(file, "rb") as f:
        return file, f.read()


def cmd_validate(args: argparse.Namespace, ctx: _Context) -> int:
    """Check policy files; exit 1 naming each invalid one."""
    results: list[tuple[str, str, Checked | None, str | None]] = []
    for file in args.files:
        try:
            label, raw = _read_input(file, ctx.stdin)
        except OSError as exc:
            results.append((file, file, None, f"cannot read the file: {exc.strerror}"))
            continue
        checked = check(raw)
        results.append((file, label, checked, checked.error))
    if args.json:
        ctx.out(
            _dump(
                [
                    {
                        "file": file,
                        "valid": error is None,
                        "error": error,
                        "warnings": doc.warnings if doc else [],
                    }
                    for file, _, doc, error in results
                ]
            )
        )
    else:
        for _, label, doc, error in results:
            if doc is None:
                ctx.out(f"{label}: UNREADABLE: {error}")
                continue
            for warning in doc.warnings:
                ctx.err(f"warning: {label}: {warning}")
            ctx.out(f"{label}: OK" if error is None else f"{label}: INVALID: {error}")
    return EXIT_INVALID if any(error for *_, error in results) else EXIT_OK


def policy_schema() -> str:
    """Return the JSON Schema of a policy document, as shipped in the package."""
    return importlib.resources.files("breaker").joinpath("policy.schema.json").read_text("utf-8")


def cmd_schema(args: argparse.Namespace, ctx: _Context) -> int:
    """Print the JSON Schema of a policy document."""
    ctx.stdout.write(policy_schema())
    return EXIT_OK


def _entry_json(name: str, key: str, doc: Checked, now: datetime) -> dict[str, Any]:
    return {
        "name": name,
        "key": key,
        "service_default": name == DEFAULT_DOCUMENT,
        "valid": doc.valid,
        "error": doc.error,
        "warnings": doc.warnings,
        "document": _document_json(doc),
        "policy": doc.policy.to_dict() if doc.policy else None,
        "mode": effective_mode(doc.policy, now) if doc.policy else None,
    }


def cmd_ls(args: argparse.Namespace, ctx: _Context) -> int:
    """List the policy documents under a prefix: mode, document, or why it is invalid."""
    prefix = _prefix(args.path)
    with _consul(args) as coord:
        raw = _policy_documents(coord.load(prefix), prefix)
    now = ctx.now()
    default = check(raw[DEFAULT_DOCUMENT]) if DEFAULT_DOCUMENT in raw else None
    base, note = _base_of(default)
    docs = {}
    for name in sorted(raw, key=lambda n: (n != DEFAULT_DOCUMENT, n)):
        docs[name] = _check_named(name, raw[name], base, strict=False)
    if args.json:
        ctx.out(_dump([_entry_json(n, prefix + n + _SUFFIX, d, now) for n, d in docs.items()]))
    elif not docs:
        ctx.out(f"no policy documents under {prefix}")
    else:
        rows = [("NAME", "MODE", "DOCUMENT")]
        for name, doc in docs.items():
            shown = name + (" (service default)" if name == DEFAULT_DOCUMENT else "")
            if doc.policy is None:
                rows.append(
                    (shown, "INVALID", f"{doc.error} (services keep their last good policy)")
                )
            else:
                rows.append((shown, effective_mode(doc.policy, now), _describe_document(doc)))
        widths = [max(len(row[i]) for row in rows) for i in (0, 1)]
        for row in rows:
            ctx.out(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}".rstrip())
    if note and not args.json:
        ctx.err(f"warning: {note}")
    return EXIT_INVALID if any(not d.valid for d in docs.values()) else EXIT_OK


def cmd_get(args: argparse.Namespace, ctx: _Context) -> int:
    """Show one document, its ModifyIndex and the policy it resolves to."""
    prefix = _prefix(args.path)
    key = _key(prefix, args.name)
    with _consul(args) as coord:
        found = coord.get(key)
        if found is None:
            uses = f"a breaker called {args.name!r} uses the service default"
            if policy_name(args.name) == DEFAULT_DOCUMENT:
                uses = "breakers without a document use the code's default policy"
            raise CLIError(f"no document at {key}; {uses}", EXIT_INVALID)
        raw, index = found
        note = None
        if policy_name(args.name) == DEFAULT_DOCUMENT:
            doc = check(raw)
        else:
            base, note = _base_of(_service_default(coord, prefix))
            doc = check(raw, base=base, strict=False)
    now = ctx.now()
    if args.json:
        entry = _entry_json(policy_name(args.name), key, doc, now)
        entry["modify_index"] = index
        ctx.out(_dump(entry))
        return EXIT_OK if doc.valid else EXIT_INVALID
    for warning in [*doc.warnings, *([note] if note else [])]:
        ctx.err(f"warning: {warning}")
    ctx.out(f"key:          {key}")
    ctx.out(f"modify index: {index}")
    if doc.policy is not None:
        ctx.out(f"mode:         {effective_mode(doc.policy, now)}")
    ctx.out("document:")
    ctx.out(_dump(doc.value) if doc.is_json else doc.raw.decode("utf-8", "replace"))
    if doc.policy is None:
        ctx.out(f"INVALID: {doc.error} (services keep their last good policy)")
        return EXIT_INVALID
    where = "the code's defaults"
    if policy_name(args.name) != DEFAULT_DOCUMENT:
        where = f"{DEFAULT_DOCUMENT}{_SUFFIX} and " + where
    ctx.out(f"policy (with {where}):")
    ctx.out(_dump(doc.policy.to_dict()))
    return EXIT_OK


def _print_change(
    ctx: _Context,
    args: argparse.Namespace,
    action: str,
    key: str,
    old: Checked | None,
    new: Checked | None,
    previous_index: int | None,
    *,
    until: str | None = None,
    note: str = "",
) -> None:
    """Print what a write did: a headline, then one ``key: old -> new`` line per change."""
    if args.json:
        ctx.out(
            _dump(
                {
                    "action": action,
                    "key": key,
                    "previous_index": previous_index,
                    "changes": change_json(old, new),
                    **({"until": until} if until else {}),
                }
            )
        )
        return
    ctx.out(
        f"{action} {key}" + (f" until {until}" if until else "") + (f" ({note})" if note else "")
    )
    for line in change_lines(old, new):
        ctx.out(f"  {line}")


def _refused(key: str, read: int | None, done: str = "written") -> CLIError:
    what = "was created" if read is None else f"changed after it was read at ModifyIndex {read}"
    return CLIError(
        f"refused: {key} {what} (a concurrent edit); nothing {done}. Read it again with "
        "`breaker get`, or use --force.",
        EXIT_INVALID,
    )


def _moved(key: str, index: int | None, expected: int, done: str) -> CLIError:
    where = "does not exist" if index is None else f"is at ModifyIndex {index}"
    return CLIError(
        f"refused: {key} {where}, not {expected} (it changed since you read it); nothing "
        f"{done}. Read it again with `breaker get`, or use --force.",
        EXIT_INVALID,
    )


def cmd_put(args: argparse.Namespace, ctx: _Context) -> int:
    """Validate a document and write it with check-and-set; print what changed."""
    prefix = _prefix(args.path)
    key = _key(prefix, args.name)
    try:
        label, raw = _read_input(args.file, ctx.stdin)
    except OSError as exc:
        raise CLIError(f"cannot read {args.file}: {exc.strerror}", EXIT_INVALID) from None
    new = check(raw)
    for warning in new.warnings:
        ctx.err(f"warning: {label}: {warning}")
    if not new.valid:  # before any request: an invalid document never needs Consul
        raise CLIError(f"{label}: INVALID: {new.error}; nothing written", EXIT_INVALID)
    with _consul(args) as coord:
        if policy_name(args.name) != DEFAULT_DOCUMENT:
            base, note = _base_of(_service_default(coord, prefix))
            if note:
                ctx.err(f"warning: {note}")
            new = check(raw, base=base)
            if not new.valid:
                raise CLIError(f"{label}: INVALID: {new.error}; nothing written", EXIT_INVALID)
        current = coord.get(key)
        index = None if current is None else current[1]
        old = None if current is None else check(current[0])
        if args.index is not None and not args.force and args.index != (index or 0):
            raise _moved(key, index, args.index, "written")
        if current is not None and current[0] == raw:
            _print_change(ctx, args, "unchanged", key, old, new, index, note="same content")
            return EXIT_OK
        cas = None if args.force else (index or 0)
        if not coord.put(key, raw, cas=cas):
            raise _refused(key, index)
    _print_change(ctx, args, "created" if current is None else "updated", key, old, new, index)
    return EXIT_OK


def cmd_rm(args: argparse.Namespace, ctx: _Context) -> int:
    """Delete a document with check-and-set (its breaker falls back to the service default)."""
    prefix = _prefix(args.path)
    key = _key(prefix, args.name)
    with _consul(args) as coord:
        current = coord.get(key)
        if current is None:
            if args.force:
                _print_change(
                    ctx, args, "unchanged", key, None, None, None, note="no such document"
                )
                return EXIT_OK
            raise CLIError(f"no document at {key}; nothing deleted", EXIT_INVALID)
        raw, index = current
        if args.index is not None and not args.force and args.index != index:
            raise _moved(key, index, args.index, "deleted")
        if not coord.delete(key, cas=None if args.force else index):
            raise _refused(key, index, "deleted")
    _print_change(ctx, args, "deleted", key, check(raw), None, index)
    return EXIT_OK


def _dump_like(value: dict[str, Any], raw: bytes | None) -> bytes:
    """Serialise ``value`` in the layout of ``raw``: one line stays one line."""
    if raw is not None and b"\n" not in raw.strip():
        return _compact(value).encode("utf-8")
    return (_dump(value) + "\n").encode("utf-8")


def _set_mode(
    ctx: _Context,
    args: argparse.Namespace,
    update: Callable[[dict[str, Any]], dict[str, Any] | None],
    action: str,
    until: str | None = None,
) -> int:
    """Apply ``update`` to a document with check-and-set, re-reading after a concurrent edit.

    ``update`` returns the new document, or None when there is nothing to change. The
    other keys are kept as they are, and so is an edit made between a read and a write.
    """
    prefix = _prefix(args.path)
    key = _key(prefix, args.name)
    with _consul(args) as coord:
        base, note = None, None
        if policy_name(args.name) != DEFAULT_DOCUMENT:
            base, note = _base_of(_service_default(coord, prefix))
        if note:
            ctx.err(f"warning: {note}")
        for _ in range(_ATTEMPTS):
            current = coord.get(key)
            old = None if current is None else check(current[0])
            if old is not None and not (old.is_json and isinstance(old.value, dict)):
                raise CLIError(
                    f"{key} holds no JSON object ({old.error or 'not an object'}); "
                    "fix it with `breaker put` first",
                    EXIT_INVALID,
                )
            index = None if current is None else current[1]
            document = update(dict(old.value) if old else {})
            if document is None:
                _print_change(
                    ctx, args, "unchanged", key, old, old, index, note="no mode to release"
                )
                return EXIT_OK
            raw = _dump_like(document, None if current is None else current[0])
            new = _check_named(args.name, raw, base, strict=True)
            if not new.valid:
                raise CLIError(
                    f"refused: {key} would be invalid ({new.error}); nothing written. "
                    "Fix it with `breaker put` first.",
                    EXIT_INVALID,
                )
            if coord.put(key, raw, cas=index or 0):
                _print_change(ctx, args, action, key, old, new, index, until=until)
                return EXIT_OK
    raise CLIError(
        f"refused: {key} kept changing while being updated ({_ATTEMPTS} tries); nothing "
        "written. Try again.",
        EXIT_INVALID,
    )


def cmd_force_open(args: argparse.Namespace, ctx: _Context) -> int:
    """Set the kill switch: mode forced-open until now + DURATION, keeping the other keys."""
    try:
        until = ctx.now() + timedelta(seconds=args.duration)
    except OverflowError:
        raise CLIError(f"--for {args.duration:g}s ends after the year 9999", EXIT_USAGE) from None
    if until.microsecond:  # whole seconds read better, and the switch lasts at least DURATION
        until = until.replace(microsecond=0) + timedelta(seconds=1)
    stamp = format_timestamp(until)

    def update(document: dict[str, Any]) -> dict[str, Any]:
        document["mode"] = Mode.FORCED_OPEN.value
        document["modeUntil"] = stamp
        return document

    return _set_mode(ctx, args, update, "forced open", stamp)


def cmd_release(args: argparse.Namespace, ctx: _Context) -> int:
    """Clear the kill switch (and any other mode): remove mode and modeUntil, nothing else."""

    def update(document: dict[str, Any]) -> dict[str, Any] | None:
        if "mode" not in document and "modeUntil" not in document:
            return None
        document.pop("mode", None)
        document.pop("modeUntil", None)
        return document

    return _set_mode(ctx, args, update, "released")


class _HealthReport:
    """Turn a watch's health into one line per change of condition."""

    def __init__(self) -> None:
        self._error: str | None = None

    def lines(self, health: CoordHealth, stamp: str) -> list[str]:
        """Return what to tell the operator about ``health`` (nothing when it is unchanged)."""
        error = None if health.up else health.last_error
        if error == self._error:
            return []
        before, self._error = self._error, error
        if error is None:
            return [f"{stamp}  Consul answers again"] if before else []
        return [f"{stamp}  Consul: {error}; still trying (services keep their policies)"]


def cmd_watch(args: argparse.Namespace, ctx: _Context) -> int:
    """Stream changes to the documents under a prefix until Ctrl-C."""
    prefix = _prefix(args.path)
    coord = _connect(args)
    lock = threading.Lock()
    broken = threading.Event()
    try:
        known = _policy_documents(coord.load(prefix), prefix)
        seen = _judge_all(known)

        def on_change(snapshot: Snapshot) -> None:
            nonlocal known, seen
            with lock:
                current = _policy_documents(snapshot, prefix)
                if current == known:
                    return
                judged = _judge_all(current)
                stamp = format_timestamp(ctx.now().replace(microsecond=0))
                for name in sorted(known.keys() | current.keys()):
                    old, new = seen.get(name), judged.get(name)
                    # An unchanged document counts when a new service default makes it
                    # invalid, or valid again.
                    if known.get(name) == current.get(name) and (
                        old is None or new is None or old.valid == new.valid
                    ):
                        continue
                    try:
                        _event(ctx, args, stamp, prefix, name, old, new)
                    except BrokenPipeError:  # the reader went away: stop as Ctrl-C would
                        broken.set()
                        ctx.stop.set()
                known, seen = current, judged

        count = f"{len(known)} document" + ("" if len(known) == 1 else "s")
        watch = coord.watch(prefix, on_change)
        report = _HealthReport()
        try:
            # Said once the watch runs: from here on, Ctrl-C is the normal way out.
            ctx.err(f"watching {prefix} ({count}); Ctrl-C to stop")
            while not ctx.stop.wait(_HEALTH_POLL):
                stamp = format_timestamp(ctx.now().replace(microsecond=0))
                for line in report.lines(watch.health(), stamp):
                    ctx.err(line)
        except KeyboardInterrupt:
            pass
        finally:
            watch.stop()
    finally:
        coord.close()
    if broken.is_set():
        raise BrokenPipeError
    return EXIT_OK


def _judge_all(documents: dict[str, bytes]) -> dict[str, Checked]:
    """Judge every document as the services do, on top of the service default among them."""
    default = documents.get(DEFAULT_DOCUMENT)
    base, _ = _base_of(None if default is None else check(default))
    return {name: _check_named(name, raw, base, strict=False) for name, raw in documents.items()}


def _event(
    ctx: _Context,
    args: argparse.Namespace,
    stamp: str,
    prefix: str,
    name: str,
    old: Checked | None,
    new: Checked | None,
) -> None:
    kind = "created" if old is None else "deleted" if new is None else "changed"
    if old is not None and new is not None and old.raw == new.raw:
        kind = "revalidated"  # the service default changed under it
    if args.json:
        line = {
            "time": stamp,
            "name": name,
            "key": prefix + name + _SUFFIX,
            "event": kind,
            "changes": change_json(old, new),
            "valid": new is None or new.valid,
            "error": None if new is None else new.error,
        }
        ctx.out(_compact(line), flush=True)
        return
    text = "; ".join(change_lines(old, new)) or "the same keys, written anew"
    flag = "" if new is None or new.valid else f"  INVALID: {new.error}"
    if kind == "revalidated":
        text = f"by the new {DEFAULT_DOCUMENT}{_SUFFIX}" + (flag or "  valid again")
        flag = ""
    ctx.out(f"{stamp}  {name}  {kind}  {text}{flag}", flush=True)


# -- arguments ---------------------------------------------------------------------------------


def _duration(text: str) -> float:
    """Read ``--for`` or ``--timeout``: a Go duration ("15m", "1h30m") or seconds."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parse_go_duration(text) / 1e9
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (use e.g. 15m, 1h30m or 900)") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0, got {text!r}")
    return seconds


def _index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a ModifyIndex (an integer >= 0), got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``breaker`` command."""
    from breaker import __version__

    parser = argparse.ArgumentParser(
        prog="breaker",
        description="Check, read and change the circuit-breaker policies in Consul KV.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"breaker {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    output = argparse.ArgumentParser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON, for scripts")

    consul = argparse.ArgumentParser(add_help=False)
    group = consul.add_argument_group(
        "Consul (each option defaults to the consul CLI's environment variable)"
    )
    group.add_argument("--addr", help="host:port or http(s)://host:port (CONSUL_HTTP_ADDR)")
    group.add_argument("--token", help="ACL token (CONSUL_HTTP_TOKEN); --token-file hides it")
    group.add_argument("--token-file", help="file holding the ACL token (CONSUL_HTTP_TOKEN_FILE)")
    group.add_argument("--ca-file", help="CA file to verify Consul with (CONSUL_CACERT)")
    group.add_argument("--ca-path", help="folder of CA files (CONSUL_CAPATH)")
    group.add_argument("--client-cert", help="client certificate (CONSUL_CLIENT_CERT)")
    group.add_argument("--client-key", help="client key (CONSUL_CLIENT_KEY)")
    group.add_argument("--datacenter", help="datacenter to use (default: the agent's)")
    group.add_argument(
        "--timeout",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="give up on a request after this long (default 5s; a slow link wants more)",
    )
    consul.add_argument(
        "--path",
        required=True,
        metavar="PREFIX",
        help="the services' policies_path, e.g. /config/dev/checkout/breakers/",
    )

    def command(
        name: str, run: Callable[[argparse.Namespace, _Context], int], help: str, *parents: Any
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=list(parents))
        sub.set_defaults(run=run)
        return sub

    sub = command("validate", cmd_validate, "check policy files (- for stdin)", output)
    sub.add_argument("files", nargs="+", metavar="FILE")
    command("schema", cmd_schema, "print the JSON Schema of a policy document")
    command("ls", cmd_ls, "list the breakers and their policies under --path", output, consul)
    sub = command(
        "get", cmd_get, "show a document, its ModifyIndex and its resolved policy", output, consul
    )
    sub.add_argument("name", metavar="NAME", help="breaker name, or _default for the service")
    cas_help = (
        "write only if the document's ModifyIndex is still INDEX (from `breaker get`; "
        "0: only if it does not exist)"
    )
    sub = command(
        "put", cmd_put, "validate FILE (- for stdin) and write it as NAME's policy", output, consul
    )
    sub.add_argument("name", metavar="NAME", help="breaker name, or _default for the service")
    sub.add_argument("file", metavar="FILE")
    sub.add_argument("--index", type=_index, help=cas_help)
    sub.add_argument("--force", action="store_true", help="write even if it changed meanwhile")
    sub = command("rm", cmd_rm, "delete NAME's document", output, consul)
    sub.add_argument("name", metavar="NAME", help="breaker name, or _default for the service")
    sub.add_argument("--index", type=_index, help=cas_help.replace("write", "delete"))
    sub.add_argument(
        "--force", action="store_true", help="delete even if it changed meanwhile, or is gone"
    )
    sub = command(
        "force-open", cmd_force_open, "reject every call of NAME for a while", output, consul
    )
    sub.add_argument("name", metavar="NAME", help="breaker name, or _default for the service")
    sub.add_argument(
        "--for",
        dest="duration",
        required=True,
        type=_duration,
        metavar="DURATION",
        help="how long: a Go duration (15m, 1h30m) or seconds; then auto again by itself",
    )
    sub = command("release", cmd_release, "end NAME's kill switch (or other mode)", output, consul)
    sub.add_argument("name", metavar="NAME", help="breaker name, or _default for the service")
    command("watch", cmd_watch, "print changes under --path as they happen", output, consul)
    return parser


def _fail(ctx: _Context, message: str, code: int) -> int:
    ctx.err(f"breaker: {message}")
    return code


def main(
    argv: Sequence[str] | None = None,
    *,
    now: Now | None = None,
    stop: threading.Event | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the ``breaker`` command with ``argv`` (default: the process's); return its status.

    The keywords are for tests: ``now`` returns an aware UTC datetime, ``stop`` ends
    ``watch`` as Ctrl-C does, and the streams default to the process's.
    """
    ctx = _Context(
        now=now or _utcnow,
        stop=stop or threading.Event(),
        stdin=stdin or sys.stdin,
        stdout=stdout or sys.stdout,
        stderr=stderr or sys.stderr,
    )
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(ctx.stdout), contextlib.redirect_stderr(ctx.stderr):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    # The CLI reports what matters itself; without this, Python's last-resort handler would
    # print the library's own warnings (the watcher's retries) in between.
    quiet = logging.NullHandler()
    logging.getLogger("breaker").addHandler(quiet)
    try:
        code: int = args.run(args, ctx)
        ctx.stdout.flush()  # here, where a closed pipe can still be reported as one
        return code
    except CLIError as exc:
        prefix = "error: " if exc.code in (EXIT_USAGE, EXIT_ERROR) else ""
        return _fail(ctx, f"{prefix}{exc}", exc.code)
    except CoordError as exc:
        return _fail(ctx, f"error: {exc}", EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail(ctx, "interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`breaker ls | head -1`): say nothing more, and keep Python
        # from reporting the failed flush of stdout at exit.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), ctx.stdout.fileno())
        return EXIT_ERROR
    finally:
        logging.getLogger("breaker").removeHandler(quiet)
