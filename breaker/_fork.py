"""Keep locks sane across ``os.fork()`` (gunicorn ``--preload``, uWSGI, multiprocessing).

Objects register here; before a fork their locks are taken, in registration level order
(coords before providers, as a coord's delivery takes the provider's locks), so no
other thread is half-way through an update when the process is copied. The parent
then releases them; the child replaces them with fresh ones and restarts what a fork
cannot copy (threads), level by level: fleet publishers last, so the thread a child's
publisher starts finds every provider's and breaker's lock fresh.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

COORD = 0
PROVIDER = 1
FLEET = 2


class ForkAware(Protocol):
    """What a registered object does around a fork."""

    def _fork_acquire(self) -> None: ...

    def _fork_release(self) -> None: ...

    def _fork_reset(self) -> None: ...


_levels: tuple[weakref.WeakSet[ForkAware], ...] = (
    weakref.WeakSet(),
    weakref.WeakSet(),
    weakref.WeakSet(),
)
_guard = threading.Lock()
_held: list[ForkAware] = []


def register(obj: ForkAware, level: int) -> None:
    """Take part in fork handling at ``level`` (`COORD`, `PROVIDER` or `FLEET`)."""
    with _guard:
        _levels[level].add(obj)


def unregister(obj: ForkAware) -> None:
    """Stop taking part in fork handling (after close)."""
    with _guard:
        for level in _levels:
            level.discard(obj)


def _before() -> None:
    _guard.acquire()
    for level in _levels:
        for obj in list(level):
            obj._fork_acquire()
            _held.append(obj)


def _after_in_parent() -> None:
    for obj in reversed(_held):
        obj._fork_release()
    _held.clear()
    _guard.release()


def _after_in_child() -> None:  # pragma: no cover - runs in a forked child, unmeasured
    global _guard
    for obj in _held:
        obj._fork_reset()
    _held.clear()
    _guard = threading.Lock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX Python has it
    os.register_at_fork(
        before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child
    )
