"""validate, schema, ls, get, put and rm, end to end against the embedded Consul server."""

from __future__ import annotations

import json

import pytest

import breaker
from breaker._cli import EXIT_INVALID, EXIT_OK
from breaker.testing import ConsulServer

from .support import (
    PATH,
    PREFIX,
    ROOT,
    Result,
    Run,
    document_ops,
    edit_after_read,
    stored,
    transactions,
    write,
)

# -- validate and schema: no Consul needed ---------------------------------------------------


class TestValidate:
    def test_valid_files_are_listed_as_ok(self, cli: Run) -> None:
        write("a.json", '{"failureThreshold": 3, "openStateTimeout": "30s"}')
        write("b.json", "{}")
        result = cli("validate", "a.json", "b.json")
        assert result == Result(EXIT_OK, "a.json: OK\nb.json: OK\n", "")

    def test_each_invalid_file_is_named_with_its_field_and_reason(self, cli: Run) -> None:
        write("ok.json", '{"failureThreshold": 3}')
        write("bad.json", '{"openStateTimeout": "30x"}')
        write("worse.json", '{"failureThreshold": 3,')
        result = cli("validate", "ok.json", "bad.json", "worse.json", "missing.json")
        assert result.code == EXIT_INVALID
        lines = result.out.splitlines()
        assert lines[:2] == [
            "ok.json: OK",
            "bad.json: INVALID: openStateTimeout: unknown unit 'x' in duration '30x'",
        ]
        assert lines[2].startswith("worse.json: INVALID: malformed JSON: ")  # Python's words
        assert (
            lines[3] == "missing.json: UNREADABLE: cannot read the file: No such file or directory"
        )
        assert len(lines) == 4

    def test_unknown_keys_fail_unless_allowed(self, cli: Run) -> None:
        write("typo.json", '{"failureTreshold": 3}')
        result = cli("validate", "typo.json")
        assert result == Result(
            EXIT_INVALID,
            "typo.json: INVALID: failureTreshold: unknown key (did you mean 'failureThreshold'?)\n",
            "",
        )
        result = cli("validate", "--allow-unknown", "typo.json")
        assert result == Result(
            EXIT_OK,
            "typo.json: OK\n",
            "warning: typo.json: failureTreshold: unknown key (did you mean 'failureThreshold'?)\n",
        )

    def test_every_error_is_listed_with_its_key(self, cli: Run) -> None:
        write(
            "bad.json",
            '{"failureThreshold": -1, "openStateTimeout": "1m", "maxOpenStateTimeout": "30s", '
            '"mode": "off", "modeUntil": "soon", "openStateTimout": "1m"}',
        )
        result = cli("validate", "bad.json")
        assert result.code == EXIT_INVALID
        assert result.out.splitlines() == [
            "bad.json: INVALID: failureThreshold: expected an integer from 0 to 1000000, got -1",
            "bad.json: INVALID: mode: expected one of 'auto', 'forced-open', 'disabled', "
            "'shadow', got the string 'off'",
            "bad.json: INVALID: modeUntil: expected an RFC 3339 timestamp "
            "(\"2026-11-29T14:00:00Z\"), got the string 'soon'",
            "bad.json: INVALID: maxOpenStateTimeout: 30s is shorter than the open state timeout "
            "(1m0s)",
            "bad.json: INVALID: openStateTimout: unknown key (did you mean 'openStateTimeout'?)",
        ]
        errors = cli("validate", "--json", "bad.json").json()[0]["errors"]
        assert [e["key"] for e in errors] == [
            "failureThreshold",
            "mode",
            "modeUntil",
            "maxOpenStateTimeout",
            "openStateTimout",
        ]

    def test_dash_reads_stdin(self, cli: Run) -> None:
        assert cli("validate", "-", stdin='{"mode": "shadow"}').out == "<stdin>: OK\n"
        result = cli("validate", "-", stdin=b"\xef\xbb\xbf{}")
        assert result.code == EXIT_INVALID
        assert "byte-order mark" in result.out

    def test_json_output_is_a_list_of_file_valid_errors(self, cli: Run) -> None:
        write("ok.json", '{"x": 1}')
        write("bad.json", '{"failureRate": 2}')
        result = cli("validate", "--json", "--allow-unknown", "ok.json", "bad.json")
        assert result.code == EXIT_INVALID
        assert result.json() == [
            {"file": "ok.json", "valid": True, "errors": [], "warnings": ["x: unknown key"]},
            {
                "file": "bad.json",
                "valid": False,
                "errors": [
                    {
                        "key": "failureRate",
                        "message": "failureRate: expected a number in (0, 1], got 2",
                    }
                ],
                "warnings": [],
            },
        ]
        assert result.err == ""

    def test_a_document_is_judged_on_its_own(self, cli: Run) -> None:
        # Without a failure rate, 0 would leave nothing to trip on.
        result = cli("validate", "-", stdin='{"failureThreshold": 0}')
        assert result.code == EXIT_INVALID
        assert "failure rate" in result.out


