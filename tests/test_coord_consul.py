"""ConsulCoord against real-world faults, injected through the embedded server's hooks."""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import logging
import pathlib
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from typing import ClassVar

import pytest

import breaker
from breaker import Config, CoordError, Policy
from breaker.coord import Snapshot
from breaker.coord.consul import _transport
from breaker.coord.consul._adapter import ConsulKV
from breaker.testing import ACLRule, ConsulServer, FakeClock, FaultProxy

from .helpers import (
    PREFIX,
    TLS,
    FakeSleep,
    Impostor,
    acl_server,
    eventually,
    tls_server_context,
)

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
                # The query in flight may bring the change before the next six fail.
                eventually(
                    lambda: brk.policy.failure_threshold == 6 and "works again" in caplog.text
                )
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
        eventually(lambda: p.health().last_error is not None)  # the watcher backs off
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
    # The coord reads listings itself and quotes the JSON parser's own words.
    FROM_THE_PARSER = re.escape(f"{MALFORMED} for /v1/kv/{PREFIX}: ")

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
            (
                b'[{"Key": "k", "Value": "not base64!", "ModifyIndex": 7}]',
                INDEX,
                re.escape(f"{MALFORMED}: a Value that is not base64 for 'k'"),
            ),
            (b'[{"Key": "k"}, {"Key": "k"}]', INDEX, re.escape(f"{MALFORMED}: 'k' listed twice")),
            (b"<html>Welcome</html>", INDEX, FROM_THE_PARSER + ".*Expecting value"),
            (b"[]", {}, re.escape("Consul answered without a usable X-Consul-Index (None)")),
        ],
        ids=["object", "no-key", "string-index", "not-base64", "twice", "html", "no-index"],
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
            impostor.answer(200, b'[{"Key": "k", "Value": null, "ModifyIndex": "7"}]', self.INDEX)
            with pytest.raises(CoordError, match="bad Value or ModifyIndex for 'k'"):
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
            channel = ConsulKV(coord._transport.channel(), timeout=2)  # as a watch reads
            assert channel.list(PREFIX, read_timeout=2).values == {KEY: doc(2).encode()}
            coord.close()
        assert [cn for _, _, cn in consul.requests] == ["breaker-test-client"] * 2

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


# -- issue 21: one connection, a rotated token, the consul CLI's settings, health -------------


class UnixRelay:
    """Serve a unix socket in front of the stand-in's TCP port, counting connections."""

    def __init__(self, path: str, upstream: tuple[str, int]) -> None:
        self.path = path
        self.upstream = upstream
        self.accepted = 0
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(path)
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self._stopping = threading.Event()
        self._socks: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            server = socket.create_connection(self.upstream)
            self._socks += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def __enter__(self) -> UnixRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join()
        self._listener.close()
        for sock in self._socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class TestOneConnection:
    """Issue 21 gap 2: the start-up read's connection is the watch's."""

    def test_a_provider_holds_one_connection_to_the_agent(
        self, consul_server: ConsulServer
    ) -> None:
        consul_server.put(KEY, doc(2))
        with FaultProxy(consul_server.addr) as proxy:
            coord = breaker.ConsulCoord(proxy.addr, wait=30, timeout=2)
            with breaker.new(Config("checkout", "/" + PREFIX), coord=coord) as p:
                eventually(lambda: blocking_requests(consul_server) >= 1)
                consul_server.put(KEY, doc(3))
                eventually(lambda: p.policy("payments").failure_threshold == 3)
                eventually(lambda: blocking_requests(consul_server) >= 2)
                assert (proxy.accepted, proxy.open_connections) == (1, 1)  # before: 2, 2
        requests = consul_server.requests_log
        assert "index" not in requests[0].query  # the start-up read ...
        assert requests[1].query["index"] == str(consul_server.index - 1)  # ... then blocking

    def test_a_read_beside_the_watch_takes_a_second_connection_and_ends_it_not(
        self, consul_server: ConsulServer
    ) -> None:
        with FaultProxy(consul_server.addr) as proxy:
            coord = breaker.ConsulCoord(proxy.addr, wait=30, timeout=2)
            watch = coord.watch(PREFIX, lambda snapshot: None)
            eventually(lambda: blocking_requests(consul_server) >= 1)
            coord.put(KEY, doc(4))  # the CLI's kind of call, while the watch blocks
            eventually(lambda: blocking_requests(consul_server) >= 2)
            assert proxy.accepted == 2
            watch.stop()  # cuts the watch's connection only
            assert coord.get(KEY) == (doc(4).encode(), consul_server.index)
            coord.close()


