"""ConsulCoord against real-world faults, injected through the embedded server's hooks."""

from __future__ import annotations

import base64
import json
import logging
import re
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

import breaker
from breaker import Config, CoordError, Policy
from breaker.coord import Snapshot
from breaker.testing import ACLRule, ConsulServer, FakeClock, FaultProxy

from .helpers import PREFIX, TLS, FakeSleep, Impostor, acl_server, tls_server_context

pytestmark = pytest.mark.fault_injection

KEY = PREFIX + "payments.json"
TOKEN = "9f0c5f0e-s3cr3t-token"
TIMEOUT = 10.0


def coord_for(server: ConsulServer, **kwargs: object) -> breaker.ConsulCoord:
    settings: dict[str, object] = {
        "wait": 1.0,
        "timeout": 0.5,
        "min_interval": 0.02,
        "backoff_first": 0.05,
        "backoff_cap": 0.2,
    }
    settings.update(kwargs)
    return breaker.ConsulCoord(server.addr, **settings)  # type: ignore[arg-type]


def new(server: ConsulServer, *, strict: bool = False, **kwargs: object) -> breaker.Provider:
    return breaker.new(
        Config("checkout", "/" + PREFIX),
        coord=coord_for(server, **kwargs),
        default_policy=Policy(failure_threshold=3),
        strict=strict,
    )


def eventually(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait for a background thread (the watcher) to make ``predicate`` true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("breaker-consul-watch")]


def blocking_requests(server: ConsulServer) -> int:
    return sum(1 for r in server.requests_log if "index" in r.query)


def doc(failure_threshold: int) -> str:
    return json.dumps({"failureThreshold": failure_threshold})


@pytest.fixture
def reader_server() -> Iterator[ConsulServer]:
    """A server with ACLs on (default deny) where TOKEN may read config/; payments at 2."""
    with acl_server({TOKEN: [ACLRule("config/", "read")]}, keys={KEY: doc(2)}) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_thread_left() -> Iterator[None]:
    yield
    eventually(lambda: not watch_threads(), timeout=2)


