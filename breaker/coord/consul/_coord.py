"""ConsulCoord: policies in Consul KV, kept current by blocking queries (python-consul inside)."""

from __future__ import annotations

import logging
import os
import random
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from breaker._exceptions import CoordError
from breaker.coord._base import OnChange, Snapshot, Watch
from breaker.coord.consul._adapter import ConsulKV
from breaker.coord.consul._backoff import BACKOFF_CAP, BACKOFF_FIRST
from breaker.coord.consul._decode import Listing
from breaker.coord.consul._sessions import ConsulSessions
from breaker.coord.consul._settings import ConsulOptions, ConsulSettings
from breaker.coord.consul._transport import Channel, Transport
from breaker.coord.consul._watch import (
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT,
    MIN_INTERVAL,
    ConsulWatch,
    Sleep,
    Timing,
    sleep_or_stop,
)

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:
        from typing_extensions import Unpack

__all__ = ["DEFAULT_KEEPALIVE", "ConsulCoord"]

_log = logging.getLogger("breaker.consul")

DEFAULT_KEEPALIVE = 10.0
"""Seconds within which TCP keepalive notices a peer that vanished without a word."""
FRESH_LOAD = 10.0
"""A `load` this recent starts a watch of the same prefix: no second read, health up."""

_LIVE: weakref.WeakSet[ConsulCoord] = weakref.WeakSet()


