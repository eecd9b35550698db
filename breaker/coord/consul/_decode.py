"""Read Consul's KV answers: the index, the entries, and what makes an answer unusable.

A recursive GET returns every entry under the prefix, changed or not. Parsing that JSON is
the price of Consul's format; beyond it, `read_listing` costs time for what changed: given
the listing it last read (``known``), it decodes only the entries whose ModifyIndex moved
and hands back the very same ``bytes`` object for every other one, so that whoever compares
snapshots can compare by identity first. The per-entry work left is done by C loops
(``map``, ``zip``, ``compress``), not by Python code.
"""

from __future__ import annotations

import binascii
import json
import operator
from collections.abc import Mapping, Sequence
from itertools import compress, repeat
from types import MappingProxyType
from typing import Any

import attrs

from breaker._exceptions import CoordError
from breaker.coord._base import Snapshot

__all__ = ["Listing", "decode_entry", "read_listing"]

_KEY = operator.itemgetter("Key")
_MODIFY_INDEX = operator.itemgetter("ModifyIndex")
_ABSENT = object()


@attrs.frozen
class Listing:
    """Hold everything under a prefix: Consul's index, then each key, its ModifyIndex and value.

    ``keys`` and ``indexes`` are in Consul's order (sorted by key); ``values`` maps each key
    to its value. A listing read against an earlier one shares its unchanged parts.
    """

    index: int
    keys: Sequence[str] = ()
    indexes: Sequence[int] = ()
    values: Mapping[str, bytes] = attrs.field(factory=dict)

    @classmethod
    def of(cls, index: int, entries: Mapping[str, tuple[bytes, int]]) -> Listing:
        """Return the listing of ``entries`` (key -> (value, ModifyIndex)), keys sorted."""
        keys = sorted(entries)
        return cls(
            index,
            keys,
            [entries[key][1] for key in keys],
            {key: entries[key][0] for key in keys},
        )

    @property
    def entries(self) -> dict[str, tuple[bytes, int]]:
        """Return each key's (value, ModifyIndex)."""
        values = self.values
        return {
            key: (values[key], index) for key, index in zip(self.keys, self.indexes, strict=True)
        }

    def same_content(self, other: Listing) -> bool:
        """Say whether ``other`` holds the same keys, ModifyIndexes and values."""
        if self.values is other.values:
            return True
        return (
            self.keys == other.keys
            and self.indexes == other.indexes
            and self.values == other.values
        )

    def snapshot(self) -> Snapshot:
        """Return the keys and values, as a coord delivers them (read-only, no copy)."""
        return MappingProxyType(self.values)


def decode_entry(entry: Any) -> tuple[bytes, int]:
    """Return (value, ModifyIndex) of one entry python-consul decoded; raise `CoordError`."""
    if not isinstance(entry, dict) or not isinstance(entry.get("Key"), str):
        raise _malformed("expected a KV entry")
    value = entry.get("Value")
    modify_index = entry.get("ModifyIndex", 0)
    if not isinstance(value, (bytes, type(None))) or not isinstance(modify_index, int):
        raise _malformed(f"bad Value or ModifyIndex for {entry['Key']!r}")
    return value or b"", modify_index


