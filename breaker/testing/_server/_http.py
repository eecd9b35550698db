"""The wire: a threaded HTTP/1.1 server whose connections `stop` can cut.

It reads a request, hands it to the agent layer (`App.handle`) and writes back the `Reply`
unchanged. What Go's ``net/http`` answers before any handler runs (a request line it cannot
parse) is written here, byte for byte as Go writes it.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from breaker.testing._server import _go as go

JOIN_TIMEOUT = 5.0
MAX_BODY = 64 * 1024 * 1024
TEXT = "text/plain; charset=utf-8"
_NON_ASCII = re.compile(rb"[\x80-\xff]")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as it arrived (header names lower-cased)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    time: float


@dataclass(frozen=True)
class Request:
    """A request as the agent layer sees it: the target still escaped, as Go keeps it."""

    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]
    body: bytes
    time: float
    epoch: int


@dataclass
class Reply:
    """An answer: status, body and headers, written as given (``Date`` and length added)."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


class HTTPError(Exception):
    """An error answer with ``status`` and ``message`` as its plain-text body."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class Dropped(Exception):
    """Raised where a request must end without an answer (hang released, server stopping)."""


class App(Protocol):
    """What answers requests: the agent layer."""

    def handle(self, request: Request) -> Reply:
        """Answer ``request``, or raise `Dropped` to close the connection unanswered."""
        ...


def go_bad_request(status: int = 400) -> bytes:
    """Return what Go's server writes when it cannot read a request: no handler involved."""
    text = f"{status} {HTTPStatus(status).phrase}"
    return f"HTTP/1.1 {text}\r\nContent-Type: {TEXT}\r\nConnection: close\r\n\r\n{text}".encode()


class HTTPServer(socketserver.TCPServer):
    """A threading TCP server that knows its connections so that stop can cut them."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, epoch: int) -> None:
        self.app = app
        self.epoch = epoch
        self._conn_lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            super().__init__(address, _Handler)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise

    def serve(self) -> None:
        """Accept connections until `wake` is called (no polling, so stop is immediate)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        request, client_address = self.get_request()
                    except OSError:
                        continue
                    self.process_request(request, client_address)

    def wake(self) -> None:
        """Make `serve` return."""
        self._wake_w.send(b"\0")

    def server_close(self) -> None:
        """Close the listening socket and the wake-up pair."""
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread of its own."""
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"ConsulServer-{self.server_address[1]}-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[request] = thread
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            pass  # a client that breaks its connection must not take the server down
        finally:
            self.shutdown_request(request)
            with self._conn_lock:
                self._conns.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients that go away are part of the tests."""

    def drop_connections(self) -> None:
        """Cut every open connection and wait for their threads to finish."""
        with self._conn_lock:
            conns = list(self._conns.items())
        for sock, _ in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + JOIN_TIMEOUT
        for _, thread in conns:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: HTTPServer
    raw_requestline: bytes

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; the requests log records what tests need."""

    def __getattr__(self, name: str) -> Callable[[], None]:
        # Go hands every method token to the handler (which may answer 405); http.server
        # looks for do_<METHOD> and would answer 501 itself.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def parse_request(self) -> bool:
        """Read the request line as Go does, which splits it on spaces and nothing else.

        http.server splits on any Unicode space, and bytes such as 0x85 and 0xA0 inside a
        UTF-8 character count as such in Latin-1; escaped, they mean the same to Go.
        """
        self.raw_requestline = _NON_ASCII.sub(
            lambda match: b"%%%02X" % match.group()[0], self.raw_requestline
        )
        return super().parse_request()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request that could not be read the way Go's server does."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.write(go_bad_request(400 if code in (400, 414, 505) else code))

    def _serve(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        if go.has_control_byte(self.path) or go.has_bad_escape(raw_path):
            self.send_error(400)  # net/url refuses the target before any handler runs
            return
        try:
            body = self._read_body()
        except HTTPError as exc:
            if exc.status == 400:
                self.send_error(400)
            else:
                self._send(Reply(exc.status, exc.message.encode(), TEXT, close=True))
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        request = Request(
            self.command, raw_path, raw_query, headers, body, time.monotonic(), self.server.epoch
        )
        try:
            reply = self.server.app.handle(request)
        except Dropped:
            self.close_connection = True
            return
        self._send(reply)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(65537)
                chunk_size = int(line.split(b";")[0].strip() or b"0", 16)
                if chunk_size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += chunk_size
                if size > MAX_BODY:
                    raise HTTPError(413, "request body too large")
                chunks.append(self.rfile.read(chunk_size))
                self.rfile.readline(65537)
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise HTTPError(400, "400 Bad Request") from None
        if length > MAX_BODY:
            raise HTTPError(413, "request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response_only(reply.status)
            self.send_header("Date", self.date_time_string())
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.content_type is not None:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.close:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and reply.body:
                self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True
