"""Namespaces and admin partitions: Consul Enterprise's separate key spaces, or CE's refusal.

A KV request names its namespace with ``?ns=`` (or ``X-Consul-Namespace``) and its admin
partition with ``?partition=`` (or ``X-Consul-Partition``); Consul's own client sends the
query parameters (``CONSUL_NAMESPACE``, ``CONSUL_PARTITION``).

* Consul CE (``agent/http_ce.go``, ``parseEntMeta``): any non-empty value, even
  ``default``, is refused with 400 and the text Consul writes, header first, then query.
* Consul Enterprise: each (partition, namespace) is a key space of its own; no value means
  ``default``. Entries are listed with their ``Partition`` and ``Namespace``. All spaces
  share one raft index, as in Consul.

The store keeps every key of a space other than the default one under an internal prefix
that no HTTP request can write (it starts with NUL, which the agent refuses in a path).
`SpaceStore` is the store as one space sees it. Known differences from Enterprise:
namespaces need not be created first, names are not validated, and ACL rules apply to
keys whatever their namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from breaker.testing._server import _go as go
from breaker.testing._server._http import HTTPError
from breaker.testing._server._store import Entry, Result, Store

DEFAULT = "default"
_MARK = "\x00"

_CE_REFUSALS = (
    ("header", "X-Consul-Namespace", "x-consul-namespace", "Namespaces"),
    ("query", "ns", "ns", "Namespaces"),
    ("header", "X-Consul-Partition", "x-consul-partition", "Partitions"),
    ("query", "partition", "partition", "Partitions"),
)


@dataclass(frozen=True)
class Space:
    """One key space: an admin partition and a namespace in it."""

    partition: str = DEFAULT
    namespace: str = DEFAULT

    @property
    def is_default(self) -> bool:
        """Say whether this is the default space, whose keys are stored as they are."""
        return self.partition == DEFAULT and self.namespace == DEFAULT

    @property
    def prefix(self) -> str:
        """Return the internal prefix of this space's keys ("" for the default space)."""
        if self.is_default:
            return ""
        return f"{_MARK}{self.partition}{_MARK}{self.namespace}{_MARK}"

    def owns(self, stored: str) -> bool:
        """Say whether the stored key ``stored`` belongs to this space."""
        if self.is_default:
            return not stored.startswith(_MARK)
        return stored.startswith(self.prefix)


@dataclass(frozen=True)
class SpaceEntry(Entry):
    """An entry of a space, listed as Consul Enterprise lists it (with its space)."""

    partition: str = DEFAULT
    namespace: str = DEFAULT

    def to_json(self) -> dict[str, object]:
        """Return the entry with its ``Partition`` and ``Namespace``."""
        return {**super().to_json(), "Partition": self.partition, "Namespace": self.namespace}


class Tenancy:
    """Read a request's namespace and partition as Consul CE or Enterprise does."""

    def __init__(self, store: Store, *, enterprise: bool) -> None:
        self._store = store
        self.enterprise = enterprise

    def store_for(self, params: go.Values, headers: Mapping[str, str]) -> Store | SpaceStore:
        """Return the store as the request's space sees it; raise CE's 400 if it names one."""
        if not self.enterprise:
            for where, name, lookup, feature in _CE_REFUSALS:
                given = headers.get(lookup) if where == "header" else params.get(lookup)
                if given:
                    what = "header" if where == "header" else "query parameter"
                    raise HTTPError(
                        400,
                        f'Invalid {what}: "{name}" - {feature} are a Consul Enterprise feature',
                    )
            return self._store
        space = Space(
            params.get("partition") or headers.get("x-consul-partition") or DEFAULT,
            params.get("ns") or headers.get("x-consul-namespace") or DEFAULT,
        )
        return SpaceStore(self._store, space)


class SpaceStore:
    """The store as one space sees it: its keys only, under their own names."""

    def __init__(self, store: Store, space: Space) -> None:
        self._store = store
        self._space = space

    def _entry(self, entry: Entry) -> SpaceEntry:
        space = self._space
        return SpaceEntry(
            **{**vars(entry), "key": entry.key[len(space.prefix) :]},
            partition=space.partition,
            namespace=space.namespace,
        )

    def _result(self, result: Result) -> Result:
        owns = self._space.owns
        entries: list[Entry] = [self._entry(e) for e in result.entries if owns(e.key)]
        return replace(result, entries=entries)

    def lock(self, key: str, value: bytes, flags: int, session: str) -> bool:
        """Acquire ``key`` of this space for ``session`` (see `Store.lock`)."""
        return self._store.lock(self._space.prefix + key, value, flags, session)

    def unlock(self, key: str, value: bytes, flags: int, session: str) -> bool:
        """Release ``key`` of this space held by ``session`` (see `Store.unlock`)."""
        return self._store.unlock(self._space.prefix + key, value, flags, session)

    def lock_delayed(self, key: str) -> bool:
        """Say whether ``key`` of this space is under a lock-delay (see `Store.lock_delayed`)."""
        return self._store.lock_delayed(self._space.prefix + key)

    def set(self, key: str, value: bytes, flags: int, cas: int | None) -> tuple[bool, int]:
        """Write ``key`` of this space (see `Store.set`)."""
        return self._store.set(self._space.prefix + key, value, flags, cas)

    def delete(self, key: str, cas: int | None) -> bool:
        """Delete ``key`` of this space (see `Store.delete`)."""
        return self._store.delete(self._space.prefix + key, cas)

    def delete_tree(self, prefix: str) -> int:
        """Delete every key of this space under ``prefix``; other spaces keep theirs."""
        return self._store.delete_tree(self._space.prefix + prefix, keep=self._space.owns)

    def query_get(self, key: str) -> Result:
        """Read one key of this space as ``KVS.Get``."""
        return self._result(self._store.query_get(self._space.prefix + key))

    def query_list(self, prefix: str, readable: Callable[[str], bool] | None) -> Result:
        """Read a prefix of this space as ``KVS.List``; ``readable`` sees the keys' names."""
        result = self._result(self._store.query_list(self._space.prefix + prefix, None))
        if readable is not None:
            kept = [entry for entry in result.entries if readable(entry.key)]
            result.filtered = len(kept) != len(result.entries)
            result.entries = kept
        return result

    def block(
        self,
        min_index: int,
        timeout: float,
        query: Callable[[], Result],
        cancelled: Callable[[], bool],
    ) -> Result:
        """Run ``query`` as a blocking query over the shared store (see `Store.block`)."""
        return self._store.block(min_index, timeout, query, cancelled)