def test_schema_prints_the_packaged_schema(cli: Run) -> None:
    result = cli("schema")
    assert result.code == EXIT_OK
    shipped = (ROOT / "breaker" / "policy.schema.json").read_text()
    assert result.out == shipped
    assert json.loads(result.out)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_the_cli_and_the_provider_agree_on_what_is_a_policy_document() -> None:
    from breaker._cli._client import documents as _policy_documents

    coord = breaker.MemoryCoord()
    keys = ["a.json", "svc/b.json", "_default.json", ".json", "README", "c.yaml", "d/", "e.json/"]
    for key in keys:
        coord.put(PREFIX + key, "{}")
    coord.put("config/dev/other/f.json", "{}")
    with breaker.new(breaker.Config("checkout", PATH), coord=coord) as provider:
        names = set(_policy_documents(coord.load(PREFIX), PREFIX))
        assert names == set(provider.policies) | {"_default"}
        assert names == {"a", "svc/b", "_default"}


# -- reading -----------------------------------------------------------------------------------


@pytest.mark.consul
class TestLs:
    def test_lists_breakers_the_service_default_and_invalid_documents(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "_default.json", '{"successThreshold": 2}')
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        env.put(PREFIX + "svc/search.json", '{"failureThreshold": "five"}')
        env.put(PREFIX + "README", "not a policy")
        env.put(PREFIX + "old/x.yaml", "a: 1")
        env.put(PREFIX + "folder/", "")
        env.put("config/dev/other/breakers/payments.json", "{}")
        result = cli("ls", "--path", PATH)
        assert result.code == EXIT_INVALID  # one of them is invalid
        assert result.out.splitlines() == [
            "NAME                        MODE     DOCUMENT",
            '_default (service default)  auto     {"successThreshold": 2}',
            'payments                    auto     {"failureThreshold": 3}',
            "svc/search                  INVALID  failureThreshold: expected an integer from 0 "
            "to 1000000, got the string 'five' (services keep their last good version of it)",
        ]
        assert result.err == ""

    def test_the_path_takes_the_form_of_policies_path(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", "{}")
        outputs = {cli("ls", "--path", path).out for path in (PATH, PREFIX, PREFIX.rstrip("/"))}
        assert len(outputs) == 1
        assert "payments" in outputs.pop()

    def test_modes_are_shown_as_they_are_now(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "a.json", '{"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00Z"}')
        env.put(PREFIX + "b.json", '{"mode": "forced-open", "modeUntil": "2026-11-29T13:00:00Z"}')
        env.put(PREFIX + "c.json", '{"mode": "shadow"}')
        env.put(PREFIX + "_default.json", '{"mode": "disabled"}')
        env.put(PREFIX + "d.json", "{}")
        rows = {line.split()[0]: line for line in cli("ls", "--path", PATH).out.splitlines()}
        assert "forced-open until 2026-11-29T14:00:00Z" in rows["a"]
        assert "auto (forced-open ended 2026-11-29T13:00:00Z)" in rows["b"]
        assert " shadow " in rows["c"]
        assert " disabled " in rows["d"]  # from the service default

    def test_a_document_invalid_on_top_of_the_service_default_is_flagged(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "_default.json", '{"openStateTimeout": "5m"}')
        env.put(PREFIX + "payments.json", '{"maxOpenStateTimeout": "2m"}')
        result = cli("ls", "--path", PATH, "--json")
        assert result.code == EXIT_INVALID
        entry = result.json()[1]
        assert entry["name"] == "payments" and entry["valid"] is False
        assert entry["problems"] == [
            {
                "key": "maxOpenStateTimeout",
                "message": "on top of _default.json: maxOpenStateTimeout: 2m0s is shorter than "
                "the open state timeout (5m0s)",
            }
        ]
        assert entry["policy"] is None
        row = cli("ls", "--path", PATH).out.splitlines()[2]
        assert row.endswith("(services keep their last version of it that fits, if any)")
        env.put(PREFIX + "payments.json", '{"maxOpenStateTimeout": "2m", "mode": "shadow"}')
        row = cli("ls", "--path", PATH).out.splitlines()[2]
        assert row.endswith(
            "(services keep their last version of it that fits, if any; its mode applies)"
        )

    def test_a_document_the_services_take_only_with_the_service_default(
        self, cli: Run, env: ConsulServer
    ) -> None:
        # The services read it on top of _default.json, so it is valid there; written anew
        # it is refused, since it would break if the service default lost its failure rate.
        env.put(PREFIX + "_default.json", '{"failureRate": 0.5}')
        env.put(PREFIX + "payments.json", '{"failureThreshold": 0}')
        assert cli("ls", "--path", PATH).code == EXIT_OK
        assert cli("get", "--path", PATH, "payments").code == EXIT_OK
        result = cli("put", "--path", PATH, "search", "-", stdin='{"failureThreshold": 0}')
        assert result.code == EXIT_INVALID
        assert "INVALID: failureThreshold: 0 turns the consecutive-failure rule off" in result.err
        assert stored(env, "search") is None

    def test_an_invalid_service_default_is_flagged_and_not_used(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "_default.json", '{"successThreshold": 0}')
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3, "owner": "sre"}')
        result = cli("ls", "--path", PATH)
        assert result.code == EXIT_INVALID
        assert result.out.splitlines()[1].startswith(
            "_default (service default)  INVALID  successThreshold: expected an integer"
        )
        note = (
            "warning: _default.json is invalid (successThreshold: expected an integer from 1 "
            "to 1000000, got 0); documents are checked against the built-in defaults, the "
            "services against their last good service default\n"
        )
        assert result.err == note
        result = cli("get", "--path", PATH, "payments")
        assert result.code == EXIT_OK
        assert result.err == "warning: ignoring unknown policy keys: 'owner'\n" + note
        assert '"successThreshold": 1' in result.out  # the code's default
        result = cli("force-open", "--path", PATH, "payments", "--for", "1m")
        assert (result.code, result.err) == (EXIT_OK, "")

    def test_json_output(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "_default.json", '{"successThreshold": 2, "owner": "sre"}')
        env.put(PREFIX + "payments.json", '{"mode": "forced-open"}')
        env.put(PREFIX + "broken.json", "{")
        result = cli("ls", "--path", PATH, "--json")
        assert result.code == EXIT_INVALID
        default, broken, payments = result.json()
        assert default == {
            "name": "_default",
            "key": PREFIX + "_default.json",
            "service_default": True,
            "valid": True,
            "problems": [],
            "unknown_keys": ["owner"],
            "document": {"successThreshold": 2, "owner": "sre"},
            "policy": {"failureThreshold": 5, "successThreshold": 2, "openStateTimeout": "1m0s"},
            "mode": "auto",
        }
        assert broken["valid"] is False and broken["document"] == "{" and broken["policy"] is None
        assert broken["problems"][0]["key"] is None
        assert broken["problems"][0]["message"].startswith("malformed JSON")
        assert payments["mode"] == "forced-open"
        assert payments["policy"]["successThreshold"] == 2

    def test_an_empty_prefix(self, cli: Run, env: ConsulServer) -> None:
        assert cli("ls", "--path", PATH) == Result(
            EXIT_OK, f"no policy documents under {PREFIX}\n", ""
        )
        assert cli("ls", "--path", PATH, "--json").json() == []


