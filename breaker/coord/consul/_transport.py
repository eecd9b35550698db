"""The HTTP client under python-consul: timeouts on every request, the token in a header,
TCP keepalive, and sockets that another thread can cut to end a blocking query at once."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool

from breaker._exceptions import CoordError
from breaker.coord.consul._settings import ConsulSettings

__all__ = ["Reply", "Response", "Transport", "keepalive_options"]

SocketOption = tuple[int, int, int]

_INHERITED: list[Transport] = []
"""Clients a forked child inherited: kept, never collected, because collecting them would
run urllib3's finalizers, which take locks a thread of the parent may have held."""


class Response:
    """Carry what python-consul's callbacks read: code, headers, body."""

    __slots__ = ("body", "code", "headers")

    def __init__(self, code: int, headers: Mapping[str, str], body: str) -> None:
        self.code = code
        self.headers = headers
        self.body = body


class Reply:
    """Carry a decoded answer (what python-consul's callback made of it) and its headers."""

    __slots__ = ("headers", "status", "value")

    def __init__(self, value: Any, status: int, headers: Mapping[str, str]) -> None:
        self.value = value
        self.status = status
        self.headers = headers


def keepalive_options(seconds: float | None) -> list[SocketOption]:
    """Return socket options that notice a silent dead peer within about ``seconds``.

    Probes start after half of it idle and come every second or so; ``TCP_USER_TIMEOUT``
    bounds unacknowledged data the same way. Options the platform lacks are left out.
    """
    if seconds is None:
        return []
    idle = max(1, int(seconds // 2))
    count = 5
    interval = max(1, int((seconds - idle) // count))
    tcp = socket.IPPROTO_TCP
    wanted = [
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (tcp, "TCP_KEEPIDLE", idle),
        (tcp, "TCP_KEEPALIVE", idle),  # macOS's name for TCP_KEEPIDLE
        (tcp, "TCP_KEEPINTVL", interval),
        (tcp, "TCP_KEEPCNT", count),
        (tcp, "TCP_USER_TIMEOUT", max(1000, int(seconds * 1000))),
    ]
    return [
        (level, getattr(socket, name), value)
        for level, name, value in wanted
        if hasattr(socket, name)
    ]


class _Sockets:
    """Track the sockets of one client, so closing it can cut a blocking read short.

    The lock is reentrant: a finalizer that closes the coord may run in a thread that is
    registering a socket.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.cut = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.cut:
                self._socks.add(sock)
                return
        _shutdown(sock)  # connected after cut(): end it at once

    def cut_all(self) -> None:
        with self._lock:
            self.cut = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)

    def release(self) -> None:
        """Close this process's descriptors without shutting the connections down.

        For a forked child: the parent still uses these connections, and close() (unlike
        shutdown()) sends nothing while another process holds the socket open. No lock is
        taken: the parent may have held it when it forked.
        """
        self.cut = True
        for sock in list(self._socks):
            with contextlib.suppress(OSError):
                sock.close()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


def _tracking_pools(socks: _Sockets) -> dict[str, type]:
    """Return urllib3 pool classes whose connections register their sockets in ``socks``."""

    class Conn(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            socks.add(self.sock)

    class TLSConn(urllib3.connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            socks.add(self.sock)

    class Pool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = Conn

    class TLSPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = TLSConn

    return {"http": Pool, "https": TLSPool}


class Transport:
    """Send Consul HTTP requests: no environment, a timeout each, the token in a header.

    `cut` may be called from any thread and ends requests in flight; `close` also releases
    the pooled connections; `release` is for a forked child (see `_Sockets.release`).
    """

    def __init__(self, settings: ConsulSettings, *, keepalive: float | None) -> None:
        self.settings = settings
        self._socks = _Sockets()
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy or netrc surprises; TLS comes from settings
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=4)
        adapter.poolmanager.pool_classes_by_scheme = _tracking_pools(self._socks)
        adapter.poolmanager.connection_pool_kw["socket_options"] = [
            *urllib3.connection.HTTPConnection.default_socket_options,
            *keepalive_options(keepalive),
        ]
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._closed = False

    def request(
        self,
        method: str,
        callback: Callable[[Response], Any],
        path: str,
        params: Any,
        *,
        timeout: float,
        read_timeout: float,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send one request; return python-consul's reading of the answer; raise `CoordError`."""
        settings = self.settings
        url = settings.base_url + urllib.parse.quote(path, safe="/:")
        query = list(params or [])
        if query:
            url += "?" + urllib.parse.urlencode(query)
        send = {k: v for k, v in (headers or {}).items() if k.lower() != "x-consul-token"}
        if settings.token:
            send["X-Consul-Token"] = settings.token
        if self._socks.cut:
            raise CoordError("closed", condition="closed")
        try:
            resp = self._session.request(
                method,
                url,
                data=data,
                headers=send,
                timeout=(timeout, read_timeout),
                verify=settings.verify,
                cert=settings.cert,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            if self._socks.cut:
                raise CoordError("closed", condition="closed") from None
            if isinstance(exc, requests.Timeout):
                raise CoordError(
                    f"no answer from Consul at {settings.base_url} within {read_timeout:g}s",
                    condition="timeout",
                ) from None
            raise CoordError(
                f"cannot reach Consul at {settings.base_url}: {_reason(exc)}",
                condition=_reason(exc),
            ) from None
        if resp.status_code not in (200, 404):
            raise _status_error(resp, path)
        resp.encoding = "utf-8"
        try:
            value = callback(Response(resp.status_code, resp.headers, resp.text))
        except Exception as exc:  # python-consul's own errors, bad JSON, missing headers
            raise CoordError(
                f"malformed answer from Consul for {path}: {type(exc).__name__}: {exc}",
                condition="malformed",
            ) from None
        return Reply(value, resp.status_code, resp.headers)

    def cut(self) -> None:
        """End every request in flight and any later one; safe from any thread."""
        self._socks.cut_all()

    def close(self) -> None:
        """Cut requests and release the pooled connections; idempotent."""
        self._socks.cut_all()
        if not self._closed:
            self._closed = True
            self._session.close()

    def release(self) -> None:
        """In a forked child: let go of inherited connections without touching them."""
        _INHERITED.append(self)
        self._socks.release()


def _reason(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if match:
        return match.group(0).strip()
    if "SSL" in text or "certificate" in text.lower():
        return "TLS error: " + text[-200:]
    return type(exc).__name__


def _status_error(resp: requests.Response, path: str) -> CoordError:
    body = " ".join(resp.text.split())[:200]
    status = resp.status_code
    if status in (301, 302, 307, 308):
        where = resp.headers.get("Location", "?")
        return CoordError(
            f"HTTP {status}: Consul redirected {path} to {where} (a key cannot contain '//')",
            condition=f"HTTP {status}",
            status=status,
        )
    if status == 403:
        what = f"HTTP 403 permission denied ({body or 'no detail'}): check the ACL token"
    elif status == 429:
        what = f"HTTP 429 rate limited by Consul ({body or 'too many requests'})"
    else:
        what = f"HTTP {status} {resp.reason or ''} from Consul: {body}".rstrip(": ")
    retry_after = None
    raw = resp.headers.get("Retry-After")
    if raw and raw.strip().isdigit():
        retry_after = float(raw)
    return CoordError(what, condition=f"HTTP {status}", status=status, retry_after=retry_after)
