"""The README's fleet and canary examples run as shown, against five running instances."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

import pytest

import breaker
from breaker.testing import ConsulServer, force_state

from ..helpers import eventually
from .support import PATH, PREFIX, ROOT, Result, Run
from .test_app import ReadmeShell

INSTANCES = [f"web-{n}" for n in range(1, 6)]
LAGGING = ("fleet", "canary")
"""Commands that read the fleet records, which lag their instances by up to a second."""


def fleet_blocks() -> list[list[str]]:
    """Return the lines of each console block in the README's fleet section."""
    text = (ROOT / "README.rst").read_text()
    part = text.split("\nThe fleet\n=========\n", 1)[1].split("\nPolicies\n========\n", 1)[0]
    blocks = []
    for match in re.finditer(r"^( *)\.\. code-block:: console\n\n((?:\1    .*\n|\n)+)", part, re.M):
        indent = len(match.group(1)) + 4
        blocks.append([line[indent:] for line in match.group(2).rstrip("\n").splitlines()])
    return blocks


class FleetShell(ReadmeShell):
    """The README's shell, where a view of the fleet may be run again until it settles."""

    def step(self, command: str, note: str | None, shown: list[str]) -> None:
        words = shlex.split(command) if not command.startswith(("export ", "^C")) else []
        if words[:1] != ["breaker"] or words[1] not in LAGGING or words[2:3] == ["start"]:
            super().step(command, note, shown)
            return
        results: list[Result] = []

        def settled() -> bool:
            results.append(self.cli(*words[1:], merged=True))
            return results[-1].out.splitlines() == shown

        try:
            eventually(settled, timeout=5)
        except AssertionError:
            raise AssertionError((command, results[-1])) from None
        self.ran.add("breaker")


@pytest.fixture
def instances(env: ConsulServer) -> Iterator[dict[str, breaker.Provider]]:
    env.put(PREFIX + "payments.json", '{"failureThreshold": 5}')
    found = {}
    for name in INSTANCES:
        config = breaker.Config("checkout", PATH, fleet_path="/config/dev/fleet/", instance_id=name)
        found[name] = breaker.new(config, coord=breaker.ConsulCoord(env.addr, timeout=2))
        found[name].get_breaker("payments")
    force_state(found["web-4"].get_breaker("payments"), "open")
    yield found
    for provider in found.values():
        provider.close()


@pytest.mark.consul
def test_the_readme_fleet_and_canary_examples_run_as_shown(
    cli: Run,
    env: ConsulServer,
    monkeypatch: pytest.MonkeyPatch,
    instances: dict[str, breaker.Provider],
) -> None:
    blocks = fleet_blocks()
    assert len(blocks) == 2
    shell = FleetShell(cli, monkeypatch)
    for block in blocks:
        shell.block(block)
    assert shell.ran >= {"export", "echo", "breaker"}
    # What the README says happened, happened: the candidate is everyone's policy now.
    eventually(lambda: all(p.policy("payments").failure_threshold == 2 for p in instances.values()))
