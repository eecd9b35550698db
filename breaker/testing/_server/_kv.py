"""The ``/v1/kv/`` endpoint (``agent/kvs_endpoint.go`` and the ``KVS.*`` RPCs behind it).

Order of checks, as in Consul: query options (``stale`` with ``consistent``, ``wait``,
``index``), the key (Consul 1.22 validation), then per method the request's own checks,
then the RPC (where leader loss and injected failures strike), the ACL and the store.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

from breaker._duration import parse_go_duration
from breaker.testing._server import _go as go
from breaker.testing._server._acl import ACLs, Authorizer
from breaker.testing._server._faults import Faults, Leadership
from breaker.testing._server._http import HTTPError, Reply
from breaker.testing._server._store import Result, Store, StoreError
from breaker.testing._server._tenancy import SpaceStore, Tenancy

DATACENTER = "dc1"
JSON = "application/json"
KV_PREFIX = "/v1/kv/"
ALLOW = "OPTIONS,GET,PUT,DELETE"
_METHODS = ("GET", "PUT", "DELETE")
_MAX_VALUE_SIZE_DOC = (
    "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"
)


def validate_key(key: str) -> None:
    """Refuse a key as Consul 1.22 does by default (``disable_kv_key_validation = false``).

    Refused: leading or trailing space, a ``..`` segment, and a ``..`` segment once the key
    is percent-decoded again (``..%2F`` sent as ``..%252F``).
    Anything else is a valid key, spaces, colons, ``%`` and non-ASCII letters included.
    """
    if key != key.strip(go.SPACE):
        raise HTTPError(400, "key must not have leading or trailing spaces")
    if _traverses(key):
        raise HTTPError(400, "key contains path traversal")
    if "%" in key and _traverses(unquote(key)):
        raise HTTPError(400, "key contains URL-encoded path traversal")


def query_options(params: go.Values) -> tuple[float | None, int]:
    """Parse the query options every read takes (``HTTPHandlers.parse``): (wait, index).

    Refuse ``?stale`` with ``?consistent``, a ``wait`` that is not a Go duration and an
    ``index`` that is not a uint64, with Consul's 400s.
    """
    if params.has("stale") and params.has("consistent"):
        raise HTTPError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
    wait: float | None = None
    if params.get("wait"):
        try:
            wait = parse_go_duration(params.get("wait")) / 1e9
        except ValueError:
            raise HTTPError(400, "Invalid wait time") from None
    min_index = 0
    if params.get("index"):
        try:
            min_index = go.parse_uint(params.get("index"))
        except ValueError:
            raise HTTPError(400, "Invalid index") from None
    return wait, min_index


def _traverses(key: str) -> bool:
    return ".." in key.split("/")


@dataclass(frozen=True)
class KVSettings:
    """The agent settings the endpoint obeys."""

    max_value_size: int
    validate_keys: bool
    query_timeout: Callable[[float | None], float]


class KVEndpoint:
    """Serve GET, PUT and DELETE on ``/v1/kv/<key>`` from a `Store`."""

    def __init__(
        self,
        store: Store,
        faults: Faults,
        acls: ACLs,
        settings: KVSettings,
        tenancy: Tenancy | None = None,
    ) -> None:
        self._store = store
        self._faults = faults
        self._acls = acls
        self._settings = settings
        self._tenancy = tenancy or Tenancy(store, enterprise=False)

    def serve(
        self,
        method: str,
        key: str,
        params: go.Values,
        headers: Mapping[str, str],
        body: bytes,
        cancelled: Callable[[], bool],
    ) -> Reply:
        """Answer one request (errors raised as `HTTPError`)."""
        if method == "OPTIONS":
            return Reply(200, headers=[("Allow", ALLOW)])
        if method not in _METHODS:
            raise HTTPError(405, f"method {method} not allowed", (("Allow", ALLOW),))
        call = _Call(
            key=key,
            params=params,
            headers=headers,
            dc=params.get("dc") or DATACENTER,
            token=self._acls.token_of(params, headers),
            stale_read=method == "GET" and params.has("stale"),
            cancelled=cancelled,
        )
        wait, min_index = query_options(params)
        if key and self._settings.validate_keys:
            validate_key(key)
        if method == "GET":
            return self._get(call, wait, min_index)
        if method == "PUT":
            return self._put(call, body)
        return self._delete(call)

    def _space(self, call: _Call) -> Store | SpaceStore:
        """Return the store as the request's namespace and partition see it."""
        return self._tenancy.store_for(call.params, call.headers)

    def _rpc(self, call: _Call) -> tuple[Leadership, Authorizer | None]:
        """Reach a server (faults strike here), which resolves the token."""
        leader = self._faults.rpc(call.cancelled, stale=call.stale_read)
        if call.dc != DATACENTER:
            raise HTTPError(500, "No path to datacenter")
        return leader, self._acls.resolve(call.token)

    def _get(self, call: _Call, wait: float | None, min_index: int) -> Reply:
        params = call.params
        key = call.key
        timeout = self._settings.query_timeout(wait)
        pretty = params.has("pretty")
        if params.has("keys"):
            store = self._space(call)
            separator = ""
            for name in ("seperator", "separator"):  # Consul's historic spelling first
                if params.has(name):
                    separator = params.get(name)
            leader, authz = self._rpc(call)
            result = store.block(
                min_index, timeout, lambda: self._list(store, key, authz), call.cancelled
            )
            names = _roll_up(key, separator, [entry.key for entry in result.entries])
            meta = _meta(result, leader)
            if not names and key:
                return Reply(404, headers=meta)
            return Reply(200, go.to_json(names, pretty=pretty), JSON, meta)
        recurse = params.has("recurse")
        if not recurse and not key:
            raise HTTPError(400, "Missing key name")
        store = self._space(call)
        leader, authz = self._rpc(call)
        if recurse:

            def query() -> Result:
                return self._list(store, key, authz)

        else:
            if authz is not None and not authz.can_read(key):
                raise authz.denied("read", key)

            def query() -> Result:
                return store.query_get(key)

        result = store.block(min_index, timeout, query, call.cancelled)
        meta = _meta(result, leader)
        if not result.entries:
            return Reply(404, headers=meta)
        if params.has("raw") and not recurse:
            raw_headers = [
                ("X-Content-Type-Options", "nosniff"),
                ("Content-Security-Policy", "sandbox"),
            ]
            return Reply(200, result.entries[0].value or b"", "text/plain", [*meta, *raw_headers])
        payload = [entry.to_json() for entry in result.entries]
        return Reply(200, go.to_json(payload, pretty=pretty), JSON, meta)

    def _list(self, store: Store | SpaceStore, prefix: str, authz: Authorizer | None) -> Result:
        result = store.query_list(prefix, None if authz is None else authz.can_read)
        # Consul reports filtering only to a token that authenticated.
        result.filtered = result.filtered and authz is not None and authz.authenticated
        return result

    def _put(self, call: _Call, body: bytes) -> Reply:
        params = call.params
        store = self._space(call)
        if not call.key:
            raise HTTPError(400, "Missing key name")
        _check_conflicts(params, ("cas", "acquire", "release"))
        flags = _uint(params.get("flags")) if params.has("flags") else 0
        cas = _uint(params.get("cas")) if params.has("cas") else None
        limit = self._settings.max_value_size
        if len(body) > limit:
            raise HTTPError(
                413,
                f"Request body({len(body)} bytes) too large, "
                f"max size: {limit} bytes. See {_MAX_VALUE_SIZE_DOC}.",
            )
        _, authz = self._rpc(call)
        if authz is not None and not authz.can_write(call.key):
            raise authz.denied("write", call.key)
        if params.has("acquire"):
            # Lock-delay is enforced on the leader before raft: no index is consumed.
            if store.lock_delayed(call.key):
                return Reply(200, b"false", JSON)
            ok = self._apply(lambda: store.lock(call.key, body, flags, params.get("acquire")))
        elif params.has("release"):
            ok = self._apply(lambda: store.unlock(call.key, body, flags, params.get("release")))
        else:
            ok, _ = store.set(call.key, body, flags, cas)
        return Reply(200, b"true" if ok else b"false", JSON)

    @staticmethod
    def _apply(write: Callable[[], bool]) -> bool:
        """Run a write whose state-store errors Consul answers with a 500 and their text."""
        try:
            return write()
        except StoreError as exc:
            raise HTTPError(500, str(exc)) from None

    def _delete(self, call: _Call) -> Reply:
        params = call.params
        store = self._space(call)
        _check_conflicts(params, ("recurse", "cas"))
        recurse = params.has("recurse")
        if not recurse and not call.key:
            raise HTTPError(400, "Missing key name")
        cas = _uint(params.get("cas")) if params.has("cas") else None
        _, authz = self._rpc(call)
        if authz is not None:
            allowed = authz.can_write_prefix(call.key) if recurse else authz.can_write(call.key)
            if not allowed:
                raise authz.denied("write", call.key)
        if recurse:
            store.delete_tree(call.key)
            ok = True
        else:
            ok = store.delete(call.key, cas)
        return Reply(200, b"true" if ok else b"false", JSON)


@dataclass(frozen=True)
class _Call:
    key: str
    params: go.Values
    headers: Mapping[str, str]
    dc: str
    token: str
    stale_read: bool
    cancelled: Callable[[], bool]


def _meta(result: Result, leader: Leadership) -> list[tuple[str, str]]:
    # Go canonicalizes header names, hence "Knownleader" and "Lastcontact".
    meta = [
        ("X-Consul-Index", str(max(result.index, 1))),
        ("X-Consul-Knownleader", "true" if leader.known else "false"),
        ("X-Consul-Lastcontact", str(leader.last_contact_ms)),
    ]
    if result.filtered:
        meta.append(("X-Consul-Results-Filtered-By-Acls", "true"))
    return meta


def _uint(text: str) -> int:
    try:
        return go.parse_uint(text)
    except ValueError as exc:
        raise HTTPError(500, str(exc)) from None


def _roll_up(prefix: str, separator: str, keys: Sequence[str]) -> list[str]:
    """List keys as ``KVS.ListKeys`` does: cut each at the first separator after the prefix."""
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


def _check_conflicts(params: go.Values, names: Sequence[str]) -> None:
    if sum(params.has(name) for name in names) > 1:
        raise HTTPError(400, f"Conflicting flags: {params.encode()}\n")
