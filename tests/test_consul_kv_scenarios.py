"""Consul's own KV scenarios (``api/kv_test.go``, ``agent/kvs_endpoint_test.go``), translated.

Each test names the Go test it translates and keeps its steps and checks; ``TestAPI_*`` go
through the HTTP calls the Go client makes, ``TestKVSEndpoint_*`` through the requests the Go
test builds. They run against the embedded stand-in, and unchanged against a real agent when
``CONSUL_HTTP_ADDR`` is set (``CONSUL_HTTP_TOKEN`` must then allow ``key:write`` and
``session:write`` under ``breaker-tests/``): every key lives under the test's own
``consul_prefix``, where the Go tests use the root.

Not translated: ``TestAPI_KVClientTxn`` (``/v1/txn``, which the stand-in does not serve and
the breaker does not use). The lock scenarios need sessions, which the stand-in does not
have either: they run against a real agent only. Consul 1.22's key validation is checked by
``tests/testing_server/test_kv.py``, against either server too.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest
import requests

if TYPE_CHECKING:
    # Imported for real by the root conftest's pytest_plugins; importing it here first would
    # stop pytest from rewriting its asserts.
    from breaker.testing.pytest_plugin import ConsulHandle

needs_sessions = pytest.mark.skipif(
    not os.environ.get("CONSUL_HTTP_ADDR"),
    reason="needs sessions, which the embedded stand-in does not have",
)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: requests.structures.CaseInsensitiveDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def index(self) -> int:
        """Return X-Consul-Index, checked as Go's ``assertIndex`` does (present, not 0)."""
        value = self.headers.get("X-Consul-Index")
        assert value, "Missing index"
        assert int(value) != 0, "Bad index"
        return int(value)


@dataclass(frozen=True)
class Pair:
    key: str
    value: bytes
    flags: int
    lock_index: int
    session: str
    modify_index: int

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Pair:
        return cls(
            key=entry["Key"],
            value=base64.b64decode(entry["Value"] or ""),
            flags=entry["Flags"],
            lock_index=entry["LockIndex"],
            session=entry.get("Session") or "",
            modify_index=entry["ModifyIndex"],
        )


class Agent:
    """The HTTP requests Consul's Go API client (``api/kv.go``) makes, and raw ones."""

    def __init__(self, handle: ConsulHandle) -> None:
        self.handle = handle
        self.session = requests.Session()
        self.session.trust_env = False
        if handle.token:
            self.session.headers["X-Consul-Token"] = handle.token

    def request(self, method: str, target: str, body: bytes | None = None) -> Answer:
        response = self.session.request(
            method, self.handle.url + target, data=body, timeout=30, allow_redirects=False
        )
        return Answer(response.status_code, response.headers, response.content)

    def kv(self, method: str, key: str, query: str = "", body: bytes | None = None) -> Answer:
        target = "/v1/kv/" + quote(key, safe="/") + (f"?{query}" if query else "")
        return self.request(method, target, body)

    def get(self, key: str, query: str = "") -> tuple[Pair | None, Answer]:
        answer = self.kv("GET", key, query)
        assert answer.status in (200, 404), answer
        return (Pair.of(answer.json()[0]) if answer.status == 200 else None), answer

    def list(self, prefix: str, query: str = "") -> tuple[list[Pair], Answer]:
        answer = self.kv("GET", prefix, "recurse" + (f"&{query}" if query else ""))
        assert answer.status in (200, 404), answer
        return ([Pair.of(e) for e in answer.json()] if answer.status == 200 else []), answer

    def keys(self, prefix: str, separator: str = "") -> tuple[list[str], Answer]:
        answer = self.kv("GET", prefix, "keys" + (f"&separator={separator}" if separator else ""))
        assert answer.status in (200, 404), answer
        return (answer.json() if answer.status == 200 else []), answer

    def put(self, key: str, value: bytes, query: str = "") -> bool:
        answer = self.kv("PUT", key, query, value)
        assert answer.status == 200, answer
        return bool(answer.json())

    def delete(self, key: str, query: str = "") -> bool:
        answer = self.kv("DELETE", key, query)
        assert answer.status == 200, answer
        return bool(answer.json())


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


def wait_until_blocked(consul: ConsulHandle) -> None:
    """On the stand-in, wait until the query is parked; a real agent cannot tell."""
    server = consul.server
    deadline = time.monotonic() + 10
    while server is not None and server.blocking_queries == 0:
        assert time.monotonic() < deadline, "the blocking query never blocked"
        time.sleep(0.001)


def fresh_key() -> str:
    """Return a new key name, as Go's ``testKey()``."""
    return uuid.uuid4().hex


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


@needs_sessions
def test_api_client_acquire_release(agent: Agent, consul_prefix: str) -> None:
    """TestAPI_ClientAcquireRelease."""
    session = create_session(agent)
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


def create_session(agent: Agent) -> str:
    """Create a session with no health checks, as the Go client's ``CreateNoChecks``."""
    answer = agent.request("PUT", "/v1/session/create", b'{"NodeChecks": []}')
    assert answer.status == 200, answer
    return str(answer.json()["ID"])


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


@needs_sessions
def test_kvs_endpoint_acquire_release(agent: Agent, consul_prefix: str) -> None:
    """TestKVSEndpoint_AcquireRelease."""
    session = create_session(agent)
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
