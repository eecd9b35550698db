"""The wire: request bodies as Go's server reads them, and connections that break."""

from __future__ import annotations

import errno
import gc
import socket
import struct
from typing import TYPE_CHECKING

import pytest

from breaker.testing._server import ConsulServer
from tests.helpers import eventually
from tests.testing_server.helpers import send, send_bytes, server_threads

if TYPE_CHECKING:
    # Imported for real by the root conftest's pytest_plugins; importing it here first would
    # stop pytest from rewriting its asserts.
    from breaker.testing.pytest_plugin import ConsulHandle


def put_request(key: str, headers: str, body: bytes, token: str | None = None) -> bytes:
    head = f"PUT /v1/kv/{key} HTTP/1.1\r\nHost: consul\r\n{headers}"
    if token:
        head += f"X-Consul-Token: {token}\r\n"
    return head.encode() + b"\r\n" + body


def test_a_chunked_body_is_read_whole(consul: ConsulHandle, consul_prefix: str) -> None:
    key = consul_prefix + "chunked"
    body = b"3;name=value\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: ignored\r\n\r\n"

    answer = send_bytes(
        consul.url, put_request(key, "Transfer-Encoding: chunked\r\n", body, consul.token)
    )

    assert (answer.status, answer.body) == (200, b"true")
    assert consul.get(key) == b"abcde"


def test_an_unreadable_content_length_is_refused_as_go_refuses_it(consul: ConsulHandle) -> None:
    answer = send_bytes(consul.url, put_request("k", "Content-Length: ten\r\n", b"0123456789"))

    assert (answer.status, answer.body) == (400, b"400 Bad Request")
    assert answer.headers["Connection"] == "close"


@pytest.mark.parametrize(
    "headers",
    ["Content-Length: 67108865\r\n", "Transfer-Encoding: chunked\r\n"],
    ids=["content-length", "chunked"],
)
def test_a_body_over_64_mib_is_refused_unread(consul_server: ConsulServer, headers: str) -> None:
    """A guard of the stand-in's own (Go would stream it), so a test cannot exhaust memory."""
    body = b"4000001\r\n" if "chunked" in headers else b""  # a first chunk of 64 MiB + 1

    answer = send_bytes(consul_server.url, put_request("k", headers, body))

    assert (answer.status, answer.body) == (413, b"request body too large")
    assert answer.headers["Connection"] == "close"
    assert consul_server.requests_log == []


def test_a_port_in_use_fails_to_start_and_leaks_nothing() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        server = ConsulServer(port=taken.getsockname()[1])
        with pytest.raises(OSError) as info:
            server.start()
        assert info.value.errno == errno.EADDRINUSE
        assert not server.running
        gc.collect()  # an unclosed socket would warn here, and warnings are errors


def test_a_client_that_resets_mid_request_does_not_take_the_server_down(
    consul_server: ConsulServer,
) -> None:
    def connection_threads() -> list[str]:
        return [name for name in server_threads() if name.endswith("-conn")]

    with socket.create_connection(("127.0.0.1", consul_server.port), timeout=5) as client:
        client.sendall(put_request("k", "Content-Length: 10\r\n", b"abc"))
        eventually(lambda: len(connection_threads()) == 1)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    eventually(lambda: connection_threads() == [])

    assert send(consul_server.url, "PUT", "/v1/kv/k", body=b"whole").body == b"true"
    assert consul_server.get("k") == b"whole"
