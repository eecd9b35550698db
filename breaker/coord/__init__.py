"""Coords: where a Provider reads and watches its policy documents.

`Coord` is the protocol a provider needs; `SessionCoord` and `TxnCoord` are optional
capabilities (sessions holding keys, atomic transactions) that `MemoryCoord` and
`ConsulCoord` both have.

`ConsulCoord` is loaded on first use, so importing this package loads no HTTP or Consul
module; without the Consul extra, that use raises an ImportError that names it.
"""

from __future__ import annotations

import typing

from breaker.coord._base import (
    Coord,
    CoordError,
    CoordHealth,
    KVEntry,
    OnChange,
    SessionBehavior,
    SessionCoord,
    Snapshot,
    TxnCoord,
    TxnError,
    TxnOp,
    TxnResult,
    TxnVerb,
    Watch,
)
from breaker.coord._memory import MemoryCoord

if typing.TYPE_CHECKING:
    from breaker.coord.consul import ConsulCoord

__all__ = [
    "ConsulCoord",
    "Coord",
    "CoordError",
    "CoordHealth",
    "KVEntry",
    "MemoryCoord",
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


def __getattr__(name: str) -> typing.Any:
    if name == "ConsulCoord":
        from breaker.coord import consul

        coord: typing.Any = consul.ConsulCoord
        globals()[name] = coord
        return coord
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
