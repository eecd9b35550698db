"""The engine against a small reference model, driven through every public way in.

Calls go through ``Breaker.do``, ``do_async``, ``@provider.circuit`` (sync and async),
``provider.guard`` blocks, and guards held open across steps (calls in flight while time
passes and other calls finish). Policies change through the coord, as an operator's
would, and cover consecutive failures, failure rates over a window, slow calls, growing
open periods and modes. The model is written from the README's semantics.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import breaker
from breaker import Breaker, BreakerOpenError, Guard, MemoryCoord, Outcome, Policy, State
from breaker._engine._recording import Lane
from breaker.testing import FakeClock

from .helpers import PREFIX, Abort, Boom, NotFound

NAME = "m"
SLOW = 3.0  # a "slow" call takes this long; slow_call_duration is 2 s when set


@st.composite
def model_policies(draw: st.DrawFn) -> Policy:
    rate = draw(st.sampled_from([None, None, 0.5, 1.0]))
    return Policy(
        failure_threshold=draw(st.integers(0 if rate else 1, 4)),
        success_threshold=draw(st.integers(1, 3)),
        open_state_timeout=draw(st.sampled_from([5.0, 10.0])),
        slow_call_duration=draw(st.sampled_from([None, None, 2.0])),
        failure_rate=rate,
        minimum_calls=draw(st.integers(1, 4)),
        rate_window=draw(st.sampled_from([5.0, 20.0])),
        max_open_state_timeout=draw(st.sampled_from([None, 30.0])),
        mode=draw(st.sampled_from(["auto"] * 6 + ["shadow", "disabled", "forced-open"])),
    )


class Window:
    """The rate window as the README defines it: buckets of a tenth on a fixed grid, kept
    while they overlap the window."""

    def __init__(self, length: float) -> None:
        self.length = length
        self.buckets: list[list[float]] = []

    def add(self, now: float, failed: bool) -> None:
        self.expire(now)
        width = self.length / 10
        end = (math.floor(now / width) + 1) * width
        if self.buckets and self.buckets[-1][0] >= end:  # a bucket of a longer window
            self.buckets[-1][1] += 1
            self.buckets[-1][2] += failed
            return
        self.buckets.append([end, 1, failed])

    def expire(self, now: float) -> None:
        while self.buckets and self.buckets[0][0] <= now - self.length:
            self.buckets.pop(0)

    def exceeded(self, policy: Policy) -> bool:
        calls = sum(b[1] for b in self.buckets)
        failures = sum(b[2] for b in self.buckets)
        assert policy.failure_rate is not None
        return (
            bool(failures)
            and calls >= policy.minimum_calls
            and failures / calls >= policy.failure_rate
        )


class Call:
    """A call the model admitted: its era, when, whether a trial, and how it counts."""

    def __init__(self, era: int, at: float, trial: bool, track: str, timed: bool) -> None:
        self.era, self.at, self.trial, self.track = era, at, trial, track
        # A closed breaker times its calls only while slow_call_duration is set.
        self.timed = timed or trial or track != "tracked"
        # For a call left in flight (a guard's) that the engine watches for hanging: the
        # end of its lane's slice, or its own start on the slow way; slow is added later.
        self.watched: tuple[bool, float] | None = None

    def watch(self, brk: Breaker, ticket: Any) -> None:
        if isinstance(ticket, Lane) and ticket.clocked and ticket.end != math.inf:
            self.watched = (True, ticket.end)
        elif brk._hanging is not None and ticket in brk._hanging:
            self.watched = (False, float(ticket.started))


class Model(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.coord = MemoryCoord()
        self.events: list[tuple[State, State]] = []
        self.provider = breaker.new(
            breaker.Config("model", PREFIX),
            coord=self.coord,
            clock=self.clock,
            wall_clock=self.clock.wall,
        )
        self.provider.add_listener(lambda e: self.events.append((e.old, e.new)))
        self.brk = self.provider.get_breaker(NAME)
        self.policy = Policy()
        self.state = "closed"
        self.era = 0
        self.started = self.clock()
        self.failures = 0
        self.successes = 0
        self.doublings = 0
        self.admitted = 0
        self.trials: list[Call] = []
        self.window: Window | None = None
        self.mode = "auto"
        self.transitions: list[tuple[State, State]] = []
        self.stats = {outcome.value: 0 for outcome in Outcome}
        self.in_flight: list[tuple[Guard, Call]] = []

        def body(kind: str) -> str:
            if kind == "slow":
                self.clock.advance(SLOW)
                self.hang()  # the ticker ran while the call took its time
                return "ok"
            if kind == "boom":
                raise Boom
            if kind == "notfound":
                raise NotFound
            if kind == "abort":
                raise Abort
            return kind  # "ok" or "bad"

        async def abody(kind: str) -> str:
            return body(kind)

        def bad(result: object) -> bool:
            return result == "bad"

        self.body, self.abody = body, abody
        self.decorated = self.provider.circuit(NAME, exclude=[NotFound], failure_if=bad)(body)
        self.adecorated = self.provider.circuit(NAME, exclude=[NotFound], failure_if=bad)(abody)

    def teardown(self) -> None:
        self.provider.close()

    # -- the model ------------------------------------------------------------------

    def period(self) -> float:
        p = self.policy
        if p.max_open_state_timeout is None or not self.doublings:
            return p.open_state_timeout
        return min(p.open_state_timeout * 2.0**self.doublings, p.max_open_state_timeout)

    def enter(self, state: str) -> None:
        names = {"closed": State.CLOSED, "open": State.OPEN, "half-open": State.HALF_OPEN}
        self.transitions.append((names[self.state], names[state]))
        self.state = state
        self.era += 1
        self.started = self.clock()
        self.successes = 0
        self.admitted = 0
        self.trials = []
        if state == "closed":
            self.failures = 0

    def trip(self) -> None:
        self.doublings = 0
        self.enter("open")

    def close(self) -> None:
        self.doublings = 0
        self.enter("closed")
        self.reset_window()

    def reset_window(self) -> None:
        if self.window is not None:
            self.window = Window(self.policy.rate_window)

    def tick(self) -> None:
        due = self.clock() - self.started >= self.period()
        if self.state == "open" and self.mode != "forced-open" and due:
            self.enter("half-open")

    def hang(self) -> None:
        """Count as slow, once, the calls left in flight past slowCallDuration, as the
        ticker does on every advance (each is longer than a slice of slowCallDuration)."""
        slow = self.policy.slow_call_duration
        if slow is None:
            return
        now = self.clock()
        due = []
        for _, call in self.in_flight:
            if call.track != "hung" and call.watched is not None:
                on_lane, since = call.watched
                if since + slow <= now:
                    due.append((not on_lane, since, call))
        # The engine counts the lanes' calls first, then the slow way's, oldest first.
        for _, _, call in sorted(due, key=lambda d: (d[0], d[1])):
            self.settle(call, "slow")
            call.track = "hung"

    def admit(self) -> tuple[Call | None, tuple[str, float] | None]:
        """Return the admitted call, or the rejection (state, retry_after)."""
        now = self.clock()
        if self.mode == "forced-open":
            return None, ("open", self.policy.open_state_timeout)
        if self.mode == "disabled":
            return Call(self.era, now, False, "stats", True), None
        self.tick()
        if self.state == "closed":
            timed = self.policy.slow_call_duration is not None
            return Call(self.era, now, False, "tracked", timed), None
        if self.state == "half-open":
            limit = self.policy.success_threshold
            if self.admitted >= limit:  # every trial without a verdict for a whole timeout
                while self.trials and now - self.trials[0].at >= self.policy.open_state_timeout:
                    self.trials.pop(0)
                    self.admitted -= 1
            if self.admitted < limit:
                call = Call(self.era, now, True, "tracked", True)
                self.trials.append(call)
                self.admitted += 1
                return call, None
            rejection = ("half-open", self.trials[0].at + self.policy.open_state_timeout - now)
        else:
            rejection = ("open", self.started + self.period() - now)
        if self.mode == "shadow":
            self.stats["rejected"] += 1
            return Call(self.era, now, False, "uncounted", True), None
        return None, rejection

    def settle(self, call: Call, outcome: str) -> None:
        now = self.clock()
        if call.track == "uncounted":
            return
        slow = self.policy.slow_call_duration
        if call.timed and slow is not None and now - call.at > slow:
            outcome = "slow"
        self.stats[outcome] += 1
        if call.track == "stats" or call.era != self.era:
            return
        failed = outcome in ("failure", "slow")
        if self.state == "closed":
            if outcome == "cancelled":
                return
            if failed:
                self.failures += 1
            else:
                self.failures = 0
            if self.window is not None:
                self.window.add(now, failed)
            threshold = self.policy.failure_threshold
            tripped = failed and threshold and self.failures >= threshold
            if tripped or (self.window is not None and self.window.exceeded(self.policy)):
                self.trip()
        elif self.state == "half-open" and call in self.trials:
            self.trials.remove(call)
            if failed:
                self.doublings = min(self.doublings + 1, 64)
                self.enter("open")
            elif outcome == "cancelled":
                self.admitted -= 1
            else:
                self.successes += 1
                if self.successes >= self.policy.success_threshold:
                    self.close()

    def adopt(self, policy: Policy) -> None:
        if policy == self.policy:
            return
        self.policy = policy
        if policy.slow_call_duration is None:  # the engine stops watching for hung calls
            for _, call in self.in_flight:
                call.watched = None
        if policy.failure_rate is None:
            self.window = None
        elif self.window is None:
            self.window = Window(policy.rate_window)
        else:
            self.window.length = policy.rate_window
        old, mode = self.mode, policy.mode.value
        self.mode = mode
        if mode != old:
            if mode == "forced-open":
                if self.state != "open":
                    self.enter("open")
            elif mode == "disabled":
                if self.state != "closed":
                    self.close()
                self.failures = 0
                self.reset_window()
            elif old == "forced-open":
                self.enter("half-open")
            elif old == "disabled":
                self.reset_window()
        if (
            self.state == "half-open"
            and self.mode != "forced-open"
            and self.successes >= policy.success_threshold
        ):
            self.close()

    @staticmethod
    def outcome(kind: str, judged: bool, excludes: bool) -> str:
        """Return how a way in counts ``kind``: only some ways judge results or exclude."""
        if kind == "bad":
            return "failure" if judged else "success"
        if kind in ("ok", "slow"):
            return "success"
        if kind == "notfound":
            return "excluded" if excludes else "failure"
        return "cancelled" if kind == "abort" else "failure"

    # -- rules ----------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.5, 1.5, 3.0, 5.0, 10.0, 25.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        if self.window is not None:  # the ticker drops what left the window as time passes
            self.window.expire(self.clock())
        self.hang()

    @rule(policy=model_policies())
    def change_policy(self, policy: Policy) -> None:
        self.coord.put(PREFIX + NAME + ".json", json.dumps(policy.to_dict()))
        assert self.brk.policy == policy
        self.adopt(policy)

    @rule(
        way=st.sampled_from(["do", "do_async", "decorated", "adecorated", "guard"]),
        kind=st.sampled_from(["ok", "ok", "bad", "boom", "boom", "notfound", "abort", "slow"]),
    )
    def call(self, way: str, kind: str) -> None:
        judged = way in ("decorated", "adecorated", "guard")
        expected, rejection = self.admit()
        try:
            result = self.run(way, kind)
        except BreakerOpenError as exc:
            assert rejection is not None, f"rejected, the model admits: {exc}"
            assert exc.state.value == rejection[0]
            assert exc.retry_after == pytest.approx(max(rejection[1], 0.0))
            self.stats["rejected"] += 1
            return
        except (Boom, NotFound, Abort):
            assert kind in ("boom", "notfound", "abort")
        else:
            assert result == ("ok" if kind == "slow" else kind)
        assert expected is not None, "admitted, the model rejects"
        self.settle(expected, self.outcome(kind, judged, judged))

    def run(self, way: str, kind: str) -> Any:
        if way == "do":
            return self.brk.do(self.body, kind)
        if way == "do_async":
            return asyncio.run(self.brk.do_async(self.abody, kind))
        if way == "decorated":
            return self.decorated(kind)
        if way == "adecorated":
            return asyncio.run(self.adecorated(kind))
        with self.provider.guard(NAME, exclude=[NotFound]) as guard:
            result = self.body(kind)
            if result == "bad":
                guard.record_failure()
            return result

    @rule()
    def start(self) -> None:
        expected, rejection = self.admit()
        guard = self.provider.guard(NAME, exclude=[NotFound])
        try:
            guard.__enter__()
        except BreakerOpenError as exc:
            assert rejection is not None
            assert exc.state.value == rejection[0]
            self.stats["rejected"] += 1
            return
        assert expected is not None
        expected.watch(self.brk, guard._ticket)
        self.in_flight.append((guard, expected))

    @precondition(lambda self: self.in_flight)
    @rule(
        data=st.data(),
        kind=st.sampled_from(["ok", "bad", "boom", "notfound", "abort"]),
    )
    def finish(self, data: st.DataObject, kind: str) -> None:
        index = data.draw(st.integers(0, len(self.in_flight) - 1))
        guard, expected = self.in_flight.pop(index)
        exc: BaseException | None = {"boom": Boom(), "notfound": NotFound(), "abort": Abort()}.get(
            kind
        )
        if kind == "bad":
            guard.record_failure()
        guard.__exit__(None if exc is None else type(exc), exc, None)
        if expected.track != "hung":  # counted as slow while it hung
            self.settle(expected, self.outcome(kind, True, True))

    @invariant()
    def same_picture(self) -> None:
        self.tick()
        assert self.brk.state.value == self.state
        assert self.brk.mode.value == self.mode
        assert self.brk.stats().calls == self.stats
        assert self.events == self.transitions


TestModel = Model.TestCase
TestModel.settings = settings(max_examples=250, stateful_step_count=40, deadline=None)
