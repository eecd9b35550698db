"""The agent's HTTP stack around the endpoints: paths, redirects, other endpoints."""

from __future__ import annotations

import gzip
from http.client import HTTPConnection
from typing import TYPE_CHECKING

import pytest
import requests

from breaker.testing._server import ConsulServer
from tests.testing_server.helpers import send

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


def test_status_leader_answers(http: requests.Session, consul_server: ConsulServer) -> None:
    assert http.get(consul_server.url + "/v1/status/leader").json() == "127.0.0.1:8300"
    assert http.get(consul_server.url + "/v1/nope").status_code == 404


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
