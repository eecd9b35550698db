"""ConsulCoord: policies in Consul KV, kept current by blocking queries (python-consul inside).

python-consul builds the KV requests and decodes the answers; the HTTP underneath is
ours, because python-consul 1.1.0 sets no timeout (an accepted but unanswered request
would stall the watcher forever), sends the ACL token in the URL, lets environment
variables override explicit arguments, and gives no way to interrupt a blocking query.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import socket
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import consul
import requests
import requests.adapters
import urllib3.connection
import urllib3.connectionpool

from breaker._duration import format_go_duration, parse_go_duration
from breaker.coord._base import CoordError, CoordHealth, OnChange, Snapshot, Watch

try:  # py-consul, the maintained fork
    from consul.api.kv import KV as _KV
except ImportError:  # python-consul 1.1.0
    _KV = consul.Consul.KV

_log = logging.getLogger("breaker")

DEFAULT_ADDR = "127.0.0.1:8500"
DEFAULT_WAIT = 55.0
"""Blocking-query wait: with Consul's jitter (wait/16) an answer comes within 58.5 s, under
the 60 s idle timeout common in load balancers and proxies, while costing each process
about one request a minute when nothing changes."""
DEFAULT_TIMEOUT = 5.0
MIN_INTERVAL = 0.1
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(name: str, value: str) -> bool:
    """Return ``value`` read as Go's strconv.ParseBool reads it; raise ValueError if it can't."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={value!r} is not a boolean (use true/false, 1/0, t/f)")


