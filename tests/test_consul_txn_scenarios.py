"""Consul's own KV transaction scenarios (``api/txn_test.go``, ``agent/txn_endpoint_test.go``).

Each test names the Go test it translates and keeps its steps and checks. They run against
the embedded stand-in, and unchanged against a real agent when ``CONSUL_HTTP_ADDR`` is set;
the subtests that configure the agent's limits (``txn_max_req_len``, ``kv_max_value_size``)
run on stand-ins configured the same way. Not translated: the Node, Service and Check
operations of ``TestAPI_ClientTxn`` and ``TestTxnEndpoint_UpdateCheck`` (the stand-in serves
KV operations only, and the breaker uses nothing else).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from breaker.testing import ConsulServer

from .consul_api import Agent, fresh_key, kv_op

if TYPE_CHECKING:
    from breaker.testing.pytest_plugin import ConsulHandle

SUGGESTED_MAX_DATA_SIZE = 512 * 1024
"""raft.SuggestedMaxDataSize, which the Go tests size their values by."""
MAX_TXN_OPS = 128


@pytest.fixture
def agent(consul: ConsulHandle) -> Iterator[Agent]:
    client = Agent(consul)
    yield client
    client.session.close()


@contextlib.contextmanager
def stand_in(**settings: Any) -> Iterator[Agent]:
    """Give a client of a stand-in configured with ``settings`` (the Go tests' HCL)."""
    from breaker.testing.pytest_plugin import ConsulHandle

    with ConsulServer(jitter=False, **settings) as server:
        client = Agent(ConsulHandle(server.url, server=server))
        yield client
        client.session.close()


def kv_of(result: dict[str, Any]) -> dict[str, Any]:
    return dict(result["KV"])


# -- api/txn_test.go ---------------------------------------------------------------------


def test_api_client_txn(agent: Agent, consul_prefix: str) -> None:
    """TestAPI_ClientTxn, KV operations."""
    session_id = agent.create_session_no_checks()
    try:
        key = consul_prefix + fresh_key()
        ops = [kv_op("lock", key, b"test"), kv_op("get", key)]

        ok, ret, _ = agent.txn(ops)  # no valid session

        assert not ok
        assert ret["Results"] is None
        assert len(ret["Errors"]) == 2
        assert ret["Errors"][0]["OpIndex"] == 0
        assert "missing session" in ret["Errors"][0]["What"]
        assert "doesn't exist" in ret["Errors"][1]["What"]

        ops[0]["KV"]["Session"] = session_id  # now a real session

        ok, ret, _ = agent.txn(ops)

        assert ok
        assert ret["Errors"] is None
        assert len(ret["Results"]) == 2
        locked, got = kv_of(ret["Results"][0]), kv_of(ret["Results"][1])
        assert (locked["Key"], locked["Session"], locked["LockIndex"]) == (key, session_id, 1)
        assert locked["Value"] is None
        assert (got["Key"], got["Session"], got["LockIndex"]) == (key, session_id, 1)
        assert base64.b64decode(got["Value"]) == b"test"

        ok, ret, _ = agent.txn([kv_op("get", key)])  # a read-only transaction

        assert ok
        read = kv_of(ret["Results"][0])
        assert (read["Session"], read["LockIndex"]) == (session_id, 1)
        assert base64.b64decode(read["Value"]) == b"test"

        pair, meta = agent.get(key)  # sanity check through the KV API
        assert pair is not None
        assert (pair.lock_index, pair.session) == (1, session_id)
        assert meta.index != 0
    finally:
        agent.destroy(session_id)


# -- agent/txn_endpoint_test.go ----------------------------------------------------------


def test_txn_endpoint_bad_json(agent: Agent) -> None:
    """TestTxnEndpoint_Bad_JSON."""
    answer = agent.request("PUT", "/v1/txn", b"{")

    assert answer.status == 400
    assert b"Failed to parse" in answer.body


def big_sets(keys: list[str]) -> bytes:
    value = base64.b64encode(b"X" * (3 * SUGGESTED_MAX_DATA_SIZE)).decode()
    return json.dumps([{"KV": {"Verb": "set", "Key": k, "Value": value}} for k in keys]).encode()


@pytest.mark.parametrize(
    ("settings", "passes"),
    [
        pytest.param({}, False, id="exceeds default limits"),
        pytest.param({"txn_max_req_len": 700000}, False, id="exceeds configured max txn len"),
        pytest.param({"txn_max_req_len": 123456789}, False, id="exceeds default max kv value size"),
        pytest.param(
            {"txn_max_req_len": 123456789, "max_value_size": 123456789}, True, id="allowed"
        ),
    ],
)
def test_txn_endpoint_bad_size_item(settings: dict[str, Any], passes: bool) -> None:
    """TestTxnEndpoint_Bad_Size_Item."""
    with stand_in(**settings) as agent:
        answer = agent.request("PUT", "/v1/txn", big_sets(["key"]))

        assert answer.status == (200 if passes else 413)


@pytest.mark.parametrize(
    ("settings", "passes"),
    [
        pytest.param({}, False, id="exceeds default limits"),
        pytest.param({"txn_max_req_len": 700000}, False, id="exceeds configured max txn len"),
        pytest.param({"txn_max_req_len": 123456789}, False, id="exceeds default max kv value size"),
        pytest.param(
            {"txn_max_req_len": 123456789, "max_value_size": 123456789}, True, id="allowed"
        ),
        pytest.param({"max_value_size": 123456789}, True, id="allowed kv max backward compatible"),
    ],
)
def test_txn_endpoint_bad_size_net(settings: dict[str, Any], passes: bool) -> None:
    """TestTxnEndpoint_Bad_Size_Net."""
    with stand_in(**settings) as agent:
        answer = agent.request("PUT", "/v1/txn", big_sets(["key1", "key1", "key1"]))

        assert answer.status == (200 if passes else 413)


def test_txn_endpoint_bad_size_ops(agent: Agent, consul_prefix: str) -> None:
    """TestTxnEndpoint_Bad_Size_Ops."""
    key = consul_prefix + "key"
    ops = [kv_op("get", key)] * (2 * MAX_TXN_OPS) + [kv_op("set", key, b"")]

    answer = agent.request("PUT", "/v1/txn", json.dumps(ops).encode())

    assert answer.status == 413


def test_txn_endpoint_kv_actions(agent: Agent, consul_prefix: str) -> None:
    """TestTxnEndpoint_KV_Actions, first subtest: every field reaches the RPC format."""
    session_id = agent.create_session_no_checks()
    key = consul_prefix + "key"
    try:
        ok, ret, answer = agent.txn(
            [
                kv_op("lock", key, b"hello world", Flags=23, Session=session_id),
                kv_op("get", key),
            ]
        )
        assert (ok, answer.status) == (True, 200)
        assert len(ret["Results"]) == 2
        index = kv_of(ret["Results"][0])["ModifyIndex"]
        expected = {
            "LockIndex": 1,
            "Key": key,
            "Flags": 23,
            "Session": session_id,
            "CreateIndex": index,
            "ModifyIndex": index,
        }
        assert kv_of(ret["Results"][0]) == {**expected, "Value": None}
        hello = base64.b64encode(b"hello world").decode()
        assert kv_of(ret["Results"][1]) == {**expected, "Value": hello}

        # A read-only transaction, routed to the fast path.
        ok, ret, answer = agent.txn([kv_op("get", key), kv_op("get-tree", key)])
        assert (ok, answer.status) == (True, 200)
        assert answer.headers["X-Consul-KnownLeader"] == "true"
        assert answer.headers["X-Consul-LastContact"] == "0"
        assert [kv_of(r) for r in ret["Results"]] == [{**expected, "Value": hello}] * 2

        # A CAS with that index: the Index field reaches the RPC format too.
        ok, ret, answer = agent.txn(
            [kv_op("cas", key, b"goodbye world", Index=index), kv_op("get", key)]
        )
        assert (ok, answer.status) == (True, 200)
        assert len(ret["Results"]) == 2
        mod_index = kv_of(ret["Results"][0])["ModifyIndex"]
        after = {
            "LockIndex": 0,
            "Key": key,
            "Flags": 0,
            "Session": session_id,
            "CreateIndex": index,
            "ModifyIndex": mod_index,
        }
        assert kv_of(ret["Results"][0]) == {**after, "Value": None}
        goodbye = base64.b64encode(b"goodbye world").decode()
        assert kv_of(ret["Results"][1]) == {**after, "Value": goodbye}
    finally:
        agent.destroy(session_id)


def test_txn_endpoint_kv_actions_error(agent: Agent, consul_prefix: str) -> None:
    """TestTxnEndpoint_KV_Actions, second subtest: an error inside a transaction."""
    key = consul_prefix + "key"
    ok, _, answer = agent.txn(
        [kv_op("lock", key, b"hello world", Session="nope"), kv_op("get", key)]
    )

    assert (ok, answer.status) == (False, 409)
    assert b"invalid session" in answer.body
