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
from breaker.coord.consul._settings import ConsulOptions, ConsulSettings
from breaker.coord.consul._transport import Transport
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

_LIVE: weakref.WeakSet[ConsulCoord] = weakref.WeakSet()


class ConsulCoord:
    """Read policy documents from Consul KV and watch them with blocking queries.

    ``addr`` is ``host:port`` or ``http(s)://host:port``; the connection options
    (`ConsulOptions`: ``token``, ``token_file``, ``ssl``, ``verify``, ``ca_file``,
    ``ca_path``, ``client_cert``, ``client_key``, ``datacenter``) fall back to the consul
    CLI's environment variables. ``wait`` is the blocking-query wait; ``timeout`` bounds
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
        self._closed = False
        self._kv = self._new_kv()
        _LIVE.add(self)

    def _new_kv(self) -> ConsulKV:
        transport = Transport(self._settings, keepalive=self._keepalive)
        return ConsulKV(transport, timeout=self._timing.timeout)

    def __repr__(self) -> str:
        token = "set" if self._settings.token else "none"
        return f"<ConsulCoord {self._settings.base_url} token={token} wait={self._timing.wait:g}s>"

    @property
    def address(self) -> str:
        """Return the base URL requests go to."""
        return self._settings.base_url

    @property
    def settings(self) -> ConsulSettings:
        """Return the resolved connection settings (the token is hidden in their repr)."""
        return self._settings

    def load(self, prefix: str) -> Snapshot:
        """Return every key under ``prefix`` (one recursive GET); raise `CoordError` on failure."""
        kv = self._kv
        listing = kv.list(prefix.lstrip("/"), read_timeout=self._timing.timeout)
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
        """Watch ``prefix`` from a background thread, starting with its current content."""
        watch = ConsulWatch(
            prefix.lstrip("/"),
            on_change,
            link=self._new_kv_link,
            timing=self._timing,
            clock=self._clock,
            sleep=self._sleep,
            wall_clock=time.time,
            random=random.random,
            on_stop=self._forget,
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
        self._kv.transport.close()

    def _new_kv_link(self) -> _KVLink:
        return _KVLink(self._new_kv())

    def _forget(self, watch: ConsulWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)

    def _after_fork_in_child(self) -> None:
        """Give the child fresh locks and connections, and restart the watches there."""
        self._lock = threading.RLock()
        if self._closed:
            return
        inherited, self._kv = self._kv, self._new_kv()
        inherited.transport.release()
        for watch in list(self._watches):
            watch.restart_in_child()


class _KVLink:
    """Give a watch its own connection: `ConsulKV` plus the transport's cut/close/release."""

    def __init__(self, kv: ConsulKV) -> None:
        self._kv = kv
        self._transport = kv.transport

    def list(
        self, prefix: str, *, index: int = 0, wait: float | None = None, read_timeout: float
    ) -> Listing:
        return self._kv.list(prefix, index=index, wait=wait, read_timeout=read_timeout)

    def cut(self) -> None:
        self._transport.cut()

    def close(self) -> None:
        self._transport.close()

    def release(self) -> None:
        self._transport.release()


def _after_fork_in_child() -> None:
    for coord in list(_LIVE):
        try:
            coord._after_fork_in_child()
        except Exception:  # one coord's failure must not leave the others dead
            _log.exception("restarting %r in a forked child failed", coord)


if hasattr(os, "register_at_fork"):  # pragma: no branch - only Windows lacks it
    os.register_at_fork(after_in_child=_after_fork_in_child)
