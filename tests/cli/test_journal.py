"""The write history under the CLI, on MemoryCoord and on ConsulCoord against the stand-in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

import breaker
from breaker import CoordError
from breaker._cli._journal import (
    DEFAULT_KEEP,
    Journal,
    Lost,
    derived_history_prefix,
    history_problem,
)
from breaker.coord import TxnError, TxnOp, TxnResult
from breaker.testing import ConsulServer

from .support import HISTORY, PREFIX

KEY = PREFIX + "payments.json"
RECORD = {"action": "put", "at": "2026-11-29T13:45:00Z", "by": "alice@ops", "reason": None}


@pytest.fixture(params=["memory", "consul"])
def coord(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield breaker.MemoryCoord()
        return
    with ConsulServer(jitter=False) as server:
        coord = breaker.ConsulCoord(server.addr, timeout=2)
        yield coord
        coord.close()


def change(journal: Journal, after: bytes | None, *, cas: bool = True, **record: Any) -> int:
    before = journal.current(KEY)
    return journal.change(
        "payments", KEY, after, before=before, cas=cas, record={**RECORD, **record}
    )


def test_the_history_sits_beside_the_policies() -> None:
    assert derived_history_prefix(PREFIX) == HISTORY
    assert history_problem(HISTORY, PREFIX) is None
    assert history_problem("config/dev/", PREFIX) is not None  # above: a name could reach in
    assert history_problem(PREFIX + "history/", PREFIX) is not None  # under: watched


def test_a_change_and_its_entry_are_one_transaction(coord: Any) -> None:
    journal = Journal(coord, HISTORY)
    index = change(journal, b'{"failureThreshold": 3}', reason="ticket 1")
    assert journal.current(KEY) == (b'{"failureThreshold": 3}', index)
    (entry,), problems = journal.entries("payments")
    assert problems == []
    # One raft index for both writes: the entry's ModifyIndex is the document's.
    assert (entry.id, entry.modify_index, entry.after_index) == (1, index, index)
    assert entry.key == HISTORY + "payments.json/000000000001"
    assert (entry.action, entry.by, entry.reason, entry.index) == (
        "put",
        "alice@ops",
        "ticket 1",
        None,
    )
    assert (entry.before, entry.after) == (None, b'{"failureThreshold": 3}')
    stored = json.loads(coord.load(HISTORY)[entry.key])
    assert stored == {
        "version": 1,
        "name": "payments",
        "key": KEY,
        "action": "put",
        "at": "2026-11-29T13:45:00Z",
        "by": "alice@ops",
        "reason": "ticket 1",
        "index": None,
        "before": None,
        "after": '{"failureThreshold": 3}',
    }
    second = change(journal, None, action="rm")
    assert journal.current(KEY) is None
    entries, _ = journal.entries("payments")
    assert [(e.id, e.index, e.after_index, e.modify_index) for e in entries] == [
        (1, None, index, index),
        (2, index, None, second),
    ]


def test_a_lost_check_and_set_writes_nothing_history_included(coord: Any) -> None:
    journal = Journal(coord, HISTORY)
    change(journal, b"{}")
    before = journal.current(KEY)
    assert before is not None
    coord.txn([TxnOp.set(KEY, b'{"failureThreshold": 9}')])  # someone else, meanwhile
    history = coord.load(HISTORY)
    for after in (b'{"failureThreshold": 4}', None):
        with pytest.raises(Lost):
            journal.change("payments", KEY, after, before=before, cas=True, record=RECORD)
    coord.txn([TxnOp.set(PREFIX + "search.json", b"{}")])
    with pytest.raises(Lost):  # created meanwhile
        journal.change(
            "search", PREFIX + "search.json", b"{}", before=None, cas=True, record=RECORD
        )
    coord.txn([TxnOp.delete(KEY)])
    with pytest.raises(Lost):  # deleted meanwhile: a delete-cas alone would let it through
        journal.change("payments", KEY, None, before=before, cas=True, record=RECORD)
    assert coord.load(HISTORY) == history


def test_without_check_and_set_a_change_is_recorded_anyway(coord: Any) -> None:
    journal = Journal(coord, HISTORY)
    change(journal, b"{}")
    stale = journal.current(KEY)
    coord.txn([TxnOp.set(KEY, b'{"failureThreshold": 9}')])
    journal.change("payments", KEY, b'{"x": 1}', before=stale, cas=False, record=RECORD)
    journal.change("payments", KEY, None, before=stale, cas=False, record=RECORD)
    assert journal.current(KEY) is None
    assert [e.id for e in journal.entries("payments")[0]] == [1, 2, 3]


@pytest.mark.parametrize("keep", [3, DEFAULT_KEEP])
def test_the_history_is_bounded_in_the_same_transaction(coord: Any, keep: int) -> None:
    journal = Journal(coord, HISTORY, keep=keep)
    for n in range(keep + 3):
        change(journal, f'{{"failureThreshold": {n + 1}}}'.encode())
    entries, _ = journal.entries("payments")
    assert [e.id for e in entries] == list(range(4, keep + 4))
    assert entries[-1].after == f'{{"failureThreshold": {keep + 3}}}'.encode()
    assert len(coord.load(HISTORY)) == keep


def test_a_lower_bound_trims_as_much_as_one_transaction_holds(coord: Any) -> None:
    journal = Journal(coord, HISTORY, keep=200)
    for n in range(130):
        change(journal, f'{{"failureThreshold": {n + 1}}}'.encode())
    small = Journal(coord, HISTORY, keep=2)
    change(small, b"{}")  # 131 entries, 129 to go: one transaction holds 126 deletes
    assert len(small.entries("payments")[0]) == 5
    change(small, b'{"x": 1}')
    assert [e.id for e in small.entries("payments")[0]] == [131, 132]


def test_two_writers_never_share_an_entry(coord: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(coord, HISTORY)
    change(journal, b"{}")
    real = Journal.entries
    calls: list[int] = []

    def stale_once(self: Journal, name: str) -> Any:
        found = real(self, name)
        if not calls:  # another writer adds entry 2 right after this read
            calls.append(1)
            Journal(coord, HISTORY).change(
                "payments", KEY, b'{"y": 1}', before=None, cas=False, record=RECORD
            )
        return found

    monkeypatch.setattr(Journal, "entries", stale_once)
    journal.change("payments", KEY, b'{"z": 1}', before=None, cas=False, record=RECORD)
    monkeypatch.undo()
    entries, _ = journal.entries("payments")
    assert [(e.id, e.after) for e in entries] == [(1, b"{}"), (2, b'{"y": 1}'), (3, b'{"z": 1}')]


def test_unreadable_entries_are_skipped_and_named(coord: Any) -> None:
    journal = Journal(coord, HISTORY)
    change(journal, b"\xff\xfe not utf-8")
    base = HISTORY + "payments.json/"
    coord.txn(
        [
            TxnOp.set(base + "000000000007", b"not json"),
            TxnOp.set(base + "notes", b"{}"),
            TxnOp.set(base + "000000000008", b'{"action": "put", "index": "x"}'),
            TxnOp.set(base + "000000000009", b'{"action": "put", "after": {"base64": "%%"}}'),
            TxnOp.set(base + "000000000010", b"[]"),
            TxnOp.set(base + "sub/000000000001", b"{}"),  # the entries of "payments.json/sub"
        ]
    )
    entries, problems = journal.entries("payments")
    assert [e.id for e in entries] == [1]
    assert entries[0].after == b"\xff\xfe not utf-8"  # kept as base64, restored byte for byte
    assert [p.split(":")[0] for p in problems] == [
        base + "000000000007",
        base + "000000000008",
        base + "000000000009",
        base + "000000000010",
        base + "notes",
    ]


def test_a_refusal_for_another_reason_is_an_error_naming_it() -> None:
    tokens = {"ops": [breaker.testing.ACLRule(PREFIX, "write")]}
    with ConsulServer(jitter=False, acl_tokens=tokens, acl_default_policy="deny") as server:
        coord = breaker.ConsulCoord(server.addr, token="ops", timeout=2)
        journal = Journal(coord, HISTORY)
        assert journal.entries("payments") == ([], [])  # reads are filtered, as Consul does
        with pytest.raises(CoordError) as caught:
            journal.change("payments", KEY, b"{}", before=None, cas=True, record=RECORD)
        assert "Permission denied" in str(caught.value)
        assert f"the history prefix {HISTORY}" in str(caught.value)
        assert server.get(KEY) is None  # the document neither
        coord.close()


def test_a_read_the_store_refuses_is_an_error() -> None:
    class Refusing:
        def txn(self, ops: Any) -> TxnResult:
            return TxnResult(False, errors=(TxnError(0, "Must provide key"),))

    with pytest.raises(
        CoordError, match=re.escape("Consul refused to read config/x/a.json: Must provide key")
    ):
        Journal(Refusing(), "config/x/").current("config/x/a.json")


class _Scripted:
    """A coord whose write transactions fail as told; reads answer from a MemoryCoord."""

    def __init__(self, what: str, at: int) -> None:
        self.store = breaker.MemoryCoord()
        self.what, self.at = what, at
        self.writes = 0

    def txn(self, ops: Any) -> TxnResult:
        if len(ops) == 1 and ops[0].verb == "get-tree":
            return self.store.txn(ops)
        self.writes += 1
        return TxnResult(False, errors=(TxnError(self.at, self.what),))


def test_an_entry_id_always_taken_gives_up_after_a_few_tries() -> None:
    coord = _Scripted('failed to set key "x", index is stale', 1)
    with pytest.raises(CoordError, match="other writers took 5 entry ids in a row"):
        Journal(coord, HISTORY).change("payments", KEY, b"{}", before=None, cas=True, record=RECORD)
    assert coord.writes == 5


def test_another_refusal_is_named_whole() -> None:
    coord = _Scripted("Value for key is too large", 1)
    with pytest.raises(CoordError) as caught:
        Journal(coord, HISTORY).change("payments", KEY, b"{}", before=None, cas=True, record=RECORD)
    assert str(caught.value) == (
        f"Consul refused to change {KEY} (nothing written): Value for key is too large"
    )


def test_the_document_read_is_that_key_alone(coord: Any) -> None:
    coord.txn([TxnOp.set(KEY + ".bak", b"{}"), TxnOp.set(KEY + "/x", b"{}")])
    assert Journal(coord, HISTORY).current(KEY) is None


def test_an_entry_whose_documents_are_not_documents_is_unreadable(coord: Any) -> None:
    coord.txn(
        [TxnOp.set(HISTORY + "payments.json/000000000001", b'{"action": "put", "before": 5}')]
    )
    entries, problems = Journal(coord, HISTORY).entries("payments")
    assert entries == [] and problems[0].endswith('("before" is not a document)')
