"""Every write recorded with its history entry; history and rollback, end to end."""

from __future__ import annotations

import json
from typing import Any

import pytest

from breaker._cli import EXIT_ERROR, EXIT_INVALID, EXIT_OK, EXIT_USAGE
from breaker._cli._client import who
from breaker.testing import ACLRule, ConsulServer

from .support import (
    HISTORY,
    PATH,
    PREFIX,
    Result,
    Run,
    edit_after_read,
    stored,
    transactions,
)

pytestmark = pytest.mark.consul


@pytest.fixture(autouse=True)
def _operator(env: ConsulServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BREAKER_POLICIES_PATH", PATH)
    monkeypatch.setenv("BREAKER_BY", "alice@ops")


def put(cli: Run, document: object, *more: str) -> None:
    text = json.dumps(document)
    assert cli("put", "payments", "-", *more, stdin=text).code == EXIT_OK


def entries(server: ConsulServer, name: str = "payments") -> list[dict[str, Any]]:
    prefix = f"{HISTORY}{name}.json/"
    keys = sorted(k for k in server.keys(prefix) if "/" not in k[len(prefix) :])
    return [json.loads(server.get(k) or b"") for k in keys]


class TestRecorded:
    def test_each_write_is_one_transaction_with_its_entry(
        self, cli: Run, env: ConsulServer
    ) -> None:
        steps = [
            ("put", "payments", "-", "--create", "--reason", "INC-1"),
            ("force-open", "payments", "--for", "15m", "--by", "bob@pager"),
            ("release", "payments"),
            ("rm", "payments"),
        ]
        cli(*steps[0], stdin='{"failureThreshold": 3}')
        for step in steps[1:]:
            assert cli(*step).code == EXIT_OK, step
        txns = transactions(env)
        assert [[(op["Verb"], op["Key"]) for op in ops][:3] for ops in txns] == [
            [("cas", PREFIX + "payments.json"), ("cas", f"{HISTORY}payments.json/{n:012d}")]
            if n != 4
            else [
                ("check-index", PREFIX + "payments.json"),
                ("delete-cas", PREFIX + "payments.json"),
                ("cas", f"{HISTORY}payments.json/{n:012d}"),
            ]
            for n in (1, 2, 3, 4)
        ]
        found = entries(env)
        assert [(e["action"], e["by"], e["reason"]) for e in found] == [
            ("put", "alice@ops", "INC-1"),
            ("force-open", "bob@pager", None),
            ("release", "alice@ops", None),
            ("rm", "alice@ops", None),
        ]
        assert found[1]["before"] == '{"failureThreshold": 3}'
        assert json.loads(found[1]["after"]) == {
            "failureThreshold": 3,
            "mode": "forced-open",
            "modeUntil": "2026-11-29T14:00:00Z",
        }
        assert found[0]["index"] is None and found[0]["at"] == "2026-11-29T13:45:00Z"
        assert found[3]["after"] is None and found[3]["index"] == found[2]["index"] + 1

    def test_writing_nothing_records_nothing(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", "{}")
        assert cli("put", "payments", "-", stdin="{}").out.startswith("unchanged")
        assert cli("release", "payments").out.startswith("unchanged")
        assert transactions(env) == [] and entries(env) == []

    def test_a_failed_check_and_set_writes_no_history(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 9}')
        result = cli("put", "payments", "-", stdin='{"failureThreshold": 4}')
        assert result.code == EXIT_INVALID and "a concurrent edit" in result.err
        assert stored(env, "payments") == {"failureThreshold": 9}
        assert len(transactions(env)) == 1  # tried once, and Consul applied none of it
        assert entries(env) == []
        assert env.keys(HISTORY) == []

    def test_history_stays_bounded(self, cli: Run, env: ConsulServer) -> None:
        cli("put", "payments", "-", "--create", stdin="{}")
        for n in range(1, 6):
            doc = json.dumps({"failureThreshold": n})
            assert cli("put", "payments", "-", "--history-keep", "3", stdin=doc).code == EXIT_OK
        assert [json.loads(e["after"]) for e in entries(env)] == [
            {"failureThreshold": 3},
            {"failureThreshold": 4},
            {"failureThreshold": 5},
        ]
        last = transactions(env)[-1]
        assert [op["Verb"] for op in last] == ["cas", "cas", "delete"]  # trimmed in the same one

    def test_the_history_path_and_who(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        cli("put", "payments", "-", "--create", "--history-path", "/ops/history/", stdin="{}")
        assert env.keys("ops/history/payments.json/") == ["ops/history/payments.json/000000000001"]
        monkeypatch.setenv("BREAKER_HISTORY_PATH", "ops/other/")
        monkeypatch.delenv("BREAKER_BY")
        monkeypatch.setattr("getpass.getuser", lambda: "carol")
        monkeypatch.setattr("socket.gethostname", lambda: "laptop")
        cli("put", "payments", "-", stdin='{"failureThreshold": 2}')
        (entry,) = [json.loads(env.get(k) or b"") for k in env.keys("ops/other/")]
        assert entry["by"] == "carol@laptop"
        result = cli("put", "payments", "-", "--history-keep", "0", stdin="{}")
        assert result.code == EXIT_USAGE and "from 1 to 1000, got '0'" in result.err
        for bad, says in [
            (PATH + "history/", "at or under the watched policies prefix"),
            ("/config/dev/", "holds the policies prefix"),
            ("a//b", "is not a usable key prefix"),
            ("/", "is not a usable key prefix"),
        ]:
            result = cli("put", "payments", "-", "--history-path", bad, stdin="{}")
            assert result.code == EXIT_USAGE and says in result.err, (bad, result)

    def test_who_has_a_name_even_without_a_login(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("BREAKER_BY")

        def nobody() -> str:
            raise OSError("no login name")

        monkeypatch.setattr("getpass.getuser", nobody)
        monkeypatch.setattr("socket.gethostname", lambda: "pod-7")
        assert who(type("Args", (), {"by": None})()).endswith("@pod-7")  # type: ignore[arg-type]

    def test_a_token_that_may_not_write_the_history_writes_nothing(
        self, cli: Run, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tokens = {"policies-only": [ACLRule(PREFIX, "write")]}
        with ConsulServer(jitter=False, acl_tokens=tokens, acl_default_policy="deny") as server:
            monkeypatch.setenv("CONSUL_HTTP_ADDR", server.addr)
            monkeypatch.setenv("CONSUL_HTTP_TOKEN", "policies-only")
            server.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
            result = cli("force-open", "payments", "--for", "5m")
            assert result.code == EXIT_ERROR
            assert f"lacks permission 'key:write' on \"{HISTORY}payments.json/" in result.err
            assert stored(server, "payments") == {"failureThreshold": 3}


class TestHistory:
    def test_newest_first_and_what_changed_outside_the_cli(
        self, cli: Run, env: ConsulServer
    ) -> None:
        put(cli, {"failureThreshold": 3}, "--create")
        put(cli, {"failureThreshold": 4}, "--reason", "too eager")
        env.put(PREFIX + "payments.json", '{"failureThreshold": 9}')  # by hand, in the UI
        cli("force-open", "payments", "--for", "15m", "--by", "bob@pager")
        env.put(PREFIX + "payments.json", '{"failureThreshold": 9}')  # and again
        result = cli("history", "payments")
        assert result == Result(
            EXIT_OK,
            f"{PREFIX}payments.json: ModifyIndex 6; 3 entries under {HISTORY}payments.json/\n"
            "!   outside the CLI: ModifyIndex 5 -> 6, no history entry\n"
            '    mode: "forced-open" -> (absent)\n'
            '    modeUntil: "2026-11-29T14:00:00Z" -> (absent)\n'
            "#3  2026-11-29T13:45:00Z  force-open by bob@pager\n"
            '    mode: (absent) -> "forced-open"\n'
            '    modeUntil: (absent) -> "2026-11-29T14:00:00Z"\n'
            "!   outside the CLI: ModifyIndex 3 -> 4, no history entry\n"
            "    failureThreshold: 4 -> 9\n"
            "#2  2026-11-29T13:45:00Z  put by alice@ops: too eager\n"
            "    failureThreshold: 3 -> 4\n"
            "#1  2026-11-29T13:45:00Z  put by alice@ops\n"
            "    failureThreshold: (absent) -> 3\n",
            "",
        )

    def test_json(self, cli: Run, env: ConsulServer) -> None:
        put(cli, {"failureThreshold": 3}, "--create")
        env.put(PREFIX + "payments.json", '{"failureThreshold": 9}')
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')  # and back: the same
        found = cli("history", "payments", "--json").json()
        assert found["key"] == PREFIX + "payments.json"
        assert found["history"] == HISTORY + "payments.json/"
        assert (found["modify_index"], found["changed_outside"]) == (4, True)
        outside, first = found["events"]
        assert outside == {
            "id": None,
            "outside": True,
            "index": 2,
            "modify_index": 4,
            "before": {"failureThreshold": 3},
            "after": {"failureThreshold": 3},
            "changes": [],
        }
        assert first == {
            "id": 1,
            "outside": False,
            "action": "put",
            "at": "2026-11-29T13:45:00Z",
            "by": "alice@ops",
            "reason": None,
            "index": None,
            "modify_index": 2,
            "before": None,
            "after": {"failureThreshold": 3},
            "changes": [{"key": "failureThreshold", "new": 3}],
        }
        assert cli("history", "payments").out.splitlines()[2] == (
            "    (the same content, written anew)"
        )

    def test_a_deleted_document_and_an_unknown_name(self, cli: Run, env: ConsulServer) -> None:
        put(cli, {}, "--create")
        cli("rm", "payments")
        lines = cli("history", "payments").out.splitlines()
        assert lines[0] == f"{PREFIX}payments.json: ModifyIndex absent; 2 entries under " + (
            f"{HISTORY}payments.json/"
        )
        assert lines[1] == "#2  2026-11-29T13:45:00Z  rm by alice@ops"
        result = cli("history", "paymnets")
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: no document at {PREFIX}paymnets.json and no history under "
            f"{HISTORY}paymnets.json/\n",
        )

    def test_unreadable_entries_are_skipped_with_a_warning(
        self, cli: Run, env: ConsulServer
    ) -> None:
        put(cli, {}, "--create")
        env.put(HISTORY + "payments.json/000000000002", "{oops")
        result = cli("history", "payments")
        assert result.code == EXIT_OK and "#1 " in result.out
        assert result.err.startswith(
            f"warning: skipping {HISTORY}payments.json/000000000002: unreadable history entry ("
        )


class TestRollback:
    def test_two_puts_then_rollback_restores_the_first(self, cli: Run, env: ConsulServer) -> None:
        put(cli, {"failureThreshold": 3}, "--create")
        put(cli, {"failureThreshold": 4, "openStateTimeout": "5s"})
        result = cli("rollback", "payments", "--reason", "INC-7")
        assert result == Result(
            EXIT_OK,
            f"rolled back {PREFIX}payments.json (to before #2)\n"
            "  failureThreshold: 4 -> 3\n"
            '  openStateTimeout: "5s" -> (absent)\n',
            "",
        )
        assert stored(env, "payments") == {"failureThreshold": 3}
        assert env.get(PREFIX + "payments.json") == b'{"failureThreshold": 3}'  # byte for byte
        last = entries(env)[-1]
        assert (last["action"], last["to"], last["reason"]) == ("rollback", 2, "INC-7")
        # A rollback is a change like any other: rolling it back brings the second again.
        assert cli("rollback", "payments").code == EXIT_OK
        assert stored(env, "payments") == {"failureThreshold": 4, "openStateTimeout": "5s"}

    def test_to_an_entry_undoes_it_and_every_later_one(self, cli: Run, env: ConsulServer) -> None:
        put(cli, {"failureThreshold": 3}, "--create")
        put(cli, {"failureThreshold": 4})
        cli("force-open", "payments", "--for", "5m")
        result = cli("rollback", "payments", "--to", "#2", "--json")
        assert result.json()["to"] == 2 and result.json()["action"] == "rolled back"
        assert stored(env, "payments") == {"failureThreshold": 3}
        assert cli("rollback", "payments", "--to", "1").code == EXIT_OK  # before the create
        assert stored(env, "payments") is None
        assert entries(env)[-1]["action"] == "rollback" and entries(env)[-1]["after"] is None
        assert cli("rollback", "payments").code == EXIT_OK  # and back
        assert stored(env, "payments") == {"failureThreshold": 3}
        result = cli("rollback", "payments", "--to", "9")
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: no entry #9 in the history of {PREFIX}payments.json (it holds #1 to "
            "#6); nothing written\n",
        )
        assert cli("rollback", "payments", "--to", "x").code == EXIT_USAGE

    def test_a_change_outside_the_cli_makes_it_refuse_unless_forced(
        self, cli: Run, env: ConsulServer
    ) -> None:
        put(cli, {"failureThreshold": 3}, "--create")
        put(cli, {"failureThreshold": 4})
        env.put(PREFIX + "payments.json", '{"failureThreshold": 9}')
        history = env.keys(HISTORY)
        result = cli("rollback", "payments")
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: refused: {PREFIX}payments.json changed outside the CLI since #2 "
            "(ModifyIndex 3 -> 4), and rolling back would undo that unseen; nothing written. "
            "See `breaker history payments`, or use --force.\n",
        )
        assert env.keys(HISTORY) == history
        assert stored(env, "payments") == {"failureThreshold": 9}
        assert cli("rollback", "payments", "--force").code == EXIT_OK
        assert stored(env, "payments") == {"failureThreshold": 3}
        assert entries(env)[-1]["before"] == '{"failureThreshold": 9}'

    def test_a_concurrent_edit_makes_it_refuse(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        put(cli, {"failureThreshold": 3}, "--create")
        put(cli, {"failureThreshold": 4})
        edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 9}')
        result = cli("rollback", "payments")
        assert result.code == EXIT_INVALID
        assert "changed after it was read at ModifyIndex 3 (a concurrent edit)" in result.err
        assert stored(env, "payments") == {"failureThreshold": 9}
        assert len(entries(env)) == 2

    def test_nothing_to_roll_back(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", "{}")
        result = cli("rollback", "payments")
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: no history of {PREFIX}payments.json under {HISTORY}payments.json/; "
            "nothing to roll back\n",
        )
        put(cli, {"failureThreshold": 3})
        cli("rollback", "payments")
        result = cli("rollback", "payments", "--to", "1")
        assert result.out == f"unchanged {PREFIX}payments.json (already as before #1)\n"
        assert len(entries(env)) == 2

    def test_it_refuses_what_the_services_would_not_take(self, cli: Run, env: ConsulServer) -> None:
        put(cli, {"openStateTimeout": "1m"}, "--create")
        put(cli, {"openStateTimeout": "10s"})
        default = '{"openStateTimeout": "10s", "maxOpenStateTimeout": "30s"}'
        assert cli("put", "_default", "-", "--create", stdin=default).code == EXIT_OK
        result = cli("rollback", "payments")
        assert result.code == EXIT_INVALID
        assert result.err.startswith("breaker: refused: the document before #2 does not apply now")
        env.put(PREFIX + "payments.json", '{"failureThreshold": 1}')
        cli("put", "payments", "-", "--force", stdin='{"failureTreshold": 1}')
        cli("put", "payments", "-", "--force", stdin="{}")
        result = cli("rollback", "payments")  # unknown keys: written back, with a warning
        assert result.code == EXIT_OK
        assert "unknown key (did you mean 'failureThreshold'?)" in result.err
        # An entry written by hand (a restore from a backup, say): it deleted the document.
        env.delete(PREFIX + "payments.json")
        crafted = {"action": "rm", "index": 99, "before": '{"failureThreshold": -1}', "after": None}
        env.put(HISTORY + "payments.json/000000000009", json.dumps(crafted))
        env.put(HISTORY + "payments.json/notes", "{}")
        result = cli("rollback", "payments", "--to", "9")
        assert result.code == EXIT_INVALID
        assert result.err.endswith(
            "breaker: refused: the document before #9 is invalid (failureThreshold: expected an "
            "integer from 0 to 1000000, got -1); nothing written. Use --force to write it "
            "anyway.\n"
        )
        assert result.err.startswith(
            f"warning: skipping {HISTORY}payments.json/notes: not a history entry"
        )
        result = cli("rollback", "payments", "--force", "--to", "9")
        assert result.code == EXIT_OK
        assert stored(env, "payments") == {"failureThreshold": -1}  # forced: as it was

    def test_rolling_back_the_service_default_checks_the_others(
        self, cli: Run, env: ConsulServer
    ) -> None:
        cli("put", "_default", "-", "--create", stdin='{"failureRate": 0.5}')
        cli("put", "_default", "-", stdin='{"failureRate": 0.5, "failureThreshold": 0}')
        cli("put", "search", "-", "--create", stdin='{"successThreshold": 2}')
        cli("put", "_default", "-", stdin='{"failureThreshold": 0, "failureRate": 0.2}')
        env.put(PREFIX + "payments.json", '{"failureThreshold": 0}')  # leans on the rate
        result = cli("rollback", "_default", "--to", "1")  # back to nothing: no rate at all
        assert result.code == EXIT_INVALID
        assert "would make these documents invalid: payments (" in result.err
        assert cli("rollback", "_default", "--to", "1", "--force").code == EXIT_OK
        assert stored(env, "_default") is None
        assert cli("rollback", "_default").code == EXIT_OK  # back: it breaks nothing
        assert stored(env, "_default") == {"failureThreshold": 0, "failureRate": 0.2}
