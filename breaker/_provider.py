"""Provider: the registry of breakers and the policy mapping the coord keeps current."""

from __future__ import annotations

import inspect
import logging
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType, TracebackType
from typing import Any, ParamSpec, TypeVar, overload

import attrs

from breaker import _fleet, _fork
from breaker._decorators import (
    AsyncCircuitDecorator,
    CircuitDecorator,
    ExcludeItem,
    FailureIf,
    Fallback,
    circuit,
)
from breaker._engine import Breaker, Clock, Guard, Host, exclusions
from breaker._exceptions import CoordError
from breaker._layers import Layers, Resolution
from breaker._names import DEFAULT_DOCUMENT, check_name, policy_name
from breaker._policy import Policy, format_timestamp
from breaker._state import Mode, State, StateChange
from breaker.coord._base import Coord, CoordHealth, SessionCoord, Snapshot, Watch

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
Listener = Callable[[StateChange], None]

_new_guard = object.__new__
_log = logging.getLogger("breaker.policies")
_state_log = logging.getLogger("breaker.state")
DEFAULT_MAX_BREAKERS = 10_000
"""Breakers a provider keeps before it starts dropping idle ones (see `new`)."""
__all__ = ["DEFAULT_DOCUMENT", "Config", "Provider", "new", "policy_name"]


