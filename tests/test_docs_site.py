"""Every page of the documentation site runs as written.

Each page's blocks run in the order they appear, against a fresh embedded Consul server
that ``CONSUL_HTTP_ADDR`` points at (so ``breaker.ConsulCoord()`` and the CLI reach it):

- ``.. code-block:: python``: executed, all the blocks of a page in one namespace;
- ``.. code-block:: console``: each ``$ breaker ...`` line runs the CLI and must print
  the lines shown (the README's rules: ``# exit N``, ``cat FILE``, ``echo ... |``);
- a block whose ``:caption:`` is a file name (``app.py``, ``payments.json``) is written to
  that file in the page's working folder, where later blocks import or read it; a Python
  file is compiled and a JSON file parsed on the way.

A block that cannot run says why in the source, in a comment right above it
(``.. not run: <why>``); there are very few, and this module counts them. A page whose
framework is not installed (the docs extra brings them all) is skipped.
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest

import breaker
from breaker._cli import main
from breaker.testing import ConsulServer

from .cli.support import CONSUL_ENV, NOW, Result, Run
from .cli.test_app import ReadmeShell

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUN = ("python", "console")
MAX_NOT_RUN = 6
"""How many blocks in the whole site may say ``.. not run:``: very few."""
OPTIONAL = (
    "celery",
    "django",
    "fastapi",
    "flask",
    "grpc",
    "gunicorn",
    "httpx",
    "opentelemetry",
    "prometheus_client",
    "requests",
    "starlette",
)
"""The libraries a page may need beyond the core: a page whose library is missing skips."""

_DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. (?:code-block|code|sourcecode)::\s*(?P<lang>\S*)\s*$")
_OPTION = re.compile(r"^ *:(\w+):\s*(.*)$")
_NOT_RUN = re.compile(r"^ *\.\. not run: (?P<why>.+)$")
_LITERAL = re.compile(r"^(?! *\.\. ).*[^:\s]::$|^ *::$")


@dataclass
class Block:
    page: pathlib.Path
    line: int
    language: str
    caption: str | None
    code: str
    not_run: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def file(self) -> str | None:
        """Return the file this block is, when its caption names one."""
        caption = self.caption or ""
        return caption if re.fullmatch(r"[\w./-]+\.\w+", caption) else None


def blocks(page: pathlib.Path) -> list[Block]:
    """Return the code blocks of ``page``, in order, with their options and comments."""
    lines = page.read_text().splitlines()
    found = []
    for i, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        indent = len(match.group("indent"))
        j, options = i + 1, {}
        while j < len(lines) and (option := _OPTION.match(lines[j])) and option.start(1) > indent:
            options[option.group(1)] = option.group(2)
            j += 1
        body = []
        while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > indent):
            body.append(lines[j])
            j += 1
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        reason = _NOT_RUN.match(lines[k]) if k >= 0 else None
        found.append(
            Block(
                page,
                i + 1,
                match.group("lang"),
                options.get("caption"),
                textwrap.dedent("\n".join(body)).strip("\n") + "\n",
                reason.group("why") if reason else None,
            )
        )
    return found


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def pages() -> list[pathlib.Path]:
    return sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.parts)


def site_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


# -- the rules every page follows --------------------------------------------------------------


def test_the_site_has_pages_with_blocks_to_run() -> None:
    runnable = [b for b in site_blocks() if b.language in RUN and b.not_run is None]
    assert len(pages()) >= 15
    assert len(runnable) >= 60, len(runnable)


def test_every_block_runs_or_says_why_not() -> None:
    silent = [
        b.where
        for b in site_blocks()
        if b.language not in RUN and b.file is None and b.not_run is None
    ]
    assert not silent, f"neither run nor said why not: {silent}"
    not_run = [b.where for b in site_blocks() if b.not_run is not None]
    assert len(not_run) <= MAX_NOT_RUN, not_run


def test_pages_use_code_blocks_not_bare_literal_blocks() -> None:
    bare = [
        f"{page.relative_to(ROOT)}:{i + 1}"
        for page in pages()
        for i, line in enumerate(page.read_text().splitlines())
        if _LITERAL.match(line)
    ]
    assert not bare, f"a '::' block is neither run nor checked; use a code-block: {bare}"


# -- running a page ----------------------------------------------------------------------------


def cli_runner() -> Run:
    """Return the CLI as the README's shell runs it: argv in, status and output out."""

    def run(*argv: str, stdin: str = "", merged: bool = False) -> Result:
        out, err = io.StringIO(), io.StringIO()
        stream = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
        code = main(
            list(argv), now=lambda: NOW, stdin=stream, stdout=out, stderr=out if merged else err
        )
        return Result(code, out.getvalue(), err.getvalue())

    return run


@pytest.fixture
def workdir(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, consul_server: ConsulServer
) -> Iterator[pathlib.Path]:
    """Give a page its own folder (on sys.path) and a Consul in the consul CLI's environment."""
    for name in CONSUL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CONSUL_HTTP_ADDR", consul_server.addr)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        module_file = getattr(sys.modules[name], "__file__", None) or ""
        if module_file.startswith(str(tmp_path)):
            del sys.modules[name]


_TIMING = re.compile(r" in \d+(?:\.\d+)?s\b")


