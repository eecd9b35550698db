"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import strategies as st

from breaker import Mode, Policy
from breaker._policy import MAX_COUNT, MAX_SECONDS

durations = st.one_of(
    st.integers(1, 86_400 * 30),
    st.floats(min_value=1e-9, max_value=86_400 * 30, allow_nan=False, allow_infinity=False),
    st.floats(min_value=1, max_value=MAX_SECONDS, allow_nan=False, allow_infinity=False),
)
"""Seconds a policy accepts, up to Go's longest duration."""

timestamps = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.just(timezone.utc),
).map(lambda d: d.replace(microsecond=d.microsecond))


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    """Any valid policy, every optional key included now and then."""
    rate = draw(st.none() | st.floats(min_value=1e-6, max_value=1.0))
    open_state_timeout = draw(durations)
    cap = draw(st.none() | st.floats(min_value=1.0, max_value=10.0))
    return Policy(
        failure_threshold=draw(st.integers(0 if rate else 1, MAX_COUNT)),
        success_threshold=draw(st.integers(1, MAX_COUNT)),
        open_state_timeout=open_state_timeout,
        slow_call_duration=draw(st.none() | durations),
        failure_rate=rate,
        minimum_calls=draw(st.integers(1, MAX_COUNT)),
        rate_window=draw(durations),
        max_open_state_timeout=None if cap is None else min(open_state_timeout * cap, MAX_SECONDS),
        max_concurrent_calls=draw(st.integers(0, MAX_COUNT)),
        max_wait_duration=draw(st.just(0.0) | durations),
        timeout=draw(st.none() | durations),
        mode=draw(st.sampled_from(Mode)),
        mode_until=draw(st.none() | timestamps),
    )
