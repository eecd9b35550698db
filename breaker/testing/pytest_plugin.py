"""Pytest fixtures for tests that talk to Consul KV: the embedded server, or a real agent.

Opt in with ``pytest_plugins = ["breaker.testing.pytest_plugin"]``. Without
``CONSUL_HTTP_ADDR`` the tests run against an embedded `ConsulServer`; with it they run,
unchanged, against that agent, and tests that need the embedded server's fault hooks
(marked ``fault_injection`` or using ``consul_server``) are skipped. The agent's address,
token and TLS settings are resolved from the environment exactly as `ConsulCoord` resolves
them (``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_SSL``, ``CONSUL_HTTP_TOKEN``, ...).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

import pytest

from breaker.coord.consul import ConsulSettings

if TYPE_CHECKING:
    import ssl
    import urllib.request

    from breaker.testing._server import ConsulServer

__all__ = [
    "ConsulHandle",
    "ConsulRequestError",
    "agent_settings",
    "consul",
    "consul_prefix",
    "consul_server",
]

ADDR_ENV = "CONSUL_HTTP_ADDR"
_REAL_AGENT_REASON = (
    "needs the embedded Consul server's fault hooks; CONSUL_HTTP_ADDR points at a real agent"
)


class ConsulRequestError(RuntimeError):
    """Raise when Consul answers a helper request with an error or ``false``."""


class ConsulHandle:
    """Reach the Consul under test over HTTP, whether the embedded server or a real agent.

    ``server`` is the embedded `ConsulServer`, or None against a real agent. The helpers send
    the token in the ``X-Consul-Token`` header, verify TLS with ``ssl_context`` and give up
    after ``timeout`` seconds.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        server: ConsulServer | None = None,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token or None
        self.server = server
        self.timeout = timeout
        import urllib.request  # here: a test run that asks for no Consul never loads it

        # Tests must not be routed through an HTTP proxy from the environment.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)

    @classmethod
    def from_settings(cls, settings: ConsulSettings, *, timeout: float = 10.0) -> ConsulHandle:
        """Return a handle on the agent ``settings`` describe, trusting what they trust."""
        return cls(
            settings.base_url,
            token=settings.token,
            timeout=timeout,
            ssl_context=settings.ssl_context(),
        )

    @property
    def addr(self) -> str:
        """Return ``host:port``, the form ``CONSUL_HTTP_ADDR`` takes."""
        return urlsplit(self.url).netloc

    def put(self, key: str, value: bytes | str) -> None:
        """Write ``key``; raise `ConsulRequestError` unless Consul answers ``true``."""
        data = value.encode("utf-8") if isinstance(value, str) else value
        status, body = self._request("PUT", key, data=data)
        if status != 200 or json.loads(body) is not True:
            raise ConsulRequestError(f"PUT {key!r} failed: {status} {body!r}")

    def delete(self, key: str, recurse: bool = False) -> None:
        """Delete ``key``, or every key under it with ``recurse``."""
        status, body = self._request("DELETE", key, query="recurse" if recurse else "")
        if status != 200:
            raise ConsulRequestError(f"DELETE {key!r} failed: {status} {body!r}")

    def get(self, key: str) -> bytes | None:
        """Return the raw value of ``key``, or None if it does not exist."""
        status, body = self._request("GET", key, query="raw")
        if status == 404:
            return None
        if status != 200:
            raise ConsulRequestError(f"GET {key!r} failed: {status} {body!r}")
        return body

    def _request(
        self, method: str, key: str, *, query: str = "", data: bytes | None = None
    ) -> tuple[int, bytes]:
        import urllib.error
        import urllib.request

        url = f"{self.url}/v1/kv/{quote(key, safe='/')}" + (f"?{query}" if query else "")
        request = urllib.request.Request(url, data=data, method=method)
        if self.token:
            request.add_header("X-Consul-Token", self.token)
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), bytes(exc.read())

    def __repr__(self) -> str:
        where = "embedded" if self.server is not None else "agent"
        return f"ConsulHandle({self.url!r}, {where})"


def agent_settings() -> ConsulSettings:
    """Return the real agent's settings, resolved from the environment as `ConsulCoord` does."""
    try:
        settings = ConsulSettings.resolve()
    except ValueError as exc:
        raise pytest.UsageError(f"{ADDR_ENV} and friends: {exc}") from None
    if settings.unix_socket is not None:
        raise pytest.UsageError(
            f"{ADDR_ENV}={settings.address}: the test fixtures reach Consul over TCP, "
            "not a unix socket"
        )
    return settings


def _agent_url(addr: str) -> str:
    """Return the base URL of ``addr``, by the same rule (kept for callers of the old helper)."""
    try:
        return ConsulSettings.resolve(addr).base_url
    except ValueError as exc:
        raise pytest.UsageError(f"{ADDR_ENV}={addr!r}: {exc}") from None


def pytest_configure(config: pytest.Config) -> None:
    """Declare the markers, for projects that do not declare them in their own config."""
    config.addinivalue_line("markers", "fault_injection: needs the embedded server's fault hooks")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``fault_injection`` tests when they would run against a real agent."""
    if not os.environ.get(ADDR_ENV):
        return
    skip = pytest.mark.skip(reason=_REAL_AGENT_REASON)
    for item in items:
        if item.get_closest_marker("fault_injection") is not None:
            item.add_marker(skip)


@pytest.fixture
def consul_server() -> Iterator[ConsulServer]:
    """Give a started embedded server (jitter off), stopped after the test.

    Skips the test when ``CONSUL_HTTP_ADDR`` is set: a real agent has no fault hooks.
    """
    if os.environ.get(ADDR_ENV):
        pytest.skip(_REAL_AGENT_REASON)
    from breaker.testing._server import ConsulServer

    with ConsulServer(jitter=False) as server:
        yield server


@pytest.fixture
def consul(request: pytest.FixtureRequest) -> ConsulHandle:
    """Give a handle on the Consul under test: the agent at ``CONSUL_HTTP_ADDR``, else embedded."""
    if os.environ.get(ADDR_ENV):
        return ConsulHandle.from_settings(agent_settings())
    server: ConsulServer = request.getfixturevalue("consul_server")
    return ConsulHandle(server.url, server=server)


@pytest.fixture
def consul_prefix(consul: ConsulHandle) -> Iterator[str]:
    """Give a KV prefix of this test's own, deleted afterwards from a real agent."""
    prefix = f"breaker-tests/{uuid.uuid4().hex}/"
    yield prefix
    # The embedded server is thrown away (and may be stopped or hanging by now).
    if consul.server is None:
        consul.delete(prefix, recurse=True)
