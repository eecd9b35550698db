"""Named circuit breakers whose policies change at runtime, through Consul KV or any coord.

Importing ``breaker`` loads no HTTP or Consul module: ``breaker.ConsulCoord`` is loaded
on first use (it needs the ``consul`` extra).
"""

from __future__ import annotations

import typing as _typing

from breaker._decorators import circuit
from breaker._default import get_default_provider, set_default_provider
from breaker._engine import Breaker, Guard
from breaker._exceptions import (
    BreakerError,
    BreakerOpenError,
    BulkheadFullError,
    CallTimeoutError,
    CoordError,
    ErrBreakerOpen,
    PolicyError,
    RejectedError,
)
from breaker._patch import patch
from breaker._policy import Policy
from breaker._provider import Config, Provider, new
from breaker._state import Mode, Outcome, State, StateChange, Stats
from breaker.coord._base import Coord, CoordHealth
from breaker.coord._memory import MemoryCoord

if _typing.TYPE_CHECKING:
    from breaker.coord import ConsulCoord

__version__ = "0.2.0.dev0"

__all__ = [
    "Breaker",
    "BreakerError",
    "BreakerOpenError",
    "BulkheadFullError",
    "CallTimeoutError",
    "Config",
    "ConsulCoord",
    "Coord",
    "CoordError",
    "CoordHealth",
    "ErrBreakerOpen",
    "Guard",
    "MemoryCoord",
    "Mode",
    "Outcome",
    "Policy",
    "PolicyError",
    "Provider",
    "RejectedError",
    "State",
    "StateChange",
    "Stats",
    "circuit",
    "get_default_provider",
    "new",
    "patch",
    "set_default_provider",
]


def __getattr__(name: str) -> _typing.Any:
    if name == "ConsulCoord":
        from breaker import coord

        return coord.ConsulCoord
    raise AttributeError(f"module 'breaker' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
