"""ConsulCoord across a real os.fork(): the child watches on its own, the parent is untouched."""

from __future__ import annotations

import json
import logging
import os
import queue
import select
import threading
import warnings
import weakref
from collections.abc import Iterator

import pytest

import breaker
from breaker.coord import Snapshot
from breaker.coord.consul import _coord
from breaker.testing import ConsulServer, FaultProxy

from .helpers import PREFIX, eventually, save_coverage

pytestmark = [
    pytest.mark.fault_injection,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
]

KEY = PREFIX + "payments.json"
TIMEOUT = 10.0


def doc(failure_threshold: int) -> bytes:
    return json.dumps({"failureThreshold": failure_threshold}).encode()


class Pipe:
    """Lines from one process to the other (a pipe: no lock that a fork could copy held)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._buffer = b""

    def send(self, line: str) -> None:
        os.write(self.write_fd, line.encode() + b"\n")

    def receive(self, timeout: float = TIMEOUT) -> str:
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self.read_fd], [], [], timeout)
            assert ready, "nothing came through the pipe in time"
            chunk = os.read(self.read_fd, 4096)
            assert chunk, "the other end closed the pipe"
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def fork() -> int:
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process that has threads may deadlock: the
        # very situation the coord's at-fork handler exists for.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("breaker-consul-watch")]


def queries_on(server: ConsulServer, index: int) -> int:
    return sum(1 for r in server.requests_log if r.query.get("index") == str(index))


@pytest.fixture
def server() -> Iterator[ConsulServer]:
    with ConsulServer(jitter=False) as server:
        server.put(KEY, doc(1))
        yield server


def test_a_forked_child_watches_on_its_own_and_leaves_the_parent_alone(
    server: ConsulServer, caplog: pytest.LogCaptureFixture
) -> None:
    coord = breaker.ConsulCoord(server.addr, wait=30, timeout=2)
    to_parent, to_child = Pipe(), Pipe()
    parent_got: queue.Queue[Snapshot] = queue.Queue()
    parent = os.getpid()

    def on_change(snapshot: Snapshot) -> None:
        if os.getpid() == parent:
            parent_got.put(dict(snapshot))
        else:
            to_parent.send("snapshot " + snapshot.get(KEY, b"").decode())

    with caplog.at_level(logging.WARNING, logger="breaker"):
        watch = coord.watch(PREFIX, on_change)
        assert parent_got.get(timeout=TIMEOUT) == {KEY: doc(1)}
        eventually(lambda: queries_on(server, server.index) == 1)  # in flight when we fork

        pid = fork()
        if pid == 0:  # the child: report through the pipe, never return into pytest
            code = 1
            try:
                to_parent.send("forked")
                if to_child.receive() == "close":
                    coord.close()
                    to_parent.send("closed")
                    code = 0
            except BaseException as exc:
                to_parent.send(f"error {exc!r}")
            finally:
                save_coverage()
                os._exit(code)

        try:
            # The child's watch restarted on a new connection from index 0: a full snapshot
            # to the same callback (its thread may report before the child's main code
            # does), then a change written after the fork.
            first = {to_parent.receive(), to_parent.receive()}
            assert first == {"forked", "snapshot " + doc(1).decode()}
            server.put(KEY, doc(2))
            assert to_parent.receive() == "snapshot " + doc(2).decode()
            assert parent_got.get(timeout=TIMEOUT) == {KEY: doc(2)}
            # Both watchers block on the new index; the child's close() must not break the
            # parent's query, whose connection the child inherited.
            eventually(lambda: queries_on(server, server.index) == 2)
            to_child.send("close")
            assert to_parent.receive() == "closed"
        finally:
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0

        server.put(KEY, doc(3))
        assert parent_got.get(timeout=TIMEOUT) == {KEY: doc(3)}
        assert watch.health().up
        coord.close()
    assert caplog.records == []  # the parent's query was never broken, nor anything logged
    to_parent.close()
    to_child.close()


def test_parent_and_child_hold_one_connection_each(server: ConsulServer) -> None:
    """Issue 21: one connection per process, the start-up read's included, across fork."""
    with FaultProxy(server.addr) as proxy:
        coord = breaker.ConsulCoord(proxy.addr, wait=30, timeout=2)
        to_parent, to_child = Pipe(), Pipe()
        parent = os.getpid()

        def on_change(snapshot: Snapshot) -> None:
            if os.getpid() != parent:
                to_parent.send("snapshot")

        assert coord.load(PREFIX) == {KEY: doc(1)}  # what a provider does at start-up ...
        coord.watch(PREFIX, on_change)  # ... then its watch
        eventually(lambda: queries_on(server, server.index) == 1)
        assert proxy.open_connections == 1  # before: 2, the start-up read's kept idle

        pid = fork()
        if pid == 0:
            code = 1
            try:
                if to_child.receive() == "close":
                    coord.close()
                    code = 0
            finally:
                save_coverage()
                os._exit(code)
        try:
            assert to_parent.receive() == "snapshot"  # the child's watch read from 0
            eventually(lambda: queries_on(server, server.index) == 2)
            assert (proxy.accepted, proxy.open_connections) == (2, 2)  # one per process
            to_child.send("close")
        finally:
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        coord.close()
    to_parent.close()
    to_child.close()


# What the at-fork handler does with what should not come back to life in the child. These
# call the handler in this process: nothing in them may start a thread.


def test_a_coord_closed_before_the_fork_stays_closed_in_the_child(server: ConsulServer) -> None:
    coord = breaker.ConsulCoord(server.addr, wait=30, timeout=2)
    coord.watch(PREFIX, lambda snapshot: None)
    coord.close()

    coord._after_fork_in_child()

    assert watch_threads() == []  # nothing started (other tests' threads may come and go)
    with pytest.raises(breaker.CoordError, match="closed"):
        coord.watch(PREFIX, lambda snapshot: None)


def test_a_watch_stopping_when_the_process_forked_is_not_restarted(
    server: ConsulServer,
) -> None:
    coord = breaker.ConsulCoord(server.addr, wait=30, timeout=2)
    watch = coord.watch(PREFIX, lambda snapshot: None)
    watch.stop()  # as if a fork caught another thread in the middle of stop()
    health = watch.health()

    watch.restart_in_child()

    assert watch_threads() == []  # nothing started (other tests' threads may come and go)
    assert watch.health() == health
    coord.close()


def test_one_coord_failing_in_the_child_does_not_leave_the_others_dead(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    restarted: list[str] = []

    class Broken:
        def _after_fork_in_child(self) -> None:
            raise OSError("no more file descriptors")

        def __repr__(self) -> str:
            return "<broken coord>"

    class Healthy:
        def _after_fork_in_child(self) -> None:
            restarted.append("healthy")

    coords = [Broken(), Healthy(), Broken()]
    monkeypatch.setattr(_coord, "_LIVE", weakref.WeakSet(coords))

    _coord._after_fork_in_child()

    assert restarted == ["healthy"]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 2
    assert failures[0].getMessage() == "restarting <broken coord> in a forked child failed"
    assert "no more file descriptors" in caplog.text
