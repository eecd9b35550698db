"""Fixtures of the CLI's tests: the embedded Consul server in the environment, a runner."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Iterator
from datetime import datetime

import pytest

from breaker._cli import main
from breaker.testing import ACLRule, ConsulServer

from .support import (
    CONSUL_ENV,
    NOW,
    PREFIX,
    Result,
    Run,
)


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
