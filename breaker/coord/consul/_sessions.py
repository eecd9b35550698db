"""ConsulCoord's sessions and transactions: ``/v1/session/*``, ``?acquire=``, ``/v1/txn``.

A mixin, so that `ConsulCoord` has `SessionCoord` and `TxnCoord` with two hooks in its own
module (the base class and a call in ``close``). These requests go over a connection of
their own, made on first use and made again in a forked child (it notices the new pid):
a fleet publisher renewing its session never waits behind a blocking query, and a child
never talks over its parent's sockets.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from breaker._duration import format_go_duration
from breaker._exceptions import CoordError
from breaker.coord._base import (
    DEFAULT_LOCK_DELAY,
    MAX_TXN_OPS,
    KVEntry,
    SessionBehavior,
    TxnError,
    TxnOp,
    TxnResult,
    check_session_args,
)
from breaker.coord.consul._settings import ConsulSettings
from breaker.coord.consul._transport import Response, Transport

__all__ = ["ConsulSessions"]

_DEFAULT_TIMEOUT = 5.0
_DEFAULT_KEEPALIVE = 10.0
_JSON = {"Content-Type": "application/json"}


def _raw(response: Response) -> Response:
    return response


class ConsulSessions:
    """Give `ConsulCoord` sessions, locks and transactions (see `SessionCoord`, `TxnCoord`)."""

    _session_link: tuple[int, Transport] | None = None
    _session_link_closed = False

    @property
    def settings(self) -> ConsulSettings:  # pragma: no cover - ConsulCoord's own
        raise NotImplementedError

    # -- sessions ---------------------------------------------------------------------------

    def create_session(
        self,
        *,
        ttl: float,
        behavior: SessionBehavior = "release",
        lock_delay: float = DEFAULT_LOCK_DELAY,
        name: str = "",
    ) -> str:
        """Create a session on the agent's node, held by its TTL alone; return its ID.

        ``ttl`` is 10 s to a day (Consul's bounds), or 0 for none. The session names no
        health check, so only the TTL (or `destroy_session`) ends it.
        """
        check_session_args(ttl, behavior, lock_delay)
        body = {
            "Name": name,
            "Behavior": behavior,
            "TTL": _duration(ttl) if ttl else "",
            "LockDelay": _duration(lock_delay),
            "NodeChecks": [],
        }
        reply = self._send("PUT", "/v1/session/create", data=json.dumps(body).encode())
        found = _json(reply, "/v1/session/create")
        session_id = found.get("ID") if isinstance(found, dict) else None
        if not isinstance(session_id, str) or not session_id:
            raise _malformed("/v1/session/create", 'expected {"ID": ...}')
        return session_id

    def renew_session(self, session: str) -> bool:
        """Restart the session's TTL; return False when Consul no longer has it."""
        reply = self._send("PUT", f"/v1/session/renew/{_segment(session)}")
        return reply.code == 200

    def destroy_session(self, session: str) -> None:
        """End the session now; its keys go as its behaviour says (unknown IDs are fine)."""
        self._send("PUT", f"/v1/session/destroy/{_segment(session)}")

    def acquire(self, key: str, value: bytes | str, session: str) -> bool:
        """Write ``key`` held by ``session`` (``PUT ?acquire=``); False if held or delayed."""
        return self._kv_lock(key, value, "acquire", session)

    def release(self, key: str, value: bytes | str, session: str) -> bool:
        """Write ``key`` and let go of it (``PUT ?release=``); False if not held by it."""
        return self._kv_lock(key, value, "release", session)

    def _kv_lock(self, key: str, value: bytes | str, how: str, session: str) -> bool:
        path = "/v1/kv/" + key.lstrip("/")
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        reply = self._send("PUT", path, [(how, session)], data=data)
        verdict = _json(reply, path)
        if reply.code != 200 or not isinstance(verdict, bool):
            raise _malformed(path, "expected true or false")
        return verdict

    # -- transactions -----------------------------------------------------------------------

    def txn(self, ops: Sequence[TxnOp]) -> TxnResult:
        """Apply ``ops`` all or nothing with one ``PUT /v1/txn``.

        A refused transaction (409) is a false result with every error Consul gave, each
        whole; other failures raise `CoordError`.
        """
        if len(ops) > MAX_TXN_OPS:
            raise ValueError(
                f"a transaction holds at most {MAX_TXN_OPS} operations, got {len(ops)}"
            )
        body = json.dumps([{"KV": _op_json(op)} for op in ops]).encode()
        reply = self._send("PUT", "/v1/txn", data=body, accept=(200, 409))
        if reply.code == 409:
            return TxnResult(False, errors=_conflict(reply.body))
        answer = _json(reply, "/v1/txn")
        if reply.code != 200 or not isinstance(answer, dict):
            raise _malformed("/v1/txn", "expected an object with Results")
        try:
            entries = tuple(_entry(result["KV"]) for result in answer.get("Results") or [])
        except (KeyError, TypeError, ValueError):
            raise _malformed("/v1/txn", "bad Results") from None
        return TxnResult(True, entries=entries)

    # -- the connection ---------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        params: list[tuple[str, str]] | None = None,
        *,
        data: bytes | None = None,
        accept: tuple[int, ...] = (200, 404),
    ) -> Response:
        query = list(params or [])
        if self.settings.datacenter:
            query.append(("dc", self.settings.datacenter))
        timeout = _timeout(self)
        reply = self._session_transport().request(
            method,
            _raw,
            path,
            query,
            timeout=timeout,
            read_timeout=timeout,
            data=data,
            headers=_JSON if data is not None else None,
            accept=accept,
        )
        response: Response = reply.value
        return response

    def _session_transport(self) -> Transport:
        if self._session_link_closed:
            raise CoordError("this ConsulCoord is closed", condition="closed")
        link = self._session_link
        pid = os.getpid()
        if link is not None and link[0] == pid:
            return link[1]
        if link is not None:  # inherited across fork(): the parent's, not ours to use
            link[1].release()
        transport = Transport(
            self.settings, keepalive=getattr(self, "_keepalive", _DEFAULT_KEEPALIVE)
        )
        self._session_link = (pid, transport)
        return transport

    def _close_sessions(self) -> None:
        """Close the sessions' connection (the coord is closing); idempotent."""
        self._session_link_closed = True
        link, self._session_link = self._session_link, None
        if link is None:
            return
        if link[0] == os.getpid():
            link[1].close()
        else:
            link[1].release()


