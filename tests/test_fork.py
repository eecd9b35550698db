"""Pre-fork servers (gunicorn --preload, uWSGI, multiprocessing) fork a process that has a
provider already: the child must work, and the parent must not notice. These tests fork
for real; each child reports through its exit status and never returns into pytest."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

import breaker
from breaker import Config, MemoryCoord, Policy, State

from .helpers import PREFIX, Boom, fail

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a threaded process may deadlock: that is the point.
    pytest.mark.filterwarnings(
        "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"
    ),
]


def in_child(body: Callable[[], None], timeout: float = 20) -> int:
    """Fork; run ``body`` in the child; return the child's exit code (124 if it hung)."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            signal.alarm(int(timeout))  # a child that hangs dies instead of hanging the suite
            body()
            code = 0
        except BaseException as exc:
            os.write(2, f"child failed: {exc!r}\n".encode())
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout + 5
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return 124


def test_forking_while_another_thread_applies_policies() -> None:
    """10 of 10 children used to hang in get_breaker or MemoryCoord.put."""
    coord = MemoryCoord()
    provider = breaker.new(Config("s", PREFIX), coord=coord)
    stop = threading.Event()
    names = [f"p{k}" for k in range(20)]

    def writer() -> None:
        i = 0
        while not stop.is_set():
            # One snapshot holds all 20 documents with the same threshold.
            doc = json.dumps({"failureThreshold": 1 + i % 50})
            coord.put_many({f"{PREFIX}{name}.json": doc for name in names})
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()

    def child() -> None:
        provider.get_breaker("made-in-the-child").do(lambda: None)
        thresholds = {provider.policy(name).failure_threshold for name in names}
        assert len(thresholds) == 1, f"the child saw half an update: {thresholds}"
        coord.put(PREFIX + "child.json", '{"failureThreshold": 7}')
        assert provider.policy("child").failure_threshold == 7
        provider.close()

    try:
        codes = []
        for _ in range(10):
            time.sleep(0.005)
            codes.append(in_child(child))
    finally:
        stop.set()
        thread.join(10)
    assert codes == [0] * 10
    coord.put(PREFIX + "after.json", '{"failureThreshold": 3}')  # the parent is unaffected
    assert provider.policy("after").failure_threshold == 3
    assert "child" not in provider.policies
    provider.close()


def test_breaker_states_and_counts_carry_over_to_the_child() -> None:
    coord = MemoryCoord()
    two = Policy(failure_threshold=2)
    with breaker.new(Config("s", PREFIX), coord=coord, default_policy=two) as provider:
        payments = provider.get_breaker("payments")
        inventory = provider.get_breaker("inventory")
        for _ in range(2):
            with pytest.raises(Boom):
                payments.do(fail)
        with pytest.raises(Boom):
            inventory.do(fail)

        def child() -> None:
            assert payments.state is State.OPEN
            assert payments.stats().calls["failure"] == 2
            with pytest.raises(Boom):
                inventory.do(fail)  # its second failure in a row trips it
            assert inventory.state is State.OPEN

        assert in_child(child) == 0
        assert inventory.state is State.CLOSED  # the child's calls stay in the child


def test_a_listener_running_in_another_thread_at_fork_time_does_not_mute_the_child() -> None:
    seen: list[State] = []
    inside = threading.Event()
    release = threading.Event()

    def listener(event: breaker.StateChange) -> None:
        if threading.current_thread().name == "blocker":
            inside.set()
            release.wait(10)  # still delivering when the process forks
        seen.append(event.new)

    with breaker.new(
        Config("s", PREFIX), coord=MemoryCoord(), default_policy=Policy(failure_threshold=1)
    ) as provider:
        provider.add_listener(listener)
        brk = provider.get_breaker("payments")

        def trip() -> None:
            with pytest.raises(Boom):
                brk.do(fail)

        blocker = threading.Thread(target=trip, name="blocker")
        blocker.start()
        assert inside.wait(10)

        def child() -> None:
            breaker.testing.force_state(brk, State.CLOSED)
            assert seen[-1:] == [State.CLOSED], seen

        try:
            assert in_child(child) == 0
        finally:
            release.set()
            blocker.join(10)
        assert seen == [State.OPEN]


def test_calls_in_flight_and_waiting_at_fork_time_stay_in_the_parent() -> None:
    """The threads making them do not exist in the child: their slots, their watch for
    hanging and their places in the queue must not jam the child's breaker."""
    doc = (
        '{"maxConcurrentCalls": 2, "maxWaitDuration": "30s", "slowCallDuration": "100ms",'
        ' "failureThreshold": 5}'
    )
    coord = MemoryCoord({PREFIX + "payments.json": doc})
    with breaker.new(Config("s", PREFIX), coord=coord) as provider:
        payments = provider.get_breaker("payments")
        release = threading.Event()
        entered = threading.Semaphore(0)

        def hold() -> None:
            entered.release()
            assert release.wait(30)

        threads = [threading.Thread(target=payments.do, args=(hold,)) for _ in range(2)]
        threads.append(threading.Thread(target=payments.do, args=(lambda: None,)))
        for t in threads[:2]:
            t.start()
        for _ in range(2):
            assert entered.acquire(timeout=10)
        threads[2].start()
        deadline = time.monotonic() + 10
        while not payments._waiters and time.monotonic() < deadline:
            time.sleep(0.002)
        assert payments.stats().in_flight == 2 and payments._waiters

        def child() -> None:
            assert payments.stats().in_flight == 0
            assert not payments._waiters
            for _ in range(3):
                assert payments.do(lambda: "ok") == "ok"
            time.sleep(0.2)  # past slowCallDuration: the parent's calls did not hang here
            assert payments.do(lambda: "still") == "still"
            assert payments.state is State.CLOSED
            assert payments.stats().calls["slow"] == 0

        try:
            assert in_child(child) == 0
        finally:
            release.set()
            for t in threads:
                t.join(10)
        stats = payments.stats()  # the parent's own calls ended there, the two held as slow
        assert stats.in_flight == 0
        assert (stats.calls["success"], stats.calls["slow"]) == (1, 2)
