"""Cluster events the server stages: rebuild, agent restart, snapshot restore, elections."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from breaker.testing._server import ConsulServer, KVSnapshot
from tests.helpers import eventually
from tests.testing_server.helpers import fetch, index_of, send

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
        eventually(lambda: consul_server.blocking_queries == 1)

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
    eventually(lambda: consul_server.blocking_queries == 1)
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


# -- leader elections --------------------------------------------------------------------


def test_an_rpc_waits_out_a_short_election_and_answers(consul_server: ConsulServer) -> None:
    consul_server.put("k", "v")
    began = time.monotonic()
    consul_server.begin_election(0.2)

    answer = fetch(consul_server.url + "/v1/kv/k?raw")

    assert time.monotonic() - began >= 0.2  # not before a leader was elected
    assert (answer.status_code, answer.content) == (200, b"v")
    assert answer.headers["X-Consul-KnownLeader"] == "true"


def test_an_rpc_held_past_rpc_hold_timeout_fails_with_no_leader(
    consul_server: ConsulServer,
) -> None:
    consul_server.begin_election(rpc_hold_timeout=0.1)
    started = time.monotonic()

    answer = send(consul_server.url, "GET", "/v1/kv/k")

    assert time.monotonic() - started >= 0.1
    assert (answer.status, answer.body) == (500, b"No cluster leader")
    assert answer.headers["X-Consul-Index"] is None
    assert answer.headers["X-Consul-KnownLeader"] is None


def test_end_election_releases_held_rpcs(
    consul_server: ConsulServer, pool: ThreadPoolExecutor
) -> None:
    consul_server.put("k", "v")
    consul_server.begin_election()  # the default hold, 7 s, is longer than the wait below
    held = pool.submit(fetch, consul_server.url + "/v1/kv/k?raw")
    eventually(lambda: len(consul_server.requests_log) == 1)

    consul_server.end_election()

    assert held.result(timeout=5).content == b"v"


@pytest.mark.parametrize(
    ("method", "target"),
    [("PUT", "/v1/kv/k"), ("DELETE", "/v1/kv/k"), ("GET", "/v1/status/leader")],
)
def test_writes_and_status_need_the_leader_too(
    consul_server: ConsulServer, method: str, target: str
) -> None:
    consul_server.put("k", "v")
    consul_server.begin_election(rpc_hold_timeout=0)

    answer = send(consul_server.url, method, target, body=b"new")

    assert (answer.status, answer.body) == (500, b"No cluster leader")
    assert consul_server.get("k") == b"v"


def test_a_stale_read_is_served_without_a_leader(consul_server: ConsulServer) -> None:
    consul_server.put("k", "v")
    consul_server.begin_election(rpc_hold_timeout=0)

    stale = fetch(consul_server.url + "/v1/kv/k?stale&raw")
    consul_server.end_election()
    after = fetch(consul_server.url + "/v1/kv/k?stale&raw")

    assert (stale.status_code, stale.content) == (200, b"v")
    assert stale.headers["X-Consul-KnownLeader"] == "false"
    assert int(stale.headers["X-Consul-LastContact"]) >= 0
    assert after.headers["X-Consul-KnownLeader"] == "true"
    assert after.headers["X-Consul-LastContact"] == "0"


def test_only_reads_can_be_stale(consul_server: ConsulServer) -> None:
    consul_server.begin_election(rpc_hold_timeout=0)

    answer = send(consul_server.url, "PUT", "/v1/kv/k?stale", body=b"v")

    assert (answer.status, answer.body) == (500, b"No cluster leader")
    assert consul_server.get("k") is None


def test_a_queued_failure_strikes_before_the_hold(consul_server: ConsulServer) -> None:
    consul_server.begin_election()
    consul_server.fail_next(status=429)

    assert send(consul_server.url, "GET", "/v1/kv/k").status == 429


def test_stop_drops_rpcs_held_for_a_leader(
    consul_server: ConsulServer, pool: ThreadPoolExecutor
) -> None:
    consul_server.begin_election()
    held = pool.submit(fetch, consul_server.url + "/v1/kv/k")
    eventually(lambda: len(consul_server.requests_log) == 1)

    consul_server.stop()

    with pytest.raises(requests.exceptions.ConnectionError):
        held.result(timeout=5)


@pytest.mark.parametrize("kwargs", [{"duration": -1.0}, {"rpc_hold_timeout": -1.0}])
def test_an_election_needs_durations_that_are_not_negative(
    consul_server: ConsulServer, kwargs: dict[str, float]
) -> None:
    with pytest.raises(ValueError):
        consul_server.begin_election(**kwargs)
