"""The 0.1.0 engine, frozen: what ``benchmarks/paired.py`` measures ``Breaker.do`` against.

Copied from ``breaker/_engine.py`` at the 0.1.0 commit (8b66a89); only its imports were
changed. Not part of the package, and never edited: it is a measuring stick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import ParamSpec, TypeVar, cast

import pybreaker

from breaker._exceptions import BreakerOpenError
from breaker._policy import Policy
from breaker._state import State

_log = logging.getLogger("breaker")

_CLOSED = pybreaker.STATE_CLOSED
_OPEN = pybreaker.STATE_OPEN
_HALF_OPEN = pybreaker.STATE_HALF_OPEN
_STATES = {_CLOSED: State.CLOSED, _OPEN: State.OPEN, _HALF_OPEN: State.HALF_OPEN}
_OPEN_STATE = State.OPEN  # a module global is cheaper to read than an enum member

P = ParamSpec("P")
R = TypeVar("R")
Clock = Callable[[], float]
Notify = Callable[["Breaker", State, State], None]


class _Era:
    """One stretch of time in one state, and the trial calls admitted during it."""

    __slots__ = ("admitted", "started", "state")

    def __init__(self, state: str, started: float) -> None:
        self.state = state
        self.started = started
        self.admitted = 0


class _Storage(pybreaker.CircuitBreakerStorage):
    """pybreaker's storage for one breaker: plain attributes, eras stamped by our clock."""

    def __init__(self, clock: Clock) -> None:
        super().__init__("breaker")
        self._clock = clock
        self.era = _Era(_CLOSED, clock())
        self.failures = 0
        self.successes = 0
        self._opened_at: datetime | None = None

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
        return self._opened_at

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._opened_at = value


