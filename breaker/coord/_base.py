"""The coord protocol: how a Provider reads and watches its policy documents."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

Snapshot = Mapping[str, bytes]
"""Every key under a prefix (full key, no leading slash) mapped to its raw value."""

OnChange = Callable[[Snapshot], None]


class CoordError(Exception):
    """Raise when a coord cannot read its backend (unreachable, refused, malformed answer).

    ``condition`` names the kind of failure (a watcher logs once per change of it),
    ``status`` is the HTTP status when there is one, ``retry_after`` a server's hint.
    """

    def __init__(
        self,
        message: str,
        *,
        condition: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.condition = condition or message
        self.status = status
        self.retry_after = retry_after


@runtime_checkable
class Watch(Protocol):
    """A running watch on one prefix."""

    def stop(self) -> None:
        """Stop watching; after this returns, the callback is not called again."""


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
