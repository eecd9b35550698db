"""Transactions on the stand-in: every KV verb, all-or-nothing, limits, ACLs, reads."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from breaker.testing import ACLRule, ConsulServer, FakeClock
from tests.testing_server.helpers import in_background, index_of, send


def op(verb: str, key: str, value: bytes | None = None, **fields: Any) -> dict[str, Any]:
    kv: dict[str, Any] = {"Verb": verb, "Key": key, **fields}
    if value is not None:
        kv["Value"] = base64.b64encode(value).decode()
    return {"KV": kv}


def txn(http: requests.Session, server: ConsulServer, *ops: Any, **kw: Any) -> requests.Response:
    return http.put(server.url + "/v1/txn", data=json.dumps(list(ops)), **kw)


def errors(response: requests.Response) -> list[tuple[int, str]]:
    assert response.status_code == 409, response.text
    assert response.json()["Results"] is None
    return [(e["OpIndex"], e["What"]) for e in response.json()["Errors"]]


def results(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.json()["Errors"] is None
    return [r["KV"] for r in response.json()["Results"]]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> Iterator[ConsulServer]:
    with ConsulServer(jitter=False, clock=clock) as server:
        yield server


# -- writes ----------------------------------------------------------------------------------


def test_writes_share_one_index_and_answer_without_values(
    http: requests.Session, server: ConsulServer
) -> None:
    server.put("gone", "x")
    server.put("tree/a", "x")
    before = server.index

    answer = txn(
        http,
        server,
        op("set", "a", b"1", Flags=3),
        op("cas", "b", b"2", Index=0),
        op("delete", "gone"),
        op("delete-tree", "tree/"),
        op("get", "a"),
    )

    assert server.index == before + 1
    a, b, got = results(answer)
    assert a == {
        "LockIndex": 0,
        "Key": "a",
        "Flags": 3,
        "Value": None,
        "CreateIndex": before + 1,
        "ModifyIndex": before + 1,
    }
    assert (b["Key"], b["Value"], b["ModifyIndex"]) == ("b", None, before + 1)
    assert base64.b64decode(got["Value"]) == b"1"
    assert server.keys() == ["a", "b"]


def test_any_failure_applies_nothing_and_reports_every_error(
    http: requests.Session, server: ConsulServer
) -> None:
    index = server.put("doc", "v1")
    before = server.index

    answer = txn(
        http,
        server,
        op("set", "history/1", b"entry"),
        op("cas", "doc", b"v2", Index=index + 100),
        op("check-index", "doc", Index=index + 100),
        op("check-not-exists", "doc"),
    )

    assert errors(answer) == [
        (1, 'failed to set key "doc", index is stale'),
        (2, f'failed index check for key "doc", current modify index {index} != {index + 100}'),
        (3, 'key "doc" exists'),
    ]
    assert server.index == before + 1  # the raft entry was written, then rolled back
    assert server.keys() == ["doc"]
    assert server.get("doc") == b"v1"


@pytest.mark.parametrize(
    ("ops", "what"),
    [
        ([op("get", "missing")], 'key "missing" doesn\'t exist'),
        ([op("check-index", "missing", Index=1)], 'failed to check index, key "missing"'),
        ([op("check-session", "missing")], 'failed to check session, key "missing"'),
        ([op("check-session", "doc", Session="s")], 'failed session check for key "doc"'),
        ([op("set", "x"), op("delete-cas", "doc", Index=1)], 'failed to delete key "doc"'),
        ([op("unlock", "doc", Session="s")], 'failed to unlock key "doc", lock isn\'t held'),
        ([op("unlock", "doc")], "missing session"),
        ([op("lock", "doc", Session="nope")], 'invalid session "nope"'),
        ([op("rename", "doc")], 'unknown KV verb "rename"'),
    ],
)
def test_operation_errors(
    http: requests.Session, server: ConsulServer, ops: list[Any], what: str
) -> None:
    server.put("doc", "v1")

    (found,) = [text for _, text in errors(txn(http, server, *ops))]

    assert found.startswith(what)


def test_checks_and_gets_that_pass(http: requests.Session, server: ConsulServer) -> None:
    index = server.put("doc", "v1", flags=9)
    sub = server.put("doc/sub", "v2")

    answer = txn(
        http,
        server,
        op("check-index", "doc", Index=index),
        op("check-session", "doc", Session=""),
        op("check-not-exists", "nope"),
        op("delete-cas", "nope", Index=5),  # nothing to delete: it succeeds
        op("get-or-empty", "nope", Flags=4, Index=6),
        op("get-or-empty", "doc"),
        op("get-tree", "doc"),
        op("delete-cas", "doc/sub", Index=sub),
    )

    checked, session, empty, doc, *tree = results(answer)
    assert base64.b64decode(doc["Value"]) == b"v1"
    assert (checked["Key"], checked["Flags"], checked["Value"]) == ("doc", 9, None)
    assert session["Key"] == "doc"
    assert empty == {
        "LockIndex": 0,
        "Key": "nope",
        "Flags": 4,
        "Value": None,
        "CreateIndex": 0,
        "ModifyIndex": 6,
    }
    assert [(e["Key"], base64.b64decode(e["Value"])) for e in tree] == [
        ("doc", b"v1"),
        ("doc/sub", b"v2"),
    ]
    assert server.keys() == ["doc"]


def test_locks_in_a_transaction(
    http: requests.Session, server: ConsulServer, clock: FakeClock
) -> None:
    mine = http.put(server.url + "/v1/session/create", json={"LockDelay": "5s"}).json()["ID"]
    theirs = http.put(server.url + "/v1/session/create").json()["ID"]

    locked = results(txn(http, server, op("lock", "lock", b"v", Session=mine)))
    held = errors(txn(http, server, op("lock", "lock", b"v", Session=theirs)))
    checked = results(txn(http, server, op("check-session", "lock", Session=mine)))
    http.put(f"{server.url}/v1/session/destroy/{mine}")
    before = server.index
    delayed = errors(txn(http, server, op("lock", "lock", b"v", Session=theirs)))

    assert (locked[0]["Session"], locked[0]["LockIndex"]) == (mine, 1)
    assert held == [(0, 'failed to lock key "lock", lock is already held')]
    assert checked[0]["Session"] == mine
    assert delayed == [(0, 'failed to lock key "lock" due to lock delay')]
    assert server.index == before  # refused before raft
    clock.advance(5)
    assert results(txn(http, server, op("lock", "lock", b"v", Session=theirs)))[0]["LockIndex"] == 2
    released = results(txn(http, server, op("unlock", "lock", b"w", Session=theirs)))
    assert "Session" not in released[0]


def test_an_empty_value_differs_from_none(http: requests.Session, server: ConsulServer) -> None:
    results(txn(http, server, op("set", "empty", b""), op("set", "nil")))

    listing = http.get(server.url + "/v1/kv/", params={"recurse": ""}).json()

    assert [(e["Key"], e["Value"]) for e in listing] == [("empty", ""), ("nil", None)]


def test_a_write_wakes_blocked_readers(
    http: requests.Session, server: ConsulServer, pool: ThreadPoolExecutor
) -> None:
    index = index_of(http.get(server.url + "/v1/kv/app/", params={"recurse": ""}))
    in_background(pool, lambda: txn(requests.Session(), server, op("set", "app/x", b"1")), 0.05)

    response = http.get(
        server.url + "/v1/kv/app/", params={"recurse": "", "index": index, "wait": "5s"}
    )

    assert [e["Key"] for e in response.json()] == ["app/x"]


# -- checks before anything runs -------------------------------------------------------------


def test_a_missing_key_is_refused_before_raft(http: requests.Session, server: ConsulServer) -> None:
    before = server.index

    found = errors(txn(http, server, op("set", ""), op("delete-tree", ""), op("get", "")))

    assert found == [(0, "Must provide key"), (2, "Must provide key")]
    assert server.index == before


@pytest.mark.parametrize(
    ("body", "status", "text"),
    [
        (b"{", 400, "Failed to parse body: "),
        (b'{"KV": {}}', 400, "Failed to parse body: json: cannot unmarshal object"),
        (b"[1]", 400, "Failed to parse body: json: cannot unmarshal number"),
        (b'[{"KV": 1}]', 400, "Failed to parse body: json: cannot unmarshal number"),
        (b'[{"KV": {"Verb": 1}}]', 400, "Failed to parse body: json: cannot unmarshal number"),
        (b'[{"KV": {"Flags": -1}}]', 400, "KVTxnOp.KV.Flags of type uint64"),
        (b'[{"KV": {"Value": 1}}]', 400, "KVTxnOp.KV.Value of type []uint8"),
        (b'[{"KV": {"Value": "%%%"}}]', 400, "Failed to parse body: illegal base64 data"),
        (b'[{"Node": {"Verb": "get"}}]', 400, "Failed to parse body: this Consul stand-in"),
        (
            json.dumps([op("get", "k")] * 129).encode(),
            413,
            "Transaction contains too many operations (129 > 128)",
        ),
    ],
)
def test_bodies_refused_before_anything_runs(
    server: ConsulServer, body: bytes, status: int, text: str
) -> None:
    answer = send(server.url, "PUT", "/v1/txn", body=body)

    assert answer.status == status
    assert text in answer.body.decode()


def test_limits_name_their_sizes() -> None:
    with ConsulServer(jitter=False, max_value_size=10, txn_max_req_len=100) as server:
        too_big = send(
            server.url, "PUT", "/v1/txn", body=json.dumps([op("set", "k", b"x" * 11)]).encode()
        )
        too_long = send(server.url, "PUT", "/v1/txn", body=b" " * 101)

    assert too_big.status == 413
    assert too_big.body == b'Value for key "k" is too large (11 > 10 bytes)'
    assert too_long.status == 413
    assert too_long.body.startswith(b"Request body(101 bytes) too large, max size: 100 bytes.")


def test_ops_of_no_known_kind_are_dropped_and_empty_is_fine(
    http: requests.Session, server: ConsulServer
) -> None:
    assert results(txn(http, server, {}, None)) == []
    empty = http.put(server.url + "/v1/txn", data=b"")
    assert results(empty) == []


def test_methods(server: ConsulServer) -> None:
    get = send(server.url, "GET", "/v1/txn")
    options = send(server.url, "OPTIONS", "/v1/txn")

    assert (get.status, get.headers["Allow"]) == (405, "OPTIONS,PUT")
    assert (options.status, options.headers["Allow"]) == (200, "OPTIONS,PUT")


# -- reads -----------------------------------------------------------------------------------


def test_a_read_only_transaction_uses_no_index(
    http: requests.Session, server: ConsulServer
) -> None:
    server.put("doc", "v1")
    before = server.index

    answer = txn(http, server, op("get", "doc"))

    assert server.index == before
    assert answer.headers["X-Consul-KnownLeader"] == "true"
    assert "X-Consul-Index" not in answer.headers
    assert [e["Key"] for e in results(answer)] == ["doc"]


def test_a_stale_read_is_served_during_an_election(
    http: requests.Session, server: ConsulServer
) -> None:
    server.put("doc", "v1")
    server.begin_election(rpc_hold_timeout=0.05)

    stale = txn(http, server, op("get", "doc"), params={"stale": ""})
    write = txn(http, server, op("set", "doc", b"v2"))

    assert stale.headers["X-Consul-KnownLeader"] == "false"
    assert results(stale)[0]["Key"] == "doc"
    assert (write.status_code, write.text) == (500, "No cluster leader")


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("stale&consistent", "Cannot specify ?stale with ?consistent"),
        ("index=x", "Invalid index"),
        ("dc=dc2", "No path to datacenter"),
    ],
)
def test_read_options(server: ConsulServer, query: str, text: str) -> None:
    answer = send(server.url, "PUT", f"/v1/txn?{query}", body=json.dumps([op("get", "k")]).encode())

    assert answer.body.decode().startswith(text)


# -- ACLs ------------------------------------------------------------------------------------

TOKENS = {
    "writer": [ACLRule("app/", "write"), ACLRule("app/secret/", "read")],
    "reader": [ACLRule("app/", "read"), ACLRule("app/secret/", "deny")],
}


@pytest.fixture
def acl_server() -> Iterator[ConsulServer]:
    with ConsulServer(jitter=False, acl_tokens=TOKENS, acl_default_policy="deny") as server:
        for key in ("app/a", "app/secret/s"):
            server.put(key, "v")
        yield server


def as_(token: str) -> dict[str, dict[str, str]]:
    return {"headers": {"X-Consul-Token": token}}


def test_each_operation_is_vetted_and_nothing_applies(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    writer = acl_server.accessor_id("writer")

    found = errors(
        txn(
            http,
            acl_server,
            op("set", "app/b", b"1"),
            op("set", "other", b"1"),
            op("delete-tree", "app/"),
            op("check-not-exists", "app/secret/t"),
            **as_("writer"),
        )
    )

    who = f"token with AccessorID '{writer}'"
    assert found == [
        (1, f"Permission denied: {who} lacks permission 'key:write' on \"other\""),
        (2, f"Permission denied: {who} lacks permission 'key:write' on \"app/\""),
        (3, f"Permission denied: {who} lacks permission 'key:write' on \"app/secret/t\""),
    ]
    assert acl_server.keys() == ["app/a", "app/secret/s"]


def test_checks_need_read_and_results_hide_what_cannot_be_read(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    denied = errors(txn(http, acl_server, op("check-index", "app/secret/s"), **as_("reader")))
    tree = results(txn(http, acl_server, op("get-tree", "app/"), **as_("reader")))

    assert "lacks permission 'key:read' on \"app/secret/s\"" in denied[0][1]
    assert [e["Key"] for e in tree] == ["app/a"]
