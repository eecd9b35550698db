"""``breaker canary``: start, status, promote, abort, with twenty services watching."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import breaker
from breaker._cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from breaker._layers import in_canary
from breaker.testing import ConsulServer

from ..helpers import Boom, eventually, fail
from .support import (
    HISTORY,
    PATH,
    PREFIX,
    Result,
    Run,
    edit_after_read,
    stored,
    transactions,
)

FLEET = "/config/dev/fleet/"
IDS = [f"web-{n:02d}" for n in range(1, 21)]
MEMBERS = ["web-07", "web-11", "web-12", "web-19"]
"""The instances among IDS that the hash names for a 20% canary of "payments"."""

pytestmark = pytest.mark.consul


@pytest.fixture(autouse=True)
def _operator(env: ConsulServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKER_POLICIES_PATH", PATH)
    monkeypatch.setenv("BREAKER_FLEET_PATH", FLEET)
    monkeypatch.setenv("BREAKER_BY", "alice@ops")
    env.put(PREFIX + "payments.json", '{"failureThreshold": 5, "openStateTimeout": "30s"}')


@pytest.fixture
def fleet(env: ConsulServer) -> Iterator[dict[str, breaker.Provider]]:
    found = {}
    for name in IDS:
        config = breaker.Config("checkout", PATH, fleet_path=FLEET, instance_id=name)
        provider = breaker.new(config, coord=breaker.ConsulCoord(env.addr, timeout=2))
        provider.get_breaker("payments")
        found[name] = provider
    yield found
    for provider in found.values():
        provider.close()


def history(server: ConsulServer) -> list[dict[str, Any]]:
    return [json.loads(server.get(k) or b"") for k in server.keys(HISTORY + "payments.json/")]


def status(cli: Run, until: Any) -> dict[str, Any]:
    """Run ``canary status --json`` until ``until(found)`` (records lag up to a second)."""
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        result = cli("canary", "status", "payments", "--json")
        assert result.code == EXIT_OK, result
        seen.append(result.json())
        return bool(until(seen[-1]))

    eventually(done, timeout=10)
    return seen[-1]


def names(groups: dict[str, list[str]]) -> list[str]:
    return sorted(i for ids in groups.values() for i in ids)


class TestStart:
    def test_it_adds_the_canary_to_the_document_with_its_history_entry(
        self, cli: Run, env: ConsulServer
    ) -> None:
        result = cli(
            "canary", "start", "payments", "-", "--percent", "20", "--abort-if-open",
            "--reason", "try a lower threshold",
            stdin='{"failureThreshold": 2}',
        )  # fmt: skip
        assert result == Result(
            EXIT_OK,
            f"canary started {PREFIX}payments.json\n"
            '  canary: (absent) -> {"policy": {"failureThreshold": 2}, "percent": 20, '
            '"abortIfOpen": true}\n',
            "",
        )
        assert stored(env, "payments") == {
            "failureThreshold": 5,
            "openStateTimeout": "30s",
            "canary": {"policy": {"failureThreshold": 2}, "percent": 20, "abortIfOpen": True},
        }
        (entry,) = history(env)
        assert (entry["action"], entry["reason"]) == ("canary-start", "try a lower threshold")
        assert len(transactions(env)) == 1
        result = cli("canary", "start", "payments", "-", "--percent", "10", stdin="{}")
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: refused: {PREFIX}payments.json already holds a canary; promote or abort "
            "it first; nothing written\n",
        )

    @pytest.mark.parametrize(
        ("candidate", "says"),
        [
            ('{"mode": "forced-open"}', "canary.policy.mode: a canary tries policy settings"),
            ('{"failureThreshold": -1}', "canary.policy.failureThreshold: expected an integer"),
            ("[1]", "<stdin>: INVALID: a policy must be a JSON object"),
            ("{", "<stdin>: INVALID: malformed JSON"),
            (
                '{"maxOpenStateTimeout": "10s"}',
                "would not apply (canary.policy: on top of the document: maxOpenStateTimeout: "
                "10s is shorter than the open state timeout (30s))",
            ),
            ('{"failureTreshold": 1}', "canary.policy.failureTreshold: unknown key (did you"),
        ],
    )
    def test_it_refuses_a_candidate_the_services_would_not_run(
        self, cli: Run, env: ConsulServer, candidate: str, says: str
    ) -> None:
        result = cli("canary", "start", "payments", "-", "--percent", "20", stdin=candidate)
        assert result.code == EXIT_INVALID and says in result.err, result
        assert "canary" not in stored(env, "payments")
        assert transactions(env) == []

    def test_an_unknown_key_with_force_and_a_new_document(
        self, cli: Run, env: ConsulServer
    ) -> None:
        argv = ("canary", "start", "search", "-", "--percent", "12.5")
        result = cli(*argv, stdin="{}")
        assert result.code == EXIT_INVALID and "no document at" in result.err
        assert cli(*argv, "--create", stdin='{"x": 1}', merged=True).code == EXIT_INVALID
        result = cli(*argv, "--create", "--force", stdin='{"x": 1}')
        assert result.code == EXIT_OK
        assert result.err == "warning: canary.policy.x: unknown key\n"
        assert stored(env, "search") == {
            "canary": {"policy": {"x": 1}, "percent": 12.5, "abortIfOpen": False}
        }

    def test_a_concurrent_edit_is_refused(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 9}')
        result = cli("canary", "start", "payments", "-", "--percent", "20", stdin="{}")
        assert result.code == EXIT_INVALID and "(a concurrent edit)" in result.err
        assert stored(env, "payments") == {"failureThreshold": 9}
        assert history(env) == []

    def test_usage(self, cli: Run, env: ConsulServer) -> None:
        for percent in ("0", "101", "x", "-5"):
            result = cli("canary", "start", "payments", "-", "--percent", percent, stdin="{}")
            assert result.code == EXIT_USAGE and "expected a percentage" in result.err
        assert cli("canary", "start", "payments", "-", "--percent", "5%", stdin="{}").code == 0
        result = cli("canary", "start", "_default", "-", "--percent", "5", stdin="{}")
        assert result.code == EXIT_INVALID and "_default.json cannot hold one" in result.err
        assert cli("canary").code == EXIT_USAGE
        result = cli("canary", "start", "payments", "missing.json", "--percent", "5")
        assert result.err == "breaker: cannot read missing.json: No such file or directory\n"
        env.put(PREFIX + "broken.json", "[]")
        result = cli("canary", "start", "broken", "-", "--percent", "5", stdin="{}")
        assert result.code == EXIT_INVALID and "holds no JSON object" in result.err


class TestEndToEnd:
    def test_a_20_percent_canary_its_status_an_abort_and_the_promotion(
        self, cli: Run, env: ConsulServer, fleet: dict[str, breaker.Provider]
    ) -> None:
        candidate = '{"failureThreshold": 1}'
        argv = ("canary", "start", "payments", "-", "--percent", "20", "--abort-if-open")
        assert cli(*argv, stdin=candidate).code == EXIT_OK
        assert [i for i in IDS if in_canary(i, "payments", 20)] == MEMBERS  # the same every run
        found = status(cli, lambda s: names(s["candidate"]) == MEMBERS and not names(s["pending"]))
        assert found["named"] == MEMBERS
        assert found["candidate"] == {"closed": MEMBERS, "open": [], "half-open": []}
        assert names(found["stable"]) == [i for i in IDS if i not in MEMBERS]
        assert found["canary"]["percent"] == 20 and found["canary"]["abortIfOpen"] is True
        assert found["canary"]["policy"] == {"failureThreshold": 1}

        # One member trips under the candidate: it goes back on its own; the rest carry on.
        with pytest.raises(Boom):
            fleet["web-11"].get_breaker("payments").do(fail)
        found = status(cli, lambda s: s["aborted"]["open"] == ["web-11"])
        assert found["candidate"]["closed"] == ["web-07", "web-12", "web-19"]
        result = cli("canary", "status", "payments")
        assert result == Result(
            EXIT_OK,
            f"canary {found['canary']['id']} of payments: 20% of instances, abortIfOpen\n"
            'candidate: {"failureThreshold": 1}\n'
            "runs the candidate        3 of 20: web-07 closed, web-12 closed, web-19 closed\n"
            "runs the stable policy   16 of 20: closed 16\n"
            "went back (abortIfOpen)   1 of 20: web-11 open\n",
            "",
        )
        explained = cli("explain", "payments", "--instance", "web-11").out.splitlines()
        # The documents say who is a member; only the instance knows it went back.
        assert explained[-3:] == [
            f"canary {found['canary']['id']}: 20% of instances, abortIfOpen",
            '  candidate  {"failureThreshold": 1}',
            "  web-11 is a member: it runs the candidate (keys from canary above), unless it "
            "tripped and went back (`breaker canary status` tells)",
        ]
        assert cli("explain", "payments", "--instance", "web-01").out.splitlines()[-1] == (
            "  web-01 is not a member: it runs the document's policy"
        )
        assert cli("explain", "payments").out.splitlines()[-1] == (
            "  members run it; --instance ID says whether one is"
        )
        assert fleet["web-11"].explain("payments")["canary"]["aborted"] is True

        # Promote: one document, the candidate's keys in it, no canary; one more entry.
        entries = len(history(env))
        result = cli("canary", "promote", "payments", "--reason", "looks good")
        assert result == Result(
            EXIT_OK,
            f"canary promoted {PREFIX}payments.json\n"
            "  failureThreshold: 5 -> 1\n"
            '  canary: {"policy": {"failureThreshold": 1}, "percent": 20, "abortIfOpen": true} '
            "-> (absent)\n",
            "",
        )
        assert env.keys(PREFIX) == [PREFIX + "payments.json"]
        assert stored(env, "payments") == {"failureThreshold": 1, "openStateTimeout": "30s"}
        assert [e["action"] for e in history(env)[entries:]] == ["canary-promote"]
        eventually(
            lambda: all(p.policy("payments").failure_threshold == 1 for p in fleet.values()),
            timeout=10,
        )
        result = cli("canary", "status", "payments")
        assert result == Result(EXIT_INVALID, "", f"breaker: no canary at {PREFIX}payments.json\n")

    def test_abort_puts_every_instance_back_on_the_document(
        self, cli: Run, env: ConsulServer, fleet: dict[str, breaker.Provider]
    ) -> None:
        argv = ("canary", "start", "payments", "-", "--percent", "20")
        assert cli(*argv, stdin='{"failureThreshold": 2}').code == EXIT_OK
        status(cli, lambda s: names(s["candidate"]) == MEMBERS)
        result = cli("canary", "abort", "payments")
        assert result.out.startswith(f"canary aborted {PREFIX}payments.json\n  canary: ")
        assert env.keys(PREFIX) == [PREFIX + "payments.json"]
        assert stored(env, "payments") == {"failureThreshold": 5, "openStateTimeout": "30s"}
        assert [e["action"] for e in history(env)] == ["canary-start", "canary-abort"]
        eventually(
            lambda: all(p.policy("payments").failure_threshold == 5 for p in fleet.values()),
            timeout=10,
        )
        for command in ("abort", "promote"):
            result = cli("canary", command, "payments")
            assert result == Result(
                EXIT_INVALID, "", f"breaker: no canary in {PREFIX}payments.json; nothing written\n"
            )


class TestStatus:
    def test_instances_not_on_this_canary_yet(self, cli: Run, env: ConsulServer) -> None:
        cli("canary", "start", "payments", "-", "--percent", "100", stdin='{"failureThreshold": 2}')
        record = {
            "instance": "old-1",
            "breakers": {
                "payments": {"state": "open", "mode": "auto"},
                "/payments": {
                    "state": "closed",
                    "mode": "auto",
                    "canary": {"id": "0", "runs": "candidate"},
                },
                "search": {"state": "closed", "mode": "auto"},
            },
        }
        env.put("config/dev/fleet/checkout/old-1.json", json.dumps(record))
        result = cli("canary", "status", "payments")
        assert result.out.splitlines()[2:] == [
            "runs the candidate       0 of 2",
            "runs the stable policy   0 of 2",
            "not on this canary yet   2 of 2: old-1 open, old-1 (/payments) closed",
        ]
        assert cli("canary", "status", "payments", "--json").json()["named"] == ["old-1"]

    def test_without_a_canary(self, cli: Run, env: ConsulServer) -> None:
        assert (
            cli("canary", "status", "search").err
            == f"breaker: no document at {PREFIX}search.json\n"
        )
        assert cli("canary", "status", "payments").err == (
            f"breaker: no canary at {PREFIX}payments.json\n"
        )
        env.put(PREFIX + "payments.json", '{"canary": {"percent": 5}}')
        assert cli("canary", "status", "payments").err == (
            f"breaker: an invalid canary at {PREFIX}payments.json\n"
        )
        for command in ("abort", "promote"):
            result = cli("canary", command, "payments")
            assert result.code == EXIT_INVALID
            assert result.err.startswith(f"breaker: the canary in {PREFIX}payments.json is invalid")
