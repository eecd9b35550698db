"""Canary rollouts in running providers: who runs the candidate, abortIfOpen, the record.

Providers of one service share one store: a MemoryCoord, or the stand-in through a
ConsulCoord each. The document is written as the CLI writes it (the CLI's own tests run
the commands); here what matters is what the providers do with it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

import breaker
from breaker import Config, Mode, Policy, State
from breaker._layers import in_canary
from breaker.testing import ConsulServer

from .helpers import PREFIX, Boom, SharedCoord, eventually, fail

KEY = PREFIX + "payments.json"
FLEET = "config/dev/fleet/"
IDS = [f"web-{n:02d}" for n in range(1, 21)]
MEMBERS = ["web-07", "web-11", "web-12", "web-19"]
"""The instances among IDS that the hash names for a 20% canary of "payments"."""
STABLE = {"failureThreshold": 5, "openStateTimeout": "30s"}
CANDIDATE = {"failureThreshold": 1}


def document(percent: float = 20, abort: bool = True, **candidate: Any) -> str:
    policy = candidate or CANDIDATE
    return json.dumps(
        {**STABLE, "canary": {"policy": policy, "percent": percent, "abortIfOpen": abort}}
    )


class Fleet:
    """Providers of "checkout", each an instance of its own, over one store."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.server: ConsulServer | None = None
        self.memory: breaker.MemoryCoord | None = None
        if kind == "memory":
            self.memory = breaker.MemoryCoord()
        else:
            self.server = ConsulServer(jitter=False).start()
        self.providers: dict[str, breaker.Provider] = {}

    def coord(self) -> Any:
        if self.memory is not None:
            return SharedCoord(self.memory)
        assert self.server is not None
        return breaker.ConsulCoord(self.server.addr, wait=5, timeout=2)

    def start(self, *ids: str, fleet: bool = False) -> None:
        for instance in ids:
            config = Config(
                "checkout", PREFIX, instance_id=instance, fleet_path=FLEET if fleet else None
            )
            provider = breaker.new(config, coord=self.coord())
            provider.get_breaker("payments")
            self.providers[instance] = provider

    def put(self, key: str, value: str) -> None:
        if self.memory is not None:
            self.memory.put(key, value)
        else:
            assert self.server is not None
            self.server.put(key, value)

    def running(self, threshold: int) -> list[str]:
        """Return the instances whose payments breaker runs ``failureThreshold`` threshold."""
        return [
            i
            for i, p in self.providers.items()
            if p.get_breaker("payments").policy.failure_threshold == threshold
        ]

    def canary(self, instance: str) -> dict[str, Any] | None:
        """Return what ``instance``'s status says of its payments canary."""
        found: dict[str, Any] | None = (
            self.providers[instance].status()["breakers"]["payments"].get("canary")
        )
        return found

    def settled(self, threshold: int, count: int) -> None:
        """Wait until ``count`` providers run ``threshold`` (the watchers deliver on their own)."""
        eventually(lambda: len(self.running(threshold)) == count, timeout=10)

    def close(self) -> None:
        for provider in self.providers.values():
            provider.close()
        if self.server is not None:
            self.server.stop()


@pytest.fixture(params=["memory", "consul"])
def fleet(request: pytest.FixtureRequest) -> Iterator[Fleet]:
    setup = Fleet(request.param)
    yield setup
    setup.close()


def test_a_20_percent_canary_lands_on_the_instances_the_hash_names(fleet: Fleet) -> None:
    fleet.put(KEY, json.dumps(STABLE))
    fleet.start(*IDS)
    fleet.put(KEY, document())
    fleet.settled(1, len(MEMBERS))
    eventually(lambda: all(fleet.canary(i) is not None for i in IDS), timeout=10)
    assert fleet.running(1) == MEMBERS == [i for i in IDS if in_canary(i, "payments", 20)]
    assert fleet.running(5) == [i for i in IDS if i not in MEMBERS]
    for instance, provider in fleet.providers.items():
        canary = fleet.canary(instance)
        assert canary is not None and canary["member"] is (instance in MEMBERS)
        assert canary["runs"] == ("candidate" if instance in MEMBERS else "stable")
        assert provider.policy("payments").open_state_timeout == 30  # the document below
    # Raising the share keeps every member and adds some; promoting reaches everyone.
    fleet.put(KEY, document(percent=50))
    fleet.settled(1, len([i for i in IDS if in_canary(i, "payments", 50)]))
    assert set(MEMBERS) <= set(fleet.running(1))
    fleet.put(KEY, json.dumps({**STABLE, **CANDIDATE}))
    eventually(lambda: all(fleet.canary(i) is None for i in IDS), timeout=10)
    assert fleet.running(1) == IDS


