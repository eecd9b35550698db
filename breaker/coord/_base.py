"""The coord protocols: how a Provider reads and watches its policy documents.

`Coord` is all a provider needs for policies. Two optional capabilities sit beside it,
each a protocol of its own, so a coord without them still serves policies: `SessionCoord`
(sessions with a TTL holding keys, for the fleet records) and `TxnCoord` (several KV
operations applied atomically, with check-and-set, for the write history).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

import attrs

from breaker._exceptions import CoordError

__all__ = [
    "Coord",
    "CoordError",
    "CoordHealth",
    "KVEntry",
    "OnChange",
    "SessionBehavior",
    "SessionCoord",
    "Snapshot",
    "TxnCoord",
    "TxnError",
    "TxnOp",
    "TxnResult",
    "TxnVerb",
    "Watch",
]

Snapshot = Mapping[str, bytes]
"""Every key under a prefix (full key, no leading slash) mapped to its raw value."""

OnChange = Callable[[Snapshot], None]


@attrs.frozen
class CoordHealth:
    """What a watch knows of its backend, for status pages and metrics.

    ``up`` is whether the last read succeeded; ``last_sync`` the wall-clock time
    (``time.time()``) of the last successful read, None before the first;
    ``last_error`` the message of the last failed read, None once reads work again.
    """

    up: bool
    last_sync: float | None = None
    last_error: str | None = None


@runtime_checkable
class Watch(Protocol):
    """A running watch on one prefix."""

    def stop(self) -> None:
        """Stop watching; after this returns, the callback is not called again."""

    def health(self) -> CoordHealth:
        """Return what the watch knows of its backend now."""
        ...


@runtime_checkable
class Coord(Protocol):
    """A source of policy documents: load a prefix once, watch it, close.

    A prefix never starts with ``/`` and ends with ``/``. Snapshots hold full keys. A
    watch calls ``on_change`` with the complete content of the prefix whenever it may
    have changed, never concurrently with itself; redundant snapshots are allowed (the
    provider compares content), missed changes are not.
    """

    def load(self, prefix: str) -> Snapshot:
        """Return every key under ``prefix``; raise `CoordError` if the backend cannot answer."""
        ...

    def watch(self, prefix: str, on_change: OnChange) -> Watch:
        """Start delivering snapshots of ``prefix`` to ``on_change``."""
        ...

    def close(self) -> None:
        """Stop every watch and release connections and threads; idempotent."""
        ...


SessionBehavior = Literal["release", "delete"]
"""What happens to the keys a session holds when it ends: released, or deleted."""

DEFAULT_LOCK_DELAY = 15.0
"""Seconds a key released by an ended session cannot be acquired again (Consul's default)."""
SESSION_TTL_MIN = 10.0
"""The shortest session TTL Consul accepts by default (its ``session_ttl_min``)."""
SESSION_TTL_MAX = 86400.0
"""The longest session TTL Consul accepts (a day)."""


def check_session_args(ttl: float, behavior: str, lock_delay: float) -> None:
    """Refuse what Consul would refuse when creating a session, with a clear ValueError."""
    if behavior not in ("release", "delete"):
        raise ValueError(f"behavior must be 'release' or 'delete', not {behavior!r}")
    if ttl != 0 and not SESSION_TTL_MIN <= ttl <= SESSION_TTL_MAX:
        raise ValueError(f"a session TTL must be 0 or within [10, 86400] seconds, got {ttl}")
    if not lock_delay >= 0:
        raise ValueError(f"lock_delay must be >= 0 seconds, got {lock_delay}")


@runtime_checkable
class SessionCoord(Protocol):
    """A coord whose keys can be held by sessions that end unless renewed (Consul's sessions).

    A session lives at least ``ttl`` seconds after it is created or renewed, and ends at
    most ``2 * ttl`` seconds after (Consul's grace); it ends early when destroyed. When it
    ends, the keys it holds are deleted (``behavior="delete"``) or released
    (``"release"``), and none of them can be acquired for ``lock_delay`` seconds.
    Watchers of those keys hear of it as of any other change.
    """

    def create_session(
        self,
        *,
        ttl: float,
        behavior: SessionBehavior = "release",
        lock_delay: float = DEFAULT_LOCK_DELAY,
        name: str = "",
    ) -> str:
        """Create a session and return its ID; ``ttl`` is 10 s to a day, or 0 for none."""
        ...

    def renew_session(self, session: str) -> bool:
        """Restart the session's TTL; return False when it no longer exists."""
        ...

    def destroy_session(self, session: str) -> None:
        """End the session now (its keys go as its behaviour says); unknown IDs are ignored."""

    def acquire(self, key: str, value: bytes | str, session: str) -> bool:
        """Write ``key`` held by ``session``; return False if another session holds it.

        Also False while ``key`` is under a lock-delay. Raise `CoordError` when the session
        does not exist or the backend cannot answer.
        """
        ...

    def release(self, key: str, value: bytes | str, session: str) -> bool:
        """Write ``key`` and let go of it; return False if ``session`` does not hold it."""
        ...

    def delete(self, key: str, *, recurse: bool = False) -> object:
        """Delete ``key`` (or every key under it), whoever holds it."""
        ...


TxnVerb = Literal[
    "set",
    "cas",
    "get",
    "get-tree",
    "check-index",
    "check-session",
    "check-not-exists",
    "delete",
    "delete-tree",
    "delete-cas",
    "lock",
    "unlock",
]
"""The KV operations of a transaction, named as Consul's ``/v1/txn`` names them."""


@attrs.frozen
class KVEntry:
    """One key as a transaction reports it.

    ``value`` is None in the result of an operation that is not a read (Consul answers
    those without values); ``session`` is the ID of the session holding the key, if any.
    """

    key: str
    value: bytes | None
    modify_index: int
    create_index: int = 0
    flags: int = 0
    lock_index: int = 0
    session: str | None = None


@attrs.frozen
class TxnOp:
    """One KV operation of a transaction; build them with the class methods.

    ``index`` is the ModifyIndex a ``cas``, ``check-index`` or ``delete-cas`` expects
    (0 for ``cas`` means "only if the key does not exist").
    """

    verb: TxnVerb
    key: str
    value: bytes | None = None
    index: int = 0
    session: str | None = None
    flags: int = 0

    @classmethod
    def set(cls, key: str, value: bytes | str, *, flags: int = 0) -> TxnOp:
        """Write ``key``."""
        return cls("set", key, _bytes(value), flags=flags)

    @classmethod
    def cas(cls, key: str, value: bytes | str, index: int, *, flags: int = 0) -> TxnOp:
        """Write ``key`` only if its ModifyIndex is ``index`` (0: only if it is absent)."""
        return cls("cas", key, _bytes(value), index=index, flags=flags)

    @classmethod
    def get(cls, key: str) -> TxnOp:
        """Read ``key``; the transaction fails if it does not exist."""
        return cls("get", key)

    @classmethod
    def get_tree(cls, prefix: str) -> TxnOp:
        """Read every key under ``prefix``."""
        return cls("get-tree", prefix)

    @classmethod
    def check_index(cls, key: str, index: int) -> TxnOp:
        """Fail the transaction unless ``key`` exists at ModifyIndex ``index``."""
        return cls("check-index", key, index=index)

    @classmethod
    def check_session(cls, key: str, session: str | None) -> TxnOp:
        """Fail the transaction unless ``key`` exists held by ``session`` (None: by none)."""
        return cls("check-session", key, session=session)

    @classmethod
    def check_not_exists(cls, key: str) -> TxnOp:
        """Fail the transaction if ``key`` exists."""
        return cls("check-not-exists", key)

    @classmethod
    def delete(cls, key: str) -> TxnOp:
        """Delete ``key`` (nothing happens if it does not exist)."""
        return cls("delete", key)

    @classmethod
    def delete_tree(cls, prefix: str) -> TxnOp:
        """Delete every key under ``prefix``."""
        return cls("delete-tree", prefix)

    @classmethod
    def delete_cas(cls, key: str, index: int) -> TxnOp:
        """Delete ``key`` only if its ModifyIndex is ``index`` (an absent key is fine)."""
        return cls("delete-cas", key, index=index)

    @classmethod
    def lock(cls, key: str, value: bytes | str, session: str) -> TxnOp:
        """Write ``key`` held by ``session``; the transaction fails if another holds it."""
        return cls("lock", key, _bytes(value), session=session)

    @classmethod
    def unlock(cls, key: str, value: bytes | str, session: str) -> TxnOp:
        """Write ``key`` and release it; the transaction fails unless ``session`` holds it."""
        return cls("unlock", key, _bytes(value), session=session)


@attrs.frozen
class TxnError:
    """Why one operation failed: its position in the transaction and the backend's words.

    ``op_index`` is -1 when the backend did not say which operation failed.
    """

    op_index: int
    what: str


@attrs.frozen
class TxnResult:
    """What a transaction did: all of it (``ok``, with ``entries``) or nothing (``errors``).

    ``entries`` holds, in order, what each operation reports: the entry written, read or
    checked (values only for reads; ``get-tree`` reports every key it found; deletes and
    ``check-not-exists`` report nothing). A result is true when the transaction applied.
    """

    ok: bool
    entries: tuple[KVEntry, ...] = ()
    errors: tuple[TxnError, ...] = ()

    def __bool__(self) -> bool:
        return self.ok


MAX_TXN_OPS = 128
"""The most operations one transaction may hold (Consul's limit)."""


@runtime_checkable
class TxnCoord(Protocol):
    """A coord that applies several KV operations atomically (Consul's ``/v1/txn``)."""

    def txn(self, ops: Sequence[TxnOp]) -> TxnResult:
        """Apply ``ops`` all or nothing, in order; raise `CoordError` if the backend cannot.

        A transaction that the store refuses (a check failed, a CAS lost, a lock held) is
        not an error: it returns a result that is false, with the reasons.
        """
        ...


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)
