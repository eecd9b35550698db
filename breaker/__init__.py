"""Named circuit breakers whose policies change at runtime, through Consul KV or any coord."""

from breaker._decorators import Guard, circuit, set_default_provider
from breaker._engine import Breaker
from breaker._policy import Policy, PolicyError
from breaker._provider import Config, Provider, new
from breaker._state import BreakerOpenError, ErrBreakerOpen, State, StateChange
from breaker.coord import ConsulCoord, Coord, CoordError, MemoryCoord

__version__ = "0.1.0"

__all__ = [
    "Breaker",
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
