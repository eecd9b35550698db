"""The breaker engine: the only package that imports pybreaker.

Its parts, one job each: `_machine` (states, eras, half-open trials, on pybreaker),
`_recording` (what counts, the failure-rate window, the timed lane), `_modes` (an
operator's mode and when it ends), `_events` (state changes delivered outside every
lock), `_paths` (the fast path, written once and generated into every way in),
`_breaker` (the Breaker those parts make) and `_guard` (the context manager and the
drivers' admit/settle).
"""

from breaker._engine._breaker import Breaker, Ticket
from breaker._engine._events import Host, Notify, log_transition
from breaker._engine._guard import Guard
from breaker._engine._machine import Clock
from breaker._engine._recording import Exclusions, exclusions, judge

__all__ = [
    "Breaker",
    "Clock",
    "Exclusions",
    "Guard",
    "Host",
    "Notify",
    "Ticket",
    "exclusions",
    "judge",
    "log_transition",
]
