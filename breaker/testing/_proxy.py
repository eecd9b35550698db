"""A TCP proxy for tests: it sits between a client and a server and breaks the network on cue.

One thread serves every connection with non-blocking sockets, so latency, pauses and
black holes cost no thread per connection, and `FaultProxy.close` has one thread to stop.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["FaultProxy"]

_CHUNK = 65536
_CONNECT_TIMEOUT = 2.0
_JOIN_TIMEOUT = 5.0
_TCP_REPAIR = 19  # linux/tcp.h; not exported by the socket module
_TCP_QUICKACK = 12  # linux/tcp.h
_HEAD_END = b"\r\n\r\n"
_STATUS_LINE = b"HTTP/"  # how every HTTP/1.x response starts


class FaultProxy:
    """Forward TCP connections from 127.0.0.1 to ``upstream``, with network faults on demand.

    Start it with `start` or a ``with`` block; it listens on ``port`` (0 picks a free one).
    Faults apply from the moment they are set: `set_latency` delays each direction,
    `pause` holds every byte until `resume`, `blackhole` accepts and never answers (and
    stops forwarding on open connections without closing them), `reset` aborts open
    connections with a TCP reset, `sever` makes them vanish without a word (a partition
    or a rebooted peer), `rewrite_header` edits HTTP response headers in passing.
    """

    def __init__(self, upstream: str | tuple[str, int], *, port: int = 0) -> None:
        if isinstance(upstream, str):
            host, _, port_text = upstream.rpartition(":")
            upstream = (host, int(port_text))
        self._upstream = upstream
        self._port = port
        self._lock = threading.Lock()
        self._latency = (0.0, 0.0)  # (to the server, to the client)
        self._paused = False
        self._blackhole = False
        self._rewrites: dict[str, str] = {}
        self._commands: deque[_Command] = deque()
        self._conns: list[_Conn] = []
        self._accepted = 0
        self._closing = False
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector  # made by start(), closed by its thread

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Listen on 127.0.0.1 and start forwarding; no-op if already started.

        After `close` it listens again on the same port, as a network path that came back.
        """
        if self._thread is not None:
            return self
        self._closing = False  # started again after close()
        self._listener = socket.create_server(("127.0.0.1", self._port))
        self._listener.setblocking(False)
        self._port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(
            target=self._serve, name=f"FaultProxy-{self._port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the thread and close every socket, connections included; idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._closing = True
        self._wake()
        thread.join(_JOIN_TIMEOUT)
        self._thread = None
        wake_r, wake_w = self._wake_r, self._wake_w
        assert wake_r is not None and wake_w is not None  # made by start(), with the thread
        wake_r.close()
        wake_w.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """Return the port the proxy listens on (0 before `start` when a free one was asked)."""
        return self._port

    @property
    def addr(self) -> str:
        """Return ``127.0.0.1:port``, the form ``CONSUL_HTTP_ADDR`` takes."""
        return f"127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """Return ``http://127.0.0.1:port``."""
        return f"http://{self.addr}"

    @property
    def accepted(self) -> int:
        """Return how many connections the proxy has accepted so far."""
        return self._accepted

    @property
    def open_connections(self) -> int:
        """Return how many accepted connections are still open."""
        return int(self._run(lambda: len(self._conns)))

    # -- faults ------------------------------------------------------------------------

    def set_latency(self, to_server: float = 0.0, to_client: float = 0.0) -> None:
        """Delay every byte by ``to_server`` seconds on its way up and ``to_client`` down."""
        if to_server < 0 or to_client < 0:
            raise ValueError("latency cannot be negative")
        self._latency = (to_server, to_client)
        self._wake()

    def pause(self) -> None:
        """Hold every byte in both directions, losing none, until `resume`."""
        self._paused = True
        self._wake()

    def resume(self) -> None:
        """Deliver what `pause` held and forward again."""
        self._paused = False
        self._wake()

    def blackhole(self, enabled: bool = True) -> None:
        """Swallow traffic silently: new connections are accepted and never answered, open
        ones stop forwarding without being closed. ``blackhole(False)`` forwards again
        (what was swallowed stays lost; connections accepted meanwhile stay unanswered)."""
        self._blackhole = enabled
        self._wake()

    def reset(self) -> None:
        """Abort every open connection with a TCP reset on both sides."""
        self._run(self._reset_all)

    def sever(self) -> None:
        """Make every open connection vanish: the client is told nothing.

        Its next packet (a keepalive probe, say) finds no connection and gets a reset, as
        when a partition outlived the peer's state or the peer rebooted. Needs Linux and
        CAP_NET_ADMIN (TCP_REPAIR); raises PermissionError otherwise (see `can_sever`).
        """
        self._run(self._sever_all)

    @staticmethod
    def can_sever() -> bool:
        """Say whether `sever` works here (Linux, with CAP_NET_ADMIN)."""
        if not sys.platform.startswith("linux"):
            return False
        with (
            socket.create_server(("127.0.0.1", 0)) as server,
            socket.create_connection(server.getsockname()) as client,
        ):
            peer, _ = server.accept()
            with peer:
                try:
                    peer.setsockopt(socket.IPPROTO_TCP, _TCP_REPAIR, 1)
                except OSError:
                    return False
                peer.setsockopt(socket.IPPROTO_TCP, _TCP_REPAIR, 0)
                _abort(client)
                return True

    def rewrite_header(self, name: str, value: str | None) -> None:
        """Set HTTP response header ``name`` to ``value`` wherever a response has it.

        None stops rewriting it. Responses are found by their Content-Length framing.
        """
        with self._lock:
            rewrites = dict(self._rewrites)
            if value is None:
                rewrites.pop(name.lower(), None)
            else:
                rewrites[name.lower()] = value
            self._rewrites = rewrites

    # -- the serving thread ------------------------------------------------------------

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def _run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the serving thread (which owns the sockets) and return its result."""
        if self._thread is None:
            raise RuntimeError("the proxy is not running")
        command = _Command(fn)
        with self._lock:
            self._commands.append(command)
        self._wake()
        if not command.done.wait(_JOIN_TIMEOUT):
            raise RuntimeError("the proxy thread did not answer")
        if command.error is not None:
            raise command.error
        return command.result

    def _serve(self) -> None:
        listener, wake_r = self._listener, self._wake_r
        assert listener is not None and wake_r is not None
        self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._selector.register(wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._closing:
                for key, mask in self._selector.select(self._next_due()):
                    if key.data == "wake":
                        with contextlib.suppress(OSError):
                            while wake_r.recv(_CHUNK):
                                pass
                    elif key.data == "accept":
                        self._accept(listener)
                    else:
                        conn, sock = key.data
                        if conn.closed:
                            continue
                        if mask & selectors.EVENT_READ:
                            self._read(conn, sock)
                        if mask & selectors.EVENT_WRITE and not conn.closed:
                            self._flush(conn, conn.direction_to(sock))
                self._run_commands()
                self._deliver_due()
                for conn in list(self._conns):
                    self._sync(conn)
        finally:
            self._run_commands()  # nobody waits forever on a command
            for conn in list(self._conns):
                self._close_conn(conn, abort=False)
            self._selector.close()
            listener.close()

    def _run_commands(self) -> None:
        with self._lock:
            commands, self._commands = self._commands, deque()
        for command in commands:
            try:
                command.result = command.fn()
            except BaseException as exc:  # handed to the caller
                command.error = exc
            command.done.set()

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        self._accepted += 1
        upstream = None
        if not self._blackhole:
            try:
                upstream = socket.create_connection(self._upstream, timeout=_CONNECT_TIMEOUT)
            except OSError:
                _abort(client)  # the server is down: the client sees a reset
                return
            upstream.setblocking(False)
        for sock in (client, upstream):
            if sock is not None:  # forward each chunk at once, as the peers wrote it
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.setblocking(False)
        conn = _Conn(client, upstream)
        self._conns.append(conn)
        self._sync(conn)

    def _read(self, conn: _Conn, sock: socket.socket) -> None:
        try:
            data = sock.recv(_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            self._close_conn(conn, abort=True)
            return
        direction = conn.direction_from(sock)
        if direction is None:  # accepted into the black hole: swallow until the client leaves
            if not data:
                self._close_conn(conn, abort=False)
            return
        if not data:
            direction.reading = False
            tail = direction.stream.finish() if direction.stream is not None else b""
            if tail:
                direction.pending.append((time.monotonic() + self._delay(direction), tail))
            direction.pending.append((time.monotonic() + self._delay(direction), None))
            return
        if self._blackhole:
            return
        if direction.stream is not None:
            data = direction.stream.feed(data, self._rewrite)
        if data:
            direction.pending.append((time.monotonic() + self._delay(direction), data))

    def _delay(self, direction: _Direction) -> float:
        return self._latency[1 if direction.to_client else 0]

    def _rewrite(self, head: bytes) -> bytes:
        rewrites = self._rewrites
        if not rewrites:
            return head
        lines = head.split(b"\r\n")
        for i, line in enumerate(lines[1:], start=1):
            name, sep, _ = line.partition(b":")
            value = rewrites.get(name.strip().decode("latin-1").lower()) if sep else None
            if value is not None:
                lines[i] = name + b": " + value.encode("latin-1")
        return b"\r\n".join(lines)

    def _next_due(self) -> float | None:
        if self._paused:
            return None
        dues = [
            d.pending[0][0]
            for conn in self._conns
            for d in conn.directions()
            if d.pending and not d.out
        ]
        return max(0.0, min(dues) - time.monotonic()) if dues else None

    def _deliver_due(self) -> None:
        if self._paused:
            return
        now = time.monotonic()
        for conn in list(self._conns):
            for direction in conn.directions():
                while direction.pending and direction.pending[0][0] <= now:
                    _, data = direction.pending.popleft()
                    if data is None:
                        direction.eof = True
                    else:
                        direction.out += data
                if not conn.closed:
                    self._flush(conn, direction)

    def _flush(self, conn: _Conn, direction: _Direction | None) -> None:
        if direction is None or self._paused:
            return
        if direction.out:
            try:
                sent = direction.dst.send(direction.out)
            except BlockingIOError:
                return
            except OSError:
                self._close_conn(conn, abort=True)
                return
            del direction.out[:sent]
        if not direction.out and direction.eof and not direction.shut:
            direction.shut = True
            with contextlib.suppress(OSError):
                direction.dst.shutdown(socket.SHUT_WR)
        if all(d.shut for d in conn.directions()):
            self._close_conn(conn, abort=False)

    def _sync(self, conn: _Conn) -> None:
        """Register each socket of ``conn`` (open: closing removes it) for what it waits for."""
        for sock in conn.sockets():
            mask = 0
            source = conn.direction_from(sock)
            if source is None or source.reading:
                mask |= selectors.EVENT_READ
            target = conn.direction_to(sock)
            if target is not None and target.out and not self._paused:
                mask |= selectors.EVENT_WRITE
            registered = conn.masks.get(sock, 0)
            if mask == registered:
                continue
            if not registered:
                self._selector.register(sock, mask, (conn, sock))
            elif mask:
                self._selector.modify(sock, mask, (conn, sock))
            else:
                self._selector.unregister(sock)
            if mask:
                conn.masks[sock] = mask
            else:
                conn.masks.pop(sock, None)

    def _close_conn(self, conn: _Conn, *, abort: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        for sock in conn.sockets():
            if sock in conn.masks:
                self._selector.unregister(sock)
            if abort:
                _abort(sock)
            else:
                sock.close()
        conn.masks.clear()
        self._conns.remove(conn)

    def _reset_all(self) -> None:
        for conn in list(self._conns):
            self._close_conn(conn, abort=True)

    def _sever_all(self) -> None:
        if not sys.platform.startswith("linux"):
            raise PermissionError("sever() needs Linux's TCP_REPAIR")
        for conn in list(self._conns):
            # Acknowledge what the client sent first, or its retransmission would find out
            # at once. Then, in repair mode, close() sends nothing: the client's side of the
            # connection lives on, talking to nobody. EPERM without CAP_NET_ADMIN.
            conn.client.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
            conn.client.setsockopt(socket.IPPROTO_TCP, _TCP_REPAIR, 1)
            self._close_conn(conn, abort=False)


class _Command:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Direction:
    """Hold bytes on their way from ``src`` to ``dst``: due times, then an output buffer."""

    def __init__(self, src: socket.socket, dst: socket.socket, *, to_client: bool) -> None:
        self.src = src
        self.dst = dst
        self.to_client = to_client
        self.pending: deque[tuple[float, bytes | None]] = deque()  # None marks the end
        self.out = bytearray()
        self.reading = True
        self.eof = False
        self.shut = False
        self.stream = _ResponseStream() if to_client else None


class _Conn:
    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.client = client
        self.upstream = upstream
        self.closed = False
        self.masks: dict[socket.socket, int] = {}
        self.up: _Direction | None = None
        self.down: _Direction | None = None
        if upstream is not None:
            self.up = _Direction(client, upstream, to_client=False)
            self.down = _Direction(upstream, client, to_client=True)

    def sockets(self) -> list[socket.socket]:
        return [self.client] if self.upstream is None else [self.client, self.upstream]

    def directions(self) -> list[_Direction]:
        return [] if self.up is None or self.down is None else [self.up, self.down]

    def direction_from(self, sock: socket.socket) -> _Direction | None:
        return next((d for d in self.directions() if d.src is sock), None)

    def direction_to(self, sock: socket.socket) -> _Direction | None:
        return next((d for d in self.directions() if d.dst is sock), None)


_LENGTH = re.compile(rb"^content-length:\s*(\d+)\s*$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding:.*chunked", re.I | re.M)


class _ResponseStream:
    """Find the head of each HTTP response in a byte stream, so headers can be rewritten.

    Framing follows Content-Length; a response without one (chunked, or read until close),
    or bytes that do not start like a response (another protocol), end the search and the
    rest of the stream passes through untouched.
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self._body_left = 0
        self._raw = False

    def feed(self, data: bytes, rewrite: Callable[[bytes], bytes]) -> bytes:
        """Return what can be forwarded now, with complete heads passed through ``rewrite``."""
        if self._raw:
            return data
        out = bytearray()
        while data:
            if self._body_left:
                n = min(len(data), self._body_left)
                out += data[:n]
                data = data[n:]
                self._body_left -= n
                continue
            self._head += data
            if not self._head.startswith(_STATUS_LINE[: len(self._head)]):
                # Not a response: hold nothing back waiting for a head that never comes.
                self._raw = True
                out += self._head
                self._head.clear()
                break
            end = self._head.find(_HEAD_END)
            if end < 0:
                break
            head, data = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
            self._head.clear()
            out += rewrite(head)
            length = _LENGTH.search(head)
            if length is None or _CHUNKED.search(head):
                self._raw = True
                out += data
                break
            self._body_left = int(length.group(1))
        return bytes(out)

    def finish(self) -> bytes:
        """Return what is held back when the stream ends (an incomplete head)."""
        tail, self._head = bytes(self._head), bytearray()
        return tail


def _abort(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset instead of an orderly FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
