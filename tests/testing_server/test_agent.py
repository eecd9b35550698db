"""The agent's HTTP stack around the endpoints: paths, redirects, other endpoints."""

from __future__ import annotations

import gzip
from http.client import HTTPConnection
from typing import TYPE_CHECKING

import pytest
import requests

from breaker.testing._server import ConsulServer
from tests.testing_server.helpers import send, send_bytes

if TYPE_CHECKING:
    # Imported for real by the root conftest's pytest_plugins; importing it here first would
    # stop pytest from rewriting its asserts.
    from breaker.testing.pytest_plugin import ConsulHandle


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/v1/kv//a", "/v1/kv/a"),
        ("/v1/kv/a//b/?recurse", "/v1/kv/a/b/?recurse"),
        ("/v1/kv/a/./b", "/v1/kv/a/b"),
        ("/v1/kv/a/../b", "/v1/kv/b"),
        ("/v1//kv/a", "/v1/kv/a"),
        ("/v1/kv", "/v1/kv/"),
        ("/../v1/kv/a", "/v1/kv/a"),  # nothing above the root
        ("/v1/kv/a/../../../b", "/b"),
    ],
)
def test_unclean_paths_are_redirected(
    consul_server: ConsulServer, path: str, location: str
) -> None:
    # http.client sends the path as given; requests would remove dot segments itself.
    connection = HTTPConnection("127.0.0.1", consul_server.port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()

    assert response.status == 301
    assert response.getheader("Location") == location


def test_a_redirected_put_keeps_its_method_target(
    http: requests.Session, consul_server: ConsulServer
) -> None:
    response = http.put(consul_server.url + "/v1/kv//a", data=b"v", allow_redirects=False)

    assert response.status_code == 301
    assert response.headers["Location"] == "/v1/kv/a"
    assert consul_server.get("a") is None


# -- what Go and cleanhttp refuse before any endpoint -----------------------------------


@pytest.mark.parametrize(
    "escaped",
    ["%09", "%0A", "%0D", "%7F", "%00", "%C2%85", "%C2%A0", "%E2%80%8B", "%E2%80%A8"],
    ids=["TAB", "LF", "CR", "DEL", "NUL", "NEL", "NBSP", "ZWSP", "LSEP"],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_an_unprintable_character_in_the_path_is_a_bare_400(
    consul: ConsulHandle, consul_prefix: str, escaped: str, method: str
) -> None:
    answer = send(
        consul.url, method, f"/v1/kv/{consul_prefix}a{escaped}b", body=b"v", token=consul.token
    )

    assert answer.status == 400
    assert answer.body == b""
    assert answer.headers["Content-Type"] is None
    assert answer.headers["X-Consul-Index"] is None


def test_the_check_runs_before_the_mux_redirects(consul: ConsulHandle) -> None:
    assert send(consul.url, "GET", "/v1/kv//a%09b").status == 400


@pytest.mark.parametrize("escaped", ["%20", "%C3%A7", "%E2%82%AC", "%F0%9F%92%A5"])
def test_printable_characters_are_fine(
    consul: ConsulHandle, consul_prefix: str, escaped: str
) -> None:
    key = f"/v1/kv/{consul_prefix}a{escaped}b"

    assert send(consul.url, "PUT", key, body=b"v", token=consul.token).body == b"true"
    assert send(consul.url, "GET", key + "?raw", token=consul.token).body == b"v"


def test_a_raw_unprintable_character_is_refused_the_same_way(
    consul: ConsulHandle, consul_prefix: str
) -> None:
    target = f"/v1/kv/{consul_prefix}a".encode() + "\u0085".encode() + b"b"
    answer = send_bytes(consul.url, b"GET " + target + b" HTTP/1.1\r\nHost: consul\r\n\r\n")

    assert (answer.status, answer.body) == (400, b"")


def test_raw_utf8_in_the_path_names_the_same_key_as_escaped(
    consul: ConsulHandle, consul_prefix: str
) -> None:
    target = f"/v1/kv/{consul_prefix}voil".encode() + "à".encode()  # 0xA0 is a Latin-1 space
    request = b"PUT " + target + b" HTTP/1.1\r\nHost: consul\r\nContent-Length: 1\r\n"
    if consul.token:
        request += b"X-Consul-Token: " + consul.token.encode() + b"\r\n"

    assert send_bytes(consul.url, request + b"\r\nv").body == b"true"
    assert consul.get(consul_prefix + "voilà") == b"v"


@pytest.mark.parametrize(
    "target",
    [b"/v1/kv/a\x01b", b"/v1/kv/a\x7fb", b"/v1/kv/a\tb", b"/v1/kv/a b", b"/v1/kv/%zz"],
    ids=["SOH", "DEL", "TAB", "space", "bad-escape"],
)
def test_a_target_go_cannot_read_is_refused_by_the_http_server(
    consul: ConsulHandle, target: bytes
) -> None:
    answer = send_bytes(consul.url, b"GET " + target + b" HTTP/1.1\r\nHost: consul\r\n\r\n")

    assert answer.status == 400
    assert answer.body == b"400 Bad Request"
    assert answer.headers["Connection"] == "close"
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.fault_injection
def test_refused_targets_never_reach_the_agent(consul_server: ConsulServer) -> None:
    send_bytes(consul_server.url, b"GET /v1/kv/%zz HTTP/1.1\r\nHost: consul\r\n\r\n")

    assert consul_server.requests_log == []


def test_any_method_reaches_the_endpoint(consul: ConsulHandle, consul_prefix: str) -> None:
    answer = send(consul.url, "PURGE", f"/v1/kv/{consul_prefix}k", token=consul.token)

    assert answer.status == 405
    assert answer.body == b"method PURGE not allowed"
    assert answer.headers["Allow"] == "OPTIONS,GET,PUT,DELETE"


@pytest.mark.parametrize(
    "query",
    ["recurse;keys", "a=1;b=2", "index=%zz", "%zz", "wait=1%", "keys&dc=%2", "a=%g1"],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_a_query_go_cannot_parse_is_a_bare_500(
    consul: ConsulHandle, consul_prefix: str, query: str, method: str
) -> None:
    key = f"/v1/kv/{consul_prefix}k"
    answer = send(consul.url, method, f"{key}?{query}", body=b"v", token=consul.token)

    assert answer.status == 500
    assert answer.body == b""
    assert answer.headers["Content-Type"] is None
    assert answer.headers["X-Consul-Index"] is None
    assert answer.headers["Vary"] == "Accept-Encoding"
    assert answer.headers["X-Consul-Default-Acl-Policy"] is not None
    assert consul.get(consul_prefix + "k") is None


def test_every_endpoint_refuses_such_a_query(consul: ConsulHandle) -> None:
    assert send(consul.url, "GET", "/v1/status/leader?a;b").status == 500


def test_paths_outside_the_endpoints_do_not_parse_the_query(consul: ConsulHandle) -> None:
    assert send(consul.url, "GET", "/v1/no-such-endpoint?a;b").status == 404
    assert send(consul.url, "GET", "/v1/kv//a?a;b").status == 301


@pytest.mark.parametrize(
    "query", ["recurse&&", "recurse=&a", "recurse&a+b=%41%2b", "recurse&x=%E2%82%AC"]
)
def test_queries_go_can_parse_are_fine(
    consul: ConsulHandle, consul_prefix: str, query: str
) -> None:
    consul.put(consul_prefix + "k", "v")

    answer = send(consul.url, "GET", f"/v1/kv/{consul_prefix}?{query}", token=consul.token)

    assert answer.status == 200


def test_status_leader_answers(http: requests.Session, consul_server: ConsulServer) -> None:
    assert http.get(consul_server.url + "/v1/status/leader").json() == "127.0.0.1:8300"
    assert http.get(consul_server.url + "/v1/nope").status_code == 404


def test_status_peers_and_the_methods_status_allows(consul_server: ConsulServer) -> None:
    url = consul_server.url

    peers = send(url, "GET", "/v1/status/peers")
    options = send(url, "OPTIONS", "/v1/status/leader")
    put = send(url, "PUT", "/v1/status/leader", body=b"")

    assert (peers.status, peers.body) == (200, b'["127.0.0.1:8300"]')
    assert (options.status, options.headers["Allow"], options.body) == (200, "OPTIONS,GET", b"")
    assert (put.status, put.body) == (405, b"method PUT not allowed")
    assert put.headers["Allow"] == "OPTIONS,GET"


# -- gzip --------------------------------------------------------------------------------

GZIP = {"Accept-Encoding": "gzip"}


def test_every_endpoint_gzips_a_body_when_asked(consul: ConsulHandle, consul_prefix: str) -> None:
    key = consul_prefix + "g"
    consul.put(key, "value")
    requests_ = [
        ("GET", f"/v1/kv/{key}", None),
        ("GET", f"/v1/kv/{key}?raw", None),
        ("GET", f"/v1/kv/{consul_prefix}?keys", None),
        ("PUT", f"/v1/kv/{key}", b"v2"),  # "true": 4 bytes, and there is no minimum size
        ("GET", f"/v1/kv/{key}?index=x", None),  # a 400 and its text
        ("POST", f"/v1/kv/{key}", b""),  # a 405
        ("GET", "/v1/status/leader", None),
    ]
    for method, target, body in requests_:
        plain = send(consul.url, method, target, body=body, token=consul.token)
        zipped = send(consul.url, method, target, body=body, token=consul.token, headers=GZIP)

        assert (zipped.status, target) == (plain.status, target)
        assert zipped.headers["Content-Encoding"] == "gzip", target
        assert gzip.decompress(zipped.body) == plain.body, target
        assert zipped.headers["Content-Type"] == plain.headers["Content-Type"], target
        assert plain.headers["Content-Encoding"] is None, target
        assert plain.headers["Vary"] == zipped.headers["Vary"] == "Accept-Encoding", target


def test_an_empty_body_is_not_gzipped(consul: ConsulHandle, consul_prefix: str) -> None:
    missing = send(consul.url, "GET", f"/v1/kv/{consul_prefix}nope", headers=GZIP)

    assert missing.status == 404
    assert missing.body == b""
    assert missing.headers["Content-Encoding"] is None
    assert missing.headers["Vary"] == "Accept-Encoding"


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=oops", False),
        ("gzip;level=9", True),  # a parameter that is not q is ignored
        ("gzip;q=0;level=9", True),  # and resets q to 1, as gziphandler's parser does
        ("identity", False),
        ("*", False),
        ("", False),
    ],
)
def test_gzip_follows_accept_encoding(consul: ConsulHandle, accept: str, gzipped: bool) -> None:
    answer = send(consul.url, "GET", "/v1/status/leader", headers={"Accept-Encoding": accept})

    assert (answer.headers["Content-Encoding"] == "gzip") is gzipped


@pytest.mark.parametrize("target", ["/v1/kv//a", "/v1/no-such-endpoint", "/"])
def test_answers_outside_the_endpoints_are_not_gzipped(consul: ConsulHandle, target: str) -> None:
    answer = send(consul.url, "GET", target, headers=GZIP)

    assert answer.body
    assert answer.headers["Content-Encoding"] is None
