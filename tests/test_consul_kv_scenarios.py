"""Consul's own KV scenarios (``api/kv_test.go``, ``agent/kvs_endpoint_test.go``), translated.

Each test names the Go test it translates and keeps its steps and checks; ``TestAPI_*`` go
through the HTTP calls the Go client makes, ``TestKVSEndpoint_*`` through the requests the Go
test builds. They run against the embedded stand-in, and unchanged against a real agent when
``CONSUL_HTTP_ADDR`` is set (``CONSUL_HTTP_TOKEN`` must then allow ``key:write`` and
``session:write`` under ``breaker-tests/``): every key lives under the test's own
``consul_prefix``, where the Go tests use the root.

``TestAPI_KVClientTxn`` is translated with the other transaction scenarios in
``tests/test_consul_txn_scenarios.py``. Consul 1.22's key validation is checked by
``tests/testing_server/test_kv.py``, against either server too.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from .consul_api import Agent, fresh_key, wait_until_blocked

if TYPE_CHECKING:
    # Imported for real by the root conftest's pytest_plugins; importing it here first would
    # stop pytest from rewriting its asserts.
    from breaker.testing.pytest_plugin import ConsulHandle


@pytest.fixture
def agent(consul: ConsulHandle) -> Iterator[Agent]:
    client = Agent(consul)
    yield client
    client.session.close()


@pytest.fixture
def watcher(consul: ConsulHandle) -> Iterator[Agent]:
    """Give a second client, for the blocking query a Go test runs beside its writes."""
    client = Agent(consul)
    yield client
    client.session.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield executor


# -- api/kv_test.go ----------------------------------------------------------------------


def test_api_client_put_get_delete(agent: Agent, consul_prefix: str) -> None:
    """TestAPI_ClientPutGetDelete."""
    key = consul_prefix + fresh_key()
    pair, _ = agent.get(key)
    assert pair is None

    value = b"test"
    # The Go client refuses a key that begins with '/' itself; on the wire, the agent's mux
    # redirects the doubled slash and stores nothing.
    invalid = agent.request("PUT", "/v1/kv//" + key, value)
    assert invalid.status == 301
    assert agent.get(key)[0] is None

    assert agent.put(key, value, "flags=42")

    pair, meta = agent.get(key)
    assert pair is not None
    assert pair.value == value
    assert pair.flags == 42
    assert meta.index != 0

    assert agent.delete(key)

    pair, _ = agent.get(key)
    assert pair is None


def test_api_client_list_delete_recurse(agent: Agent, consul_prefix: str) -> None:
    """TestAPI_ClientList_DeleteRecurse."""
    prefix = consul_prefix + fresh_key()
    keys = [f"{prefix}/{fresh_key()}" for _ in range(100)]
    value = b"test"
    for key in keys:
        assert agent.put(key, value)

    pairs, meta = agent.list(prefix)
    assert len(pairs) == len(keys)
    assert all(pair.value == value for pair in pairs)
    assert meta.index != 0

    assert agent.delete(prefix, "recurse")

    pairs, _ = agent.list(prefix)
    assert pairs == []


def test_api_client_delete_cas(agent: Agent, consul_prefix: str) -> None:
    """TestAPI_ClientDeleteCAS."""
    key = consul_prefix + fresh_key()
    assert agent.put(key, b"test", "cas=0")

    pair, meta = agent.get(key)
    assert pair is not None
    assert meta.index != 0

    assert not agent.delete(key, "cas=1")
    assert agent.delete(key, f"cas={meta.index}")


def test_api_client_cas(agent: Agent, consul_prefix: str) -> None:
    """TestAPI_ClientCAS."""
    key = consul_prefix + fresh_key()
    assert agent.put(key, b"test", "cas=0")

    pair, meta = agent.get(key)
    assert pair is not None
    assert meta.index != 0

    assert not agent.put(key, b"foo", "cas=1")
    assert agent.put(key, b"foo", f"cas={meta.index}")


def test_api_client_watch_get(
    agent: Agent,
    watcher: Agent,
    consul: ConsulHandle,
    consul_prefix: str,
    pool: ThreadPoolExecutor,
) -> None:
    """TestAPI_ClientWatchGet (the write need not wait 100 ms: the outcome is the same)."""
    key = consul_prefix + fresh_key()
    pair, meta = agent.get(key)
    assert pair is None
    assert meta.index != 0

    watch = pool.submit(watcher.get, key, f"index={meta.index}&wait=20s")
    wait_until_blocked(consul)
    assert agent.put(key, b"test", "flags=42")

    pair, meta2 = watch.result(timeout=30)
    assert pair is not None
    assert pair.value == b"test"
    assert pair.flags == 42
    assert meta2.index > meta.index


def test_api_client_watch_list(
    agent: Agent,
    watcher: Agent,
    consul: ConsulHandle,
    consul_prefix: str,
    pool: ThreadPoolExecutor,
) -> None:
    """TestAPI_ClientWatchList."""
    prefix = consul_prefix + fresh_key()
    key = f"{prefix}/{fresh_key()}"
    pairs, meta = agent.list(prefix)
    assert pairs == []
    assert meta.index != 0

    watch = pool.submit(watcher.list, prefix, f"index={meta.index}&wait=20s")
    wait_until_blocked(consul)
    assert agent.put(key, b"test", "flags=42")

    pairs, meta2 = watch.result(timeout=30)
    assert len(pairs) == 1
    assert pairs[0].value == b"test"
    assert pairs[0].flags == 42
    assert meta2.index > meta.index


def test_api_client_keys_delete_recurse(agent: Agent, consul_prefix: str) -> None:
    """TestAPI_ClientKeys_DeleteRecurse."""
    prefix = consul_prefix + fresh_key()
    keys = [f"{prefix}/{fresh_key()}" for _ in range(100)]
    for key in keys:
        assert agent.put(key, b"test")

    out, meta = agent.keys(prefix)
    assert len(out) == len(keys)
    assert meta.index != 0

    assert agent.delete(prefix, "recurse")

    out, _ = agent.keys(prefix)
    assert out == []


def test_api_client_acquire_release(agent: Agent, consul_prefix: str) -> None:
    """TestAPI_ClientAcquireRelease."""
    session = agent.create_session_no_checks()
    try:
        key = consul_prefix + fresh_key()
        assert agent.put(key, b"test", f"acquire={session}")

        pair, meta = agent.get(key)
        assert pair is not None
        assert (pair.lock_index, pair.session) == (1, session)
        assert meta.index != 0

        assert agent.put(key, b"test", f"release={session}")

        pair, meta = agent.get(key)
        assert pair is not None
        assert (pair.lock_index, pair.session) == (1, "")
        assert meta.index != 0
    finally:
        agent.request("PUT", f"/v1/session/destroy/{session}")


# -- agent/kvs_endpoint_test.go ----------------------------------------------------------

KEYS = ["baz", "bar", "foo/sub1", "foo/sub2", "zip"]


def test_kvs_endpoint_put_get_delete(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_PUT_GET_DELETE."""
    keys = [consul_prefix + key for key in KEYS]
    for key in keys:
        assert agent.put(key, b"test")

    for key in keys:
        answer = agent.kv("GET", key)
        assert answer.index
        entries = answer.json()
        assert len(entries) == 1
        assert entries[0]["Key"] == key

    for key in keys:
        assert agent.kv("DELETE", key).status == 200


