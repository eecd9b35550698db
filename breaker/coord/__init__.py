"""Coords: where a Provider reads and watches its policy documents."""

from breaker.coord._base import Coord, CoordError, CoordHealth, OnChange, Snapshot, Watch
from breaker.coord._consul import ConsulCoord
from breaker.coord._memory import MemoryCoord

__all__ = [
    "ConsulCoord",
    "Coord",
    "CoordError",
    "CoordHealth",
    "MemoryCoord",
    "OnChange",
    "Snapshot",
    "Watch",
]
