"""FakeClock: time that moves only when the test says so."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from breaker.testing import FakeClock


def test_the_wall_clock_moves_with_the_monotonic_one() -> None:
    clock = FakeClock()
    clock.advance(90.5)
    assert clock() == 1090.5
    assert clock.datetime() == datetime(2026, 1, 1, 0, 1, 30, 500000, tzinfo=timezone.utc)
    assert clock.wall() == clock.datetime().timestamp()


def test_it_never_goes_back() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="never goes back"):
        clock.advance(-0.001)
    assert clock() == 1000.0


def test_the_wall_clock_steps_either_way_and_the_monotonic_one_stays() -> None:
    clock = FakeClock()
    clock.step_wall(-600)
    assert clock() == 1000.0
    assert clock.datetime() == datetime(2025, 12, 31, 23, 50, tzinfo=timezone.utc)
    clock.advance(60)
    clock.step_wall(86_400)
    assert clock.datetime() == datetime(2026, 1, 1, 23, 51, tzinfo=timezone.utc)