def test_kvs_endpoint_recurse(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_Recurse."""
    keys = [consul_prefix + key for key in sorted(KEYS)]
    for key in keys:
        assert agent.put(key, b"test")

    answer = agent.kv("GET", consul_prefix, "recurse")
    assert answer.index
    assert [entry["Key"] for entry in answer.json()] == keys

    assert agent.kv("DELETE", consul_prefix, "recurse").status == 200

    gone = agent.kv("GET", consul_prefix, "recurse")
    assert (gone.status, gone.body) == (404, b"")


def test_kvs_endpoint_delete_cas(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_DELETE_CAS."""
    key = consul_prefix + "test"
    assert agent.put(key, b"test")
    entry = agent.kv("GET", key).json()[0]

    assert not agent.delete(key, f"cas={entry['ModifyIndex'] - 1}")
    assert agent.delete(key, f"cas={entry['ModifyIndex']}")

    assert agent.kv("GET", key).status == 404


def test_kvs_endpoint_cas(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_CAS."""
    key = consul_prefix + "test"
    assert agent.put(key, b"test", "flags=50")
    entry = agent.kv("GET", key).json()[0]
    assert entry["Flags"] == 50

    assert not agent.put(key, b"zip", f"flags=42&cas={entry['ModifyIndex'] - 1}")
    assert agent.put(key, b"zip", f"flags=42&cas={entry['ModifyIndex']}")

    pair, _ = agent.get(key)
    assert pair is not None
    assert (pair.flags, pair.value) == (42, b"zip")


def test_kvs_endpoint_list_keys(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_ListKeys (with the historic spelling, ``seperator``)."""
    for key in KEYS:
        assert agent.put(consul_prefix + key, b"test")

    answer = agent.kv("GET", consul_prefix, "keys&seperator=/")

    assert answer.index
    assert answer.json() == [consul_prefix + key for key in ["bar", "baz", "foo/", "zip"]]


def test_kvs_endpoint_acquire_release(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_AcquireRelease."""
    session = agent.create_session_no_checks()
    key = consul_prefix + "test"
    try:
        assert agent.put(key, b"", f"acquire={session}")
        assert agent.kv("GET", key).json()[0]["Session"] == session

        assert agent.put(key, b"", f"release={session}")
        assert not agent.kv("GET", key).json()[0].get("Session")
    finally:
        agent.request("PUT", f"/v1/session/destroy/{session}")


def test_kvs_endpoint_get_raw(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_GET_Raw."""
    key = consul_prefix + "test"
    assert agent.put(key, b"test")

    answer = agent.kv("GET", key, "raw")

    assert answer.index
    assert answer.headers["Content-Type"] == "text/plain"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Security-Policy"] == "sandbox"
    assert answer.body == b"test"


def test_kvs_endpoint_put_conflicting_flags(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_PUT_ConflictingFlags."""
    answer = agent.kv("PUT", consul_prefix + "test", "cas=0&acquire=xxx")

    assert answer.status == 400
    assert b"Conflicting" in answer.body


def test_kvs_endpoint_get(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_GET: the headers that protect raw values are for raw values only."""
    key = consul_prefix + "test"
    assert agent.put(key, b"test")

    answer = agent.kv("GET", key)

    assert answer.index
    assert answer.headers["Content-Type"] == "application/json"
    assert "X-Content-Type-Options" not in answer.headers
    assert "Content-Security-Policy" not in answer.headers


def test_kvs_endpoint_delete_conflicting_flags(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_DELETE_ConflictingFlags."""
    answer = agent.kv("DELETE", consul_prefix + "test", "recurse&cas=0")

    assert answer.status == 400
    assert b"Conflicting" in answer.body
