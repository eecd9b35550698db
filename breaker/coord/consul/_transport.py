"""The HTTP client under python-consul: timeouts on every request, the token in a header,
TCP keepalive, and sockets that another thread can cut to end a blocking query at once."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any

import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool
import urllib3.exceptions

from breaker._exceptions import CoordError
from breaker.coord.consul._settings import ConsulSettings, read_token_file

__all__ = ["TOKEN_REREAD", "Channel", "Reply", "Response", "Transport", "keepalive_options"]

_log = logging.getLogger("breaker.consul")

TOKEN_REREAD = 5.0
"""A token file is read again after a 403 at most once per this many seconds."""

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


def _shutdown(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


class Channel:
    """Send one caller's requests over the shared connections; `cut` ends only its own.

    A watch owns a channel: stopping the watch cuts the connection its blocking query is
    using (and refuses any later request) while other callers' requests go on.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._lock = threading.Lock()
        self._cut = False
        self._conn: Any = None  # the urllib3 connection the request in flight uses

    @property
    def settings(self) -> ConsulSettings:
        """Return the transport's settings."""
        return self.transport.settings

    @property
    def is_cut(self) -> bool:
        """Say whether `cut` was called."""
        return self._cut

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
        """Send one request as `Transport.request` does, on this channel."""
        return self.transport.request(
            method,
            callback,
            path,
            params,
            timeout=timeout,
            read_timeout=read_timeout,
            data=data,
            headers=headers,
            channel=self,
        )

    def cut(self) -> None:
        """End this channel's request in flight and refuse later ones; safe from any thread."""
        with self._lock:
            self._cut = True
            conn = self._conn
        if conn is not None:
            _shutdown(getattr(conn, "sock", None))

    def _attach(self, conn: Any) -> None:
        with self._lock:
            self._conn = conn
            cut = self._cut
        if cut:
            _shutdown(getattr(conn, "sock", None))

    def _connected(self, conn: Any) -> None:
        with self._lock:
            cut = self._cut and self._conn is conn
        if cut:
            _shutdown(conn.sock)

    def _detach(self) -> None:
        with self._lock:
            self._conn = None


class _Current(threading.local):
    channel: Channel | None = None


