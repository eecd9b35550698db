"""python-consul's KV endpoint driven through our transport: it builds the requests and
decodes the answers; we choose the timeouts and keep the token out of the URL.

python-consul 1.1.0 and py-consul (the maintained fork, same ``consul`` module) both work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import consul

from breaker._duration import format_go_duration
from breaker._exceptions import CoordError
from breaker.coord.consul._decode import Listing, decode_entry, read_listing
from breaker.coord.consul._settings import ConsulSettings
from breaker.coord.consul._transport import Channel, Reply, Response, Transport

try:  # py-consul
    from consul.api.kv import KV as _KV
except ImportError:  # python-consul 1.1.0
    _KV = consul.Consul.KV

__all__ = ["ConsulKV"]

Callback = Callable[[Response], Any]
Sender = Transport | Channel


class _Calls:
    """Stand in for the ``http`` object python-consul calls, bound to one request's timeouts.

    With ``reader``, answers are read by it instead of python-consul's callback.
    """

    def __init__(
        self,
        sender: Sender,
        timeout: float,
        read_timeout: float,
        reader: Callback | None = None,
    ) -> None:
        self._sender = sender
        self._timeout = timeout
        self._read_timeout = read_timeout
        self._reader = reader

    def _send(
        self, method: str, callback: Callback, path: str, params: Any, data: Any, kw: Any
    ) -> Reply:
        return self._sender.request(
            method,
            self._reader or callback,
            path,
            params,
            timeout=self._timeout,
            read_timeout=self._read_timeout,
            data=data,
            headers=kw.get("headers"),
        )

    def get(self, callback: Callback, path: str, params: Any = None, **kw: Any) -> Reply:
        return self._send("GET", callback, path, params, None, kw)

    def put(
        self, callback: Callback, path: str, params: Any = None, data: Any = "", **kw: Any
    ) -> Reply:
        return self._send("PUT", callback, path, params, data, kw)

    def delete(self, callback: Callback, path: str, params: Any = None, **kw: Any) -> Reply:
        return self._send("DELETE", callback, path, params, None, kw)


class _Agent:
    """Stand in for the slice of a python-consul ``Consul`` object its KV endpoint reads."""

    def __init__(self, http: _Calls, settings: ConsulSettings) -> None:
        self.http = http
        self.token = None  # the token travels in a header the transport adds
        self.dc = settings.datacenter
        self.consistency = settings.consistency

    # py-consul asks for the token's header; python-consul 1.1.0, which the measured test
    # run uses, never does (tasks.py runs the Consul tests on py-consul as well).
    def prepare_headers(self, token: str | None = None) -> dict[str, str]:  # pragma: no cover
        return {}


class ConsulKV:
    """Run the KV operations breaker needs, each with the timeouts its caller chooses.

    ``sender`` is the transport, or a channel of it (requests its owner can cut alone).
    """

    def __init__(self, sender: Sender, *, timeout: float) -> None:
        self.sender = sender
        self.settings = sender.settings
        self.timeout = timeout

    def _kv(self, read_timeout: float | None = None, reader: Callback | None = None) -> Any:
        calls = _Calls(self.sender, self.timeout, read_timeout or self.timeout, reader)
        return _KV(_Agent(calls, self.settings))

    def list(
        self,
        prefix: str,
        *,
        index: int = 0,
        wait: float | None = None,
        read_timeout: float,
        known: Listing | None = None,
    ) -> Listing:
        """Return every entry under ``prefix``; block while the index is ``index`` if > 0.

        ``known`` is the last listing of ``prefix``: what did not change is taken from it
        (python-consul would decode every value of every answer).
        """
        wait_text = format_go_duration(round(wait * 1e9)) if index and wait else None

        def reader(response: Response) -> Listing:
            return read_listing(
                response.code,
                response.headers,
                response.body,
                prefix,
                known,
                trust_indexes=index > 0,
            )

        reply = self._kv(read_timeout, reader).get(
            prefix, recurse=True, index=index or None, wait=wait_text
        )
        listing: Listing = reply.value
        return listing

    def get(self, key: str) -> tuple[bytes, int] | None:
        """Return the value of ``key`` and its ModifyIndex, or None when there is no such key."""
        reply = self._kv().get(key)
        _, entry = reply.value
        return None if entry is None else decode_entry(entry)

    def put(self, key: str, value: bytes, *, cas: int | None = None) -> bool:
        """Write ``key``; return False when a check-and-set lost."""
        reply = self._kv().put(key, value, cas=cas)
        return _verdict(reply, "PUT", key)

    def delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        """Delete ``key`` (or the tree under it); return False when a check-and-set lost."""
        reply = self._kv().delete(key, recurse=recurse or None, cas=cas)
        return _verdict(reply, "DELETE", key)


def _verdict(reply: Reply, method: str, key: str) -> bool:
    if reply.status == 404 or not isinstance(reply.value, bool):
        raise CoordError(
            f"malformed answer from Consul to {method} {key!r}: expected true or false",
            condition="malformed",
        )
    return reply.value
