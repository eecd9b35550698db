"""How commands print: JSON, documents, what changed between two of them, modes in words."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from breaker._duration import format_go_duration
from breaker._layers import NOT_JSON, Document, Layers, Resolution
from breaker._names import DEFAULT_DOCUMENT, SUFFIX
from breaker._policy import format_timestamp
from breaker._state import Mode

ABSENT = "(absent)"
SERVICE_DEFAULT = DEFAULT_DOCUMENT + SUFFIX
MISSING: Any = object()
"""A key a document does not hold (in `changes`)."""


def dump(value: Any) -> str:
    """Return ``value`` as indented JSON."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def compact(value: Any) -> str:
    """Return ``value`` as one line of JSON."""
    return json.dumps(value, ensure_ascii=False)


def document_json(doc: Document) -> Any:
    """Return a document as JSON output holds it: its value, or its text when not JSON."""
    return doc.raw.decode("utf-8", "replace") if doc.value is NOT_JSON else doc.value


def describe(doc: Document | None) -> str:
    """Return a document on one line."""
    if doc is None:
        return ABSENT
    if doc.value is not NOT_JSON:
        return compact(doc.value)
    text = doc.raw.decode("utf-8", "replace")
    return f"(not JSON: {text[:60]!r})"


def is_object(doc: Document | None) -> bool:
    """Say whether a document is a JSON object (None, an absent one, counts as empty)."""
    return doc is None or isinstance(doc.value, dict)


def _show(value: Any) -> str:
    return ABSENT if value is MISSING else compact(value)


def _same(a: Any, b: Any) -> bool:
    # 1, 1.0 and true are equal in Python and different documents.
    return a is b or (a is not MISSING and b is not MISSING and json.dumps(a) == json.dumps(b))


def changes(old: Document | None, new: Document | None) -> list[tuple[str | None, Any, Any]]:
    """Return what changed between two documents: (key, old, new), `MISSING` for absent.

    Two JSON objects are compared key by key; anything else, and an empty object that
    appears or goes, as a whole (key None).
    """
    if not (is_object(old) and is_object(new)):
        if old is not None and new is not None and old.raw == new.raw:
            return []
        return [(None, old, new)]
    a: dict[str, Any] = {} if old is None else old.value
    b: dict[str, Any] = {} if new is None else new.value
    found: list[tuple[str | None, Any, Any]] = []
    for key in [*a, *(k for k in b if k not in a)]:
        before, after = a.get(key, MISSING), b.get(key, MISSING)
        if not _same(before, after):
            found.append((key, before, after))
    if not found and (old is None) != (new is None):
        return [(None, old, new)]
    return found


def change_lines(old: Document | None, new: Document | None) -> list[str]:
    """Return the changes between two documents as ``key: old -> new`` lines."""
    lines = []
    for key, before, after in changes(old, new):
        if key is None:
            lines.append(f"{describe(before)} -> {describe(after)}")
        else:
            lines.append(f"{key}: {_show(before)} -> {_show(after)}")
    return lines


def change_json(old: Document | None, new: Document | None) -> list[dict[str, Any]]:
    """Return the changes as JSON objects; ``old``/``new`` are left out when absent."""
    found = []
    for key, before, after in changes(old, new):
        entry: dict[str, Any] = {"key": key}
        if key is None:
            before = MISSING if before is None else document_json(before)
            after = MISSING if after is None else document_json(after)
        if before is not MISSING:
            entry["old"] = before
        if after is not MISSING:
            entry["new"] = after
        found.append(entry)
    return found


def mode_text(layers: Layers, resolution: Resolution) -> str:
    """Return the mode a breaker is in now, and until when, in words."""
    policy = resolution.policy
    mode, _ = layers.mode_now(resolution)
    until = policy.mode_until
    if mode is not policy.mode and until is not None:
        return f"auto ({policy.mode.value} ended {format_timestamp(until)})"
    if mode is Mode.AUTO or until is None:
        return mode.value
    return f"{mode.value} until {format_timestamp(until)}"


def seconds_text(seconds: float) -> str:
    """Return a span of seconds as a Go duration, to the second ("14m59s")."""
    return format_go_duration(max(0, round(seconds)) * 1_000_000_000)


def services_keep(doc: Document) -> str:
    """Say what the services do with a document that does not apply as written."""
    if not doc.valid:
        text = "services keep their last good version of it"
    else:
        text = "services keep their last version of it that fits, if any"
        if doc.sets_mode:
            text += "; its mode applies"
    return text


def stamp(now: datetime) -> str:
    """Return ``now`` to the second, as the watch prints it."""
    return format_timestamp(now.astimezone(timezone.utc).replace(microsecond=0))
