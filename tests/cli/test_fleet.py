"""``breaker fleet``: the instances' breakers as they publish them, end to end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

import breaker
from breaker._cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from breaker.testing import ConsulServer, force_state

from ..helpers import eventually
from .support import PATH, Result, Run

FLEET = "/config/dev/fleet/"

pytestmark = pytest.mark.consul


@pytest.fixture
def instances(env: ConsulServer) -> Iterator[dict[str, breaker.Provider]]:
    found = {}
    for name in ("web-1", "web-2", "web-3"):
        config = breaker.Config("checkout", PATH, fleet_path=FLEET, instance_id=name)
        provider = breaker.new(config, coord=breaker.ConsulCoord(env.addr, timeout=2))
        provider.get_breaker("payments")
        found[name] = provider
    yield found
    for provider in found.values():
        provider.close()


def settled(cli: Run, *argv: str, until: str) -> Result:
    """Run ``breaker fleet`` until its output holds ``until`` (records lag up to a second)."""
    results: list[Result] = []

    def done() -> bool:
        results.append(cli("fleet", "--fleet-path", FLEET, *argv))
        return until in results[-1].out

    eventually(done, timeout=5)
    return results[-1]


def test_a_trip_shows_on_exactly_that_instance_within_two_seconds(
    cli: Run, instances: dict[str, breaker.Provider]
) -> None:
    settled(cli, "--json", until='"closed": [\n        "web-1",\n        "web-2",\n        "web-3"')
    force_state(instances["web-2"].get_breaker("payments"), "open")
    start = time.monotonic()
    result = settled(cli, "--json", "payments", until='"open": [\n        "web-2"')
    assert time.monotonic() - start < 2
    assert result.code == EXIT_OK
    assert result.json() == {
        "instances": ["web-1", "web-2", "web-3"],
        "breakers": {
            "payments": {
                "closed": ["web-1", "web-3"],
                "open": ["web-2"],
                "half-open": [],
                "modes": {"auto": ["web-1", "web-2", "web-3"]},
            }
        },
    }
    assert result.json() == instances["web-1"].fleet("payments")


def test_the_table_names_the_open_and_half_open_ones(
    cli: Run, instances: dict[str, breaker.Provider], env: ConsulServer
) -> None:
    force_state(instances["web-2"].get_breaker("payments"), "open")
    force_state(instances["web-3"].get_breaker("payments"), "half-open")
    instances["web-1"].get_breaker("search")
    env.put(PATH.lstrip("/") + "search.json", '{"mode": "shadow"}')
    table = (
        "config/dev/fleet/checkout/: 3 instances (web-1, web-2, web-3)\n"
        "NAME      CLOSED  OPEN  HALF-OPEN  MODES\n"
        "payments       1     1          1  auto 3\n"
        "  open: web-2\n"
        "  half-open: web-3\n"
        "search         1     0          0  shadow 1\n"
    )
    assert settled(cli, "--service", "checkout", until=table) == Result(EXIT_OK, table, "")
    result = cli("fleet", "--fleet-path", FLEET, "search")
    assert result.out.splitlines()[2:] == ["search       1     0          0  shadow 1"]
    result = cli("fleet", "--fleet-path", FLEET, "nothing")
    assert result.code == EXIT_INVALID
    assert result.err == "breaker: no instance has a breaker 'nothing'\n"
    assert cli("fleet", "--fleet-path", FLEET, "nothing", "--json").code == EXIT_INVALID


def test_which_service_and_where(
    cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli("fleet", "--fleet-path", FLEET)
    assert result == Result(
        EXIT_INVALID,
        "",
        "breaker: which service? --service names it (services publishing under "
        "config/dev/fleet/: none)\n",
    )
    assert cli("fleet", "--fleet-path", FLEET, "--service", "checkout").out == (
        "config/dev/fleet/checkout/: 0 instances\nNAME  CLOSED  OPEN  HALF-OPEN  MODES\n"
    )
    record = {"instance": "a-1", "breakers": {}}
    env.put("config/dev/fleet/checkout/a-1.json", json.dumps(record))
    env.put("config/dev/fleet/search/a-1.json", json.dumps(record))
    env.put("config/dev/fleet/stray.json", "{}")
    result = cli("fleet", "--fleet-path", FLEET)
    assert result.code == EXIT_USAGE
    assert "(services publishing under config/dev/fleet/: checkout, search)" in result.err
    monkeypatch.setenv("BREAKER_FLEET_PATH", FLEET)
    monkeypatch.setenv("BREAKER_SERVICE", "search")
    assert cli("fleet").out.startswith("config/dev/fleet/search/: 1 instance (a-1)\n")
    monkeypatch.delenv("BREAKER_FLEET_PATH")
    assert cli("fleet").code == EXIT_USAGE  # --fleet-path is required then
    for argv, says in [
        (("--fleet-path", "a//b"), "--fleet-path: 'a//b' is not a usable key prefix"),
        (("--fleet-path", "/"), "--fleet-path: '/' is not a usable key prefix"),
        (("--fleet-path", FLEET, "--service", "a/b"), "--service: 'a/b' is not a service name"),
        (("--fleet-path", FLEET, "/bad//name"), "cannot name a breaker"),
    ]:
        result = cli("fleet", *argv)
        assert result.code == EXIT_USAGE and says in result.err, (argv, result)
