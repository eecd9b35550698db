"""MemoryCoord: the in-process coord, for tests, demos and single-process setups."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

import attrs

from breaker import _fork
from breaker._exceptions import CoordError
from breaker.coord._base import (
    DEFAULT_LOCK_DELAY,
    MAX_TXN_OPS,
    CoordHealth,
    KVEntry,
    OnChange,
    SessionBehavior,
    Snapshot,
    TxnError,
    TxnOp,
    TxnResult,
    Watch,
    check_session_args,
)

_log = logging.getLogger("breaker")

MAX_LOCK_DELAY = 60.0
"""Consul caps a session's lock-delay at a minute."""
_TTL_MULTIPLIER = 2


class _MemoryWatch:
    """A watch on one prefix of a MemoryCoord."""

    def __init__(self, coord: MemoryCoord, prefix: str, on_change: OnChange) -> None:
        self._coord = coord
        self.prefix = prefix
        self.on_change = on_change
        self.started = time.time()

    def stop(self) -> None:
        """Stop watching; no snapshot is delivered after this returns."""
        self._coord._remove(self)

    def health(self) -> CoordHealth:
        """Return a memory coord's health: always up, synced when the watch started."""
        return CoordHealth(up=True, last_sync=self.started)


@attrs.define
class _Session:
    behavior: SessionBehavior
    ttl: float
    lock_delay: float
    expires: float | None


class _Failed(Exception):
    """One operation of a transaction failed; the text is Consul's."""


