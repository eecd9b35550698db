"""Helpers shared by the tests of the Consul stand-in."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message
from http.client import HTTPConnection, HTTPResponse
from typing import Any
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as it came off the wire: nothing decoded, nothing followed."""

    status: int
    headers: Message
    body: bytes


def send(
    base_url: str,
    method: str,
    target: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    token: str | None = None,
) -> Answer:
    """Send ``target`` exactly as written (http.client adds no Accept-Encoding but identity)."""
    parts = urlsplit(base_url)
    connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        all_headers = dict(headers or {})
        if token:
            all_headers["X-Consul-Token"] = token
        connection.request(method, target, body=body, headers=all_headers)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def send_bytes(base_url: str, request: bytes) -> Answer:
    """Send ``request`` byte for byte, for what http.client refuses to write (raw controls)."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port), timeout=10) as sock:
        sock.sendall(request)
        response = HTTPResponse(sock, method=request.split(b" ", 1)[0].decode())
        response.begin()
        return Answer(response.status, response.headers, response.read())
