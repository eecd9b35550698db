"""The pytest plugin's fixtures and helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from breaker.testing._server import ConsulServer

if TYPE_CHECKING:
    # Imported for real by the root conftest's pytest_plugins; importing it here first would
    # stop pytest from rewriting its asserts.
    from breaker.testing.pytest_plugin import ConsulHandle


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
