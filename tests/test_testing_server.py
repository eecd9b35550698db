"""Tests for the Consul-KV-compatible test server and its pytest fixtures."""

from __future__ import annotations

import base64
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.client import HTTPConnection
from typing import TYPE_CHECKING, Any

import pytest
import requests

from breaker.testing._server import (
    ANONYMOUS_ACCESSOR_ID,
    MAX_VALUE_SIZE,
    ACLRule,
    ConsulServer,
)

if TYPE_CHECKING:
    # Imported for real by pytest_plugins below; importing it here first would stop pytest
    # from rewriting its asserts.
    from breaker.testing.pytest_plugin import ConsulHandle

pytest_plugins = ["breaker.testing.pytest_plugin"]

# Leaves room for a slow CI machine while keeping each blocking test well under a second.
SLACK = 0.25


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=32) as executor:
        yield executor


@pytest.fixture
def kv(consul_server: ConsulServer) -> str:
    return consul_server.url + "/v1/kv/"


def fetch(url: str, **kwargs: Any) -> requests.Response:
    """Send one GET on a fresh connection (safe from any thread)."""
    with requests.Session() as session:
        session.trust_env = False
        return session.get(url, **kwargs)


def index_of(response: requests.Response) -> int:
    return int(response.headers["X-Consul-Index"])


def in_background(pool: ThreadPoolExecutor, fn: Callable[[], Any], delay: float) -> Future[Any]:
    def run() -> Any:
        time.sleep(delay)
        return fn()

    return pool.submit(run)


def server_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ConsulServer")]


class FixedRandom(random.Random):
    def random(self) -> float:
        return 0.999


# -- reads -------------------------------------------------------------------------------


def test_missing_key_is_404_with_index_headers(http: requests.Session, kv: str) -> None:
    response = http.get(kv + "nope")

    assert response.status_code == 404
    assert response.content == b""
    assert response.headers["X-Consul-Index"] == "1"
    assert response.headers["X-Consul-KnownLeader"] == "true"
    assert response.headers["X-Consul-LastContact"] == "0"