def test_abort_if_open_sends_a_member_that_trips_back_alone(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    fleet.put(KEY, document())
    fleet.start(*IDS[:12])  # web-07, web-11, web-12 are members
    fleet.settled(1, 3)
    member = fleet.providers["web-07"]
    brk = member.get_breaker("payments")
    with caplog.at_level(logging.WARNING, logger="breaker.policies"), pytest.raises(Boom):
        brk.do(fail)  # one failure trips the candidate's failureThreshold of 1
    assert brk.state is State.OPEN  # it stays open: the downstream may be down after all
    assert brk.policy.failure_threshold == 5  # but on the stable policy now
    assert member.policy("payments").failure_threshold == 5
    canary = member.status()["breakers"]["payments"]["canary"]
    assert (canary["member"], canary["runs"], canary["aborted"]) == (True, "stable", True)
    (line,) = [r.getMessage() for r in caplog.records if "leaves the canary" in r.getMessage()]
    assert line.startswith(f"{KEY}: instance web-07 leaves the canary {canary['id']} (20%)")
    assert line.endswith("breaker 'payments' tripped under the candidate (abortIfOpen)")
    assert member.explain("payments")["canary"]["aborted"] is True
    # The other members keep trying it; a change of the stable part keeps web-07 out.
    assert fleet.running(1) == ["web-11", "web-12"]
    fleet.put(KEY, document().replace('"openStateTimeout": "30s"', '"openStateTimeout": "20s"'))
    eventually(lambda: member.policy("payments").open_state_timeout == 20, timeout=10)
    assert fleet.running(1) == ["web-11", "web-12"]
    # A new candidate is a new trial, for web-07 too.
    fleet.put(KEY, document(failureThreshold=2))
    fleet.settled(2, 3)


def test_without_abort_if_open_a_member_keeps_the_candidate(fleet: Fleet) -> None:
    fleet.put(KEY, document(abort=False))
    fleet.start("web-07")
    brk = fleet.providers["web-07"].get_breaker("payments")
    fleet.settled(1, 1)
    with pytest.raises(Boom):
        brk.do(fail)
    assert (brk.state, brk.policy.failure_threshold) == (State.OPEN, 1)


def test_a_kill_switch_is_no_trip_of_the_candidate(fleet: Fleet) -> None:
    fleet.put(KEY, document())
    fleet.start("web-07")
    provider = fleet.providers["web-07"]
    fleet.settled(1, 1)
    fleet.put(PREFIX + "_default.json", '{"mode": "forced-open"}')
    eventually(lambda: provider.get_breaker("payments").state is State.OPEN, timeout=10)
    assert provider.get_breaker("payments").mode is Mode.FORCED_OPEN
    assert provider.policy("payments").failure_threshold == 1  # still trying the candidate
    assert provider.status()["breakers"]["payments"]["canary"]["aborted"] is False


def test_the_fleet_record_says_which_policy_each_instance_runs(fleet: Fleet) -> None:
    fleet.put(KEY, document())
    fleet.start("web-07", "web-08", fleet=True)
    fleet.settled(1, 1)
    with pytest.raises(Boom):
        fleet.providers["web-07"].get_breaker("payments").do(fail)

    def records() -> dict[str, Any]:
        reader = fleet.coord()
        try:
            raw = reader.load(FLEET + "checkout/")
        finally:
            if fleet.memory is None:
                reader.close()
        found = [json.loads(v) for v in raw.values()]
        return {r["instance"]: r["breakers"]["payments"] for r in found if r["breakers"]}

    def aborted() -> bool:
        found = records()
        return len(found) == 2 and found["web-07"].get("canary", {}).get("aborted") is True

    eventually(aborted, timeout=10)
    found = records()
    assert {i: r["canary"]["runs"] for i, r in found.items()} == {
        "web-07": "stable",
        "web-08": "stable",
    }
    assert (found["web-07"]["canary"]["member"], found["web-08"]["canary"]["member"]) == (
        True,
        False,
    )
    assert found["web-07"]["state"] == "open"
    assert found["web-07"]["policy"]["failureThreshold"] == 5


def test_a_canary_that_goes_away_or_turns_invalid(fleet: Fleet) -> None:
    fleet.put(KEY, document())
    fleet.start("web-07")
    provider = fleet.providers["web-07"]
    fleet.settled(1, 1)
    fleet.put(KEY, '{"failureThreshold": "five", "canary": {}}')  # invalid: the last good stays
    eventually(lambda: "payments" in provider.invalid_documents, timeout=10)
    assert provider.policy("payments").failure_threshold == 1
    fleet.put(PREFIX + "_default.json", '{"openStateTimeout": "10s", "maxOpenStateTimeout": "20s"}')
    # The kept version no longer fits under the new default: nothing of it, canary included.
    eventually(lambda: provider.policy("payments").open_state_timeout == 10, timeout=10)
    assert provider.policy("payments").failure_threshold == 5
    assert provider.status()["breakers"]["payments"].get("canary") is None
    fleet.put(KEY, json.dumps({"canary": {"policy": CANDIDATE, "percent": 20}}))  # one that fits
    eventually(lambda: provider.policy("payments").failure_threshold == 1, timeout=10)
    if fleet.memory is not None:
        fleet.memory.delete(KEY)
    else:
        assert fleet.server is not None
        fleet.server.delete(KEY)
    eventually(lambda: provider.policy("payments").failure_threshold == 5, timeout=10)
    assert provider.status()["breakers"]["payments"].get("canary") is None


def test_a_provider_without_an_instance_id_is_hashed_by_its_default_one() -> None:
    coord = breaker.MemoryCoord({KEY: document(percent=100)})
    with breaker.new(Config("checkout", PREFIX), coord=coord) as provider:
        assert provider.policy("payments").failure_threshold == 1
        assert provider.explain("payments")["canary"]["instance"] == provider.instance_id
    coord = breaker.MemoryCoord({KEY: document(percent=100)})
    with breaker.new(Config("checkout", PREFIX, instance_id="x"), coord=coord) as provider:
        assert provider.instance_id == "x"


def test_policy_objects_say_which_instance_is_which() -> None:
    # A Policy never holds a canary: from_dict reads the stable policy of a document.
    assert Policy.from_json(document()) == Policy(failure_threshold=5, open_state_timeout=30)


def test_a_forked_child_is_hashed_as_the_instance_it_is() -> None:
    from .helpers import save_coverage
    from .test_consul_fork import Pipe, fork

    coord = breaker.MemoryCoord({KEY: document(percent=50)})
    config = Config("checkout", PREFIX, instance_id="web", fleet_path=FLEET)
    with breaker.new(config, coord=coord) as provider:
        assert provider.explain("payments")["canary"]["instance"] == "web"
        to_parent = Pipe()
        pid = fork()
        if pid == 0:  # the child: report through the pipe, never return into pytest
            code = 1
            try:
                found = provider.explain("payments")["canary"]
                threshold = provider.get_breaker("payments").policy.failure_threshold
                to_parent.send(json.dumps([found["instance"], found["member"], threshold]))
                code = 0
            except BaseException as exc:
                to_parent.send(json.dumps([f"error {exc!r}", None, None]))
            finally:
                save_coverage()
                os._exit(code)
        try:
            instance, member, threshold = json.loads(to_parent.receive())
        finally:
            _, status = os.waitpid(pid, 0)
            to_parent.close()
        assert os.waitstatus_to_exitcode(status) == 0
        assert instance == f"web-{pid}"
        assert member is in_canary(instance, "payments", 50)
        assert threshold == (1 if member else 5)
        assert provider.explain("payments")["canary"]["instance"] == "web"  # the parent's own