def _non_empty(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value.strip("/"):
        raise ValueError(f"Config.{attribute.name}: expected a non-empty string, got {value!r}")


def _key_path(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    _non_empty(instance, attribute, value)
    path = str(value).strip("/")
    if "//" in path:
        raise ValueError(f"Config.{attribute.name}: {value!r} contains '//', which no key can hold")
    if any(part in (".", "..") for part in path.split("/")):
        # An HTTP layer would normalise the URL and list another prefix.
        raise ValueError(f"Config.{attribute.name}: {value!r} contains a '.' or '..' segment")


@attrs.frozen
class Config:
    """Who the provider serves and where its policies live (``<policies_path><name>.json``).

    With ``fleet_path`` the provider also publishes its breakers' state at
    ``<fleet_path><service_name>/<instance_id>.json``, held by a Consul session of TTL
    ``fleet_ttl`` seconds (10 or more); ``instance_id`` defaults to ``"<hostname>-<pid>"``
    (a forked child derives its own). The fleet path must not be at or under
    ``policies_path``: the policy watcher must never see fleet writes.
    """

    service_name: str = attrs.field(validator=_non_empty)
    policies_path: str = attrs.field(validator=_key_path)
    fleet_path: str | None = attrs.field(default=None, kw_only=True)
    instance_id: str | None = attrs.field(default=None, kw_only=True)
    fleet_ttl: float = attrs.field(default=_fleet.DEFAULT_FLEET_TTL, kw_only=True)

    def __attrs_post_init__(self) -> None:
        _fleet.check_fleet_config(
            self.service_name, self.prefix, self.fleet_path, self.instance_id, self.fleet_ttl
        )

    @property
    def prefix(self) -> str:
        """Return the coord key prefix: no leading slash, one trailing slash."""
        return self.policies_path.strip("/") + "/"


class _Resources:
    """What a provider must release: shared with its finalizer, which cannot hold the provider."""

    __slots__ = ("coord", "fleet", "watch")

    def __init__(self, coord: Coord) -> None:
        self.coord = coord
        self.watch: Watch | None = None
        self.fleet: _fleet.Publisher | None = None

    def close(self) -> None:
        try:
            if self.fleet is not None:
                self.fleet.stop()  # withdraws the record while the coord is still open
            if self.watch is not None:
                self.watch.stop()
        finally:
            self.coord.close()
            if self.fleet is not None:
                self.fleet.join(_fleet.STOP_TIMEOUT)  # the coord cut what it was waiting for


def _collect_unclosed(resources: _Resources, service: str) -> None:
    # A finalizer may run in any thread, even the watcher's, with any lock held: release
    # the coord from a thread of its own.
    threading.Thread(target=resources.close, name="breaker-close-unclosed", daemon=True).start()
    warnings.warn(
        f"breaker provider for service {service!r} was never closed; stopping its watcher "
        "(call provider.close() or use it as a context manager)",
        ResourceWarning,
        stacklevel=1,
    )


def _check_listener(listener: object) -> None:
    """Raise TypeError unless ``listener`` is a plain callable: a coroutine would never run."""
    if not callable(listener):
        raise TypeError(f"add_listener: a listener must be callable, got {listener!r}")
    call = getattr(listener, "__call__", None)  # noqa: B004 - an object's async __call__
    for fn in (listener, call):
        if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"add_listener: {listener!r} is asynchronous, but listeners are called "
                "synchronously on the thread that changed the state, so its coroutine "
                "would never run; pass a plain function that hands the event to your loop, "
                "e.g. lambda change: loop.call_soon_threadsafe(queue.put_nowait, change)"
            )


def _weak_apply(ref: weakref.ref[Provider]) -> Callable[[Snapshot], None]:
    def on_change(snapshot: Snapshot) -> None:
        provider = ref()
        if provider is not None:
            provider._apply(snapshot)

    return on_change


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
        wall_clock: Clock,
        max_breakers: int = DEFAULT_MAX_BREAKERS,
    ) -> None:
        self._config = config
        self._coord = coord
        self._prefix = config.prefix
        self._clock = clock
        self._wall = wall_clock
        self._layers = Layers(
            default_policy,
            self._prefix,
            clock=clock,
            wall=wall_clock,
            instance=config.instance_id or _fleet.default_instance_id,
        )
        # What breakers run on, by policy name, and without a document: both replaced
        # together (under _lock), never changed in place.
        self._resolved: Mapping[str, Resolution] = self._layers.resolved
        self._default: Resolution = self._layers.default
        self._policies: tuple[object, Mapping[str, Policy]] = (None, MappingProxyType({}))
        self._breakers: dict[str, Breaker] = {}
        # Breakers dropped as idle, still alive while someone holds them (a decorator, a
        # client): get_breaker finds them again, so one name never has two breakers.
        self._idle: weakref.WeakValueDictionary[str, Breaker] = weakref.WeakValueDictionary()
        self._max_breakers = max_breakers
        self._calls_seen: dict[str, int] = {}
        self._created_since_sweep = 0
        self._listeners: tuple[Listener, ...] = ()
        self._host = Host(clock, wall_clock, self._notify, self._unpark)
        self._lock = threading.Lock()  # guards creating breakers and swapping policies
        self._update_lock = threading.Lock()  # one snapshot applied at a time
        self._resources = _Resources(coord)
        self._finalizer = weakref.finalize(
            self, _collect_unclosed, self._resources, config.service_name
        )
        self._finalizer.atexit = False
        self._closed = False
        self._closed_health: CoordHealth | None = None
        self._forking: list[Breaker] = []
        _fork.register(self, _fork.PROVIDER)

    def __repr__(self) -> str:
        return (
            f"<Provider service={self._config.service_name!r} prefix={self._prefix!r} "
            f"breakers={len(self._breakers)} policies={len(self._resolved)}>"
        )

    @property
    def config(self) -> Config:
        """Return the configuration the provider was created with."""
        return self._config

    @property
    def default_policy(self) -> Policy:
        """Return the policy of breakers with no document (``_default.json``, else the code's)."""
        return self._default.policy

    @property
    def policies(self) -> Mapping[str, Policy]:
        """Return the policies of the breakers that have a document in effect, by name.

        An immutable snapshot; the policies are resolved: ``_default.json`` and the code's
        default fill in what a document leaves out.
        """
        resolved = self._resolved
        cached, policies = self._policies
        if cached is not resolved:
            policies = MappingProxyType({n: r.policy for n, r in resolved.items()})
            self._policies = (resolved, policies)
        return policies

    @property
    def invalid_documents(self) -> Mapping[str, tuple[str, ...]]:
        """Return the documents that do not apply as written now, by name, and why."""
        return {
            name: tuple(str(p) for p in found.problems)
            for name, found in self._layers.invalid.items()
        }

    @property
    def rejected_documents(self) -> int:
        """Return how many times a document was found not to apply, since the provider started."""
        return self._layers.rejected

    def policy(self, name: str) -> Policy:
        """Return the policy that a breaker called ``name`` uses."""
        return self._resolved.get(policy_name(name), self._default).policy

    def explain(self, name: str) -> dict[str, Any]:
        """Return what breaker ``name`` runs on and why, as ``breaker explain --json`` shows it.

        The policy, the layer each key comes from, each layer's document and whether it
        applies (if not, why, and what applies instead), and the mode with when it ends.
        """
        check_name(name, "explain")
        with self._update_lock:
            return self._layers.explain(policy_name(name))

    def get_breaker(self, name: str) -> Breaker:
        """Return the breaker called ``name``, creating it on first use (thread-safe)."""
        brk = self._breakers.get(name)
        if brk is not None:
            return brk
        check_name(name, "get_breaker")
        created = False
        with self._lock:
            brk = self._breakers.get(name)
            if brk is None:
                brk = self._idle.pop(name, None)
                if brk is None:
                    found = self._resolved.get(policy_name(name), self._default)
                    # The mode's deadline was fixed when its document was first read.
                    brk = Breaker(
                        name,
                        found.policy,
                        clock=self._clock,
                        host=self._host,
                        mode_deadline=found.mode_deadline,
                    )
                    self._created_since_sweep += 1
                    created = True
                self._breakers[name] = brk
                if len(self._breakers) > self._max_breakers:
                    self._sweep()
        self._host.deliver()  # what a new breaker's mode did, with no lock held
        fleet = self._resources.fleet
        if created and fleet is not None:
            fleet.changed()  # a new breaker joins the record
        return brk

    def breakers(self) -> Mapping[str, Breaker]:
        """Return the live breakers by name (a snapshot)."""
        with self._lock:
            return MappingProxyType(self._all_breakers())

    def _all_breakers(self) -> dict[str, Breaker]:
        found = dict(self._idle.items())
        found.update(self._breakers)
        return found

    def _sweep(self) -> None:
        """Drop breakers that are closed, count nothing and had no call since the last sweep.

        Runs (lock held) when the registry passes ``max_breakers``, at most once per tenth
        of it in new breakers, so its cost stays constant per created breaker.
        """
        if self._created_since_sweep < max(1, self._max_breakers // 10):
            return
        self._created_since_sweep = 0
        seen = self._calls_seen
        for name, brk in list(self._breakers.items()):
            calls = brk._calls()
            if seen.get(name) == calls and brk._idle():
                del self._breakers[name]
                del seen[name]
                self._idle[name] = brk
                brk._park()
            else:
                seen[name] = calls

    def _unpark(self, brk: Breaker) -> None:
        """Take back a breaker set aside as idle that has something to keep again."""
        with self._lock:
            if self._idle.get(brk.name) is brk:
                del self._idle[brk.name]
                self._breakers.setdefault(brk.name, brk)

    @overload
    def circuit(
        self,
        name: str,
        *,
        exclude: Iterable[ExcludeItem] = (),
        fallback: None = None,
        failure_if: FailureIf | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    @overload
    def circuit(  # type: ignore[overload-overlap]
        self,
        name: str,
        *,
        exclude: Iterable[ExcludeItem] = (),
        fallback: Fallback[Awaitable[T]],
        failure_if: FailureIf | None = None,
    ) -> AsyncCircuitDecorator[T]: ...

    @overload
    def circuit(
        self,
        name: str,
        *,
        exclude: Iterable[ExcludeItem] = (),
        fallback: Fallback[R],
        failure_if: FailureIf | None = None,
    ) -> CircuitDecorator[R]: ...

    def circuit(
        self,
        name: str,
        *,
        exclude: Iterable[ExcludeItem] = (),
        fallback: Callable[..., Any] | None = None,
        failure_if: FailureIf | None = None,
    ) -> Any:
        """Guard a function, method or ``async def`` with breaker ``name`` (see `circuit`)."""
        return circuit(
            name, provider=self, exclude=exclude, fallback=fallback, failure_if=failure_if
        )

    def guard(self, name: str, *, exclude: Iterable[ExcludeItem] = ()) -> Guard:
        """Return a single-use context manager (``with`` or ``async with``) guarding a block."""
        brk = self._breakers.get(name)
        # What Guard(brk, exclude) makes, without its __init__: on CPython 3.11 a class
        # calling a Python __init__ costs a tenth of this path (tests/test_engine.py).
        guard = _new_guard(Guard)
        guard._breaker = brk if brk is not None else self.get_breaker(name)
        guard._exclude = exclusions(exclude) if exclude else None
        guard._ticket = None
        guard._failed = False
        return guard

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(StateChange)`` after every state change of every breaker.

        Each breaker's changes reach listeners in the order they happened, with no lock
        held: a listener may call back into the provider or the breaker. Listeners run
        synchronously on the thread that changed the state (a call's, or the watcher's
        applying a policy), so an ``async def`` is refused: nothing would await it. Hand
        the event to a loop instead (``loop.call_soon_threadsafe``).
        """
        _check_listener(listener)
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling ``listener``; unknown listeners are ignored."""
        with self._lock:
            self._listeners = tuple(x for x in self._listeners if x != listener)

    def health(self) -> CoordHealth:
        """Return what the coord's watch knows of its backend (up, last sync, last error)."""
        if self._closed_health is not None:
            return self._closed_health
        watch = self._resources.watch
        if watch is None:
            return CoordHealth(up=False, last_error="not watching")
        try:
            return watch.health()
        except Exception as exc:  # a coord of the user's own that does not keep health
            return CoordHealth(up=False, last_error=f"health() failed: {exc}")

    def status(self) -> dict[str, Any]:
        """Return a JSON-serialisable picture for a health endpoint: coord, policies, breakers."""
        health = self.health()
        breakers = {}
        for name, brk in sorted(self.breakers().items()):
            breakers[name] = {
                "state": brk.state.value,
                "mode": brk.mode.value,
                "policy": brk.policy.to_dict(),
                "retry_after": round(brk.retry_after, 3),
                "stats": brk.stats().to_dict(),
            }
            canary = self._canary_info(name)
            if canary is not None:
                breakers[name]["canary"] = canary
        last_sync = None
        if health.last_sync is not None:
            last_sync = format_timestamp(datetime.fromtimestamp(health.last_sync, timezone.utc))
        return {
            "service": self._config.service_name,
            "policies_path": self._config.policies_path,
            "coord": {"up": health.up, "last_sync": last_sync, "last_error": health.last_error},
            "rejected_documents": self._layers.rejected,
            "invalid_documents": {n: i.to_dict() for n, i in self._layers.invalid.items()},
            "default_policy": self.default_policy.to_dict(),
            "breakers": breakers,
        }

    @property
    def instance_id(self) -> str:
        """Return this process's name in the fleet and in canaries: ``Config.instance_id``,
        else ``"<hostname>-<pid>"`` (a forked child's publisher names itself anew)."""
        fleet = self._resources.fleet
        if fleet is not None:
            return fleet.instance_id
        return self._layers.instance or _fleet.default_instance_id()

    def _canary_info(self, name: str) -> dict[str, Any] | None:
        """Return what breaker ``name``'s status and fleet record say of its canary."""
        found = self._resolved.get(policy_name(name))
        return None if found is None or found.canary is None else found.canary.to_dict()

    def fleet(self, name: str | None = None) -> dict[str, Any]:
        """Return the fleet view of this service, read from the coord now.

        ``{"instances": [ids], "breakers": {name: {"closed": [ids], "open": [ids],
        "half-open": [ids], "modes": {mode: [ids]}}}}``, limited to breaker ``name`` when
        given. Needs ``Config.fleet_path``; raise `CoordError` if the coord cannot answer.
        """
        if self._config.fleet_path is None:
            raise ValueError("Provider.fleet: this provider has no Config.fleet_path")
        prefix = _fleet.fleet_prefix(self._config.fleet_path, self._config.service_name)
        return _fleet.fleet_view(_fleet.parse_records(self._coord.load(prefix), prefix), name)

    def close(self) -> None:
        """Stop watching the coord and close it; breakers keep working with their last policy."""
        if self._closed:
            return
        last = self.health()
        self._closed_health = CoordHealth(
            up=False, last_sync=last.last_sync, last_error="closed: the provider no longer watches"
        )
        self._closed = True
        self._finalizer.detach()
        _fork.unregister(self)
        try:
            self._resources.close()
        finally:
            self._host.close()

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
        self._resources.watch = self._coord.watch(self._prefix, _weak_apply(weakref.ref(self)))
        config = self._config
        if config.fleet_path is not None:
            if not isinstance(self._coord, SessionCoord):
                raise TypeError(
                    f"Config.fleet_path needs a coord with sessions (breaker.coord.SessionCoord, "
                    f"as MemoryCoord and ConsulCoord are), got {type(self._coord).__name__}"
                )
            publisher = _fleet.Publisher(
                self._coord,
                self.breakers,
                service=config.service_name,
                fleet_path=config.fleet_path,
                instance_id=config.instance_id,
                ttl=config.fleet_ttl,
                clock=self._clock,
                wall=self._wall,
                canary=self._canary_info,
            )
            self._resources.fleet = publisher
            publisher.start()

    def _apply(self, snapshot: Snapshot) -> None:
        """Apply a coord snapshot: parse what changed, swap the mapping, update live breakers."""
        with self._update_lock:
            self._apply_locked(snapshot)
        self._host.deliver()  # listeners run with no provider lock held
        fleet = self._resources.fleet
        if fleet is not None:
            fleet.changed()  # a mode or a policy may have changed: the record shows both

    def _apply_locked(self, snapshot: Snapshot) -> None:
        relayered, names = self._layers.update(snapshot)
        self._take(relayered, names)

    def _take(self, relayered: bool, names: list[str]) -> None:
        """Swap in the layers' resolutions; live breakers of ``names`` (all: ``relayered``)
        adopt theirs. The update lock is held."""
        resolved, default = self._layers.resolved, self._layers.default
        if resolved is self._resolved and default is self._default:
            return
        with self._lock:
            self._resolved, self._default = resolved, default
            if relayered or len(names) >= len(self._breakers) + len(self._idle):
                live = list(self._all_breakers().values())
            else:  # only the breakers of the changed documents
                live = []
                for name in names:
                    for each in (name, "/" + name):
                        brk = self._breakers.get(each) or self._idle.get(each)
                        if brk is not None:
                            live.append(brk)
        for brk in live:
            found = resolved.get(policy_name(brk.name), default)
            current = brk.policy
            if current is not found.policy and current != found.policy:
                brk._adopt(found.policy, mode_deadline=found.mode_deadline, deliver=False)

    def _notify(self, brk: Breaker, old: State, new: State) -> None:
        service = self._config.service_name
        _state_log.log(
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
        if new is State.OPEN:
            self._leave_canary(brk)
        fleet = self._resources.fleet
        if fleet is not None:
            fleet.changed(brk.name)
        listeners = self._listeners
        if listeners:
            event = StateChange(service_name=service, breaker=brk.name, old=old, new=new)
            for listener in listeners:
                try:
                    listener(event)
                except Exception:
                    _state_log.exception("state-change listener %r failed", listener)

    def _leave_canary(self, brk: Breaker) -> None:
        """Send ``brk`` back to the stable policy if it tripped under a canary's candidate
        that says ``abortIfOpen``: one bad candidate opens no more than its slice."""
        name = policy_name(brk.name)
        found = self._resolved.get(name)
        state = None if found is None else found.canary
        candidate = None if state is None or state.runs != "candidate" else state.candidate
        if candidate is None or state is None or not state.abort_if_open:
            return
        if brk.mode not in (Mode.AUTO, Mode.SHADOW) or not _same_settings(brk.policy, candidate):
            return  # a kill switch is no trip; a trip under another policy is not its fault
        with self._update_lock:
            why = f"breaker {brk.name!r} tripped under the candidate"
            if self._layers.abort_canary(name, why) is not None:
                self._take(False, [name])

    # -- fork -------------------------------------------------------------------------------

    def _fork_acquire(self) -> None:
        self._update_lock.acquire()
        self._lock.acquire()
        self._forking = list(self._all_breakers().values())
        for brk in self._forking:
            brk._lock_for_fork()
        self._host.lock_for_fork()

    def _fork_release(self) -> None:
        self._host.unlock_after_fork()
        for brk in self._forking:
            brk._unlock_after_fork()
        self._forking = []
        self._lock.release()
        self._update_lock.release()

    def _fork_reset(self) -> None:  # pragma: no cover - runs in a forked child
        self._update_lock = threading.Lock()
        self._lock = threading.Lock()
        for brk in self._forking:
            brk._reset_after_fork()
        self._host.reset_after_fork()
        self._forking = []
        # The child is an instance of its own: its canary membership is hashed anew.
        explicit = self._config.instance_id
        if self._config.fleet_path is not None:
            instance = _fleet.forked_instance_id(explicit)
        else:
            instance = explicit or _fleet.default_instance_id()
        names = self._layers.set_instance(instance)
        if names:
            self._take(False, names)


def _same_settings(policy: Policy, other: Policy) -> bool:
    """Say whether two policies agree on everything but the mode."""
    return attrs.evolve(policy, mode=Mode.AUTO, mode_until=None) == attrs.evolve(
        other, mode=Mode.AUTO, mode_until=None
    )


def new(
    config: Config,
    *,
    coord: Coord,
    default_policy: Policy | None = None,
    clock: Clock = time.monotonic,
    wall_clock: Clock = time.time,
    strict: bool = False,
    max_breakers: int = DEFAULT_MAX_BREAKERS,
) -> Provider:
    """Create a Provider: load every policy under ``config.policies_path``, then watch for changes.

    The stored policies are in effect when this returns. If the coord cannot be read,
    the provider starts with ``default_policy`` and the watch applies the policies as
    soon as it can, unless ``strict`` asks for `CoordError` instead. The provider owns
    ``coord`` and closes it. ``clock`` (monotonic seconds) and ``wall_clock`` (Unix
    time, for ``modeUntil``) are injectable for tests.

    Beyond ``max_breakers`` breakers (per-host or per-method names are unbounded), breakers
    that are closed, count nothing and had no call since the last look are dropped; an
    open or half-open breaker never is, and one still held elsewhere stays the breaker of
    its name.
    """
    if not isinstance(config, Config):
        raise TypeError(f"new: config must be a breaker.Config, got {type(config).__name__}")
    if default_policy is not None and not isinstance(default_policy, Policy):
        raise TypeError(
            f"new: default_policy must be a breaker.Policy, got {type(default_policy).__name__}"
        )
    if isinstance(max_breakers, bool) or not isinstance(max_breakers, int) or max_breakers < 1:
        raise ValueError(f"new: max_breakers must be an integer >= 1, got {max_breakers!r}")
    if not isinstance(coord, Coord):
        raise TypeError(f"new: coord must implement breaker.Coord, got {type(coord).__name__}")
    provider = Provider(
        config,
        coord=coord,
        default_policy=default_policy if default_policy is not None else Policy(),
        clock=clock,
        wall_clock=wall_clock,
        max_breakers=max_breakers,
    )
    try:
        provider._start(strict=strict)
    except BaseException:
        try:
            provider.close()
        except Exception:
            _log.exception("closing the coord after a failed start failed too")
        raise
    return provider