def _tracking_pools(socks: _Sockets, current: _Current, unix_socket: str | None) -> dict[str, type]:
    """Return urllib3 pool classes whose connections register their sockets in ``socks``
    and with the channel of the request that uses them (``current``, per thread)."""

    def connected(conn: Any) -> None:
        socks.add(conn.sock)
        channel = current.channel
        if channel is not None:
            channel._connected(conn)

    class Conn(urllib3.connection.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            connected(self)

    class UnixConn(Conn):
        def _new_conn(self) -> socket.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if isinstance(self.timeout, (int, float)):
                sock.settimeout(self.timeout)
            try:
                sock.connect(str(unix_socket))
            except OSError as exc:
                sock.close()
                raise urllib3.exceptions.NewConnectionError(
                    self, f"Failed to establish a new connection: {exc}"
                ) from exc
            return sock

    class TLSConn(urllib3.connection.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            connected(self)

    class Pool(urllib3.connectionpool.HTTPConnectionPool):
        ConnectionCls = Conn if unix_socket is None else UnixConn

        def _get_conn(self, timeout: float | None = None) -> Any:
            conn = super()._get_conn(timeout)
            channel = current.channel
            if channel is not None:
                channel._attach(conn)
            return conn

    class TLSPool(urllib3.connectionpool.HTTPSConnectionPool):
        ConnectionCls = TLSConn

        def _get_conn(self, timeout: float | None = None) -> Any:
            conn = super()._get_conn(timeout)
            channel = current.channel
            if channel is not None:
                channel._attach(conn)
            return conn

    return {"http": Pool, "https": TLSPool}


class Transport:
    """Send Consul HTTP requests: no environment, a timeout each, the token in a header.

    One pool of connections serves every caller (a process holds one connection to the
    agent while nothing else runs): `channel` gives a caller requests it can cut alone.
    `close` may be called from any thread: it ends every request in flight and releases
    the pooled connections; `release` is for a forked child (see
    `_Sockets.release`). With a token file, a 403 makes the transport read the file again
    (at most once per ``token_reread`` seconds of ``clock``) and retry once with a token
    that changed.
    """

    def __init__(
        self,
        settings: ConsulSettings,
        *,
        keepalive: float | None,
        clock: Callable[[], float] = time.monotonic,
        token_reread: float = TOKEN_REREAD,
    ) -> None:
        self.settings = settings
        self._socks = _Sockets()
        self._current = _Current()
        self._clock = clock
        self._token = settings.token
        self._token_reread = token_reread
        self._token_read_at = clock()
        self._token_lock = threading.Lock()
        self._token_problem: str | None = None
        self._query = settings.query()
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy or netrc surprises; TLS comes from settings
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=4)
        poolmanager = adapter.poolmanager
        poolmanager.pool_classes_by_scheme = _tracking_pools(
            self._socks, self._current, settings.unix_socket
        )
        options = [*urllib3.connection.HTTPConnection.default_socket_options]
        if settings.unix_socket is None:
            options += keepalive_options(keepalive)
        else:
            options = []  # TCP options mean nothing to a unix socket
        poolmanager.connection_pool_kw["socket_options"] = options
        if settings.tls_server_name:
            poolmanager.connection_pool_kw["server_hostname"] = settings.tls_server_name
            poolmanager.connection_pool_kw["assert_hostname"] = settings.tls_server_name
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._closed = False

    def channel(self) -> Channel:
        """Return a channel: requests over the shared connections that can be cut alone."""
        return Channel(self)

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
        channel: Channel | None = None,
        accept: Collection[int] = (200, 404),
    ) -> Reply:
        """Send one request; return python-consul's reading of the answer; raise `CoordError`.

        An answer whose status is not in ``accept`` is an error, its body cut short for the
        message; one in ``accept`` reaches ``callback`` whole (a 409 from ``/v1/txn``
        holds every reason a transaction failed).
        """
        settings = self.settings
        url = settings.base_url + urllib.parse.quote(path, safe="/:")
        query = [*(params or []), *self._query]
        if query:
            url += "?" + urllib.parse.urlencode(query)
        send = {k: v for k, v in (headers or {}).items() if k.lower() != "x-consul-token"}
        token = self._token
        resp = self._send(method, url, data, send, token, timeout, read_timeout, channel)
        if resp.status_code == 403 and self._reread_token(token):
            resp = self._send(method, url, data, send, self._token, timeout, read_timeout, channel)
        if resp.status_code not in accept:
            raise _status_error(resp, path)
        resp.encoding = "utf-8"
        try:
            value = callback(Response(resp.status_code, resp.headers, resp.text))
        except CoordError:
            raise
        except Exception as exc:  # python-consul's own errors, bad JSON, missing headers
            raise CoordError(
                f"malformed answer from Consul for {path}: {type(exc).__name__}: {exc}",
                condition="malformed",
            ) from None
        return Reply(value, resp.status_code, resp.headers)

    def _send(
        self,
        method: str,
        url: str,
        data: Any,
        headers: dict[str, str],
        token: str | None,
        timeout: float,
        read_timeout: float,
        channel: Channel | None,
    ) -> requests.Response:
        settings = self.settings
        if token:
            headers["X-Consul-Token"] = token
        else:
            headers.pop("X-Consul-Token", None)
        if self._socks.cut or (channel is not None and channel.is_cut):
            raise CoordError("closed", condition="closed")
        current = self._current
        current.channel = channel
        try:
            return self._session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=(timeout, read_timeout),
                verify=settings.verify,
                cert=settings.cert,
                auth=settings.http_auth,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            if self._socks.cut or (channel is not None and channel.is_cut):
                raise CoordError("closed", condition="closed") from None
            if isinstance(exc, requests.Timeout):
                raise CoordError(
                    f"no answer from Consul at {settings.address} within {read_timeout:g}s",
                    condition="timeout",
                ) from None
            raise CoordError(
                f"cannot reach Consul at {settings.address}: {_reason(exc)}",
                condition=_reason(exc),
            ) from None
        finally:
            current.channel = None
            if channel is not None:
                channel._detach()

    def _reread_token(self, refused: str | None) -> bool:
        """Read the token file again after a 403; return True if the token changed."""
        path = self.settings.token_file
        if path is None:
            return False
        with self._token_lock:
            if self._token != refused:
                return True  # another request already picked up a new token
            now = self._clock()
            if now - self._token_read_at < self._token_reread:
                return False
            self._token_read_at = now
            try:
                token = read_token_file(path)
            except ValueError as exc:
                if self._token_problem != str(exc):
                    self._token_problem = str(exc)
                    _log.warning("%s; keeping the token read before", exc)
                return False
            self._token_problem = None
            if token is None or token == self._token:
                return False
            self._token = token
        _log.info("Consul refused the ACL token; using the new token in %s", path)
        return True

    def close(self) -> None:
        """End every request in flight and any later one, release the connections; idempotent.

        Safe from any thread.
        """
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
