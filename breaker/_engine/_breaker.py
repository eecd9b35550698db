"""Breaker: one named circuit breaker, made of the engine's parts.

The state machine (`Machine`) decides states and trials; recording (`Window`, the outcome
counts here) keeps what calls did; the mode layer (`ModeEnd`) lets an operator steer;
the host (`Host`) delivers events. The ways in run the fast path (`_paths`): the lanes
this class keeps current (`_refresh`), then `_admit` and `_settle` for everything else.
Admission and settling are each one short critical section, or none; no lock is ever
held while a guarded call runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Final, ParamSpec, TypeVar

import attrs

from breaker._engine import _paths
from breaker._engine._events import Host, Notify, log_transition
from breaker._engine._limits import Timers, Waiter
from breaker._engine._machine import (
    CLOSED,
    HALF_OPEN,
    HUNG,
    OPEN,
    STATES,
    STATS_ONLY,
    TRACKED,
    UNCOUNTED,
    Call,
    Clock,
    Era,
    Machine,
)
from breaker._engine._modes import ModeEnd, log_change, log_expiry, mode_end
from breaker._engine._recording import Exclusions, Lane, Window
from breaker._exceptions import BreakerOpenError, BulkheadFullError, CallTimeoutError
from breaker._policy import Policy
from breaker._state import Mode, Outcome, State, Stats

if TYPE_CHECKING:
    import asyncio

P = ParamSpec("P")
R = TypeVar("R")

Ticket = Era | Lane | Call

# Module globals are cheaper to read on the hot paths than enum members.
_OPEN_STATE: Final = State.OPEN
_AUTO: Final = Mode.AUTO
_FORCED_OPEN: Final = Mode.FORCED_OPEN
_DISABLED: Final = Mode.DISABLED
_MODE_VALUES: Final = {mode: mode.value for mode in Mode}
_SHADOW: Final = Mode.SHADOW
_SUCCESS: Final = Outcome.SUCCESS
_FAILURE: Final = Outcome.FAILURE
_SLOW: Final = Outcome.SLOW
_EXCLUDED: Final = Outcome.EXCLUDED
_CANCELLED: Final = Outcome.CANCELLED
_TIMEOUT: Final = Outcome.TIMEOUT
_INF: Final = math.inf
_SLICES = 8  # a timed lane admits calls for a slowCallDuration divided by this
_NO_TICKS: Final[frozenset[float]] = frozenset()  # shared: an empty frozenset is 216 B each
_NEVER: Final = -math.inf


class _Critical:
    """The breaker's lock; the lanes closed while it is held, recomputed on leaving it.

    With the lanes closed, a call that comes while a state, a mode or a policy changes
    takes the slow way, which sees each change as soon as it is made: once ``mode``
    reads forced-open, say, no call runs (a thread switch in the middle of the change,
    at its log line, would otherwise let calls through the old lane). Transitions are
    queued while the lock is still held (so they queue in order) and delivered after it
    is released; a breaker its registry set aside as idle that holds something again (a
    failure, a state) is handed back to the registry.
    """

    __slots__ = ("_brk", "_deliver", "_held")

    def __init__(self, brk: Breaker, deliver: bool = True) -> None:
        self._brk = brk
        self._deliver = deliver

    def __enter__(self) -> None:
        brk = self._brk
        brk._lock.acquire()
        brk._fast = None
        timed = self._held = brk._timed
        if timed is not None:
            if timed.clocked:
                timed.until = _NEVER  # stays in place: the slice counts its calls in flight
            else:
                brk._timed = None  # set aside, and put back on leaving

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        brk = self._brk
        try:
            held = self._held
            if held is not None and brk._timed is None and not held.clocked:
                brk._timed = held  # the same lane again if it still fits: calls on it settle fast
            if brk._waiters:
                brk._review_waiters()
            if brk._timers is not None:
                brk._move_timers()
            brk._refresh()
            changes = brk._m.changes
            if changes:
                brk._host.post(brk, changes)
        finally:
            brk._lock.release()
        if self._deliver:
            brk._host.deliver()
        if brk._parked and not brk._idle():
            brk._unpark()


class Breaker:
    """A named circuit breaker. Get one from `Provider.get_breaker`; never build one directly."""

    __slots__ = (
        "__weakref__",
        "_admitted",
        "_cells",
        "_clock",
        "_ended",
        "_fast",
        "_gone",
        "_hanging",
        "_host",
        "_hung_at",
        "_limit",
        "_lock",
        "_m",
        "_mode",
        "_mode_end",
        "_n_bulkhead",
        "_n_cancelled",
        "_n_excluded",
        "_n_failure",
        "_n_rejected",
        "_n_slow",
        "_n_timeout",
        "_name",
        "_ok",
        "_parked",
        "_policy",
        "_shut",
        "_ticks",
        "_timed",
        "_timers",
        "_waiters",
        "_window",
    )

    def __init__(
        self,
        name: str,
        policy: Policy,
        *,
        clock: Clock,
        wall: Clock | None = None,
        notify: Notify = log_transition,
        host: Host | None = None,
        mode_deadline: float | None = None,
    ) -> None:
        self._name = name
        self._clock = clock
        self._host = host if host is not None else Host(clock, wall or time.time, notify)
        self._lock = threading.Lock()
        self._m = Machine(clock, policy.open_state_timeout)
        self._policy = policy
        # The lanes the fast path reads (see _paths): the closed era while a success needs
        # nothing but counting, else a Lane while calls are timed.
        self._fast: Era | None = None
        self._timed: Lane | None = None
        self._shut = _NEVER  # while open in mode auto: when the open period ends
        # Calls in flight: admitted, less those that succeeded (_ok) or ended otherwise.
        self._admitted = self._ok = self._ended = 0
        self._n_failure = self._n_slow = self._n_timeout = self._n_excluded = 0
        self._n_rejected = self._n_bulkhead = self._n_cancelled = 0
        self._limit = 0  # maxConcurrentCalls in force (0: none)
        self._waiters: deque[Waiter] | None = None
        self._timers: Timers | None = None  # made for the first async call with a timeout
        # Hung calls, while slowCallDuration is set: the timed lanes that have calls in
        # flight and admit no more (oldest first), the slow way's timed calls in flight
        # (oldest first), and the next moment one of them may have hung.
        self._ticks: frozenset[float] = _NO_TICKS  # how often the ticker looks at it
        self._cells: deque[Lane] | None = None
        self._hanging: dict[Call, None] | None = None
        self._hung_at = _INF
        self._window: Window | None = None
        self._mode = _AUTO
        self._mode_end: ModeEnd | None = None
        self._gone: ModeEnd | None = None  # the last mode that ended: it never comes back
        self._parked = False
        # A provider's breaker leaves delivery to its provider, which holds a lock now.
        self._adopt(policy, mode_deadline=mode_deadline, deliver=host is None)

    def __repr__(self) -> str:
        mode = "" if self._mode is _AUTO else f" mode={self._mode.value}"
        return f"<Breaker {self._name!r} {STATES[self._m.era.state].value}{mode} {self._policy!r}>"

    @property
    def name(self) -> str:
        """Return the breaker's name (the resource it protects)."""
        return self._name

    @property
    def policy(self) -> Policy:
        """Return the policy in effect now (a mode that ended reads ``auto``)."""
        self._catch_up()
        return self._policy

    @property
    def state(self) -> State:
        """Return the current state; an open breaker whose open period ended reads half-open."""
        self._catch_up()
        return STATES[self._m.era.state]

    @property
    def mode(self) -> Mode:
        """Return the mode in effect: the policy's, or ``auto`` once its ``modeUntil`` passed."""
        self._catch_up()
        return self._mode

    @property
    def retry_after(self) -> float:
        """Return the seconds until the breaker admits a call; 0.0 when it would now.

        In shadow mode, what the state machine would answer (no call is rejected).
        """
        self._catch_up()
        now = self._clock()
        mode = self._mode
        if mode is _FORCED_OPEN:
            return self._forced_retry_after(now)
        if mode is _DISABLED:
            return 0.0
        return self._m.retry_after(self._policy, now)

    def stats(self) -> Stats:
        """Return the calls counted by outcome and the transitions by kind, since creation."""
        calls = {
            "success": self._ok,
            "failure": self._n_failure,
            "slow": self._n_slow,
            "timeout": self._n_timeout,
            "excluded": self._n_excluded,
            "rejected": self._n_rejected,
            "bulkhead_full": self._n_bulkhead,
            "cancelled": self._n_cancelled,
        }
        with self._lock:
            counts = dict(self._m.transitions or {})
            in_flight = self._in_flight()
        transitions = {(str(STATES[o]), str(STATES[n])): c for (o, n), c in counts.items()}
        return Stats(calls=calls, transitions=transitions, in_flight=in_flight)

    def _in_flight(self) -> int:
        return max(self._admitted - self._ok - self._ended, 0)

    @_paths.method
    def do(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:  # type: ignore[empty-body]
        """Call ``fn(*args, **kwargs)`` through the breaker; return its result or raise.

        Raises `BreakerOpenError` without calling ``fn`` when the breaker rejects the call.
        """

    @_paths.method
    async def do_async(  # type: ignore[empty-body]
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker; return its result or raise."""

    # -- the call protocol: what the lanes do not take -----------------------------------------

    def _admit(self) -> Ticket:
        """Admit a call, waiting for a slot if need be, or raise `RejectedError`.

        Return the ticket to settle the call with.
        """
        ticket = self._decide()
        if not self._limit:
            return self._count_in(ticket)
        ticket, waiter = self._take_slot(ticket, None)
        timeout = None if waiter is None else waiter.allowance
        while waiter is not None and timeout is not None:
            try:
                woke = waiter.wait(timeout)
            except BaseException:  # interrupted while waiting: the call will not run
                self._abandon(waiter, ticket)
                raise
            timeout = self._after_wait(waiter, ticket, woke)
        return ticket

    async def _admit_async(self) -> Ticket:
        """Admit a call as `_admit` does; a task waiting for a slot awaits, never blocks."""
        import asyncio  # here: importing breaker loads no asyncio

        ticket = self._decide()
        if not self._limit:
            return self._count_in(ticket)
        ticket, waiter = self._take_slot(ticket, asyncio.get_running_loop())
        timeout = None if waiter is None else waiter.allowance
        while waiter is not None and timeout is not None:
            try:
                woke = await waiter.wait_async(timeout)
            except BaseException:  # cancelled while waiting: the call will not run
                self._abandon(waiter, ticket)
                raise
            timeout = self._after_wait(waiter, ticket, woke)
        return ticket

    def _decide(self) -> Ticket:
        """Return the ticket of a call the breaker admits, or raise `BreakerOpenError`."""
        m = self._m
        now = self._clock()
        if self._hung_due(now):
            self._look_for_hung(now)
        era = m.era
        mode = self._mode
        end = self._mode_end
        # What needs no lock, while no mode is due to end: an outage's hot path included.
        if end is None or not end.passed(now):
            if mode is _AUTO or mode is _SHADOW:
                if era.state is CLOSED:
                    return Call(era, now, TRACKED) if self._timed_policy() else era
                if mode is _AUTO and era.state is OPEN:
                    remaining = era.started + m.period - now
                    if remaining > 0:
                        self._n_rejected += 1
                        raise BreakerOpenError(self._name, _OPEN_STATE, remaining)
            elif mode is _FORCED_OPEN:
                self._n_rejected += 1
                raise BreakerOpenError(
                    self._name, _OPEN_STATE, self._forced_retry_after(now), _FORCED_OPEN
                )
            else:
                return Call(era, now, STATS_ONLY)
        with _Critical(self):
            now = self._clock()
            self._expire_mode(now)
            ticket, error = self._admit_locked(now)
        if error is not None:
            self._n_rejected += 1
            raise error
        if ticket.__class__ is Call and ticket.track == UNCOUNTED:
            self._n_rejected += 1
        return ticket

    def _admit_locked(self, now: float) -> tuple[Ticket, BreakerOpenError | None]:
        m = self._m
        mode = self._mode
        if mode is _FORCED_OPEN:
            return m.era, BreakerOpenError(
                self._name, _OPEN_STATE, self._forced_retry_after(now), _FORCED_OPEN
            )
        if mode is _DISABLED:
            return Call(m.era, now, STATS_ONLY), None
        m.half_open_if_due(now)
        era = m.era
        if era.state is CLOSED:
            return (Call(era, now, TRACKED) if self._timed_policy() else era), None
        if era.state is HALF_OPEN:
            trial = m.admit_trial(self._policy, now)
            if trial is not None:
                return trial, None
            state = State.HALF_OPEN
        else:
            state = _OPEN_STATE
        if mode is _SHADOW:  # what it would do: count a rejection, run the call uncounted
            return Call(era, now, UNCOUNTED), None
        return era, BreakerOpenError(self._name, state, m.retry_after(self._policy, now))

    def _timed_policy(self) -> bool:
        policy = self._policy
        return (
            policy.slow_call_duration is not None
            or (policy.timeout is not None and self._mode is _SHADOW)
            or self._host.durations is not None
        )

    def _count_in(self, ticket: Ticket) -> Ticket:
        """Count an admitted call in flight; watch it for hanging if it is timed."""
        self._admitted += 1
        if ticket.__class__ is Call and self._policy.slow_call_duration is not None:
            with self._lock:
                self._watch(ticket)
        return ticket

    def _watch(self, ticket: Ticket) -> None:
        """Watch a call timed the slow way for hanging, once it has its slot (lock held).

        Not before: a call that waits for a slot, or is turned away, never hangs.
        """
        if (
            ticket.__class__ is Call
            and ticket.track == TRACKED
            and self._policy.slow_call_duration is not None
        ):
            self._track_hanging(ticket)

    def _track_hanging(self, call: Call) -> None:
        """Watch a timed call of the slow way for hanging (lock held)."""
        hanging = self._hanging
        if hanging is None:
            hanging = self._hanging = {}
        hanging[call] = None
        self._hung_at = min(self._hung_at, call.started + self._policy.slow_call_duration)  # type: ignore[operator]

    def _hung_due(self, now: float) -> bool:
        """Say whether a call may have hung, or the timed lane's slice ended, by ``now``."""
        lane = self._timed
        return now >= self._hung_at or (lane is not None and lane.clocked and now >= lane.end)

    def _look_for_hung(self, now: float) -> None:
        with _Critical(self):
            self._count_hung(self._clock())

    def _count_hung(self, now: float) -> None:
        """Count as slow, once, every call in flight for longer than slowCallDuration (lock held).

        A hung downstream trips the breaker while its calls still hang.
        """
        slow = self._policy.slow_call_duration
        if slow is None:  # no longer timed: nothing hangs
            self._cells = self._hanging = None
            self._hung_at = _INF
            return
        lane = self._timed
        if lane is not None and lane.clocked and now >= lane.end:
            self._retire(lane)
            self._timed = None  # _refresh makes the next slice's lane
        hung: list[Ticket] = []
        cells = self._cells
        while cells and cells[0].end + slow <= now:
            lane = cells.popleft()
            if lane.n > 0:
                lane.hung = True
                hung.extend([lane] * lane.n)
        hanging = self._hanging
        if hanging:
            for call in list(hanging):
                if call.started + slow > now:
                    break
                del hanging[call]
                call.track = HUNG
                hung.append(call)
        for ticket in hung:
            self._n_slow += 1
            self._record(ticket.era, ticket, _SLOW, now)  # type: ignore[union-attr]
        self._next_hung_at(slow)

    def _next_hung_at(self, slow: float) -> None:
        when = _INF
        if self._cells:
            when = self._cells[0].end + slow
        if self._hanging:
            when = min(when, next(iter(self._hanging)).started + slow)
        self._hung_at = when

    def _retire(self, lane: Lane) -> None:
        """Keep watching a timed lane that admits no more calls while it has some in flight."""
        slow = self._policy.slow_call_duration
        if lane.n > 0 and not lane.hung and slow is not None and lane.end != _INF:
            if self._cells is None:
                self._cells = deque()
            self._cells.append(lane)
            self._hung_at = min(self._hung_at, lane.end + slow)

    def _timing(self) -> Timers:
        """Return the set the deadlines of this breaker's async calls in flight join."""
        timers = self._timers
        if timers is None:
            with self._lock:
                timers = self._timers
                if timers is None:
                    timeout = self._call_timeout()
                    timers = self._timers = Timers(timeout if timeout and timeout > 0 else None)
        return timers

    def _move_timers(self) -> None:
        """Move the deadlines of async calls in flight to the timeout in force (lock held).

        Each stays counted from its call's start: lowering the timeout cuts the calls
        already past it at once. None (no timeout, disabled, shadow) stops them.
        """
        timers = self._timers
        assert timers is not None
        timeout = self._call_timeout()
        seconds = timeout if timeout is not None and timeout > 0 else None
        if seconds != timers.seconds:
            timers.seconds = seconds
            for deadline in list(timers):
                deadline.move(seconds)

    def _call_timeout(self) -> float | None:
        """Return an async call's timeout: enforced (> 0), measured only (< 0, shadow), none."""
        timeout = self._policy.timeout
        mode = self._mode
        if timeout is None or mode is _DISABLED:
            return None
        return -timeout if mode is _SHADOW else timeout

    # -- the concurrency limit ------------------------------------------------------------------

    def _take_slot(
        self, ticket: Ticket, loop: asyncio.AbstractEventLoop | None
    ) -> tuple[Ticket, Waiter | None]:
        """Count an admitted call in flight if a slot is free, else queue a waiter or reject."""
        with _Critical(self):
            limit = self._limit
            if not limit or (self._in_flight() < limit and not self._waiters):
                self._admitted += 1
                self._watch(ticket)
                return ticket, None
            if self._mode is _SHADOW:  # what it would do: count it, run the call uncounted
                if not (ticket.__class__ is Call and ticket.track == UNCOUNTED):
                    self._n_bulkhead += 1  # (else the breaker would have rejected it first)
                self._admitted += 1
                return self._uncounted(ticket), None
            allowance = self._policy.max_wait_duration
            if allowance <= 0:
                self._reject_full(ticket, 0.0)
            waiter = Waiter(loop, self._clock(), allowance)
            if self._waiters is None:
                self._waiters = deque()
            self._waiters.append(waiter)
            return ticket, waiter

    def _after_wait(self, waiter: Waiter, ticket: Ticket, woke: bool) -> float | None:
        """Look at a waiter that woke (``woke``) or whose wait ran out.

        Return None once it has its slot, or how much longer it waits (a nudge); raise
        what it was refused with, or `BulkheadFullError` when its wait ran out.
        """
        with _Critical(self):
            if waiter.granted:
                self._restart(ticket)
                return None
            error = waiter.refusal
            if error is not None:  # the breaker opened, or a shorter wait ran out
                self._release(ticket)
                raise error
            # A wait that ran out ends: by the waiter's own timer (so a clock that stands
            # still, a test's, cannot keep it waiting), or by the breaker's clock.
            left = waiter.started + waiter.allowance - self._clock()
            if not woke or left <= 0:
                waiters = self._waiters
                if waiters is not None and waiter in waiters:
                    waiters.remove(waiter)
                self._reject_full(ticket, waiter.allowance)
            waiter.rearm()
            return left

    def _restart(self, ticket: Ticket) -> None:
        """Time a call that waited for a slot from when it got one (lock held).

        The wait was the bulkhead's, not the downstream's: it makes no call slow.
        """
        if ticket.__class__ is not Call:
            return  # not timed
        self._m.restart(ticket, self._clock())
        self._watch(ticket)

    def _abandon(self, waiter: Waiter, ticket: Ticket) -> None:
        """Forget a waiter whose caller gave up; a slot it was granted goes to the next one."""
        with _Critical(self):
            self._release(ticket)
            if waiter.granted:  # admitted on its behalf: it ends, cancelled, without running
                self._n_cancelled += 1
                self._ended += 1
            elif self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)

    def _reject_full(self, ticket: Ticket, waited: float) -> None:
        """Reject a call the breaker had admitted: release its trial slot, count it (lock held)."""
        self._release(ticket)
        self._n_bulkhead += 1
        raise BulkheadFullError(self._name, self._limit, waited)

    def _release(self, ticket: Ticket) -> None:
        """Forget a call that will not run: its trial slot, its watch for hanging (lock held)."""
        if self._hanging is not None:
            self._hanging.pop(ticket, None)  # type: ignore[arg-type]
        m = self._m
        if (
            ticket.__class__ is Call
            and ticket.track == TRACKED
            and ticket.era is m.era
            and m.era.state is HALF_OPEN
        ):
            m.settle_trial(ticket, False, True, self._policy)

    def _uncounted(self, ticket: Ticket) -> Call:
        self._release(ticket)
        return Call(self._m.era, self._clock(), UNCOUNTED)

    def _review_waiters(self) -> None:
        """Answer the callers waiting for a slot as the breaker stands now (lock held).

        A breaker that opened, or was forced open, turns them away at once; disabled,
        shadow, or a limit raised or removed lets them in at once; a changed
        ``maxWaitDuration`` moves their deadlines, and turns away those it has run out.
        """
        waiters = self._waiters
        assert waiters is not None
        mode = self._mode
        m = self._m
        policy = self._policy
        if mode is _FORCED_OPEN or (mode is _AUTO and m.era.state is OPEN):
            now = self._clock()
            while waiters:
                self._n_rejected += 1
                if mode is _FORCED_OPEN:
                    error = BreakerOpenError(
                        self._name, _OPEN_STATE, self._forced_retry_after(now), _FORCED_OPEN
                    )
                else:
                    error = BreakerOpenError(self._name, _OPEN_STATE, m.retry_after(policy, now))
                waiters.popleft().refuse(error)
            return
        limit = 0 if mode is _DISABLED or mode is _SHADOW else policy.max_concurrent_calls
        while waiters and (not limit or self._in_flight() < limit):
            self._admitted += 1
            waiters.popleft().grant()
        allowance = policy.max_wait_duration
        # Every review leaves all waiters with the allowance in force: the first tells.
        if waiters and waiters[0].allowance != allowance:
            now = self._clock()
            for waiter in list(waiters):
                waiter.allowance = allowance
                if waiter.started + allowance <= now:
                    waiters.remove(waiter)
                    self._n_bulkhead += 1
                    waiter.refuse(BulkheadFullError(self._name, limit, now - waiter.started))
                else:
                    waiter.nudge()

    def _settle(
        self,
        ticket: Ticket,
        exc: BaseException | None = None,
        failed: bool = False,
        exclude: Exclusions | None = None,
        t0: float = 0.0,
        timeout: float | None = None,
    ) -> bool:
        """Record how an admitted call ended; return whether ``exc`` counts as an error.

        ``exc`` is what the call raised, None if it returned; ``failed`` marks a returned
        call as failed (``failure_if``, ``Guard.record_failure``); ``t0`` is when a call
        on a timed lane started; ``timeout`` is an async call's (negative: measured only,
        in shadow mode). An error is an ``Exception`` that ``exclude`` does not match: what
        a fallback may replace.
        """
        cls = ticket.__class__
        if (
            (cls is Lane and ticket.clocked)
            or (cls is Call and (self._hanging is not None or ticket.track == HUNG))  # type: ignore[union-attr]
        ) and self._leave(ticket):  # counted as slow while it hung: nothing more to count
            return isinstance(exc, Exception) and not (exclude is not None and exclude.matches(exc))
        era: Era
        started: float | None
        if cls is Era:
            era, started, track = ticket, None, TRACKED  # type: ignore[assignment]
        elif cls is Lane:  # an unclocked lane's t0 is 0.0: its calls were not timed
            era, track = ticket.era, TRACKED  # type: ignore[union-attr]
            started = t0 if ticket.clocked else None
        else:
            era, started, track = ticket.era, ticket.started, ticket.track  # type: ignore[union-attr]
        error = False
        if exc is None:
            outcome = _FAILURE if failed else _SUCCESS
        elif isinstance(exc, CallTimeoutError):  # our own: a failure, whatever exclude says
            outcome = _TIMEOUT
            error = True
        elif isinstance(exc, Exception):
            if exclude is not None and exclude.matches(exc):
                outcome = _EXCLUDED
            else:
                outcome = _FAILURE
                error = True
        else:
            outcome = _CANCELLED
        if track == UNCOUNTED:
            self._ended += 1
            if self._waiters:
                self._hand_on()
            return error
        if started is not None and outcome is not _TIMEOUT:
            elapsed = self._clock() - started
            durations = self._host.durations
            if durations is not None:
                durations(self._name, elapsed)
            policy = self._policy
            if policy.slow_call_duration is not None and elapsed > policy.slow_call_duration:
                outcome = _SLOW
            if timeout is not None and timeout < 0 and elapsed > -timeout:
                outcome = _TIMEOUT  # an async call in shadow mode: what it would have done
        m = self._m
        counts = track == TRACKED and era is m.era  # else: in the stats only
        if outcome is _SUCCESS:
            if self._window is not None:
                with _Critical(self):
                    counts_in = era if counts else None
                    self._record(counts_in, ticket, outcome, self._clock(), counted=False)
                return error
            self._ok += 1
        else:
            self._ended += 1
            if outcome is _FAILURE:
                self._n_failure += 1
            elif outcome is _SLOW:
                self._n_slow += 1
            elif outcome is _TIMEOUT:
                self._n_timeout += 1
            elif outcome is _EXCLUDED:
                self._n_excluded += 1
            else:
                self._n_cancelled += 1
        if not counts or (
            era.state is CLOSED
            and (
                outcome is _CANCELLED
                or (
                    outcome is not _FAILURE
                    and outcome is not _SLOW
                    and outcome is not _TIMEOUT
                    and not m.failures
                    and self._window is None
                )
            )
        ):
            if self._waiters:
                self._hand_on()
            return error
        with _Critical(self):
            self._record(era, ticket, outcome, self._clock())
        return error

    def _leave(self, ticket: Ticket) -> bool:
        """Take a timed call off the watch for hung calls; return whether it hung."""
        with _Critical(self):
            now = self._clock()
            if self._hung_due(now):
                self._count_hung(now)
            if ticket.__class__ is Lane:
                ticket.n -= 1
                hung = ticket.hung
            else:
                hung = ticket.track == HUNG  # type: ignore[union-attr]
                if self._hanging is not None:
                    self._hanging.pop(ticket, None)  # type: ignore[arg-type]
            if hung:
                self._ended += 1
            return hung

    def _hand_on(self) -> None:
        """A call ended while others wait for a slot: hand them what is free."""
        with _Critical(self):
            pass  # leaving the lock reviews the waiters

    def _record(
        self,
        era: Era | None,
        ticket: Ticket,
        outcome: Outcome,
        now: float,
        *,
        counted: bool = True,
    ) -> None:
        """Apply an outcome to the state machine and the window (lock held).

        ``era`` is the era the call counts in, None when it counts in the stats only. A
        success with a rate window is counted here (``counted=False``), where the window
        can place it; whether a window is there is read here, under the lock.
        """
        m = self._m
        window = self._window
        if outcome is _SUCCESS:
            if not counted:
                self._ok += 1
            if window is not None:
                if era is m.era and era.state is CLOSED:
                    window.record(self._ok - 1, now, 1, 0)  # the successes before it go first
                window.seen += 1  # this one: in the window already, or never
        if era is not m.era:
            return  # stale (or stats only): a new era began while the call ran
        policy = self._policy
        failed = outcome is _FAILURE or outcome is _SLOW or outcome is _TIMEOUT
        if era.state is CLOSED:
            if failed:
                m.increment_counter()
                if window is not None:
                    window.record(self._ok, now, 1, 1, outcome is _SLOW)
                threshold = policy.failure_threshold
                if (threshold and m.failures >= threshold) or (
                    window is not None and window.exceeded(policy)
                ):
                    m.trip(policy)
            elif outcome is not _CANCELLED:
                if m.failures:
                    m.reset_counter()
                if window is not None:
                    if outcome is _EXCLUDED:
                        window.record(self._ok, now, 1, 0)
                    if window.exceeded(policy):
                        m.trip(policy)
        elif era.state is HALF_OPEN and ticket.__class__ is Call:
            m.settle_trial(ticket, failed, outcome is _CANCELLED, policy)
            if m.era.state is CLOSED:
                self._clear_window(now)

    def _refresh(self) -> None:
        """Recompute the lanes the fast path reads (lock held)."""
        m = self._m
        era = m.era
        mode = self._mode
        policy = self._policy
        window = self._window
        limit = self._limit = 0 if mode is _DISABLED else policy.max_concurrent_calls
        fast = None
        timed = None
        if (
            era.state is CLOSED
            and (mode is _AUTO or mode is _SHADOW)
            and not m.failures
            and self._host.durations is None  # timing every call: each goes the slow way
            # Below the minimum calls with failures counted, a success may trip the
            # breaker (it completes the minimum): successes go the slow way until then.
            and not (window is not None and window.failures and window.calls < policy.minimum_calls)
            # Callers waiting for a slot go first: newcomers queue behind them.
            and not self._waiters
        ):
            slow = policy.slow_call_duration
            timeout = self._call_timeout()
            if slow is None and not limit and timeout is None:
                fast = era
            else:
                slow_ = _INF if slow is None else slow
                if timeout is not None and timeout < 0:  # shadow: a success past it is judged
                    slow_ = min(slow_, -timeout)
                timed = self._timed
                if timed is None or not timed.fits(era, slow_, limit, timeout):
                    clocked = slow_ != _INF
                    end = self._clock() + slow / _SLICES if slow is not None else _INF
                    timed = Lane(era, slow_, limit, timeout, clocked, end)
                timed.until = min(timed.end, self._hung_at)
        old = self._timed
        if old is not None and old is not timed and old.clocked:
            self._retire(old)
        self._fast = fast
        self._timed = timed
        self._shut = era.started + m.period if era.state is OPEN and mode is _AUTO else _NEVER

    def _tick(self, now: float) -> None:
        """What time alone makes due, for the ticker: hung calls, a rate window's bucket.

        At a bucket boundary, the successes counted since go in the bucket that ended;
        those counted after it, in the next.
        """
        if self._hung_due(now):
            self._look_for_hung(now)
        window = self._window
        if window is None or now < window.end:
            return
        with _Critical(self):
            window = self._window
            if window is not None:
                window.fold(self._ok, now)

    def _clear_window(self, now: float) -> None:
        if self._window is not None:
            self._window.clear(self._ok, now)

    def _close(self, now: float) -> None:
        self._m.close(self._policy)
        self._clear_window(now)

    # -- policies and modes ---------------------------------------------------------------------

    def _adopt(
        self, policy: Policy, *, mode_deadline: float | None = None, deliver: bool = True
    ) -> None:
        """Switch to ``policy`` now, keeping state and counts, and re-evaluate the state.

        ``mode_deadline`` is the monotonic deadline of the policy's ``modeUntil``, fixed by
        the provider when the document that sets the mode was first adopted (None: from the
        wall clock now). With ``deliver=False`` the transitions it causes stay queued until
        the host delivers them, so a provider can report them after releasing its own locks.
        """
        with _Critical(self, deliver):
            now = self._clock()
            window = self._window
            if policy.failure_rate is None:
                self._window = None
            elif window is None:
                self._window = Window(policy.rate_window, now, self._ok)
            elif window.length != policy.rate_window:
                window.resize(policy.rate_window, self._ok, now)
            m = self._m
            end = mode_end(policy, now, self._host.wall, mode_deadline)
            mode = policy.mode
            if end is not None and (end.passed(now) or self._mode_ended(end)):
                mode, end = _AUTO, None  # a mode that ended never comes back
                policy = attrs.evolve(policy, mode=_AUTO, mode_until=None)
            self._policy = policy
            if policy.slow_call_duration is None:  # no longer timed: nothing hangs
                self._cells = self._hanging = None
                self._hung_at = _INF
            ticker = self._host.ticker
            ticks = self._tick_widths()
            for width in self._ticks - ticks:
                ticker.discard(self, width)
            for width in ticks - self._ticks:
                ticker.add(self, width)
            self._ticks = ticks
            m.set_period(policy)
            self._set_mode(mode, end, now)
            if (
                m.era.state is HALF_OPEN
                and self._mode is not _FORCED_OPEN
                and m.successes >= policy.success_threshold
            ):
                self._close(now)

    def _tick_widths(self) -> frozenset[float]:
        """Return how often the ticker must look at this breaker (a period per need)."""
        widths = []
        if self._window is not None:
            widths.append(self._window.width)
        slow = self._policy.slow_call_duration
        if slow is not None:
            widths.append(slow / _SLICES)
        return frozenset(widths) if widths else _NO_TICKS

    def _mode_ended(self, end: ModeEnd) -> bool:
        gone = self._gone
        return gone is not None and gone.mode is end.mode and gone.when == end.when

    def _set_mode(self, mode: Mode, end: ModeEnd | None, now: float, *, log: bool = True) -> None:
        old = self._mode
        self._mode, self._mode_end = mode, end
        if mode is old:
            return
        if log:
            log_change(self._name, old, mode)
        m = self._m
        state = m.era.state
        if mode is _FORCED_OPEN:
            if state is not OPEN:
                m.open()
        elif mode is _DISABLED:
            if state is not CLOSED:
                self._close(now)
            m.reset_counter()
            self._clear_window(now)
        elif old is _FORCED_OPEN:
            m.half_open()  # leaving the kill switch: trial calls decide
        elif old is _DISABLED:
            self._clear_window(now)

    def _expire_mode(self, now: float) -> None:
        end = self._mode_end
        if end is not None and end.passed(now):
            log_expiry(self._name, end)
            self._gone = end
            self._policy = attrs.evolve(self._policy, mode=_AUTO, mode_until=None)
            self._set_mode(_AUTO, None, now, log=False)

    def _forced_retry_after(self, now: float) -> float:
        end = self._mode_end
        return self._policy.open_state_timeout if end is None else end.remaining(now)

    def _catch_up(self) -> None:
        """Apply what time alone changes: an open period that ended, a mode that ended."""
        m = self._m
        era = m.era
        now = self._clock()
        end = self._mode_end
        if (end is None or not end.passed(now)) and (
            era.state is not OPEN or self._mode is _FORCED_OPEN or now - era.started < m.period
        ):
            return
        with _Critical(self):
            now = self._clock()
            self._expire_mode(now)
            if self._mode is not _FORCED_OPEN:
                m.half_open_if_due(now)

    def _force(self, state: State) -> None:
        """Move to ``state`` now, as an operator would (used by breaker.testing)."""
        with _Critical(self):
            m = self._m
            if state is State.OPEN:
                m.trip(self._policy)
            elif state is State.HALF_OPEN:
                m.half_open()
            else:
                self._close(self._clock())

    # -- the registry's view ----------------------------------------------------------------------

    def _calls(self) -> int:
        """Return how many calls the breaker has seen, for the provider's idle sweep."""
        return self._admitted + self._n_rejected + self._n_bulkhead

    def _idle(self) -> bool:
        """Return whether dropping the breaker loses nothing: closed, nothing counted."""
        m = self._m
        window = self._window
        return (
            m.era.state is CLOSED
            and not m.failures
            and (window is None or not window.failures)
            and not self._in_flight()
        )

    def _park(self) -> None:
        """Mark the breaker as set aside by its registry (which holds it weakly now)."""
        self._parked = True

    def _unpark(self) -> None:
        unpark = self._host.unpark
        self._parked = False
        if unpark is not None:
            unpark(self)

    # -- fork -------------------------------------------------------------------------------------

    def _lock_for_fork(self) -> None:
        self._lock.acquire()

    def _unlock_after_fork(self) -> None:
        self._lock.release()

    def _reset_after_fork(self) -> None:  # pragma: no cover - runs in a forked child
        """Give the child process a fresh lock, and leave the parent's calls to the parent.

        The threads that were making calls or waiting for a slot are not in the child:
        their slots, their watch for hanging, their half-open trials and their places in
        the queue would jam the child's breaker (a limit full for good, calls counted as
        hung, every newcomer queued behind waiters that never come).
        """
        self._lock = threading.Lock()
        self._admitted = self._ok + self._ended  # no call in flight
        self._waiters = None
        self._timers = None
        self._hanging = self._cells = None
        self._hung_at = _INF
        timed = self._timed
        if timed is not None:
            timed.n = 0
        self._m.forget_trials()
        with self._lock:
            self._refresh()

    # -- metrics: one read for a scrape (breaker.metrics) -----------------------------------------

    def _reading(
        self,
    ) -> tuple[
        str,
        str,
        tuple[int, ...],
        int,
        dict[tuple[str, str], int] | None,
        float | None,
        float | None,
    ]:
        """Return what a metrics scrape needs, taking no lock and changing nothing.

        ``(state, mode, calls, in_flight, transitions, failure_rate, slow_call_rate)``: the
        values of `state` and `mode` as they would read now (an open period or a mode that
        ended reads as ended; a call or a read of those applies it), strings, so that the
        garbage collector stops tracking the tuple (a scrape reads thousands); ``calls``, the
        counts of `stats` in `Outcome` order, and ``transitions`` (None before the first)
        as `stats` has them (keep the two in step); the failure and slow-call rates of the
        failure-rate window, None without a window or with no call in it. Counters are
        read one by one, so one may be a call ahead of another.
        """
        m = self._m
        era = m.era
        state = era.state
        mode = self._mode
        end = self._mode_end
        if end is not None or state is OPEN:
            now = self._clock()
            if end is not None and end.passed(now):
                if mode is _FORCED_OPEN:
                    state = HALF_OPEN  # leaving the kill switch half-opens
                mode = _AUTO
            if state is OPEN and mode is not _FORCED_OPEN and now - era.started >= m.period:
                state = HALF_OPEN
        # success, failure, slow, timeout, excluded, rejected, bulkhead_full, cancelled
        calls = (
            self._ok,
            self._n_failure,
            self._n_slow,
            self._n_timeout,
            self._n_excluded,
            self._n_rejected,
            self._n_bulkhead,
            self._n_cancelled,
        )
        counts = m.transitions
        transitions = None
        if counts:  # a dict's copy() is one step under the GIL: no transition is half-read
            transitions = {
                (str(STATES[o]), str(STATES[n])): c for (o, n), c in counts.copy().items()
            }
        failure_rate = slow_rate = None
        window = self._window
        if window is not None:
            # Successes the fast path counted since the window's last fold belong in it too.
            seen = window.calls + max(self._ok - window.seen, 0)
            if seen > 0:
                failure_rate = min(window.failures / seen, 1.0)
                slow_rate = min(window.slow / seen, 1.0)
        # What _in_flight() returns, inlined: a scrape reads every breaker this way.
        in_flight = self._admitted - self._ok - self._ended
        if in_flight < 0:
            in_flight = 0
        return state, _MODE_VALUES[mode], calls, in_flight, transitions, failure_rate, slow_rate