def _timeout(coord: object) -> float:
    timing = getattr(coord, "_timing", None)
    return float(getattr(timing, "timeout", _DEFAULT_TIMEOUT))


def _duration(seconds: float) -> str:
    return format_go_duration(round(seconds * 1e9))


def _segment(session: str) -> str:
    if not session or "/" in session:
        raise ValueError(f"not a session ID: {session!r}")
    return session


def _op_json(op: TxnOp) -> dict[str, Any]:
    kv: dict[str, Any] = {"Verb": op.verb, "Key": op.key.lstrip("/")}
    if op.value is not None:
        kv["Value"] = base64.b64encode(op.value).decode("ascii")
    if op.flags:
        kv["Flags"] = op.flags
    if op.index:
        kv["Index"] = op.index
    if op.session:
        kv["Session"] = op.session
    return kv


def _entry(raw: Mapping[str, Any]) -> KVEntry:
    value = raw.get("Value")
    if not isinstance(raw["Key"], str):
        raise ValueError("Key")
    return KVEntry(
        key=raw["Key"],
        value=None if value is None else base64.b64decode(value, validate=True),
        modify_index=int(raw.get("ModifyIndex", 0)),
        create_index=int(raw.get("CreateIndex", 0)),
        flags=int(raw.get("Flags", 0)),
        lock_index=int(raw.get("LockIndex", 0)),
        session=raw.get("Session") or None,
    )


def _conflict(body: str) -> tuple[TxnError, ...]:
    """Read Consul's errors out of a 409's body (``{"Errors": [{"OpIndex", "What"}]}``).

    An answer not shaped so (a proxy's page, say) is one error at ``op_index`` -1 that
    quotes it.
    """
    try:
        answer = json.loads(body)
        found = tuple(
            TxnError(int(error["OpIndex"]), str(error["What"])) for error in answer["Errors"]
        )
    except (ValueError, TypeError, KeyError):
        found = ()
    if found:
        return found
    text = " ".join(body.split())
    text = text if len(text) <= 500 else text[:500] + " [...]"
    return (TxnError(-1, f"Consul refused the transaction (HTTP 409): {text or 'no detail'}"),)


def _json(reply: Response, path: str) -> Any:
    try:
        return json.loads(reply.body) if reply.body else None
    except ValueError:
        raise _malformed(path, "not JSON") from None


def _malformed(path: str, what: str) -> CoordError:
    return CoordError(f"malformed answer from Consul for {path}: {what}", condition="malformed")
