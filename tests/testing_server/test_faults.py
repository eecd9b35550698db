"""Fault hooks and the server's lifecycle: errors, hangs, restarts, stops."""

from __future__ import annotations

import base64
import gzip
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from breaker.testing._server import ConsulServer
from tests.helpers import eventually
from tests.testing_server.helpers import fetch, index_of, send, server_threads


@pytest.mark.fault_injection
@pytest.mark.parametrize("status", [500, 503, 429])
def test_fail_next_answers_errors_then_recovers(
    http: requests.Session, consul_server: ConsulServer, kv: str, status: int
) -> None:
    consul_server.put("k", "v")
    consul_server.fail_next(2, status=status, body="boom", headers={"Retry-After": "1"})

    failures = [http.get(kv + "k") for _ in range(2)]
    recovered = http.get(kv + "k")

    assert [r.status_code for r in failures] == [status, status]
    assert failures[0].text == "boom"
    assert failures[0].headers["Retry-After"] == "1"
    assert "X-Consul-Index" not in failures[0].headers
    assert recovered.status_code == 200


@pytest.mark.fault_injection
@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (500, b"No cluster leader", "text/plain; charset=utf-8"),
        (429, b"", None),
        (503, b"Service Unavailable", "text/plain; charset=utf-8"),
    ],
)
def test_a_failure_looks_like_consuls_rpc_error(
    consul_server: ConsulServer, status: int, body: bytes, content_type: str | None
) -> None:
    consul_server.put("k", "v")
    consul_server.fail_next(status=status)

    answer = send(consul_server.url, "GET", "/v1/kv/k")

    assert (answer.status, answer.body) == (status, body)
    assert answer.headers["Content-Type"] == content_type
    for name in ("X-Consul-Index", "X-Consul-KnownLeader", "X-Consul-LastContact"):
        assert answer.headers[name] is None, name
    assert answer.headers["X-Consul-Default-Acl-Policy"] == "allow"
    assert answer.headers["Vary"] == "Accept-Encoding"


@pytest.mark.fault_injection
@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("PUT", "/v1/kv/k"),
        ("DELETE", "/v1/kv/k"),
        ("GET", "/v1/kv/?recurse"),
        ("GET", "/v1/kv/?keys"),
        ("GET", "/v1/status/leader"),
    ],
)
def test_every_rpc_can_fail(consul_server: ConsulServer, method: str, target: str) -> None:
    consul_server.put("k", "v")
    consul_server.fail_next()

    answer = send(consul_server.url, method, target, body=b"new")

    assert (answer.status, answer.body) == (500, b"No cluster leader")
    assert consul_server.get("k") == b"v"


@pytest.mark.fault_injection
@pytest.mark.parametrize(
    ("method", "target", "status"),
    [
        ("GET", "/v1/kv/k?index=x", 400),
        ("GET", "/v1/kv/", 400),
        ("PUT", "/v1/kv/k?cas=1&acquire=s", 400),
        ("POST", "/v1/kv/k", 405),
        ("GET", "/v1/kv//k", 301),
        ("GET", "/v1/nope", 404),
        ("GET", "/v1/kv/k?a;b", 500),
        ("GET", "/v1/kv/a%09b", 400),
    ],
)
def test_requests_refused_before_the_rpc_leave_the_failure_queued(
    consul_server: ConsulServer, method: str, target: str, status: int
) -> None:
    consul_server.put("k", "v")
    consul_server.fail_next(status=503)

    refused = send(consul_server.url, method, target)
    failed = send(consul_server.url, "GET", "/v1/kv/k")

    assert refused.status == status
    assert failed.status == 503


@pytest.mark.fault_injection
def test_a_failure_is_gzipped_like_any_answer(consul_server: ConsulServer) -> None:
    consul_server.fail_next()

    answer = send(consul_server.url, "GET", "/v1/kv/k", headers={"Accept-Encoding": "gzip"})

    assert gzip.decompress(answer.body) == b"No cluster leader"


@pytest.mark.fault_injection
def test_hang_never_answers_until_released(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    consul_server.put("k", "v")
    consul_server.hang()

    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(kv + "k", timeout=0.2)
    consul_server.hang(False)

    assert http.get(kv + "k", timeout=2).status_code == 200


@pytest.mark.fault_injection
def test_hang_next_holds_only_that_many(
    http: requests.Session, consul_server: ConsulServer, kv: str, pool: ThreadPoolExecutor
) -> None:
    consul_server.put("k", "v")
    consul_server.hang_next(1)
    held = pool.submit(fetch, kv + "k", timeout=5)
    eventually(lambda: consul_server.held_requests == 1)

    assert http.get(kv + "k", timeout=2).status_code == 200
    assert not held.done()
    consul_server.hang(False)
    with pytest.raises(requests.exceptions.ConnectionError):
        held.result(timeout=2)


@pytest.mark.fault_injection
def test_restart_resets_the_index_on_the_same_port(
    consul_server: ConsulServer, kv: str, pool: ThreadPoolExecutor
) -> None:
    for i in range(5):
        consul_server.put(f"r/{i}", str(i))
    port = consul_server.port
    seen = index_of(fetch(kv + "r/?recurse"))
    blocked = pool.submit(fetch, kv + f"r/?recurse&index={seen}&wait=10s")
    eventually(lambda: consul_server.blocking_queries == 1)

    started = time.monotonic()
    consul_server.restart(reset_index=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        blocked.result(timeout=2)
    response = fetch(kv + "r/?recurse")

    assert time.monotonic() - started < 1.0
    assert consul_server.port == port
    assert index_of(response) < seen
    assert [e["Value"] for e in response.json()] == [
        base64.b64encode(str(i).encode()).decode() for i in range(5)
    ]


@pytest.mark.fault_injection
def test_restart_can_keep_the_index(consul_server: ConsulServer, kv: str) -> None:
    consul_server.put("k", "v")
    before = index_of(fetch(kv + "k"))

    consul_server.restart(reset_index=False)

    assert index_of(fetch(kv + "k")) == before


@pytest.mark.fault_injection
def test_stop_releases_blocked_requests_and_leaves_no_thread(
    consul_server: ConsulServer, kv: str, pool: ThreadPoolExecutor
) -> None:
    blocked = [pool.submit(fetch, kv + "s/?recurse&index=1&wait=10s") for _ in range(5)]
    eventually(lambda: consul_server.blocking_queries == 5)  # before hang() would hold them
    consul_server.hang()
    hanging = pool.submit(fetch, kv + "h")
    eventually(lambda: consul_server.held_requests == 1)
    assert len(server_threads()) >= 7

    started = time.monotonic()
    consul_server.stop()
    stop_took = time.monotonic() - started
    for future in [*blocked, hanging]:
        with pytest.raises(requests.exceptions.ConnectionError):
            future.result(timeout=2)

    assert stop_took < 0.5
    assert server_threads() == []
    assert not consul_server.running
    consul_server.stop()


@pytest.mark.fault_injection
def test_requests_log_records_what_arrived(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    http.get(kv + "k", params={"index": "3", "wait": "10ms"}, headers={"X-Consul-Token": "t"})
    http.put(kv + "k", data=b"body")

    first, second = consul_server.requests_log
    assert (first.method, first.path) == ("GET", "/v1/kv/k")
    assert first.query == {"index": "3", "wait": "10ms"}
    assert first.headers["x-consul-token"] == "t"
    assert (second.method, second.body) == ("PUT", b"body")
    assert first.time <= second.time <= time.monotonic()
    consul_server.clear_requests_log()
    assert consul_server.requests_log == []