def _decode_raw(entry: Any) -> tuple[str, int, bytes]:
    """Return (key, ModifyIndex, value) of one entry as Consul wrote it (Value in base64)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("Key"), str):
        raise _malformed("expected a KV entry")
    key = entry["Key"]
    value = entry.get("Value")
    modify_index = entry.get("ModifyIndex", 0)
    if not isinstance(value, (str, type(None))) or type(modify_index) is not int:
        raise _malformed(f"bad Value or ModifyIndex for {key!r}")
    if value is None:
        return key, modify_index, b""
    try:
        return key, modify_index, binascii.a2b_base64(value)
    except (binascii.Error, ValueError):
        raise _malformed(f"a Value that is not base64 for {key!r}") from None


def read_listing(
    status: int,
    headers: Mapping[str, str],
    body: str | bytes,
    prefix: str,
    known: Listing | None = None,
    *,
    trust_indexes: bool = False,
) -> Listing:
    """Return the `Listing` in the answer to a recursive GET of ``prefix``.

    A 404 is a valid empty prefix (every policy deleted). A listing that Consul filtered
    by ACLs is an error: the missing keys are hidden, not deleted. With ``trust_indexes``
    (a blocking read that continues from ``known``, and an index that did not go back), an
    entry whose key and ModifyIndex ``known`` holds is not decoded again: in one cluster's
    history a ModifyIndex names one value. Otherwise every value is decoded, and an equal
    one still handed back as ``known``'s object.
    """
    if headers.get("X-Consul-Results-Filtered-By-ACLs", "").lower() == "true":
        raise CoordError(
            f"the ACL token may not read every key under {prefix!r} "
            "(X-Consul-Results-Filtered-By-ACLs); check the token's key_prefix policy",
            condition="filtered by ACLs",
        )
    raw_index = headers.get("X-Consul-Index")
    try:
        index = int(raw_index)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CoordError(
            f"Consul answered without a usable X-Consul-Index ({raw_index!r})",
            condition="malformed",
        ) from None
    if index < 0:
        raise _malformed(f"negative X-Consul-Index ({index})")
    if status == 404:
        return Listing(index)
    data = json.loads(body)
    if not isinstance(data, list):
        raise _malformed("expected a list of KV entries")
    if known is not None and trust_indexes and index >= known.index:
        try:
            return _read_changes(index, data, known)
        except (KeyError, TypeError):
            pass  # not the shape Consul writes: the full reading below says what is wrong
    return _read_all(index, data, known)


def _read_changes(index: int, data: list[Any], known: Listing) -> Listing:
    indexes = list(map(_MODIFY_INDEX, data))
    if len(indexes) == len(known.indexes):
        # As many keys as before. A key added since has a ModifyIndex above known.index,
        # so it sits where known had another key with a lower one: where no ModifyIndex
        # moved, no key changed either, and every moved one is checked below.
        moved: list[int] = []
        _differences(indexes, known.indexes, 0, len(indexes), moved)
        if not moved:
            return Listing(index, known.keys, known.indexes, known.values)
        keys = known.keys
        if all(data[p]["Key"] == keys[p] for p in moved):
            values = dict(known.values)
            for position in moved:
                key, _, value = _decode_raw(data[position])
                values[key] = value
            return Listing(index, keys, indexes, values)
    new_keys = list(map(_KEY, data))
    before = dict(zip(known.keys, known.indexes, strict=True))
    was = map(before.get, new_keys, repeat(_ABSENT))
    changed = compress(range(len(new_keys)), map(operator.ne, indexes, was))
    values = dict(zip(new_keys, map(known.values.get, new_keys, repeat(b"")), strict=True))
    if len(values) != len(new_keys):
        raise KeyError("a key listed twice")
    for position in changed:
        key, _, value = _decode_raw(data[position])
        values[key] = value
    return Listing(index, new_keys, indexes, values)


def _differences(new: list[int], old: Sequence[int], lo: int, hi: int, out: list[int]) -> None:
    """Append to ``out`` the positions in [lo, hi) where ``new`` and ``old`` differ.

    Halves are compared as slices (a C loop) and only unequal ones are looked into, so a
    few changes among many entries cost about one pass of comparisons.
    """
    if new[lo:hi] == old[lo:hi]:
        return
    if hi - lo <= 16:
        out.extend(p for p in range(lo, hi) if new[p] != old[p])
        return
    middle = (lo + hi) // 2
    _differences(new, old, lo, middle, out)
    _differences(new, old, middle, hi, out)


def _read_all(index: int, data: list[Any], known: Listing | None) -> Listing:
    keys: list[str] = []
    indexes: list[int] = []
    values: dict[str, bytes] = {}
    before = known.values if known is not None else {}
    for entry in data:
        key, modify_index, value = _decode_raw(entry)
        old = before.get(key)
        if old is not None and old == value:
            value = old
        if key in values:
            raise _malformed(f"{key!r} listed twice")
        keys.append(key)
        indexes.append(modify_index)
        values[key] = value
    return Listing(index, keys, indexes, values)


def _malformed(what: str) -> CoordError:
    return CoordError(f"malformed answer from Consul: {what}", condition="malformed")
