"""A small HTTP server that speaks Consul's KV, session and txn APIs, with hooks to inject faults.

No Consul binary can be installed where this project is tested, so the tests and the demo talk
to this server instead. It follows what Consul documents and, where the documentation is
silent, what the agent's source does (``agent/http.go``, ``agent/kvs_endpoint.go``,
``agent/consul/kvs_endpoint.go``, ``agent/consul/state/kvs.go``, ``agent/blockingquery``,
``agent/session_endpoint.go``, ``agent/consul/session_ttl.go``, ``agent/consul/state/session.go``,
``agent/txn_endpoint.go``, ``agent/consul/state/txn.go``), and it is checked against
Consul's own scenarios (``tests/test_consul_kv_scenarios.py``, ``..._session_scenarios.py``,
``..._txn_scenarios.py``, which also run against a real agent). The parts, each a module:

``_server``  `ConsulServer`: lifecycle, operator helpers, the cluster events it can stage.
``_store``   keys, tombstones, sessions, locks, the index rules, transactions, blocking
             queries, snapshots.
``_kv``      the ``/v1/kv/`` endpoint: parameters, key validation, the ``KVS.*`` RPCs.
``_session`` the ``/v1/session/`` endpoints: create, destroy, renew, info, node, list.
``_txn``     the ``/v1/txn`` endpoint, for KV operations.
``_acl``     tokens, ``key_prefix`` and ``session_prefix`` rules.
``_tenancy`` namespaces and admin partitions: Enterprise's key spaces, or CE's refusal.
``_faults``  RPC errors, hangs, leader elections with Consul's ``rpc_hold_timeout``.
``_agent``   the HTTP stack around endpoints: path checks, ServeMux, gzip, ``wrap``.
``_http``    the wire: a threaded HTTP/1.1 server whose connections can be cut.
``_go``      what Go's standard library does with paths, queries, JSON and quoting.

What it serves: ``GET /v1/kv/<key>`` with ``recurse``, ``keys``/``separator``, ``raw``,
``index``/``wait`` blocking queries (``wait`` clamped to ``max_query_time``, default
``default_query_time``, plus up to ``wait/16`` of jitter) and ``stale``; ``PUT`` with
``cas`` and ``flags`` and the 512 KiB value limit; ``DELETE`` with ``recurse`` and ``cas``;
``PUT ?acquire=``/``?release=`` with ``Session`` and ``LockIndex`` on entries and the
lock-delay of invalidated sessions; ``/v1/session/create|destroy/|renew/|info/|node/|list``
with TTLs (10 s to 24 h, invalidated after twice the TTL on the server's injectable
``clock``), behaviours ``release`` and ``delete``, health checks (`register_check`) and
``session_prefix`` ACLs; ``PUT /v1/txn`` with every KV verb (``set``, ``cas``, ``get``,
``get-tree``, ``get-or-empty``, ``check-index``, ``check-session``, ``check-not-exists``,
``delete``, ``delete-cas``, ``delete-tree``, ``lock``, ``unlock``), 409 with the errors and
nothing applied, Consul's 413 and 400 limits; ``/v1/status/leader`` and ``/peers``. Reads carry
``X-Consul-Index``/``-KnownLeader``/``-LastContact``, 404s included; writes and errors carry
none. Keys are taken from the percent-decoded path, as Go's ``URL.Path`` is: ``a%2Fb`` and
``a/b`` name the same key. Path cleaning looks at the path as sent (still escaped), as Go's
ServeMux does since Go 1.22, so ``a%2F%2Fb`` is not redirected while ``a//b`` is. Keys are
validated as Consul 1.22 does by default (see `_kv.validate_key`;
``disable_kv_key_validation=True`` turns it off). A decoded path with a character Go does
not call printable (TAB, LF, DEL, U+0085, NBSP...) gets a bare 400, before any redirect; a
target Go cannot read (a raw control byte, a bad ``%`` escape) gets Go's own "400 Bad
Request" and a closed connection. A query string Go's ``url.ParseQuery`` refuses (``;``
separators, bad ``%`` escapes) gets a bare 500 from any endpoint. Every endpoint gzips a
non-empty answer when the client accepts gzip, as Consul's gzip handler (no minimum size)
does.

A snapshot restore wakes blocked queries with the answer they had read before it, as
Consul's abandoned state store does (``blockingquery.Query`` returns the meta of its last
run): the lower index shows on the next read, so a watcher that blocks again on its old
index waits out one ``wait`` before it sees the reset.

Known differences from Consul 1.22, and why they remain:

* No catalog, health or other endpoints: the breaker never uses them. Namespaces and
  partitions: see `_tenancy`; sessions and transactions live in the default space
  only. One node (``node_name``) with one check, ``serfHealth``, always passing; other
  checks exist only through `ConsulServer.register_check`. ``/v1/txn`` serves KV
  operations only (a Node, Service or Check operation is a 400), and a read-only
  transaction's body carries ``Results`` and ``Errors`` without the query meta fields.
* Sessions expire on the server's clock, looked at on each request and every 50 ms (or
  at the next expiry on the real clock); Consul's timers fire on their own. A new leader
  (`end_election`) starts every TTL over, as Consul's does; a leaderless cluster here
  still expires sessions, where Consul's stopped timers would not.
* Key validation follows the rules of Consul PR #22850 (shipped in 1.22.0 and 1.21.6): no
  leading or trailing space, no ``..`` segment, none once percent-decoded again. Only the
  400 status is checked against Consul; the released source of the error texts could not
  be consulted, so the texts here are this server's own.
* A held RPC proceeds the moment an election ends; Consul retries inside
  ``rpc_hold_timeout`` with jitter, so it answers up to ``rpc_hold_timeout/16`` later.
* Gzipped answers carry a ``Content-Length``; Go streams the larger ones chunked.
  Compressed bytes differ from Go's ``compress/gzip`` (the decompressed bytes do not).
* Reads carry no ``X-Consul-Query-Backend`` or ``X-Consul-Effective-Consistency``; the
  breaker reads neither.
* ``X-Consul-LastContact`` is 0 with a leader; a stale read during an election reports the
  time since the leader was lost. Consul reports the follower's real lag.
* One datacenter, ``dc1``; one server; the leader is ``<host>:8300``.
"""

from breaker.testing._server._acl import ANONYMOUS_ACCESSOR_ID, ACLRule
from breaker.testing._server._http import RecordedRequest
from breaker.testing._server._server import MAX_VALUE_SIZE, ConsulServer, RestartMode
from breaker.testing._server._store import KVSnapshot

__all__ = [
    "ANONYMOUS_ACCESSOR_ID",
    "MAX_VALUE_SIZE",
    "ACLRule",
    "ConsulServer",
    "KVSnapshot",
    "RecordedRequest",
    "RestartMode",
]
