"""FaultProxy: a TCP proxy that breaks the network on cue.

Most tests put it in front of a bare TCP server that the test drives byte by byte, so what
the proxy forwards, holds or breaks is seen exactly. `settle` waits, without sleeping, until
the proxy has handled what was sent before it.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator

import pytest

from breaker.testing import FaultProxy

TIMEOUT = 5.0


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    """A listening socket the test accepts from itself: the server behind the proxy."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(TIMEOUT)
        yield server


@pytest.fixture
def proxy(upstream: socket.socket) -> Iterator[FaultProxy]:
    with FaultProxy(upstream.getsockname()) as proxy:
        yield proxy


class Pair:
    """A client connected through the proxy, and the server's end of that connection."""

    def __init__(self, proxy: FaultProxy, upstream: socket.socket, *, rcvbuf: int = 0) -> None:
        self.client = socket.socket()
        if rcvbuf:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.client.settimeout(TIMEOUT)
        self.client.connect(("127.0.0.1", proxy.port))
        self.server, _ = upstream.accept()
        self.server.settimeout(TIMEOUT)

    def close(self) -> None:
        self.client.close()
        self.server.close()


@pytest.fixture
def connect(proxy: FaultProxy, upstream: socket.socket) -> Iterator[Callable[..., Pair]]:
    """Connect a `Pair` through ``proxy`` (``rcvbuf``: the client's receive buffer)."""
    pairs: list[Pair] = []

    def connect(*, rcvbuf: int = 0) -> Pair:
        pairs.append(Pair(proxy, upstream, rcvbuf=rcvbuf))
        return pairs[-1]

    yield connect
    for pair in pairs:
        pair.close()


@pytest.fixture
def pair(connect: Callable[..., Pair]) -> Pair:
    return connect()


def settle(proxy: FaultProxy) -> int:
    """Return the open connections once the proxy has handled every event before this call.

    A question to the proxy runs in its thread between two rounds of events; the first may
    be answered in a round that polled before the last bytes arrived, the second cannot.
    """
    proxy.open_connections  # noqa: B018
    return proxy.open_connections


def receive(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes (fewer only if the peer closed)."""
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def receive_all(sock: socket.socket) -> bytes:
    """Read until the peer closes."""
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def abort(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed peer does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- forwarding ------------------------------------------------------------------------------------


def test_bytes_that_are_not_http_pass_both_ways_at_once(pair: Pair) -> None:
    pair.client.sendall(b"PING\n")
    assert receive(pair.server, 5) == b"PING\n"
    pair.server.sendall(b"PONG\n")  # no HTTP head to wait for: forwarded as it is
    assert receive(pair.client, 5) == b"PONG\n"


# -- lifecycle -------------------------------------------------------------------------------------


def test_closed_then_started_again_it_forwards_on_the_same_port(
    upstream: socket.socket,
) -> None:
    proxy = FaultProxy(upstream.getsockname()).start()
    port = proxy.port
    proxy.close()
    with proxy.start():
        assert proxy.port == port
        pair = Pair(proxy, upstream)
        try:
            pair.client.sendall(b"again")
            assert receive(pair.server, 5) == b"again"
        finally:
            pair.close()