class TestStartUp:
    def test_leading_slash_nested_and_colon_names(self, consul_server: ConsulServer) -> None:
        consul_server.put(PREFIX + "svc/payments.json", doc(2))
        consul_server.put(PREFIX + "grpc:user-service.json", doc(4))
        consul_server.put(PREFIX + "legacy.yaml", "failureThreshold: 1")
        consul_server.put(PREFIX + "folder/", "")
        with new(consul_server) as p:
            assert p.policy("svc/payments").failure_threshold == 2
            assert p.policy("grpc:user-service").failure_threshold == 4
            assert sorted(p.policies) == ["grpc:user-service", "svc/payments"]
        assert consul_server.requests_log[0].path == "/v1/kv/" + PREFIX

    def test_down_at_start_then_up(
        self, consul_server: ConsulServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        consul_server.put(KEY, doc(7))
        consul_server.stop()
        started = time.monotonic()
        with new(consul_server) as p:
            assert time.monotonic() - started < 3
            assert p.policy("payments") == Policy(failure_threshold=3)  # the default
            assert "could not load policies" in caplog.text
            consul_server.start()
            eventually(lambda: p.policy("payments").failure_threshold == 7)

    def test_strict_start_fails_instead(self, consul_server: ConsulServer) -> None:
        consul_server.stop()
        with pytest.raises(CoordError, match="cannot reach Consul"):
            new(consul_server, strict=True)

    def test_an_accepted_but_silent_connection_does_not_stall_start_up(
        self, consul_server: ConsulServer
    ) -> None:
        consul_server.put(KEY, doc(7))
        consul_server.hang_next(1)
        started = time.monotonic()
        with new(consul_server) as p:
            assert time.monotonic() - started < 2  # the 0.5 s timeout, not forever
            eventually(lambda: p.policy("payments").failure_threshold == 7)

    def test_two_thousand_policies_load_at_once(self, consul_server: ConsulServer) -> None:
        for i in range(2000):
            consul_server.put(f"{PREFIX}svc-{i:04d}.json", doc(1 + i % 9))
        started = time.perf_counter()
        with new(consul_server, timeout=5) as p:
            took = time.perf_counter() - started
            assert len(p.policies) == 2000
            assert p.policy("svc-1234").failure_threshold == 1 + 1234 % 9
        print(f"initial load of 2,000 policies: {took * 1000:.0f} ms")


class TestFaults:
    def test_5xx_burst_keeps_policies_logs_once_and_recovers(
        self, consul_server: ConsulServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        consul_server.put(KEY, doc(5))
        with new(consul_server) as p:
            brk = p.get_breaker("payments")
            with caplog.at_level(logging.INFO, logger="breaker"):
                consul_server.fail_next(6, status=500, body="rpc error: leader lost")
                consul_server.put(KEY, doc(6))
                eventually(lambda: brk.policy.failure_threshold == 6)
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, warnings
            assert "HTTP 500" in warnings[0] and "leader lost" in warnings[0]
            assert "works again after 6 failed attempts" in caplog.text

    def test_429_honours_retry_after(self, consul_server: ConsulServer) -> None:
        clock = FakeClock()
        sleep = FakeSleep(clock)
        with new(consul_server, clock=clock, sleep=sleep) as p:
            consul_server.fail_next(1, status=429, headers={"Retry-After": "1"})
            consul_server.put(KEY, doc(8))
            eventually(lambda: p.policy("payments").failure_threshold == 8)
            # Backed off for Retry-After, though backoff_cap is 0.2 s.
            assert 1.0 in sleep.pauses
            assert max(sleep.pauses) == 1.0

    def test_403_backs_off_without_hammering_and_keeps_the_default(
        self, reader_server: ConsulServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        server = reader_server
        clock = FakeClock()
        sleep = FakeSleep(clock, park_after=5)
        with (
            caplog.at_level(logging.DEBUG, logger="breaker"),
            new(
                server,
                token="wrong-token",
                backoff_first=0.1,
                backoff_cap=0.4,
                clock=clock,
                sleep=sleep,
            ) as p,
        ):
            assert p.policy("payments") == Policy(failure_threshold=3)
            assert sleep.parked.wait(5)
            assert p.policy("payments") == Policy(failure_threshold=3)
            assert len(server.requests_log) == 1 + 6  # the load, then one read per pause
        # Backing off with jitter: between half and all of 0.1, 0.15, 0.225, 0.3375, 0.4 s.
        ceilings = [0.1, 0.15, 0.225, 0.3375, 0.4]
        for pause, ceiling in zip(sleep.pauses, ceilings, strict=True):
            assert ceiling / 2 <= pause <= ceiling
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        watch_warnings = [r for r in warnings if "watching Consul" in r.getMessage()]
        assert len(watch_warnings) == 1
        assert "403 permission denied" in watch_warnings[0].getMessage()
        assert "ACL not found" in watch_warnings[0].getMessage()
        assert "wrong-token" not in caplog.text

    def test_token_travels_in_the_header_and_never_in_logs(
        self, reader_server: ConsulServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        server = reader_server
        coord = coord_for(server, token=TOKEN)
        assert TOKEN not in repr(coord) + repr(coord.settings)
        with (
            caplog.at_level(logging.DEBUG),
            breaker.new(Config("checkout", "/" + PREFIX), coord=coord) as p,
        ):
            assert p.policy("payments").failure_threshold == 2
            server.fail_next(1, status=500)
            eventually(lambda: blocking_requests(server) >= 2)
            assert TOKEN not in repr(p)
        for request in server.requests_log:
            assert request.headers.get("x-consul-token") == TOKEN
            assert "token" not in request.query
            assert TOKEN not in request.path
        assert TOKEN not in caplog.text

    def test_a_silent_connection_mid_watch_times_out_and_recovers(
        self, consul_server: ConsulServer
    ) -> None:
        with new(consul_server, wait=0.5, timeout=0.3) as p:
            eventually(lambda: blocking_requests(consul_server) >= 1)
            consul_server.hang_next(1)  # the query after the next change is never answered
            consul_server.put(KEY, doc(9))
            eventually(lambda: p.policy("payments").failure_threshold == 9)
            started = time.monotonic()
            consul_server.put(KEY, doc(10))
            eventually(lambda: p.policy("payments").failure_threshold == 10)
            took = time.monotonic() - started
            # Seen only after the silent request timed out (0.5 * 17/16 + 0.3 s), not never.
            assert 0.5 < took < 3

    def test_restart_with_index_reset(
        self, consul_server: ConsulServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        for i in range(30):
            consul_server.put(KEY, doc(1 + i % 5))
        consul_server.put(KEY, doc(4))
        with new(consul_server, wait=2) as p, caplog.at_level(logging.INFO, logger="breaker"):
            eventually(lambda: blocking_requests(consul_server) >= 1)
            consul_server.clear_requests_log()
            consul_server.restart(reset_index=True)  # data restored, indexes start over
            consul_server.put(KEY, doc(2))  # index 2, far below what the watcher last saw
            eventually(lambda: p.policy("payments").failure_threshold == 2)
            # The cut query is followed by an index-0 re-sync, not a query on the old index.
            assert "index" not in consul_server.requests_log[0].query
            assert "works again" in caplog.text
            # Blocking again on the new, lower index: the next change arrives at once,
            # not only when a wait on the stale index runs out.
            started = time.monotonic()
            consul_server.put(KEY, doc(3))
            eventually(lambda: p.policy("payments").failure_threshold == 3)
            assert time.monotonic() - started < 1

    @pytest.mark.parametrize("start_index", [95, 995])
    def test_index_digit_crossings(self, start_index: int) -> None:
        with ConsulServer(jitter=False, start_index=start_index) as server, new(server) as p:
            for threshold in range(1, 12):
                server.put(KEY, doc(threshold))
                eventually(lambda t=threshold: p.policy("payments").failure_threshold == t)
            assert server.index > start_index + 10

    def test_a_burst_of_200_writes_converges_to_the_last(self, consul_server: ConsulServer) -> None:
        with new(consul_server, min_interval=0.05) as p:
            consul_server.clear_requests_log()
            for i in range(200):
                consul_server.put(KEY, doc(1 + i))
            eventually(lambda: p.policy("payments").failure_threshold == 200)
            # Paced: far fewer queries than writes.
            assert blocking_requests(consul_server) < 100

    def test_a_redirect_is_an_error_that_names_the_problem(
        self, consul_server: ConsulServer
    ) -> None:
        coord = coord_for(consul_server)
        with pytest.raises(CoordError, match="//"):
            coord.load("config//x/")
        coord.close()

    def test_filtered_listing_is_not_mistaken_for_deleted_policies(self) -> None:
        rules = [ACLRule(PREFIX, "read"), ACLRule(PREFIX + "secret", "deny")]
        keys = {KEY: doc(2), PREFIX + "secret.json": doc(9)}
        with acl_server({TOKEN: rules}, keys=keys) as server:
            coord = coord_for(server, token=TOKEN)
            with pytest.raises(CoordError, match="may not read every key"):
                coord.load(PREFIX)
            coord.close()


class TestShutdown:
    def test_close_returns_promptly_mid_query_and_leaves_no_thread(
        self, consul_server: ConsulServer
    ) -> None:
        p = new(consul_server, wait=30, timeout=5)
        eventually(lambda: blocking_requests(consul_server) >= 1)
        assert len(watch_threads()) == 1
        started = time.monotonic()
        p.close()
        assert time.monotonic() - started < 1
        assert watch_threads() == []

    def test_close_while_backing_off(self, consul_server: ConsulServer) -> None:
        consul_server.stop()
        p = new(consul_server, backoff_first=20, backoff_cap=30)
        time.sleep(0.1)
        started = time.monotonic()
        p.close()
        assert time.monotonic() - started < 1
        assert watch_threads() == []


def test_a_change_right_after_start_up_is_not_held_back_by_pacing(
    consul_server: ConsulServer,
) -> None:
    consul_server.put(KEY, doc(4))
    clock = FakeClock()
    sleep = FakeSleep(clock)
    with new(consul_server, min_interval=2.0, clock=clock, sleep=sleep) as p:
        eventually(lambda: blocking_requests(consul_server) >= 1)
        # The first blocking query follows the index-0 read at once, not 2 s later.
        assert sleep.pauses == []
        consul_server.put(KEY, doc(5))
        eventually(lambda: p.policy("payments").failure_threshold == 5)
        consul_server.put(KEY, doc(6))
        eventually(lambda: p.policy("payments").failure_threshold == 6)
        # Reads after that burst of two are paced: the second change waited for the gap.
        assert sleep.pauses[0] == 2.0
        assert set(sleep.pauses) == {2.0}


class TestKV:
    """The small KV API an operators' CLI uses."""

    def test_get_put_with_check_and_set(self, consul_server: ConsulServer) -> None:
        coord = coord_for(consul_server)
        assert coord.get(KEY) is None
        assert coord.put(KEY, doc(2), cas=0) is True  # create only if absent
        value, index = coord.get("/" + KEY) or (b"", 0)
        assert value == doc(2).encode()
        assert coord.put(KEY, doc(3), cas=0) is False  # exists already
        assert coord.put(KEY, doc(3), cas=index + 100) is False  # someone else's index
        assert coord.put(KEY, doc(3), cas=index) is True
        assert coord.get(KEY) == (doc(3).encode(), consul_server.index)
        assert coord.put(KEY, "ünïcode") is True  # str is sent as UTF-8
        assert consul_server.get(KEY) == "ünïcode".encode()
        coord.close()

    def test_delete_with_check_and_set_and_recurse(self, consul_server: ConsulServer) -> None:
        coord = coord_for(consul_server)
        coord.put(KEY, doc(2))
        coord.put(PREFIX + "svc/a.json", doc(3))
        stored = coord.get(KEY)
        assert stored is not None
        assert coord.delete(KEY, cas=stored[1] + 1) is False
        assert coord.get(KEY) is not None
        assert coord.delete(KEY, cas=stored[1]) is True
        assert coord.get(KEY) is None
        assert coord.delete(PREFIX, recurse=True) is True
        assert consul_server.keys(PREFIX) == []
        with pytest.raises(ValueError, match="cas"):
            coord.delete(PREFIX, recurse=True, cas=1)
        coord.close()

    def test_transport_errors_raise_coord_error(self, consul_server: ConsulServer) -> None:
        coord = coord_for(consul_server)
        consul_server.stop()
        for call in (
            lambda: coord.get(KEY),
            lambda: coord.put(KEY, "x"),
            lambda: coord.delete(KEY),
        ):
            with pytest.raises(CoordError, match="cannot reach Consul"):
                call()
        coord.close()
        with pytest.raises(CoordError, match="closed"):
            coord.get(KEY)


class TestHealth:
    def test_health_goes_down_and_up_with_consul(self, consul_server: ConsulServer) -> None:
        consul_server.put(KEY, doc(2))
        coord = coord_for(consul_server)
        got: list[Snapshot] = []
        before = time.time()
        watch = coord.watch(PREFIX, got.append)
        eventually(lambda: bool(got))
        health = watch.health()
        assert health.up and health.last_error is None
        assert health.last_sync is not None and health.last_sync >= before
        consul_server.stop()
        eventually(lambda: not watch.health().up)
        down = watch.health()
        assert down.last_sync == health.last_sync  # the last good read, kept while down
        assert down.last_error is not None and "cannot reach Consul" in down.last_error
        consul_server.start()
        eventually(lambda: watch.health().up)
        assert watch.health().last_error is None
        coord.close()


class TestStopFromAnywhere:
    """close() and stop() from any thread: the watch's own, a finalizer, mid-request."""

    def test_stop_from_the_callback_in_the_watch_thread(self, consul_server: ConsulServer) -> None:
        coord = coord_for(consul_server)
        calls: list[Snapshot] = []
        returned = threading.Event()

        def on_change(snapshot: Snapshot) -> None:
            calls.append(snapshot)
            watch.stop()  # joins nothing: this is the watch's own thread
            returned.set()

        watch = coord.watch(PREFIX, on_change)
        assert returned.wait(TIMEOUT)
        eventually(lambda: not watch_threads(), timeout=2)
        assert len(calls) == 1  # and, its thread gone, none can follow
        coord.close()

    def test_close_from_a_finalizer_that_runs_in_the_watch_thread(
        self, consul_server: ConsulServer
    ) -> None:
        coord = coord_for(consul_server)

        class Owner:
            """Stands for a provider collected without close()."""

        owner: list[Owner] = [Owner()]
        finalized = weakref.finalize(owner[0], coord.close)

        def on_change(snapshot: Snapshot) -> None:
            owner.clear()  # the last reference: the finalizer runs here, in the watch thread

        coord.watch(PREFIX, on_change)
        eventually(lambda: not finalized.alive)
        eventually(lambda: not watch_threads(), timeout=2)
        with pytest.raises(CoordError, match="closed"):
            coord.watch(PREFIX, on_change)

    def test_close_while_another_thread_waits_inside_the_coord(
        self, consul_server: ConsulServer
    ) -> None:
        coord = coord_for(consul_server, timeout=30)
        consul_server.hang_next(1)
        errors: list[BaseException] = []

        def load() -> None:
            try:
                coord.load(PREFIX)
            except CoordError as exc:
                errors.append(exc)

        thread = threading.Thread(target=load)
        thread.start()
        eventually(lambda: len(consul_server.requests_log) == 1)
        started = time.monotonic()
        coord.close()
        thread.join(TIMEOUT)
        assert time.monotonic() - started < 1
        assert [str(e) for e in errors] == ["closed"]


class TestMalformedAnswers:
    """Something at Consul's address that is not quite Consul: a gateway's page, a proxy that
    mangles headers. Each oddity is a `CoordError` that says what was wrong, never a crash."""

    INDEX: ClassVar[dict[str, str]] = {"X-Consul-Index": "3", "Content-Type": "application/json"}

    MALFORMED = "malformed answer from Consul"
    # What the client library says of the last two differs: python-consul and py-consul
    # decode the answer with their own code, and the coord quotes their errors.
    FROM_THE_LIBRARY = re.escape(f"{MALFORMED} for /v1/kv/{PREFIX}: ")

    @pytest.mark.parametrize(
        ("body", "headers", "pattern"),
        [
            (b"{}", INDEX, re.escape(f"{MALFORMED}: expected a list of KV entries")),
            (b'[{"Value": null}]', INDEX, re.escape(f"{MALFORMED}: expected a KV entry")),
            (
                b'[{"Key": "k", "Value": null, "ModifyIndex": "7"}]',
                INDEX,
                re.escape(f"{MALFORMED}: bad Value or ModifyIndex for 'k'"),
            ),
            (b"<html>Welcome</html>", INDEX, FROM_THE_LIBRARY + ".*Expecting value"),
            (b"[]", {}, FROM_THE_LIBRARY + "(?i:.*index)"),
        ],
        ids=["object", "no-key", "string-index", "html", "no-index-header"],
    )
    def test_a_listing(self, body: bytes, headers: dict[str, str], pattern: str) -> None:
        with Impostor() as impostor:
            impostor.answer(200, body, headers)
            coord = breaker.ConsulCoord(impostor.addr, timeout=2)
            with pytest.raises(CoordError, match=pattern) as info:
                coord.load(PREFIX)
            coord.close()
        assert info.value.condition == "malformed"

    @pytest.mark.parametrize(
        ("index", "message"),
        [
            ("abc", "Consul answered without a usable X-Consul-Index ('abc')"),
            ("-1", "malformed answer from Consul: negative X-Consul-Index (-1)"),
        ],
    )
    def test_an_index_mangled_on_the_way(
        self, consul_server: ConsulServer, index: str, message: str
    ) -> None:
        consul_server.put(KEY, doc(2))
        with FaultProxy(consul_server.addr) as proxy:
            coord = breaker.ConsulCoord(proxy.addr, timeout=2)
            assert coord.load(PREFIX) == {KEY: doc(2).encode()}
            proxy.rewrite_header("X-Consul-Index", index)
            with pytest.raises(CoordError, match=re.escape(message)):
                coord.load(PREFIX)
            with pytest.raises(CoordError, match=re.escape(message)):
                coord.load("config/nothing-here/")  # a 404 carries the index too
            coord.close()

    def test_a_single_key(self) -> None:
        with Impostor() as impostor:
            impostor.answer(200, b'[{"Key": 5, "Value": null}]', self.INDEX)
            coord = breaker.ConsulCoord(impostor.addr, timeout=2)
            with pytest.raises(CoordError, match="expected a KV entry"):
                coord.get(KEY)
            coord.close()

    def test_writes_answered_with_neither_true_nor_false(self) -> None:
        with Impostor() as impostor:
            coord = breaker.ConsulCoord(impostor.addr, timeout=2)
            impostor.answer(200, b'"OK"', self.INDEX)
            with pytest.raises(CoordError, match=f"to PUT '{KEY}': expected true or false"):
                coord.put(KEY, doc(2))
            impostor.answer(404, b"", self.INDEX)
            with pytest.raises(CoordError, match=f"to DELETE '{KEY}': expected true or false"):
                coord.delete(KEY)
            coord.close()
        assert [method for method, _, _ in impostor.requests] == ["PUT", "DELETE"]


MUTUAL_TLS = {
    "ca_file": str(TLS / "ca.pem"),
    "client_cert": str(TLS / "client.pem"),
    "client_key": str(TLS / "client-key.pem"),
}


def listing(*entries: tuple[str, str, int]) -> bytes:
    """Return a recursive GET's body as Consul writes it."""
    return json.dumps(
        [
            {
                "Key": key,
                "Value": base64.b64encode(value.encode()).decode(),
                "Flags": 0,
                "LockIndex": 0,
                "CreateIndex": index,
                "ModifyIndex": index,
            }
            for key, value, index in entries
        ]
    ).encode()


class TestTLS:
    """An agent that serves https and requires a client certificate (verify_incoming)."""

    def test_the_coord_trusts_the_ca_and_presents_its_certificate(self) -> None:
        with Impostor(tls=tls_server_context()) as consul:
            consul.answer(200, listing((KEY, doc(2), 7)), {"X-Consul-Index": "7"})
            coord = breaker.ConsulCoord("https://" + consul.addr, timeout=2, **MUTUAL_TLS)
            assert coord.load(PREFIX) == {KEY: doc(2).encode()}
            coord.close()
        assert [cn for _, _, cn in consul.requests] == ["breaker-test-client"]

    def test_a_certificate_from_an_unknown_ca_is_refused_and_said_so(self) -> None:
        with Impostor(tls=tls_server_context()) as consul:
            coord = breaker.ConsulCoord("https://" + consul.addr, timeout=2)
            with pytest.raises(CoordError, match=r"TLS error: .*CERTIFICATE_VERIFY_FAILED") as info:
                coord.load(PREFIX)
            coord.close()
        assert str(info.value).startswith(f"cannot reach Consul at https://{consul.addr}: ")
        assert consul.requests == []

    def test_close_cuts_a_request_in_flight_over_tls(self) -> None:
        with Impostor(tls=tls_server_context()) as consul:
            consul.hanging = True
            coord = breaker.ConsulCoord("https://" + consul.addr, timeout=30, **MUTUAL_TLS)
            errors: list[CoordError] = []

            def load() -> None:
                try:
                    coord.load(PREFIX)
                except CoordError as exc:
                    errors.append(exc)

            thread = threading.Thread(target=load)
            thread.start()
            eventually(lambda: len(consul.requests) == 1)
            coord.close()
            thread.join(TIMEOUT)
            assert not thread.is_alive()
        assert [str(e) for e in errors] == ["closed"]


class TestLazyImport:
    """breaker.coord loads no HTTP or Consul module until ConsulCoord is used."""

    # Importing the package ``breaker.coord`` runs ``breaker/__init__.py`` first; these
    # scripts stand in an empty ``breaker`` so that only the coord package is measured.
    PRELUDE = (
        "import sys, types, pathlib\n"
        "import breaker.coord as _probe\n"
        "pkg = types.ModuleType('breaker')\n"
        "pkg.__path__ = [str(pathlib.Path(_probe.__file__).parent.parent)]\n"
        "for name in [n for n in sys.modules if n == 'breaker' or n.startswith(('breaker.',"
        " 'requests', 'urllib3', 'consul'))]:\n"
        "    del sys.modules[name]\n"
        "sys.modules['breaker'] = pkg\n"
    )

    def run(self, script: str) -> str:
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", self.PRELUDE + script],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def test_importing_breaker_coord_loads_no_http_module(self) -> None:
        out = self.run(
            "import breaker.coord, breaker.coord.consul\n"
            "loaded = [m for m in ('requests', 'urllib3', 'consul') if m in sys.modules]\n"
            "print(loaded)\n"
            "assert breaker.coord.ConsulCoord.__name__ == 'ConsulCoord'\n"
            "print(sorted(m for m in ('requests', 'urllib3', 'consul') if m in sys.modules))\n"
        )
        assert out.splitlines() == ["[]", "['consul', 'requests', 'urllib3']"]

    @pytest.mark.parametrize("missing", ["consul", "requests"])
    def test_without_the_extra_the_error_names_it(self, missing: str) -> None:
        out = self.run(
            f"sys.modules[{missing!r}] = None\n"
            "import breaker.coord\n"
            "try:\n"
            "    breaker.coord.ConsulCoord\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
            "try:\n"
            "    from breaker.coord import ConsulCoord\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
            "print(breaker.coord.MemoryCoord.__name__)\n"
        )
        lines = out.splitlines()
        assert len(lines) == 3
        for line in lines[:2]:
            assert "pip install 'consul-breaker[consul]'" in line
            assert repr(missing) in line
        assert lines[2] == "MemoryCoord"

    # The same, measured: this process, with the modules hidden as if never installed.

    @pytest.fixture
    def fresh(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Put breaker.coord.consul back as it is before its first use of ConsulCoord."""
        import breaker.coord.consul as package

        for name in ("_coord", "_adapter", "_transport"):
            monkeypatch.delitem(sys.modules, f"breaker.coord.consul.{name}", raising=False)
        monkeypatch.delitem(vars(package), "ConsulCoord", raising=False)

    @pytest.mark.parametrize("missing", ["consul", "requests", "urllib3"])
    @pytest.mark.usefixtures("fresh")
    def test_the_error_names_the_extra(self, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
        monkeypatch.setitem(sys.modules, missing, None)
        with pytest.raises(ImportError) as info:
            from breaker.coord.consul import ConsulCoord  # noqa: F401
        assert str(info.value) == (
            f"ConsulCoord needs python-consul (or py-consul) and requests, and {missing!r} "
            "cannot be imported: pip install 'consul-breaker[consul]'"
        )
        assert info.value.name == missing

    @pytest.mark.usefixtures("fresh")
    def test_a_broken_module_of_breaker_is_not_passed_off_as_a_missing_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setitem(sys.modules, "breaker.coord.consul._decode", None)
        with pytest.raises(ImportError) as info:
            from breaker.coord.consul import ConsulCoord  # noqa: F401
        assert info.value.name == "breaker.coord.consul._decode"
        assert "pip install" not in str(info.value)

    def test_other_names_are_attribute_errors(self) -> None:
        import breaker.coord
        import breaker.coord.consul

        with pytest.raises(AttributeError, match="has no attribute 'Consul'"):
            breaker.coord.consul.Consul  # type: ignore[attr-defined]  # noqa: B018
        with pytest.raises(AttributeError, match="has no attribute 'Consul'"):
            breaker.coord.Consul  # type: ignore[attr-defined]  # noqa: B018
        assert "ConsulCoord" in dir(breaker.coord)
        assert breaker.coord.ConsulCoord is breaker.ConsulCoord
