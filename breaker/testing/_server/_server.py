"""ConsulServer: the public face of the stand-in (lifecycle, operator helpers, fault hooks)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Literal

from breaker.testing._server import _acl
from breaker.testing._server._acl import ACLRule, ACLs, DefaultPolicy
from breaker.testing._server._agent import Agent
from breaker.testing._server._faults import RPC_HOLD_TIMEOUT, Faults
from breaker.testing._server._http import JOIN_TIMEOUT, HTTPServer, RecordedRequest
from breaker.testing._server._kv import KVEndpoint, KVSettings
from breaker.testing._server._session import SessionEndpoint, SessionSettings
from breaker.testing._server._store import KVSnapshot, Store
from breaker.testing._server._tenancy import Tenancy
from breaker.testing._server._txn import TXN_MAX_REQ_LEN, TxnEndpoint, TxnSettings

MAX_VALUE_SIZE = 512 * 1024
"""Consul's default ``kv_max_value_size``: larger PUT bodies are answered with 413."""

RestartMode = Literal["rebuild", "agent", "restore"]
CheckStatus = Literal["passing", "warning", "critical"]

_JITTER_FRACTION = 16
_REAPER_POLL = 0.05
"""How often (real seconds) the reaper looks at an injected clock for expired sessions."""


class ConsulServer:
    """Serve Consul's KV HTTP API on 127.0.0.1 from memory, with hooks to inject faults.

    Start it with `start` or a ``with`` block; it listens on ``port`` (0 picks a free one,
    kept across `restart`). ``jitter=False`` makes blocking queries time out after exactly
    ``wait`` (``rng`` makes the jitter reproducible instead). ``start_index`` is the index
    consumed before the first write, which gets ``start_index + 1``. ACLs are on when
    ``acl_tokens`` (secret -> rules) is given; a request without a token is judged by
    ``anonymous_rules``; keys no rule matches follow ``acl_default_policy``.
    ``max_value_size``, ``default_query_time``, ``max_query_time``,
    ``disable_kv_key_validation``, ``session_ttl_min`` and ``txn_max_req_len`` are the
    agent settings of the same names, with Consul's defaults; ``node_name`` is the one node
    sessions belong to. ``enterprise=True`` serves namespaces and admin partitions
    (``?ns=``, ``?partition=``) as separate key spaces, as Consul Enterprise does; by
    default a request that names one is refused as Consul CE refuses it (see
    ``_tenancy``). ``clock`` (monotonic seconds, e.g. a `FakeClock`) runs session TTLs
    and lock-delays, so a test moves it instead of sleeping: an expired session is
    invalidated at the next request, within 50 ms by the server's own thread, or at once
    by `expire_sessions`.

    Cluster events, and the Consul event each models:

    * `restart` (``mode="rebuild"``, the default): the cluster is lost and rebuilt, its data
      written back; connections drop, every key is at index 1 and the next write gets 2.
    * ``restart(mode="agent")``: only the agent restarts; connections drop, data and
      indexes stay.
    * `restore` (``consul snapshot restore`` on a running cluster): data and indexes go back
      to a `snapshot`; connections stay, blocked queries return at once with what they had
      read, and reads after that see the snapshot's (lower) indexes.
    * ``restart(mode="restore", snapshot=s)``: a cluster rebuilt from a snapshot after an
      outage; connections drop, keys keep the ``ModifyIndex`` they had in the snapshot.
    * `begin_election` / `end_election`: the leader is lost; RPCs that need one wait up to
      ``rpc_hold_timeout`` (Consul's default 7 s) and then fail with 500 "No cluster
      leader", or proceed as soon as a leader is elected: they answer late, not never.
      ``?stale`` reads are served at once with ``X-Consul-KnownLeader: false``.
    * `fail_next`: the next RPCs fail as Consul's RPC errors do (500 "No cluster leader" by
      default, no index headers); `hang` / `hang_next`: requests are read, never answered.
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
        disable_kv_key_validation: bool = False,
        rng: random.Random | None = None,
        enterprise: bool = False,
        clock: Callable[[], float] = time.monotonic,
        node_name: str = "node1",
        session_ttl_min: float = 10.0,
        txn_max_req_len: int = TXN_MAX_REQ_LEN,
    ) -> None:
        acls = ACLs(acl_tokens, acl_default_policy, anonymous_rules)
        if start_index < 1:
            # Index 1 is what an empty KV store reports; a write there would wake no watcher.
            raise ValueError("start_index must be >= 1 (Consul's first raft entry is internal)")
        self._host = host
        self._port = port
        self._jitter = jitter
        self._rng = rng if rng is not None else random.Random()
        self._default_query_time = default_query_time
        self._max_query_time = max_query_time
        if not node_name:
            raise ValueError("node_name must not be empty")
        self._store = Store(start_index, clock)
        self._faults = Faults(self._store.cond)
        settings = KVSettings(max_value_size, not disable_kv_key_validation, self.query_timeout)
        tenancy = Tenancy(self._store, enterprise=enterprise)
        kv = KVEndpoint(self._store, self._faults, acls, settings, tenancy)
        self._acls = acls
        sessions = SessionEndpoint(
            self._store,
            self._faults,
            acls,
            SessionSettings(node_name, session_ttl_min, self.query_timeout),
        )
        txn = TxnEndpoint(
            self._store, self._faults, acls, TxnSettings(max_value_size, txn_max_req_len)
        )
        self._agent = Agent(self._faults, acls, self._store, (kv, sessions, txn), host)
        self._node_name = node_name
        self._real_clock = clock is time.monotonic

        self._lifecycle = threading.Lock()
        self._httpd: HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._reaper: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ConsulServer:
        """Start listening (on the same port as before, after a stop); no-op if running."""
        with self._lifecycle:
            if self._httpd is not None:
                return self
            with self._store.cond:
                epoch = self._agent.epoch
            httpd = HTTPServer((self._host, self._port), self._agent, epoch)
            self._port = httpd.server_address[1]
            thread = threading.Thread(
                target=httpd.serve,
                name=f"ConsulServer-{self._port}-serve",
                daemon=True,
            )
            thread.start()
            self._httpd = httpd
            self._serve_thread = thread
            self._reaper = threading.Thread(
                target=self._reap, args=(epoch,), name=f"ConsulServer-{self._port}-ttl", daemon=True
            )
            self._reaper.start()
            return self

    def stop(self) -> None:
        """Stop listening and drop every connection, blocked or hanging requests included.

        Idempotent. Returns once the server's threads are gone.
        """
        with self._lifecycle:
            httpd, thread, reaper = self._httpd, self._serve_thread, self._reaper
            if httpd is None or thread is None or reaper is None:
                return
            self._httpd = None
            self._serve_thread = None
            self._reaper = None
            with self._store.cond:
                self._agent.epoch += 1
                self._store.cond.notify_all()
            self._faults.release()
            httpd.wake()
            thread.join(JOIN_TIMEOUT)
            reaper.join(JOIN_TIMEOUT)
            httpd.server_close()
            httpd.drop_connections()

    def restart(
        self,
        *,
        reset_index: bool | None = None,
        mode: RestartMode | None = None,
        snapshot: KVSnapshot | None = None,
    ) -> None:
        """Stop and start again on the same port, as after the cluster event ``mode`` names.

        ``"rebuild"`` (the default): a new cluster with the data written back, every entry
        at index 1, no tombstones; any prefix that held data or saw a write now reports an
        index lower than before, and the next write gets index 2. ``"agent"``: data and
        indexes kept. ``"restore"``: the state of ``snapshot``, entries at the indexes they
        had then. ``reset_index=True`` / ``False`` is the older spelling of ``"rebuild"`` /
        ``"agent"``.
        """
        if reset_index is not None:
            if mode is not None:
                raise ValueError("give either reset_index or mode, not both")
            mode = "rebuild" if reset_index else "agent"
        mode = mode or "rebuild"
        if mode not in ("rebuild", "agent", "restore"):
            raise ValueError(f"mode must be 'rebuild', 'agent' or 'restore', not {mode!r}")
        if (mode == "restore") != (snapshot is not None):
            raise ValueError('a snapshot is needed with mode="restore", and only then')
        self.stop()
        if mode == "rebuild":
            self._store.rebuild()
        elif snapshot is not None:
            self._store.restore(snapshot, fresh_cluster=True)
        self.start()

    def _reap(self, epoch: int) -> None:
        """Invalidate sessions as their TTLs run out, until the server stops.

        On the real clock it sleeps until the next expiry; on an injected clock, which
        only the test moves, it looks every 50 ms.
        """
        store = self._store
        with store.cond:
            while self._agent.epoch == epoch:
                store.expire_sessions()
                due = store.next_expiry()
                if due is None:
                    store.cond.wait()
                elif self._real_clock:
                    store.cond.wait(max(due - store.clock(), 0.001))
                else:
                    store.cond.wait(_REAPER_POLL)

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
        return self._store.index

    @property
    def blocking_queries(self) -> int:
        """Return how many blocking queries are waiting now (Consul's queries_blocking gauge).

        Tests wait for it to reach a count before they change anything, instead of sleeping.
        """
        return self._store.blocked

    @property
    def held_requests(self) -> int:
        """Return how many requests a hang (`hang`, `hang_next`) holds now, for tests to wait on."""
        return self._faults.held

    def put(self, key: str, value: bytes | str, flags: int = 0) -> int:
        """Write ``key`` and return its ModifyIndex (unchanged if the write changed nothing).

        Keys are not validated here: a snapshot may hold keys the HTTP API now refuses.
        """
        if not key:
            raise ValueError("key must not be empty")
        if not 0 <= flags < 2**64:
            raise ValueError("flags must fit in a uint64")
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        _, modify_index = self._store.set(key, data, flags, None)
        return modify_index

    def delete(self, key: str, recurse: bool = False) -> int:
        """Delete ``key`` (or every key under it with ``recurse``) and return the write's index."""
        if recurse:
            return self._store.delete_tree(key)
        with self._store.cond:
            self._store.delete(key, None)
            return self._store.index

    def get(self, key: str) -> bytes | None:
        """Return the value of ``key``, or None if it does not exist."""
        entry = self._store.get(key)
        if entry is None:
            return None
        return entry.value or b""

    def keys(self, prefix: str = "") -> list[str]:
        """Return every key under ``prefix``, sorted."""
        return self._store.keys(prefix)

    def reap_tombstones(self, up_to: int | None = None) -> int:
        """Forget tombstones at or below index ``up_to`` (all by default); return how many.

        Consul reaps tombstones after a while; a prefix whose index came from a tombstone may
        then report a lower index, which watchers must treat as a reset.
        """
        return self._store.reap_tombstones(up_to)

    def snapshot(self) -> KVSnapshot:
        """Return the KV data and indexes as they are now (``consul snapshot save``)."""
        return self._store.snapshot()

    def restore(self, snapshot: KVSnapshot) -> None:
        """Bring back ``snapshot`` on the running server (``consul snapshot restore``).

        Keys and tombstones become the snapshot's, at the indexes they had then; the next
        write gets an index above any seen before. Connections stay open; blocked queries
        return at once with what they had read before the restore (Consul abandons the old
        state), so the lower index shows on the next read.
        """
        self._store.restore(snapshot)

    def set_acl_token(self, secret: str, rules: Iterable[ACLRule] | None) -> None:
        """Create or replace the token ``secret`` with ``rules``; None revokes it.

        As ``consul acl token create/update/delete``: requests with a revoked token are
        refused with 403 "ACL not found" from then on.
        """
        with self._store.cond:
            self._acls.set_token(secret, None if rules is None else tuple(rules))

    # -- sessions ----------------------------------------------------------------------------

    @property
    def node_name(self) -> str:
        """Return the name of the one node sessions belong to."""
        return self._node_name

    def sessions(self) -> list[dict[str, object]]:
        """Return every session as ``/v1/session/list`` shows it, oldest first."""
        return [session.to_json() for session in self._store.sessions()]

    def expire_sessions(self) -> int:
        """Invalidate now every session whose TTL x 2 has run out on the clock; return how many."""
        return self._store.expire_sessions()

    def register_check(self, check_id: str, status: CheckStatus = "passing") -> int:
        """Register (or update) a health check of the node; sessions may name it.

        A check that turns ``critical`` invalidates every session that names it, as
        Consul does; return how many were invalidated.
        """
        if status not in ("passing", "warning", "critical"):
            raise ValueError(f"status must be 'passing', 'warning' or 'critical', not {status!r}")
        if not check_id:
            raise ValueError("check_id must not be empty")
        return self._store.set_check(check_id, status)

    def accessor_id(self, secret: str) -> str:
        """Return the AccessorID this server reports for the token ``secret`` in denials."""
        return _acl.accessor_id(secret)

    # -- fault hooks -----------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Fail the next ``n`` RPCs with ``status``, queued after failures already armed.

        An RPC is a request that passed the agent's own checks (path, query string, the
        endpoint's parameters). The answer is shaped like Consul's RPC errors: ``body``
        (default: "No cluster leader" for 500, empty for 429, else the status phrase) as
        plain text, and no ``X-Consul-Index``/``-KnownLeader``/``-LastContact`` headers.
        ``headers`` adds e.g. ``Retry-After`` to a 429.
        """
        self._faults.fail_next(n, status, body, headers)

    def hang_next(self, n: int = 1) -> None:
        """Read the next ``n`` requests and never answer them (until `hang(False)` or a stop)."""
        self._faults.hang_next(n)

    def hang(self, enabled: bool = True) -> None:
        """Read every request and never answer; ``hang(False)`` drops the held ones unanswered."""
        self._faults.hang(enabled)

    def begin_election(
        self, duration: float | None = None, *, rpc_hold_timeout: float = RPC_HOLD_TIMEOUT
    ) -> None:
        """Lose the leader; elect a new one after ``duration`` seconds, or at `end_election`.

        Meanwhile every RPC but a ``?stale`` read waits for the leader, at most
        ``rpc_hold_timeout`` seconds, then fails with 500 "No cluster leader". Consul retries
        with jitter inside the hold; here a held RPC proceeds the moment a leader is elected.
        """
        self._faults.begin_election(duration, rpc_hold_timeout)

    def end_election(self) -> None:
        """Elect a leader now: held RPCs proceed, and every session's TTL starts over."""
        self._faults.end_election()
        self._store.reset_session_timers()

    @property
    def requests_log(self) -> list[RecordedRequest]:
        """Return a copy of the requests received so far, oldest first.

        Requests Go's HTTP server itself refuses (a malformed request line or target) never
        reach the agent and are not recorded.
        """
        with self._store.cond:
            return list(self._agent.log)

    def clear_requests_log(self) -> None:
        """Forget the requests recorded so far."""
        with self._store.cond:
            self._agent.log.clear()

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
