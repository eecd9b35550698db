"""A local HTTP server for the HTTP client integrations: its path says how it answers.

``/status/<code>``
    That status, with a short body.
``/big/<bytes>``
    200 with a body that long (for a caller that stops reading early).
``/short/<code>``
    That status and a ``Content-Length`` of 1000, then 10 bytes, then the server hangs
    up: a server dying mid-body, or a wrong ``Content-Length``, as the client sees it.
``/chunks-cut/<code>``
    That status, a chunked body whose first chunk arrives and whose end never does: the
    server hangs up.
``/reset/<code>``
    That status, 10 of 1000 bytes, then a TCP reset.
``/stall/<code>``
    That status, 10 of 1000 bytes, then nothing until the server stops (or ``release``).
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROMISED = 1000
SENT = b"0123456789"


class Downstream(ThreadingHTTPServer):
    """Answer as the path says (see the module docstring); count every request it receives."""

    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits = 0
        self.paths: list[str] = []
        self.release = threading.Event()  # ends every stalled body

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Downstream

    def do_GET(self) -> None:
        self.server.hits += 1
        self.server.paths.append(self.path)
        kind, _, arg = self.path.lstrip("/").partition("/")
        try:
            if kind == "big":
                self._big(int(arg))
            elif kind == "chunks-cut":
                self._chunks_cut(int(arg))
            elif kind in ("short", "reset", "stall"):
                self._cut(int(arg), kind)
            else:
                code = int(arg) if kind == "status" else 200
                self._answer(code, f"answered {code}".encode())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up first: nothing more to say

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _big(self, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        piece = b"x" * 65536
        while size > 0:
            self.wfile.write(piece[:size])
            size -= len(piece)

    def _cut(self, code: int, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(PROMISED))
        self.end_headers()
        self.wfile.write(SENT)
        self.wfile.flush()
        if kind == "stall":
            self.server.release.wait(10)
        elif kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _chunks_cut(self, code: int) -> None:
        self.protocol_version = "HTTP/1.1"  # chunked bodies need it
        self.send_response(code)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(SENT), SENT))
        self.wfile.flush()
        self.close_connection = True  # and never the last, empty chunk

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def downstream() -> Iterator[Downstream]:
    """Run a `Downstream` on 127.0.0.1 and a free port for the duration of the block."""
    server = Downstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), name="test-downstream")
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        thread.join()
        server.server_close()


def refused_url() -> str:
    """Return the URL of a port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
