"""A local HTTP server for the HTTP client integrations: its path says how it answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Downstream(ThreadingHTTPServer):
    """Answer ``/status/<code>`` with that status; count every request it receives."""

    daemon_threads = False  # server_close() joins the handler threads
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits = 0
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Downstream

    def do_GET(self) -> None:
        self.server.hits += 1
        self.server.paths.append(self.path)
        code = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
        body = f"answered {code}".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

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
        server.shutdown()
        thread.join()
        server.server_close()


def refused_url() -> str:
    """Return the URL of a port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
