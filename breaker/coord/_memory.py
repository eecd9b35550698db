"""MemoryCoord: the in-process coord, for tests, demos and single-process setups."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from breaker import _fork
from breaker.coord._base import CoordHealth, OnChange, Snapshot, Watch

_log = logging.getLogger("breaker")


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


class MemoryCoord:
    """Keep policy documents in memory; watchers hear of every change at once.

    Snapshots are delivered synchronously, in order, by the thread that calls `put` or
    `delete`, so when ``put`` returns the change is in effect.
    """

    def __init__(self, data: Mapping[str, bytes | str] | None = None) -> None:
        # Reentrant: a watcher may read the coord from inside its callback.
        self._lock = threading.RLock()
        self._data: dict[str, bytes] = {}
        self._watches: list[_MemoryWatch] = []
        for key, value in (data or {}).items():
            self._data[_key(key)] = _bytes(value)
        _fork.register(self, _fork.COORD)

    def put(self, key: str, value: bytes | str) -> None:
        """Store ``value`` (str is UTF-8 encoded) at ``key`` and notify watchers of its prefix."""
        self.put_many({key: value})

    def put_many(self, items: Mapping[str, bytes | str]) -> None:
        """Store several keys at once; watchers see them all in one snapshot (a transaction)."""
        with self._lock:
            keys = []
            for key, value in items.items():
                keys.append(_key(key))
                self._data[keys[-1]] = _bytes(value)
            self._deliver(keys)

    def delete(self, key: str, *, recurse: bool = False) -> None:
        """Remove ``key`` (or every key under it, with ``recurse``) and notify watchers."""
        key = _key(key)
        with self._lock:
            if recurse:
                gone = [k for k in self._data if k.startswith(key)]
            else:
                gone = [key] if key in self._data else []
            for k in gone:
                del self._data[k]
            self._deliver(gone)

    def get(self, key: str) -> bytes | None:
        """Return the value at ``key``, or None."""
        with self._lock:
            return self._data.get(_key(key))

    def load(self, prefix: str) -> Snapshot:
        """Return every key under ``prefix``."""
        return self._snapshot(prefix)

    def watch(self, prefix: str, on_change: OnChange) -> Watch:
        """Deliver the current content of ``prefix`` now, then after every change under it."""
        watch = _MemoryWatch(self, prefix, on_change)
        with self._lock:
            self._watches.append(watch)
            on_change(self._snapshot(prefix))
        return watch

    def close(self) -> None:
        """Stop every watch."""
        with self._lock:
            self._watches.clear()
        _fork.unregister(self)

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
            return {k: v for k, v in self._data.items() if k.startswith(prefix)}

    def _remove(self, watch: _MemoryWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)


def _key(key: str) -> str:
    return key.lstrip("/")


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
