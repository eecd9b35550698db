"""One contract, every coord: the same tests run on MemoryCoord and on ConsulCoord.

ConsulCoord runs against the embedded Consul-compatible server, or unchanged against a
real agent when CONSUL_HTTP_ADDR is set.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import breaker
from breaker import Config, CoordError, Policy, State
from breaker.coord import Coord, KVEntry, SessionCoord, Snapshot, TxnCoord, TxnOp
from breaker.testing import ConsulServer, FakeClock
from breaker.testing.pytest_plugin import ConsulHandle

TIMEOUT = 10.0


class Backend:
    """A coord under test plus an operator's way to write to its store."""

    def __init__(self, prefix: str, make: Callable[[], Coord], put: Any, delete: Any) -> None:
        self.prefix = prefix
        self.make = make
        self.put = put
        self.delete = delete


@pytest.fixture(params=["memory", "consul"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        store = breaker.MemoryCoord()
        prefix = "config/dev/checkout/breakers/"

        class Shared(breaker.MemoryCoord):
            """Every coord the test makes sees the same store."""

            def __new__(cls) -> breaker.MemoryCoord:  # type: ignore[misc]
                return store

        yield Backend(prefix, Shared, store.put, store.delete)
        return
    consul: ConsulHandle = request.getfixturevalue("consul")
    prefix = request.getfixturevalue("consul_prefix") + "breakers/"
    made: list[breaker.ConsulCoord] = []

    def make() -> breaker.ConsulCoord:
        coord = breaker.ConsulCoord(consul.url, token=consul.token, wait=5, timeout=2)
        made.append(coord)
        return coord

    yield Backend(prefix, make, consul.put, consul.delete)
    for coord in made:
        coord.close()


class Snapshots:
    """Collect the snapshots a watch delivers, so a test can wait for the next one."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Snapshot] = queue.Queue()
        self.threads: set[str] = set()

    def __call__(self, snapshot: Snapshot) -> None:
        self.threads.add(threading.current_thread().name)
        self.queue.put(dict(snapshot))

    def next(self) -> dict[str, bytes]:
        return dict(self.queue.get(timeout=TIMEOUT))

    def until(self, predicate: Callable[[dict[str, bytes]], bool]) -> dict[str, bytes]:
        while True:
            snapshot = self.next()
            if predicate(snapshot):
                return snapshot


class TestLoad:
    def test_load_returns_every_key_under_the_prefix_only(self, backend: Backend) -> None:
        backend.put(backend.prefix + "payments.json", b'{"failureThreshold": 2}')
        backend.put(backend.prefix + "svc/inventory.json", b"{}")
        backend.put(backend.prefix + "notes.txt", b"hello")
        backend.put(backend.prefix.rstrip("/") + "-other/payments.json", b"{}")
        snapshot = backend.make().load(backend.prefix)
        assert snapshot == {
            backend.prefix + "payments.json": b'{"failureThreshold": 2}',
            backend.prefix + "svc/inventory.json": b"{}",
            backend.prefix + "notes.txt": b"hello",
        }

    def test_an_empty_prefix_is_an_empty_snapshot(self, backend: Backend) -> None:
        assert backend.make().load(backend.prefix) == {}


class TestWatch:
    def test_delivers_the_current_content_then_every_change(self, backend: Backend) -> None:
        key = backend.prefix + "payments.json"
        backend.put(key, b"v1")
        got = Snapshots()
        watch = backend.make().watch(backend.prefix, got)
        assert got.next() == {key: b"v1"}
        backend.put(key, b"v2")
        assert got.until(lambda s: s.get(key) != b"v1") == {key: b"v2"}
        backend.delete(key)
        assert got.until(lambda s: key not in s) == {}
        backend.put(key, b"v3")
        assert got.until(lambda s: key in s) == {key: b"v3"}
        watch.stop()

    def test_writes_elsewhere_deliver_nothing_new(self, backend: Backend) -> None:
        key = backend.prefix + "payments.json"
        backend.put(key, b"v1")
        got = Snapshots()
        watch = backend.make().watch(backend.prefix, got)
        assert got.next() == {key: b"v1"}
        backend.put(backend.prefix.rstrip("/") + "-other/x.json", b"elsewhere")
        backend.put(key, b"v2")
        # The next snapshot is the one with the change: none was delivered in between.
        assert got.next() == {key: b"v2"}
        watch.stop()

    def test_no_snapshot_after_stop(self, backend: Backend) -> None:
        key = backend.prefix + "payments.json"
        got = Snapshots()
        watch = backend.make().watch(backend.prefix, got)
        assert got.next() == {}
        watch.stop()
        backend.put(key, b"after")
        with pytest.raises(queue.Empty):
            got.queue.get(timeout=0.3)

    def test_writes_through_the_coord_itself(self, backend: Backend) -> None:
        coord = backend.make()
        got = Snapshots()
        watch = coord.watch(backend.prefix, got)
        assert got.next() == {}
        key = "/" + backend.prefix + "payments.json"  # a leading slash is dropped
        coord.put(key, '{"failureThreshold": 2}')  # type: ignore[attr-defined]
        assert got.until(bool) == {key[1:]: b'{"failureThreshold": 2}'}
        coord.delete(backend.prefix, recurse=True)  # type: ignore[attr-defined]
        assert got.until(lambda s: not s) == {}
        watch.stop()

    def test_health_is_up_once_the_first_snapshot_arrives(self, backend: Backend) -> None:
        got = Snapshots()
        before = time.time()
        watch = backend.make().watch(backend.prefix, got)
        assert got.next() == {}
        health = watch.health()
        assert health.up and health.last_error is None
        assert health.last_sync is not None and before <= health.last_sync <= time.time()
        watch.stop()

    def test_close_is_idempotent(self, backend: Backend) -> None:
        coord = backend.make()
        coord.watch(backend.prefix, Snapshots())
        coord.close()
        coord.close()


class Applied:
    """Wait, without polling, until the provider has applied a snapshot that satisfies a test."""

    def __init__(self) -> None:
        self.cond = threading.Condition()

    def wrap(self, coord: Coord) -> Coord:
        cond = self.cond
        real_watch = coord.watch

        def watch(prefix: str, on_change: Callable[[Snapshot], None]) -> Any:
            def notify(snapshot: Snapshot) -> None:
                on_change(snapshot)
                with cond:
                    cond.notify_all()

            return real_watch(prefix, notify)

        coord.watch = watch  # type: ignore[method-assign]
        return coord

    def until(self, predicate: Callable[[], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(predicate, timeout=TIMEOUT), "not applied in time"


@pytest.fixture
def applied() -> Applied:
    return Applied()


def provider_for(backend: Backend, applied: Applied) -> breaker.Provider:
    config = Config(service_name="checkout", policies_path="/" + backend.prefix)
    default = Policy(failure_threshold=3, success_threshold=1, open_state_timeout=30)
    return breaker.new(config, coord=applied.wrap(backend.make()), default_policy=default)


class TestProviderOnEveryCoord:
    def test_stored_policies_are_in_effect_when_new_returns(
        self, backend: Backend, applied: Applied
    ) -> None:
        backend.put(
            backend.prefix + "payments.json", b'{"failureThreshold": 2, "openStateTimeout": "1m"}'
        )
        backend.put(backend.prefix + "svc/ledger.json", b'{"successThreshold": 4}')
        backend.put(backend.prefix + "grpc:user-service.json", b'{"failureThreshold": 6}')
        backend.put(backend.prefix + "pkg.Users/Get.json", b'{"failureThreshold": 9}')
        backend.put(backend.prefix + "README", b"not a policy")
        with provider_for(backend, applied) as p:
            assert p.get_breaker("payments").policy == Policy(2, 1, 60)
            assert p.get_breaker("svc/ledger").policy.success_threshold == 4
            assert p.get_breaker("grpc:user-service").policy.failure_threshold == 6
            assert p.get_breaker("/pkg.Users/Get").policy.failure_threshold == 9
            assert sorted(p.policies) == [
                "grpc:user-service",
                "payments",
                "pkg.Users/Get",
                "svc/ledger",
            ]

    def test_update_delete_recreate_reach_a_live_breaker(
        self, backend: Backend, applied: Applied
    ) -> None:
        key = backend.prefix + "payments.json"
        with provider_for(backend, applied) as p:
            brk = p.get_breaker("payments")
            for _ in range(2):
                with pytest.raises(ZeroDivisionError):
                    brk.do(lambda: 1 / 0)
            backend.put(key, json.dumps({"failureThreshold": 5}).encode())
            applied.until(lambda: brk.policy.failure_threshold == 5)
            assert brk.stats().calls["failure"] == 2  # counts survive the change
            backend.delete(key)
            applied.until(lambda: brk.policy == p.default_policy)
            backend.put(key, b'{"failureThreshold": 1}')
            applied.until(lambda: brk.policy.failure_threshold == 1)
            with pytest.raises(ZeroDivisionError):
                brk.do(lambda: 1 / 0)
            assert brk.state is State.OPEN

    def test_invalid_documents_are_never_applied(
        self, backend: Backend, applied: Applied, caplog: pytest.LogCaptureFixture
    ) -> None:
        key = backend.prefix + "payments.json"
        marker = backend.prefix + "marker.json"
        backend.put(key, b'{"failureThreshold": 4}')
        bad_documents = [
            b"{oops",
            b'{"failureThreshold": "4"}',
            b'{"openStateTimeout": "0s"}',
            b"[]",
        ]
        with provider_for(backend, applied) as p:
            brk = p.get_breaker("payments")
            for n, bad in enumerate(bad_documents, start=1):
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="breaker"):
                    backend.put(key, bad)
                    # A later write: once it is applied, so is every snapshot before it.
                    backend.put(marker, json.dumps({"failureThreshold": n}).encode())
                    applied.until(lambda n=n: p.policy("marker").failure_threshold == n)
                assert brk.policy.failure_threshold == 4
                assert f"{key}: " in caplog.text
                assert "keeping the last good policy" in caplog.text


class TestMemoryCoordDetails:
    def test_get_and_a_watch_stopped_twice(self) -> None:
        coord = breaker.MemoryCoord({"/a/x.json": "1"})
        assert coord.get("a/x.json") == b"1" and coord.get("a/y.json") is None
        watch = coord.watch("a/", lambda snapshot: None)
        assert watch.health().up
        watch.stop()
        watch.stop()  # a second stop is harmless
        coord.close()

    def test_a_failing_watcher_is_logged_and_others_still_hear(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        coord = breaker.MemoryCoord()
        heard: list[Snapshot] = []
        calls = 0

        def broken(snapshot: Snapshot) -> None:
            nonlocal calls
            calls += 1
            if calls > 1:  # the first delivery comes from watch() itself
                raise RuntimeError("watcher bug")

        coord.watch("a/", broken)
        coord.watch("a/", heard.append)
        coord.put("a/x.json", "{}")
        assert heard[-1] == {"a/x.json": b"{}"}
        assert "coord watcher of 'a/' failed" in caplog.text and "watcher bug" in caplog.text
        coord.close()


# -- sessions and transactions: the optional capabilities ----------------------------------


class Timed:
    """A coord with sessions and transactions whose clock the test moves, and its store."""

    def __init__(self, make: Callable[[], Any], clock: FakeClock, prefix: str) -> None:
        self.make = make
        self.clock = clock
        self.prefix = prefix


@pytest.fixture(params=["memory", "consul"])
def timed(request: pytest.FixtureRequest) -> Iterator[Timed]:
    """Both coords on a clock the test moves: memory, or the stand-in (never a real agent,
    whose clock no test can move)."""
    clock = FakeClock()
    prefix = "fleet/checkout/"
    if request.param == "memory":
        store = breaker.MemoryCoord(clock=clock)
        yield Timed(lambda: store, clock, prefix)
        return
    with ConsulServer(jitter=False, clock=clock) as server:
        made: list[breaker.ConsulCoord] = []

        def make() -> breaker.ConsulCoord:
            made.append(breaker.ConsulCoord(server.addr, wait=5, timeout=2))
            return made[-1]

        yield Timed(make, clock, prefix)
        for coord in made:
            coord.close()


def entry_of(coord: Any, key: str) -> KVEntry | None:
    result = coord.txn([TxnOp.get_tree(key)])
    assert result.ok
    found = [entry for entry in result.entries if entry.key == key]
    return found[0] if found else None


class TestSessions:
    def test_both_coords_have_the_capabilities(self, backend: Backend) -> None:
        coord = backend.make()
        assert isinstance(coord, SessionCoord)
        assert isinstance(coord, TxnCoord)

    def test_acquire_holds_a_key_and_release_lets_go(self, backend: Backend) -> None:
        coord: Any = backend.make()
        key = backend.prefix + "lock"
        mine = coord.create_session(ttl=30, lock_delay=0)
        theirs = coord.create_session(ttl=30)

        assert coord.acquire(key, "a", mine) is True
        assert coord.acquire(key, "b", mine) is True  # held already: the same lock
        assert coord.acquire(key, "c", theirs) is False
        assert coord.release(key, "d", theirs) is False
        held = entry_of(coord, key)
        assert held is not None
        assert (held.session, held.lock_index, held.value) == (mine, 1, b"b")

        assert coord.release("/" + key, "e", mine) is True
        released = entry_of(coord, key)
        assert released is not None and (released.session, released.value) == (None, b"e")
        assert coord.acquire(key, "f", theirs) is True
        again = entry_of(coord, key)
        assert again is not None and (again.session, again.lock_index) == (theirs, 2)
        for session in (mine, theirs):
            coord.destroy_session(session)

    def test_destroy_deletes_or_releases_and_watchers_hear(self, backend: Backend) -> None:
        coord: Any = backend.make()
        doomed, kept = backend.prefix + "doomed", backend.prefix + "kept"
        deleting = coord.create_session(ttl=30, behavior="delete", lock_delay=0)
        releasing = coord.create_session(ttl=30, behavior="release", lock_delay=0)
        assert coord.acquire(doomed, "x", deleting) and coord.acquire(kept, "y", releasing)
        got = Snapshots()
        watch = coord.watch(backend.prefix, got)
        assert got.next() == {doomed: b"x", kept: b"y"}

        coord.destroy_session(deleting)
        coord.destroy_session(releasing)
        coord.destroy_session(deleting)  # again: nothing happens

        assert got.until(lambda s: doomed not in s) == {kept: b"y"}
        released = entry_of(coord, kept)
        assert released is not None and released.session is None
        assert coord.renew_session(deleting) is False
        watch.stop()

    def test_renew_and_unknown_sessions(self, backend: Backend) -> None:
        coord: Any = backend.make()
        session = coord.create_session(ttl=10, name="breaker-fleet")
        assert coord.renew_session(session) is True
        unknown = "adf4238a-882b-9ddc-4a9d-5b6758e4159e"
        assert coord.renew_session(unknown) is False
        with pytest.raises(CoordError, match="invalid session"):
            coord.acquire(backend.prefix + "k", "v", unknown)
        coord.destroy_session(session)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"ttl": 5}, "TTL"),
            ({"ttl": 86401}, "TTL"),
            ({"ttl": 10, "behavior": "keep"}, "behavior"),
            ({"ttl": 10, "lock_delay": -1}, "lock_delay"),
        ],
    )
    def test_what_consul_refuses_is_a_value_error(
        self, backend: Backend, kwargs: dict[str, Any], match: str
    ) -> None:
        with pytest.raises(ValueError, match=match):
            backend.make().create_session(**kwargs)  # type: ignore[attr-defined]

    def test_a_session_ends_twice_its_ttl_after_its_last_renewal(self, timed: Timed) -> None:
        coord: Any = timed.make()
        key = timed.prefix + "me.json"
        session = coord.create_session(ttl=10, behavior="delete", lock_delay=0)
        assert coord.acquire(key, "{}", session)
        got = Snapshots()
        watch = coord.watch(timed.prefix, got)
        assert got.next() == {key: b"{}"}

        timed.clock.advance(19)
        assert coord.renew_session(session) is True
        timed.clock.advance(19)
        assert coord.load(timed.prefix) == {key: b"{}"}
        timed.clock.advance(1)

        assert coord.load(timed.prefix) == {}
        assert got.until(lambda s: not s) == {}
        assert coord.renew_session(session) is False
        watch.stop()

    def test_a_released_key_waits_out_the_lock_delay(self, timed: Timed) -> None:
        coord: Any = timed.make()
        key = timed.prefix + "lock"
        first = coord.create_session(ttl=0, lock_delay=5)
        second = coord.create_session(ttl=0)
        assert coord.acquire(key, "a", first)
        coord.destroy_session(first)

        assert coord.acquire(key, "b", second) is False
        locked = coord.txn([TxnOp.lock(key, "b", second)])
        assert not locked and "lock delay" in locked.errors[0].what
        timed.clock.advance(5)
        assert coord.acquire(key, "b", second) is True


class TestTxn:
    def test_writes_apply_together_and_report_entries(self, backend: Backend) -> None:
        coord: Any = backend.make()
        doc, history = backend.prefix + "payments.json", backend.prefix + "h/1"
        got = Snapshots()
        watch = coord.watch(backend.prefix, got)
        assert got.next() == {}

        created = coord.txn([TxnOp.cas(doc, "v1", 0), TxnOp.set(history, b"first")])

        assert created and created.errors == ()
        written, entry = created.entries
        assert (written.key, written.value, written.session) == (doc, None, None)
        assert written.modify_index == written.create_index == entry.modify_index > 0
        assert got.until(lambda s: len(s) == 2) == {doc: b"v1", history: b"first"}

        index = written.modify_index
        read = coord.txn([TxnOp.check_index(doc, index), TxnOp.get(doc), TxnOp.get_tree(doc)])
        assert read.ok
        checked, value, tree = read.entries
        assert (checked.value, value.value, tree.key) == (None, b"v1", doc)
        watch.stop()

    def test_a_failed_check_applies_nothing_and_says_why(self, backend: Backend) -> None:
        coord: Any = backend.make()
        doc, history = backend.prefix + "payments.json", backend.prefix + "h/2"
        first = coord.txn([TxnOp.set(doc, "v1")])
        index = first.entries[0].modify_index

        lost = coord.txn(
            [
                TxnOp.cas(doc, "v2", index + 1000),
                TxnOp.set(history, "entry"),
                TxnOp.check_not_exists(doc),
            ]
        )

        assert not lost and lost.entries == ()
        assert lost.errors[0].op_index == 0
        assert "index is stale" in lost.errors[0].what
        assert [e.op_index for e in lost.errors] == [0, 2]
        assert lost.errors[1].what == f'key "{doc}" exists'
        assert coord.load(backend.prefix) == {doc: b"v1"}

    def test_deletes_checks_and_what_they_report(self, backend: Backend) -> None:
        coord: Any = backend.make()
        a, b, c = (backend.prefix + name for name in ("a", "b", "t/c"))
        index = (
            coord.txn([TxnOp.set(a, "1"), TxnOp.set(b, "2"), TxnOp.set(c, "3")])
            .entries[0]
            .modify_index
        )
        session = coord.create_session(ttl=10)

        done = coord.txn(
            [
                TxnOp.check_session(a, None),
                TxnOp.delete_cas(a, index),
                TxnOp.delete(b),
                TxnOp.delete_tree(backend.prefix + "t/"),
                TxnOp.check_not_exists(a),
                TxnOp.lock(backend.prefix + "held", "x", session),
            ]
        )

        assert done.ok
        assert [(e.key, e.session) for e in done.entries] == [
            (a, None),
            (backend.prefix + "held", session),
        ]
        assert coord.load(backend.prefix) == {backend.prefix + "held": b"x"}
        held = backend.prefix + "held"
        for refused, why in [
            (TxnOp.get(a), "doesn't exist"),
            (TxnOp.check_session(held, None), "failed session check"),
            (TxnOp.unlock(held, "y", "other-session"), "failed to unlock"),
            (TxnOp.check_index(held, 1), "failed index check"),
            (TxnOp.delete_cas(held, 1), "index is stale"),
        ]:
            result = coord.txn([TxnOp.set(b, "never"), refused])
            assert not result and result.errors[0].op_index == 1, refused
            assert why in result.errors[0].what
        assert coord.load(backend.prefix) == {held: b"x"}
        assert coord.txn([TxnOp.unlock(backend.prefix + "held", "y", session)]).ok
        coord.destroy_session(session)

    def test_bounds(self, backend: Backend) -> None:
        coord: Any = backend.make()
        assert coord.txn([]).ok
        with pytest.raises(ValueError, match="128"):
            coord.txn([TxnOp.get(backend.prefix + "k")] * 129)
        missing = coord.txn([TxnOp.set("", "v")])
        assert not missing and missing.errors[0].what == "Must provide key"