@pytest.mark.consul
class TestGet:
    def test_shows_the_document_its_index_and_the_policy_it_resolves_to(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "_default.json", '{"successThreshold": 2, "slowCallDuration": "2s"}')
        index = env.put(
            PREFIX + "payments.json", '{"failureThreshold": 3, "slowCallDuration": null}'
        )
        result = cli("get", "--path", PATH, "payments", "--json")
        assert result.code == EXIT_OK
        assert result.json() == {
            "name": "payments",
            "key": PREFIX + "payments.json",
            "service_default": False,
            "valid": True,
            "problems": [],
            "unknown_keys": [],
            "document": {"failureThreshold": 3, "slowCallDuration": None},
            "policy": {"failureThreshold": 3, "successThreshold": 2, "openStateTimeout": "1m0s"},
            "mode": "auto",
            "modify_index": index,
        }
        human = cli("get", "--path", PATH, "payments").out
        assert f"modify index: {index}\n" in human
        assert '"successThreshold": 2' in human.split("policy (with _default.json")[1]

    def test_the_service_default_resolves_on_the_code_defaults(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "_default.json", '{"failureThreshold": 9}')
        result = cli("get", "--path", PATH, "_default")
        assert "policy (with the code's defaults):" in result.out
        assert '"failureThreshold": 9' in result.out

    def test_a_missing_document(self, cli: Run, env: ConsulServer) -> None:
        result = cli("get", "--path", PATH, "payments")
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: no document at {PREFIX}payments.json; a breaker called 'payments' uses "
            "the service default\n",
        )

    def test_an_invalid_document_is_shown_and_flagged(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", '{"mode": "off"}')
        result = cli("get", "--path", PATH, "payments")
        assert result.code == EXIT_INVALID
        assert result.out.endswith(
            'document:\n{\n  "mode": "off"\n}\nINVALID: mode: expected one of \'auto\', '
            "'forced-open', 'disabled', 'shadow', got the string 'off' (services keep their "
            "last good version of it)\n"
        )

    def test_a_missing_service_default(self, cli: Run, env: ConsulServer) -> None:
        result = cli("get", "--path", PATH, "_default")
        assert result.code == EXIT_INVALID
        assert result.err == (
            f"breaker: no document at {PREFIX}_default.json; breakers without a document use "
            "the code's default policy\n"
        )

    def test_a_grpc_method_name_reads_the_key_without_its_slash(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "pkg.Users/Get.json", '{"failureThreshold": 2}')
        result = cli("get", "--path", PATH, "/pkg.Users/Get", "--json")
        assert result.json()["key"] == PREFIX + "pkg.Users/Get.json"


# -- writing -----------------------------------------------------------------------------------


@pytest.mark.consul
class TestPut:
    def test_creates_only_if_absent_and_prints_old_to_new(
        self, cli: Run, env: ConsulServer
    ) -> None:
        write("p.json", '{"failureThreshold": 3, "openStateTimeout": "30s"}')
        result = cli("put", "--path", PATH, "payments", "p.json", "--create")
        assert result == Result(
            EXIT_OK,
            f"created {PREFIX}payments.json\n"
            "  failureThreshold: (absent) -> 3\n"
            '  openStateTimeout: (absent) -> "30s"\n',
            "",
        )
        assert (
            env.get(PREFIX + "payments.json")
            == b'{"failureThreshold": 3, "openStateTimeout": "30s"}'
        )
        assert document_ops(env, "payments") == [[("cas", 0)]]  # must not exist yet

    def test_a_name_with_no_document_is_refused_unless_created(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", "{}")
        result = cli("put", "--path", PATH, "paymnets", "-", stdin='{"failureThreshold": 3}')
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: no document at {PREFIX}paymnets.json; nothing written. Did you mean "
            "'payments'? To create it, add --create.\n",
        )
        assert stored(env, "paymnets") is None
        result = cli("put", "--path", PATH, "search", "-", "--index", "0", stdin="{}")
        assert result.code == EXIT_OK  # --index 0: only if it does not exist, so created

    def test_unknown_keys_are_refused_unless_forced(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", "{}")
        args = ("put", "--path", PATH, "payments", "-")
        result = cli(*args, stdin='{"openStateTimout": "30s"}')
        assert result == Result(
            EXIT_INVALID,
            "",
            "breaker: <stdin>: openStateTimout: unknown key (did you mean 'openStateTimeout'?); "
            "nothing written (services would ignore it). Correct it, or use --force to write "
            "it anyway.\n",
        )
        assert env.requests_log == []
        result = cli(*args, "--force", stdin='{"openStateTimout": "30s"}')
        assert result.code == EXIT_OK
        assert result.err == (
            "warning: <stdin>: openStateTimout: unknown key (did you mean 'openStateTimeout'?)\n"
        )
        assert stored(env, "payments") == {"openStateTimout": "30s"}

    def test_updates_with_the_index_it_read(self, cli: Run, env: ConsulServer) -> None:
        index = env.put(PREFIX + "payments.json", '{"failureThreshold": 3, "mode": "shadow"}')
        result = cli(
            "put",
            "--path",
            PATH,
            "payments",
            "-",
            stdin='{"failureThreshold": 4}',
        )
        assert result.out == (
            f"updated {PREFIX}payments.json\n"
            "  failureThreshold: 3 -> 4\n"
            '  mode: "shadow" -> (absent)\n'
        )
        assert document_ops(env, "payments") == [[("cas", index)]]

    def test_the_same_content_writes_nothing(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", "{}")
        result = cli("put", "--path", PATH, "payments", "-", stdin="{}")
        assert result.out == f"unchanged {PREFIX}payments.json (same content)\n"
        assert transactions(env) == []

    @pytest.mark.parametrize(
        ("document", "reason"),
        [
            ("{", "malformed JSON"),
            ("[]", "a policy must be a JSON object, got an array"),
            ('{"failureThreshold": 5.0}', "failureThreshold: expected an integer"),
            ('{"maxOpenStateTimeout": "30s"}', "maxOpenStateTimeout: 30s is shorter than"),
        ],
    )
    def test_an_invalid_document_writes_nothing_and_asks_consul_nothing(
        self, cli: Run, env: ConsulServer, document: str, reason: str
    ) -> None:
        result = cli("put", "--path", PATH, "payments", "-", stdin=document)
        assert result.code == EXIT_INVALID
        assert result.err.startswith(f"breaker: <stdin>: INVALID: {reason}")
        assert result.err.endswith("; nothing written\n")
        assert env.requests_log == []

    def test_invalid_on_top_of_the_service_default_writes_nothing(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "_default.json", '{"openStateTimeout": "5m"}')
        result = cli(
            "put",
            "--path",
            PATH,
            "payments",
            "-",
            "--create",
            stdin='{"maxOpenStateTimeout": "2m"}',
        )
        assert result.code == EXIT_INVALID
        assert (
            "INVALID: on top of _default.json: maxOpenStateTimeout: 2m0s is shorter" in result.err
        )
        assert stored(env, "payments") is None

    def test_an_invalid_service_default_is_reported_and_not_used(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "_default.json", '{"openStateTimeout": "soon"}')
        result = cli("put", "--path", PATH, "payments", "-", "--create", stdin="{}")
        assert result.code == EXIT_OK
        assert result.err.startswith("warning: _default.json is invalid (openStateTimeout: ")

    def test_a_concurrent_edit_is_refused_and_kept(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 7}')
        result = cli("put", "--path", PATH, "payments", "-", stdin='{"failureThreshold": 4}')
        assert result.code == EXIT_INVALID
        assert result.out == ""
        assert result.err == (
            f"breaker: refused: {PREFIX}payments.json changed after it was read at ModifyIndex "
            "2 (a concurrent edit); nothing written. Read it again with `breaker get`, or use "
            "--force.\n"
        )
        assert stored(env, "payments") == {"failureThreshold": 7}

    def test_a_concurrent_create_is_refused(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 7}')
        result = cli(
            "put", "--path", PATH, "payments", "-", "--create", stdin='{"failureThreshold": 4}'
        )
        assert result.code == EXIT_INVALID
        assert "payments.json was created (a concurrent edit)" in result.err
        assert stored(env, "payments") == {"failureThreshold": 7}

    def test_force_overwrites_a_concurrent_edit(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 7}')
        result = cli(
            "put", "--path", PATH, "payments", "-", "--force", stdin='{"failureThreshold": 4}'
        )
        assert result.code == EXIT_OK
        assert stored(env, "payments") == {"failureThreshold": 4}

    def test_index_holds_the_write_to_what_was_read_before(
        self, cli: Run, env: ConsulServer
    ) -> None:
        read = env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        now = env.put(PREFIX + "payments.json", '{"failureThreshold": 7}')
        args = ("put", "--path", PATH, "payments", "-")
        result = cli(*args, "--index", str(read), stdin='{"failureThreshold": 4}')
        assert result.code == EXIT_INVALID
        assert f"is at ModifyIndex {now}, not {read} (it changed since you read it)" in result.err
        assert stored(env, "payments") == {"failureThreshold": 7}
        result = cli(*args, "--index", "0", stdin='{"failureThreshold": 4}')
        assert result.code == EXIT_INVALID
        assert cli(*args, "--index", str(now), stdin='{"failureThreshold": 4}').code == EXIT_OK
        assert stored(env, "payments") == {"failureThreshold": 4}
        result = cli(*args, "--index", str(read), "--force", stdin='{"failureThreshold": 5}')
        assert result.code == EXIT_OK
        assert stored(env, "payments") == {"failureThreshold": 5}

    def test_a_document_that_is_not_json_is_replaced_as_a_whole(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", "failureThreshold=3")
        result = cli("put", "--path", PATH, "payments", "-", stdin='{"failureThreshold": 3}')
        assert result.out == (
            f"updated {PREFIX}payments.json\n"
            "  (not JSON: 'failureThreshold=3') -> {\"failureThreshold\": 3}\n"
        )
        env.put(PREFIX + "search.json", "[]")
        result = cli("put", "--path", PATH, "search", "-", "--json", stdin="{}")
        assert result.json()["changes"] == [{"key": None, "old": [], "new": {}}]

    def test_an_unreadable_file(self, cli: Run, env: ConsulServer) -> None:
        result = cli("put", "--path", PATH, "payments", "missing.json")
        assert result == Result(
            EXIT_INVALID, "", "breaker: cannot read missing.json: No such file or directory\n"
        )

    def test_json_output(self, cli: Run, env: ConsulServer) -> None:
        index = env.put(PREFIX + "payments.json", '{"failureThreshold": 3, "mode": "shadow"}')
        result = cli(
            "put",
            "--path",
            PATH,
            "payments",
            "-",
            "--json",
            "--force",
            stdin='{"failureThreshold": 4, "x": 1}',
        )
        assert result.json() == {
            "action": "updated",
            "key": PREFIX + "payments.json",
            "previous_index": index,
            "changes": [
                {"key": "failureThreshold", "old": 3, "new": 4},
                {"key": "mode", "old": "shadow"},
                {"key": "x", "new": 1},
            ],
        }


@pytest.mark.consul
def test_every_write_prints_parseable_json(cli: Run, env: ConsulServer) -> None:
    env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
    result = cli("force-open", "--path", PATH, "payments", "--for", "90s", "--json")
    assert result.json() == {
        "action": "forced open",
        "key": PREFIX + "payments.json",
        "previous_index": 2,
        "changes": [
            {"key": "mode", "new": "forced-open"},
            {"key": "modeUntil", "new": "2026-11-29T13:46:30Z"},
        ],
        "until": "2026-11-29T13:46:30Z",
    }
    result = cli("release", "--path", PATH, "payments", "--json")
    assert result.json()["action"] == "released"
    assert cli("release", "--path", PATH, "payments", "--json").json()["changes"] == []
    result = cli("put", "--path", PATH, "search", "-", "--json", "--create", stdin="{}")
    assert result.json()["changes"] == [{"key": None, "new": {}}]
    result = cli("rm", "--path", PATH, "payments", "--json")
    assert result.json() == {
        "action": "deleted",
        "key": PREFIX + "payments.json",
        "previous_index": 4,
        "changes": [{"key": "failureThreshold", "old": 3}],
    }
    assert cli("rm", "--path", PATH, "payments", "--json", "--force").json()["changes"] == []


@pytest.mark.consul
class TestServiceDefaultWrites:
    """A write to _default.json reaches every document: it must not break one silently."""

    def test_a_write_that_breaks_documents_is_refused_naming_each(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", '{"openStateTimeout": "1m"}')
        env.put(PREFIX + "search.json", '{"openStateTimeout": "45s"}')
        env.put(PREFIX + "inventory.json", '{"openStateTimeout": "20s"}')
        env.put(PREFIX + "_default.json", '{"mode": "forced-open", "openStateTimeout": "10s"}')
        new = '{"openStateTimeout": "10s", "maxOpenStateTimeout": "30s"}'
        result = cli("put", "--path", PATH, "_default", "-", stdin=new)
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: refused: writing {PREFIX}_default.json would make these documents "
            "invalid: payments (on top of _default.json: maxOpenStateTimeout: 30s is shorter "
            "than the open state timeout (1m0s)), search (on top of _default.json: "
            "maxOpenStateTimeout: 30s is shorter than the open state timeout (45s)); nothing "
            "written. Fix them first, or use --force.\n",
        )
        assert stored(env, "_default") == {"mode": "forced-open", "openStateTimeout": "10s"}
        result = cli("put", "--path", PATH, "_default", "-", "--force", stdin=new)
        assert result.code == EXIT_OK
        assert result.err.splitlines() == [
            "warning: payments is invalid now (on top of _default.json: maxOpenStateTimeout: "
            "30s is shorter than the open state timeout (1m0s))",
            "warning: search is invalid now (on top of _default.json: maxOpenStateTimeout: "
            "30s is shorter than the open state timeout (45s))",
        ]
        assert stored(env, "_default") == json.loads(new)

    def test_documents_invalid_already_do_not_block_it(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "broken.json", "{")
        result = cli("put", "--path", PATH, "_default", "-", "--create", stdin="{}")
        assert (result.code, result.err) == (EXIT_OK, "")

    def test_deleting_it_is_a_write_too(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "_default.json", '{"failureRate": 0.5}')
        env.put(PREFIX + "payments.json", '{"failureThreshold": 0}')
        result = cli("rm", "--path", PATH, "_default")
        assert result.code == EXIT_INVALID
        assert result.err.startswith(
            f"breaker: refused: deleting {PREFIX}_default.json would make these documents "
            "invalid: payments (on top of the built-in default: failureThreshold: 0 turns the "
        )
        assert stored(env, "_default") == {"failureRate": 0.5}
        assert cli("rm", "--path", PATH, "_default", "--force").code == EXIT_OK
        assert stored(env, "_default") is None


@pytest.mark.consul
class TestRm:
    def test_deletes_with_the_index_it_read(self, cli: Run, env: ConsulServer) -> None:
        index = env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        result = cli("rm", "--path", PATH, "payments")
        assert result == Result(
            EXIT_OK, f"deleted {PREFIX}payments.json\n  failureThreshold: 3 -> (absent)\n", ""
        )
        assert document_ops(env, "payments") == [[("check-index", index), ("delete-cas", index)]]
        assert stored(env, "payments") is None

    def test_a_missing_document(self, cli: Run, env: ConsulServer) -> None:
        result = cli("rm", "--path", PATH, "payments")
        assert result.code == EXIT_INVALID
        assert result.err == f"breaker: no document at {PREFIX}payments.json; nothing deleted\n"
        assert cli("rm", "--path", PATH, "payments", "--force").code == EXIT_OK

    def test_a_concurrent_edit_is_refused_unless_forced(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 7}')
        result = cli("rm", "--path", PATH, "payments")
        assert result.code == EXIT_INVALID
        assert "(a concurrent edit); nothing deleted" in result.err
        assert stored(env, "payments") == {"failureThreshold": 7}
        read = env.put(PREFIX + "payments.json", '{"failureThreshold": 8}')
        assert cli("rm", "--path", PATH, "payments", "--index", str(read - 1)).code == EXIT_INVALID
        assert cli("rm", "--path", PATH, "payments", "--index", str(read - 1), "--force").code == 0
        assert stored(env, "payments") is None
