"""FaultProxy: a TCP proxy that breaks the network on cue.

Most tests put it in front of a bare TCP server that the test drives byte by byte, so what
the proxy forwards, holds or breaks is seen exactly. `settle` waits, without sleeping, until
the proxy has handled what was sent before it.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import sys
from collections.abc import Callable, Iterator

import pytest
import requests

from breaker.testing import ConsulServer, FaultProxy

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


# -- forwarding ------------------------------------------------------------------------------


def test_bytes_that_are_not_http_pass_both_ways_at_once(pair: Pair) -> None:
    pair.client.sendall(b"PING\n")
    assert receive(pair.server, 5) == b"PING\n"
    pair.server.sendall(b"PONG\n")  # no HTTP head to wait for: forwarded as it is
    assert receive(pair.client, 5) == b"PONG\n"


def test_a_slow_reader_gets_a_large_stream_whole_and_in_order(
    connect: Callable[..., Pair],
) -> None:
    pair = connect(rcvbuf=4096)
    payload = b"".join(i.to_bytes(4, "big") for i in range(2 * 1024 * 1024))  # 8 MiB
    pair.server.sendall(payload)  # far more than the sockets between can hold
    pair.server.shutdown(socket.SHUT_WR)
    received = receive_all(pair.client)  # only now does the client read
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


def test_a_response_head_split_across_packets_is_still_rewritten(
    proxy: FaultProxy, pair: Pair
) -> None:
    proxy.rewrite_header("X-Consul-Index", "0")
    pair.server.sendall(b"HTTP/1.1 200 OK\r\nX-Consul-Index: 57\r\n")
    assert settle(proxy) == 1  # the proxy holds the incomplete head
    pair.server.sendall(b"Content-Length: 2\r\n\r\nok")
    expected = b"HTTP/1.1 200 OK\r\nX-Consul-Index: 0\r\nContent-Length: 2\r\n\r\nok"
    assert receive(pair.client, len(expected)) == expected


def test_a_chunked_body_passes_untouched(proxy: FaultProxy, pair: Pair) -> None:
    proxy.rewrite_header("X-Consul-Index", "0")
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Consul-Index: 57\r\n\r\n"
    pair.server.sendall(head)
    rewritten = head.replace(b"57", b"0")
    assert receive(pair.client, len(rewritten)) == rewritten
    # Chunks that look like a response head are body: no framing to follow, nothing edited.
    body = b"1a\r\nX-Consul-Index: 9\r\n\r\nabcd\r\n0\r\n\r\n"
    pair.server.sendall(body)
    assert receive(pair.client, len(body)) == body


def test_a_response_cut_off_in_its_head_arrives_as_sent_then_the_close(pair: Pair) -> None:
    pair.server.sendall(b"HTTP/1.1 200 OK\r\nX-Consul-Ind")
    pair.server.close()
    assert receive_all(pair.client) == b"HTTP/1.1 200 OK\r\nX-Consul-Ind"


# -- faults ----------------------------------------------------------------------------------


def test_latency_cannot_be_negative(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="latency cannot be negative"):
        proxy.set_latency(to_server=-1)


def test_a_black_hole_swallows_what_open_connections_send(proxy: FaultProxy, pair: Pair) -> None:
    pair.client.sendall(b"a")
    assert receive(pair.server, 1) == b"a"
    proxy.blackhole()
    pair.client.sendall(b"lost")
    assert settle(proxy) == 1  # read and swallowed; the connection stays open
    proxy.blackhole(False)
    pair.client.sendall(b"c")
    assert receive(pair.server, 1) == b"c"


def test_a_fault_set_before_start_applies_to_the_first_connection(
    upstream: socket.socket,
) -> None:
    proxy = FaultProxy(upstream.getsockname())
    proxy.blackhole()
    with proxy, socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT):
        assert settle(proxy) == 1
        assert proxy.accepted == 1
        upstream.setblocking(False)
        with pytest.raises(BlockingIOError):
            upstream.accept()  # the proxy never connected to the server


def test_a_client_that_resets_resets_the_server_too(proxy: FaultProxy, pair: Pair) -> None:
    pair.client.sendall(b"half a request")
    assert receive(pair.server, 14) == b"half a request"
    abort(pair.client)
    with pytest.raises(ConnectionResetError):
        pair.server.recv(1)


def test_a_client_that_resets_mid_download_resets_the_server_too(
    proxy: FaultProxy, connect: Callable[..., Pair]
) -> None:
    pair = connect(rcvbuf=4096)
    pair.client.shutdown(socket.SHUT_WR)  # the request is sent; now it only downloads
    assert pair.server.recv(1) == b""
    pair.server.sendall(bytes(8 * 1024 * 1024))  # more than the client will ever read
    assert settle(proxy) == 1
    abort(pair.client)  # the proxy finds out when it next writes to it
    assert settle(proxy) == 0
    with pytest.raises((ConnectionResetError, BrokenPipeError)):
        pair.server.sendall(b"more")  # the server was reset as well


def test_a_server_that_is_down_looks_down_to_the_client() -> None:
    with socket.create_server(("127.0.0.1", 0)) as gone:
        address = gone.getsockname()
    with FaultProxy(address) as proxy:
        # The reset may come before connect() returns, or on the first read.
        with (
            pytest.raises(ConnectionResetError),
            socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT) as client,
        ):
            client.recv(1)
        assert proxy.accepted == 1
        assert proxy.open_connections == 0


def test_sever_is_refused_where_tcp_repair_is_missing(
    proxy: FaultProxy, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert FaultProxy.can_sever() is False
    with pytest.raises(PermissionError, match="TCP_REPAIR"):
        proxy.sever()
    assert proxy.open_connections == 1


def test_sever_is_refused_without_cap_net_admin(
    proxy: FaultProxy, pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    setsockopt = socket.socket.setsockopt

    def unprivileged(sock: socket.socket, level: int, option: int, value: object) -> None:
        if (level, option) == (socket.IPPROTO_TCP, 19):  # TCP_REPAIR
            raise PermissionError(1, "Operation not permitted")
        setsockopt(sock, level, option, value)  # type: ignore[call-overload]

    monkeypatch.setattr(socket.socket, "setsockopt", unprivileged)
    assert FaultProxy.can_sever() is False
    with pytest.raises(PermissionError):
        proxy.sever()
    pair.client.sendall(b"still here")  # nothing was severed
    assert receive(pair.server, 10) == b"still here"


# -- lifecycle -------------------------------------------------------------------------------


def test_start_is_idempotent_and_close_is_safe_at_any_time(upstream: socket.socket) -> None:
    host, port = upstream.getsockname()
    proxy = FaultProxy(f"{host}:{port}")
    proxy.close()  # never started: nothing to do
    assert proxy.start() is proxy
    listening = proxy.port
    assert proxy.start() is proxy
    assert proxy.port == listening
    proxy.close()
    proxy.close()


def test_a_proxy_that_is_not_running_says_so(upstream: socket.socket) -> None:
    proxy = FaultProxy(upstream.getsockname())
    with pytest.raises(RuntimeError, match="the proxy is not running"):
        proxy.reset()
    with proxy:
        assert proxy.open_connections == 0
    with pytest.raises(RuntimeError, match="the proxy is not running"):
        assert proxy.open_connections == 0


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


def test_http_through_the_proxy(consul_server: ConsulServer) -> None:
    consul_server.put("k", "v")
    with FaultProxy(consul_server.addr) as proxy, requests.Session() as session:
        session.trust_env = False
        assert session.get(proxy.url + "/v1/kv/k?raw", timeout=TIMEOUT).content == b"v"
