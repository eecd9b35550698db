"""The operators' CLI, end to end against the embedded Consul server, and the README's examples.

Commands run in-process through `breaker._cli.main` (with ``now`` fixed), except where the
entry points themselves are under test (``python -m breaker`` in a subprocess).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import shlex
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import breaker
from breaker import Mode, State
from breaker._cli import EXIT_ERROR, EXIT_INVALID, EXIT_OK, EXIT_USAGE, _HealthReport, main
from breaker.coord import CoordHealth
from breaker.coord.consul._coord import ConsulCoord
from breaker.testing import ACLRule, ConsulServer

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 29, 13, 45, tzinfo=timezone.utc)
PATH = "/config/dev/checkout/breakers/"
PREFIX = PATH.lstrip("/")
CONSUL_ENV = (
    "CONSUL_HTTP_ADDR",
    "CONSUL_HTTP_TOKEN",
    "CONSUL_HTTP_TOKEN_FILE",
    "CONSUL_HTTP_SSL",
    "CONSUL_HTTP_SSL_VERIFY",
    "CONSUL_CACERT",
    "CONSUL_CAPATH",
    "CONSUL_CLIENT_CERT",
    "CONSUL_CLIENT_KEY",
)


class Stream(io.TextIOBase):
    """A text stream that threads write to and tests wait on (stdout and stderr in one)."""

    def __init__(self) -> None:
        self._text = ""
        self._cond = threading.Condition()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._cond:
            self._text += text
            self._cond.notify_all()
        return len(text)

    def getvalue(self) -> str:
        with self._cond:
            return self._text

    def wait_for(self, needle: str, timeout: float = 5.0) -> str:
        """Return everything written once ``needle`` has been; fail after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: needle in self._text, timeout):
                raise AssertionError(f"{needle!r} never came; got:\n{self._text}")
            return self._text


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Result]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, consul_server: ConsulServer) -> ConsulServer:
    """Point the consul CLI's environment at the embedded server, and nothing else."""
    for name in CONSUL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONSUL_HTTP_ADDR", consul_server.addr)
    return consul_server


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> Run:
    """Return a runner of the CLI: arguments in, exit status and output out."""
    monkeypatch.chdir(tmp_path)

    def run(
        *argv: str, stdin: str | bytes = b"", now: datetime = NOW, merged: bool = False
    ) -> Result:
        """Run the CLI; ``merged`` sends stderr into stdout, as a terminal shows them."""
        out, err = io.StringIO(), io.StringIO()
        data = stdin.encode() if isinstance(stdin, str) else stdin
        stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
        code = main(
            list(argv), now=lambda: now, stdin=stream, stdout=out, stderr=out if merged else err
        )
        return Result(code, out.getvalue(), err.getvalue())

    return run


def write(path: str, text: str) -> str:
    pathlib.Path(path).write_text(text)
    return path


