"""The coord protocol: how a Provider reads and watches its policy documents."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import attrs

from breaker._exceptions import CoordError

__all__ = ["Coord", "CoordError", "CoordHealth", "OnChange", "Snapshot", "Watch"]

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
