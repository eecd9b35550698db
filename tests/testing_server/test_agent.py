"""The agent's HTTP stack around the endpoints: paths, redirects, other endpoints."""

from __future__ import annotations

from http.client import HTTPConnection

import pytest
import requests

from breaker.testing._server import ConsulServer


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
