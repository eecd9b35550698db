"""Read Consul's KV answers: the index, the entries, and what makes an answer unusable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from breaker._exceptions import CoordError
from breaker.coord._base import Snapshot

__all__ = ["Listing", "decode_entry", "decode_listing"]


@attrs.frozen
class Listing:
    """Hold everything under a prefix: Consul's index and each key's (value, ModifyIndex)."""

    index: int
    entries: Mapping[str, tuple[bytes, int]]

    def snapshot(self) -> Snapshot:
        """Return the keys and values, as a coord delivers them."""
        return {key: value for key, (value, _) in self.entries.items()}


def decode_entry(entry: Any) -> tuple[bytes, int]:
    """Return (value, ModifyIndex) of one KV entry; raise `CoordError` if it is malformed."""
    if not isinstance(entry, dict) or not isinstance(entry.get("Key"), str):
        raise _malformed("expected a KV entry")
    value = entry.get("Value")
    modify_index = entry.get("ModifyIndex", 0)
    if not isinstance(value, (bytes, type(None))) or not isinstance(modify_index, int):
        raise _malformed(f"bad Value or ModifyIndex for {entry['Key']!r}")
    return value or b"", modify_index


def decode_listing(value: Any, headers: Mapping[str, str], prefix: str) -> Listing:
    """Return the `Listing` in python-consul's reading of a recursive GET of ``prefix``.

    A 404 is a valid empty prefix (every policy deleted). A listing that Consul filtered
    by ACLs is an error: the missing keys are hidden, not deleted.
    """
    if headers.get("X-Consul-Results-Filtered-By-ACLs", "").lower() == "true":
        raise CoordError(
            f"the ACL token may not read every key under {prefix!r} "
            "(X-Consul-Results-Filtered-By-ACLs); check the token's key_prefix policy",
            condition="filtered by ACLs",
        )
    raw_index, entries = value
    try:
        index = int(raw_index)
    except (TypeError, ValueError):
        raise CoordError(
            f"Consul answered without a usable X-Consul-Index ({raw_index!r})",
            condition="malformed",
        ) from None
    if index < 0:
        raise _malformed(f"negative X-Consul-Index ({index})")
    if entries is None:  # 404: nothing under the prefix
        entries = []
    if not isinstance(entries, list):
        raise _malformed("expected a list of KV entries")
    decoded: dict[str, tuple[bytes, int]] = {}
    for entry in entries:
        decoded[entry["Key"]] = decode_entry(entry)  # decode_entry checks that Key is a str
    return Listing(index, decoded)


def _malformed(what: str) -> CoordError:
    return CoordError(f"malformed answer from Consul: {what}", condition="malformed")
