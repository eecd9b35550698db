"""A small HTTP server that speaks Consul's KV API, with hooks to inject faults.

No Consul binary can be installed where this project is tested, so the tests and the demo talk
to this server instead. It follows what Consul documents and, where the documentation is
silent, what the agent's source does (``agent/kvs_endpoint.go``, ``agent/http.go``,
``agent/consul/kvs_endpoint.go``, ``agent/consul/state/kvs.go``, ``agent/blockingquery``):

* ``GET /v1/kv/<key>`` with ``recurse``, ``keys``/``separator``, ``raw``, ``index``/``wait``
  blocking queries (``wait`` clamped to ``max_query_time``, default ``default_query_time``,
  plus up to ``wait/16`` of jitter), ``X-Consul-Index``/``-KnownLeader``/``-LastContact`` on
  every answer of a read, 404s included (writes and errors carry none, as in Consul).
* Consul's index rules: a raft-like index that every write consumes; ``CreateIndex`` and
  ``ModifyIndex`` per key; a write that changes nothing keeps ``ModifyIndex``; deletes leave
  tombstones; a prefix reports the highest ``ModifyIndex`` or tombstone under it, else the
  whole table's index, and never less than 1.
* ``PUT`` with ``cas`` and ``flags`` and the 512 KiB value limit; ``DELETE`` with
  ``recurse`` and ``cas``.
* ACL tokens (``X-Consul-Token``, ``Authorization: Bearer``, ``?token=``) with ``key_prefix``
  rules, filtered listings and ``X-Consul-Results-Filtered-By-ACLs``.
* Go's ``ServeMux`` 301 redirect for paths with ``//``, ``.`` or ``..`` segments.

Keys are taken from the percent-decoded path, as Go's ``URL.Path`` is: ``a%2Fb`` and ``a/b``
name the same key. Path cleaning looks at the path as sent (still escaped), as Go's ServeMux
does since Go 1.22, so ``a%2F%2Fb`` is not redirected while ``a//b`` is.
"""

from __future__ import annotations

import base64
import contextlib
import json
import random
import re
import selectors
import socket
import socketserver
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl, quote_plus, unquote, urlsplit

from breaker._duration import parse_go_duration

__all__ = [
    "ANONYMOUS_ACCESSOR_ID",
    "MAX_VALUE_SIZE",
    "ACLRule",
    "ConsulServer",
    "RecordedRequest",
]

Access = Literal["read", "write", "deny"]
DefaultPolicy = Literal["allow", "deny"]

MAX_VALUE_SIZE = 512 * 1024
"""Consul's default ``kv_max_value_size``: larger PUT bodies are answered with 413."""

ANONYMOUS_ACCESSOR_ID = "00000000-0000-0000-0000-000000000002"
"""The AccessorID Consul gives the anonymous token (used when a request carries none)."""

DATACENTER = "dc1"
_KV_PREFIX = "/v1/kv/"
_KV_METHODS = ("GET", "PUT", "DELETE")
_KV_ALLOW = "OPTIONS,GET,PUT,DELETE"
_JITTER_FRACTION = 16
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_MAX_BODY = 64 * 1024 * 1024
_JOIN_TIMEOUT = 5.0
_MAX_VALUE_SIZE_DOC = (
    "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"
)
_UI_DISABLED = (
    "Consul Agent: UI disabled. To enable, set ui_config.enabled=true "
    "in the agent configuration and restart."
)
_NOT_API = (
    "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
)
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}
_DIGITS = "0123456789"


def _go_quote(text: str) -> str:
    """Quote ``text`` the way Go's ``%q`` does, so error messages read like Consul's."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _parse_uint(text: str) -> int:
    """Parse a uint64 like Go's ``strconv.ParseUint(text, 10, 64)``, with its error text."""
    if not text or any(char not in _DIGITS for char in text):
        raise _HTTPError(500, f"strconv.ParseUint: parsing {_go_quote(text)}: invalid syntax")
    value = int(text)
    if value >= 2**64:
        raise _HTTPError(500, f"strconv.ParseUint: parsing {_go_quote(text)}: value out of range")
    return value


