"""Provider: the registry of breakers and the policy mapping the coord keeps current."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType, TracebackType
from typing import ParamSpec, TypeVar

import attrs

from breaker._decorators import ExcludeItem, Fallback, Guard, circuit
from breaker._engine import Breaker, Clock
from breaker._exceptions import CoordError, PolicyError
from breaker._policy import Policy
from breaker._state import State, StateChange
from breaker.coord._base import Coord, Snapshot, Watch

P = ParamSpec("P")
R = TypeVar("R")
Listener = Callable[[StateChange], None]

_log = logging.getLogger("breaker")
_SUFFIX = ".json"


def _non_empty(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip("/"):
        raise ValueError(f"Config.{attribute.name}: expected a non-empty string, got {value!r}")


def _key_path(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    _non_empty(instance, attribute, value)
    if "//" in str(value).strip("/"):
        raise ValueError(f"Config.{attribute.name}: {value!r} contains '//', which no key can hold")


@attrs.frozen
class Config:
    """Who the provider serves and where its policies live (``<policies_path><name>.json``)."""

    service_name: str = attrs.field(validator=_non_empty)
    policies_path: str = attrs.field(validator=_key_path)

    @property
    def prefix(self) -> str:
        """Return the coord key prefix: no leading slash, one trailing slash."""
        return self.policies_path.strip("/") + "/"


def policy_name(breaker_name: str) -> str:
    """Return the name whose ``.json`` key holds the policy of ``breaker_name``.

    A leading slash is dropped, so a gRPC method breaker "/pkg.Service/Method" reads
    "<prefix>pkg.Service/Method.json" (a key cannot hold "//").
    """
    return breaker_name[1:] if breaker_name.startswith("/") else breaker_name


class Provider:
    """Own the named breakers of one service and keep their policies current.

    Create one with `breaker.new`. Reading a policy or a breaker never takes a lock:
    all policies live in one immutable mapping replaced by a single assignment.
    """

    def __init__(
        self,
        config: Config,
        *,
        coord: Coord,
        default_policy: Policy,
        clock: Clock,
    ) -> None:
        self._config = config
        self._coord = coord
        self._prefix = config.prefix
        self._default = default_policy
        self._clock = clock
        self._policies: Mapping[str, Policy] = MappingProxyType({})
        self._raw: dict[str, bytes] = {}
        self._breakers: dict[str, Breaker] = {}
        self._listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()  # guards creating breakers and adopting policies
        self._update_lock = threading.Lock()  # one snapshot applied at a time
        self._watch: Watch | None = None
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<Provider service={self._config.service_name!r} prefix={self._prefix!r} "
            f"breakers={len(self._breakers)} policies={len(self._policies)}>"
        )

    @property
    def config(self) -> Config:
        """Return the configuration the provider was created with."""
        return self._config

    @property
    def default_policy(self) -> Policy:
        """Return the policy of breakers that have none in the coord."""
        return self._default

    @property
    def policies(self) -> Mapping[str, Policy]:
        """Return the policies read from the coord, by name (an immutable snapshot)."""
        return self._policies

    def policy(self, name: str) -> Policy:
        """Return the policy that a breaker called ``name`` uses."""
        return self._policies.get(policy_name(name), self._default)

    def get_breaker(self, name: str) -> Breaker:
        """Return the breaker called ``name``, creating it on first use (thread-safe)."""
        brk = self._breakers.get(name)
        if brk is not None:
            return brk
        if not isinstance(name, str) or not name:
            raise ValueError(f"a breaker name must be a non-empty string, got {name!r}")
        with self._lock:
            brk = self._breakers.get(name)
            if brk is None:
                brk = Breaker(name, self.policy(name), clock=self._clock, notify=self._notify)
                self._breakers[name] = brk
        return brk

    def circuit(
        self,
        name: str,
        *,
        exclude: Iterable[ExcludeItem] = (),
        fallback: Fallback | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Guard a function, method or ``async def`` with breaker ``name`` (see `circuit`)."""
        return circuit(name, provider=self, exclude=exclude, fallback=fallback)

    def guard(self, name: str, *, exclude: Iterable[ExcludeItem] = ()) -> Guard:
        """Return a single-use context manager (``with`` or ``async with``) guarding a block."""
        return Guard(self.get_breaker(name), exclude)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(StateChange)`` after every state change of every breaker."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x != listener)

    def close(self) -> None:
        """Stop watching the coord and close it; breakers keep working with their last policy."""
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.stop()
        self._coord.close()

    def __enter__(self) -> Provider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self, *, strict: bool) -> None:
        try:
            snapshot = self._coord.load(self._prefix)
        except CoordError as exc:
            if strict:
                raise
            _log.warning(
                "service %r: could not load policies under %r (%s); starting with the default "
                "policy, the watcher keeps trying",
                self._config.service_name,
                self._prefix,
                exc,
            )
        else:
            self._apply(snapshot)
        self._watch = self._coord.watch(self._prefix, self._apply)

    def _apply(self, snapshot: Snapshot) -> None:
        """Apply a coord snapshot: parse what changed, swap the mapping, update live breakers."""
        with self._update_lock:
            raw: dict[str, bytes] = {}
            for key, value in snapshot.items():
                if key.startswith(self._prefix) and key.endswith(_SUFFIX):
                    name = key[len(self._prefix) : -len(_SUFFIX)]
                    if name:
                        raw[name] = value
                        continue
                _log.debug("ignoring key %r: not a <name>.json policy under %r", key, self._prefix)
            old = self._policies
            new: dict[str, Policy] = {}
            for name, value in raw.items():
                if self._raw.get(name) == value:
                    if name in old:
                        new[name] = old[name]
                    continue
                key = self._prefix + name + _SUFFIX
                try:
                    new[name] = Policy.from_json(value, base=self._default, source=key)
                except PolicyError as exc:
                    if name in old:
                        new[name] = old[name]
                    kept = "the last good policy" if name in old else "the default policy"
                    _log.warning("invalid policy document: %s; keeping %s", exc, kept)
            self._raw = raw
            if new == old:
                return
            for name in old.keys() - new.keys():  # a kept or invalid document stays in new
                _log.info("policy %r deleted; breaker uses the default policy", name)
            for name, policy in new.items():
                if old.get(name) != policy:
                    _log.info("policy %r is now %s", name, policy)
            with self._lock:
                self._policies = MappingProxyType(new)
                for brk in self._breakers.values():
                    policy = self.policy(brk.name)
                    if brk.policy != policy:
                        brk._adopt(policy)

    def _notify(self, brk: Breaker, old: State, new: State) -> None:
        service = self._config.service_name
        _log.log(
            logging.WARNING if new is State.OPEN else logging.INFO,
            "service %r: breaker %r %s -> %s",
            service,
            brk.name,
            old.value,
            new.value,
            extra={
                "service": service,
                "breaker": brk.name,
                "old_state": old.value,
                "new_state": new.value,
            },
        )
        listeners = self._listeners
        if listeners:
            event = StateChange(service_name=service, breaker=brk.name, old=old, new=new)
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    _log.exception("state-change listener %r failed", listener)


def new(
    config: Config,
    *,
    coord: Coord,
    default_policy: Policy | None = None,
    clock: Clock = time.monotonic,
    strict: bool = False,
) -> Provider:
    """Create a Provider: load every policy under ``config.policies_path``, then watch for changes.

    The stored policies are in effect when this returns. If the coord cannot be read,
    the provider starts with ``default_policy`` and the watch applies the policies as
    soon as it can, unless ``strict`` asks for `CoordError` instead. The provider owns
    ``coord`` and closes it. ``clock`` (monotonic seconds) is injectable for tests.
    """
    provider = Provider(
        config,
        coord=coord,
        default_policy=default_policy if default_policy is not None else Policy(),
        clock=clock,
    )
    try:
        provider._start(strict=strict)
    except BaseException:
        provider.close()
        raise
    return provider