class ConsulCoord(ConsulSessions):
    """Read policy documents from Consul KV and watch them with blocking queries.

    ``addr`` is ``host:port``, ``http(s)://host:port`` or ``unix:///path/to/socket``; the
    connection options (`ConsulOptions`: ``token``, ``token_file``, ``ssl``, ``verify``,
    ``ca_file``, ``ca_path``, ``client_cert``, ``client_key``, ``tls_server_name``,
    ``namespace``, ``partition``, ``http_auth``, ``datacenter``, ``consistency``) fall back to
    the consul CLI's environment variables. Every request of the coord and its watches goes
    over one pool of connections: a process holds one connection to the agent while only
    its watch runs. ``wait`` is the blocking-query wait; ``timeout`` bounds
    every other request and is added to ``wait`` (plus Consul's jitter) for blocking ones;
    the watcher's reads without an index also allow 7 s for a read Consul holds while it
    elects a leader.
    After an error the watcher backs off with jitter from ``backoff_first`` seconds up to
    ``backoff_cap``, and it never reads more often than once per ``min_interval`` on
    average. ``keepalive`` (seconds, None for off) is how soon TCP keepalive notices a dead
    connection. ``clock`` and ``sleep`` drive the watchers' pacing and backoff, for tests.
    """

    def __init__(
        self,
        addr: str | None = None,
        *,
        wait: float = DEFAULT_WAIT,
        timeout: float = DEFAULT_TIMEOUT,
        min_interval: float = MIN_INTERVAL,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
        keepalive: float | None = DEFAULT_KEEPALIVE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = sleep_or_stop,
        **options: Unpack[ConsulOptions],
    ) -> None:
        if not 0 < wait <= 600:
            raise ValueError(f"wait must be in (0, 600] seconds (Consul's maximum), got {wait}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if keepalive is not None and not keepalive >= 1:
            raise ValueError(f"keepalive must be >= 1 second or None, got {keepalive}")
        self._settings = ConsulSettings.resolve(addr, **options)
        self._timing = Timing(
            wait=wait,
            timeout=timeout,
            min_interval=min_interval,
            backoff_first=backoff_first,
            backoff_cap=backoff_cap,
        )
        self._keepalive = keepalive
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.RLock()  # reentrant: close() may come from a finalizer
        self._watches: list[ConsulWatch] = []
        self._loaded: dict[str, tuple[Listing, float, float]] = {}
        self._closed = False
        self._kv = self._new_kv()
        _LIVE.add(self)

    def _new_kv(self) -> ConsulKV:
        transport = Transport(self._settings, keepalive=self._keepalive, clock=self._clock)
        return ConsulKV(transport, timeout=self._timing.timeout)

    @property
    def _transport(self) -> Transport:
        transport = self._kv.sender
        assert isinstance(transport, Transport)
        return transport

    def __repr__(self) -> str:
        token = "set" if self._settings.token else "none"
        return f"<ConsulCoord {self._settings.address} token={token} wait={self._timing.wait:g}s>"

    @property
    def address(self) -> str:
        """Return where requests go: the base URL, or ``unix://<path>`` for a unix socket."""
        return self._settings.address

    @property
    def settings(self) -> ConsulSettings:
        """Return the resolved connection settings (the token is hidden in their repr)."""
        return self._settings

    def load(self, prefix: str) -> Snapshot:
        """Return every key under ``prefix`` (one recursive GET); raise `CoordError` on failure."""
        prefix = prefix.lstrip("/")
        with self._lock:
            known = self._loaded.get(prefix)
        listing = self._kv.list(
            prefix, read_timeout=self._timing.timeout, known=known[0] if known else None
        )
        with self._lock:
            self._loaded[prefix] = (listing, self._clock(), time.time())
        return listing.snapshot()

    def get(self, key: str) -> tuple[bytes, int] | None:
        """Return the value at ``key`` and its ModifyIndex (for `put`'s ``cas``), or None."""
        return self._kv.get(key.lstrip("/"))

    def put(self, key: str, value: bytes | str, *, cas: int | None = None) -> bool:
        """Store ``value`` at ``key``; return False when the check-and-set ``cas`` lost.

        ``cas=0`` writes only if the key does not exist; another number only if it is
        still the key's ModifyIndex. Raise `CoordError` when Consul cannot be reached.
        """
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return self._kv.put(key.lstrip("/"), data, cas=cas)

    def delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        """Delete ``key`` (or every key under it, with ``recurse``); False when ``cas`` lost."""
        if recurse and cas is not None:
            raise ValueError("cas applies to one key; Consul ignores it with recurse")
        return self._kv.delete(key.lstrip("/"), recurse=recurse, cas=cas)

    def watch(self, prefix: str, on_change: OnChange) -> Watch:
        """Watch ``prefix`` from a background thread, starting with its current content.

        Right after a `load` of the same prefix, the watch starts from what that read
        (its health up, its first query a blocking one on the same connection).
        """
        prefix = prefix.lstrip("/")
        with self._lock:
            loaded = self._loaded.pop(prefix, None)
        if loaded is not None and self._clock() - loaded[1] > FRESH_LOAD:
            loaded = None
        watch = ConsulWatch(
            prefix,
            on_change,
            link=self._new_kv_link,
            timing=self._timing,
            clock=self._clock,
            sleep=self._sleep,
            wall_clock=time.time,
            random=random.random,
            on_stop=self._forget,
            start=loaded[0] if loaded else None,
            start_sync=loaded[2] if loaded else None,
        )
        with self._lock:
            if self._closed:
                watch.stop()
                raise CoordError("this ConsulCoord is closed", condition="closed")
            self._watches.append(watch)
        watch.start()
        return watch

    def close(self) -> None:
        """Stop every watch (within a second, even mid-query) and close connections.

        Idempotent and safe from any thread, a watch's own included.
        """
        with self._lock:
            self._closed = True
            watches, self._watches = self._watches, []
        for watch in watches:
            watch.stop()
        self._transport.close()
        self._close_sessions()

    def _new_kv_link(self) -> _KVLink:
        return _KVLink(ConsulKV(self._transport.channel(), timeout=self._timing.timeout))

    def _forget(self, watch: ConsulWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)

    def _after_fork_in_child(self) -> None:
        """Give the child fresh locks and connections, and restart the watches there."""
        self._lock = threading.RLock()
        if self._closed:
            return
        inherited, self._kv = self._transport, self._new_kv()
        self._loaded.clear()
        inherited.release()
        for watch in list(self._watches):
            watch.restart_in_child()


class _KVLink:
    """Give a watch its channel: requests over the coord's connections it can cut alone.

    The connections belong to the coord's transport, which the coord closes (or, in a
    forked child, releases): the link has nothing of its own to close or release.
    """

    def __init__(self, kv: ConsulKV) -> None:
        self._kv = kv
        channel = kv.sender
        assert isinstance(channel, Channel)
        self._channel = channel

    def list(
        self,
        prefix: str,
        *,
        index: int = 0,
        wait: float | None = None,
        read_timeout: float,
        known: Listing | None = None,
    ) -> Listing:
        return self._kv.list(prefix, index=index, wait=wait, read_timeout=read_timeout, known=known)

    def cut(self) -> None:
        self._channel.cut()

    def close(self) -> None:
        """Leave the connection in the coord's pool."""

    def release(self) -> None:
        """Leave the inherited connections to the coord, which releases them."""


def _after_fork_in_child() -> None:
    for coord in list(_LIVE):
        try:
            coord._after_fork_in_child()
        except Exception:  # one coord's failure must not leave the others dead
            _log.exception("restarting %r in a forked child failed", coord)


if hasattr(os, "register_at_fork"):  # pragma: no branch - only Windows lacks it
    os.register_at_fork(after_in_child=_after_fork_in_child)
