"""The session and transaction capabilities beyond the shared contract: each coord's edges."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

import breaker
from breaker import CoordError
from breaker.coord import TxnError, TxnOp, TxnResult
from breaker.coord.consul import _sessions
from breaker.testing import ConsulServer, FakeClock

from .helpers import Impostor

# -- MemoryCoord ---------------------------------------------------------------------------


def test_memory_sessions_without_a_ttl_never_expire() -> None:
    clock = FakeClock()
    coord = breaker.MemoryCoord(clock=clock)
    forever = coord.create_session(ttl=0, behavior="delete")
    brief = coord.create_session(ttl=10)
    assert coord.acquire("k", "v", forever)

    clock.advance(10**6)

    assert coord.expire_sessions() == 1  # brief
    assert coord.renew_session(forever) is True
    assert coord.renew_session(brief) is False
    assert coord.get("k") == b"v"


def test_memory_refusals_name_the_problem() -> None:
    coord = breaker.MemoryCoord()
    mine, theirs = coord.create_session(ttl=10), coord.create_session(ttl=10)
    assert coord.acquire("k", "v", mine)

    with pytest.raises(CoordError, match="missing session"):
        coord.acquire("k", "v", "")
    with pytest.raises(CoordError, match="missing session"):
        coord.release("k", "v", "")
    assert coord.release("absent", "v", mine) is False
    checks = [
        (TxnOp.lock("k", "x", theirs), "lock is already held"),
        (TxnOp.check_index("absent", 1), "failed to check index"),
        (TxnOp.check_session("absent", None), "failed to check session"),
        (TxnOp("rename", "k"), 'unknown KV verb "rename"'),  # type: ignore[arg-type]
        (TxnOp.lock("k", "x", ""), "missing session"),
        (TxnOp.unlock("k", "x", ""), "missing session"),
        (TxnOp.cas("k", "x", 0), "index is stale"),
    ]
    for op, why in checks:
        result = coord.txn([op])
        assert result == TxnResult(False, errors=(TxnError(0, result.errors[0].what),))
        assert why in result.errors[0].what, op
    assert not TxnResult(False)


def test_memory_writes_that_change_nothing_keep_their_index() -> None:
    coord = breaker.MemoryCoord({"k": "v"})
    (first,) = coord.txn([TxnOp.get("k")]).entries

    coord.put("k", "v")
    coord.txn([TxnOp.set("k", b"v")])

    (again,) = coord.txn([TxnOp.get("k")]).entries
    assert again.modify_index == first.modify_index


# -- ConsulCoord ---------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ConsulServer]:
    with ConsulServer(jitter=False) as server:
        yield server


def test_consul_flags_index_and_the_datacenter_reach_consul(server: ConsulServer) -> None:
    coord = breaker.ConsulCoord(server.addr, datacenter="dc1")
    created = coord.txn([TxnOp.set("k", "v", flags=42)])
    index = created.entries[0].modify_index

    assert coord.txn([TxnOp.cas("k", b"w", index, flags=7)]).ok
    (entry,) = coord.txn([TxnOp.get("k")]).entries
    assert (entry.value, entry.flags) == (b"w", 7)
    assert [r.query.get("dc") for r in server.requests_log] == ["dc1"] * 3
    coord.close()

    elsewhere = breaker.ConsulCoord(server.addr, datacenter="dc2")
    with pytest.raises(CoordError, match="No path to datacenter"):
        elsewhere.create_session(ttl=10)
    elsewhere.close()


def test_consul_session_ids_are_checked(server: ConsulServer) -> None:
    coord = breaker.ConsulCoord(server.addr)
    for bad in ("", "a/b"):
        with pytest.raises(ValueError, match="not a session ID"):
            coord.renew_session(bad)
    with pytest.raises(ValueError, match="128"):
        coord.txn([TxnOp.get("k")] * 129)
    coord.close()


def test_a_closed_consul_coord_refuses_session_calls(server: ConsulServer) -> None:
    coord = breaker.ConsulCoord(server.addr)
    session = coord.create_session(ttl=10)
    coord.close()
    coord.close()

    with pytest.raises(CoordError, match="closed"):
        coord.renew_session(session)


def test_a_forked_child_gets_a_connection_of_its_own(
    server: ConsulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    coord = breaker.ConsulCoord(server.addr)
    session = coord.create_session(ttl=10)
    parent = coord._session_link
    assert parent is not None
    released: list[object] = []
    monkeypatch.setattr(parent[1], "release", lambda: released.append(parent[1]))

    pid = os.getpid()
    monkeypatch.setattr(_sessions.os, "getpid", lambda: pid + 1)  # as in a child
    assert coord.renew_session(session)
    child = coord._session_link
    assert child is not None and child[1] is not parent[1]
    assert released == [parent[1]]

    monkeypatch.setattr(child[1], "release", lambda: released.append(child[1]))
    monkeypatch.setattr(_sessions.os, "getpid", lambda: pid + 2)  # its own child
    coord.close()
    assert released == [parent[1], child[1]]  # inherited: let go of, never shut down


def test_a_refused_transaction_other_than_409_is_an_error(server: ConsulServer) -> None:
    coord = breaker.ConsulCoord(server.addr)
    server.fail_next(1)
    with pytest.raises(CoordError, match="No cluster leader"):
        coord.txn([TxnOp.set("k", "v")])
    coord.close()


@pytest.mark.parametrize(
    ("call", "status", "body", "match"),
    [
        ("create", 200, b"{}", 'expected {"ID": ...}'),
        ("create", 200, b"oops", "not JSON"),
        ("acquire", 200, b"1", "expected true or false"),
        ("txn", 200, b"[]", "expected an object with Results"),
        ("txn", 200, b'{"Results": [{"KV": {"Key": 1}}]}', "bad Results"),
        ("txn", 200, b'{"Results": [{"KV": {"Key": "k", "Value": "%%"}}]}', "bad Results"),
    ],
)
def test_malformed_answers_are_coord_errors(
    call: str, status: int, body: bytes, match: str
) -> None:
    with Impostor() as impostor:
        impostor.answer(status, body, {"Content-Type": "application/json"})
        coord = breaker.ConsulCoord(impostor.addr, timeout=2)
        calls: dict[str, Any] = {
            "create": lambda: coord.create_session(ttl=10),
            "acquire": lambda: coord.acquire("k", "v", "s"),
            "txn": lambda: coord.txn([TxnOp.get("k")]),
        }
        with pytest.raises(CoordError, match="malformed") as caught:
            calls[call]()
        assert match in str(caught.value)
        coord.close()


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            {"Errors": [{"OpIndex": 0, "What": "a"}, {"OpIndex": 2, "What": 'b "q"'}]},
            [(0, "a"), (2, 'b "q"')],
        ),
        ("nope", [(-1, "Consul refused the transaction (HTTP 409): nope")]),
        ({"Errors": None}, [(-1, 'Consul refused the transaction (HTTP 409): {"Errors":null}')]),
        ("", [(-1, "Consul refused the transaction (HTTP 409): no detail")]),
    ],
)
def test_conflicts_are_read_back(body: Any, errors: list[tuple[int, str]]) -> None:
    text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))

    found = _sessions._conflict(text)

    assert [(e.op_index, e.what) for e in found] == errors


def test_every_error_of_a_long_conflict_arrives_whole() -> None:
    # The transport cuts an error's body short for its message; a 409 from /v1/txn is read
    # whole instead: every reason, however long.
    ops = [TxnOp.check_not_exists(f"k/{'x' * 300}/{n}") for n in range(3)]
    body = {
        "Results": None,
        "Errors": [{"OpIndex": n, "What": f"key {op.key!r} exists"} for n, op in enumerate(ops)],
    }
    with Impostor() as impostor:
        impostor.answer(409, json.dumps(body).encode(), {"Content-Type": "application/json"})
        coord = breaker.ConsulCoord(impostor.addr, timeout=2)
        try:
            result = coord.txn(ops)
        finally:
            coord.close()
    assert not result
    assert [(e.op_index, e.what) for e in result.errors] == [
        (n, f"key {op.key!r} exists") for n, op in enumerate(ops)
    ]


def test_a_proxy_page_instead_of_a_conflict_is_quoted_in_bounds() -> None:
    (error,) = _sessions._conflict("<html>" + "x" * 1000)

    assert error.op_index == -1
    assert error.what.endswith(" [...]") and len(error.what) < 600
