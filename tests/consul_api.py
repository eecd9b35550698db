"""The HTTP calls Consul's Go API client makes, for the scenario tests translated from Go.

``Agent`` speaks to the stand-in or to a real agent alike: KV (``api/kv.go``), sessions
(``api/session.go``) and transactions (``api/txn.go``), plus raw requests.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

from .helpers import eventually

if TYPE_CHECKING:
    from breaker.testing.pytest_plugin import ConsulHandle


@dataclass(frozen=True)
class Answer:
    status: int
    headers: requests.structures.CaseInsensitiveDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def index(self) -> int:
        """Return X-Consul-Index, checked as Go's ``assertIndex`` does (present, not 0)."""
        value = self.headers.get("X-Consul-Index")
        assert value, "Missing index"
        assert int(value) != 0, "Bad index"
        return int(value)


@dataclass(frozen=True)
class Pair:
    key: str
    value: bytes
    flags: int
    lock_index: int
    session: str
    modify_index: int

    @classmethod
    def of(cls, entry: dict[str, Any]) -> Pair:
        return cls(
            key=entry["Key"],
            value=base64.b64decode(entry["Value"] or ""),
            flags=entry["Flags"],
            lock_index=entry["LockIndex"],
            session=entry.get("Session") or "",
            modify_index=entry["ModifyIndex"],
        )


class Agent:
    """The HTTP requests Consul's Go API client makes, and raw ones."""

    def __init__(self, handle: ConsulHandle) -> None:
        self.handle = handle
        self.session = requests.Session()
        self.session.trust_env = False
        if handle.token:
            self.session.headers["X-Consul-Token"] = handle.token

    def request(self, method: str, target: str, body: bytes | None = None) -> Answer:
        response = self.session.request(
            method, self.handle.url + target, data=body, timeout=30, allow_redirects=False
        )
        return Answer(response.status_code, response.headers, response.content)

    # -- KV ------------------------------------------------------------------------------

    def kv(self, method: str, key: str, query: str = "", body: bytes | None = None) -> Answer:
        target = "/v1/kv/" + quote(key, safe="/") + (f"?{query}" if query else "")
        return self.request(method, target, body)

    def get(self, key: str, query: str = "") -> tuple[Pair | None, Answer]:
        answer = self.kv("GET", key, query)
        assert answer.status in (200, 404), answer
        return (Pair.of(answer.json()[0]) if answer.status == 200 else None), answer

    def list(self, prefix: str, query: str = "") -> tuple[list[Pair], Answer]:
        answer = self.kv("GET", prefix, "recurse" + (f"&{query}" if query else ""))
        assert answer.status in (200, 404), answer
        return ([Pair.of(e) for e in answer.json()] if answer.status == 200 else []), answer

    def keys(self, prefix: str, separator: str = "") -> tuple[list[str], Answer]:
        answer = self.kv("GET", prefix, "keys" + (f"&separator={separator}" if separator else ""))
        assert answer.status in (200, 404), answer
        return (answer.json() if answer.status == 200 else []), answer

    def put(self, key: str, value: bytes, query: str = "") -> bool:
        answer = self.kv("PUT", key, query, value)
        assert answer.status == 200, answer
        return bool(answer.json())

    def delete(self, key: str, query: str = "") -> bool:
        answer = self.kv("DELETE", key, query)
        assert answer.status == 200, answer
        return bool(answer.json())

    # -- sessions ------------------------------------------------------------------------

    def create_session(self, entry: dict[str, Any] | None = None) -> str:
        """Create a session as ``Session.Create`` does (``None``: no body at all)."""
        body = None if entry is None else json.dumps(entry).encode()
        answer = self.request("PUT", "/v1/session/create", body)
        assert answer.status == 200, answer
        return str(answer.json()["ID"])

    def create_session_no_checks(self, entry: dict[str, Any] | None = None) -> str:
        """Create a session as ``Session.CreateNoChecks`` does (an empty ``NodeChecks``)."""
        return self.create_session({**(entry or {}), "NodeChecks": []})

    def session_info(self, session_id: str) -> tuple[dict[str, Any] | None, Answer]:
        answer = self.request("GET", f"/v1/session/info/{session_id}")
        assert answer.status == 200, answer
        found = answer.json()
        return (found[0] if found else None), answer

    def renew(self, session_id: str) -> dict[str, Any] | None:
        """Renew as ``Session.Renew``: a 404 is a session that is gone (None)."""
        answer = self.request("PUT", f"/v1/session/renew/{session_id}")
        if answer.status == 404:
            return None
        assert answer.status == 200, answer
        return dict(answer.json()[0])

    def destroy(self, session_id: str) -> Answer:
        answer = self.request("PUT", f"/v1/session/destroy/{session_id}")
        assert answer.status == 200, answer
        return answer

    # -- transactions --------------------------------------------------------------------

    def txn(self, ops: Sequence[dict[str, Any]]) -> tuple[bool, dict[str, Any], Answer]:
        """Run a transaction as ``Txn.Txn``: (ok, the decoded answer, the answer)."""
        answer = self.request("PUT", "/v1/txn", json.dumps(list(ops)).encode())
        assert answer.status in (200, 409), answer
        return answer.status == 200, answer.json(), answer


def kv_op(verb: str, key: str, value: bytes | None = None, **fields: Any) -> dict[str, Any]:
    """Return one ``{"KV": ...}`` operation as the Go client encodes ``KVTxnOp``."""
    op: dict[str, Any] = {"Verb": verb, "Key": key}
    if value is not None:
        op["Value"] = base64.b64encode(value).decode()
    op.update(fields)
    return {"KV": op}


def fresh_key() -> str:
    """Return a new key name, as Go's ``testKey()``."""
    return uuid.uuid4().hex


def wait_until_blocked(handle: ConsulHandle) -> None:
    """On the stand-in, wait until a query is parked; a real agent cannot tell."""
    server = handle.server
    if server is not None:
        eventually(lambda: server.blocking_queries > 0)
