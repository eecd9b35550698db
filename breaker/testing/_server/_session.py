"""The ``/v1/session/`` endpoints (``agent/session_endpoint.go``, ``Session.*`` RPCs).

Paths, as Consul's mux registers them: ``create`` and ``list`` exactly, ``destroy/``,
``renew/``, ``info/`` and ``node/`` followed by an ID or a node name. Creating, destroying
and renewing need ``session:write`` on the session's node; ``info``, ``list`` and ``node``
hide the sessions of nodes the token may not read, and block like any read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from breaker._duration import format_go_duration, parse_go_duration
from breaker.testing._server import _go as go
from breaker.testing._server._acl import ACLs, Authorizer
from breaker.testing._server._faults import Faults, Leadership
from breaker.testing._server._http import HTTPError, Reply
from breaker.testing._server._kv import DATACENTER, JSON, query_options
from breaker.testing._server._store import SERF_CHECK, Result, Session, Store, StoreError

SESSION_PREFIX = "/v1/session/"
EXACT = ("create", "list")
"""Endpoints registered without a trailing slash: nothing may follow them."""
SUBTREES = ("destroy", "renew", "info", "node")
"""Endpoints registered with a trailing slash: an ID or node name follows."""
TTL_MAX = 86400.0
"""Consul's ``structs.SessionTTLMax`` (24 h)."""
DEFAULT_LOCK_DELAY_NS = 15 * 10**9
_LOCK_DELAY_MIN_THRESHOLD = 1000
"""A lock-delay under 1000 (ns) is taken as seconds, as users write "LockDelay": 5."""
_METHODS = {"create": "PUT", "destroy": "PUT", "renew": "PUT"}


@dataclass(frozen=True)
class SessionSettings:
    """The agent settings the endpoints obey."""

    node_name: str
    ttl_min: float
    query_timeout: Callable[[float | None], float]


class SessionEndpoint:
    """Serve ``/v1/session/*`` from a `Store`."""

    def __init__(self, store: Store, faults: Faults, acls: ACLs, settings: SessionSettings) -> None:
        self._store = store
        self._faults = faults
        self._acls = acls
        self._settings = settings

    def serve(
        self,
        method: str,
        action: str,
        rest: str,
        params: go.Values,
        headers: Mapping[str, str],
        body: bytes,
        cancelled: Callable[[], bool],
    ) -> Reply:
        """Answer one request for ``action`` (``rest`` is what follows ``action/``)."""
        allowed = _METHODS.get(action, "GET")
        allow = f"OPTIONS,{allowed}"
        if method == "OPTIONS":
            return Reply(200, headers=[("Allow", allow)])
        if method != allowed:
            raise HTTPError(405, f"method {method} not allowed", (("Allow", allow),))
        call = _Call(
            params=params,
            dc=params.get("dc") or DATACENTER,
            token=self._acls.token_of(params, headers),
            stale=params.has("stale"),
            cancelled=cancelled,
        )
        if action == "create":
            return self._create(call, body)
        if action == "destroy":
            return self._destroy(call, rest)
        wait, min_index = query_options(params)
        if action == "renew":
            return self._renew(call, rest)
        if action == "info":
            if not rest:
                raise HTTPError(400, "Missing session")
            return self._read(call, wait, min_index, lambda: self._store.query_session(rest))
        if action == "node" and not rest:
            raise HTTPError(400, "Missing node name")
        node = rest if action == "node" else None
        return self._read(call, wait, min_index, lambda: self._store.query_sessions(node))

    def _rpc(self, call: _Call, *, read: bool = False) -> tuple[Leadership, Authorizer | None]:
        leader = self._faults.rpc(call.cancelled, stale=read and call.stale)
        if call.dc != DATACENTER:
            raise HTTPError(500, "No path to datacenter")
        return leader, self._acls.resolve(call.token)

    def _create(self, call: _Call, body: bytes) -> Reply:
        fields = _decode_session(body, self._settings.node_name)
        _, authz = self._rpc(call)
        node = fields["node"]
        if not node:
            raise HTTPError(500, "Must provide Node")
        if authz is not None and not authz.can_write_session(node):
            raise authz.denied("write", node, "session")
        behavior = fields["behavior"] or "release"
        if behavior not in ("release", "delete"):
            raise HTTPError(500, f"Invalid Behavior setting '{behavior}'")
        ttl_text = fields["ttl"]
        ttl = 0.0
        if ttl_text:
            try:
                ttl_ns = parse_go_duration(ttl_text)
            except ValueError as exc:
                raise HTTPError(500, f"Session TTL '{ttl_text}' invalid: {exc}") from None
            ttl = ttl_ns / 1e9
            if ttl_ns != 0 and not self._settings.ttl_min <= ttl <= TTL_MAX:
                low = format_go_duration(round(self._settings.ttl_min * 1e9))
                high = format_go_duration(round(TTL_MAX * 1e9))
                raise HTTPError(
                    500, f"Invalid Session TTL '{ttl_ns}', must be between [{low}={high}]"
                )
        if node != self._settings.node_name:
            raise HTTPError(500, "Missing node registration")
        session = Session(
            id="",
            name=fields["name"],
            node=node,
            lock_delay_ns=fields["lock_delay"],
            behavior=behavior,
            ttl=ttl_text,
            ttl_seconds=ttl,
            node_checks=fields["node_checks"],
            service_checks=fields["service_checks"],
            checks=fields["checks"],
        )
        try:
            session_id = self._store.create_session(session)
        except StoreError as exc:
            raise HTTPError(500, str(exc)) from None
        return Reply(200, go.to_json({"ID": session_id}), JSON)

    def _destroy(self, call: _Call, session_id: str) -> Reply:
        if not session_id:
            raise HTTPError(400, "Missing session")
        _, authz = self._rpc(call)
        existing = self._store.session(session_id)
        if existing is not None:
            if authz is not None and not authz.can_write_session(existing.node):
                raise authz.denied("write", existing.node, "session")
            self._store.destroy_session(session_id)
        return Reply(200, b"true", JSON)

    def _renew(self, call: _Call, session_id: str) -> Reply:
        if not session_id:
            raise HTTPError(400, "Missing session")
        _, authz = self._rpc(call)
        existing = self._store.session(session_id)
        if (
            existing is not None
            and authz is not None
            and not authz.can_write_session(existing.node)
        ):
            raise authz.denied("write", existing.node, "session")
        renewed = self._store.renew_session(session_id)
        if renewed is None:
            raise HTTPError(404, f"Session id '{session_id}' not found")
        return Reply(200, go.to_json([renewed.to_json()]), JSON)

    def _read(
        self, call: _Call, wait: float | None, min_index: int, query: Callable[[], Result]
    ) -> Reply:
        leader, authz = self._rpc(call, read=True)

        def filtered() -> Result:
            result = query()
            if authz is not None:
                kept = [s for s in result.sessions if authz.can_read_session(s.node)]
                result.filtered = len(kept) != len(result.sessions) and authz.authenticated
                result.sessions = kept
            return result

        timeout = self._settings.query_timeout(wait)
        result = self._store.block(min_index, timeout, filtered, call.cancelled)
        meta = [
            ("X-Consul-Index", str(max(result.index, 1))),
            ("X-Consul-Knownleader", "true" if leader.known else "false"),
            ("X-Consul-Lastcontact", str(leader.last_contact_ms)),
        ]
        if result.filtered:
            meta.append(("X-Consul-Results-Filtered-By-Acls", "true"))
        payload = [session.to_json() for session in result.sessions]
        return Reply(200, go.to_json(payload, pretty=call.params.has("pretty")), JSON, meta)