@attrs.frozen
class ConsulSettings:
    """Where and how to reach Consul, resolved from arguments first, then the environment."""

    base_url: str
    token: str | None = attrs.field(repr=lambda t: "<set>" if t else "None")
    verify: bool | str
    cert: tuple[str, str] | None
    datacenter: str | None

    @classmethod
    def resolve(
        cls,
        addr: str | None = None,
        *,
        token: str | None = None,
        token_file: str | None = None,
        ssl: bool | None = None,
        verify: bool | None = None,
        ca_file: str | None = None,
        ca_path: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        datacenter: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ConsulSettings:
        """Follow the consul CLI's conventions; explicit arguments always win."""
        env = os.environ if environ is None else environ

        def from_env(name: str) -> str | None:
            return env.get(name) or None

        addr = addr or from_env("CONSUL_HTTP_ADDR") or DEFAULT_ADDR
        if ssl is None and from_env("CONSUL_HTTP_SSL"):
            ssl = parse_bool("CONSUL_HTTP_SSL", env["CONSUL_HTTP_SSL"])
        if verify is None and from_env("CONSUL_HTTP_SSL_VERIFY"):
            verify = parse_bool("CONSUL_HTTP_SSL_VERIFY", env["CONSUL_HTTP_SSL_VERIFY"])

        scheme, _, rest = addr.rpartition("://")
        if scheme not in ("", "http", "https"):
            raise ValueError(f"Consul address {addr!r}: unsupported scheme {scheme!r}")
        if not rest:
            raise ValueError(f"Consul address {addr!r} has no host")
        # As Consul's own client: an explicit https:// or CONSUL_HTTP_SSL=true means TLS,
        # and an http:// address never turns TLS off once it was asked for.
        scheme = "https" if scheme == "https" or ssl else "http"
        parts = urllib.parse.urlsplit("//" + rest)
        try:
            port = parts.port or 8500
        except ValueError:
            raise ValueError(f"Consul address {addr!r} has an invalid port") from None
        if not parts.hostname:
            raise ValueError(f"Consul address {addr!r} has no host")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        # A path is a reverse-proxy prefix, as Consul's client allows.
        base_url = f"{scheme}://{host}:{port}{parts.path.rstrip('/')}"

        if token is None:
            token_file = token_file or from_env("CONSUL_HTTP_TOKEN_FILE")
            if token_file:
                # Consul's client reads the token file in preference to CONSUL_HTTP_TOKEN.
                try:
                    with open(token_file, encoding="utf-8") as f:
                        token = f.read().strip() or None
                except OSError as exc:
                    raise ValueError(
                        f"cannot read the Consul token file {token_file!r}: {exc.strerror}"
                    ) from None
            token = token or from_env("CONSUL_HTTP_TOKEN")

        ca_file = ca_file or from_env("CONSUL_CACERT")
        ca_path = ca_path or from_env("CONSUL_CAPATH")
        tls_verify: bool | str = True if verify is None else verify
        if tls_verify and (ca_file or ca_path):
            tls_verify = ca_file or ca_path or True
        client_cert = client_cert or from_env("CONSUL_CLIENT_CERT")
        client_key = client_key or from_env("CONSUL_CLIENT_KEY")
        if bool(client_cert) != bool(client_key):
            raise ValueError("both a client certificate and a client key must be given")
        cert = (client_cert, client_key) if client_cert and client_key else None
        return cls(
            base_url=base_url,
            token=token or None,
            verify=tls_verify,
            cert=cert,
            datacenter=datacenter or None,
        )


class _Response:
    """What python-consul's callbacks read: code, headers, body."""

    __slots__ = ("body", "code", "headers")

    def __init__(self, code: int, headers: Mapping[str, str], body: str) -> None:
        self.code = code
        self.headers = headers
        self.body = body


class _Sockets:
    """The sockets of one client, so closing it can cut a blocking read short."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socks: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.closed = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.closed:
                self._socks.add(sock)
                return
        _shutdown(sock)  # connected after close(): cut it at once

    def close(self) -> None:
        with self._lock:
            self.closed = True
            socks = list(self._socks)
        for sock in socks:
            _shutdown(sock)


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


class _HTTP:
    """The HTTP client python-consul's KV calls go through: timeouts, token header, no env."""

    def __init__(self, settings: ConsulSettings, *, timeout: float) -> None:
        self._settings = settings
        self._timeout = timeout
        self._socks = _Sockets()
        self._session = requests.Session()
        self._session.trust_env = False  # no proxy or netrc surprises; TLS comes from settings
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=2)
        adapter.poolmanager.pool_classes_by_scheme = _tracking_pools(self._socks)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self.last_headers: Mapping[str, str] = {}

    def _request(
        self,
        method: str,
        callback: Callable[[Any], Any],
        path: str,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        query = list(params or [])
        url = self._settings.base_url + urllib.parse.quote(path, safe="/:")
        if query:
            url += "?" + urllib.parse.urlencode(query)
        send = {k: v for k, v in (headers or {}).items() if k.lower() != "x-consul-token"}
        if self._settings.token:
            send["X-Consul-Token"] = self._settings.token
        read_timeout = self._timeout
        wait = dict(query).get("wait")
        if "index" in dict(query) and wait is not None:
            # Consul answers a blocking query after wait plus up to wait/16 of jitter.
            read_timeout += _wait_seconds(str(wait)) * 17 / 16
        try:
            resp = self._session.request(
                method,
                url,
                data=data,
                headers=send,
                timeout=(self._timeout, read_timeout),
                verify=self._settings.verify,
                cert=self._settings.cert,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise CoordError(
                f"no answer from Consul at {self._settings.base_url} within {read_timeout:g}s",
                condition="timeout",
            ) from None
        except requests.RequestException as exc:
            if self._socks.closed:
                raise CoordError("closed", condition="closed") from None
            raise CoordError(
                f"cannot reach Consul at {self._settings.base_url}: {_reason(exc)}",
                condition=_reason(exc),
            ) from None
        self.last_headers = resp.headers
        if resp.status_code not in (200, 404):
            raise _status_error(resp, path)
        resp.encoding = "utf-8"
        try:
            return callback(_Response(resp.status_code, resp.headers, resp.text))
        except (consul.ConsulException, ValueError, KeyError, TypeError) as exc:
            raise CoordError(
                f"malformed answer from Consul for {path}: {exc}", condition="malformed"
            ) from None

    def get(self, callback: Callable[[Any], Any], path: str, params: Any = None, **kw: Any) -> Any:
        return self._request("GET", callback, path, params, headers=kw.get("headers"))

    def put(
        self,
        callback: Callable[[Any], Any],
        path: str,
        params: Any = None,
        data: Any = "",
        **kw: Any,
    ) -> Any:
        return self._request("PUT", callback, path, params, data=data, headers=kw.get("headers"))

    def delete(
        self, callback: Callable[[Any], Any], path: str, params: Any = None, **kw: Any
    ) -> Any:
        return self._request("DELETE", callback, path, params, headers=kw.get("headers"))

    def post(
        self,
        callback: Callable[[Any], Any],
        path: str,
        params: Any = None,
        data: Any = "",
        **kw: Any,
    ) -> Any:
        return self._request("POST", callback, path, params, data=data, headers=kw.get("headers"))

    def close(self) -> None:
        """Cut any request in flight and release connections."""
        self._socks.close()
        self._session.close()


def _wait_seconds(text: str) -> float:
    return parse_go_duration(text) / 1e9


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


class _Agent:
    """The slice of a python-consul ``Consul`` object that its KV endpoint reads."""

    def __init__(self, http: _HTTP, datacenter: str | None) -> None:
        self.http = http
        self.token = None  # the token travels in a header our HTTP client adds
        self.dc = datacenter
        self.consistency = "default"

    def prepare_headers(self, token: str | None = None) -> dict[str, str]:
        return {}


class ConsulCoord:
    """Read policy documents from Consul KV and watch them with blocking queries.

    ``addr`` is ``host:port`` or ``http(s)://host:port``; unset arguments follow the
    consul CLI's environment (``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_TOKEN``,
    ``CONSUL_HTTP_TOKEN_FILE``, ``CONSUL_HTTP_SSL``, ``CONSUL_HTTP_SSL_VERIFY``,
    ``CONSUL_CACERT``, ``CONSUL_CAPATH``, ``CONSUL_CLIENT_CERT``/``CONSUL_CLIENT_KEY``).
    ``wait`` is the blocking-query wait in seconds; ``timeout`` bounds every other
    request and is added to ``wait`` for blocking ones. After an error the watcher backs
    off exponentially with jitter, from ``backoff_first`` seconds (the first retry comes
    within it) up to ``backoff_cap``, and never queries more often than ``min_interval``.
    """

    def __init__(
        self,
        addr: str | None = None,
        *,
        token: str | None = None,
        token_file: str | None = None,
        ssl: bool | None = None,
        verify: bool | None = None,
        ca_file: str | None = None,
        ca_path: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        datacenter: str | None = None,
        wait: float = DEFAULT_WAIT,
        timeout: float = DEFAULT_TIMEOUT,
        min_interval: float = MIN_INTERVAL,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        if not 0 < wait <= 600:
            raise ValueError(f"wait must be in (0, 600] seconds (Consul's maximum), got {wait}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        self._settings = ConsulSettings.resolve(
            addr,
            token=token,
            token_file=token_file,
            ssl=ssl,
            verify=verify,
            ca_file=ca_file,
            ca_path=ca_path,
            client_cert=client_cert,
            client_key=client_key,
            datacenter=datacenter,
        )
        self._wait = wait
        self._timeout = timeout
        self._min_interval = min_interval
        self._backoff = (backoff_first, backoff_cap)
        self._lock = threading.Lock()  # guards the list of watches
        self._io = threading.Lock()  # one request at a time on the shared client
        self._watches: list[_ConsulWatch] = []
        self._http = _HTTP(self._settings, timeout=timeout)
        self._kv = _KV(_Agent(self._http, self._settings.datacenter))
        self._closed = False

    def __repr__(self) -> str:
        token = "set" if self._settings.token else "none"
        return f"<ConsulCoord {self._settings.base_url} token={token} wait={self._wait:g}s>"

    @property
    def address(self) -> str:
        """Return the base URL requests go to."""
        return self._settings.base_url

    def load(self, prefix: str) -> Snapshot:
        """Return every key under ``prefix`` (one recursive GET); raise `CoordError` on failure."""
        with self._io:
            _, entries = _list(self._kv, self._http, prefix.lstrip("/"), index=0, wait=None)
        return {e["Key"]: e["Value"] or b"" for e in entries}

    def put(self, key: str, value: bytes | str) -> None:
        """Store ``value`` at ``key`` (an operator's write; raise `CoordError` on failure)."""
        with self._io:
            ok = self._kv.put(key.lstrip("/"), value)
        if ok is not True:
            raise CoordError(f"Consul refused to write {key!r}")

    def delete(self, key: str, *, recurse: bool = False) -> None:
        """Delete ``key`` (or every key under it, with ``recurse``)."""
        with self._io:
            self._kv.delete(key.lstrip("/"), recurse=recurse)

    def watch(self, prefix: str, on_change: OnChange) -> Watch:
        """Watch ``prefix`` from a background thread, starting with its current content."""
        watch = _ConsulWatch(
            self._settings,
            prefix.lstrip("/"),
            on_change,
            wait=self._wait,
            timeout=self._timeout,
            min_interval=self._min_interval,
            backoff=self._backoff,
            on_stop=self._forget,
        )
        with self._lock:
            if self._closed:
                raise CoordError("this ConsulCoord is closed")
            self._watches.append(watch)
        watch.start()
        return watch

    def close(self) -> None:
        """Stop every watch (within a second, even mid-query) and close connections."""
        with self._lock:
            self._closed = True
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.stop()
        self._http.close()

    def _forget(self, watch: _ConsulWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)


def _list(
    kv: Any, http: _HTTP, prefix: str, *, index: int, wait: float | None
) -> tuple[int, list[dict[str, Any]]]:
    """Return (X-Consul-Index, entries) for a recursive GET of ``prefix``."""
    wait_text = format_go_duration(round(wait * 1e9)) if wait else None
    raw_index, entries = kv.get(prefix, recurse=True, index=index or None, wait=wait_text)
    headers = http.last_headers
    if headers.get("X-Consul-Results-Filtered-By-ACLs", "").lower() == "true":
        raise CoordError(
            f"the ACL token may not read every key under {prefix!r} "
            "(X-Consul-Results-Filtered-By-ACLs); check the token's key_prefix policy",
            condition="filtered by ACLs",
        )
    try:
        new_index = int(raw_index)
    except (TypeError, ValueError):
        raise CoordError(
            f"Consul answered without a usable X-Consul-Index ({raw_index!r})",
            condition="malformed",
        ) from None
    if entries is None:  # 404: nothing under the prefix, a valid (empty) state
        entries = []
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("Key"), str) for e in entries
    ):
        raise CoordError(
            "malformed answer from Consul: expected a list of KV entries", condition="malformed"
        )
    return new_index, entries


class _ConsulWatch:
    """One blocking-query loop on one prefix, in its own thread."""

    def __init__(
        self,
        settings: ConsulSettings,
        prefix: str,
        on_change: OnChange,
        *,
        wait: float,
        timeout: float,
        min_interval: float,
        backoff: tuple[float, float],
        on_stop: Callable[[_ConsulWatch], None],
    ) -> None:
        self.prefix = prefix
        self._on_change = on_change
        self._wait = wait
        self._min_interval = min_interval
        self._backoff_first, self._backoff_cap = backoff
        self._on_stop = on_stop
        self._http = _HTTP(settings, timeout=timeout)
        self._kv = _KV(_Agent(self._http, settings.datacenter))
        self._stopping = threading.Event()
        self._random = random.Random()
        self._health = CoordHealth(up=False)
        self._thread = threading.Thread(
            target=self._run, name=f"breaker-consul-watch:{prefix}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop, cutting a blocking query short; return once the thread is gone."""
        self._stopping.set()
        self._http.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self._on_stop(self)

    def health(self) -> CoordHealth:
        """Return whether the last read succeeded, when one last did, and the last error."""
        return self._health

    def _run(self) -> None:
        index = 0
        seen: dict[str, int] | None = None
        failures = 0
        condition: str | None = None
        next_query = 0.0
        while not self._stopping.is_set():
            pause = next_query - time.monotonic()
            if pause > 0 and self._stopping.wait(pause):
                break
            # Pace blocking queries, which return as fast as writes come; an index-0 read
            # (the first, or after a reset) answers at once and need not delay the next.
            next_query = time.monotonic() + self._min_interval if index else 0.0
            try:
                new_index, entries = _list(
                    self._kv, self._http, self.prefix, index=index, wait=self._wait
                )
            except CoordError as exc:
                if self._stopping.is_set():
                    break
                self._health = attrs.evolve(self._health, up=False, last_error=str(exc))
                if exc.condition != condition:
                    condition = exc.condition
                    _log.warning(
                        "watching Consul prefix %r failed: %s; keeping the last good policies "
                        "and retrying with backoff",
                        self.prefix,
                        exc,
                    )
                delay = self.backoff_delay(failures, exc.retry_after)
                failures += 1
                if self._stopping.wait(delay):
                    break
                continue
            if condition is not None:
                _log.info(
                    "watching Consul prefix %r works again after %d failed attempts",
                    self.prefix,
                    failures,
                )
                condition = None
            failures = 0
            self._health = CoordHealth(up=True, last_sync=time.time())
            if new_index < index:
                # A snapshot restore or a new cluster: indexes start over. Re-read from 0,
                # or the next query would wait for an index that may never come.
                _log.info(
                    "Consul index for %r went backwards (%d < %d); starting over",
                    self.prefix,
                    new_index,
                    index,
                )
                index = 0
            else:
                index = max(new_index, 1)
            current = {e["Key"]: e.get("ModifyIndex", 0) for e in entries}
            if current != seen and not self._stopping.is_set():
                seen = current
                self._deliver({e["Key"]: e.get("Value") or b"" for e in entries})

    def _deliver(self, snapshot: Snapshot) -> None:
        try:
            self._on_change(snapshot)
        except Exception:
            _log.exception("applying a Consul snapshot of %r failed", self.prefix)

    def backoff_delay(self, failures: int, retry_after: float | None = None) -> float:
        """Return the pause after ``failures`` failed attempts: exponential, jittered, capped."""
        ceiling = min(self._backoff_cap, self._backoff_first * float(2 ** min(failures, 30)))
        delay = ceiling / 2 + self._random.random() * ceiling / 2
        if retry_after is not None:  # the server's hint, within the 30 s ceiling
            delay = max(delay, min(retry_after, BACKOFF_CAP))
        return delay
