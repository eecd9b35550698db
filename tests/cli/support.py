"""What the CLI's tests share: the clock, the paths, a runner's result, streams, shells."""

from __future__ import annotations

import io
import json
import pathlib
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest

from breaker._cli import main
from breaker.coord.consul._coord import ConsulCoord
from breaker.testing import ConsulServer

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
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
    "BREAKER_POLICIES_PATH",
    "BREAKER_HISTORY_PATH",
    "BREAKER_BY",
    "BREAKER_FLEET_PATH",
    "BREAKER_SERVICE",
)
HISTORY = "config/dev/checkout/breakers-history/"


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


def write(path: str, text: str) -> str:
    pathlib.Path(path).write_text(text)
    return path


def stored(server: ConsulServer, name: str) -> Any:
    raw = server.get(f"{PREFIX}{name}.json")
    return None if raw is None else json.loads(raw)


WRITE_VERBS = {"set", "cas", "delete", "delete-cas", "delete-tree", "lock", "unlock"}


def transactions(server: ConsulServer) -> list[list[dict[str, Any]]]:
    """Return the KV operations of each write transaction the server received, in order."""
    found = []
    for request in server.requests_log:
        if request.method == "PUT" and request.path == "/v1/txn":
            ops = [op["KV"] for op in json.loads(request.body)]
            if any(op["Verb"] in WRITE_VERBS for op in ops):
                found.append(ops)
    return found


def document_ops(server: ConsulServer, name: str) -> list[list[tuple[str, int]]]:
    """Return, per write transaction, its operations on ``name``'s document: (verb, index)."""
    key = f"{PREFIX}{name}.json"
    return [
        [(op["Verb"], op.get("Index", 0)) for op in ops if op["Key"] == key]
        for ops in transactions(server)
    ]


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