class _Transitions(pybreaker.CircuitBreakerListener):
    """Collect pybreaker's state changes so they are reported after the lock is released."""

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

    def take(self) -> list[tuple[str, str]]:
        pending, self.pending = self.pending, []
        return pending


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
        "_cb",
        "_clock",
        "_events",
        "_lock",
        "_name",
        "_notify",
        "_policy",
        "_st",
    )

    def __init__(
        self,
        name: str,
        policy: Policy,
        *,
        clock: Clock,
        notify: Notify = _log_transition,
    ) -> None:
        self._name = name
        self._policy = policy
        self._clock = clock
        self._notify = notify
        self._lock = threading.Lock()
        self._st = _Storage(clock)
        self._events = _Transitions()
        self._cb = pybreaker.CircuitBreaker(
            fail_max=policy.failure_threshold,
            reset_timeout=policy.open_state_timeout,
            success_threshold=policy.success_threshold,
            state_storage=self._st,
            listeners=[self._events],
            name=name,
        )

    def __repr__(self) -> str:
        return f"<Breaker {self._name!r} {self.state.value} {self._policy!r}>"

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
        """Return the current state; an open breaker whose timeout has passed reads half-open."""
        era = self._st.era
        if era.state is _OPEN and self._clock() - era.started >= self._policy.open_state_timeout:
            with self._lock:
                self._half_open_if_due()
                events = self._events.take()
            self._report(events)
        return _STATES[self._st.era.state]

    def do(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call ``fn(*args, **kwargs)`` through the breaker; return its result or raise.

        Raises `BreakerOpenError` without calling ``fn`` when the breaker rejects the call.
        """
        era = self._st.era
        if era.state is not _CLOSED:
            era = self._admit_slow()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self._failed(era, exc, None)
            raise
        except BaseException:
            self._aborted(era)
            raise
        if era.state is not _CLOSED or self._st.failures:
            self._succeeded(era)
        return result

    async def do_async(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)`` through the breaker; return its result or raise."""
        era = self._st.era
        if era.state is not _CLOSED:
            era = self._admit_slow()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self._failed(era, exc, None)
            raise
        except BaseException:
            self._aborted(era)
            raise
        if era.state is not _CLOSED or self._st.failures:
            self._succeeded(era)
        return result

    # The protocol the decorators and guards use: admit, then exactly one of
    # succeeded / failed / aborted with the era admit returned.

    def _admit(self) -> _Era:
        era = self._st.era
        if era.state is _CLOSED:
            return era
        return self._admit_slow()

    def _admit_slow(self) -> _Era:
        now = self._clock()
        era = self._st.era
        if era.state is _OPEN:
            remaining = era.started + self._policy.open_state_timeout - now
            if remaining > 0:  # nothing to change: reject without the lock
                raise BreakerOpenError(self._name, _OPEN_STATE, remaining)
        with self._lock:
            self._half_open_if_due()
            era = self._st.era
            admitted = True
            retry_after = 0.0
            if era.state is _HALF_OPEN:
                timeout = self._policy.open_state_timeout
                if era.admitted >= self._policy.success_threshold:
                    if now - era.started >= timeout:
                        # Trials that have not answered within a whole timeout (a call with
                        # no deadline, say) no longer hold their slots: start fresh trials.
                        self._cb.half_open()
                        era = self._st.era
                    else:
                        admitted = False
                        retry_after = era.started + timeout - now
                if admitted:
                    era.admitted += 1
            elif era.state is _OPEN:
                admitted = False
                retry_after = era.started + self._policy.open_state_timeout - now
            events = self._events.take()
        self._report(events)
        if not admitted:
            raise BreakerOpenError(self._name, _STATES[era.state], max(retry_after, 0.0))
        return era

    def _half_open_if_due(self) -> None:
        era = self._st.era
        if era.state is _OPEN and self._clock() - era.started >= self._policy.open_state_timeout:
            self._cb.half_open()

    def _succeeded(self, era: _Era) -> None:
        st = self._st
        if era.state is _CLOSED and not st.failures:
            return
        with self._lock:
            if era is st.era:
                if era.state is _CLOSED:
                    st.reset_counter()
                elif era.state is _HALF_OPEN:
                    st.increment_success_counter()
                    if st.successes >= self._policy.success_threshold:
                        self._cb.close()
            events = self._events.take()
        self._report(events)

    def _failed(self, era: _Era, exc: Exception, exclude: Exclusions | None) -> bool:
        """Record a failed call; return False if ``exc`` was excluded (counted as success)."""
        if exclude is not None and exclude.matches(exc):
            self._succeeded(era)
            return False
        st = self._st
        with self._lock:
            if era is st.era:
                if era.state is _CLOSED:
                    st.increment_counter()
                    if st.failures >= self._policy.failure_threshold:
                        self._cb.open()
                elif era.state is _HALF_OPEN:
                    self._cb.open()
            events = self._events.take()
        self._report(events)
        return True

    def _aborted(self, era: _Era) -> None:
        if era.state is not _HALF_OPEN:
            return
        with self._lock:
            if era is self._st.era:
                era.admitted -= 1

    def _adopt(self, policy: Policy) -> None:
        """Switch to ``policy`` now, keeping state and counts."""
        with self._lock:
            self._policy = policy
            self._cb.fail_max = policy.failure_threshold
            self._cb.reset_timeout = policy.open_state_timeout
            self._cb.success_threshold = policy.success_threshold

    def _force(self, state: State) -> None:
        """Move to ``state`` now, as an operator would (used by breaker.testing)."""
        with self._lock:
            if state is State.OPEN:
                self._cb.open()
            elif state is State.HALF_OPEN:
                self._cb.half_open()
            else:
                self._cb.close()
            events = self._events.take()
        self._report(events)

    def _report(self, events: list[tuple[str, str]]) -> None:
        for old, new in events:
            try:
                self._notify(self, _STATES[old], _STATES[new])
            except Exception:
                _log.exception("breaker %r: state-change listener failed", self._name)
