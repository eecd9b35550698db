"""Blocking queries: what wakes them, what they wait for, how long."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from breaker.testing._server import ConsulServer
from tests.helpers import eventually
from tests.testing_server.helpers import SLACK, FixedRandom, fetch, in_background, index_of


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
    eventually(lambda: consul_server.blocking_queries == 20)
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
