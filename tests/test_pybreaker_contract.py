"""What the engine relies on pybreaker for, pinned: run against the oldest and the newest
pybreaker the package allows (``nox -s pybreaker``).

The engine never calls ``CircuitBreaker.call()``. It keeps state and counters in a storage
of its own and asks pybreaker for the three transitions, which must set the storage's
state, reset the right counters and tell the listeners, and do nothing else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pybreaker
import pytest


class RecordingStorage(pybreaker.CircuitBreakerStorage):
    """A storage that logs what pybreaker does to it."""

    def __init__(self) -> None:
        super().__init__("contract")
        self.log: list[tuple[str, Any]] = []
        self._state = pybreaker.STATE_CLOSED
        self.failures = 3
        self.successes = 2

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self.log.append(("state", state))
        self._state = state

    def increment_counter(self) -> None:
        self.log.append(("increment_counter", None))

    def reset_counter(self) -> None:
        self.log.append(("reset_counter", None))
        self.failures = 0

    def increment_success_counter(self) -> None:
        self.log.append(("increment_success_counter", None))

    def reset_success_counter(self) -> None:
        self.log.append(("reset_success_counter", None))
        self.successes = 0

    @property
    def counter(self) -> int:
        return self.failures

    @property
    def success_counter(self) -> int:
        return self.successes

    @property
    def opened_at(self) -> datetime | None:
        self.log.append(("read opened_at", None))
        return None

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self.log.append(("opened_at", None))


class Recorder(pybreaker.CircuitBreakerListener):
    def __init__(self) -> None:
        self.changes: list[tuple[str | None, str]] = []

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        self.changes.append((None if old_state is None else old_state.name, new_state.name))


def make() -> tuple[pybreaker.CircuitBreaker, RecordingStorage, Recorder]:
    storage, recorder = RecordingStorage(), Recorder()
    cb = pybreaker.CircuitBreaker(state_storage=storage, listeners=[recorder])
    return cb, storage, recorder


def test_state_names() -> None:
    assert (pybreaker.STATE_CLOSED, pybreaker.STATE_OPEN, pybreaker.STATE_HALF_OPEN) == (
        "closed",
        "open",
        "half-open",
    )


def test_construction_reads_the_storage_and_changes_nothing() -> None:
    _, storage, recorder = make()
    assert storage.log == []
    assert recorder.changes == []
    assert (storage.failures, storage.successes) == (3, 2)


def test_open_sets_the_state_resets_successes_and_tells_listeners() -> None:
    cb, storage, recorder = make()
    cb.open()
    assert storage.state == pybreaker.STATE_OPEN
    assert ("reset_success_counter", None) in storage.log
    assert ("reset_counter", None) not in storage.log  # failures are the engine's business
    assert recorder.changes == [("closed", "open")]
    assert {entry for entry, _ in storage.log} <= {"state", "opened_at", "reset_success_counter"}


def test_half_open_sets_the_state_resets_successes_and_tells_listeners() -> None:
    cb, storage, recorder = make()
    cb.open()
    storage.log.clear()
    cb.half_open()
    assert storage.state == pybreaker.STATE_HALF_OPEN
    assert ("reset_success_counter", None) in storage.log
    assert recorder.changes[-1] == ("open", "half-open")
    assert {entry for entry, _ in storage.log} <= {"state", "reset_success_counter"}


def test_close_sets_the_state_resets_both_counters_and_tells_listeners() -> None:
    cb, storage, recorder = make()
    cb.open()
    cb.half_open()
    storage.successes, storage.failures = 4, 5
    storage.log.clear()
    cb.close()
    assert storage.state == pybreaker.STATE_CLOSED
    assert (storage.failures, storage.successes) == (0, 0)
    assert recorder.changes[-1] == ("half-open", "closed")
    assert {entry for entry, _ in storage.log} <= {
        "state",
        "reset_counter",
        "reset_success_counter",
    }


@pytest.mark.parametrize("transition", ["open", "half_open", "close"])
def test_a_transition_to_the_same_state_tells_listeners_old_equals_new(transition: str) -> None:
    """The engine drops such no-op events; pybreaker may report them."""
    cb, _, recorder = make()
    getattr(cb, transition)()
    getattr(cb, transition)()
    name = {"open": "open", "half_open": "half-open", "close": "closed"}[transition]
    assert recorder.changes[-1] == (name, name)


def test_no_transition_reads_opened_at_or_counts() -> None:
    cb, storage, _ = make()
    for transition in (cb.open, cb.half_open, cb.close, cb.open, cb.close):
        transition()
    entries = {entry for entry, _ in storage.log}
    assert "read opened_at" not in entries
    assert "increment_counter" not in entries and "increment_success_counter" not in entries
