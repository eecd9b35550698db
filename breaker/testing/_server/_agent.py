"""The agent's HTTP stack: what happens to a request before and around an endpoint.

In Consul's order (``agent/http.go``):

1. cleanhttp's check: a decoded path with an unprintable character gets a bare 400;
2. Go's ServeMux: a path with ``//``, ``.`` or ``..`` segments is redirected (301) to its
   clean form, ``/v1/kv`` to ``/v1/kv/``; paths no endpoint claims go to the index
   handler (the UI notice, or a 404 naming the problem);
3. every endpoint is wrapped in a gzip handler with no minimum size (a non-empty answer is
   compressed when ``Accept-Encoding`` allows gzip; ``Vary: Accept-Encoding`` always) and in
   ``wrap``, which sets ``X-Consul-Default-ACL-Policy``, answers a bare 500 to a query
   string ``url.ParseQuery`` refuses, and writes an endpoint's error as plain text.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable

from breaker.testing._server import _go as go
from breaker.testing._server._acl import ACLs
from breaker.testing._server._faults import Faults
from breaker.testing._server._http import TEXT, HTTPError, RecordedRequest, Reply, Request
from breaker.testing._server._kv import KV_PREFIX, KVEndpoint
from breaker.testing._server._session import EXACT, SESSION_PREFIX, SUBTREES, SessionEndpoint
from breaker.testing._server._store import Store
from breaker.testing._server._txn import TXN_PATH, TxnEndpoint

_UI_DISABLED = (
    "Consul Agent: UI disabled. To enable, set ui_config.enabled=true "
    "in the agent configuration and restart."
)
_NOT_API = (
    "Invalid URL path: if attempting to use the HTTP API, ensure the path starts with '/v1/'\n"
)
_NOT_ENDPOINT = "Invalid URL path: not a recognized HTTP API endpoint\n"
_STATUS = ("/v1/status/leader", "/v1/status/peers")


class Agent:
    """Answer requests as a Consul agent's HTTP server does, and record them."""

    def __init__(
        self,
        faults: Faults,
        acls: ACLs,
        store: Store,
        endpoints: tuple[KVEndpoint, SessionEndpoint, TxnEndpoint],
        host: str,
    ) -> None:
        self._faults = faults
        self._acls = acls
        self._store = store
        self._kv, self._sessions, self._txn = endpoints
        self._cond = store.cond
        self._host = host
        self.epoch = 0
        self.log: list[RecordedRequest] = []

    def cancelled(self, epoch: int) -> Callable[[], bool]:
        """Return a test of whether the server that took a request has stopped since."""
        return lambda: self.epoch != epoch

    def handle(self, request: Request) -> Reply:
        """Answer ``request``, or raise `Dropped` to leave it unanswered."""
        with self._cond:
            self.log.append(
                RecordedRequest(
                    request.method,
                    request.raw_path,
                    go.Values(go.parse_query(request.raw_query, strict=False)).first_values(),
                    request.headers,
                    request.body,
                    request.time,
                )
            )
        self._faults.hold_if_hanging(self.cancelled(request.epoch))
        # Session TTLs run on the server's clock, which a test may move: look at it now.
        self._store.expire_sessions()
        path = go.unescape_path(request.raw_path)
        if not go.is_printable(path):
            return Reply(400)
        cleaned = go.clean_path(request.raw_path)
        if cleaned != request.raw_path:
            return _redirect(request.method, cleaned, request.raw_query)
        if path == KV_PREFIX.rstrip("/"):
            return _redirect(request.method, KV_PREFIX, request.raw_query)
        if path.startswith(KV_PREFIX):
            return self._wrap(request, lambda params: self._serve_kv(request, path, params))
        if path.startswith(SESSION_PREFIX) or path == SESSION_PREFIX.rstrip("/"):
            return self._route_session(request, path)
        if path == TXN_PATH:
            return self._wrap(
                request,
                lambda params: self._txn.serve(
                    request.method,
                    params,
                    request.headers,
                    request.body,
                    self.cancelled(request.epoch),
                ),
            )
        if path in _STATUS:
            return self._wrap(request, lambda params: self._serve_status(request, path))
        if path == "/":
            return Reply(200, _UI_DISABLED.encode(), TEXT)
        return Reply(404, (_NOT_ENDPOINT if "/v1/" in path else _NOT_API).encode(), TEXT)

    def _wrap(self, request: Request, endpoint: Callable[[go.Values], Reply]) -> Reply:
        common = [
            ("Vary", "Accept-Encoding"),
            ("X-Consul-Default-Acl-Policy", self._acls.default_policy),
        ]
        try:
            params = go.Values(go.parse_query(request.raw_query))
        except ValueError:
            return Reply(500, headers=common)
        try:
            reply = endpoint(params)
        except HTTPError as exc:
            body = exc.message.encode("utf-8")
            reply = Reply(exc.status, body, TEXT if body else None, list(exc.headers))
        reply.headers[:0] = common
        # Every answer with a body names its Content-Type, so gziphandler's sniffing (for an
        # answer without one) never comes into play.
        if reply.body and go.accepts_gzip(request.headers.get("accept-encoding", "")):
            reply.body = gzip.compress(reply.body, mtime=0)
            reply.headers.append(("Content-Encoding", "gzip"))
        return reply

    def _serve_kv(self, request: Request, path: str, params: go.Values) -> Reply:
        return self._kv.serve(
            request.method,
            path[len(KV_PREFIX) :],
            params,
            request.headers,
            request.body,
            self.cancelled(request.epoch),
        )

    def _route_session(self, request: Request, path: str) -> Reply:
        """Route as the mux does: exact ``create``/``list``, ``<action>/`` subtrees."""
        action, slash, rest = path[len(SESSION_PREFIX) :].partition("/")
        if action in SUBTREES and not slash:
            return _redirect(request.method, request.raw_path + "/", request.raw_query)
        if not (action in EXACT and not slash) and action not in SUBTREES:
            return Reply(404, _NOT_ENDPOINT.encode(), TEXT)
        return self._wrap(
            request,
            lambda params: self._sessions.serve(
                request.method,
                action,
                rest,
                params,
                request.headers,
                request.body,
                self.cancelled(request.epoch),
            ),
        )

    def _serve_status(self, request: Request, path: str) -> Reply:
        allow = "OPTIONS,GET"
        if request.method == "OPTIONS":
            return Reply(200, headers=[("Allow", allow)])
        if request.method != "GET":
            raise HTTPError(405, f"method {request.method} not allowed", (("Allow", allow),))
        self._faults.rpc(self.cancelled(request.epoch), stale=False)
        leader = f"{self._host}:8300"
        payload: object = leader if path.endswith("leader") else [leader]
        return Reply(200, go.to_json(payload), "application/json")


def _redirect(method: str, path: str, raw_query: str) -> Reply:
    """Answer as Go's ServeMux does for a path it would clean: 301 to the clean path."""
    location = path + ("?" + raw_query if raw_query else "")
    if method in ("GET", "HEAD"):
        escaped = location.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        escaped = escaped.replace('"', "&#34;").replace("'", "&#39;")
        body = f'<a href="{escaped}">Moved Permanently</a>.\n\n'.encode()
        return Reply(301, body, "text/html; charset=utf-8", [("Location", location)])
    return Reply(301, headers=[("Location", location)])
