"""The state store: KV entries, sessions and Consul's index rules.

It follows ``agent/consul/state/kvs.go``, ``session.go``, ``txn.go`` and ``blockingquery``:

* Every write that reaches raft consumes an index, even one that changes nothing, fails
  its CAS or fails inside a transaction (the transaction then changes nothing).
* An entry has ``CreateIndex``, ``ModifyIndex``, ``LockIndex`` and the ``Session`` holding
  it; a write that changes nothing keeps its indexes. A plain write keeps the holder and
  sets ``LockIndex`` to the request's (0 over HTTP), as ``kvsSetTxn`` does.
* A delete leaves a tombstone at the write's index (one at the prefix for a tree delete,
  none when the whole store goes), until `Store.reap_tombstones`.
* A prefix reports the highest ``ModifyIndex`` or tombstone under it, else the index of the
  whole table; the root reports the table's index; nothing is ever reported below 1.
* A session belongs to a node and may name health checks; destroying or invalidating it
  releases its keys (behaviour ``release``) or deletes them (``delete``) and puts each
  under its lock-delay (capped at 60 s). A session with a TTL is invalidated once twice
  its TTL has passed since it was created or last renewed (``SessionTTLMultiplier``).
* A blocking query waits for its index to pass ``index``, or for its time to run out; a
  query on a missing key or session waits for it, not for other writes.
* A snapshot restore abandons the state: blocked queries return at once with what they had
  read (Consul's ``AbandonCh``), and later reads see the snapshot's data and indexes.

Every method takes the store's lock itself; the condition `cond` is shared with the fault
hooks and the server so that one ``notify_all`` wakes every waiting request. Session TTLs
and lock-delays run on the injected ``clock``; blocking queries on real time.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from breaker.testing._server import _go as go
from breaker.testing._server._http import Dropped

SERF_CHECK = "serfHealth"
"""The check every node has, passing while the agent is a member (a session's default)."""
MAX_LOCK_DELAY = 60.0
"""Consul's ``structs.MaxLockDelay``: a session's lock-delay is capped at this many seconds."""
TTL_MULTIPLIER = 2
"""Consul's ``SessionTTLMultiplier``: a TTL session is invalidated after TTL x 2."""


class StoreError(Exception):
    """An operation failed in the state store: the text is Consul's error."""


@dataclass(frozen=True)
class Entry:
    """One key as Consul stores it (``value`` None for a nil value, ``session`` "" for none)."""

    key: str
    value: bytes | None
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0
    session: str = ""

    def to_json(self) -> dict[str, object]:
        """Return the entry as the KV endpoint lists it (``Session`` only when held)."""
        encoded = None if self.value is None else base64.b64encode(self.value).decode("ascii")
        out: dict[str, object] = {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            "Value": encoded,
        }
        if self.session:
            out["Session"] = self.session
        out["CreateIndex"] = self.create_index
        out["ModifyIndex"] = self.modify_index
        return out

    def same_as(self, other: Entry) -> bool:
        """Say whether a write of ``other`` would change nothing (``DirEntry.Equal``)."""
        return (
            self.lock_index == other.lock_index
            and self.key == other.key
            and self.flags == other.flags
            and (self.value or b"") == (other.value or b"")
            and self.session == other.session
        )


@dataclass(frozen=True)
class Session:
    """A session as Consul stores it; the JSON lists and nulls are kept as created."""

    id: str
    name: str
    node: str
    lock_delay_ns: int
    behavior: str
    ttl: str
    ttl_seconds: float
    node_checks: tuple[str, ...] | None
    service_checks: tuple[tuple[str, str], ...] | None
    checks: tuple[str, ...] | None
    create_index: int = 0
    modify_index: int = 0

    def check_ids(self) -> list[str]:
        """Return every check the session depends on."""
        ids = list(self.checks or ()) + list(self.node_checks or ())
        ids += [check_id for check_id, _ in self.service_checks or ()]
        return ids

    def to_json(self) -> dict[str, object]:
        """Return the session as ``/v1/session/info`` lists it."""
        out: dict[str, object] = {
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": self.lock_delay_ns,
            "Behavior": self.behavior,
            "TTL": self.ttl,
            "NodeChecks": None if self.node_checks is None else list(self.node_checks),
            "ServiceChecks": (
                None
                if self.service_checks is None
                else [{"ID": cid, "Namespace": ns} for cid, ns in self.service_checks]
            ),
        }
        if self.checks:  # deprecated, `json:",omitempty"`
            out["Checks"] = list(self.checks)
        out["CreateIndex"] = self.create_index
        out["ModifyIndex"] = self.modify_index
        return out


@dataclass(frozen=True)
class KVOp:
    """One KV operation of a transaction, as ``structs.TxnKVOp`` holds it."""

    verb: str
    key: str
    value: bytes | None = None
    flags: int = 0
    index: int = 0
    session: str = ""


WRITE_VERBS = frozenset(("set", "delete", "delete-cas", "delete-tree", "cas", "lock", "unlock"))
"""The verbs that change the store (``isWrite`` in ``agent/txn_endpoint.go``)."""


class KVSnapshot:
    """The data and its indexes at one moment, as ``consul snapshot save`` keeps them.

    Take one with `ConsulServer.snapshot`; give it to `ConsulServer.restore` (or
    ``restart(mode="restore", snapshot=...)``) to bring that state back. Sessions are part
    of it, as in a real snapshot; their TTL timers start over on restore.
    """

    __slots__ = (
        "_entries",
        "_raft_index",
        "_session_index",
        "_sessions",
        "_table_index",
        "_tombstones",
    )

    def __init__(
        self,
        entries: Mapping[str, Entry],
        tombstones: Mapping[str, int],
        raft_index: int,
        table_index: int,
        sessions: Mapping[str, Session] | None = None,
        session_index: int = 0,
    ) -> None:
        self._entries = dict(entries)
        self._tombstones = dict(tombstones)
        self._raft_index = raft_index
        self._table_index = table_index
        self._sessions = dict(sessions or {})
        self._session_index = session_index

    @property
    def index(self) -> int:
        """Return the raft index the snapshot was taken at."""
        return self._raft_index

    def keys(self) -> list[str]:
        """Return the keys the snapshot holds, sorted."""
        return sorted(self._entries)

    def __repr__(self) -> str:
        held = f" sessions={len(self._sessions)}" if self._sessions else ""
        return f"<KVSnapshot index={self._raft_index} keys={len(self._entries)}{held}>"


@dataclass
class Result:
    """What one run of a query read, and the index it reports."""

    index: int
    entries: list[Entry] = field(default_factory=list)
    not_found: bool = False
    filtered: bool = False
    sessions: list[Session] = field(default_factory=list)


class Store:
    """Keys, tombstones, sessions and indexes, with blocking queries over them."""

    def __init__(self, start_index: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.cond = threading.Condition()
        self.clock = clock
        self._entries: dict[str, Entry] = {}
        self._tombstones: dict[str, int] = {}
        self._raft_index = start_index
        self._table_index = 0
        self._restores = 0
        self._blocked = 0
        self._sessions: dict[str, Session] = {}
        self._session_index = 0
        self._expires: dict[str, float] = {}
        self._lock_delays: dict[str, float] = {}
        self._checks: dict[str, str] = {SERF_CHECK: "passing"}

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

    # -- KV writes -------------------------------------------------------------------------

    def set(self, key: str, value: bytes, flags: int, cas: int | None) -> tuple[bool, int]:
        """Write ``key`` (``cas``: 0 only creates, N needs ModifyIndex N); return (ok, index)."""
        with self.cond:
            self._raft_index += 1
            index = self._raft_index
            existing = self._entries.get(key)
            if cas is not None and not _cas_matches(existing, cas):
                return False, 0 if existing is None else existing.modify_index
            entry = self._set_locked(index, key, value or None, flags)
            return True, entry.modify_index

    def lock(self, key: str, value: bytes, flags: int, session: str) -> bool:
        """Acquire ``key`` for ``session`` and write it (``?acquire=``); False when held.

        Raise `StoreError` for a missing or unknown session (after consuming the index, as
        the FSM does).
        """
        with self.cond:
            self._raft_index += 1
            return (
                self._lock_locked(self._raft_index, key, value or None, flags, session) is not None
            )

    def unlock(self, key: str, value: bytes, flags: int, session: str) -> bool:
        """Release ``key`` held by ``session`` and write it (``?release=``); False if not held."""
        with self.cond:
            self._raft_index += 1
            return (
                self._unlock_locked(self._raft_index, key, value or None, flags, session)
                is not None
            )

    def lock_delayed(self, key: str) -> bool:
        """Say whether ``key`` is under a lock-delay now (a lock is refused before raft)."""
        with self.cond:
            expires = self._lock_delays.get(key)
            if expires is None:
                return False
            if expires <= self.clock():
                del self._lock_delays[key]
                return False
            return True

    def delete(self, key: str, cas: int | None) -> bool:
        """Delete ``key``; with ``cas`` only at that ModifyIndex (a missing key succeeds)."""
        with self.cond:
            self._raft_index += 1
            index = self._raft_index
            existing = self._entries.get(key)
            if cas is not None and (existing is None or existing.modify_index != cas):
                return existing is None
            self._delete_locked(index, key)
            return True

    def delete_tree(self, prefix: str, keep: Callable[[str], bool] | None = None) -> int:
        """Delete every key under ``prefix`` (that ``keep`` accepts); return the write's index."""
        with self.cond:
            self._raft_index += 1
            index = self._raft_index
            self._delete_tree_locked(index, prefix, keep)
            return index

    def reap_tombstones(self, up_to: int | None) -> int:
        """Forget tombstones at or below ``up_to`` (all when None); return how many."""
        with self.cond:
            doomed = [k for k, i in self._tombstones.items() if up_to is None or i <= up_to]
            for key in doomed:
                del self._tombstones[key]
            return len(doomed)

    # -- the operations, lock held (``kvs.go``) --------------------------------------------

    def _set_locked(
        self,
        index: int,
        key: str,
        value: bytes | None,
        flags: int,
        *,
        lock_index: int = 0,
        session: str | None = None,
    ) -> Entry:
        """Store an entry as ``kvsSetTxn``; ``session`` None keeps the holder; return it."""
        existing = self._entries.get(key)
        if session is None:
            session = existing.session if existing is not None else ""
        create_index = existing.create_index if existing is not None else index
        entry = Entry(key, value, flags, create_index, index, lock_index, session)
        if existing is not None and existing.same_as(entry):
            return existing
        self._entries[key] = entry
        self._table_index = index
        self.cond.notify_all()
        return entry

    def _lock_locked(
        self, index: int, key: str, value: bytes | None, flags: int, session: str
    ) -> Entry | None:
        if not session:
            raise StoreError("missing session")
        if session not in self._sessions:
            raise StoreError(f"invalid session {go.quote(session)}")
        existing = self._entries.get(key)
        lock_index = 1
        if existing is not None:
            if existing.session == session:
                lock_index = existing.lock_index  # already held: no new lock
            elif existing.session:
                return None  # someone else holds it
            else:
                lock_index = existing.lock_index + 1
        return self._set_locked(index, key, value, flags, lock_index=lock_index, session=session)

    def _unlock_locked(
        self, index: int, key: str, value: bytes | None, flags: int, session: str
    ) -> Entry | None:
        if not session:
            raise StoreError("missing session")
        existing = self._entries.get(key)
        if existing is None or existing.session != session:
            return None
        return self._set_locked(
            index, key, value, flags, lock_index=existing.lock_index, session=""
        )

    def _delete_locked(self, index: int, key: str) -> None:
        if key not in self._entries:
            return
        del self._entries[key]
        self._tombstones[key] = index
        self._table_index = index
        self.cond.notify_all()

    def _delete_tree_locked(
        self, index: int, prefix: str, keep: Callable[[str], bool] | None = None
    ) -> None:
        doomed = [
            key for key in self._entries if key.startswith(prefix) and (keep is None or keep(key))
        ]
        if not doomed:
            return
        for key in doomed:
            del self._entries[key]
        # Consul leaves one tombstone at the prefix, none when the whole tree goes.
        if prefix:
            self._tombstones[prefix] = index
        self._table_index = index
        self.cond.notify_all()

    # -- transactions (``txn.go``) ---------------------------------------------------------

    def txn(self, ops: Sequence[KVOp], *, write: bool) -> tuple[list[Entry], list[tuple[int, str]]]:
        """Run ``ops`` all or nothing; return (results, errors), errors as (op index, text).

        A write transaction consumes one index for all its writes; when any operation
        fails, every one is rolled back and only the errors are returned.
        """
        with self.cond:
            index = 0
            saved: tuple[dict[str, Entry], dict[str, int], int] | None = None
            if write:
                self._raft_index += 1
                index = self._raft_index
                saved = (dict(self._entries), dict(self._tombstones), self._table_index)
            results: list[Entry] = []
            errors: list[tuple[int, str]] = []
            for n, op in enumerate(ops):
                try:
                    results += self._txn_op(index, op)
                except StoreError as exc:
                    errors.append((n, str(exc)))
            if errors:
                if saved is not None:
                    self._entries, self._tombstones, self._table_index = saved
                return [], errors
            return results, []

    def _txn_op(self, index: int, op: KVOp) -> list[Entry]:
        verb, key = op.verb, op.key
        entry: Entry | None = None
        if verb == "set":
            entry = self._set_locked(index, key, op.value, op.flags)
        elif verb == "delete":
            self._delete_locked(index, key)
        elif verb == "delete-cas":
            existing = self._entries.get(key)
            if existing is None or existing.modify_index != op.index:
                if existing is not None:
                    raise StoreError(f"failed to delete key {go.quote(key)}, index is stale")
            else:
                self._delete_locked(index, key)
        elif verb == "delete-tree":
            self._delete_tree_locked(index, key)
        elif verb == "cas":
            if not _cas_matches(self._entries.get(key), op.index):
                raise StoreError(f"failed to set key {go.quote(key)}, index is stale")
            entry = self._set_locked(index, key, op.value, op.flags)
        elif verb == "lock":
            entry = self._lock_locked(index, key, op.value, op.flags, op.session)
            if entry is None:
                raise StoreError(f"failed to lock key {go.quote(key)}, lock is already held")
        elif verb == "unlock":
            entry = self._unlock_locked(index, key, op.value, op.flags, op.session)
            if entry is None:
                raise StoreError(
                    f"failed to unlock key {go.quote(key)}, lock isn't held, "
                    "or is held by another session"
                )
        elif verb == "get":
            entry = self._entries.get(key)
            if entry is None:
                raise StoreError(f"key {go.quote(key)} doesn't exist")
            return [entry]
        elif verb == "get-or-empty":
            entry = self._entries.get(key)
            if entry is None:
                entry = Entry(key, None, op.flags, 0, op.index, 0, op.session)
            return [entry]
        elif verb == "get-tree":
            return sorted(
                (e for k, e in self._entries.items() if k.startswith(key)), key=lambda e: e.key
            )
        elif verb == "check-session":
            entry = self._entries.get(key)
            if entry is None:
                raise StoreError(f"failed to check session, key {go.quote(key)} doesn't exist")
            if entry.session != op.session:
                raise StoreError(
                    f"failed session check for key {go.quote(key)}, current session "
                    f"{go.quote(entry.session)} != {go.quote(op.session)}"
                )
        elif verb == "check-index":
            entry = self._entries.get(key)
            if entry is None:
                raise StoreError(f"failed to check index, key {go.quote(key)} doesn't exist")
            if entry.modify_index != op.index:
                raise StoreError(
                    f"failed index check for key {go.quote(key)}, current modify index "
                    f"{entry.modify_index} != {op.index}"
                )
        elif verb == "check-not-exists":
            if key in self._entries:
                raise StoreError(f"key {go.quote(key)} exists")
        else:
            raise StoreError(f"unknown KV verb {go.quote(verb)}")
        # Anything but a get answers with the entry and no value.
        return [] if entry is None else [replace(entry, value=None)]

    # -- sessions (``session.go``, ``session_ttl.go``) -------------------------------------

    def create_session(self, session: Session) -> str:
        """Store a new session (its checks must exist and not be critical); return its ID."""
        with self.cond:
            for check_id in session.check_ids():
                status = self._checks.get(check_id)
                if status is None:
                    raise StoreError(f"Missing check '{check_id}' registration")
                if status == "critical":
                    raise StoreError(f"Check '{check_id}' is in critical state")
            session_id = str(uuid.uuid4())
            while session_id in self._sessions:  # pragma: no cover - a uuid4 collision
                session_id = str(uuid.uuid4())
            self._raft_index += 1
            index = self._raft_index
            self._sessions[session_id] = replace(
                session, id=session_id, create_index=index, modify_index=index
            )
            self._session_index = index
            self._reset_timer(session_id)
            self.cond.notify_all()
            return session_id

    def destroy_session(self, session_id: str) -> bool:
        """Destroy a session and invalidate its locks; False (no index used) if unknown."""
        with self.cond:
            if session_id not in self._sessions:
                return False
            self._raft_index += 1
            self._invalidate_locked(self._raft_index, session_id)
            return True

    def renew_session(self, session_id: str) -> Session | None:
        """Restart a session's TTL timer; return it, or None if it no longer exists."""
        with self.cond:
            self._expire_locked()
            session = self._sessions.get(session_id)
            if session is not None:
                self._reset_timer(session_id)
            return session

    def session(self, session_id: str) -> Session | None:
        """Return the session ``session_id``, or None."""
        with self.cond:
            return self._sessions.get(session_id)

    def sessions(self) -> list[Session]:
        """Return every session, oldest first."""
        with self.cond:
            return sorted(self._sessions.values(), key=lambda s: s.create_index)

    def query_session(self, session_id: str) -> Result:
        """Read one session as ``Session.Get``: the sessions table's index."""
        with self.cond:
            index = max(self._session_index, 1)
            session = self._sessions.get(session_id)
            if session is None:
                return Result(index, not_found=True)
            return Result(index, sessions=[session])

    def query_sessions(self, node: str | None) -> Result:
        """Read every session (of ``node``, if given) as ``Session.List``/``NodeSessions``."""
        with self.cond:
            found = [s for s in self.sessions() if node is None or s.node == node]
            return Result(max(self._session_index, 1), sessions=found)

    def expire_sessions(self) -> int:
        """Invalidate every session whose TTL x 2 ran out on the clock; return how many."""
        with self.cond:
            return self._expire_locked()

    def next_expiry(self) -> float | None:
        """Return when the next TTL session runs out (clock time), or None."""
        with self.cond:
            return min(self._expires.values(), default=None)

    def set_check(self, check_id: str, status: str) -> int:
        """Register or update a node check; a critical one invalidates the sessions using it.

        Return how many sessions were invalidated.
        """
        with self.cond:
            self._checks[check_id] = status
            if status != "critical":
                return 0
            doomed = [s.id for s in self._sessions.values() if check_id in s.check_ids()]
            for session_id in doomed:
                self._raft_index += 1
                self._invalidate_locked(self._raft_index, session_id)
            return len(doomed)

    def reset_session_timers(self) -> None:
        """Start every TTL over, as a newly elected leader does (``initializeSessionTimers``)."""
        with self.cond:
            for session_id in self._sessions:
                self._reset_timer(session_id)

    def _reset_timer(self, session_id: str) -> None:
        ttl = self._sessions[session_id].ttl_seconds
        if ttl > 0:
            self._expires[session_id] = self.clock() + ttl * TTL_MULTIPLIER

    def _expire_locked(self) -> int:
        now = self.clock()
        due = sorted((t, sid) for sid, t in self._expires.items() if t <= now)
        for _, session_id in due:
            self._raft_index += 1
            self._invalidate_locked(self._raft_index, session_id)
        return len(due)

    def _invalidate_locked(self, index: int, session_id: str) -> None:
        """Delete a session and release or delete its keys (``deleteSessionTxn``)."""
        session = self._sessions.pop(session_id)
        self._expires.pop(session_id, None)
        self._session_index = index
        delay = min(session.lock_delay_ns / 1e9, MAX_LOCK_DELAY)
        now = self.clock()
        held = [entry for entry in self._entries.values() if entry.session == session_id]
        for entry in held:
            if session.behavior == "delete":
                self._delete_locked(index, entry.key)
            else:
                self._set_locked(
                    index,
                    entry.key,
                    entry.value,
                    entry.flags,
                    lock_index=entry.lock_index,
                    session="",
                )
            if delay > 0:
                self._lock_delays[entry.key] = now + delay
        self.cond.notify_all()

    # -- whole-state operations ------------------------------------------------------------

    def snapshot(self) -> KVSnapshot:
        """Return the data and indexes as they are now."""
        with self.cond:
            return KVSnapshot(
                self._entries,
                self._tombstones,
                self._raft_index,
                self._table_index,
                self._sessions,
                self._session_index,
            )

    def restore(self, snapshot: KVSnapshot, *, fresh_cluster: bool = False) -> None:
        """Replace the state with ``snapshot`` and abandon the old one (wakes blocked reads).

        Raft restores a snapshot at an index above both its own and the snapshot's, so the
        next write still gets a new index; a rebuilt cluster starts from the snapshot's.
        Session timers start over and lock-delays are forgotten, as on a new leader.
        """
        with self.cond:
            above = snapshot._raft_index if fresh_cluster else self._raft_index
            self._entries = dict(snapshot._entries)
            self._tombstones = dict(snapshot._tombstones)
            self._table_index = snapshot._table_index
            self._sessions = dict(snapshot._sessions)
            self._session_index = snapshot._session_index
            self._expires.clear()
            self._lock_delays.clear()
            for session_id in self._sessions:
                self._reset_timer(session_id)
            self._raft_index = max(above, snapshot._raft_index) + 1
            self._restores += 1
            self.cond.notify_all()

    def rebuild(self) -> None:
        """Re-seed the data into a new cluster: every entry at index 1, no tombstones.

        Sessions are lost (a KV export does not hold them) and no key is held any more.
        """
        with self.cond:
            self._entries = {
                key: replace(entry, create_index=1, modify_index=1, lock_index=0, session="")
                for key, entry in self._entries.items()
            }
            self._tombstones.clear()
            self._sessions.clear()
            self._expires.clear()
            self._lock_delays.clear()
            self._session_index = 0
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


def _cas_matches(existing: Entry | None, cas: int) -> bool:
    """Say whether a check-and-set at ``cas`` may write over ``existing`` (``kvsSetCASTxn``)."""
    if cas == 0:
        return existing is None
    return existing is not None and existing.modify_index == cas