class MemoryCoord:
    """Keep policy documents in memory; watchers hear of every change at once.

    Snapshots are delivered synchronously, in order, by the thread that calls `put` or
    `delete`, so when ``put`` returns the change is in effect.

    It also has sessions and transactions, as Consul has them (`SessionCoord`,
    `TxnCoord`): every write gets the next index, a session ends ``2 * ttl`` after it was
    last renewed on ``clock`` (monotonic seconds; a `FakeClock` in tests), and its keys
    are then released or deleted and watchers told. Time is looked at whenever the coord
    is used, and by `expire_sessions`: nothing runs in the background.
    """

    def __init__(
        self,
        data: Mapping[str, bytes | str] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Reentrant: a watcher may read the coord from inside its callback.
        self._lock = threading.RLock()
        self._clock = clock
        self._index = 0
        self._entries: dict[str, KVEntry] = {}
        self._watches: list[_MemoryWatch] = []
        self._sessions: dict[str, _Session] = {}
        self._lock_delays: dict[str, float] = {}
        for key, value in (data or {}).items():
            self._index += 1
            self._write(self._index, _key(key), _bytes(value))
        _fork.register(self, _fork.COORD)

    # -- documents --------------------------------------------------------------------------

    def put(self, key: str, value: bytes | str) -> None:
        """Store ``value`` (str is UTF-8 encoded) at ``key`` and notify watchers of its prefix."""
        self.put_many({key: value})

    def put_many(self, items: Mapping[str, bytes | str]) -> None:
        """Store several keys at once; watchers see them all in one snapshot (a transaction)."""
        with self._lock:
            self._expire()
            self._index += 1
            keys = [_key(key) for key in items]
            for key, value in zip(keys, items.values(), strict=True):
                self._write(self._index, key, _bytes(value))
            self._deliver(keys)

    def delete(self, key: str, *, recurse: bool = False) -> None:
        """Remove ``key`` (or every key under it, with ``recurse``) and notify watchers."""
        key = _key(key)
        with self._lock:
            self._expire()
            if recurse:
                gone = [k for k in self._entries if k.startswith(key)]
            else:
                gone = [key] if key in self._entries else []
            for k in gone:
                del self._entries[k]
            self._index += 1
            self._deliver(gone)

    def get(self, key: str) -> bytes | None:
        """Return the value at ``key``, or None."""
        with self._lock:
            self._expire()
            entry = self._entries.get(_key(key))
            return None if entry is None else entry.value

    def load(self, prefix: str) -> Snapshot:
        """Return every key under ``prefix``."""
        with self._lock:
            self._expire()
            return self._snapshot(prefix)

    def watch(self, prefix: str, on_change: OnChange) -> Watch:
        """Deliver the current content of ``prefix`` now, then after every change under it."""
        watch = _MemoryWatch(self, prefix, on_change)
        with self._lock:
            self._expire()
            self._watches.append(watch)
            on_change(self._snapshot(prefix))
        return watch

    def close(self) -> None:
        """Stop every watch."""
        with self._lock:
            self._watches.clear()
        _fork.unregister(self)

    # -- sessions ---------------------------------------------------------------------------

    def create_session(
        self,
        *,
        ttl: float,
        behavior: SessionBehavior = "release",
        lock_delay: float = DEFAULT_LOCK_DELAY,
        name: str = "",
    ) -> str:
        """Create a session and return its ID; ``ttl`` is 10 s to a day, or 0 for none."""
        check_session_args(ttl, behavior, lock_delay)
        with self._lock:
            self._expire()
            session_id = str(uuid.uuid4())
            expires = self._clock() + ttl * _TTL_MULTIPLIER if ttl else None
            self._sessions[session_id] = _Session(
                behavior, ttl, min(lock_delay, MAX_LOCK_DELAY), expires
            )
            self._index += 1
            return session_id

    def renew_session(self, session: str) -> bool:
        """Restart the session's TTL; return False when it no longer exists."""
        with self._lock:
            self._expire()
            found = self._sessions.get(session)
            if found is None:
                return False
            if found.ttl:
                found.expires = self._clock() + found.ttl * _TTL_MULTIPLIER
            return True

    def destroy_session(self, session: str) -> None:
        """End the session now: its keys are released or deleted, watchers told."""
        with self._lock:
            self._expire()
            if session in self._sessions:
                self._end(session)

    def acquire(self, key: str, value: bytes | str, session: str) -> bool:
        """Write ``key`` held by ``session``; False if another session holds it or it is
        under a lock-delay; `CoordError` if the session does not exist."""
        with self._lock:
            self._expire()
            key = _key(key)
            if self._delayed(key):
                return False
            self._index += 1
            try:
                written = self._lock_key(self._index, key, _bytes(value), 0, session)
            except _Failed as exc:
                raise CoordError(str(exc), condition="invalid session") from None
            if written:
                self._deliver([key])
            return written is not None

    def release(self, key: str, value: bytes | str, session: str) -> bool:
        """Write ``key`` and let go of it; return False if ``session`` does not hold it."""
        with self._lock:
            self._expire()
            key = _key(key)
            self._index += 1
            try:
                released = self._unlock_key(self._index, key, _bytes(value), 0, session)
            except _Failed as exc:
                raise CoordError(str(exc), condition="missing session") from None
            if released is None:
                return False
            self._deliver([key])
            return True

    def expire_sessions(self) -> int:
        """End every session whose TTL ran out on the clock; return how many ended.

        Any use of the coord does this first; call it to make expiry happen at a moment
        of your choosing (after moving a test's clock, say).
        """
        with self._lock:
            return self._expire()

    # -- transactions -----------------------------------------------------------------------

    def txn(self, ops: Sequence[TxnOp]) -> TxnResult:
        """Apply ``ops`` all or nothing, in order, as Consul's ``/v1/txn`` does."""
        if len(ops) > MAX_TXN_OPS:
            raise ValueError(
                f"a transaction holds at most {MAX_TXN_OPS} operations, got {len(ops)}"
            )
        with self._lock:
            self._expire()
            errors = [
                TxnError(n, problem)
                for n, op in enumerate(ops)
                if (problem := self._vet(op)) is not None
            ]
            if errors:
                return TxnResult(False, errors=tuple(errors))
            saved = dict(self._entries)
            self._index += 1
            entries: list[KVEntry] = []
            changed: list[str] = []
            for n, op in enumerate(ops):
                try:
                    entries += self._txn_op(self._index, op, changed)
                except _Failed as exc:
                    errors.append(TxnError(n, str(exc)))
            if errors:
                self._entries = saved
                return TxnResult(False, errors=tuple(errors))
            self._deliver(changed)
            return TxnResult(True, entries=tuple(entries))

    def _vet(self, op: TxnOp) -> str | None:
        """Return why ``op`` may not run at all (Consul checks this before raft), or None."""
        key = _key(op.key)
        if not key and op.verb != "delete-tree":
            return "Must provide key"
        if op.verb == "lock" and self._delayed(key):
            return f"failed to lock key {_q(key)} due to lock delay"
        return None

    def _txn_op(self, index: int, op: TxnOp, changed: list[str]) -> list[KVEntry]:
        key, verb = _key(op.key), op.verb
        entry: KVEntry | None = None
        if verb == "set":
            entry = self._write(index, key, op.value, op.flags)
        elif verb == "cas":
            existing = self._entries.get(key)
            if (existing is None) != (op.index == 0) or (
                existing is not None and existing.modify_index != op.index
            ):
                raise _Failed(f"failed to set key {_q(key)}, index is stale")
            entry = self._write(index, key, op.value, op.flags)
        elif verb == "lock":
            entry = self._lock_key(index, key, op.value, op.flags, op.session or "")
            if entry is None:
                raise _Failed(f"failed to lock key {_q(key)}, lock is already held")
        elif verb == "unlock":
            entry = self._unlock_key(index, key, op.value, op.flags, op.session or "")
            if entry is None:
                raise _Failed(
                    f"failed to unlock key {_q(key)}, lock isn't held, "
                    "or is held by another session"
                )
        elif verb in ("delete", "delete-tree", "delete-cas"):
            existing = self._entries.get(key)
            if verb == "delete-cas" and existing is not None and existing.modify_index != op.index:
                raise _Failed(f"failed to delete key {_q(key)}, index is stale")
            doomed = (
                [k for k in self._entries if k.startswith(key)] if verb == "delete-tree" else []
            )
            doomed += [key] if verb != "delete-tree" and existing is not None else []
            for k in doomed:
                del self._entries[k]
            changed += doomed
        elif verb == "get":
            entry = self._entries.get(key)
            if entry is None:
                raise _Failed(f"key {_q(key)} doesn't exist")
            return [entry]
        elif verb == "get-tree":
            return [self._entries[k] for k in sorted(self._entries) if k.startswith(key)]
        elif verb == "check-index":
            entry = self._entries.get(key)
            if entry is None:
                raise _Failed(f"failed to check index, key {_q(key)} doesn't exist")
            if entry.modify_index != op.index:
                raise _Failed(
                    f"failed index check for key {_q(key)}, current modify index "
                    f"{entry.modify_index} != {op.index}"
                )
        elif verb == "check-session":
            entry = self._entries.get(key)
            if entry is None:
                raise _Failed(f"failed to check session, key {_q(key)} doesn't exist")
            if (entry.session or "") != (op.session or ""):
                raise _Failed(
                    f"failed session check for key {_q(key)}, current session "
                    f"{_q(entry.session or '')} != {_q(op.session or '')}"
                )
        elif verb == "check-not-exists":
            if key in self._entries:
                raise _Failed(f"key {_q(key)} exists")
        else:
            raise _Failed(f"unknown KV verb {_q(verb)}")
        if entry is None:
            return []
        if verb not in ("check-index", "check-session"):
            changed.append(key)
        return [attrs.evolve(entry, value=None)]

    # -- the store, lock held ---------------------------------------------------------------

    def _write(
        self,
        index: int,
        key: str,
        value: bytes | None,
        flags: int = 0,
        *,
        lock_index: int = 0,
        holder: str | None = None,
        keep_holder: bool = True,
    ) -> KVEntry:
        """Store an entry as Consul does: a plain write keeps the session holding it."""
        existing = self._entries.get(key)
        if keep_holder:
            holder = existing.session if existing else None
        create = existing.create_index if existing is not None else index
        entry = KVEntry(key, value or b"", index, create, flags, lock_index, holder or None)
        if existing is not None and attrs.evolve(existing, modify_index=index) == entry:
            return existing  # an identical write changes nothing, indexes included
        self._entries[key] = entry
        return entry

    def _lock_key(
        self, index: int, key: str, value: bytes | None, flags: int, session: str
    ) -> KVEntry | None:
        if not session:
            raise _Failed("missing session")
        if session not in self._sessions:
            raise _Failed(f"invalid session {_q(session)}")
        existing = self._entries.get(key)
        lock_index = 1
        if existing is not None:
            if existing.session == session:
                lock_index = existing.lock_index
            elif existing.session:
                return None
            else:
                lock_index = existing.lock_index + 1
        return self._write(
            index, key, value, flags, lock_index=lock_index, holder=session, keep_holder=False
        )

    def _unlock_key(
        self, index: int, key: str, value: bytes | None, flags: int, session: str
    ) -> KVEntry | None:
        if not session:
            raise _Failed("missing session")
        existing = self._entries.get(key)
        if existing is None or existing.session != session:
            return None
        return self._write(
            index, key, value, flags, lock_index=existing.lock_index, keep_holder=False
        )

    def _delayed(self, key: str) -> bool:
        until = self._lock_delays.get(key)
        if until is not None and until <= self._clock():
            del self._lock_delays[key]
            return False
        return until is not None

    def _expire(self) -> int:
        now = self._clock()
        due = [
            sid for sid, s in self._sessions.items() if s.expires is not None and s.expires <= now
        ]
        for session_id in due:
            self._end(session_id)
        return len(due)

    def _end(self, session_id: str) -> None:
        session = self._sessions.pop(session_id)
        self._index += 1
        held = [key for key, entry in self._entries.items() if entry.session == session_id]
        for key in held:
            entry = self._entries[key]
            if session.behavior == "delete":
                del self._entries[key]
            else:
                self._write(
                    self._index,
                    key,
                    entry.value,
                    entry.flags,
                    lock_index=entry.lock_index,
                    keep_holder=False,
                )
            if session.lock_delay > 0:
                self._lock_delays[key] = self._clock() + session.lock_delay
        self._deliver(held)

    # -- watches and fork -------------------------------------------------------------------

    def _fork_acquire(self) -> None:
        self._lock.acquire()

    def _fork_release(self) -> None:
        self._lock.release()

    def _fork_reset(self) -> None:  # pragma: no cover - runs in a forked child
        self._lock = threading.RLock()

    def _deliver(self, keys: list[str]) -> None:
        for watch in list(self._watches):
            if any(k.startswith(watch.prefix) for k in keys):
                try:
                    watch.on_change(self._snapshot(watch.prefix))
                except Exception:
                    _log.exception("coord watcher of %r failed", watch.prefix)

    def _snapshot(self, prefix: str) -> Snapshot:
        with self._lock:
            return {
                k: entry.value or b"" for k, entry in self._entries.items() if k.startswith(prefix)
            }

    def _remove(self, watch: _MemoryWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)


def _key(key: str) -> str:
    return key.lstrip("/")


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _q(text: str) -> str:
    """Quote as Go's ``%q`` does for the texts Consul's errors hold."""
    return json.dumps(text, ensure_ascii=False)
