"""ConsulServer itself: arguments, addresses, the operator helpers' own checks."""

from __future__ import annotations

import pytest

from breaker.testing._server import ConsulServer


def test_start_index_starts_at_1_at_least() -> None:
    with pytest.raises(ValueError, match="start_index must be >= 1"):
        ConsulServer(start_index=0)


def test_an_address_exists_once_started_and_start_is_idempotent() -> None:
    server = ConsulServer()
    assert server.port == 0
    with pytest.raises(RuntimeError, match="has not been started yet"):
        server.addr  # noqa: B018
    with server:
        addr = server.addr
        assert server.start() is server
        assert server.addr == addr
        assert server.url == f"http://{addr}"
    assert server.addr == addr  # the port is kept for a restart


def test_the_operator_helpers_refuse_what_consul_cannot_store(
    consul_server: ConsulServer,
) -> None:
    with pytest.raises(ValueError, match="key must not be empty"):
        consul_server.put("", "v")
    with pytest.raises(ValueError, match="flags must fit in a uint64"):
        consul_server.put("k", "v", flags=2**64)
    with pytest.raises(ValueError, match="flags must fit in a uint64"):
        consul_server.put("k", "v", flags=-1)
    assert consul_server.keys() == []