@dataclass(frozen=True)
class _Call:
    params: go.Values
    dc: str
    token: str
    stale: bool
    cancelled: Callable[[], bool]


def _decode_session(body: bytes, node_name: str) -> dict[str, Any]:
    """Decode a create body over the defaults, as Go's case-insensitive ``encoding/json``.

    Defaults: this agent's node, the serf check, lock-delay 15 s, behaviour ``release``.
    A ``Checks`` list (deprecated) and ``NodeChecks`` are reconciled as
    ``fixupEmptySessionChecks`` does.
    """
    fields: dict[str, Any] = {
        "name": "",
        "node": node_name,
        "lock_delay": DEFAULT_LOCK_DELAY_NS,
        "behavior": "",
        "ttl": "",
        "node_checks": (SERF_CHECK,),
        "service_checks": None,
        "checks": (SERF_CHECK,),
    }
    if body:
        try:
            raw = json.loads(body)
        except ValueError as exc:
            raise _decode_failed(str(exc)) from None
        if raw is not None and not isinstance(raw, dict):
            raise _decode_failed(
                "json: cannot unmarshal array into Go value of type structs.Session"
            )
        for name, value in (raw or {}).items():
            _decode_field(fields, name.lower(), value)
    checks = fields["checks"]
    if not checks:
        fields["node_checks"] = ()
    elif tuple(checks) == (SERF_CHECK,) or not fields["node_checks"]:
        fields["checks"] = None  # the default serf check, or NodeChecks said "none"
    return fields


def _decode_field(fields: dict[str, Any], name: str, value: Any) -> None:
    if name in ("name", "node", "behavior", "ttl"):
        if value is None:
            return
        if not isinstance(value, str):
            raise _type_error(name, value, "string")
        fields[name] = value
    elif name == "lockdelay":
        fields["lock_delay"] = _lock_delay(value)
    elif name in ("nodechecks", "checks"):
        key = "node_checks" if name == "nodechecks" else "checks"
        if value is None:
            fields[key] = None
            return
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _type_error(name, value, "[]string")
        fields[key] = tuple(value)
    elif name == "servicechecks":
        if value is None:
            fields["service_checks"] = None
            return
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise _type_error(name, value, "[]structs.ServiceCheck")
        checks = []
        for item in value:
            lowered = {str(k).lower(): v for k, v in item.items()}
            check_id, namespace = lowered.get("id") or "", lowered.get("namespace") or ""
            if not isinstance(check_id, str) or not isinstance(namespace, str):
                raise _type_error(name, value, "[]structs.ServiceCheck")
            checks.append((check_id, namespace))
        fields["service_checks"] = tuple(checks)


def _lock_delay(value: Any) -> int:
    """Read ``LockDelay`` as ``Session.UnmarshalJSON``: a Go duration or nanoseconds."""
    if isinstance(value, str):
        try:
            ns = parse_go_duration(value)
        except ValueError as exc:
            raise _decode_failed(str(exc)) from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ns = int(value)
    else:
        return 0
    return ns * 10**9 if ns < _LOCK_DELAY_MIN_THRESHOLD else ns


_GO_NAMES = {
    "name": "Name",
    "node": "Node",
    "behavior": "Behavior",
    "ttl": "TTL",
    "nodechecks": "NodeChecks",
    "checks": "Checks",
    "servicechecks": "ServiceChecks",
}


def _type_error(name: str, value: Any, go_type: str) -> HTTPError:
    return _decode_failed(
        f"json: cannot unmarshal {go.json_kind(value)} into Go struct field "
        f"Session.{_GO_NAMES[name]} of type {go_type}"
    )


def _decode_failed(reason: str) -> HTTPError:
    return HTTPError(400, f"Request decode failed: {reason}")
