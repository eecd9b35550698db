"""One rule for breaker names, refused with the rule wherever a name first appears."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import pytest

import breaker
from breaker import MemoryCoord
from breaker._names import RULE, check_name, key_of, name_of, policy_name, problem

from .helpers import PREFIX

BAD = {
    "": "it is empty",
    "/": "it is empty",
    "a//b": "it has an empty part",
    "//a": "it has an empty part",
    "a/": "it has an empty part",
    "../x": "it has a '.' or '..' part",
    "a/./b": "it has a '.' or '..' part",
    "a/%2e%2e/b": "it has a '.' or '..' part",
    " pad": "it has a leading or trailing space",
    "pad ": "it has a leading or trailing space",
    "a\nb": "it has a control character",
    "a\x7fb": "it has a control character",
    "_default": "it starts with '_'",
    "/_private": "it starts with '_'",
}
GOOD = [
    "payments",
    "grpc:user-service",
    "inventory.example.com:443",
    "/pkg.Service/Method",
    "svc/search",
    "a..b",
    "x_",
    "[::1]:8080",
    "with space inside",
    "caf\u00e9",
]


@pytest.mark.parametrize(("name", "why"), BAD.items(), ids=repr)
def test_a_bad_name_is_refused_with_the_reason_and_the_rule(name: str, why: str) -> None:
    found = problem(name)
    assert found is not None and found.startswith(why)
    with pytest.raises(ValueError) as info:
        check_name(name, "get_breaker")
    assert str(info.value) == f"get_breaker: {name!r} cannot name a breaker ({found}): {RULE}"


@pytest.mark.parametrize("name", GOOD)
def test_every_good_name_has_a_document_that_names_it_back(name: str) -> None:
    assert check_name(name, "x") == name
    key = key_of(PREFIX, name)
    assert key == PREFIX + policy_name(name) + ".json"
    assert name_of(PREFIX, key) == policy_name(name)


def test_what_is_not_a_string_is_refused() -> None:
    with pytest.raises(ValueError, match="it is int, not a string"):
        check_name(3, "circuit")


def test_keys_that_name_no_breaker_are_no_documents() -> None:
    assert name_of(PREFIX, PREFIX + "_default.json") == "_default"
    for key in ("README", ".json", "_fleet.json", "a//b.json", "a/../b.json", "x.yaml", "/a.json"):
        assert name_of(PREFIX, PREFIX + key) is None, key
    assert name_of(PREFIX, "config/other/a.json") is None


BAD_NAMES = ["a//b", "../x", " pad", "_default"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_every_way_in_refuses_a_bad_name_at_once(name: str, provider: breaker.Provider) -> None:
    from breaker.integrations.httpx import BreakerTransport
    from breaker.integrations.requests import BreakerAdapter

    ways: list[Any] = [
        lambda: provider.get_breaker(name),
        lambda: provider.guard(name),
        lambda: provider.circuit(name),
        lambda: breaker.circuit(name),
        lambda: breaker.patch("json:dumps", name),
        lambda: BreakerAdapter(name=name),
        lambda: BreakerTransport(name=name),
        lambda: provider.explain(name),
    ]
    for way in ways:
        with pytest.raises(ValueError, match="cannot name a breaker") as info:
            way()
        assert RULE in str(info.value)
    assert provider.breakers() == {}


def test_a_known_name_is_found_without_checking_it_again(
    provider: breaker.Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    brk = provider.get_breaker("payments")
    checked: list[object] = []
    monkeypatch.setattr("breaker._provider.check_name", lambda n, w: checked.append(n))
    assert provider.get_breaker("payments") is brk
    assert checked == []


def test_keys_against_the_rule_are_ignored_by_the_provider() -> None:
    coord = MemoryCoord(
        {
            PREFIX + "_fleet.json": '{"failureThreshold": 1}',
            PREFIX + " pad.json": '{"failureThreshold": 1}',
            PREFIX + "ok.json": '{"failureThreshold": 2}',
        }
    )
    with breaker.new(breaker.Config("s", PREFIX), coord=coord) as provider:
        assert dict(provider.policies) == {"ok": breaker.Policy(failure_threshold=2)}


def test_the_readme_states_the_rule() -> None:
    text = (pathlib.Path(__file__).parent.parent / "README.rst").read_text()
    prose = " ".join(re.sub(r"``([^`]+)``", r"'\1'", text).split())
    assert RULE in prose
