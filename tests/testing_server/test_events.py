"""Cluster events the server stages: rebuild, agent restart, snapshot restore."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from breaker.testing._server import ConsulServer, KVSnapshot
from tests.testing_server.helpers import fetch, index_of, send, wait_until

pytestmark = pytest.mark.fault_injection


def entries(server: ConsulServer, prefix: str) -> dict[str, tuple[int, int]]:
    """Return each key under ``prefix`` with its (CreateIndex, ModifyIndex)."""
    answer = send(server.url, "GET", f"/v1/kv/{prefix}?recurse")
    return {e["Key"]: (e["CreateIndex"], e["ModifyIndex"]) for e in json.loads(answer.body)}


@pytest.fixture
def history(consul_server: ConsulServer) -> KVSnapshot:
    """Write some keys, snapshot them, then change them: the snapshot is older than now."""
    for key in ("p/a", "p/b", "p/c"):
        consul_server.put(key, key)
    consul_server.delete("p/c")
    snapshot = consul_server.snapshot()
    consul_server.put("p/a", "changed")
    consul_server.put("p/new", "new")
    consul_server.delete("p/b")
    return snapshot


def test_a_snapshot_knows_its_index_and_keys(consul_server: ConsulServer) -> None:
    consul_server.put("k", "v")

    snapshot = consul_server.snapshot()

    assert snapshot.index == consul_server.index
    assert snapshot.keys() == ["k"]
    assert repr(snapshot) == f"<KVSnapshot index={snapshot.index} keys=1>"


def test_a_restore_brings_back_the_data_at_its_old_indexes(
    consul_server: ConsulServer, history: KVSnapshot
) -> None:
    seen = index_of(fetch(consul_server.url + "/v1/kv/p/?recurse"))
    before = consul_server.index

    consul_server.restore(history)

    after = fetch(consul_server.url + "/v1/kv/p/?recurse")
    assert entries(consul_server, "p/") == {"p/a": (2, 2), "p/b": (3, 3)}
    assert consul_server.get("p/a") == b"p/a"
    # The tombstone of p/c came back with the snapshot: the prefix reports it.
    assert index_of(after) == 5 < seen
    assert consul_server.put("p/a", "again") > before


def test_a_restore_keeps_connections_and_wakes_blocked_queries(
    consul_server: ConsulServer, history: KVSnapshot, pool: ThreadPoolExecutor
) -> None:
    url = consul_server.url + "/v1/kv/p/?recurse"
    seen = index_of(fetch(url))
    with requests.Session() as session:
        session.trust_env = False
        blocked = pool.submit(session.get, f"{url}&index={seen}&wait=30s")
        wait_until(lambda: consul_server.blocking_queries == 1)

        consul_server.restore(history)
        woken = blocked.result(timeout=5)
        after = session.get(url)  # the same connection, still open

    # As Consul's abandoned state store: the woken query answers with what it had read.
    assert index_of(woken) == seen
    assert [e["Key"] for e in woken.json()] == ["p/a", "p/new"]
    assert index_of(after) < seen
    assert [e["Key"] for e in after.json()] == ["p/a", "p/b"]


def test_after_a_restore_the_old_index_blocks_for_a_whole_wait(
    consul_server: ConsulServer, history: KVSnapshot
) -> None:
    url = consul_server.url + "/v1/kv/p/?recurse"
    seen = index_of(fetch(url))
    consul_server.restore(history)

    answer = fetch(f"{url}&index={seen}&wait=50ms")

    assert index_of(answer) < seen  # only when the wait ran out does the reset show


def test_rebuild_puts_every_key_at_index_1(consul_server: ConsulServer) -> None:
    consul_server.put("p/a", "1")
    consul_server.put("p/b", "2")

    consul_server.restart(mode="rebuild")

    assert entries(consul_server, "p/") == {"p/a": (1, 1), "p/b": (1, 1)}
    assert consul_server.put("p/c", "3") == 2


def test_an_agent_restart_keeps_indexes(consul_server: ConsulServer) -> None:
    consul_server.put("p/a", "1")
    before = entries(consul_server, "p/")

    consul_server.restart(mode="agent")

    assert entries(consul_server, "p/") == before


def test_a_cluster_restored_from_a_snapshot(
    consul_server: ConsulServer, history: KVSnapshot, pool: ThreadPoolExecutor
) -> None:
    url = consul_server.url + "/v1/kv/p/?recurse"
    seen = index_of(fetch(url))
    blocked = pool.submit(fetch, f"{url}&index={seen}&wait=30s")
    wait_until(lambda: consul_server.blocking_queries == 1)
    port = consul_server.port

    consul_server.restart(mode="restore", snapshot=history)

    with pytest.raises(requests.exceptions.ConnectionError):
        blocked.result(timeout=5)
    assert consul_server.port == port
    assert entries(consul_server, "p/") == {"p/a": (2, 2), "p/b": (3, 3)}
    assert consul_server.put("p/d", "4") == history.index + 2


def test_the_old_spelling_still_works(consul_server: ConsulServer) -> None:
    consul_server.put("p/a", "1")

    consul_server.restart(reset_index=False)
    kept = entries(consul_server, "p/")
    consul_server.restart(reset_index=True)

    assert kept == {"p/a": (2, 2)}
    assert entries(consul_server, "p/") == {"p/a": (1, 1)}
    consul_server.restart()  # the default is still a rebuild
    assert consul_server.put("p/b", "2") == 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"reset_index": True, "mode": "rebuild"},
        {"mode": "restore"},
        {"mode": "rebuild", "snapshot": "SNAPSHOT"},
        {"mode": "reboot"},
    ],
)
def test_restart_refuses_arguments_that_do_not_fit(
    consul_server: ConsulServer, kwargs: dict[str, object]
) -> None:
    if kwargs.get("snapshot") == "SNAPSHOT":
        kwargs["snapshot"] = consul_server.snapshot()

    with pytest.raises(ValueError):
        consul_server.restart(**kwargs)  # type: ignore[arg-type]

    assert consul_server.running
