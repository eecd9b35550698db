"""The fleet: providers publish their breakers in the coord under sessions; the view.

Every scenario runs on MemoryCoord and on ConsulCoord against the stand-in. Session expiry
runs on the coord's clock (a `FakeClock` the test moves); the publishers run on the
providers' clock, the same fake one where the test must control renewals and coalescing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

import breaker
from breaker import Config, CoordError, Policy, State
from breaker._fleet import (
    Publisher,
    check_fleet_config,
    default_instance_id,
    fleet_view,
    parse_records,
)
from breaker._policy import format_timestamp
from breaker.testing import ConsulServer, FakeClock, FaultProxy, force_state

from .helpers import PREFIX, Boom, FakeSleep, SharedCoord, eventually

FLEET = "config/dev/fleet/"
RECORDS = FLEET + "checkout/"
TIMEOUT = 10.0


class Fleet:
    """Providers of one service publishing into one store, and the clock sessions run on."""

    def __init__(self, kind: str, clock: FakeClock) -> None:
        self.kind = kind
        self.clock = clock
        self.server: ConsulServer | None = None
        self.memory: breaker.MemoryCoord | None = None
        self.providers: list[breaker.Provider] = []
        if kind == "memory":
            self.memory = breaker.MemoryCoord(clock=clock)
        else:
            self.server = ConsulServer(jitter=False, clock=clock).start()

    def coord(self) -> Any:
        if self.memory is not None:
            return SharedCoord(self.memory)
        assert self.server is not None
        return breaker.ConsulCoord(self.server.addr, wait=5, timeout=2)

    def provider(
        self,
        instance: str | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = 15,
        coord: Any = None,
    ) -> breaker.Provider:
        config = Config("checkout", PREFIX, fleet_path=FLEET, instance_id=instance, fleet_ttl=ttl)
        provider = breaker.new(
            config,
            coord=coord if coord is not None else self.coord(),
            default_policy=Policy(failure_threshold=2, open_state_timeout=60),
            clock=clock,
        )
        self.providers.append(provider)
        return provider

    def view(self, name: str | None = None) -> dict[str, Any]:
        reader = self.coord()
        try:
            return fleet_view(parse_records(reader.load(RECORDS), RECORDS), name)
        finally:
            if self.memory is None:
                reader.close()

    def records(self) -> dict[str, Any]:
        reader = self.coord()
        try:
            return {key: json.loads(value) for key, value in reader.load(RECORDS).items()}
        finally:
            if self.memory is None:
                reader.close()

    def close(self) -> None:
        for provider in self.providers:
            provider.close()
        if self.server is not None:
            self.server.stop()


@pytest.fixture(params=["memory", "consul"])
def fleet(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    setup = Fleet(request.param, FakeClock())
    yield setup
    setup.close()


def publisher(provider: breaker.Provider) -> Publisher:
    found = provider._resources.fleet
    assert found is not None
    return found


def settle(*providers: breaker.Provider, clock: FakeClock | None = None) -> None:
    """Wait until each publisher wrote everything it knows (no write pending).

    With ``clock`` (the publishers' fake clock), first let a second pass: a publisher
    writes at most once a second, by its clock.
    """
    if clock is not None:
        clock.advance(1.0)
    for provider in providers:
        pub = publisher(provider)
        eventually(lambda pub=pub: not pub._dirty and pub.writes > 0, timeout=TIMEOUT)


# -- the scenarios of issue 19 -------------------------------------------------------------


def test_three_publish_and_a_trip_shows_on_exactly_that_instance(fleet: Fleet) -> None:
    clock = FakeClock()
    a, b, c = (fleet.provider(i, clock=clock) for i in "abc")
    for provider in (a, b, c):
        provider.get_breaker("payments")
    settle(a, b, c, clock=clock)
    assert fleet.view()["instances"] == ["a", "b", "c"]

    for _ in range(2):
        with pytest.raises(Boom):
            b.get_breaker("payments").do(_fail)
    assert b.get_breaker("payments").state is State.OPEN
    clock.advance(1.0)  # within 2 s of the trip, on the publishers' clock

    eventually(lambda: fleet.view("payments")["breakers"]["payments"]["open"] == ["b"])
    view = fleet.view("payments")
    assert view == {
        "instances": ["a", "b", "c"],
        "breakers": {
            "payments": {
                "closed": ["a", "c"],
                "open": ["b"],
                "half-open": [],
                "modes": {"auto": ["a", "b", "c"]},
            }
        },
    }
    assert a.fleet("payments") == view


def test_one_closes_and_vanishes_from_the_view(fleet: Fleet) -> None:
    a, b = fleet.provider("a"), fleet.provider("b")
    eventually(lambda: fleet.view()["instances"] == ["a", "b"])

    a.close()

    assert fleet.view()["instances"] == ["b"]  # at once: the session went, and its record
    assert b.fleet()["instances"] == ["b"]


def test_one_stops_renewing_and_vanishes_once_its_session_expires(fleet: Fleet) -> None:
    clock = fleet.clock  # sessions and publishers on one clock the test moves
    a, b, c = (fleet.provider(i, clock=clock, ttl=10) for i in "abc")
    eventually(lambda: fleet.view()["instances"] == ["a", "b", "c"])

    publisher(c)._abandon()  # a crash: no more renewals, nothing withdrawn
    for _ in range(4):
        clock.advance(5)  # ttl / 2: a and b renew each time, c does not
        eventually(lambda: all(publisher(p).renewed_at == clock() for p in (a, b)), timeout=TIMEOUT)
        if fleet.server is not None:
            fleet.server.expire_sessions()

    # c's session ended 2 x TTL after its last renewal, taking its record with it.
    assert fleet.view()["instances"] == ["a", "b"]


def test_a_consul_outage_delays_the_view_never_a_call(caplog: pytest.LogCaptureFixture) -> None:
    with (
        ConsulServer(jitter=False) as server,
        FaultProxy(server.addr) as proxy,
        caplog.at_level(logging.WARNING, logger="breaker.fleet"),
    ):
        config = Config("checkout", PREFIX, fleet_path=FLEET, instance_id="a")
        coord = breaker.ConsulCoord(proxy.addr, wait=5, timeout=0.5, backoff_cap=1)
        with breaker.new(config, coord=coord, default_policy=Policy(failure_threshold=2)) as p:
            brk = p.get_breaker("payments")
            eventually(lambda: _record_state(server, "payments") == "closed")
            pub = publisher(p)
            proxy.blackhole()
            force_state(brk, State.OPEN)  # the publisher now waits on a dead link
            eventually(lambda: "cannot publish" in caplog.text, timeout=TIMEOUT)

            # Calls go on meanwhile, untouched: rejected at once, as an open breaker does.
            for _ in range(1000):
                with pytest.raises(breaker.BreakerOpenError):
                    brk.do(_fail)
            force_state(brk, State.CLOSED)
            assert brk.do(lambda: "ok") == "ok"
            assert _record_state(server, "payments") == "closed"  # the view lags

            force_state(brk, State.OPEN)
            proxy.blackhole(False)
            eventually(lambda: _record_state(server, "payments") == "open", timeout=TIMEOUT)
            assert pub.session is not None
    warnings = [r for r in caplog.records if "cannot publish" in r.getMessage()]
    assert len(warnings) == 1  # one warning for the outage, however many retries


@pytest.mark.fault_injection
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("instance", [None, "web"])
def test_a_forked_child_publishes_as_its_own_instance(instance: str | None) -> None:
    from .helpers import save_coverage
    from .test_consul_fork import Pipe, fork

    with ConsulServer(jitter=False) as server:
        config = Config("checkout", PREFIX, fleet_path=FLEET, instance_id=instance)
        with breaker.new(config, coord=breaker.ConsulCoord(server.addr, timeout=2)) as p:
            mine = publisher(p).instance_id
            eventually(lambda: server.get(f"{RECORDS}{mine}.json") is not None)
            to_parent, to_child = Pipe(), Pipe()

            pid = fork()
            if pid == 0:  # the child: report through the pipe, never return into pytest
                code = 1
                try:
                    child = publisher(p).instance_id
                    to_parent.send(child)
                    p.get_breaker("child-only")
                    if to_child.receive() == "close":
                        p.close()
                        to_parent.send("closed")
                        code = 0
                except BaseException as exc:
                    to_parent.send(f"error {exc!r}")
                finally:
                    save_coverage()
                    os._exit(code)

            try:
                child = to_parent.receive()
                assert child == f"{instance or socket.gethostname()}-{pid}"
                eventually(lambda: p.fleet()["instances"] == sorted([mine, child]))
                eventually(lambda: "child-only" in p.fleet()["breakers"], timeout=TIMEOUT)
                assert p.fleet("child-only")["breakers"]["child-only"]["closed"] == [child]
                to_child.send("close")
                assert to_parent.receive() == "closed"
            finally:
                _, status = os.waitpid(pid, 0)
                to_parent.close()
                to_child.close()
            assert os.waitstatus_to_exitcode(status) == 0
            assert p.fleet()["instances"] == [mine]  # the parent's record is untouched


# -- what a record holds, and when it is written --------------------------------------------


def test_the_record_holds_what_the_readme_documents(fleet: Fleet) -> None:
    provider = fleet.provider("web-1")
    brk = provider.get_breaker("payments")
    with pytest.raises(Boom):
        brk.do(_fail)
    force_state(brk, State.OPEN)
    eventually(lambda: _state_in(fleet, "web-1", "payments") == "open")

    record = fleet.records()[RECORDS + "web-1.json"]

    assert set(record) == {
        "version",
        "service",
        "instance",
        "host",
        "pid",
        "started",
        "updated",
        "breakers",
    }
    assert (record["version"], record["service"], record["instance"]) == (1, "checkout", "web-1")
    assert record["pid"] == os.getpid()
    payments = record["breakers"]["payments"]
    assert set(payments) == {"state", "mode", "since", "mode_since", "policy", "calls"}
    assert payments["policy"] == brk.policy.to_dict()
    assert payments["calls"]["failure"] == 1
    assert payments["mode"] == "auto"
    started, since, updated = (
        datetime.fromisoformat(text.replace("Z", "+00:00"))
        for text in (record["started"], payments["since"], record["updated"])
    )
    assert started <= since <= updated


def test_writes_coalesce_to_one_a_second(fleet: Fleet) -> None:
    clock = FakeClock()
    provider = fleet.provider("a", clock=clock)
    brk = provider.get_breaker("payments")
    settle(provider, clock=clock)
    pub = publisher(provider)
    before = pub.writes

    for n in range(50):  # a storm of transitions within one second
        force_state(brk, State.OPEN if n % 2 == 0 else State.CLOSED)
    force_state(brk, State.OPEN)
    clock.advance(1.0)

    # The counter moves just after Consul has the record: wait for both.
    eventually(lambda: _state_in(fleet, "a", "payments") == "open" and pub.writes > before)
    # 51 transitions: a write when the first came (a second had passed since the last
    # one), maybe, and one a second later; never one per transition.
    assert pub.writes <= before + 2


def test_renewals_rewrite_only_a_changed_record(fleet: Fleet) -> None:
    clock = FakeClock(wall_start=1_700_000_000)
    provider = fleet.provider("a", clock=clock, ttl=10)
    provider.get_breaker("idle")
    settle(provider, clock=clock)
    pub = publisher(provider)
    writes = pub.writes

    for _ in range(3):  # renewals of an idle instance: nothing to write
        clock.advance(5)
        eventually(lambda: pub.renewed_at == clock())
        assert pub.writes == writes  # the renewal before this one wrote nothing

    provider.get_breaker("idle").do(lambda: None)  # counts moved: the next renewal writes
    clock.advance(5)
    eventually(lambda: pub.writes == writes + 1)


def test_a_mode_from_a_policy_reaches_the_record(fleet: Fleet) -> None:
    coord = fleet.coord()
    provider = fleet.provider("a", coord=coord)
    provider.get_breaker("payments")
    settle(provider)

    coord.put(PREFIX + "payments.json", json.dumps({"mode": "forced-open"}))

    eventually(lambda: _mode_in(fleet, "a", "payments") == "forced-open")
    assert fleet.view()["breakers"]["payments"]["open"] == ["a"]


def test_an_expired_mode_shows_at_the_next_renewal(fleet: Fleet) -> None:
    clock = FakeClock()
    coord = fleet.coord()
    until = format_timestamp(clock.datetime() + timedelta(seconds=30))
    coord.put(PREFIX + "payments.json", json.dumps({"mode": "disabled", "modeUntil": until}))
    config = Config("checkout", PREFIX, fleet_path=FLEET, instance_id="a", fleet_ttl=10)
    provider = breaker.new(config, coord=coord, clock=clock, wall_clock=clock.wall)
    fleet.providers.append(provider)
    provider.get_breaker("payments")
    settle(provider, clock=clock)
    assert _mode_in(fleet, "a", "payments") == "disabled"

    clock.advance(31)  # the mode expires; no one calls the breaker to notice

    eventually(lambda: _mode_in(fleet, "a", "payments") == "auto")


def test_a_lost_session_is_replaced_and_the_record_published_again(fleet: Fleet) -> None:
    clock = FakeClock()
    coord = fleet.coord()
    provider = fleet.provider("a", clock=clock, coord=coord, ttl=10)
    settle(provider)
    pub = publisher(provider)
    lost = pub.session
    assert lost is not None

    coord.destroy_session(lost)  # as a Consul that lost its state, or a long pause
    assert fleet.view()["instances"] == []
    clock.advance(5)  # the next renewal finds the session gone

    eventually(lambda: fleet.view()["instances"] == ["a"])
    assert pub.session not in (None, lost)


def test_a_rebuilt_consul_gets_the_record_back() -> None:
    with ConsulServer(jitter=False) as server:
        config = Config("checkout", PREFIX, fleet_path=FLEET, instance_id="a")
        with breaker.new(config, coord=breaker.ConsulCoord(server.addr, timeout=1)) as p:
            p.get_breaker("payments")
            settle(p)
            server.delete(RECORDS + "a.json")

            server.restart()  # every session is gone
            force_state(p.get_breaker("payments"), State.OPEN)  # the next write says so

            eventually(lambda: _record_state(server, "payments") == "open", timeout=TIMEOUT)
            assert len(server.sessions()) == 1


def test_two_processes_with_one_instance_id_are_told(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    first = fleet.provider("same")
    settle(first)

    with caplog.at_level(logging.WARNING, logger="breaker.fleet"):
        fleet.provider("same")
        eventually(lambda: "held by another session" in caplog.text)

    assert "Config.instance_id" in caplog.text
    assert fleet.view()["instances"] == ["same"]


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fleet_path": "config/dev/checkout/breakers/"}, ValueError, "under the watched"),
        ({"fleet_path": "config/dev/checkout/breakers/fleet"}, ValueError, "under the watched"),
        ({"fleet_path": "config/dev/"}, ValueError, "under the watched"),  # records land there
        ({"fleet_path": "a//b"}, ValueError, "not a usable key prefix"),
        ({"fleet_path": "a/../b"}, ValueError, "not a usable key prefix"),
        ({"fleet_path": "/"}, ValueError, "non-empty"),
        ({"fleet_ttl": 5}, ValueError, r"\[10, 86400\]"),
        ({"fleet_ttl": "15"}, TypeError, "a number"),
        ({"fleet_ttl": True}, TypeError, "a number"),
        ({"instance_id": "a/b"}, ValueError, "without '/'"),
        ({"instance_id": " "}, ValueError, "non-empty"),
    ],
)
def test_config_refuses_fleet_settings_that_cannot_work(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    service = "checkout" if kwargs.get("fleet_path") != "config/dev/" else "checkout/breakers"
    with pytest.raises(error, match=match):
        Config(service, "/config/dev/checkout/breakers/", **kwargs)


def test_config_defaults() -> None:
    config = Config("checkout", PREFIX)

    assert (config.fleet_path, config.instance_id, config.fleet_ttl) == (None, None, 15.0)
    assert Config("checkout", PREFIX, fleet_path="/fleet", fleet_ttl=86400).fleet_ttl == 86400
    check_fleet_config("checkout", "a/", None, "web-1", 10)


def test_default_instance_id_is_host_and_pid() -> None:
    assert default_instance_id() == f"{socket.gethostname()}-{os.getpid()}"


def test_a_coord_without_sessions_serves_policies_but_not_a_fleet() -> None:
    class PoliciesOnly:
        def __init__(self) -> None:
            self.inner = breaker.MemoryCoord({PREFIX + "payments.json": '{"failureThreshold": 7}'})

        def load(self, prefix: str) -> Any:
            return self.inner.load(prefix)

        def watch(self, prefix: str, on_change: Any) -> Any:
            return self.inner.watch(prefix, on_change)

        def close(self) -> None:
            self.inner.close()

    with breaker.new(Config("checkout", PREFIX), coord=PoliciesOnly()) as provider:
        assert provider.policy("payments").failure_threshold == 7
        with pytest.raises(ValueError, match=r"no Config\.fleet_path"):
            provider.fleet()
    with pytest.raises(TypeError, match="SessionCoord"):
        breaker.new(Config("checkout", PREFIX, fleet_path=FLEET), coord=PoliciesOnly())


# -- the view --------------------------------------------------------------------------------


def test_the_view_counts_instances_by_state_and_mode() -> None:
    def record(instance: str, **breakers: tuple[str, str]) -> dict[str, Any]:
        return {
            "instance": instance,
            "breakers": {n: {"state": s, "mode": m} for n, (s, m) in breakers.items()},
        }

    records = [
        record("b", payments=("open", "auto"), ledger=("closed", "shadow")),
        record("a", payments=("half-open", "auto")),
        record("c", payments=("open", "forced-open")),
    ]

    assert fleet_view(records) == {
        "instances": ["a", "b", "c"],
        "breakers": {
            "ledger": {"closed": ["b"], "open": [], "half-open": [], "modes": {"shadow": ["b"]}},
            "payments": {
                "closed": [],
                "open": ["b", "c"],
                "half-open": ["a"],
                "modes": {"auto": ["a", "b"], "forced-open": ["c"]},
            },
        },
    }
    assert fleet_view(records, "ledger")["breakers"].keys() == {"ledger"}
    assert fleet_view([]) == {"instances": [], "breakers": {}}


def test_bad_records_are_skipped_with_one_line_each(caplog: pytest.LogCaptureFixture) -> None:
    good = {"instance": "a", "breakers": {"p": {"state": "open", "mode": "auto"}}}
    snapshot = {
        RECORDS + "a.json": json.dumps(good).encode(),
        RECORDS + "notes.txt": b"ignored",
        RECORDS + "eu/z.json": b"another service's, checkout/eu",
        "elsewhere/y.json": b"not under the prefix",
        RECORDS + "b.json": b"{oops",
        RECORDS + "c.json": b"[]",
        RECORDS + "d.json": json.dumps({"breakers": {}}).encode(),
        RECORDS + "e.json": json.dumps({"instance": "e", "breakers": []}).encode(),
        RECORDS + "f.json": json.dumps(
            {"instance": "f", "breakers": {"p": {"state": "x"}}}
        ).encode(),
        RECORDS + "g.json": json.dumps(
            {"instance": "g", "breakers": {"p": {"state": "open", "mode": 1}}}
        ).encode(),
    }

    with caplog.at_level(logging.WARNING, logger="breaker.fleet"):
        assert parse_records(snapshot, RECORDS) == [good]
    assert parse_records({RECORDS + "a.json": snapshot[RECORDS + "a.json"]}) == [good]

    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 6
    for name in "bcdefg":
        assert any(f"{RECORDS}{name}.json" in line for line in lines)


# -- the publisher's schedule on a simulated clock -------------------------------------------


def test_an_idle_instance_renews_every_half_ttl_and_writes_once() -> None:
    clock = FakeClock()
    coord = breaker.MemoryCoord(clock=clock)
    calls: list[str] = []
    counted = _Counting(coord, calls)
    sleep = FakeSleep(clock, park_after=40)
    pub = Publisher(
        counted,
        dict,
        service="checkout",
        fleet_path=FLEET,
        instance_id="a",
        ttl=15,
        clock=clock,
        wall=clock.wall,
        sleep=sleep,
    )
    pub.start()
    sleep.parked.wait(TIMEOUT)
    pub.stop()

    assert calls[:2] == ["create_session", "acquire"]
    assert set(calls[2:-1]) == {"renew_session"}
    assert sleep.pauses[:3] == [7.5, 7.5, 7.5]
    assert calls[-1] == "destroy_session"


def test_backoff_after_failures_is_the_watchers() -> None:
    clock = FakeClock()
    coord = _Counting(breaker.MemoryCoord(clock=clock), [], fail=3)
    sleep = FakeSleep(clock, park_after=4)
    pub = Publisher(
        coord,
        dict,
        service="checkout",
        fleet_path=FLEET,
        instance_id="a",
        ttl=15,
        clock=clock,
        wall=clock.wall,
        sleep=sleep,
        random=lambda: 0.0,
    )
    pub.start()
    sleep.parked.wait(TIMEOUT)
    pub.stop()

    assert sleep.pauses[:3] == [0.5, 0.75, 1.125]  # jittered to half of 1, 1.5, 2.25
    assert pub.writes == 1


class _Counting:
    """A session coord that records its calls and fails the first ``fail`` of them."""

    def __init__(self, coord: Any, calls: list[str], fail: int = 0) -> None:
        self._coord = coord
        self.calls = calls
        self._fail = fail

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._coord, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            if self._fail:
                self._fail -= 1
                raise CoordError("Consul is away", condition="away")
            return real(*args, **kwargs)

        return call


# -- helpers ---------------------------------------------------------------------------------


def _fail() -> None:
    raise Boom("downstream failed")


def _state_in(fleet: Fleet, instance: str, name: str) -> str | None:
    record = fleet.records().get(f"{RECORDS}{instance}.json")
    brk = (record or {}).get("breakers", {}).get(name)
    return None if brk is None else str(brk["state"])


def _mode_in(fleet: Fleet, instance: str, name: str) -> str | None:
    record = fleet.records().get(f"{RECORDS}{instance}.json")
    brk = (record or {}).get("breakers", {}).get(name)
    return None if brk is None else str(brk["mode"])


def _record_state(server: ConsulServer, name: str) -> str | None:
    raw = server.get(RECORDS + "a.json")
    if raw is None:
        return None
    brk = json.loads(raw)["breakers"].get(name)
    return None if brk is None else str(brk["state"])


def test_a_storm_of_transitions_writes_once_a_second() -> None:
    clock = FakeClock()
    coord = breaker.MemoryCoord(clock=clock)
    parked = threading.Event()
    done = threading.Event()
    with breaker.new(Config("checkout", PREFIX), coord=coord, clock=clock) as provider:
        brk = provider.get_breaker("payments")
        flips = 0
        start = clock()

        def sleep(seconds: float, event: threading.Event) -> bool:
            # Simulated time in 10 ms steps, a transition at each: 100 a second.
            nonlocal flips
            end = clock() + seconds
            while clock() < end and not event.is_set():
                if clock() - start >= 30:
                    parked.set()
                    return done.wait()
                clock.advance(min(0.01, end - clock()))
                force_state(brk, State.OPEN if flips % 2 == 0 else State.CLOSED)
                flips += 1
            return event.is_set()

        pub = Publisher(
            coord,
            provider.breakers,
            service="checkout",
            fleet_path=FLEET,
            instance_id="a",
            ttl=15,
            clock=clock,
            wall=clock.wall,
            sleep=sleep,
        )
        provider.add_listener(lambda change: pub.changed(change.breaker))
        pub.start()
        assert parked.wait(TIMEOUT)
        writes = pub.writes
        done.set()
        pub.stop()

    assert flips >= 2900  # 30 s of 100 transitions a second
    assert 28 <= writes <= 31  # it keeps up, and never writes more than once a second


def test_a_session_gone_at_write_time_is_replaced_at_once(fleet: Fleet) -> None:
    clock = FakeClock()
    coord = fleet.coord()
    provider = fleet.provider("a", clock=clock, coord=coord)
    settle(provider)
    pub = publisher(provider)
    lost = pub.session
    assert lost is not None
    coord.destroy_session(lost)

    provider.get_breaker("payments")  # a write is due before the next renewal
    clock.advance(1.0)

    eventually(lambda: "payments" in fleet.view()["breakers"])
    assert pub.session not in (None, lost)


def test_a_bug_in_rendering_is_logged_and_publishing_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    coord = breaker.MemoryCoord(clock=clock)
    broken = [True]

    def breakers() -> dict[str, Any]:
        if broken[0]:
            broken[0] = False
            raise RuntimeError("render bug")
        return {}

    sleep = FakeSleep(clock, park_after=2)
    pub = Publisher(
        coord,
        breakers,
        service="checkout",
        fleet_path=FLEET,
        instance_id="a",
        ttl=15,
        clock=clock,
        wall=clock.wall,
        sleep=sleep,
    )
    assert repr(pub) == f"<fleet Publisher {RECORDS + 'a.json'!r} session=None>"
    with caplog.at_level(logging.ERROR, logger="breaker.fleet"):
        pub.start()
        assert sleep.parked.wait(TIMEOUT)
    pub.stop()

    assert "publishing failed" in caplog.text and "render bug" in caplog.text
    assert sleep.pauses[0] == 30.0  # the backoff's cap, then it tried again
    assert pub.writes == 1


def test_a_record_that_cannot_be_withdrawn_is_left_to_its_ttl(
    caplog: pytest.LogCaptureFixture,
) -> None:
    coord = breaker.MemoryCoord()
    provider = breaker.new(
        Config("checkout", PREFIX, fleet_path=FLEET, instance_id="a"), coord=coord
    )
    settle(provider)
    pub = publisher(provider)

    def refuse(session: str) -> None:
        raise CoordError("Consul is away")

    coord.destroy_session = refuse  # type: ignore[method-assign]
    with caplog.at_level(logging.INFO, logger="breaker.fleet"):
        provider.close()

    assert "could not withdraw it (Consul is away)" in caplog.text
    assert coord.get(RECORDS + "a.json") is not None
    pub.join(0)  # joining a finished publisher is harmless


def test_the_provider_knows_its_instance_id() -> None:
    coord = breaker.MemoryCoord()
    with breaker.new(Config("checkout", PREFIX), coord=coord) as plain:
        assert plain.instance_id == default_instance_id()
    with breaker.new(Config("checkout", PREFIX, instance_id="web-1"), coord=coord) as named:
        assert named.instance_id == "web-1"
    config = Config("checkout", PREFIX, fleet_path=FLEET)
    with breaker.new(config, coord=breaker.MemoryCoord()) as publishing:
        assert publishing.instance_id == default_instance_id()
