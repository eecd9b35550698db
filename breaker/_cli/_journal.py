"""The write history: every change the CLI makes, recorded in the same Consul transaction.

A change of the document at ``<policies_path><name>.json`` is one transaction (`TxnCoord`):
the check-and-set write (or delete) of the document, a new entry at
``<history prefix><name>.json/<id>`` (``<id>``: 12 digits, counting from 1 per name;
written only if absent, so two writers never share one), and the deletion of the
oldest entries beyond ``keep``. Consul applies all of it or nothing: a lost
check-and-set writes no entry. All the operations run at one Raft index, so an entry's
ModifyIndex is the document's ModifyIndex after the change it records.

An entry (``version`` 1) is a JSON object::

    {
      "version": 1,
      "name": "payments",
      "key": "config/dev/checkout/breakers/payments.json",
      "action": "put",          # put, rm, force-open, release, rollback, canary-start, ...
      "at": "2026-11-29T13:45:00Z",
      "by": "alice@ops-laptop",
      "reason": "ticket 4711",  # or null
      "index": 12,              # the document's ModifyIndex it was changed from; null: absent
      "before": "{...}",        # the document before (its text), null when absent
      "after": "{...}",         # and after; a document that is not UTF-8: {"base64": "..."}
      ...                       # what the action adds (a rollback: "to", the entry it undid)
    }

The history prefix sits beside the watched one, never at, above or under it
(`history_prefix`), so no service watcher ever sees an entry.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import attrs

from breaker._exceptions import CoordError
from breaker._names import key_of
from breaker.coord._base import MAX_TXN_OPS, KVEntry, TxnCoord, TxnOp

__all__ = [
    "DEFAULT_KEEP",
    "ENTRY_VERSION",
    "Entry",
    "Journal",
    "derived_history_prefix",
    "history_problem",
]

DEFAULT_KEEP = 50
"""Entries kept per name: older ones are deleted in the transaction that adds one."""
ENTRY_VERSION = 1
_ID_DIGITS = 12
_ATTEMPTS = 5  # new entry ids tried when another writer took the one chosen


def derived_history_prefix(policies_prefix: str) -> str:
    """Return the history prefix of a policies prefix: its last segment plus ``-history``.

    ``config/dev/checkout/breakers/`` -> ``config/dev/checkout/breakers-history/``.
    """
    return policies_prefix.rstrip("/") + "-history/"


def history_problem(history_prefix: str, policies_prefix: str) -> str | None:
    """Return why ``history_prefix`` cannot hold the history of ``policies_prefix``, or None."""
    if history_prefix.startswith(policies_prefix):
        return (
            "it is at or under the watched policies prefix, where every entry would wake "
            "every service"
        )
    if policies_prefix.startswith(history_prefix):
        return (
            "it holds the policies prefix, so a breaker's entries could land under the "
            "watched prefix"
        )
    return None


@attrs.frozen
class Entry:
    """One recorded change, as read back (oldest first from `Journal.entries`)."""

    id: int
    key: str
    """The entry's own key."""
    modify_index: int
    """The entry's ModifyIndex: the document's after the change, when it left one."""
    action: str
    at: str
    by: str
    reason: str | None
    index: int | None
    """The document's ModifyIndex the change was made on; None: it did not exist."""
    before: bytes | None
    after: bytes | None
    extra: Mapping[str, Any]
    """What the action added (a rollback: ``to``)."""

    @property
    def after_index(self) -> int | None:
        """Return the document's ModifyIndex right after this change (None: deleted)."""
        return None if self.after is None else self.modify_index


class Lost(Exception):
    """The document changed since it was read: its check-and-set lost, nothing written."""


