"""The breaker engine, on pybreaker; the only module that imports it.

pybreaker keeps the state and the counters (through a storage of ours) and makes the
transitions (``open``, ``half_open``, ``close``, which reset its counters and tell its
listeners), but its ``call()`` holds the breaker's lock while the guarded function runs,
which serializes every caller. So calls never go through it. Every way in (``do``,
``do_async``, the decorators, the guard) follows one protocol: `Breaker._admit` returns
a *ticket* or raises `BreakerOpenError`, the user's code runs with no lock held, and
`Breaker._settle` records how it ended. Admission and settling are each one short
critical section, and the common case takes none: while a breaker is closed with
nothing to record, ``_fast`` holds the current era and a success only counts down
``_left``. The countdown stays among CPython's cached small ints and is folded into the
success count every few hundred calls; it is also set to zero whenever the breaker stops
being fast, so the next success takes the slow way and sees the change (the fast path
never re-reads ``_fast`` after a call). Each way in inlines that fast path (measured: a
method call would double the cost of ``Breaker.do``); everything else goes through
``_admit`` and ``_settle``.

Each stretch of time in one state is an *era*. A call's ticket names the era that
admitted it, and its outcome only counts if that era is still current, so a slow call
admitted before a trip cannot close a breaker that opened meanwhile. A half-open era
tracks each trial call, so a trial gives up its slot only when it gave no verdict
within a whole ``open_state_timeout`` of its own admission.

Counters that the lock-free paths bump (``+=`` on a slot with no call in between) are
exact on CPython with the GIL; on a free-threaded build they may undercount.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import Final, ParamSpec, TypeVar, cast

import pybreaker

from breaker._exceptions import BreakerOpenError
from breaker._policy import Policy, format_timestamp
from breaker._state import Mode, Outcome, State, Stats

_log = logging.getLogger("breaker.state")

_CLOSED: Final = pybreaker.STATE_CLOSED
_OPEN: Final = pybreaker.STATE_OPEN
_HALF_OPEN: Final = pybreaker.STATE_HALF_OPEN
_STATES = {_CLOSED: State.CLOSED, _OPEN: State.OPEN, _HALF_OPEN: State.HALF_OPEN}
# Module globals are cheaper to read on the hot paths than enum members.
_OPEN_STATE = State.OPEN
_AUTO = Mode.AUTO
_FORCED_OPEN = Mode.FORCED_OPEN
_DISABLED = Mode.DISABLED
_SHADOW = Mode.SHADOW
_SUCCESS = Outcome.SUCCESS
_FAILURE = Outcome.FAILURE
_SLOW = Outcome.SLOW
_EXCLUDED = Outcome.EXCLUDED
_CANCELLED = Outcome.CANCELLED

_FOLD = 256  # the fast path's success countdown: CPython caches the ints it passes through
_BUCKETS = 10  # a rate window is kept in this many buckets
_MAX_DOUBLINGS = 64

# How a ticket's outcome counts.
_TRACKED = 2  # in the state machine and the stats
_STATS_ONLY = 1  # in the stats only (mode disabled)
_UNCOUNTED = 0  # nowhere: a shadow-mode call that would have been rejected

P = ParamSpec("P")
R = TypeVar("R")
Clock = Callable[[], float]
Notify = Callable[["Breaker", State, State], None]


_NO_TRIALS: dict[_Call, None] = {}


class _Era:
    """One stretch of time in one state, and the trial calls admitted during it."""

    __slots__ = ("admitted", "started", "state", "trials")

    def __init__(self, state: str, started: float) -> None:
        self.state = state
        self.started = started
        self.admitted = 0  # half-open slots taken (in flight or answered)
        # Half-open trials in flight, oldest first; other eras share one empty table.
        self.trials: dict[_Call, None] = {} if state is _HALF_OPEN else _NO_TRIALS


class _Call:
    """A ticket that needs more than its era: a trial, a timed call, or an untracked one."""

    __slots__ = ("era", "started", "track")

    def __init__(self, era: _Era, started: float, track: int) -> None:
        self.era = era
        self.started = started
        self.track = track


Ticket = _Era | _Call


class _Storage(pybreaker.CircuitBreakerStorage):
    """pybreaker's storage for one breaker: the era and the two counters.

    pybreaker writes ``opened_at`` when it opens; nothing reads it (only its ``call()``
    would), so it is not kept.
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__("breaker")
        self._clock = clock
        self.era = _Era(_CLOSED, clock())
        self.failures = 0
        self.successes = 0

    @property
    def state(self) -> str:
        return self.era.state

    @state.setter
    def state(self, state: str) -> None:
        self.era = _Era(state, self._clock())

    def increment_counter(self) -> None:
        self.failures += 1

    def reset_counter(self) -> None:
        self.failures = 0

    def increment_success_counter(self) -> None:
        self.successes += 1

    def reset_success_counter(self) -> None:
        self.successes = 0

    @property
    def counter(self) -> int:
        return self.failures

    @property
    def success_counter(self) -> int:
        return self.successes

    @property
    def opened_at(self) -> datetime | None:
        return None

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        pass