class DocShell(ReadmeShell):
    """The README's shell, which also runs ``pytest`` on the files a page wrote.

    pytest runs in a subprocess, in the page's folder, without the consul CLI's
    environment (so the plugin's fixtures start the embedded server); its output must be
    the lines shown, but for the time a run took.
    """

    def step(self, command: str, note: str | None, shown: list[str]) -> None:
        if not command.startswith("pytest "):
            super().step(command, note, shown)
            return
        expected = int(note.split()[1]) if note and re.fullmatch(r"exit \d", note) else 0
        env = {k: v for k, v in os.environ.items() if k not in CONSUL_ENV}
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *command.split()[1:]],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == expected, done.stdout + done.stderr

        def normal(lines: list[str]) -> list[str]:
            return [" ".join(_TIMING.sub(" in <time>", line).split()) for line in lines]

        assert normal(done.stdout.splitlines()) == normal(shown), done.stdout


def run_page(page: pathlib.Path, workdir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    namespace: dict[str, object] = {"__name__": "docs_page"}
    shell = DocShell(cli_runner(), monkeypatch)
    try:
        for block in blocks(page):
            if block.not_run is not None:
                continue
            if block.file is not None:
                target = workdir / block.file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(block.code)
                if target.suffix == ".py":
                    compile(block.code, block.where, "exec")
                elif target.suffix == ".json":
                    json.loads(block.code)
            elif block.language == "python":
                try:
                    exec(compile(block.code, block.where, "exec"), namespace)
                except ModuleNotFoundError as exc:
                    if (exc.name or "").split(".")[0] not in OPTIONAL:
                        raise
                    pytest.skip(f"{block.where} needs {exc.name}")
            elif block.language == "console":
                shell.block(block.code.rstrip("\n").splitlines())
    finally:
        shell.close()


@pytest.mark.consul
@pytest.mark.parametrize(
    "page", [p for p in pages() if blocks(p)], ids=lambda p: str(p.relative_to(DOCS))
)
def test_page_runs_as_written(
    page: pathlib.Path, workdir: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_page(page, workdir, monkeypatch)


# -- the lifecycle page's gunicorn set-up, run for real ------------------------------------------


def page_files(page: pathlib.Path, folder: pathlib.Path, *names: str) -> None:
    """Write the blocks of ``page`` captioned ``names`` into ``folder``."""
    found = {b.file: b.code for b in blocks(page) if b.file in names}
    assert set(found) == set(names), f"{page} lacks {set(names) - set(found)}"
    for name, code in found.items():
        (folder / name).write_text(code)


@pytest.mark.consul
def test_gunicorn_gives_each_worker_a_provider_and_closes_it(
    tmp_path: pathlib.Path, consul_server: ConsulServer
) -> None:
    """The lifecycle page's shop.py and gunicorn.conf.py, under gunicorn --preload, 2 workers.

    Each worker gets its own provider after the fork (its own fleet record; the master has
    none), requests go through the default provider, and SIGTERM closes every provider:
    the fleet records go with their sessions before gunicorn exits.
    """
    pytest.importorskip("flask")
    gunicorn = pytest.importorskip("gunicorn.config")
    page_files(DOCS / "howto" / "lifecycle.rst", tmp_path, "shop.py", "gunicorn.conf.py")
    env = {k: v for k, v in os.environ.items() if k not in CONSUL_ENV}
    env["CONSUL_HTTP_ADDR"] = consul_server.addr
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", "127.0.0.1:0"]
    if "control_socket_disable" in gunicorn.Config().settings:  # gunicorn 27: no socket in ~
        command.append("--no-control-socket")
    fleet = "config/dev/fleet/shop/"
    records: list[set[str]] = []
    changed = threading.Condition()

    def seen(snapshot: Mapping[str, bytes]) -> None:
        with changed:
            records.append(set(snapshot))
            changed.notify_all()

    coord = breaker.ConsulCoord(consul_server.addr)
    coord.watch(fleet, seen)
    server = subprocess.Popen(
        [*command, "shop:create_app()"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stderr is not None
        port, workers = 0, list[int]()
        while len(workers) < 2:
            line = server.stderr.readline()
            assert line, "gunicorn stopped before its workers booted"
            if match := re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
            if match := re.search(r"Booting worker with pid: (\d+)", line):
                workers.append(int(match.group(1)))
        expected = {f"{fleet}{socket.gethostname()}-{pid}.json" for pid in workers}
        with changed:  # each worker's post_fork provider publishes its record
            assert changed.wait_for(lambda: bool(records) and records[-1] == expected, 10), records
        pay = urllib.request.Request(f"http://127.0.0.1:{port}/orders/o-1/pay", method="POST")
        with urllib.request.urlopen(pay, timeout=10) as answer:
            assert json.load(answer) == {"charge": "charged o-1"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/breakers", timeout=10) as answer:
            status = json.load(answer)
        # Either worker may answer: its own breakers, per process (the other has none yet).
        assert status["service"] == "shop" and set(status["breakers"]) <= {"payments"}
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
        assert server.returncode == 0, err
        assert consul_server.keys(fleet) == []  # each worker_exit closed its provider
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.communicate()
        coord.close()
