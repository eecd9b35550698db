"""The host of a provider's breakers; event delivery: state changes reach listeners in order.

A breaker posts its transitions while it still holds its own lock, so each breaker's
changes queue in the order they happened; they are delivered once every lock is
released, by one thread at a time. A listener may call back into any breaker: what that
changes is queued and delivered after it returns, by the same loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from breaker._engine._machine import STATES
from breaker._engine._ticker import Ticker
from breaker._state import State

if TYPE_CHECKING:
    from breaker._engine._breaker import Breaker

_log = logging.getLogger("breaker.state")

Clock = Callable[[], float]
Notify = Callable[["Breaker", State, State], None]


def log_transition(brk: Breaker, old: State, new: State) -> None:
    """Log a state change (the notifier of a breaker made without a provider)."""
    level = logging.WARNING if new is State.OPEN else logging.INFO
    _log.log(level, "breaker %r: %s -> %s", brk.name, old.value, new.value)


class Host:
    """What the breakers of one provider share: clocks, event delivery, the ticker, the registry.

    ``unpark(breaker)`` is the registry's hook for a breaker it set aside as idle that has
    something to keep again (a failure counted, a state left). ``durations(name, seconds)``,
    while set (by `breaker.metrics`), is told how long each call ran: the breakers then time
    every call (see `Breaker._refresh`).
    """

    __slots__ = (
        "_busy",
        "_lock",
        "_notify",
        "_queue",
        "clock",
        "durations",
        "ticker",
        "unpark",
        "wall",
    )

    def __init__(
        self,
        clock: Clock,
        wall: Clock,
        notify: Notify = log_transition,
        unpark: Callable[[Breaker], None] | None = None,
    ) -> None:
        self.clock = clock
        self.wall = wall
        self.ticker = Ticker(clock)
        self._notify = notify
        self.unpark = unpark
        self.durations: Callable[[str, float], None] | None = None
        self._lock = threading.Lock()
        self._queue: list[tuple[Breaker, str, str]] = []
        self._busy = False

    def post(self, brk: Breaker, changes: list[tuple[str, str]]) -> None:
        """Queue ``brk``'s transitions (its lock held, so they queue in order) and clear them."""
        with self._lock:
            self._queue.extend((brk, old, new) for old, new in changes)
        changes.clear()

    def deliver(self) -> None:
        """Report queued transitions in order unless another thread already is; no lock held."""
        if not self._queue:  # (a list's truth is read atomically)
            return
        while True:
            with self._lock:
                if self._busy or not self._queue:
                    return
                self._busy = True
                batch, self._queue = self._queue, []
            try:
                for brk, old, new in batch:
                    try:
                        self._notify(brk, STATES[old], STATES[new])
                    except Exception:
                        _log.exception("breaker %r: state-change listener failed", brk.name)
            finally:
                with self._lock:
                    self._busy = False

    def close(self) -> None:
        """Stop the ticker's thread (the provider closed)."""
        self.ticker.close()

    def lock_for_fork(self) -> None:
        self._lock.acquire()
        self.ticker.lock_for_fork()

    def unlock_after_fork(self) -> None:
        self.ticker.unlock_after_fork()
        self._lock.release()

    def reset_after_fork(self) -> None:  # pragma: no cover - runs in a forked child
        """Give the child a fresh lock; the parent's delivering thread is not in the child."""
        self._lock = threading.Lock()
        self._busy = False
        self.ticker.reset_after_fork()