class TestHealthFromTheStart:
    """Issue 21 gap 5: up from the moment new() returns with a successful load."""

    def test_a_watch_right_after_a_load_is_up_before_its_first_read(
        self, consul_server: ConsulServer
    ) -> None:
        consul_server.put(KEY, doc(2))
        coord = coord_for(consul_server)
        before = time.time()
        assert coord.load(PREFIX) == {KEY: doc(2).encode()}
        consul_server.hang(True)  # the watch's first read gets no answer
        got: list[Snapshot] = []
        watch = coord.watch(PREFIX, got.append)
        health = watch.health()
        assert health.up and health.last_error is None  # before: down until a read answered
        assert health.last_sync is not None and health.last_sync >= before
        eventually(lambda: got == [{KEY: doc(2).encode()}])  # still delivered first
        consul_server.hang(False)
        coord.close()

    def test_new_is_up_at_once_and_its_watch_blocks_at_once(
        self, consul_server: ConsulServer
    ) -> None:
        consul_server.put(KEY, doc(2))
        with new(consul_server, wait=30) as p:
            assert p.health().up
            assert p.status()["coord"]["last_sync"] is not None
            eventually(lambda: blocking_requests(consul_server) >= 1)
        assert len(consul_server.requests_log) == 2  # one read, not two

    def test_a_failed_load_leaves_the_watch_down_until_it_reads(
        self, consul_server: ConsulServer
    ) -> None:
        consul_server.put(KEY, doc(2))
        consul_server.fail_next(1)  # the load fails ...
        consul_server.hang_next(1)  # ... and the watch's first read gets no answer
        with new(consul_server) as p:
            assert not p.health().up
            consul_server.hang(False)  # the held read is dropped; the next one answers
            eventually(lambda: p.health().up)

    def test_an_old_load_does_not_seed_a_watch(self, consul_server: ConsulServer) -> None:
        clock = FakeClock()
        coord = coord_for(consul_server, clock=clock)
        coord.load(PREFIX)
        clock.advance(60)
        consul_server.hang(True)
        watch = coord.watch(PREFIX, lambda snapshot: None)
        assert not watch.health().up
        consul_server.hang(False)
        coord.close()


