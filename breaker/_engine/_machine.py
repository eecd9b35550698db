"""The state machine: closed, open and half-open, the eras between transitions, half-open trials.

pybreaker makes the transitions: its ``open()``, ``half_open()`` and ``close()`` set the
state in its storage, which is the `Machine` itself, and reset the counters as each state
requires (``tests/test_pybreaker_contract.py`` pins exactly that). Its ``call()`` is never
used: it holds the breaker's lock while the guarded function runs, which serializes every
caller. The pybreaker object is made at the first transition, so a breaker that never
left closed does not carry one.

Each stretch of time in one state is an `Era`. A call's ticket names the era that
admitted it, and its outcome only counts while that era is current: a slow call admitted
before a trip cannot close a breaker that opened meanwhile. A half-open era tracks its
trial calls, so a trial gives up its slot only when it gave no verdict within a whole
``open_state_timeout`` of its own admission.

Every method that changes something runs with the breaker's lock held.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import pybreaker

from breaker._policy import Policy
from breaker._state import State

CLOSED: Final = pybreaker.STATE_CLOSED
OPEN: Final = pybreaker.STATE_OPEN
HALF_OPEN: Final = pybreaker.STATE_HALF_OPEN
STATES: Final = {CLOSED: State.CLOSED, OPEN: State.OPEN, HALF_OPEN: State.HALF_OPEN}
_MAX_DOUBLINGS = 64

Clock = Callable[[], float]


class Era:
    """One stretch of time in one state, and the trial calls admitted during it."""

    __slots__ = ("admitted", "started", "state", "trials")
    clocked = False  # (the fast path asks any ticket; only a timed lane says yes)

    def __init__(self, state: str, started: float) -> None:
        self.state = state
        self.started = started
        self.admitted = 0  # half-open slots taken (in flight or answered)
        # Half-open trials in flight, oldest first; other eras share one empty table.
        self.trials: dict[Call, None] = {} if state is HALF_OPEN else _NO_TRIALS


class Call:
    """A ticket that needs more than its era: a trial, a timed call, or an untracked one."""

    __slots__ = ("era", "started", "track")
    clocked = False

    def __init__(self, era: Era, started: float, track: int) -> None:
        self.era = era
        self.started = started
        self.track = track


_NO_TRIALS: dict[Call, None] = {}

# How a ticket's outcome counts.
TRACKED: Final = 2  # in the state machine and the stats
STATS_ONLY: Final = 1  # in the stats only (mode disabled)
UNCOUNTED: Final = 0  # nowhere: a shadow-mode call that would have been rejected
HUNG: Final = 3  # counted as slow while still in flight: its end counts nothing more


class Machine(pybreaker.CircuitBreakerStorage):
    """The state, the two counters and the open period of one breaker; pybreaker's storage.

    ``failures`` is the run of consecutive failures while closed, ``successes`` the
    successful trials of a half-open era. ``changes`` collects the transitions made
    under the lock, for the breaker to report once it is released.
    """

    __slots__ = (
        "_cb",
        "_clock",
        "_name",
        "changes",
        "doublings",
        "era",
        "failures",
        "period",
        "successes",
        "transitions",
    )

    def __init__(self, clock: Clock, period: float) -> None:
        super().__init__("breaker")
        self._clock = clock
        self._cb: pybreaker.CircuitBreaker | None = None
        self.era = Era(CLOSED, clock())
        self.failures = 0
        self.successes = 0
        self.period = period  # the current open period: open_state_timeout, doubled
        self.doublings = 0
        self.changes: list[tuple[str, str]] = []
        self.transitions: dict[tuple[str, str], int] | None = None

    # -- pybreaker's storage --------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self.era.state

    @state.setter
    def state(self, state: str) -> None:
        old = self.era.state
        self.era = Era(state, self._clock())
        if old != state:
            self.changes.append((old, state))
            counts = self.transitions
            if counts is None:
                counts = self.transitions = {}
            counts[old, state] = counts.get((old, state), 0) + 1

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
        return None  # only pybreaker's call() reads it

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        pass

    # -- transitions ------------------------------------------------------------------------------

    def _pybreaker(self) -> pybreaker.CircuitBreaker:
        cb = self._cb
        if cb is None:
            cb = self._cb = pybreaker.CircuitBreaker(state_storage=self)
        return cb

    def trip(self, policy: Policy) -> None:
        """Open after failures while closed: the open period starts from the policy's."""
        self.doublings = 0
        self.set_period(policy)
        self._pybreaker().open()

    def reopen(self, policy: Policy) -> None:
        """Open again after a failed trial: the open period doubles, up to the policy's cap."""
        self.doublings = min(self.doublings + 1, _MAX_DOUBLINGS)
        self.set_period(policy)
        self._pybreaker().open()

    def open(self) -> None:
        """Open as an operator does (mode forced-open): the open period stays as it is."""
        self._pybreaker().open()

    def half_open(self) -> None:
        """Let trial calls decide."""
        self._pybreaker().half_open()

    def close(self, policy: Policy) -> None:
        """Close: the failure run and the open period start over."""
        self.doublings = 0
        self.set_period(policy)
        self._pybreaker().close()

    def set_period(self, policy: Policy) -> None:
        cap = policy.max_open_state_timeout
        if cap is None or not self.doublings:
            self.period = policy.open_state_timeout
        else:
            self.period = min(policy.open_state_timeout * 2.0**self.doublings, cap)

    def half_open_if_due(self, now: float) -> None:
        """Half-open an open breaker whose open period has ended."""
        era = self.era
        if era.state is OPEN and now - era.started >= self.period:
            self.half_open()

    # -- half-open trials -------------------------------------------------------------------------

    def admit_trial(self, policy: Policy, now: float) -> Call | None:
        """Return a ticket for a trial call, or None when every slot is taken."""
        era = self.era
        limit = policy.success_threshold
        if era.admitted >= limit:
            self._evict_stale_trials(era, policy.open_state_timeout, now)
            if era.admitted >= limit:
                return None
        trial = Call(era, now, TRACKED)
        era.trials[trial] = None
        era.admitted += 1
        return trial

    def settle_trial(self, trial: Call, failed: bool, cancelled: bool, policy: Policy) -> None:
        """Apply a trial's verdict: a failure reopens, enough successes close."""
        era = self.era
        if trial not in era.trials:
            return  # evicted as stale: its slot went to another trial
        del era.trials[trial]
        if failed:
            self.reopen(policy)
        elif cancelled:
            era.admitted -= 1  # no verdict: the slot goes to another trial
        else:
            self.increment_success_counter()
            if self.successes >= policy.success_threshold:
                self.close(policy)

    def restart(self, call: Call, now: float) -> None:
        """Count a call that waited for a bulkhead slot as begun ``now``.

        A trial moves to the end of its era's trials, which stay oldest first.
        """
        trials = call.era.trials
        if call in trials:
            del trials[call]
            trials[call] = None
        call.started = now

    def forget_trials(self) -> None:
        """Forget the trials in flight (in a forked child: their threads are the parent's).

        The trials already answered keep their slots.
        """
        era = self.era
        era.admitted -= len(era.trials)
        era.trials.clear()

    def _evict_stale_trials(self, era: Era, timeout: float, now: float) -> None:
        trials = era.trials
        while trials:
            oldest = next(iter(trials))
            if now - oldest.started < timeout:
                break
            # No verdict within a whole open_state_timeout (a call with no deadline, say):
            # its slot goes to a new trial, and its verdict, if it ever comes, is ignored.
            del trials[oldest]
            era.admitted -= 1

    def retry_after(self, policy: Policy, now: float) -> float:
        """Return the seconds until this state admits a call again (0.0: now)."""
        era = self.era
        if era.state is OPEN:
            return max(era.started + self.period - now, 0.0)
        if era.state is HALF_OPEN and era.admitted >= policy.success_threshold:
            for trial in era.trials:  # the oldest trial's slot frees first
                return max(trial.started + policy.open_state_timeout - now, 0.0)
        return 0.0