class _Transitions(pybreaker.CircuitBreakerListener):
    """Collect pybreaker's state changes, so they are reported after the lock is released."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, str]] = []

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = old_state.name if old_state is not None else _CLOSED
        if old != new_state.name:
            self.pending.append((old, new_state.name))


class _Window:
    """Calls and failures that finished over the last ``length`` seconds, in buckets.

    Each bucket covers a tenth of the window and counts while any of it is inside the
    window, so the window reaches back up to a tenth further than ``length``.
    """

    __slots__ = ("buckets", "calls", "failures", "length", "width")

    def __init__(self, length: float) -> None:
        self.buckets: deque[list[float]] = deque()  # [end, calls, failures], oldest first
        self.calls = 0
        self.failures = 0
        self.length = length
        self.width = length / _BUCKETS

    def add(self, now: float, calls: int, failures: int) -> None:
        self.expire(now)
        buckets = self.buckets
        if not buckets or now >= buckets[-1][0]:
            buckets.append([now + self.width, 0, 0])
        last = buckets[-1]
        last[1] += calls
        last[2] += failures
        self.calls += calls
        self.failures += failures

    def expire(self, now: float) -> None:
        buckets = self.buckets
        horizon = now - self.length
        while buckets and buckets[0][0] <= horizon:
            _, calls, failures = buckets.popleft()
            self.calls -= int(calls)
            self.failures -= int(failures)

    def resize(self, length: float) -> None:
        self.length = length
        self.width = length / _BUCKETS

    def clear(self) -> None:
        self.buckets.clear()
        self.calls = self.failures = 0


class Exclusions:
    """Exception types and predicates whose matches count as success (the downstream answered)."""

    __slots__ = ("predicates", "types")

    def __init__(self, items: Iterable[type[BaseException] | Callable[[BaseException], bool]]):
        types: list[type[BaseException]] = []
        predicates: list[Callable[[BaseException], bool]] = []
        for item in items:
            if isinstance(item, type) and issubclass(item, BaseException):
                types.append(item)
            elif callable(item):
                predicates.append(cast("Callable[[BaseException], bool]", item))
            else:
                raise TypeError(f"exclude: expected exception types or predicates, got {item!r}")
        self.types = tuple(types)
        self.predicates = tuple(predicates)

    def matches(self, exc: BaseException) -> bool:
        """Return whether ``exc`` is excluded; a predicate that raises excludes nothing."""
        if isinstance(exc, self.types):
            return True
        for predicate in self.predicates:
            try:
                if predicate(exc):
                    return True
            except Exception:
                _log.exception("exclude predicate %r raised; counting the error", predicate)
        return False


def exclusions(
    items: Iterable[type[BaseException] | Callable[[BaseException], bool]],
) -> Exclusions | None:
    """Return the Exclusions for ``items``, or None when there are none."""
    if isinstance(items, (tuple, list)) and not items:
        return None
    built = Exclusions(items)
    return built if built.types or built.predicates else None


def _log_transition(brk: Breaker, old: State, new: State) -> None:
    level = logging.WARNING if new is State.OPEN else logging.INFO
    _log.log(level, "breaker %r: %s -> %s", brk.name, old.value, new.value)


class Breaker:
    """A named circuit breaker. Get one from `Provider.get_breaker`; never build one directly."""

    __slots__ = (
        "__weakref__",
        "_budget",
        "_cb",
        "_clock",
        "_deadline",
        "_delivering",
        "_doublings",
        "_events",
        "_fast",
        "_left",
        "_lock",
        "_mode",
        "_n_cancelled",
        "_n_excluded",
        "_n_failure",
        "_n_rejected",
        "_n_slow",
        "_name",
        "_notify",
        "_ok",
        "_ok_seen",
        "_period",
        "_policy",
        "_queue",
        "_simple",
        "_st",
        "_tick_time",
        "_timed",
        "_transitions",
        "_until",
        "_wall",
        "_window",
    )

    _TICK_MAX = 32
    """At most this many successes wait for a clock reading before a rate window counts them."""

    def __init__(
        self,
        name: str,
        policy: Policy,
        *,
        clock: Clock,
        wall: Clock | None = None,
        notify: Notify = _log_transition,
    ) -> None:
        self._name = name
        self._clock = clock
        self._wall = wall if wall is not None else time.time
        self._notify = notify
        self._lock = threading.Lock()
        self._st = _Storage(clock)
        self._events = _Transitions()
        self._cb = pybreaker.CircuitBreaker(state_storage=self._st, listeners=[self._events])
        self._queue: list[tuple[str, str]] = []
        self._delivering = False
        self._transitions: dict[tuple[str, str], int] = {}
        # Successes: _ok, plus what the fast path counted down from _budget to _left since.
        # The countdown stays within CPython's cached small ints: counting up past 256
        # would allocate an int object on every call.
        self._ok = self._ok_seen = 0
        self._budget = self._left = _FOLD
        self._n_failure = self._n_slow = self._n_excluded = 0
        self._n_rejected = self._n_cancelled = 0
        self._mode = _AUTO
        self._deadline: float | None = None
        self._until = math.inf  # the mode's modeUntil on the wall clock (Unix seconds)
        self._doublings = 0
        self._window: _Window | None = None
        self._tick_time = 0.0
        self._policy = policy
        self._period = policy.open_state_timeout
        self._timed = False
        self._simple = True
        self._fast: _Era | None = None
        self._adopt(policy)

    def __repr__(self) -> str:
        mode = "" if self._mode is _AUTO else f" mode={self._mode.value}"
        return (
            f"<Breaker {self._name!r} {_STATES[self._st.era.state].value}{mode} {self._policy!r}>"
        )

    @property
    def name(self) -> str:
        """Return the breaker's name (the resource it protects)."""
        return self._name

    @property
    def policy(self) -> Policy:
        """Return the policy in effect now."""
        return self._policy

    @property
    def state(self) -> State:
        """Return the current state; an open breaker whose open period ended reads half-open."""
        self._catch_up()
        return _STATES[self._st.era.state]

    @property
    def mode(self) -> Mode:
        """Return the mode in effect: the policy's, or ``auto`` once its ``modeUntil`` passed."""
        self._catch_up()
        return self._mode

    @property
    def retry_after(self) -> float:
        """Return the seconds until the breaker admits a call; 0.0 when it would now."""
        self._catch_up()
        now = self._clock()
        era = self._st.era
        if self._mode is _FORCED_OPEN:
            return self._forced_retry_after(now)
        if self._mode is not _AUTO or era.state is _CLOSED:
            return 0.0
        if era.state is _OPEN:
            return max(era.started + self._period - now, 0.0)
        if era.admitted < self._policy.success_threshold:
            return 0.0
        return max(self._trial_retry_after(era, now), 0.0)

    def stats(self) -> Stats:
        """Return the calls counted by outcome and the transitions by kind, since creation."""
        calls = {
            "success": self._successes(),
            "failure": self._n_failure,
            "slow": self._n_slow,
            "excluded": self._n_excluded,
            "rejected": self._n_rejected,
            "cancelled": self._n_cancelled,
        }
        with self._lock:
            transitions = {
                (str(_STATES[o]), str(_STATES[n])): c for (o, n), c in self._transitions.items()
            }
        return Stats(calls=calls, transitions=transitions)

    def do(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the breaker; return its result or raise.

        Raises `BreakerOpenError` without calling ``fn`` when the breaker rejects the call.
        """
        era = self._fast
        ticket = era if era is not None else self._admit()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(ticket, exc)
            raise
        if ticket is era:
            self._left -= 1
            if self._left <= 0:
                self._spent(era)
        else:
            self._settle(ticket)
        return result

    async def do_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker; return its result or raise."""
        era = self._fast
        ticket = era if era is not None else self._admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._settle(ticket, exc)
            raise
        if ticket is era:
            self._left -= 1
            if self._left <= 0:
                self._spent(era)
        else:
            self._settle(ticket)
        return result

    # -- the call protocol ----------------------------------------------------------------

    def _admit(self) -> Ticket:
        """Admit a call or raise `BreakerOpenError`; return the ticket to settle it with."""
        era = self._st.era
        if era.state is _CLOSED and self._simple:
            return _Call(era, self._clock(), _TRACKED) if self._timed else era
        now = self._clock()
        mode = self._mode
        # An outage's hot path: reject without the lock while nothing is due to change.
        if mode is _AUTO:
            if era.state is _OPEN:
                remaining = era.started + self._period - now
                if remaining > 0:
                    self._n_rejected += 1
                    raise BreakerOpenError(self._name, _OPEN_STATE, remaining)
        elif mode is _FORCED_OPEN:
            deadline = self._deadline
            if deadline is None or (now < deadline and self._wall() < self._until):
                self._n_rejected += 1
                raise BreakerOpenError(
                    self._name, _OPEN_STATE, self._forced_retry_after(now), _FORCED_OPEN
                )
        elif mode is _DISABLED:
            deadline = self._deadline
            if deadline is None or (now < deadline and self._wall() < self._until):
                return _Call(era, now, _STATS_ONLY)
        with self._lock:
            now = self._clock()
            self._expire_mode(now)
            ticket, error = self._admit_locked(now)
            if self._events.pending:
                self._take_events()
            deliver = bool(self._queue)
        if deliver:
            self._deliver()
        if error is not None:
            self._n_rejected += 1
            raise error
        if ticket.__class__ is _Call and ticket.track == _UNCOUNTED:
            self._n_rejected += 1
        return ticket

    def _admit_locked(self, now: float) -> tuple[Ticket, BreakerOpenError | None]:
        mode = self._mode
        if mode is _FORCED_OPEN:
            return self._st.era, BreakerOpenError(
                self._name, _OPEN_STATE, self._forced_retry_after(now), _FORCED_OPEN
            )
        if mode is _DISABLED:
            return _Call(self._st.era, now, _STATS_ONLY), None
        self._half_open_if_due(now)
        era = self._st.era
        if era.state is _CLOSED:
            return (_Call(era, now, _TRACKED) if self._timed else era), None
        if era.state is _HALF_OPEN:
            limit = self._policy.success_threshold
            if era.admitted >= limit:
                self._evict_stale_trials(era, now)
            if era.admitted < limit:
                trial = _Call(era, now, _TRACKED)
                era.trials[trial] = None
                era.admitted += 1
                return trial, None
            retry_after = self._trial_retry_after(era, now)
            state = State.HALF_OPEN
        else:
            retry_after = era.started + self._period - now
            state = _OPEN_STATE
        if mode is _SHADOW:  # what it would do: count a rejection, run the call uncounted
            return _Call(era, now, _UNCOUNTED), None
        return era, BreakerOpenError(self._name, state, max(retry_after, 0.0))

    def _settle(
        self,
        ticket: Ticket,
        exc: BaseException | None = None,
        failed: bool = False,
        exclude: Exclusions | None = None,
    ) -> bool:
        """Record how an admitted call ended; return whether ``exc`` counts as an error.

        ``exc`` is what the call raised, None if it returned; ``failed`` marks a returned
        call as failed (``failure_if``, ``Guard.record_failure``). An error is an
        ``Exception`` that ``exclude`` does not match: what a fallback may replace.
        """
        if ticket.__class__ is _Era:  # (cheaper than isinstance on this path)
            era = ticket
            started: float | None = None
            track = _TRACKED
        else:
            era, started, track = ticket.era, ticket.started, ticket.track  # type: ignore[union-attr]
        error = False
        if exc is None:
            outcome = _FAILURE if failed else _SUCCESS
        elif isinstance(exc, Exception):
            if exclude is not None and exclude.matches(exc):
                outcome = _EXCLUDED
            else:
                outcome = _FAILURE
                error = True
        else:
            outcome = _CANCELLED
        if track == _UNCOUNTED:
            return error
        if started is not None:
            slow = self._policy.slow_call_duration
            if slow is not None and self._clock() - started > slow:
                outcome = _SLOW
        st = self._st
        stale = era is not st.era
        if outcome is _SUCCESS:
            if (stale or track == _STATS_ONLY) and self._window is not None:
                with self._lock:  # keep it out of the rate window, which counts _ok
                    self._ok += 1
                    self._ok_seen += 1
            else:
                self._ok += 1
        elif outcome is _FAILURE:
            self._n_failure += 1
        elif outcome is _SLOW:
            self._n_slow += 1
        elif outcome is _EXCLUDED:
            self._n_excluded += 1
        else:
            self._n_cancelled += 1
        if track == _STATS_ONLY or stale:  # a stale verdict counts in the stats only
            return error
        if era.state is _CLOSED and (
            outcome is _CANCELLED
            or (
                outcome is not _FAILURE
                and outcome is not _SLOW
                and not st.failures
                and self._window is None
            )
        ):
            return error
        with self._lock:
            self._record(ticket, era, outcome, self._clock())
            if self._events.pending:
                self._take_events()
            deliver = bool(self._queue)
        if deliver:
            self._deliver()
        return error

    def _record(self, ticket: Ticket, era: _Era, outcome: Outcome, now: float) -> None:
        """Apply a current call's outcome to the state machine (lock held)."""
        st = self._st
        if era is not st.era:
            return
        failed = outcome is _FAILURE or outcome is _SLOW
        if era.state is _CLOSED:
            window = self._window
            if failed:
                st.increment_counter()
                if window is not None:
                    self._flush(now)
                    window.add(now, 1, 1)
                threshold = self._policy.failure_threshold
                if (threshold and st.failures >= threshold) or self._rate_exceeded():
                    self._trip()
            elif outcome is not _CANCELLED:
                if st.failures:
                    st.reset_counter()
                if window is not None:
                    if outcome is _EXCLUDED:
                        self._flush(now)
                        window.add(now, 1, 0)
                    self._tick_locked(now)
        elif era.state is _HALF_OPEN and ticket in era.trials:
            del era.trials[ticket]
            if failed:
                self._doublings = min(self._doublings + 1, _MAX_DOUBLINGS)
                self._set_period()
                self._cb.open()
            elif outcome is _CANCELLED:
                era.admitted -= 1
            else:
                st.increment_success_counter()
                if st.successes >= self._policy.success_threshold:
                    self._close()
        self._refresh()

    def _successes(self) -> int:
        return self._ok + self._budget - self._left

    def _fold(self) -> None:
        """Move the fast path's countdown into ``_ok``, leaving the countdown where it is."""
        # No call between reading and writing _left: under the GIL, no fast-path decrement
        # can fall between them and be lost.
        left = self._left
        self._ok += self._budget - left
        self._budget = left

    def _recount(self, budget: int) -> None:
        """Fold the countdown into ``_ok`` and restart it from ``budget`` (see `_fold`)."""
        left = self._left
        self._ok += self._budget - left
        self._budget = self._left = budget

    def _spent(self, era: _Era) -> None:
        """Handle a fast-path success that found the countdown spent.

        The countdown runs out every few hundred successes (or every few, with a rate
        window, whose successes are then stamped), and at once when the breaker stops
        being fast: then this success is settled as any other.
        """
        if self._fast is era:
            if self._window is None:
                self._recount(_FOLD)
            else:
                self._tick()
        else:
            self._left += 1  # it was counted down; _settle counts it once more
            self._settle(era)

    def _tick(self) -> None:
        """Stamp the successes counted since the last tick into the rate window."""
        with self._lock:
            self._tick_locked(self._clock())
            if self._events.pending:
                self._take_events()
            deliver = bool(self._queue)
        if deliver:
            self._deliver()

    def _tick_locked(self, now: float) -> None:
        window = self._window
        if window is None:
            self._recount(_FOLD)
            return
        counted = self._flush(now)
        # Read the clock about eight times a bucket at the current call rate: a success
        # waits for at most that long (and at most _TICK_MAX successes) to be stamped.
        elapsed = now - self._tick_time
        self._tick_time = now
        batch = self._TICK_MAX
        if elapsed > 0:
            batch = max(1, min(batch, int(counted * window.width / 8 / elapsed)))
        self._recount(batch)
        if self._st.era.state is _CLOSED and self._rate_exceeded():
            self._trip()
        self._refresh()

    def _flush(self, now: float) -> int:
        window = self._window
        self._fold()
        counted = self._ok - self._ok_seen
        if counted > 0:
            self._ok_seen += counted
            if window is not None:
                window.add(now, counted, 0)
            return counted
        if window is not None:
            window.expire(now)
        return 0

    def _rate_exceeded(self) -> bool:
        window = self._window
        if window is None or not window.failures:
            return False
        policy = self._policy
        rate = cast(float, policy.failure_rate)
        return window.calls >= policy.minimum_calls and window.failures / window.calls >= rate

    # -- transitions (lock held) -------------------------------------------------------------

    def _trip(self) -> None:
        self._doublings = 0
        self._set_period()
        self._cb.open()

    def _close(self) -> None:
        self._doublings = 0
        self._set_period()
        self._cb.close()
        self._reset_window()

    def _reset_window(self) -> None:
        if self._window is not None:
            self._window.clear()
        self._fold()
        self._ok_seen = self._ok
        self._recount(1 if self._window is not None else _FOLD)

    def _half_open_if_due(self, now: float) -> None:
        era = self._st.era
        if (
            era.state is _OPEN
            and self._mode is not _FORCED_OPEN
            and now - era.started >= self._period
        ):
            self._cb.half_open()

    def _evict_stale_trials(self, era: _Era, now: float) -> None:
        timeout = self._policy.open_state_timeout
        trials = era.trials
        while trials:
            oldest = next(iter(trials))
            if now - oldest.started < timeout:
                break
            # No verdict within a whole open_state_timeout (a call with no deadline, say):
            # its slot goes to a new trial, and its verdict, if it ever comes, is ignored.
            del trials[oldest]
            era.admitted -= 1

    def _trial_retry_after(self, era: _Era, now: float) -> float:
        for trial in era.trials:
            return trial.started + self._policy.open_state_timeout - now
        return 0.0

    def _forced_retry_after(self, now: float) -> float:
        if self._deadline is None:
            return self._policy.open_state_timeout
        return max(min(self._deadline - now, self._until - self._wall()), 0.0)

    def _set_period(self) -> None:
        policy = self._policy
        cap = policy.max_open_state_timeout
        if cap is None or not self._doublings:
            self._period = policy.open_state_timeout
        else:
            self._period = min(policy.open_state_timeout * 2.0**self._doublings, cap)

    def _refresh(self) -> None:
        """Recompute what the lock-free paths read."""
        self._timed = self._policy.slow_call_duration is not None
        self._simple = self._deadline is None and (self._mode is _AUTO or self._mode is _SHADOW)
        era = self._st.era
        fast = era.state is _CLOSED and self._simple and not self._timed and not self._st.failures
        if (era if fast else None) is not self._fast:
            self._fast = era if fast else None
            # The fast path does not look at _fast again after a call: a spent countdown
            # sends its next success the slow way, which does.
            self._recount(0)

    # -- policies and modes ---------------------------------------------------------------

    def _adopt(
        self, policy: Policy, *, mode_deadline: float | None = None, deliver: bool = True
    ) -> None:
        """Switch to ``policy`` now, keeping state and counts, and re-evaluate the state.

        A timed mode ends when the wall clock, read when the mode is checked, reaches
        ``modeUntil``, or when the clock reaches ``mode_deadline``, whichever comes first.
        ``mode_deadline`` is fixed when the provider first adopted the document that sets
        the mode, so adopting it again never revives an expired mode; None computes it
        from the wall clock now. With ``deliver=False`` the transitions it causes stay
        queued for `_deliver`, so a provider can report them after releasing its own locks.
        """
        with self._lock:
            now = self._clock()
            self._policy = policy
            if policy.failure_rate is None:
                self._window = None
                self._recount(_FOLD)
            elif self._window is None:
                self._window = _Window(policy.rate_window)
                self._reset_window()
            else:
                self._window.resize(policy.rate_window)
            self._set_period()
            deadline, self._until = None, math.inf
            if policy.mode is not _AUTO and policy.mode_until is not None:
                self._until = policy.mode_until.timestamp()
                deadline = mode_deadline
                if deadline is None:
                    deadline = now + (self._until - self._wall())
            self._set_mode(policy.mode, deadline, now)
            st = self._st
            if (
                st.era.state is _HALF_OPEN
                and self._mode is not _FORCED_OPEN
                and st.successes >= policy.success_threshold
            ):
                self._close()
            self._refresh()
            if self._events.pending:
                self._take_events()
            pending = bool(self._queue)
        if pending and deliver:
            self._deliver()

    def _set_mode(
        self, mode: Mode, deadline: float | None, now: float, *, log: bool = True
    ) -> None:
        if mode is not _AUTO and deadline is not None and not self._mode_runs(deadline, now):
            mode, deadline = _AUTO, None  # a modeUntil in the past means auto
        old = self._mode
        self._mode, self._deadline = mode, deadline
        if mode is old:
            return
        if log:
            level = logging.WARNING if mode is _FORCED_OPEN or mode is _DISABLED else logging.INFO
            _log.log(level, "breaker %r: mode %s -> %s", self._name, old.value, mode.value)
        state = self._st.era.state
        if mode is _FORCED_OPEN:
            if state is not _OPEN:
                self._cb.open()
        elif mode is _DISABLED:
            if state is not _CLOSED:
                self._close()
            self._st.reset_counter()
            self._reset_window()
        elif old is _FORCED_OPEN:
            self._cb.half_open()  # leaving the kill switch: trial calls decide
        elif old is _DISABLED:
            self._reset_window()

    def _mode_runs(self, deadline: float, now: float) -> bool:
        """Say whether a timed mode still runs: neither of its two clocks has reached its end."""
        return now < deadline and self._wall() < self._until

    def _expire_mode(self, now: float) -> None:
        deadline = self._deadline
        if deadline is not None and not self._mode_runs(deadline, now):
            until = self._policy.mode_until
            _log.warning(
                "breaker %r: mode %s expired (modeUntil %s); back to auto",
                self._name,
                self._mode.value,
                format_timestamp(until) if until is not None else "passed",
            )
            self._set_mode(_AUTO, None, now, log=False)
            self._refresh()

    def _catch_up(self) -> None:
        """Apply what time alone changes: an open period that ended, a mode that expired."""
        era = self._st.era
        if self._deadline is None and (
            era.state is not _OPEN
            or self._mode is _FORCED_OPEN
            or self._clock() - era.started < self._period
        ):
            return
        with self._lock:
            now = self._clock()
            self._expire_mode(now)
            self._half_open_if_due(now)
            self._refresh()
            if self._events.pending:
                self._take_events()
            deliver = bool(self._queue)
        if deliver:
            self._deliver()

    def _force(self, state: State) -> None:
        """Move to ``state`` now, as an operator would (used by breaker.testing)."""
        with self._lock:
            if state is State.OPEN:
                self._trip()
            elif state is State.HALF_OPEN:
                self._cb.half_open()
            else:
                self._close()
            self._refresh()
            if self._events.pending:
                self._take_events()
            deliver = bool(self._queue)
        if deliver:
            self._deliver()

    def _calls(self) -> int:
        """Return how many calls the breaker has seen, for the provider's idle sweep."""
        return (
            self._successes()
            + self._n_failure
            + self._n_slow
            + self._n_excluded
            + self._n_rejected
            + self._n_cancelled
        )

    def _idle(self) -> bool:
        """Return whether dropping the breaker loses nothing: closed, nothing counted."""
        window = self._window
        return (
            self._st.era.state is _CLOSED
            and not self._st.failures
            and not self._queue
            and (window is None or not window.failures)
        )

    # -- reporting ------------------------------------------------------------------------

    def _take_events(self) -> None:
        """Move pybreaker's transitions to the delivery queue, counting them (lock held)."""
        for event in self._events.pending:
            self._transitions[event] = self._transitions.get(event, 0) + 1
            self._queue.append(event)
        self._events.pending.clear()

    def _deliver(self) -> None:
        """Report queued transitions in order, one thread at a time, with no lock held.

        A listener may call back into the breaker; what that changes is queued and
        reported after it returns, by the same loop.
        """
        while True:
            with self._lock:
                if self._delivering or not self._queue:
                    return
                self._delivering = True
                batch, self._queue = self._queue, []
            try:
                for old, new in batch:
                    try:
                        self._notify(self, _STATES[old], _STATES[new])
                    except Exception:
                        _log.exception("breaker %r: state-change listener failed", self._name)
            finally:
                with self._lock:
                    self._delivering = False

    # -- fork ----------------------------------------------------------------------------------

    def _lock_for_fork(self) -> None:
        self._lock.acquire()

    def _unlock_after_fork(self) -> None:
        self._lock.release()

    def _reset_after_fork(self) -> None:  # pragma: no cover - runs in a forked child
        """Give the child process a fresh lock; the parent's delivering thread is gone."""
        self._lock = threading.Lock()
        self._delivering = False
