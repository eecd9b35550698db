"""The pytest plugin's fixtures and helpers."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

from breaker.testing._server import ConsulServer

if TYPE_CHECKING:
    # Imported for real by the root conftest's pytest_plugins; importing it here first would
    # stop pytest from rewriting its asserts.
    from breaker.testing.pytest_plugin import ConsulHandle

pytest_plugins = ["pytester"]


def test_the_consul_handle_reads_and_writes(consul: ConsulHandle, consul_prefix: str) -> None:
    key = consul_prefix + "payments.json"

    consul.put(key, '{"failureThreshold": 3}')
    consul.put(consul_prefix + "sub/x", b"\x00")

    assert consul.get(key) == b'{"failureThreshold": 3}'
    consul.delete(key)
    assert consul.get(key) is None
    consul.delete(consul_prefix, recurse=True)
    assert consul.get(consul_prefix + "sub/x") is None


def test_the_handle_sends_the_token_in_a_header(consul_server: ConsulServer) -> None:
    from breaker.testing.pytest_plugin import ConsulHandle

    handle = ConsulHandle(consul_server.url, token="secret", server=consul_server)

    handle.put("k", "v")

    (request,) = consul_server.requests_log
    assert request.headers["x-consul-token"] == "secret"
    assert "token" not in request.query
    assert handle.addr == consul_server.addr


def test_fault_injection_tests_skip_against_a_real_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    from breaker.testing import pytest_plugin

    class Item:
        def __init__(self, marked: bool) -> None:
            self.marked = marked
            self.markers: list[Any] = []

        def get_closest_marker(self, name: str) -> object | None:
            return object() if self.marked and name == "fault_injection" else None

        def add_marker(self, marker: Any) -> None:
            self.markers.append(marker)

    items = [Item(True), Item(False)]
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:8500")

    pytest_plugin.pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]

    assert [len(item.markers) for item in items] == [1, 0]
    assert items[0].markers[0].name == "skip"
    assert pytest_plugin._agent_url("127.0.0.1:8500") == "http://127.0.0.1:8500"
    assert pytest_plugin._agent_url("https://consul:8501") == "https://consul:8501"


@pytest.mark.fault_injection
def test_the_handle_raises_when_consul_refuses(consul_server: ConsulServer) -> None:
    from breaker.testing.pytest_plugin import ConsulHandle, ConsulRequestError

    handle = ConsulHandle(consul_server.url, server=consul_server)
    handle.put("k", "v")
    calls = {
        "PUT 'k' failed: 500 b'No cluster leader'": lambda: handle.put("k", "w"),
        "DELETE 'k' failed: 500 b'No cluster leader'": lambda: handle.delete("k"),
        "GET 'k' failed: 500 b'No cluster leader'": lambda: handle.get("k"),
    }
    for message, call in calls.items():
        consul_server.fail_next()
        with pytest.raises(ConsulRequestError) as info:
            call()
        assert str(info.value) == message
    assert handle.get("k") == b"v"
    assert repr(handle) == f"ConsulHandle({consul_server.url!r}, embedded)"
    agent = ConsulHandle("https://consul:8501/")
    assert repr(agent) == "ConsulHandle('https://consul:8501', agent)"


def test_the_old_address_helper_rejects_what_the_coord_rejects() -> None:
    from breaker.testing import pytest_plugin

    with pytest.raises(pytest.UsageError, match="CONSUL_HTTP_ADDR='ftp://consul:1'"):
        pytest_plugin._agent_url("ftp://consul:1")


AGAINST_AN_AGENT = """
import pytest


def test_reads_and_writes(consul, consul_prefix):
    assert consul.server is None
    consul.put(consul_prefix + "a/b", "v")
    assert consul.get(consul_prefix + "a/b") == b"v"


def test_needs_the_hooks(consul_server):
    raise AssertionError("must be skipped")


@pytest.mark.fault_injection
def test_marked():
    raise AssertionError("must be skipped")
"""


def test_against_a_real_agent_the_suite_runs_unchanged_and_cleans_up(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project's own suite with CONSUL_HTTP_ADDR set: the embedded server plays the agent."""
    pytester.makepyfile(AGAINST_AN_AGENT)
    with ConsulServer(jitter=False) as agent:
        for name in [n for n in os.environ if n.startswith("CONSUL_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("CONSUL_HTTP_ADDR", agent.addr)
        monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # only the plugin under test

        result = pytester.runpytest_inprocess("-p", "breaker.testing.pytest_plugin", "-rs")

        result.assert_outcomes(passed=1, skipped=2)
        result.stdout.fnmatch_lines(["*CONSUL_HTTP_ADDR points at a real agent*"] * 2)
        writes = [r for r in agent.requests_log if r.method == "PUT"]
        assert len(writes) == 1 and writes[0].path.startswith("/v1/kv/breaker-tests/")
        assert agent.keys() == []  # the test's prefix was deleted afterwards