def _clean_path(path: str) -> str:
    """Return the path Go's ServeMux redirects to: no empty, ``.`` or ``..`` segments."""
    if not path.startswith("/"):
        path = "/" + path
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    cleaned = "/" + "/".join(segments)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def _go_json(value: object, *, pretty: bool = False) -> bytes:
    """Encode ``value`` as Go's ``encoding/json`` does (compact, HTML characters escaped)."""
    if pretty:
        text = json.dumps(value, indent=4, ensure_ascii=False) + "\n"
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode("utf-8")


@dataclass(frozen=True)
class ACLRule:
    """Grant ``access`` to every key starting with ``prefix``, like Consul's ``key_prefix`` rule.

    The longest matching prefix decides; among rules with the same prefix ``deny`` beats
    ``write`` beats ``read``. A key no rule matches falls back to the server's default policy.
    """

    prefix: str
    access: Access

    def __post_init__(self) -> None:
        if self.access not in ("read", "write", "deny"):
            raise ValueError(f"access must be 'read', 'write' or 'deny', not {self.access!r}")


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received, as it arrived (header names lower-cased)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    time: float


@dataclass
class _Entry:
    key: str
    value: bytes | None
    flags: int
    create_index: int
    modify_index: int

    def to_json(self) -> dict[str, object]:
        encoded = None if self.value is None else base64.b64encode(self.value).decode("ascii")
        return {
            "LockIndex": 0,
            "Key": self.key,
            "Flags": self.flags,
            "Value": encoded,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


@dataclass
class _Result:
    index: int
    entries: list[_Entry]
    not_found: bool = False
    filtered: bool = False


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    close: bool = False


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Dropped(Exception):
    """Raised where a request must end without an answer (hang released, server stopping)."""


@dataclass(frozen=True)
class _Authorizer:
    accessor_id: str
    rules: tuple[ACLRule, ...]
    default_allow: bool
    authenticated: bool

    def _access(self, key: str) -> Access | None:
        best: ACLRule | None = None
        rank = {"read": 0, "write": 1, "deny": 2}
        for rule in self.rules:
            if not key.startswith(rule.prefix):
                continue
            if (
                best is None
                or len(rule.prefix) > len(best.prefix)
                or (len(rule.prefix) == len(best.prefix) and rank[rule.access] > rank[best.access])
            ):
                best = rule
        return None if best is None else best.access

    def can_read(self, key: str) -> bool:
        access = self._access(key)
        return self.default_allow if access is None else access in ("read", "write")

    def can_write(self, key: str) -> bool:
        access = self._access(key)
        return self.default_allow if access is None else access == "write"

    def can_write_prefix(self, prefix: str) -> bool:
        # Consul's KeyWritePrefix: the prefix itself must be writable and no rule under it may
        # grant less than write.
        access = self._access(prefix)
        if access is not None and access != "write":
            return False
        if any(rule.prefix.startswith(prefix) and rule.access != "write" for rule in self.rules):
            return False
        return True if access == "write" else self.default_allow

    def denied(self, level: str, key: str) -> str:
        who = (
            "anonymous token"
            if self.accessor_id == ANONYMOUS_ACCESSOR_ID
            else f"token with AccessorID '{self.accessor_id}'"
        )
        message = f"Permission denied: {who} lacks permission 'key:{level}'"
        if key:
            message += f" on {_go_quote(key)}"
        if self.accessor_id == ANONYMOUS_ACCESSOR_ID:
            message += (
                ". The anonymous token is used implicitly when a request does not specify a token."
            )
        return message


class _Params:
    """Query parameters with Go's ``url.Values`` semantics (presence, first value)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.values: dict[str, list[str]] = {}
        for name, value in pairs:
            self.values.setdefault(name, []).append(value)

    def has(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str) -> str:
        values = self.values.get(name)
        return values[0] if values else ""

    def encode(self) -> str:
        return "&".join(
            f"{quote_plus(name)}={quote_plus(value)}"
            for name in sorted(self.values)
            for value in self.values[name]
        )


class ConsulServer:
    """Serve Consul's KV HTTP API on 127.0.0.1 from memory, with hooks to inject faults.

    Start it with `start` or a ``with`` block; it listens on ``port`` (0 picks a free one,
    kept across `restart`). ``jitter=False`` makes blocking queries time out after exactly
    ``wait`` (``rng`` makes the jitter reproducible instead). ``start_index`` is the index
    consumed before the first write, which gets ``start_index + 1``. ACLs are on when
    ``acl_tokens`` (secret -> rules) is given; a request without a token is judged by
    ``anonymous_rules``; keys no rule matches follow ``acl_default_policy``.
    ``max_value_size``, ``default_query_time`` and ``max_query_time`` are the agent settings
    of the same names, with Consul's defaults.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        jitter: bool = True,
        start_index: int = 1,
        acl_tokens: Mapping[str, Iterable[ACLRule]] | None = None,
        acl_default_policy: DefaultPolicy = "allow",
        anonymous_rules: Iterable[ACLRule] = (),
        max_value_size: int = MAX_VALUE_SIZE,
        default_query_time: float = 300.0,
        max_query_time: float = 600.0,
        rng: random.Random | None = None,
    ) -> None:
        if acl_default_policy not in ("allow", "deny"):
            raise ValueError(
                f"acl_default_policy must be 'allow' or 'deny', not {acl_default_policy!r}"
            )
        if start_index < 1:
            # Index 1 is what an empty KV store reports; a write there would wake no watcher.
            raise ValueError("start_index must be >= 1 (Consul's first raft entry is internal)")
        self._host = host
        self._port = port
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._max_value_size = max_value_size
        self._default_query_time = default_query_time
        self._max_query_time = max_query_time
        self._acl_tokens = (
            None
            if acl_tokens is None
            else {secret: tuple(rules) for secret, rules in acl_tokens.items()}
        )
        self._acl_default_policy: DefaultPolicy = acl_default_policy
        self._anonymous_rules = tuple(anonymous_rules)

        self._cond = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        self._tombstones: dict[str, int] = {}
        self._raft_index = start_index
        self._table_index = 0
        self._epoch = 0
        self._hang = False
        self._hang_next = 0
        self._hang_gen = 0
        self._faults: deque[tuple[int, str, tuple[tuple[str, str], ...]]] = deque()
        self._log: list[RecordedRequest] = []

        self._lifecycle = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ConsulServer:
        """Start listening (on the same port as before, after a stop); no-op if running."""
        with self._lifecycle:
            if self._httpd is not None:
                return self
            with self._cond:
                epoch = self._epoch
            httpd = _HTTPServer((self._host, self._port), self, epoch)
            self._port = httpd.server_address[1]
            thread = threading.Thread(
                target=httpd.serve,
                name=f"ConsulServer-{self._port}-serve",
                daemon=True,
            )
            thread.start()
            self._httpd = httpd
            self._serve_thread = thread
            return self

    def stop(self) -> None:
        """Stop listening and drop every connection, blocked or hanging requests included.

        Idempotent. Returns once the server's threads are gone.
        """
        with self._lifecycle:
            httpd, thread = self._httpd, self._serve_thread
            if httpd is None or thread is None:
                return
            self._httpd = None
            self._serve_thread = None
            with self._cond:
                self._epoch += 1
                self._hang = False
                self._hang_next = 0
                self._hang_gen += 1
                self._cond.notify_all()
            httpd.wake()
            thread.join(_JOIN_TIMEOUT)
            httpd.server_close()
            httpd.drop_connections()

    def restart(self, *, reset_index: bool = True) -> None:
        """Stop and start again on the same port, keeping the data.

        With ``reset_index`` every entry is re-written at index 1 and the tombstones are gone,
        as if a new cluster had restored the data: any prefix that held data or saw a write now
        reports an index lower than before, and the next write gets index 2.
        """
        self.stop()
        if reset_index:
            with self._cond:
                for entry in self._entries.values():
                    entry.create_index = entry.modify_index = 1
                self._tombstones.clear()
                self._raft_index = 1
                self._table_index = 1 if self._entries else 0
        self.start()

    @property
    def running(self) -> bool:
        """Say whether the server is listening."""
        return self._httpd is not None

    def __enter__(self) -> ConsulServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """Return the port (0 until the first start when a free port was asked for)."""
        return self._port

    @property
    def addr(self) -> str:
        """Return ``host:port``, the form ``CONSUL_HTTP_ADDR`` takes."""
        if self._port == 0:
            raise RuntimeError("the server has not been started yet")
        return f"{self._host}:{self._port}"

    @property
    def url(self) -> str:
        """Return the base URL, ``http://host:port``."""
        return f"http://{self.addr}"

    # -- operator helpers (no HTTP) --------------------------------------------------------

    @property
    def index(self) -> int:
        """Return the last index a write consumed (Consul's raft index)."""
        with self._cond:
            return self._raft_index

    def put(self, key: str, value: bytes | str, flags: int = 0) -> int:
        """Write ``key`` and return its ModifyIndex (unchanged if the write changed nothing)."""
        if not key:
            raise ValueError("key must not be empty")
        if not 0 <= flags < 2**64:
            raise ValueError("flags must fit in a uint64")
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        with self._cond:
            _, modify_index = self._set(key, data, flags, None)
            return modify_index

    def delete(self, key: str, recurse: bool = False) -> int:
        """Delete ``key`` (or every key under it with ``recurse``) and return the write's index."""
        with self._cond:
            if recurse:
                self._delete_tree(key)
            else:
                self._delete(key, None)
            return self._raft_index

    def get(self, key: str) -> bytes | None:
        """Return the value of ``key``, or None if it does not exist."""
        with self._cond:
            entry = self._entries.get(key)
            if entry is None:
                return None
            return entry.value or b""

    def keys(self, prefix: str = "") -> list[str]:
        """Return every key under ``prefix``, sorted."""
        with self._cond:
            return sorted(key for key in self._entries if key.startswith(prefix))

    def reap_tombstones(self, up_to: int | None = None) -> int:
        """Forget tombstones at or below index ``up_to`` (all by default); return how many.

        Consul reaps tombstones after a while; a prefix whose index came from a tombstone may
        then report a lower index, which watchers must treat as a reset.
        """
        with self._cond:
            doomed = [k for k, i in self._tombstones.items() if up_to is None or i <= up_to]
            for key in doomed:
                del self._tombstones[key]
            return len(doomed)

    def accessor_id(self, secret: str) -> str:
        """Return the AccessorID this server reports for the token ``secret`` in denials."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"consul-token:{secret}"))

    # -- fault hooks -----------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``n`` requests with ``status`` (and ``body``), queued after earlier ones.

        The answers still carry ``X-Consul-Index`` so a client that reads the index before the
        status is caught out. ``headers`` adds e.g. ``Retry-After`` to a 429.
        """
        text = HTTPStatus(status).phrase if body is None else body
        extra = tuple((headers or {}).items())
        with self._cond:
            for _ in range(n):
                self._faults.append((status, text, extra))

    def hang_next(self, n: int = 1) -> None:
        """Read the next ``n`` requests and never answer them (until `hang(False)` or a stop)."""
        with self._cond:
            self._hang_next += n

    def hang(self, enabled: bool = True) -> None:
        """Read every request and never answer; ``hang(False)`` drops the held ones unanswered."""
        with self._cond:
            self._hang = enabled
            if not enabled:
                self._hang_next = 0
                self._hang_gen += 1
                self._cond.notify_all()

    @property
    def requests_log(self) -> list[RecordedRequest]:
        """Return a copy of the requests received so far, oldest first."""
        with self._cond:
            return list(self._log)

    def clear_requests_log(self) -> None:
        """Forget the requests recorded so far."""
        with self._cond:
            self._log.clear()

    def query_timeout(self, wait: float | None) -> float:
        """Return how long a blocking query with this ``wait`` may block, jitter included.

        As Consul's ``RPCQueryTimeout``: no or non-positive wait means ``default_query_time``,
        more than ``max_query_time`` is clamped, then up to ``timeout/16`` of jitter is added.
        """
        timeout = self._default_query_time if wait is None or wait <= 0 else wait
        timeout = min(timeout, self._max_query_time)
        if self._jitter:
            timeout += self._rng.random() * timeout / _JITTER_FRACTION
        return timeout

    # -- state (callers hold self._cond) ---------------------------------------------------

    def _set(self, key: str, value: bytes, flags: int, cas: int | None) -> tuple[bool, int]:
        self._raft_index += 1
        index = self._raft_index
        existing = self._entries.get(key)
        if cas is not None:
            if cas == 0 and existing is not None:
                return False, existing.modify_index
            if cas != 0 and (existing is None or existing.modify_index != cas):
                return False, 0 if existing is None else existing.modify_index
        stored = value or None
        if existing is not None and existing.value == stored and existing.flags == flags:
            return True, existing.modify_index
        create_index = index if existing is None else existing.create_index
        self._entries[key] = _Entry(key, stored, flags, create_index, index)
        self._table_index = index
        self._cond.notify_all()
        return True, index

    def _delete(self, key: str, cas: int | None) -> bool:
        self._raft_index += 1
        index = self._raft_index
        existing = self._entries.get(key)
        if cas is not None and (existing is None or existing.modify_index != cas):
            return existing is None
        if existing is None:
            return True
        del self._entries[key]
        self._tombstones[key] = index
        self._table_index = index
        self._cond.notify_all()
        return True

    def _delete_tree(self, prefix: str) -> None:
        self._raft_index += 1
        index = self._raft_index
        doomed = [key for key in self._entries if key.startswith(prefix)]
        if not doomed:
            return
        for key in doomed:
            del self._entries[key]
        # Consul leaves one tombstone at the prefix, none when the whole tree goes.
        if prefix:
            self._tombstones[prefix] = index
        self._table_index = index
        self._cond.notify_all()

    def _query_get(self, key: str) -> _Result:
        entry = self._entries.get(key)
        if entry is None:
            return _Result(max(self._table_index, 1), [], not_found=True)
        return _Result(max(entry.modify_index, 1), [entry])

    def _query_list(self, prefix: str, authz: _Authorizer | None) -> _Result:
        entries = sorted(
            (entry for key, entry in self._entries.items() if key.startswith(prefix)),
            key=lambda entry: entry.key,
        )
        if prefix:
            index = max((entry.modify_index for entry in entries), default=0)
            tombstones = (i for key, i in self._tombstones.items() if key.startswith(prefix))
            index = max(index, max(tombstones, default=0))
        else:
            index = self._table_index
        index = max(index or self._table_index, 1)
        filtered = False
        if authz is not None:
            readable = [entry for entry in entries if authz.can_read(entry.key)]
            filtered = len(readable) != len(entries) and authz.authenticated
            entries = readable
        return _Result(index, entries, filtered=filtered)

    def _block(
        self, epoch: int, min_index: int, timeout: float, query: Callable[[], _Result]
    ) -> _Result:
        """Run ``query`` as Consul's blockingquery.Query: wait for an index above min_index."""
        with self._cond:
            if self._epoch != epoch:
                raise _Dropped
            result = query()
            if min_index == 0:
                return result
            deadline = time.monotonic() + timeout
            seen_not_found = False
            while True:
                if result.not_found:
                    # A key still missing after a wake-up has not changed: keep waiting.
                    if seen_not_found:
                        min_index = result.index
                    seen_not_found = True
                if result.index > min_index:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return result
                self._cond.wait(remaining)
                if self._epoch != epoch:
                    raise _Dropped
                result = query()

    # -- request handling ------------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._cond:
            self._log.append(request)

    def _hold_if_hanging(self, epoch: int) -> None:
        with self._cond:
            if not self._hang and self._hang_next <= 0:
                return
            if not self._hang:
                self._hang_next -= 1
            generation = self._hang_gen
            while self._hang_gen == generation and self._epoch == epoch:
                self._cond.wait()
        raise _Dropped

    def _handle(
        self,
        epoch: int,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Reply:
        self._hold_if_hanging(epoch)
        with self._cond:
            fault = self._faults.popleft() if self._faults else None
            table_index = self._table_index
        if fault is not None:
            status, text, extra = fault
            return _Reply(
                status,
                text.encode("utf-8"),
                _TEXT if text else None,
                [*self._meta(table_index, False), *extra],
            )
        if _BAD_ESCAPE.search(raw_path):
            return _Reply(400, b"400 Bad Request", _TEXT, close=True)
        cleaned = _clean_path(raw_path)
        if cleaned != raw_path:
            return _redirect(method, cleaned, raw_query)
        path = unquote(raw_path)
        if path == _KV_PREFIX.rstrip("/"):
            return _redirect(method, _KV_PREFIX, raw_query)
        if path.startswith(_KV_PREFIX):
            params = _Params(parse_qsl(raw_query, keep_blank_values=True))
            try:
                return self._kv(epoch, method, path[len(_KV_PREFIX) :], params, headers, body)
            except _HTTPError as exc:
                return _Reply(
                    exc.status, exc.message.encode("utf-8"), _TEXT, self._common_headers()
                )
        if path in ("/v1/status/leader", "/v1/status/peers"):
            if method != "GET":
                return _Reply(
                    405,
                    f"method {method} not allowed".encode(),
                    _TEXT,
                    [*self._common_headers(), ("Allow", "OPTIONS,GET")],
                )
            leader = f"{self._host}:8300"
            payload: object = leader if path.endswith("leader") else [leader]
            return _Reply(200, _go_json(payload), _JSON, self._common_headers())
        if path == "/":
            return _Reply(200, _UI_DISABLED.encode(), _TEXT)
        if "/v1/" in path:
            return _Reply(404, b"Invalid URL path: not a recognized HTTP API endpoint\n", _TEXT)
        return _Reply(404, _NOT_API.encode(), _TEXT)

    def _common_headers(self) -> list[tuple[str, str]]:
        return [
            ("Vary", "Accept-Encoding"),
            ("X-Consul-Default-Acl-Policy", self._acl_default_policy),
        ]

    def _meta(self, index: int, filtered: bool) -> list[tuple[str, str]]:
        # Go canonicalizes header names, hence "Knownleader" and "Lastcontact".
        meta = [
            ("X-Consul-Index", str(max(index, 1))),
            ("X-Consul-Knownleader", "true"),
            ("X-Consul-Lastcontact", "0"),
        ]
        if filtered:
            meta.append(("X-Consul-Results-Filtered-By-Acls", "true"))
        return meta

    def _token(self, params: _Params, headers: Mapping[str, str]) -> str:
        """Pick the token as Consul does: ``?token=``, then X-Consul-Token, then Bearer."""
        if params.get("token"):
            return params.get("token")
        if headers.get("x-consul-token"):
            return headers["x-consul-token"]
        parts = headers.get("authorization", "").split(" ")
        if len(parts) > 1 and parts[0].lower() == "bearer":
            value = " ".join(parts[1:]).strip()
            return value.split(" ")[0].strip()
        return ""

    def _authorize(self, dc: str, token: str) -> _Authorizer | None:
        """Resolve the request's token the way the server's RPC layer does."""
        if dc != DATACENTER:
            raise _HTTPError(500, "No path to datacenter")
        if self._acl_tokens is None:
            return None
        default_allow = self._acl_default_policy == "allow"
        if not token:
            return _Authorizer(ANONYMOUS_ACCESSOR_ID, self._anonymous_rules, default_allow, False)
        rules = self._acl_tokens.get(token)
        if rules is None:
            raise _HTTPError(403, "ACL not found")
        return _Authorizer(self.accessor_id(token), rules, default_allow, True)

    def _kv(
        self,
        epoch: int,
        method: str,
        key: str,
        params: _Params,
        headers: Mapping[str, str],
        body: bytes,
    ) -> _Reply:
        common = self._common_headers()
        if method == "OPTIONS":
            return _Reply(200, headers=[*common, ("Allow", _KV_ALLOW)])
        if method not in _KV_METHODS:
            return _Reply(
                405, f"method {method} not allowed".encode(), _TEXT, [*common, ("Allow", _KV_ALLOW)]
            )
        dc = params.get("dc") or DATACENTER
        token = self._token(params, headers)
        if params.has("stale") and params.has("consistent"):
            raise _HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        wait: float | None = None
        if params.get("wait"):
            try:
                wait = parse_go_duration(params.get("wait")) / 1e9
            except ValueError:
                raise _HTTPError(400, "Invalid wait time") from None
        min_index = 0
        if params.get("index"):
            try:
                min_index = _parse_uint(params.get("index"))
            except _HTTPError:
                raise _HTTPError(400, "Invalid index") from None
        if method == "GET":
            return self._kv_get(epoch, key, params, dc, token, wait, min_index)
        if method == "PUT":
            return self._kv_put(key, params, dc, token, body)
        return self._kv_delete(key, params, dc, token)

    def _kv_get(
        self,
        epoch: int,
        key: str,
        params: _Params,
        dc: str,
        token: str,
        wait: float | None,
        min_index: int,
    ) -> _Reply:
        common = self._common_headers()
        pretty = params.has("pretty")
        if params.has("keys"):
            separator = params.get("separator") if params.has("separator") else ""
            if not separator and params.has("seperator"):
                separator = params.get("seperator")
            authz = self._authorize(dc, token)
            result = self._block(
                epoch, min_index, self.query_timeout(wait), lambda: self._query_list(key, authz)
            )
            names = _roll_up(key, separator, [entry.key for entry in result.entries])
            meta = [*common, *self._meta(result.index, result.filtered)]
            if not names and key:
                return _Reply(404, headers=meta)
            return _Reply(200, _go_json(names, pretty=pretty), _JSON, meta)
        recurse = params.has("recurse")
        if not recurse and not key:
            raise _HTTPError(400, "Missing key name")
        authz = self._authorize(dc, token)
        if recurse:

            def query() -> _Result:
                return self._query_list(key, authz)

        else:
            if authz is not None and not authz.can_read(key):
                raise _HTTPError(403, authz.denied("read", key))

            def query() -> _Result:
                return self._query_get(key)

        result = self._block(epoch, min_index, self.query_timeout(wait), query)
        meta = [*common, *self._meta(result.index, result.filtered)]
        if not result.entries:
            return _Reply(404, headers=meta)
        if params.has("raw") and not recurse:
            raw_headers = [
                ("X-Content-Type-Options", "nosniff"),
                ("Content-Security-Policy", "sandbox"),
            ]
            return _Reply(200, result.entries[0].value or b"", "text/plain", [*meta, *raw_headers])
        payload = [entry.to_json() for entry in result.entries]
        return _Reply(200, _go_json(payload, pretty=pretty), _JSON, meta)

    def _kv_put(self, key: str, params: _Params, dc: str, token: str, body: bytes) -> _Reply:
        if not key:
            raise _HTTPError(400, "Missing key name")
        _check_conflicts(params, ("cas", "acquire", "release"))
        flags = _parse_uint(params.get("flags")) if params.has("flags") else 0
        cas = _parse_uint(params.get("cas")) if params.has("cas") else None
        if len(body) > self._max_value_size:
            raise _HTTPError(
                413,
                f"Request body({len(body)} bytes) too large, "
                f"max size: {self._max_value_size} bytes. See {_MAX_VALUE_SIZE_DOC}.",
            )
        authz = self._authorize(dc, token)
        if authz is not None and not authz.can_write(key):
            raise _HTTPError(403, authz.denied("write", key))
        if params.has("acquire") or params.has("release"):
            session = params.get("acquire") if params.has("acquire") else params.get("release")
            if not session:
                raise _HTTPError(500, "missing session")
            if params.has("acquire"):
                raise _HTTPError(500, f"invalid session {_go_quote(session)}")
            with self._cond:
                self._raft_index += 1
            return _Reply(200, b"false", _JSON, self._common_headers())
        with self._cond:
            ok, _ = self._set(key, body, flags, cas)
        return _Reply(200, b"true" if ok else b"false", _JSON, self._common_headers())

    def _kv_delete(self, key: str, params: _Params, dc: str, token: str) -> _Reply:
        _check_conflicts(params, ("recurse", "cas"))
        recurse = params.has("recurse")
        if not recurse and not key:
            raise _HTTPError(400, "Missing key name")
        cas = _parse_uint(params.get("cas")) if params.has("cas") else None
        authz = self._authorize(dc, token)
        if authz is not None:
            allowed = authz.can_write_prefix(key) if recurse else authz.can_write(key)
            if not allowed:
                raise _HTTPError(403, authz.denied("write", key))
        with self._cond:
            if recurse:
                self._delete_tree(key)
                ok = True
            else:
                ok = self._delete(key, cas)
        return _Reply(200, b"true" if ok else b"false", _JSON, self._common_headers())


def _roll_up(prefix: str, separator: str, keys: Sequence[str]) -> list[str]:
    """List keys as Consul's ListKeys does: cut each at the first separator after the prefix."""
    if not separator:
        return list(keys)
    names: list[str] = []
    seen: set[str] = set()
    for key in keys:
        cut = key.find(separator, len(prefix))
        if cut == -1:
            names.append(key)
            continue
        name = key[: cut + len(separator)]
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _check_conflicts(params: _Params, names: Sequence[str]) -> None:
    if sum(params.has(name) for name in names) > 1:
        raise _HTTPError(400, f"Conflicting flags: {params.encode()}")


def _redirect(method: str, path: str, raw_query: str) -> _Reply:
    """Answer as Go's ServeMux does for a path it would clean: 301 to the clean path."""
    location = path + ("?" + raw_query if raw_query else "")
    if method in ("GET", "HEAD"):
        escaped = location.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        escaped = escaped.replace('"', "&#34;").replace("'", "&#39;")
        body = f'<a href="{escaped}">Moved Permanently</a>.\n\n'.encode()
        return _Reply(301, body, "text/html; charset=utf-8", [("Location", location)])
    return _Reply(301, headers=[("Location", location)])


class _HTTPServer(socketserver.TCPServer):
    """A threading TCP server that knows its connections so that stop can cut them."""

    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: ConsulServer, epoch: int) -> None:
        self.owner = owner
        self.epoch = epoch
        self._conn_lock = threading.Lock()
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        try:
            super().__init__(address, _Handler)
        except BaseException:
            self._wake_r.close()
            self._wake_w.close()
            raise

    def serve(self) -> None:
        """Accept connections until `wake` is called (no polling, so stop is immediate)."""
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        request, client_address = self.get_request()
                    except OSError:
                        continue
                    self.process_request(request, client_address)

    def wake(self) -> None:
        """Make `serve` return."""
        self._wake_w.send(b"\0")

    def server_close(self) -> None:
        super().server_close()
        self._wake_r.close()
        self._wake_w.close()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name=f"ConsulServer-{self.server_address[1]}-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[request] = thread
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            pass  # a client that breaks its connection must not take the server down
        finally:
            self.shutdown_request(request)
            with self._conn_lock:
                self._conns.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients that go away are part of the tests."""

    def drop_connections(self) -> None:
        """Cut every open connection and wait for their threads to finish."""
        with self._conn_lock:
            conns = list(self._conns.items())
        for sock, _ in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for _, thread in conns:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; the requests log records what tests need."""

    def do_GET(self) -> None:
        """Serve any method through one dispatcher, as Consul's handlers do."""
        self._serve()

    do_PUT = do_DELETE = do_POST = do_HEAD = do_OPTIONS = do_PATCH = do_GET

    def _serve(self) -> None:
        owner = self.server.owner
        try:
            body = self._read_body()
        except _HTTPError as exc:
            self._send(_Reply(exc.status, exc.message.encode(), _TEXT, close=True))
            return
        parts = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)
        query: dict[str, str] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(name, value)
        owner._record(
            RecordedRequest(self.command, parts.path, query, headers, body, time.monotonic())
        )
        try:
            reply = owner._handle(
                self.server.epoch, self.command, parts.path, parts.query, headers, body
            )
        except _Dropped:
            self.close_connection = True
            return
        self._send(reply)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(65537)
                chunk_size = int(line.split(b";")[0].strip() or b"0", 16)
                if chunk_size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += chunk_size
                if size > _MAX_BODY:
                    raise _HTTPError(413, "request body too large")
                chunks.append(self.rfile.read(chunk_size))
                self.rfile.readline(65537)
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _HTTPError(400, "400 Bad Request") from None
        if length > _MAX_BODY:
            raise _HTTPError(413, "request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response_only(reply.status)
            self.send_header("Date", self.date_time_string())
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.content_type is not None:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.close:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and reply.body:
                self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True
