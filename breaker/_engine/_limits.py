"""Load protection: callers waiting for a slot under ``maxConcurrentCalls``, and async timeouts.

A breaker counts the calls it admitted and the calls that ended; the difference is the
calls in flight, across threads and tasks. Beyond ``maxConcurrentCalls`` a caller waits
up to ``maxWaitDuration`` for a slot: a thread blocks on a lock of its own, a task awaits
a future of its own loop. A call that ends hands its slot to the first waiter, under the
breaker's lock, so a slot is never both handed on and taken by a newcomer. Waiters follow
the breaker while they wait: one that opens turns them away at once, and a changed
``maxWaitDuration`` moves their deadlines.

An async call with a ``timeout`` runs under a `Deadline`: at the deadline its task is
cancelled, and the cancellation that deadline caused (and only that one) becomes a
`CallTimeoutError`. A new timeout moves the deadlines of the calls in flight.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from breaker._exceptions import CallTimeoutError

if TYPE_CHECKING:
    import asyncio

R = TypeVar("R")


class Waiter:
    """A caller waiting for a slot, answered under the breaker's lock.

    `grant` hands it a slot, `refuse` an error to raise (the breaker opened, or a shorter
    ``maxWaitDuration`` ran out), `nudge` wakes it to look at its deadline again. A thread
    blocks on a lock of its own, a task awaits a future of its own loop. A wait is woken
    once at most: the caller calls `rearm` before it waits again.
    """

    __slots__ = (
        "_future",
        "_lock",
        "_loop",
        "_woken",
        "allowance",
        "granted",
        "refusal",
        "started",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop | None, started: float, allowance: float
    ) -> None:
        self.started = started  # by the breaker's clock
        self.allowance = allowance  # the maxWaitDuration it waits by
        self.granted = False
        self.refusal: Exception | None = None
        self._woken = False
        self._loop = loop
        if loop is None:
            self._lock: threading.Lock | None = threading.Lock()
            self._lock.acquire()
            self._future: asyncio.Future[None] | None = None
        else:
            self._lock = None
            self._future = loop.create_future()

    def grant(self) -> None:
        """Give the waiter its slot and wake it (the breaker's lock is held)."""
        self.granted = True
        self._wake()

    def refuse(self, error: Exception) -> None:
        """Turn the waiter away with ``error`` and wake it (the breaker's lock is held)."""
        self.refusal = error
        self._wake()

    def nudge(self) -> None:
        """Wake the waiter to look at its deadline again (the breaker's lock is held)."""
        self._wake()

    def _wake(self) -> None:
        if self._woken:
            return
        self._woken = True
        if self._lock is not None:
            self._lock.release()
        else:
            assert self._loop is not None and self._future is not None
            # A closed loop's task leaves the queue when it is collected (`_abandon`).
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_resolve, self._future)

    def wait(self, timeout: float) -> bool:
        """Block the thread until woken or ``timeout`` seconds passed; return whether woken."""
        assert self._lock is not None
        # A wait longer than a lock can take (Go's longest duration is) waits that long.
        return self._lock.acquire(timeout=min(max(timeout, 0.0), threading.TIMEOUT_MAX))

    async def wait_async(self, timeout: float) -> bool:
        """Await until woken or ``timeout`` seconds passed; return whether woken."""
        import asyncio

        assert self._future is not None
        done, _ = await asyncio.wait((self._future,), timeout=max(timeout, 0.0))
        return bool(done)

    def rearm(self) -> None:
        """Make a waiter that woke ready to wait again (the breaker's lock is held)."""
        self._woken = False
        if self._loop is not None:
            self._future = self._loop.create_future()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Timers(set["Deadline"]):
    """The deadlines of a breaker's async calls in flight, and the timeout they keep."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float | None) -> None:
        super().__init__()
        self.seconds = seconds


class Deadline:
    """Cancel the running task ``seconds`` after the call began; say which cancellation that was.

    While the call runs, the deadline is one of its breaker's `Timers`: a new ``timeout``
    (or none, or a mode that enforces none) moves it, still counted from the call's start.
    """

    __slots__ = (
        "_done",
        "_fired",
        "_handle",
        "_loop",
        "_started",
        "_task",
        "_timers",
        "name",
        "seconds",
    )

    def __init__(self, name: str, seconds: float, timers: Timers) -> None:
        import asyncio  # (loaded by now: this runs inside a task)

        loop = asyncio.get_running_loop()
        self.name = name
        self.seconds = seconds
        self._done = self._fired = False
        self._task = asyncio.current_task()
        self._loop = loop
        self._started = loop.time()
        self._handle: asyncio.TimerHandle | None = loop.call_at(self._started + seconds, self._fire)
        self._timers = timers
        timers.add(self)

    def _fire(self) -> None:
        if self._task is not None:
            self._fired = True
            self._task.cancel()

    def move(self, seconds: float | None) -> None:
        """Fire ``seconds`` after the call began instead (None: never); from any thread."""
        try:
            self._loop.call_soon_threadsafe(self._moved, seconds)
        except RuntimeError:  # its loop is closed: the call ended with it
            self._timers.discard(self)

    def _moved(self, seconds: float | None) -> None:
        if self._done or self._fired:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if seconds is not None:
            self.seconds = seconds
            self._handle = self._loop.call_at(self._started + seconds, self._fire)

    def finish(self, exc: BaseException | None) -> CallTimeoutError | None:
        """Stop the timer; return the timeout error if ``exc`` is the cancellation it caused."""
        import asyncio

        self._done = True
        if self._handle is not None:
            self._handle.cancel()
        self._timers.discard(self)
        if not self._fired or not isinstance(exc, asyncio.CancelledError):
            return None
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.11+
        if uncancel is not None:
            uncancel()  # the cancellation was ours: the task is not being cancelled any more
        return CallTimeoutError(self.name, self.seconds)


async def within(awaitable: Awaitable[R], seconds: float, name: str, timers: Timers) -> R:
    """Await ``awaitable``; cancel it after ``seconds`` and raise `CallTimeoutError` then."""
    deadline = Deadline(name, seconds, timers)
    try:
        result = await awaitable
    except BaseException as exc:
        timed_out = deadline.finish(exc)
        if timed_out is not None:
            raise timed_out from exc
        raise
    deadline.finish(None)
    return result


SHADOW_TIMEOUT: Any = CallTimeoutError("(shadow)", 0.0)
"""What a call in shadow mode that ran past its timeout is settled with (it is not raised)."""