def test_single_key_answers_one_entry(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    index = consul_server.put("svc/payments.json", b'{"failureThreshold": 5}', flags=42)

    response = http.get(kv + "svc/payments.json")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert index_of(response) == index
    assert response.json() == [
        {
            "LockIndex": 0,
            "Key": "svc/payments.json",
            "Flags": 42,
            "Value": base64.b64encode(b'{"failureThreshold": 5}').decode(),
            "CreateIndex": index,
            "ModifyIndex": index,
        }
    ]


def test_empty_value_is_null(http: requests.Session, kv: str) -> None:
    assert http.put(kv + "folder/", data=b"").json() is True

    assert http.get(kv + "folder/").json()[0]["Value"] is None
    assert http.get(kv + "folder/?raw").content == b""


def test_keys_may_hold_colons_dots_dashes_and_escapes(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    assert http.put(kv + "grpc:user-service.v1.json", data=b"x").json() is True
    assert http.put(kv + "a%2Fb%20c", data=b"y").json() is True

    assert consul_server.get("grpc:user-service.v1.json") == b"x"
    # Consul takes the key from the decoded path, so %2F is a plain slash.
    assert consul_server.get("a/b c") == b"y"
    assert http.get(kv + "a/b%20c?raw").content == b"y"


def test_recurse_lists_the_prefix_sorted(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    for key in ("p/b", "p/a", "p/c/d", "q/x"):
        consul_server.put(key, key)

    response = http.get(kv + "p/?recurse")
    bare = http.get(kv + "p/", params={"recurse": "true"})

    assert [e["Key"] for e in response.json()] == ["p/a", "p/b", "p/c/d"]
    assert bare.json() == response.json()
    assert http.get(kv + "none/?recurse").status_code == 404
    assert [e["Key"] for e in http.get(kv + "?recurse").json()] == ["p/a", "p/b", "p/c/d", "q/x"]


def test_keys_roll_up_at_the_separator(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    for key in ("app/a", "app/b/c", "app/b/d", "app/e/f/g", "apple"):
        consul_server.put(key, "v")

    assert http.get(kv + "app/?keys").json() == ["app/a", "app/b/c", "app/b/d", "app/e/f/g"]
    assert http.get(kv + "app/?keys&separator=/").json() == ["app/a", "app/b/", "app/e/"]
    assert http.get(kv + "app?keys&separator=/").json() == ["app/", "apple"]
    assert http.get(kv + "?keys&separator=/").json() == ["app/", "apple"]
    assert http.get(kv + "nothing/?keys").status_code == 404


def test_keys_of_an_empty_root_is_an_empty_list(http: requests.Session, kv: str) -> None:
    response = http.get(kv + "?keys")

    assert response.status_code == 200
    assert response.json() == []


def test_raw_answers_the_bytes(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    consul_server.put("r", b"\x00\x01binary")

    response = http.get(kv + "r?raw")

    assert response.content == b"\x00\x01binary"
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert index_of(response) == consul_server.index


def test_get_without_key_name_is_400(http: requests.Session, kv: str) -> None:
    response = http.get(kv)

    assert response.status_code == 400
    assert response.text == "Missing key name"


def test_other_methods_are_405(http: requests.Session, kv: str) -> None:
    response = http.post(kv + "k", data=b"x")

    assert response.status_code == 405
    assert response.headers["Allow"] == "OPTIONS,GET,PUT,DELETE"


# -- indexes -----------------------------------------------------------------------------


def test_every_write_moves_the_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    first = consul_server.put("i/a", "1")
    second = consul_server.put("i/b", "2")
    third = consul_server.put("i/a", "3")

    assert first < second < third == consul_server.index
    entry = http.get(kv + "i/a").json()[0]
    assert (entry["CreateIndex"], entry["ModifyIndex"]) == (first, third)
    assert index_of(http.get(kv + "i/?recurse")) == third


def test_a_write_that_changes_nothing_keeps_modify_index(consul_server: ConsulServer) -> None:
    first = consul_server.put("same", "v")

    assert consul_server.put("same", "v") == first
    assert consul_server.index == first + 1


def test_delete_leaves_a_tombstone_that_moves_the_prefix_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    consul_server.put("t/a", "1")
    kept = consul_server.put("t/b", "2")
    consul_server.put("other", "x")

    deleted_at = consul_server.delete("t/a")

    assert deleted_at > kept
    assert index_of(http.get(kv + "t/?recurse")) == deleted_at
    assert index_of(http.get(kv + "t/?keys")) == deleted_at
    assert consul_server.reap_tombstones() == 1
    assert index_of(http.get(kv + "t/?recurse")) == kept


def test_recursive_delete_leaves_one_tombstone_at_the_prefix(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    consul_server.put("d/a", "1")
    consul_server.put("d/b", "2")
    consul_server.put("zzz", "3")

    deleted_at = consul_server.delete("d/", recurse=True)

    response = http.get(kv + "d/?recurse")
    assert response.status_code == 404
    assert index_of(response) == deleted_at


def test_a_prefix_that_never_existed_reports_the_table_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    latest = consul_server.put("elsewhere", "x")

    assert index_of(http.get(kv + "never/?recurse")) == latest
    assert index_of(http.get(kv + "never")) == latest


def test_index_is_never_below_one(http: requests.Session, kv: str) -> None:
    assert index_of(http.get(kv + "x/?recurse")) == 1
    assert index_of(http.get(kv + "x/?keys")) == 1


def test_start_index_crosses_digit_boundaries(http: requests.Session) -> None:
    with ConsulServer(jitter=False, start_index=95) as server:
        indexes = [server.put(f"k{i}", str(i)) for i in range(6)]
        response = http.get(server.url + "/v1/kv/?recurse")

    assert indexes == [96, 97, 98, 99, 100, 101]
    assert index_of(response) == 101


# -- blocking queries --------------------------------------------------------------------


def test_index_zero_answers_at_once(http: requests.Session, kv: str) -> None:
    started = time.monotonic()
    http.get(kv + "b/?recurse&index=0&wait=10s")

    assert time.monotonic() - started < SLACK


def test_blocking_query_wakes_on_a_write_under_the_prefix(
    consul_server: ConsulServer, kv: str, pool: ThreadPoolExecutor
) -> None:
    consul_server.put("b/a", "1")
    seen = index_of(fetch(kv + "b/?recurse"))
    started = time.monotonic()
    in_background(pool, lambda: consul_server.put("b/new", "2"), 0.1)

    response = fetch(kv + f"b/?recurse&index={seen}&wait=5s")

    assert 0.1 <= time.monotonic() - started < 0.1 + SLACK
    assert index_of(response) > seen
    assert [e["Key"] for e in response.json()] == ["b/a", "b/new"]


def test_blocking_query_ignores_writes_elsewhere(
    consul_server: ConsulServer, kv: str, pool: ThreadPoolExecutor
) -> None:
    consul_server.put("b/a", "1")
    seen = index_of(fetch(kv + "b/?recurse"))
    started = time.monotonic()
    in_background(pool, lambda: consul_server.put("c/other", "2"), 0.05)

    response = fetch(kv + f"b/?recurse&index={seen}&wait=300ms")

    assert 0.3 <= time.monotonic() - started < 0.3 + SLACK
    assert index_of(response) == seen


def test_blocking_on_a_missing_key_waits_for_it(
    consul_server: ConsulServer, kv: str, pool: ThreadPoolExecutor
) -> None:
    consul_server.put("x", "1")
    seen = index_of(fetch(kv + "k"))
    started = time.monotonic()
    in_background(pool, lambda: consul_server.put("y", "unrelated"), 0.05)
    in_background(pool, lambda: consul_server.put("k", "here"), 0.2)

    response = fetch(kv + f"k?index={seen}&wait=5s")

    assert 0.2 <= time.monotonic() - started < 0.2 + SLACK
    assert response.status_code == 200


def test_many_blocked_queries_wake_together(
    consul_server: ConsulServer, kv: str, pool: ThreadPoolExecutor
) -> None:
    seen = index_of(fetch(kv + "m/?recurse"))
    futures = [pool.submit(fetch, kv + f"m/?recurse&index={seen}&wait=5s") for _ in range(20)]
    time.sleep(0.1)
    written = consul_server.put("m/k", "v")

    indexes = [index_of(f.result(timeout=2)) for f in futures]

    assert indexes == [written] * 20


def test_an_index_above_the_current_one_waits_out_the_wait(http: requests.Session, kv: str) -> None:
    started = time.monotonic()
    response = http.get(kv + "r/?recurse&index=5000&wait=100ms")

    assert 0.1 <= time.monotonic() - started < 0.1 + SLACK
    assert index_of(response) == 1


@pytest.mark.parametrize("wait", ["10", "1x", "s", "-", "1.2.3s", "1h1"])
def test_a_bad_wait_is_400(http: requests.Session, kv: str, wait: str) -> None:
    response = http.get(kv + "k", params={"index": "1", "wait": wait})

    assert response.status_code == 400
    assert response.text == "Invalid wait time"


@pytest.mark.parametrize("index", ["-1", "abc", "1.5", "18446744073709551616"])
def test_a_bad_index_is_400(http: requests.Session, kv: str, index: str) -> None:
    response = http.get(kv + "k", params={"index": index})

    assert response.status_code == 400
    assert response.text == "Invalid index"


def test_wait_is_defaulted_and_clamped() -> None:
    server = ConsulServer(jitter=False)

    assert server.query_timeout(None) == 300.0
    assert server.query_timeout(0) == 300.0
    assert server.query_timeout(1200) == 600.0
    assert server.query_timeout(2.5) == 2.5


def test_jitter_is_at_most_a_sixteenth_of_the_wait() -> None:
    server = ConsulServer(rng=random.Random(7))

    samples = [server.query_timeout(16.0) for _ in range(500)]

    assert all(16.0 <= s < 17.0 for s in samples)
    assert max(samples) > 16.9
    assert min(samples) < 16.1


def test_a_blocking_query_waits_wait_plus_jitter(http: requests.Session) -> None:
    with ConsulServer(rng=FixedRandom()) as server:
        started = time.monotonic()
        http.get(server.url + "/v1/kv/j/?recurse&index=1&wait=320ms")
        elapsed = time.monotonic() - started

    assert 0.3398 <= elapsed < 0.34 + SLACK


# -- writes ------------------------------------------------------------------------------


def test_put_with_cas_zero_only_creates(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    assert http.put(kv + "c", data=b"first", params={"cas": "0"}).json() is True
    assert http.put(kv + "c", data=b"second", params={"cas": "0"}).json() is False
    assert consul_server.get("c") == b"first"


def test_put_with_cas_index_needs_the_current_modify_index(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    current = consul_server.put("c", "v1")

    assert http.put(kv + "c", data=b"v2", params={"cas": str(current - 1)}).json() is False
    assert http.put(kv + "c", data=b"v2", params={"cas": str(current)}).json() is True
    assert http.put(kv + "c", data=b"v3", params={"cas": str(current)}).json() is False
    assert http.put(kv + "missing", data=b"v", params={"cas": "5"}).json() is False
    assert consul_server.get("c") == b"v2"


def test_put_answers_true_as_json(http: requests.Session, kv: str) -> None:
    response = http.put(kv + "k", data=b"v")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.text == "true"


def test_put_stores_flags(http: requests.Session, kv: str) -> None:
    http.put(kv + "f", data=b"v", params={"flags": str(2**64 - 1)})

    assert http.get(kv + "f").json()[0]["Flags"] == 2**64 - 1


def test_bad_flags_fail_as_in_consul(http: requests.Session, kv: str) -> None:
    response = http.put(kv + "f", data=b"v", params={"flags": "x"})

    assert response.status_code == 500
    assert response.text == 'strconv.ParseUint: parsing "x": invalid syntax'


def test_a_value_of_exactly_512_kib_is_accepted(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    response = http.put(kv + "big", data=b"x" * MAX_VALUE_SIZE)

    assert response.json() is True
    assert consul_server.get("big") == b"x" * MAX_VALUE_SIZE


def test_a_value_over_512_kib_is_413(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    response = http.put(kv + "big", data=b"x" * (MAX_VALUE_SIZE + 1))

    assert response.status_code == 413
    assert response.text.startswith(
        "Request body(524289 bytes) too large, max size: 524288 bytes. See https://"
    )
    assert consul_server.get("big") is None


def test_delete_recurse_removes_the_prefix(
    http: requests.Session, consul_server: ConsulServer, kv: str
) -> None:
    for key in ("del/a", "del/b/c", "delta", "keep"):
        consul_server.put(key, "v")

    assert http.delete(kv + "del/", params={"recurse": ""}).json() is True
    assert consul_server.keys() == ["delta", "keep"]
    assert http.delete(kv + "keep").json() is True
    assert consul_server.keys() == ["delta"]


def test_delete_with_cas(http: requests.Session, consul_server: ConsulServer, kv: str) -> None:
    current = consul_server.put("c", "v")

    assert http.delete(kv + "c", params={"cas": str(current + 7)}).json() is False
    assert http.delete(kv + "c", params={"cas": str(current)}).json() is True
    assert consul_server.get("c") is None
    # Consul's delete-CAS of a key that is already gone succeeds.
    assert http.delete(kv + "c", params={"cas": "3"}).json() is True


def test_delete_with_recurse_and_cas_is_400(http: requests.Session, kv: str) -> None:
    response = http.delete(kv + "c", params={"recurse": "", "cas": "1"})

    assert response.status_code == 400
    assert response.text.startswith("Conflicting flags: ")


# -- paths -------------------------------------------------------------------------------


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


# -- ACLs --------------------------------------------------------------------------------

TOKENS = {
    "writer": [ACLRule("app/", "write")],
    "reader": [ACLRule("app/", "read"), ACLRule("app/secret/", "deny")],
}


@pytest.fixture
def acl_server() -> Iterator[ConsulServer]:
    with ConsulServer(jitter=False, acl_tokens=TOKENS, acl_default_policy="deny") as server:
        for key in ("app/a", "app/b", "app/secret/s", "other"):
            server.put(key, "v")
        yield server


def test_token_from_header_bearer_or_query(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    url = acl_server.url + "/v1/kv/app/a"

    assert http.get(url).status_code == 403
    assert http.get(url, headers={"X-Consul-Token": "reader"}).status_code == 200
    assert http.get(url, headers={"Authorization": "Bearer reader"}).status_code == 200
    assert http.get(url, params={"token": "reader"}).status_code == 200


def test_an_unknown_token_is_403_acl_not_found(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    response = http.get(acl_server.url + "/v1/kv/app/a", headers={"X-Consul-Token": "bogus"})

    assert response.status_code == 403
    assert response.text == "ACL not found"


def test_reading_without_permission_is_403(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    denied = http.get(acl_server.url + "/v1/kv/app/secret/s", headers={"X-Consul-Token": "reader"})
    anonymous = http.get(acl_server.url + "/v1/kv/other")

    assert denied.status_code == 403
    accessor = acl_server.accessor_id("reader")
    assert denied.text == (
        f"Permission denied: token with AccessorID '{accessor}' "
        "lacks permission 'key:read' on \"app/secret/s\""
    )
    assert anonymous.status_code == 403
    assert anonymous.text.startswith("Permission denied: anonymous token lacks permission")
    assert ANONYMOUS_ACCESSOR_ID not in anonymous.text


def test_writing_without_permission_is_403(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    url = acl_server.url + "/v1/kv/app/new"

    assert http.put(url, data=b"v", headers={"X-Consul-Token": "reader"}).status_code == 403
    assert http.put(url, data=b"v", headers={"X-Consul-Token": "writer"}).json() is True
    assert http.delete(url, headers={"X-Consul-Token": "reader"}).status_code == 403
    recurse = http.delete(
        acl_server.url + "/v1/kv/", params={"recurse": ""}, headers={"X-Consul-Token": "writer"}
    )
    assert recurse.status_code == 403
    assert acl_server.get("app/new") == b"v"


def test_listings_filter_out_what_the_token_cannot_read(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    token = {"X-Consul-Token": "reader"}

    listing = http.get(acl_server.url + "/v1/kv/app/?recurse", headers=token)
    keys = http.get(acl_server.url + "/v1/kv/?keys", headers=token)
    unfiltered = http.get(acl_server.url + "/v1/kv/app/a/?recurse", headers=token)

    assert [e["Key"] for e in listing.json()] == ["app/a", "app/b"]
    assert listing.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    assert keys.json() == ["app/a", "app/b"]
    assert keys.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
    assert "X-Consul-Results-Filtered-By-ACLs" not in unfiltered.headers


def test_anonymous_listings_do_not_reveal_filtering(
    http: requests.Session, acl_server: ConsulServer
) -> None:
    response = http.get(acl_server.url + "/v1/kv/app/?recurse")

    assert response.status_code == 404
    assert "X-Consul-Results-Filtered-By-ACLs" not in response.headers


def test_anonymous_rules_and_default_allow(http: requests.Session) -> None:
    with ConsulServer(
        acl_tokens={}, acl_default_policy="allow", anonymous_rules=[ACLRule("locked/", "deny")]
    ) as server:
        server.put("open", "1")
        server.put("locked/x", "2")

        assert http.get(server.url + "/v1/kv/open").status_code == 200
        assert http.get(server.url + "/v1/kv/locked/x").status_code == 403
        assert http.get(server.url + "/v1/kv/?keys").json() == ["open"]


# -- fault hooks -------------------------------------------------------------------------


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
    assert "X-Consul-Index" in failures[0].headers
    assert recovered.status_code == 200


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
    time.sleep(0.1)

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
    time.sleep(0.1)

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
    consul_server.hang()
    hanging = pool.submit(fetch, kv + "h")
    time.sleep(0.1)
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


# -- fixtures ----------------------------------------------------------------------------


def test_the_consul_handle_reads_and_writes(consul: ConsulHandle, consul_prefix: str) -> None:
    key = consul_prefix + "payments.json"

    consul.put(key, '{"failureThreshold": 3}')
    consul.put(consul_prefix + "sub/x", b"\x00")

    assert consul.get(key) == b'{"failureThreshold": 3}'
    consul.delete(key)
    assert consul.get(key) is None
    consul.delete(consul_prefix, recurse=True)
    assert consul.get(consul_prefix + "sub/x") is None


def test_the_handle_sends_the_token_in_a_header(consul_server: ConsulServer) -> None:
    from breaker.testing.pytest_plugin import ConsulHandle

    handle = ConsulHandle(consul_server.url, token="secret", server=consul_server)

    handle.put("k", "v")

    (request,) = consul_server.requests_log
    assert request.headers["x-consul-token"] == "secret"
    assert "token" not in request.query
    assert handle.addr == consul_server.addr


def test_fault_injection_tests_skip_against_a_real_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    from breaker.testing import pytest_plugin

    class Item:
        def __init__(self, marked: bool) -> None:
            self.marked = marked
            self.markers: list[Any] = []

        def get_closest_marker(self, name: str) -> object | None:
            return object() if self.marked and name == "fault_injection" else None

        def add_marker(self, marker: Any) -> None:
            self.markers.append(marker)

    items = [Item(True), Item(False)]
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:8500")

    pytest_plugin.pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]

    assert [len(item.markers) for item in items] == [1, 0]
    assert items[0].markers[0].name == "skip"
    assert pytest_plugin._agent_url("127.0.0.1:8500") == "http://127.0.0.1:8500"
    assert pytest_plugin._agent_url("https://consul:8501") == "https://consul:8501"
