"""Fixtures for the tests of the Consul stand-in (``breaker.testing.ConsulServer``)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from breaker.testing._server import ConsulServer


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=32)
    yield executor
    # Not joined here: after a failed test a request may still be held by the server,
    # whose own fixture, torn down next, stops it and so ends the request.
    executor.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def kv(consul_server: ConsulServer) -> str:
    return consul_server.url + "/v1/kv/"