class Journal:
    """Write documents with their history, and read the history back, over a `TxnCoord`."""

    def __init__(self, coord: TxnCoord, history_prefix: str, *, keep: int = DEFAULT_KEEP) -> None:
        self._coord = coord
        self.prefix = history_prefix
        self._keep = keep

    def entry_prefix(self, name: str) -> str:
        """Return the prefix of ``name``'s entries: ``<history prefix><name>.json/``."""
        return self.prefix + key_of("", name) + "/"

    def current(self, key: str) -> tuple[bytes, int] | None:
        """Return a document and its ModifyIndex, read in a transaction, or None."""
        for entry in self._tree(key):
            if entry.key == key:
                return entry.value or b"", entry.modify_index
        return None

    def entries(self, name: str) -> tuple[list[Entry], list[str]]:
        """Return ``name``'s entries, oldest first, and one line per entry that is unreadable."""
        prefix = self.entry_prefix(name)
        found: list[Entry] = []
        problems: list[str] = []
        for item in self._tree(prefix):
            rest = item.key[len(prefix) :]
            if "/" in rest:
                continue  # another name's entries (``a.json/b`` under ``a.json/``)
            if not rest.isdigit():
                problems.append(f"{item.key}: not a history entry (its name is not a number)")
                continue
            try:
                found.append(_read(int(rest), item))
            except (ValueError, TypeError, KeyError) as exc:
                problems.append(f"{item.key}: unreadable history entry ({exc})")
        found.sort(key=lambda e: e.id)
        return found, problems

    def change(
        self,
        name: str,
        key: str,
        after: bytes | None,
        *,
        before: tuple[bytes, int] | None,
        cas: bool,
        record: Mapping[str, Any],
    ) -> int:
        """Write (``after``) or delete (None) the document at ``key``, with a history entry.

        With ``cas`` the write applies only if the document is still as ``before`` says
        (its ModifyIndex, or absent); else raise `Lost`. ``record`` holds the entry's
        action, at, by, reason and extras. Returns the new ModifyIndex of the document
        (for a delete, that of the entry). Raise `CoordError` when Consul refuses for
        another reason (a token that may not write the history, say), naming each.
        """
        entry: dict[str, Any] = {
            "version": ENTRY_VERSION,
            "name": name,
            "key": key,
            **record,
            "index": None if before is None else before[1],
            "before": _text(None if before is None else before[0]),
            "after": _text(after),
        }
        body = json.dumps(entry, ensure_ascii=False, indent=2).encode("utf-8")
        ops = _document_ops(key, after, before, cas)
        for _ in range(_ATTEMPTS):
            existing, _problems = self.entries(name)
            next_id = existing[-1].id + 1 if existing else 1
            entry_key = f"{self.entry_prefix(name)}{next_id:0{_ID_DIGITS}d}"
            doomed = existing[: max(0, len(existing) + 1 - self._keep)]
            room = MAX_TXN_OPS - len(ops) - 1
            trims = [TxnOp.delete(old.key) for old in doomed[:room]]  # the rest: next time
            result = self._coord.txn([*ops, TxnOp.cas(entry_key, body, 0), *trims])
            if result.ok:
                written = [e for e in result.entries if e.key == entry_key]
                return written[0].modify_index if written else 0
            mine = {e.op_index for e in result.errors}
            if mine & set(range(len(ops))) and all(_lost(e.what) for e in result.errors):
                raise Lost
            if mine == {len(ops)} and all("index is stale" in e.what for e in result.errors):
                continue  # another writer took this entry id at the same moment: the next one
            reasons = "; ".join(e.what for e in result.errors)
            if "Permission denied" in reasons:
                reasons += (
                    f"; check the ACL token: a change needs key write on {key} and on "
                    f"the history prefix {self.prefix}"
                )
            raise CoordError(
                f"Consul refused to change {key} (nothing written): {reasons}",
                condition="txn refused",
            )
        raise CoordError(
            f"could not record the change of {key}: other writers took {_ATTEMPTS} entry ids "
            "in a row",
            condition="txn refused",
        )

    def _tree(self, prefix: str) -> tuple[KVEntry, ...]:
        result = self._coord.txn([TxnOp.get_tree(prefix)])
        if not result.ok:
            reasons = "; ".join(e.what for e in result.errors)
            raise CoordError(f"Consul refused to read {prefix}: {reasons}", condition="txn refused")
        return result.entries


def _document_ops(
    key: str, after: bytes | None, before: tuple[bytes, int] | None, cas: bool
) -> list[TxnOp]:
    if after is not None:
        return [
            TxnOp.cas(key, after, 0 if before is None else before[1])
            if cas
            else TxnOp.set(key, after)
        ]
    if cas and before is not None:
        # delete-cas alone lets a delete through when someone deleted the key meanwhile.
        return [TxnOp.check_index(key, before[1]), TxnOp.delete_cas(key, before[1])]
    return [TxnOp.delete(key)]


def _lost(what: str) -> bool:
    """Say whether an operation's error means the document changed since it was read."""
    return (
        "index is stale" in what
        or "failed index check" in what
        or "doesn't exist" in what
        or "does not exist" in what
    )


def _text(raw: bytes | None) -> Any:
    """Return a document as an entry holds it: its text, or base64 when not UTF-8."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def _bytes(value: Any, what: str) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, dict) and isinstance(value.get("base64"), str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f'"{what}" is not base64') from None
    raise ValueError(f'"{what}" is not a document')


_FIELDS = ("version", "name", "key", "action", "at", "by", "reason", "index", "before", "after")


def _read(entry_id: int, item: KVEntry) -> Entry:
    raw = json.loads(item.value or b"")
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    index = raw.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise ValueError('"index" is not a number')
    reason = raw.get("reason")
    return Entry(
        id=entry_id,
        key=item.key,
        modify_index=item.modify_index,
        action=str(raw["action"]),
        at=str(raw.get("at", "")),
        by=str(raw.get("by", "")),
        reason=None if reason is None else str(reason),
        index=index,
        before=_bytes(raw.get("before"), "before"),
        after=_bytes(raw.get("after"), "after"),
        extra={k: v for k, v in raw.items() if k not in _FIELDS},
    )