def stored(server: ConsulServer, name: str) -> Any:
    raw = server.get(f"{PREFIX}{name}.json")
    return None if raw is None else json.loads(raw)


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

    def test_unknown_keys_are_a_warning_not_a_failure(self, cli: Run) -> None:
        write("typo.json", '{"failureTreshold": 3}')
        result = cli("validate", "typo.json")
        assert result.code == EXIT_OK
        assert result.out == "typo.json: OK\n"
        assert result.err == (
            "warning: typo.json: ignoring unknown policy keys: 'failureTreshold' "
            "(did you mean 'failureThreshold'?)\n"
        )

    def test_dash_reads_stdin(self, cli: Run) -> None:
        assert cli("validate", "-", stdin='{"mode": "shadow"}').out == "<stdin>: OK\n"
        result = cli("validate", "-", stdin=b"\xef\xbb\xbf{}")
        assert result.code == EXIT_INVALID
        assert "byte-order mark" in result.out

    def test_json_output_is_a_list_of_file_valid_error(self, cli: Run) -> None:
        write("ok.json", '{"x": 1}')
        write("bad.json", '{"failureRate": 2}')
        result = cli("validate", "--json", "ok.json", "bad.json")
        assert result.code == EXIT_INVALID
        assert result.json() == [
            {
                "file": "ok.json",
                "valid": True,
                "error": None,
                "warnings": ["ignoring unknown policy keys: 'x'"],
            },
            {
                "file": "bad.json",
                "valid": False,
                "error": "failureRate: expected a number in (0, 1], got 2",
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


@pytest.mark.consul
def test_usage_errors_exit_2(cli: Run, env: ConsulServer) -> None:
    assert cli().code == EXIT_USAGE
    assert cli("nope").code == EXIT_USAGE
    assert cli("ls").code == EXIT_USAGE  # --path is required
    assert cli("force-open", "--path", PATH, "payments").code == EXIT_USAGE  # --for too
    result = cli("force-open", "--path", PATH, "payments", "--for", "0s")
    assert result.code == EXIT_USAGE
    assert "expected a duration > 0" in result.err
    result = cli("force-open", "--path", PATH, "payments", "--for", "soon")
    assert (result.code, "invalid duration 'soon'" in result.err) == (EXIT_USAGE, True)
    result = cli("get", "--path", PATH, "a//b")
    assert result == Result(
        EXIT_USAGE,
        "",
        "breaker: error: 'a//b' is not a breaker name (no empty, '.' or '..' part between "
        "slashes)\n",
    )
    result = cli("ls", "--path", "/config/../other/")
    assert result.code == EXIT_USAGE
    assert result.err.startswith("breaker: error: --path: '/config/../other/' contains")
    assert cli("put", "--path", PATH, "x", "f.json", "--index", "-1").code == EXIT_USAGE
    assert cli("rm", "--path", PATH, "x", "--index", "latest").code == EXIT_USAGE
    result = cli("force-open", "--path", PATH, "payments", "--for", "1e12")
    assert result == Result(
        EXIT_USAGE, "", "breaker: error: --for 1e+12s ends after the year 9999\n"
    )
    assert cli("--help").code == EXIT_OK


def test_commands_without_consul_import_no_consul_module(tmp_path: pathlib.Path) -> None:
    policy = tmp_path / "p.json"
    policy.write_text("{}")
    code = (
        "import sys\n"
        "from breaker._cli import main\n"
        f"assert main(['validate', {str(policy)!r}]) == 0\n"
        "assert main(['schema']) == 0\n"
        "heavy = ('consul', 'requests', 'urllib3')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in heavy]\n"
        "loaded += [m for m in sys.modules if m.startswith('breaker.coord.consul._')]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_python_dash_m_breaker_is_the_cli(tmp_path: pathlib.Path) -> None:
    (tmp_path / "bad.json").write_text('{"successThreshold": 0}')
    done = subprocess.run(
        [sys.executable, "-m", "breaker", "validate", "bad.json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == EXIT_INVALID
    assert done.stdout == (
        "bad.json: INVALID: successThreshold: expected an integer from 1 to 1000000, got 0\n"
    )
    assert done.stderr == ""


def test_the_console_script_is_the_cli(tmp_path: pathlib.Path) -> None:
    script = pathlib.Path(sys.executable).with_name("breaker")
    if not script.exists():
        pytest.skip("this environment has breaker without its console script")
    (tmp_path / "p.json").write_text('{"mode": "disabled"}')
    done = subprocess.run(
        [str(script), "validate", "p.json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert (done.returncode, done.stdout, done.stderr) == (EXIT_OK, "p.json: OK\n", "")


def test_without_the_consul_extra_consul_commands_say_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['consul'] = None  # as if python-consul were not installed\n"
        "from breaker._cli import main\n"
        "raise SystemExit(main(['ls', '--path', 'config/x/']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_ERROR
    assert done.stderr.startswith("breaker: error: ConsulCoord needs python-consul")
    assert done.stderr.endswith("pip install 'consul-breaker[consul]'\n")
    assert "Traceback" not in done.stderr


def test_the_cli_and_the_provider_agree_on_what_is_a_policy_document() -> None:
    from breaker._cli import _policy_documents

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
            "to 1000000, got the string 'five' (services keep their last good policy)",
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
        assert entry["error"].startswith(
            "on top of _default.json: maxOpenStateTimeout: 2m0s is shorter than"
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
            "to 1000000, got 0); documents are checked against the code's defaults, the "
            "services against their last good service default\n"
        )
        assert result.err == note
        result = cli("get", "--path", PATH, "payments")
        assert result.code == EXIT_OK
        assert result.err == "warning: ignoring unknown policy keys: 'owner'\n" + note
        assert '"successThreshold": 1' in result.out  # the code's default
        result = cli("force-open", "--path", PATH, "payments", "--for", "1m")
        assert (result.code, result.err) == (EXIT_OK, note)

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
            "error": None,
            "warnings": ["ignoring unknown policy keys: 'owner'"],
            "document": {"successThreshold": 2, "owner": "sre"},
            "policy": {"failureThreshold": 5, "successThreshold": 2, "openStateTimeout": "1m0s"},
            "mode": "auto",
        }
        assert broken["valid"] is False and broken["document"] == "{" and broken["policy"] is None
        assert broken["error"].startswith("malformed JSON")
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
            "error": None,
            "warnings": [],
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
            "last good policy)\n"
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
        result = cli("put", "--path", PATH, "payments", "p.json")
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
        puts = [r for r in env.requests_log if r.method == "PUT"]
        assert [r.query.get("cas") for r in puts] == ["0"]  # must not exist yet

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
        puts = [r for r in env.requests_log if r.method == "PUT"]
        assert [r.query.get("cas") for r in puts] == [str(index)]

    def test_the_same_content_writes_nothing(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", "{}")
        result = cli("put", "--path", PATH, "payments", "-", stdin="{}")
        assert result.out == f"unchanged {PREFIX}payments.json (same content)\n"
        assert not [r for r in env.requests_log if r.method == "PUT"]

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
        result = cli("put", "--path", PATH, "payments", "-", stdin='{"maxOpenStateTimeout": "2m"}')
        assert result.code == EXIT_INVALID
        assert (
            "INVALID: on top of _default.json: maxOpenStateTimeout: 2m0s is shorter" in result.err
        )
        assert stored(env, "payments") is None

    def test_an_invalid_service_default_is_reported_and_not_used(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "_default.json", '{"openStateTimeout": "soon"}')
        result = cli("put", "--path", PATH, "payments", "-", stdin="{}")
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
        result = cli("put", "--path", PATH, "payments", "-", stdin='{"failureThreshold": 4}')
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
    result = cli("put", "--path", PATH, "search", "-", "--json", stdin="{}")
    assert result.json()["changes"] == [{"key": None, "new": {}}]
    result = cli("rm", "--path", PATH, "payments", "--json")
    assert result.json() == {
        "action": "deleted",
        "key": PREFIX + "payments.json",
        "previous_index": 4,
        "changes": [{"key": "failureThreshold", "old": 3}],
    }
    assert cli("rm", "--path", PATH, "payments", "--json", "--force").json()["changes"] == []


def edit_after_read(
    monkeypatch: pytest.MonkeyPatch, server: ConsulServer, name: str, value: str, times: int = 1
) -> list[int]:
    """Make someone else write ``name`` right after the CLI reads it, ``times`` times."""
    original = ConsulCoord.get
    key = f"{PREFIX}{name}.json"
    done: list[int] = []

    def get(self: ConsulCoord, wanted: str) -> tuple[bytes, int] | None:
        found = original(self, wanted)
        if wanted == key and len(done) < times:
            done.append(server.put(key, value if len(done) == 0 else value + " " * len(done)))
        return found

    monkeypatch.setattr(ConsulCoord, "get", get)
    return done


@pytest.mark.consul
class TestRm:
    def test_deletes_with_the_index_it_read(self, cli: Run, env: ConsulServer) -> None:
        index = env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        result = cli("rm", "--path", PATH, "payments")
        assert result == Result(
            EXIT_OK, f"deleted {PREFIX}payments.json\n  failureThreshold: 3 -> (absent)\n", ""
        )
        deletes = [r for r in env.requests_log if r.method == "DELETE"]
        assert [r.query.get("cas") for r in deletes] == [str(index)]
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


@pytest.mark.consul
class TestKillSwitch:
    def test_force_open_sets_mode_and_expiry_and_keeps_the_rest(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3, "mode": "shadow", "x": 1}')
        result = cli("force-open", "--path", PATH, "payments", "--for", "1h30m")
        assert result == Result(
            EXIT_OK,
            f"forced open {PREFIX}payments.json until 2026-11-29T15:15:00Z\n"
            '  mode: "shadow" -> "forced-open"\n'
            '  modeUntil: (absent) -> "2026-11-29T15:15:00Z"\n',
            "",
        )
        assert env.get(PREFIX + "payments.json") == (
            b'{"failureThreshold": 3, "mode": "forced-open", "x": 1, '
            b'"modeUntil": "2026-11-29T15:15:00Z"}'
        )

    def test_for_takes_seconds_and_rounds_up_to_a_whole_second(
        self, cli: Run, env: ConsulServer
    ) -> None:
        now = NOW + timedelta(microseconds=250_000)
        cli("force-open", "--path", PATH, "payments", "--for", "90", now=now)
        assert stored(env, "payments") == {
            "mode": "forced-open",
            "modeUntil": "2026-11-29T13:46:31Z",
        }

    def test_a_multi_line_document_stays_multi_line(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", '{\n  "failureThreshold": 3\n}\n')
        cli("force-open", "--path", PATH, "payments", "--for", "5m")
        assert env.get(PREFIX + "payments.json") == (
            b'{\n  "failureThreshold": 3,\n  "mode": "forced-open",\n'
            b'  "modeUntil": "2026-11-29T13:50:00Z"\n}\n'
        )

    def test_release_removes_mode_and_expiry_and_nothing_else(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", '{"mode": "forced-open", "failureThreshold": 3}')
        result = cli("release", "--path", PATH, "payments")
        assert result.out == (
            f'released {PREFIX}payments.json\n  mode: "forced-open" -> (absent)\n'
        )
        assert stored(env, "payments") == {"failureThreshold": 3}
        env.put(
            PREFIX + "search.json", '{"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00Z"}'
        )
        cli("release", "--path", PATH, "search")
        assert stored(env, "search") == {}  # released, not deleted

    def test_release_with_nothing_to_release_writes_nothing(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        result = cli("release", "--path", PATH, "payments")
        assert result == Result(
            EXIT_OK, f"unchanged {PREFIX}payments.json (no mode to release)\n", ""
        )
        assert cli("release", "--path", PATH, "search").code == EXIT_OK
        assert [r.method for r in env.requests_log].count("PUT") == 0
        assert stored(env, "search") is None

    def test_force_open_the_whole_service(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "_default.json", '{"successThreshold": 2}')
        assert cli("force-open", "--path", PATH, "_default", "--for", "5m").code == EXIT_OK
        assert stored(env, "_default") == {
            "successThreshold": 2,
            "mode": "forced-open",
            "modeUntil": "2026-11-29T13:50:00Z",
        }

    def test_a_concurrent_edit_is_kept_and_the_switch_applied_again(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 7}')
        assert cli("force-open", "--path", PATH, "payments", "--for", "5m").code == EXIT_OK
        assert stored(env, "payments") == {
            "failureThreshold": 7,
            "mode": "forced-open",
            "modeUntil": "2026-11-29T13:50:00Z",
        }

    def test_an_edit_that_never_settles_is_refused(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        edits = edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 7}', times=3)
        result = cli("force-open", "--path", PATH, "payments", "--for", "5m")
        assert result.code == EXIT_INVALID
        assert "kept changing while being updated (3 tries); nothing written" in result.err
        assert len(edits) == 3
        assert stored(env, "payments") == {"failureThreshold": 7}

    @pytest.mark.parametrize(
        ("document", "reason"),
        [
            ("[1]", "holds no JSON object (a policy must be a JSON object, got an array)"),
            ("{", "holds no JSON object (malformed JSON"),
            ('{"failureThreshold": -1}', "would be invalid (failureThreshold: expected"),
        ],
    )
    def test_a_broken_document_is_not_touched(
        self, cli: Run, env: ConsulServer, document: str, reason: str
    ) -> None:
        env.put(PREFIX + "payments.json", document)
        result = cli("force-open", "--path", PATH, "payments", "--for", "5m")
        assert result.code == EXIT_INVALID
        assert reason in result.err
        assert env.get(PREFIX + "payments.json") == document.encode()

    def test_a_running_provider_obeys_within_a_second_and_goes_back_to_auto(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        opened, back = threading.Event(), threading.Event()

        def listen(change: breaker.StateChange) -> None:
            if change.new is State.OPEN:
                opened.set()
            elif change.old is State.OPEN:
                back.set()

        config = breaker.Config("checkout", PATH)
        with breaker.new(config, coord=ConsulCoord(env.addr)) as provider:
            provider.add_listener(listen)
            brk = provider.get_breaker("payments")
            assert brk.do(lambda: "ok") == "ok"
            # The real clock: the provider compares modeUntil with time.time().
            now = datetime.now(timezone.utc)
            assert cli("force-open", "--path", PATH, "payments", "--for", "15m", now=now).code == 0
            assert opened.wait(1.0), "the provider did not obey force-open within a second"
            with pytest.raises(breaker.BreakerOpenError) as caught:
                brk.do(lambda: "never runs")
            assert caught.value.mode is Mode.FORCED_OPEN
            assert brk.policy.failure_threshold == 3  # the rest of the document still applies
            assert cli("release", "--path", PATH, "payments").code == EXIT_OK
            assert back.wait(1.0), "the provider did not leave forced-open within a second"
            assert brk.mode is Mode.AUTO
            assert brk.do(lambda: "ok") == "ok"  # a trial call closes it
            assert brk.state is State.CLOSED


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.consul
class TestConsulErrors:
    def test_consul_down(self, cli: Run, env: ConsulServer) -> None:
        env.stop()
        for argv in (
            ("ls", "--path", PATH),
            ("get", "--path", PATH, "payments"),
            ("rm", "--path", PATH, "payments"),
            ("release", "--path", PATH, "payments"),
            ("watch", "--path", PATH),
        ):
            result = cli(*argv)
            assert result == Result(
                EXIT_ERROR,
                "",
                f"breaker: error: cannot reach Consul at http://{env.addr}: [Errno 111] "
                "Connection refused\n",
            ), argv
        result = cli("put", "--path", PATH, "payments", "-", stdin="{}")
        assert result.code == EXIT_ERROR and "cannot reach Consul" in result.err

    def test_addr_wins_over_the_environment(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
        assert cli("ls", "--path", PATH).code == EXIT_ERROR
        assert cli("ls", "--path", PATH, "--addr", env.addr).code == EXIT_OK

    def test_bad_settings_are_one_clear_error(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CONSUL_HTTP_SSL", "maybe")
        result = cli("ls", "--path", PATH)
        assert result == Result(
            EXIT_ERROR,
            "",
            "breaker: error: Consul settings: CONSUL_HTTP_SSL='maybe' is not a boolean (use "
            "true/false, 1/0, t/f)\n",
        )
        monkeypatch.delenv("CONSUL_HTTP_SSL")
        result = cli("ls", "--path", PATH, "--token-file", "/nonexistent/token")
        assert result.code == EXIT_ERROR
        assert "cannot read the Consul token file '/nonexistent/token'" in result.err


@pytest.fixture
def acl_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConsulServer]:
    tokens = {
        "ops-token": [ACLRule("config/", "write")],
        "read-token": [ACLRule("config/", "read")],
    }
    with ConsulServer(acl_tokens=tokens, acl_default_policy="deny", jitter=False) as server:
        for name in CONSUL_ENV:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CONSUL_HTTP_ADDR", server.addr)
        server.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        yield server


@pytest.mark.consul
@pytest.mark.fault_injection
class TestTokens:
    def test_a_bad_token_is_a_clear_error(self, cli: Run, acl_server: ConsulServer) -> None:
        for argv in (
            ("ls", "--path", PATH, "--token", "wrong"),
            ("get", "--path", PATH, "payments", "--token", "wrong"),
            ("force-open", "--path", PATH, "payments", "--for", "5m", "--token", "wrong"),
        ):
            result = cli(*argv)
            assert result == Result(
                EXIT_ERROR,
                "",
                "breaker: error: HTTP 403 permission denied (ACL not found): check the ACL token\n",
            ), argv
        assert stored(acl_server, "payments") == {"failureThreshold": 3}

    def test_a_read_only_token_can_read_but_not_write(
        self, cli: Run, acl_server: ConsulServer
    ) -> None:
        assert cli("ls", "--path", PATH, "--token", "read-token").code == EXIT_OK
        result = cli("put", "--path", PATH, "payments", "-", "--token", "read-token", stdin="{}")
        assert result.code == EXIT_ERROR
        assert result.err.startswith("breaker: error: HTTP 403 permission denied (Permission ")
        assert result.err.endswith("): check the ACL token\n")
        assert "Traceback" not in result.err
        assert stored(acl_server, "payments") == {"failureThreshold": 3}

    def test_the_token_comes_from_the_environment_and_the_option_wins(
        self,
        cli: Run,
        acl_server: ConsulServer,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: pathlib.Path,
    ) -> None:
        monkeypatch.setenv("CONSUL_HTTP_TOKEN", "ops-token")
        assert cli("force-open", "--path", PATH, "payments", "--for", "5m").code == EXIT_OK
        assert (
            cli("release", "--path", PATH, "payments", "--token", "read-token").code == EXIT_ERROR
        )
        token_file = tmp_path / "token"
        token_file.write_text("wrong\n")
        monkeypatch.setenv("CONSUL_HTTP_TOKEN_FILE", str(token_file))  # preferred to the variable
        assert cli("ls", "--path", PATH).code == EXIT_ERROR
        token_file.write_text("ops-token\n")
        assert cli("release", "--path", PATH, "payments").code == EXIT_OK
        tokens = {r.headers.get("x-consul-token") for r in acl_server.requests_log}
        assert tokens == {"ops-token", "read-token", "wrong"}
        assert all("token" not in r.query for r in acl_server.requests_log)


# -- watch -------------------------------------------------------------------------------------


class Watching:
    """``breaker watch`` running in a thread, its output in one stream."""

    def __init__(self, *argv: str) -> None:
        self.stream = Stream()
        self.stop = threading.Event()
        self.code: list[int] = []
        self.thread = threading.Thread(target=self._run, args=argv)
        self.thread.start()

    def _run(self, *argv: str) -> None:
        stream: Any = self.stream
        code = main(["watch", *argv], now=lambda: NOW, stop=self.stop, stdout=stream, stderr=stream)
        self.code.append(code)

    def end(self) -> int:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()
        return self.code[0]


@pytest.mark.consul
class TestWatch:
    def test_streams_changes_until_stopped(self, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        env.put(PREFIX + "slow.json", '{"maxOpenStateTimeout": "2m"}')
        watching = Watching("--path", PATH)
        try:
            watching.stream.wait_for("Ctrl-C to stop\n")
            env.put(PREFIX + "payments.json", '{"failureThreshold": 4}')
            watching.stream.wait_for("payments  changed")
            env.put(PREFIX + "README", "not a policy")
            env.put(PREFIX + "search.json", '{"failureThreshold": "five"}')
            watching.stream.wait_for("search  created")
            env.delete(PREFIX + "payments.json")
            watching.stream.wait_for("payments  deleted")
            env.put(PREFIX + "_default.json", '{"openStateTimeout": "5m"}')
            watching.stream.wait_for("slow  revalidated")
        finally:
            code = watching.end()
        assert code == EXIT_OK
        stamp = "2026-11-29T13:45:00Z"
        assert watching.stream.getvalue().splitlines() == [
            f"watching {PREFIX} (2 documents); Ctrl-C to stop",
            f"{stamp}  payments  changed  failureThreshold: 3 -> 4",
            f'{stamp}  search  created  failureThreshold: (absent) -> "five"  INVALID: '
            "failureThreshold: expected an integer from 0 to 1000000, got the string 'five'",
            f"{stamp}  payments  deleted  failureThreshold: 4 -> (absent)",
            f'{stamp}  _default  created  openStateTimeout: (absent) -> "5m"',
            # Unchanged, but the services now refuse it (and keep its last good policy).
            f"{stamp}  slow  revalidated  by the new _default.json  INVALID: on top of "
            "_default.json: maxOpenStateTimeout: 2m0s is shorter than the open state timeout "
            "(5m0s)",
        ]

    def test_json_lines(self, env: ConsulServer) -> None:
        watching = Watching("--path", PATH, "--json")
        try:
            watching.stream.wait_for("Ctrl-C to stop\n")
            env.put(PREFIX + "_default.json", '{"openStateTimeout": "5m"}')
            watching.stream.wait_for('"name": "_default"')
            env.put(PREFIX + "payments.json", '{"maxOpenStateTimeout": "2m"}')
            watching.stream.wait_for('"name": "payments"')
            env.put(PREFIX + "_default.json", '{"openStateTimeout": "1m"}')
            watching.stream.wait_for('"event": "revalidated"')
        finally:
            assert watching.end() == EXIT_OK
        lines = watching.stream.getvalue().splitlines()
        assert lines[0].startswith("watching ")
        events = [json.loads(line) for line in lines[1:]]
        assert events[0] == {
            "time": "2026-11-29T13:45:00Z",
            "name": "_default",
            "key": PREFIX + "_default.json",
            "event": "created",
            "changes": [{"key": "openStateTimeout", "new": "5m"}],
            "valid": True,
            "error": None,
        }
        assert events[1]["valid"] is False  # on top of the new service default
        assert events[1]["error"].startswith("on top of _default.json: maxOpenStateTimeout")
        assert [(e["name"], e["event"], e["valid"]) for e in events[2:]] == [
            ("_default", "changed", True),
            ("payments", "revalidated", True),  # unchanged, valid again on the new default
        ]
        assert events[3]["changes"] == []

    def test_says_when_consul_goes_away_and_comes_back(self, env: ConsulServer) -> None:
        watching = Watching("--path", PATH)
        try:
            watching.stream.wait_for("Ctrl-C to stop\n")
            env.stop()
            watching.stream.wait_for("still trying (services keep their policies)\n")
            env.start()
            env.put(PREFIX + "payments.json", "{}")
            watching.stream.wait_for("payments  created")
            watching.stream.wait_for("Consul answers again\n")
        finally:
            assert watching.end() == EXIT_OK
        lines = watching.stream.getvalue().splitlines()
        assert lines[1].startswith(
            f"2026-11-29T13:45:00Z  Consul: cannot reach Consul at http://{env.addr}: "
        )
        assert lines[1].endswith("; still trying (services keep their policies)")
        # The change and the recovery come from two threads, in either order.
        assert sorted(lines[2:]) == [
            "2026-11-29T13:45:00Z  Consul answers again",
            "2026-11-29T13:45:00Z  payments  created  (absent) -> {}",
        ]

    def test_ctrl_c_ends_python_dash_m_breaker_watch_cleanly(self, env: ConsulServer) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in CONSUL_ENV}
        environ["CONSUL_HTTP_ADDR"] = env.addr
        process = run_module("watch", "--path", PATH, stdout=subprocess.PIPE, env=environ)
        try:
            assert process.stderr is not None and process.stdout is not None
            assert process.stderr.readline().endswith("Ctrl-C to stop\n")
            env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
            line = process.stdout.readline()
            assert line.endswith("  payments  created  failureThreshold: (absent) -> 3\n"), line
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == EXIT_OK
        assert err == ""


def run_module(*argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``python -m breaker`` with ``argv``, Ctrl-C reaching it as in a terminal.

    A test run started as a background job (``cmd &`` in a script, as CI runners may)
    ignores SIGINT, and a child inherits an ignored signal, so Python would install no
    KeyboardInterrupt handler in it: give the child the default for the spawn.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "breaker", *argv], text=True, stderr=subprocess.PIPE, **kwargs
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_reader_that_goes_away_ends_the_command_without_a_traceback() -> None:
    read, write_end = os.pipe()
    os.close(read)  # `breaker schema | head -0`: nobody reads
    try:
        process = run_module("schema", stdout=write_end)
    finally:
        os.close(write_end)
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (EXIT_ERROR, "")


@pytest.mark.consul
@pytest.mark.fault_injection
def test_ctrl_c_while_consul_hangs_is_one_line(env: ConsulServer) -> None:
    env.hang()
    environ = {k: v for k, v in os.environ.items() if k not in CONSUL_ENV}
    process = run_module(
        "ls",
        "--path",
        PATH,
        "--addr",
        env.addr,
        "--timeout",
        "60s",  # the interrupt, not the request's timeout, must end it, however busy CI is
        stdout=subprocess.PIPE,
        env=environ,
    )
    try:
        while not env.requests_log and process.poll() is None:
            time.sleep(0.01)  # until the request is in Consul's hands
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert (process.returncode, out, err) == (130, "", "breaker: interrupted\n")


def test_the_health_report_says_each_change_of_condition_once() -> None:
    report = _HealthReport()
    up, down = CoordHealth(up=True, last_sync=1.0), CoordHealth(up=False, last_error="HTTP 500")
    assert report.lines(up, "t1") == []
    assert report.lines(down, "t2") == [
        "t2  Consul: HTTP 500; still trying (services keep their policies)"
    ]
    assert report.lines(down, "t3") == []
    assert report.lines(up, "t4") == ["t4  Consul answers again"]
    assert report.lines(up, "t5") == []


# -- the README's examples -----------------------------------------------------------------------


def readme_cli_blocks() -> list[list[str]]:
    """Return the lines of each console block in the README's CLI part."""
    text = (ROOT / "README.rst").read_text()
    part = text.split("\nCLI\n", 1)[1].split("\nLogs\n", 1)[0]
    blocks = []
    for match in re.finditer(r"^( *)\.\. code-block:: console\n\n((?:\1    .*\n|\n)+)", part, re.M):
        indent = len(match.group(1)) + 4
        blocks.append([line[indent:] for line in match.group(2).rstrip("\n").splitlines()])
    return blocks


COMMAND = re.compile(r"^\$ (?P<command>.*?)(?:\s+#\s*(?P<note>.*))?$")


class ReadmeShell:
    """Run the README's console lines the way a shell would, and check what they print.

    It knows what the examples use: ``NAME=value`` and ``$NAME``, ``cat FILE`` (the lines
    shown are the file, so it writes them), ``echo '...' | breaker ...``, ``echo '...' >
    FILE``, ``breaker ... > FILE``, and ``^C``, which ends a running ``watch``. A comment
    ``# exit N`` is the status to expect (0 otherwise); ``# meanwhile: breaker ...`` on a
    ``watch`` line is a command run elsewhere while it watches.
    """

    def __init__(self, cli: Run) -> None:
        self.cli = cli
        self.variables: dict[str, str] = {}
        self.watching: tuple[Watching, list[str]] | None = None
        self.ran: set[str] = set()

    def close(self) -> None:
        if self.watching is not None:
            self.watching[0].end()

    def block(self, lines: list[str]) -> None:
        steps: list[tuple[str, str | None, list[str]]] = []
        for line in lines:
            match = COMMAND.match(line)
            if match:
                steps.append((match.group("command"), match.group("note"), []))
            elif line == "^C":
                steps.append((line, None, []))
            else:
                steps[-1][2].append(line)
        for command, note, shown in steps:
            self.step(string.Template(command).substitute(self.variables), note, shown)

    def step(self, command: str, note: str | None, shown: list[str]) -> None:
        self.ran.add(command.split()[0])
        assign = re.fullmatch(r"([A-Z]+)=(\S+)", command)
        if assign:
            self.variables[assign.group(1)] = assign.group(2)
            return
        if command.startswith("cat "):
            write(command[4:], "\n".join(shown) + "\n")
            return
        if command == "^C":
            assert self.watching is not None, "^C with nothing running"
            (watching, expected), self.watching = self.watching, None
            assert watching.end() == EXIT_OK
            assert watching.stream.getvalue().splitlines() == expected
            return
        words, stdin, redirect = shlex.split(command), "", None
        if words[0] == "echo" and words[2] == ">":
            write(words[3], words[1] + "\n")
            return
        if words[0] == "echo":
            assert words[2] == "|", command
            stdin, words = words[1] + "\n", words[3:]
        if ">" in words:
            redirect, words = words[-1], words[:-2]
        assert words[0] == "breaker", f"the README runs only breaker here: {command}"
        if note and note.startswith("meanwhile: "):
            self.watch(words, note[len("meanwhile: ") :], shown)
            return
        expected = int(note.split()[1]) if note and re.fullmatch(r"exit \d", note) else EXIT_OK
        result = self.cli(*words[1:], stdin=stdin, merged=not redirect)
        assert result.code == expected, (command, result)
        if redirect:
            pathlib.Path(redirect).write_text(result.out)
            assert result.err.splitlines() == shown, command
        else:
            assert result.out.splitlines() == shown, command

    def watch(self, words: list[str], elsewhere: str, shown: list[str]) -> None:
        assert words[1] == "watch" and self.watching is None
        watching = Watching(*words[2:])
        self.watching = (watching, shown)
        watching.stream.wait_for("Ctrl-C to stop\n")
        other = shlex.split(string.Template(elsewhere).substitute(self.variables))
        assert other[0] == "breaker"
        assert self.cli(*other[1:]).code == EXIT_OK
        watching.stream.wait_for(shown[-1])


@pytest.mark.consul
def test_the_readme_cli_examples_run_as_shown(cli: Run, env: ConsulServer) -> None:
    blocks = readme_cli_blocks()
    assert len(blocks) >= 4
    shell = ReadmeShell(cli)
    try:
        for block in blocks:
            shell.block(block)
    finally:
        shell.close()
    assert shell.ran >= {"P=/config/dev/checkout/breakers/", "cat", "echo", "breaker", "^C"}
    assert shell.watching is None, "a watch the README never stopped"


@pytest.mark.consul
@pytest.mark.fault_injection
def test_timeout_bounds_a_request_to_a_hanging_consul(env: ConsulServer) -> None:
    env.hang()
    out, err = io.StringIO(), io.StringIO()
    argv = ["ls", "--path", PATH, "--addr", env.addr, "--timeout", "250ms"]
    assert main(argv, stdout=out, stderr=err) == EXIT_ERROR
    assert err.getvalue().startswith("breaker: error: no answer from Consul")
    assert "0.25s" in err.getvalue()
