"""The ``/v1/txn`` endpoint for KV operations (``agent/txn_endpoint.go``, ``Txn.*`` RPCs).

A body is a JSON list of at most 128 operations, each ``{"KV": {"Verb", "Key", "Value"
(base64), "Flags", "Index", "Session"}}``. Checks before anything runs: the body's size
(413 over ``txn_max_req_len``, itself at least ``kv_max_value_size``), its JSON (400), the
number of operations and each value's size (413). A transaction without writes is a read
(stale allowed, no index used); any write makes it one raft entry at one index. Each
operation is then vetted (a key, the ACL, a lock-delay): any failure answers 409 with the
errors and nothing consumed. Then the operations run in order against the state: any
failure answers 409 with every error, the index is consumed and nothing is applied.
Success answers 200 with the results, those the token may not read left out.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from breaker.testing._server import _go as go
from breaker.testing._server._acl import ACLs, Authorizer
from breaker.testing._server._faults import Faults
from breaker.testing._server._http import HTTPError, Reply
from breaker.testing._server._kv import DATACENTER, JSON, query_options
from breaker.testing._server._store import WRITE_VERBS, Entry, KVOp, Store

TXN_PATH = "/v1/txn"
MAX_TXN_OPS = 128
"""Consul's ``maxTxnOps``."""
TXN_MAX_REQ_LEN = 512 * 1024
"""Consul's default ``txn_max_req_len`` (raft's suggested maximum entry size)."""
_TXN_DOC = "https://www.consul.io/docs/agent/config/config-files#txn_max_req_len"
_NOT_KV = (
    "this Consul stand-in serves KV operations in /v1/txn only "
    "(Node, Service and Check operations are not implemented)"
)


@dataclass(frozen=True)
class TxnSettings:
    """The agent settings the endpoint obeys."""

    max_value_size: int
    max_req_len: int


class TxnEndpoint:
    """Serve ``PUT /v1/txn`` from a `Store`."""

    def __init__(self, store: Store, faults: Faults, acls: ACLs, settings: TxnSettings) -> None:
        self._store = store
        self._faults = faults
        self._acls = acls
        self._settings = settings

    def serve(
        self,
        method: str,
        params: go.Values,
        headers: Mapping[str, str],
        body: bytes,
        cancelled: Callable[[], bool],
    ) -> Reply:
        """Answer one request."""
        if method == "OPTIONS":
            return Reply(200, headers=[("Allow", "OPTIONS,PUT")])
        if method != "PUT":
            raise HTTPError(405, f"method {method} not allowed", (("Allow", "OPTIONS,PUT"),))
        ops = self._convert(body)
        writes = sum(op.verb in WRITE_VERBS for op in ops)
        stale = False
        if not writes:
            query_options(params)
            stale = params.has("stale")
        leader = self._faults.rpc(cancelled, stale=stale)
        if (params.get("dc") or DATACENTER) != DATACENTER:
            raise HTTPError(500, "No path to datacenter")
        authz = self._acls.resolve(self._acls.token_of(params, headers))
        errors = [
            (n, problem)
            for n, op in enumerate(ops)
            if (problem := self._vet(op, authz, lock_delay=bool(writes))) is not None
        ]
        results: list[Entry] = []
        if not errors:
            results, errors = self._store.txn(ops, write=bool(writes))
        meta: list[tuple[str, str]] = []
        if not writes:
            meta = [
                ("X-Consul-Knownleader", "true" if leader.known else "false"),
                ("X-Consul-Lastcontact", str(leader.last_contact_ms)),
            ]
        if errors:
            payload: dict[str, object] = {
                "Results": None,
                "Errors": [{"OpIndex": n, "What": what} for n, what in errors],
            }
            return Reply(409, go.to_json(payload), JSON, meta)
        if authz is not None:
            results = [entry for entry in results if authz.can_read(entry.key)]
        payload = {"Results": [{"KV": entry.to_json()} for entry in results], "Errors": None}
        return Reply(200, go.to_json(payload, pretty=params.has("pretty")), JSON, meta)

    def _convert(self, body: bytes) -> list[KVOp]:
        """Check the body's limits and decode it (``convertOps``)."""
        max_len = max(self._settings.max_req_len, self._settings.max_value_size)
        if len(body) > max_len:
            raise HTTPError(
                413,
                f"Request body({len(body)} bytes) too large, max size: {max_len} bytes. "
                f"See {_TXN_DOC}.",
            )
        try:
            raw = json.loads(body) if body.strip() else None
            ops = _decode_ops(raw)
        except ValueError as exc:
            raise HTTPError(400, f"Failed to parse body: {exc}") from None
        if len(ops) > MAX_TXN_OPS:
            raise HTTPError(
                413, f"Transaction contains too many operations ({len(ops)} > {MAX_TXN_OPS})"
            )
        limit = self._settings.max_value_size
        for op in ops:
            size = len(op.value or b"")
            if size > limit:
                raise HTTPError(
                    413, f"Value for key {go.quote(op.key)} is too large ({size} > {limit} bytes)"
                )
        return ops

    def _vet(self, op: KVOp, authz: Authorizer | None, *, lock_delay: bool) -> str | None:
        """Return why ``op`` may not run (``kvsPreApply``), or None."""
        if not op.key and op.verb != "delete-tree":
            return "Must provide key"
        if authz is not None:
            if op.verb == "delete-tree":
                if not authz.can_write_prefix(op.key):
                    return authz.denial("write", op.key)
            elif op.verb in ("check-session", "check-index"):
                if not authz.can_read(op.key):
                    return authz.denial("read", op.key)
            elif op.verb not in ("get", "get-tree", "get-or-empty") and not authz.can_write(op.key):
                return authz.denial("write", op.key)
        if lock_delay and op.verb == "lock" and self._store.lock_delayed(op.key):
            return f"failed to lock key {go.quote(op.key)} due to lock delay"
        return None


