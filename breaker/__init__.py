"""Named circuit breakers whose policies change at runtime, through Consul KV or any coord."""

from breaker._decorators import Guard, circuit, set_default_provider
from breaker._engine import Breaker
from breaker._exceptions import (
    BreakerError,
    BreakerOpenError,
    CoordError,
    ErrBreakerOpen,
    PolicyError,
)
from breaker._policy import Policy
from breaker._provider import Config, Provider, new
from breaker._state import State, StateChange
from breaker.coord import ConsulCoord, Coord, MemoryCoord

__version__ = "0.1.0"

__all__ = [
    "Breaker",
    "BreakerError",
    "BreakerOpenError",
    "Config",
    "ConsulCoord",
    "Coord",
    "CoordError",
    "ErrBreakerOpen",
    "Guard",
    "MemoryCoord",
    "Policy",
    "PolicyError",
    "Provider",
    "State",
    "StateChange",
    "circuit",
    "new",
    "set_default_provider",
]