class TestTokenFile:
    """Issue 21 gap 3: a rotated token file is read again after a 403."""

    OLD = "0ld-t0ken-aaaa"
    NEW = "n3w-t0ken-bbbb"
    RULES = (ACLRule("config/", "read"),)

    def test_the_watch_picks_up_the_rotated_token(
        self,
        tmp_path: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        token_file = tmp_path / "token"
        token_file.write_text(self.OLD + "\n")
        clock = FakeClock()
        sleep = FakeSleep(clock)
        reads: list[float] = []
        read_token_file = _transport.read_token_file

        def counting(path: str) -> str | None:
            reads.append(clock())
            return read_token_file(path)

        monkeypatch.setattr(_transport, "read_token_file", counting)
        with (
            acl_server({self.OLD: self.RULES}, keys={KEY: doc(2)}) as server,
            caplog.at_level(logging.INFO, logger="breaker"),
            new(server, token_file=str(token_file), clock=clock, sleep=sleep) as p,
        ):
            assert p.policy("payments").failure_threshold == 2
            eventually(lambda: blocking_requests(server) >= 1)
            token_file.write_text(self.NEW + "\n")  # rotated, and the old token revoked
            server.set_acl_token(self.NEW, self.RULES)
            server.set_acl_token(self.OLD, None)
            server.put(KEY, doc(3))  # wakes the blocking query: the next read gets a 403
            eventually(lambda: p.policy("payments").failure_threshold == 3)
            eventually(lambda: blocking_requests(server) >= 3)
            server.put(KEY, doc(4))  # made after the old token was revoked
            eventually(lambda: p.policy("payments").failure_threshold == 4)  # before: never
            assert p.health().up
        tokens = [r.headers.get("x-consul-token") for r in server.requests_log]
        assert tokens[0] == self.OLD and tokens[-1] == self.NEW
        assert reads and all(b - a >= _transport.TOKEN_REREAD for a, b in itertools.pairwise(reads))
        assert reads[0] >= _transport.TOKEN_REREAD  # not at every 403
        assert f"using the new token in {token_file}" in caplog.text
        assert self.NEW not in caplog.text and self.OLD not in caplog.text

    def test_a_token_file_gone_missing_keeps_the_token_and_says_so_once(
        self, tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        token_file = tmp_path / "token"
        token_file.write_text(self.OLD)
        clock = FakeClock()
        with acl_server({self.NEW: self.RULES}, keys={KEY: doc(2)}) as server:
            coord = coord_for(server, token_file=str(token_file), clock=clock)
            token_file.unlink()
            for _ in range(3):
                clock.advance(10)
                with pytest.raises(CoordError, match="403"):
                    coord.load(PREFIX)
            coord.close()
        problems = [r for r in caplog.records if "cannot read the Consul token file" in r.message]
        assert len(problems) == 1

    def test_a_file_still_holding_the_refused_token_changes_nothing(
        self, tmp_path: pathlib.Path
    ) -> None:
        token_file = tmp_path / "token"
        token_file.write_text(self.OLD)
        clock = FakeClock()
        with acl_server({self.NEW: self.RULES}, keys={KEY: doc(2)}) as server:
            coord = coord_for(server, token_file=str(token_file), clock=clock)
            clock.advance(10)
            with pytest.raises(CoordError, match="403"):
                coord.load(PREFIX)  # read again: the same token, so no second request
            assert len(server.requests_log) == 1
            transport = coord._transport
            token_file.write_text(self.NEW)
            clock.advance(10)
            assert transport._reread_token(self.OLD)  # another thread's 403 ...
            assert transport._reread_token(self.OLD)  # ... finds the new token already read
            assert coord.load(PREFIX) == {KEY: doc(2).encode()}
            coord.close()

    def test_an_explicit_token_is_never_replaced(self, tmp_path: pathlib.Path) -> None:
        token_file = tmp_path / "token"
        token_file.write_text(self.NEW)
        clock = FakeClock()
        with acl_server({self.NEW: self.RULES}, keys={KEY: doc(2)}) as server:
            coord = coord_for(server, token=self.OLD, token_file=str(token_file), clock=clock)
            clock.advance(10)
            with pytest.raises(CoordError, match="403"):
                coord.load(PREFIX)
            coord.close()


class TestConsulCLISettings:
    """Issue 21 gap 4: what the consul CLI honours, through the stand-in."""

    def test_a_namespace_is_a_key_space_of_its_own_on_enterprise(self) -> None:
        with ConsulServer(jitter=False, enterprise=True) as server:
            team_a = coord_for(server, namespace="team-a", partition="p1")
            default = coord_for(server)
            team_a.put(KEY, doc(7))
            default.put(KEY, doc(1))
            got: list[Snapshot] = []
            watch = team_a.watch(PREFIX, got.append)
            eventually(lambda: got == [{KEY: doc(7).encode()}])
            eventually(lambda: blocking_requests(server) >= 1)
            default.put(KEY, doc(2))  # another space: not seen
            team_a.put(KEY, doc(8))
            eventually(lambda: got[-1] == {KEY: doc(8).encode()})
            assert got == [{KEY: doc(7).encode()}, {KEY: doc(8).encode()}]
            assert watch.health().up
            assert default.load(PREFIX) == {KEY: doc(2).encode()}
            team_a.close()
            default.close()
        sent = [r.query for r in server.requests_log if r.query.get("ns")]
        assert sent and all(q["ns"] == "team-a" and q["partition"] == "p1" for q in sent)

    def test_on_community_edition_a_namespace_is_refused_and_said_so(
        self, consul_server: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CONSUL_NAMESPACE", "team-a")
        with pytest.raises(CoordError, match="Namespaces are a Consul Enterprise feature") as info:
            new(consul_server, strict=True)
        assert info.value.status == 400

    def test_stale_reads_go_on_during_an_election(self, consul_server: ConsulServer) -> None:
        consul_server.put(KEY, doc(2))
        with new(consul_server, consistency="stale", wait=30, timeout=2) as p:
            eventually(lambda: blocking_requests(consul_server) >= 1)
            consul_server.begin_election()  # default reads would be held up to 7 s
            consul_server.put(KEY, doc(3))
            eventually(lambda: p.policy("payments").failure_threshold == 3, timeout=2)
            consul_server.end_election()
        assert all("stale" in r.query for r in consul_server.requests_log)

    def test_consistent_reads_say_so(self, consul_server: ConsulServer) -> None:
        coord = coord_for(consul_server, consistency="consistent")
        coord.load(PREFIX)
        coord.put(KEY, doc(2))  # writes carry no consistency mode
        coord.close()
        assert ["consistent" in r.query for r in consul_server.requests_log] == [True, False]

    def test_http_auth_from_the_environment_and_explicit_wins(
        self, consul_server: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CONSUL_HTTP_AUTH", "env-user:env-pw")
        for kwargs in ({}, {"http_auth": "ops:s3cr3t"}):
            coord = coord_for(consul_server, **kwargs)
            coord.load(PREFIX)
            assert "s3cr3t" not in repr(coord) + repr(coord.settings)
            coord.close()
        basic = [r.headers.get("authorization") for r in consul_server.requests_log]
        assert basic == [
            "Basic " + base64.b64encode(b"env-user:env-pw").decode(),
            "Basic " + base64.b64encode(b"ops:s3cr3t").decode(),
        ]

    @pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs unix sockets")
    def test_a_unix_socket_address(self, consul_server: ConsulServer) -> None:
        consul_server.put(KEY, doc(2))
        # tmp_path may be longer than a unix socket address allows (108 bytes on Linux).
        with (
            tempfile.TemporaryDirectory(prefix="brk") as folder,
            UnixRelay(folder + "/consul.sock", ("127.0.0.1", consul_server.port)) as relay,
        ):
            path = relay.path
            coord = breaker.ConsulCoord("unix://" + path, wait=30, timeout=2)
            assert coord.address == "unix://" + path
            with breaker.new(Config("checkout", "/" + PREFIX), coord=coord) as p:
                assert p.policy("payments").failure_threshold == 2
                eventually(lambda: blocking_requests(consul_server) >= 1)
                consul_server.put(KEY, doc(3))
                eventually(lambda: p.policy("payments").failure_threshold == 3)
                assert relay.accepted == 1
        missing = breaker.ConsulCoord("unix:///nonexistent/consul.sock", timeout=1)
        with pytest.raises(CoordError, match="cannot reach Consul at unix:///nonexistent"):
            missing.load(PREFIX)
        missing.close()

    @pytest.mark.parametrize("how", ["argument", "environment", "argument over environment"])
    def test_tls_server_name(self, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
        seen: list[str | None] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(TLS / "server-name.pem", TLS / "server-name-key.pem")
        context.sni_callback = lambda sock, name, ctx: seen.append(name)  # type: ignore[assignment, misc]
        kwargs: dict[str, object] = {"ca_file": str(TLS / "ca.pem"), "timeout": 2}
        with Impostor(tls=context) as consul:
            consul.answer(200, listing((KEY, doc(2), 7)), {"X-Consul-Index": "7"})
            plain = breaker.ConsulCoord("https://" + consul.addr, **kwargs)  # type: ignore[arg-type]
            with pytest.raises(CoordError, match=r"TLS error: .*CERTIFICATE_VERIFY_FAILED"):
                plain.load(PREFIX)  # issued for server.dc1.consul, reached at 127.0.0.1
            plain.close()
            if how != "argument":
                env = "server.dc1.consul" if how == "environment" else "wrong.dc1.consul"
                monkeypatch.setenv("CONSUL_TLS_SERVER_NAME", env)
            if how != "environment":
                kwargs["tls_server_name"] = "server.dc1.consul:8501"
            coord = breaker.ConsulCoord("https://" + consul.addr, **kwargs)  # type: ignore[arg-type]
            assert coord.load(PREFIX) == {KEY: doc(2).encode()}
            coord.close()
        assert seen[-1] == "server.dc1.consul"
