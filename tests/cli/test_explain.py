"""breaker explain: the policy a breaker runs on, where each key comes from, and why."""

from __future__ import annotations

from datetime import timedelta

import pytest

import breaker
from breaker._cli import EXIT_INVALID, EXIT_OK
from breaker._cli._explain import explain_lines
from breaker.testing import ConsulServer, FakeClock

from ..helpers import Boom, fail
from .support import NOW, PATH, PREFIX, Result, Run

DOCUMENTS = {
    "_default.json": '{"successThreshold": 2, "mode": "forced-open", '
    '"modeUntil": "2026-11-29T14:00:00Z", "owner": "sre"}',
    "payments.json": '{"failureThreshold": 3, "openStateTimeout": "30s"}',
    "search.json": '{"openStateTimeout": "5m", "maxOpenStateTimeout": "1m"}',
}


@pytest.fixture
def documents(env: ConsulServer) -> ConsulServer:
    for key, value in DOCUMENTS.items():
        env.put(PREFIX + key, value)
    return env


@pytest.mark.consul
def test_each_key_with_its_layer_the_mode_and_when_it_ends(cli: Run, documents: object) -> None:
    result = cli("explain", "--path", PATH, "payments")
    assert result == Result(
        EXIT_OK,
        f"payments ({PREFIX}payments.json)\n"
        "mode:   forced-open until 2026-11-29T14:00:00Z (15m0s from now), set by _default\n"
        "policy:\n"
        "  failureThreshold     3                       payments\n"
        "  successThreshold     2                       _default\n"
        '  openStateTimeout     "30s"                   payments\n'
        "  slowCallDuration     null                    built-in\n"
        "  failureRate          null                    built-in\n"
        "  minimumCalls         20                      built-in\n"
        '  rateWindow           "1m0s"                  built-in\n'
        "  maxOpenStateTimeout  null                    built-in\n"
        "  maxConcurrentCalls   0                       built-in\n"
        '  maxWaitDuration      "0s"                    built-in\n'
        "  timeout              null                    built-in\n"
        '  mode                 "forced-open"           _default\n'
        '  modeUntil            "2026-11-29T14:00:00Z"  _default\n'
        "layers, bottom to top:\n"
        "  built-in  applies  the code's defaults (Policy()); a service's own default_policy "
        "may differ\n"
        '  _default  applies  {"successThreshold": 2, "mode": "forced-open", "modeUntil": '
        '"2026-11-29T14:00:00Z", "owner": "sre"}\n'
        "            ignored unknown keys: 'owner'\n"
        '  payments  applies  {"failureThreshold": 3, "openStateTimeout": "30s"}\n',
        "",
    )


@pytest.mark.consul
def test_an_invalid_layer_says_why_and_what_applies(cli: Run, documents: object) -> None:
    result = cli("explain", "--path", PATH, "search", now=NOW + timedelta(hours=1))
    assert result.code == EXIT_INVALID
    lines = result.out.splitlines()
    assert lines[1] == ("mode:   auto (forced-open ended 2026-11-29T14:00:00Z), set by _default")
    assert lines[-3:] == [
        '  search    INVALID  {"openStateTimeout": "5m", "maxOpenStateTimeout": "1m"}',
        "            maxOpenStateTimeout: 1m0s is shorter than the open state timeout (5m0s)",
        "            a service starting now: keeping the default policy",
    ]
    assert '  openStateTimeout     "1m0s"' in result.out  # the built-in one, not its own


@pytest.mark.consul
def test_a_breaker_with_no_document_and_the_service_default(cli: Run, documents: object) -> None:
    result = cli("explain", "--path", PATH, "inventory", "--json").json()
    assert result["layers"][2] == {
        "layer": "inventory",
        "key": PREFIX + "inventory.json",
        "state": "absent",
        "document": None,
    }
    default = cli("explain", "--path", PATH, "_default", "--json").json()
    assert [layer["layer"] for layer in default["layers"]] == ["built-in", "_default"]
    assert default["policy"] == result["policy"]
    human = cli("explain", "--path", PATH, "_default").out.splitlines()
    assert human[0] == f"breakers without a document ({PREFIX}_default.json)"
    human = cli("explain", "--path", PATH, "inventory").out.splitlines()
    assert human[-1] == "  inventory  absent"


@pytest.mark.consul
def test_a_document_that_is_not_json(cli: Run, env: ConsulServer) -> None:
    env.put(PREFIX + "payments.json", "failureThreshold=3")
    result = cli("explain", "--path", PATH, "payments", "--json")
    assert result.code == EXIT_INVALID
    layer = result.json()["layers"][2]
    assert (layer["document"], layer["state"]) == ("failureThreshold=3", "invalid")
    assert layer["problems"][0]["key"] is None


@pytest.mark.consul
@pytest.mark.parametrize("name", ["payments", "search", "inventory", "_default"])
def test_the_cli_and_a_service_give_the_same_answer(
    cli: Run, documents: ConsulServer, name: str
) -> None:
    coord = breaker.MemoryCoord({PREFIX + key: value for key, value in DOCUMENTS.items()})
    clock = FakeClock(wall_start=NOW.timestamp())
    with breaker.new(
        breaker.Config("checkout", PATH), coord=coord, clock=clock, wall_clock=clock.wall
    ) as provider:
        if name == "_default":
            with pytest.raises(ValueError, match="cannot name a breaker"):
                provider.explain(name)
            return
        assert cli("explain", "--path", PATH, name, "--json").json() == provider.explain(name)


def test_the_canary_part_in_words() -> None:
    document = (
        '{"openStateTimeout": "10s", "canary": {"policy": {"failureThreshold": 1}, '
        '"percent": 100, "abortIfOpen": true}}'
    )
    coord = breaker.MemoryCoord({PREFIX + "payments.json": document})
    config = breaker.Config("checkout", PATH, instance_id="web-1")
    with breaker.new(config, coord=coord) as provider:
        with pytest.raises(Boom):
            provider.get_breaker("payments").do(fail)
        lines = explain_lines(provider.explain("payments"))
        assert (
            lines[-1] == "  web-1 is a member that went back to the document's policy (abortIfOpen)"
        )
        coord.put(
            PREFIX + "payments.json",
            '{"canary": {"policy": {"maxOpenStateTimeout": "1s"}, "percent": 2.5}}',
        )
        lines = explain_lines(provider.explain("payments"))
        assert lines[-3:] == [
            f"canary {provider.explain('payments')['canary']['id']}: 2.5% of instances",
            '  candidate  {"maxOpenStateTimeout": "1s"}',
            "  runs nowhere: it does not fit on the document (above)",
        ]