def _decode_ops(raw: Any) -> list[KVOp]:
    """Decode ``api.TxnOps`` (field names matched case-insensitively, as Go does)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(
            f"json: cannot unmarshal {go.json_kind(raw)} into Go value of type api.TxnOps"
        )
    ops: list[KVOp] = []
    for item in raw:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise ValueError(
                f"json: cannot unmarshal {go.json_kind(item)} into Go value of type api.TxnOp"
            )
        fields = _lowered(item)
        if any(fields.get(name) is not None for name in ("node", "service", "check")):
            raise ValueError(_NOT_KV)
        kv = fields.get("kv")
        if kv is None:
            continue  # an operation of no known kind is dropped, as Consul's switch does
        if not isinstance(kv, dict):
            raise ValueError(
                f"json: cannot unmarshal {go.json_kind(kv)} into Go struct field "
                "TxnOp.KV of type api.KVTxnOp"
            )
        ops.append(_decode_kv(_lowered(kv)))
    return ops


def _decode_kv(kv: Mapping[str, Any]) -> KVOp:
    return KVOp(
        verb=_field(kv, "verb", "Verb", str, ""),
        key=_field(kv, "key", "Key", str, ""),
        value=_value(kv.get("value")),
        flags=_uint(kv, "flags", "Flags"),
        index=_uint(kv, "index", "Index"),
        session=_field(kv, "session", "Session", str, ""),
    )


def _lowered(raw: Mapping[str, Any]) -> dict[str, Any]:
    # Go's decoder matches names case-insensitively; with duplicates the last one wins.
    return {str(name).lower(): value for name, value in raw.items()}


def _field(kv: Mapping[str, Any], name: str, go_name: str, kind: type, default: Any) -> Any:
    value = kv.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        raise ValueError(
            f"json: cannot unmarshal {go.json_kind(value)} into Go struct field "
            f"KVTxnOp.KV.{go_name} of type string"
        )
    return value


def _uint(kv: Mapping[str, Any], name: str, go_name: str) -> int:
    value = kv.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise ValueError(
            f"json: cannot unmarshal {go.json_kind(value)} into Go struct field "
            f"KVTxnOp.KV.{go_name} of type uint64"
        )
    return value


def _value(raw: Any) -> bytes | None:
    """Decode a base64 ``Value`` as Go's ``[]byte`` field does (null stays nil)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ValueError(
            f"json: cannot unmarshal {go.json_kind(raw)} into Go struct field "
            "KVTxnOp.KV.Value of type []uint8"
        )
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("illegal base64 data at input byte 0") from None
