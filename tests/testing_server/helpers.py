"""Helpers shared by the tests of the Consul stand-in."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests

# Leaves room for a slow CI machine while keeping each blocking test well under a second.
SLACK = 0.25


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
