"""What many test modules share: the prefix, errors that stand for outcomes, tiny calls."""

from __future__ import annotations

import contextlib
import pathlib
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from breaker import MemoryCoord
from breaker.testing import ACLRule, ConsulServer, FakeClock

PREFIX = "config/dev/checkout/breakers/"
TLS = pathlib.Path(__file__).parent / "tls"
"""A test PKI (``tls/make.sh``): ca.pem, server.pem for 127.0.0.1, client.pem, their keys."""


class Boom(Exception):
    """The downstream failed."""


class NotFound(Exception):
    """The downstream answered: the thing does not exist (usually excluded)."""


class Abort(BaseException):
    """Neither success nor failure, as KeyboardInterrupt or CancelledError."""


def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` is true (a thread or a server makes it so), ``timeout`` at most.

    The one poll-until of the tests: use it where the code exposes nothing to wait on.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {predicate}")
        time.sleep(0.002)


def ok() -> str:
    return "ok"


def fail() -> None:
    raise Boom("downstream failed")


async def aok() -> str:
    return "ok"


async def afail() -> None:
    raise Boom("downstream failed")


@contextlib.contextmanager
def acl_server(
    tokens: Mapping[str, Iterable[ACLRule]], *, keys: Mapping[str, str] | None = None
) -> Iterator[ConsulServer]:
    """Run a stand-in with ACLs on and a default-deny policy, holding ``keys``."""
    with ConsulServer(jitter=False, acl_tokens=tokens, acl_default_policy="deny") as server:
        for key, value in (keys or {}).items():
            server.put(key, value)
        yield server


class FakeSleep:
    """A watcher's sleep on a `FakeClock`: record the pause, move the clock, return at once.

    ``on_pause`` runs first (a test's cue to inject a fault). After ``park_after`` pauses it
    parks until the watch stops, so a watcher facing an endless fault makes a known number
    of requests instead of spinning.
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        park_after: int | None = None,
        on_pause: Callable[[float], None] | None = None,
    ) -> None:
        self.clock = clock
        self.pauses: list[float] = []
        self.park_after = park_after
        self.on_pause = on_pause
        self.parked = threading.Event()

    def __call__(self, seconds: float, stop: threading.Event) -> bool:
        if self.park_after is not None and len(self.pauses) >= self.park_after:
            self.parked.set()
            return stop.wait()
        if self.on_pause is not None:
            self.on_pause(seconds)
        self.pauses.append(seconds)
        self.clock.advance(seconds)
        return stop.is_set()


def tls_server_context() -> ssl.SSLContext:
    """Serve as ``tls/server.pem`` (127.0.0.1), requiring a client certificate of the CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "server.pem", TLS / "server-key.pem")
    context.load_verify_locations(TLS / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class Impostor:
    """Something at Consul's address that is not quite Consul: one canned answer to anything.

    ``tls`` (an SSL context for the server side) serves https. Each request is recorded with
    the subject of the client certificate, if one was presented.
    """

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self.body = b""
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, client CN
        self.hanging = False  # read requests, never answer them (until the impostor stops)
        self._stopping = threading.Event()
        impostor = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                peer = getattr(self.connection, "getpeercert", lambda: None)()
                subject = dict(pair[0] for pair in peer["subject"]) if peer else {}
                impostor.requests.append((self.command, self.path, subject.get("commonName")))
                if impostor.hanging:
                    impostor._stopping.wait()
                    return
                self.send_response(impostor.status)
                for name, value in impostor.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(impostor.body)))
                self.end_headers()
                self.wfile.write(impostor.body)

            do_GET = do_PUT = do_DELETE = answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        # A short poll: shutdown() waits for serve_forever to notice.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    def answer(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        """Answer every request from now on with ``status``, ``headers`` and ``body``."""
        self.status, self.body, self.headers = status, body, dict(headers or {})

    def __enter__(self) -> Impostor:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def save_coverage() -> None:
    """In a forked child about to ``os._exit``: save what coverage measured there, if it runs.

    The child's data file gets a name of its own (coverage notices the new pid) and
    pytest-cov combines it with the parent's, so code that only a child runs is measured.
    """
    import coverage  # the test extra's

    cov = coverage.Coverage.current()
    if cov is not None:
        cov.save()


def _forward(name: str) -> Callable[..., Any]:
    def method(self: SharedCoord, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._store, name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    return method


class SharedCoord:
    """One MemoryCoord seen by many providers: closing one provider closes nothing shared.

    The store's methods are defined on the class, not found through ``__getattr__``:
    Python 3.12 and later check a runtime protocol (``breaker.Coord``, its capabilities)
    with ``inspect.getattr_static``, which does not call ``__getattr__``.
    """

    def __init__(self, store: MemoryCoord) -> None:
        self._store = store

    def close(self) -> None:
        pass


for _name in [n for n in vars(MemoryCoord) if not n.startswith("_") and n != "close"]:
    setattr(SharedCoord, _name, _forward(_name))
