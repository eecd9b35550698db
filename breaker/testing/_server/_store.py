"""The KV store and Consul's index rules (``agent/consul/state/kvs.go``, ``blockingquery``).

* Every write consumes a raft index, even one that changes nothing or fails its CAS.
* An entry has ``CreateIndex`` and ``ModifyIndex``; a write that changes nothing keeps both.
* A delete leaves a tombstone at the write's index (one at the prefix for a tree delete,
  none when the whole store goes), until `Store.reap_tombstones`.
* A prefix reports the highest ``ModifyIndex`` or tombstone under it, else the index of the
  whole table; the root reports the table's index; nothing is ever reported below 1.
* A blocking query waits for its index to pass ``index``, or for its time to run out; a
  query on a missing key waits for the key, not for other writes.
* A snapshot restore abandons the state: blocked queries return at once with what they had
  read (Consul's ``AbandonCh``), and later reads see the snapshot's data and indexes.

Every method takes the store's lock itself; the condition `cond` is shared with the fault
hooks and the server so that one ``notify_all`` wakes every waiting request.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from breaker.testing._server._http import Dropped


@dataclass(frozen=True)
class Entry:
    """One key as Consul stores it (``Value`` None for an empty value)."""

    key: str
    value: bytes | None
    flags: int
    create_index: int
    modify_index: int

    def to_json(self) -> dict[str, object]:
        """Return the entry as the KV endpoint lists it."""
        encoded = None if self.value is None else base64.b64encode(self.value).decode("ascii")
        return {
            "LockIndex": 0,
            "Key": self.key,
            "Flags": self.flags,
            "Value": encoded,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


class KVSnapshot:
    """The KV data and its indexes at one moment, as ``consul snapshot save`` keeps them.

    Take one with `ConsulServer.snapshot`; give it to `ConsulServer.restore` (or
    ``restart(mode="restore", snapshot=...)``) to bring that state back.
    """

    __slots__ = ("_entries", "_raft_index", "_table_index", "_tombstones")

    def __init__(
        self,
        entries: Mapping[str, Entry],
        tombstones: Mapping[str, int],
        raft_index: int,
        table_index: int,
    ) -> None:
        self._entries = dict(entries)
        self._tombstones = dict(tombstones)
        self._raft_index = raft_index
        self._table_index = table_index

    @property
    def index(self) -> int:
        """Return the raft index the snapshot was taken at."""
        return self._raft_index

    def keys(self) -> list[str]:
        """Return the keys the snapshot holds, sorted."""
        return sorted(self._entries)

    def __repr__(self) -> str:
        return f"<KVSnapshot index={self._raft_index} keys={len(self._entries)}>"


@dataclass
class Result:
    """What one run of a query read, and the index it reports."""

    index: int
    entries: list[Entry]
    not_found: bool = False
    filtered: bool = False


class Store:
    """Keys, tombstones and indexes, with blocking queries over them."""

    def __init__(self, start_index: int) -> None:
        self.cond = threading.Condition()
        self._entries: dict[str, Entry] = {}
        self._tombstones: dict[str, int] = {}
        self._raft_index = start_index
        self._table_index = 0
        self._restores = 0
        self._blocked = 0

    @property
    def index(self) -> int:
        """Return the last index a write consumed (Consul's raft index)."""
        with self.cond:
            return self._raft_index

    @property
    def blocked(self) -> int:
        """Return how many blocking queries are waiting now."""
        with self.cond:
            return self._blocked

    # -- writes ----------------------------------------------------------------------------

    def consume_index(self) -> int:
        """Consume an index for a write that changes no key (a refused lock, for one)."""
        with self.cond:
            self._raft_index += 1
            return self._raft_index

    def set(self, key: str, value: bytes, flags: int, cas: int | None) -> tuple[bool, int]:
        """Write ``key`` (``cas``: 0 only creates, N needs ModifyIndex N); return (ok, index)."""
        with self.cond:
            self._raft_index += 1
            index = self._raft_index
            existing = self._entries.get(key)
            if cas is not None:
                if cas == 0 and existing is not None:
                    return False, existing.modify_index
                if cas != 0 and (existing is None or existing.modify_index != cas):
                    return False, 0 if existing is None else existing.modify_index
            stored = value or None
            if existing is not None and existing.value == stored and existing.flags == flags:
                return True, existing.modify_index
            create_index = index if existing is None else existing.create_index
            self._entries[key] = Entry(key, stored, flags, create_index, index)
            self._table_index = index
            self.cond.notify_all()
            return True, index

    def delete(self, key: str, cas: int | None) -> bool:
        """Delete ``key``; with ``cas`` only at that ModifyIndex (a missing key succeeds)."""
        with self.cond:
            self._raft_index += 1
            index = self._raft_index
            existing = self._entries.get(key)
            if cas is not None and (existing is None or existing.modify_index != cas):
                return existing is None
            if existing is None:
                return True
            del self._entries[key]
            self._tombstones[key] = index
            self._table_index = index
            self.cond.notify_all()
            return True

    def delete_tree(self, prefix: str, keep: Callable[[str], bool] | None = None) -> int:
        """Delete every key under ``prefix`` (that ``keep`` accepts); return the write's index."""
        with self.cond:
            self._raft_index += 1
            index = self._raft_index
            doomed = [
                key
                for key in self._entries
                if key.startswith(prefix) and (keep is None or keep(key))
            ]
            if not doomed:
                return index
            for key in doomed:
                del self._entries[key]
            # Consul leaves one tombstone at the prefix, none when the whole tree goes.
            if prefix:
                self._tombstones[prefix] = index
            self._table_index = index
            self.cond.notify_all()
            return index

    def reap_tombstones(self, up_to: int | None) -> int:
        """Forget tombstones at or below ``up_to`` (all when None); return how many."""
        with self.cond:
            doomed = [k for k, i in self._tombstones.items() if up_to is None or i <= up_to]
            for key in doomed:
                del self._tombstones[key]
            return len(doomed)

    # -- whole-state operations ------------------------------------------------------------

    def snapshot(self) -> KVSnapshot:
        """Return the data and indexes as they are now."""
        with self.cond:
            return KVSnapshot(self._entries, self._tombstones, self._raft_index, self._table_index)

    def restore(self, snapshot: KVSnapshot, *, fresh_cluster: bool = False) -> None:
        """Replace the state with ``snapshot`` and abandon the old one (wakes blocked reads).

        Raft restores a snapshot at an index above both its own and the snapshot's, so the
        next write still gets a new index; a rebuilt cluster starts from the snapshot's.
        """
        with self.cond:
            above = snapshot._raft_index if fresh_cluster else self._raft_index
            self._entries = dict(snapshot._entries)
            self._tombstones = dict(snapshot._tombstones)
            self._table_index = snapshot._table_index
            self._raft_index = max(above, snapshot._raft_index) + 1
            self._restores += 1
            self.cond.notify_all()

    def rebuild(self) -> None:
        """Re-seed the data into a new cluster: every entry at index 1, no tombstones."""
        with self.cond:
            self._entries = {
                key: replace(entry, create_index=1, modify_index=1)
                for key, entry in self._entries.items()
            }
            self._tombstones.clear()
            self._raft_index = 1
            self._table_index = 1 if self._entries else 0
            self._restores += 1
            self.cond.notify_all()

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        """Return the entry for ``key``, or None."""
        with self.cond:
            return self._entries.get(key)

    def keys(self, prefix: str) -> list[str]:
        """Return every key under ``prefix``, sorted."""
        with self.cond:
            return sorted(key for key in self._entries if key.startswith(prefix))

    def query_get(self, key: str) -> Result:
        """Read one key as ``KVS.Get``: its ModifyIndex, or the table's index when missing."""
        with self.cond:
            entry = self._entries.get(key)
            if entry is None:
                return Result(max(self._table_index, 1), [], not_found=True)
            return Result(max(entry.modify_index, 1), [entry])

    def query_list(self, prefix: str, readable: Callable[[str], bool] | None) -> Result:
        """Read a prefix as ``KVS.List``; ``readable`` filters entries as an ACL would."""
        with self.cond:
            entries = sorted(
                (entry for key, entry in self._entries.items() if key.startswith(prefix)),
                key=lambda entry: entry.key,
            )
            if prefix:
                index = max((entry.modify_index for entry in entries), default=0)
                tombstones = (i for key, i in self._tombstones.items() if key.startswith(prefix))
                index = max(index, max(tombstones, default=0))
            else:
                index = self._table_index
            index = max(index or self._table_index, 1)
        filtered = False
        if readable is not None:
            kept = [entry for entry in entries if readable(entry.key)]
            filtered = len(kept) != len(entries)
            entries = kept
        return Result(index, entries, filtered=filtered)

    def block(
        self,
        min_index: int,
        timeout: float,
        query: Callable[[], Result],
        cancelled: Callable[[], bool],
    ) -> Result:
        """Run ``query`` as ``blockingquery.Query``: until its index passes ``min_index``.

        Returns at once when ``min_index`` is 0, when the state is abandoned by a restore
        (with the result read before it) or when ``timeout`` runs out; raises `Dropped`
        when ``cancelled`` says the server is stopping.
        """
        with self.cond:
            if cancelled():
                raise Dropped
            result = query()
            if min_index == 0:
                return result
            deadline = time.monotonic() + timeout
            restores = self._restores
            seen_not_found = False
            self._blocked += 1
            try:
                while True:
                    if result.not_found:
                        # A key still missing after a wake-up has not changed: keep waiting.
                        if seen_not_found:
                            min_index = result.index
                        seen_not_found = True
                    if result.index > min_index:
                        return result
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return result
                    self.cond.wait(remaining)
                    if cancelled():
                        raise Dropped
                    if self._restores != restores:
                        return result
                    result = query()
            finally:
                self._blocked -= 1
