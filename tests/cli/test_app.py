"""The command itself: usage errors, entry points, what it imports, Ctrl-C, the README."""

from __future__ import annotations

import io
import os
import pathlib
import re
import shlex
import signal
import string
import subprocess
import sys
import time

import pytest

from breaker._cli import EXIT_ERROR, EXIT_INVALID, EXIT_OK, EXIT_USAGE, main
from breaker._cli._app import build_parser
from breaker._names import RULE
from breaker.testing import ConsulServer

from .support import (
    CONSUL_ENV,
    PATH,
    PREFIX,
    ROOT,
    Run,
    Watching,
    run_module,
    write,
)


@pytest.mark.consul
def test_usage_errors_exit_2_with_one_line(cli: Run, env: ConsulServer) -> None:
    for argv in (
        (),
        ("nope",),
        ("ls",),  # --path is required without BREAKER_POLICIES_PATH
        ("force-open", "--path", PATH, "payments"),  # --for too
        ("put", "--path", PATH, "x", "f.json", "--index", "-1"),
        ("rm", "--path", PATH, "x", "--index", "latest"),
    ):
        result = cli(*argv)
        assert result.code == EXIT_USAGE, argv
        assert result.out == "" and len(result.err.splitlines()) == 1, (argv, result)
        assert result.err.startswith("breaker: error: "), argv
    assert cli("--help").code == EXIT_OK


@pytest.mark.consul
@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("0s", "expected a duration > 0, got '0s'"),
        ("-5m", "expected a duration > 0, got '-5m'"),  # not "expected one argument"
        ("-1", "expected a duration > 0, got '-1'"),
        ("soon", "invalid duration 'soon'"),
        ("1e300", "'1e300' is longer than the longest duration (2562047h47m16.854775807s)"),
        ("99999999999999999999h", "out of range"),
        ("nan", "expected a duration > 0, got 'nan'"),
    ],
)
def test_bad_durations_and_timeouts_are_one_line_usage_errors(
    cli: Run, env: ConsulServer, value: str, says: str
) -> None:
    for argv in (
        ("force-open", "--path", PATH, "payments", "--for", value),
        ("ls", "--path", PATH, "--timeout", value),
    ):
        result = cli(*argv)
        assert result.code == EXIT_USAGE, argv
        assert result.out == "" and len(result.err.splitlines()) == 1, result
        assert says in result.err, result
        assert "Traceback" not in result.err
    assert env.requests_log == []


@pytest.mark.consul
def test_bad_names_and_paths_are_usage_errors(cli: Run, env: ConsulServer) -> None:
    for name in ("a//b", "../x", " pad", "_fleet"):
        result = cli("get", "--path", PATH, name)
        assert result.code == EXIT_USAGE
        assert result.err.startswith(f"breaker: error: NAME: {name!r} cannot name a breaker (")
        assert RULE in result.err
    result = cli("ls", "--path", "/config/../other/")
    assert result.code == EXIT_USAGE
    assert result.err.startswith("breaker: error: --path: '/config/../other/' contains")
    assert env.requests_log == []


@pytest.mark.consul
def test_the_path_defaults_to_the_environment(
    cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.put(PREFIX + "payments.json", "{}")
    monkeypatch.setenv("BREAKER_POLICIES_PATH", PATH)
    result = cli("ls")
    assert result.code == EXIT_OK and "payments" in result.out
    assert cli("ls", "--path", "/config/other/").out == "no policy documents under config/other/\n"


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
        "light = ('breaker.coord.consul._settings',)  # stdlib and attrs: the options' table\n"
        "loaded += [m for m in sys.modules if m.startswith('breaker.coord.consul._')]\n"
        "loaded = [m for m in loaded if m not in light]\n"
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

    It knows what the examples use: ``NAME=value``, ``export NAME=value`` (set in the
    environment) and ``$NAME``, ``cat FILE`` (the lines
    shown are the file, so it writes them), ``echo '...' | breaker ...``, ``echo '...' >
    FILE``, ``breaker ... > FILE``, and ``^C``, which ends a running ``watch``. A comment
    ``# exit N`` is the status to expect (0 otherwise); ``# meanwhile: breaker ...`` on a
    ``watch`` line is a command run elsewhere while it watches.
    """

    def __init__(self, cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
        self.cli = cli
        self.monkeypatch = monkeypatch
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
        assign = re.fullmatch(r"(export )?([A-Z_]+)=(\S+)", command)
        if assign:
            self.variables[assign.group(2)] = assign.group(3)
            if assign.group(1):
                self.monkeypatch.setenv(assign.group(2), assign.group(3))
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
def test_the_readme_cli_examples_run_as_shown(
    cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = readme_cli_blocks()
    assert len(blocks) >= 6
    shell = ReadmeShell(cli, monkeypatch)
    try:
        for block in blocks:
            shell.block(block)
    finally:
        shell.close()
    assert shell.ran >= {"export", "cat", "echo", "breaker", "^C"}
    assert shell.watching is None, "a watch the README never stopped"


def test_every_command_has_help() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    argvs = [[name] for name in commands]
    canary = commands["canary"]._subparsers._group_actions[0].choices
    argvs += [["canary", name] for name in canary]
    for argv in argvs:
        out = io.StringIO()
        assert main([*argv, "--help"], stdout=out, stderr=out) == EXIT_OK, argv
        assert out.getvalue().startswith(f"usage: breaker {' '.join(argv)}"), argv
