"""The fleet: each provider publishes its breakers in Consul, held by a session; the view.

A provider with ``Config.fleet_path`` keeps one record at
``<fleet_path><service_name>/<instance_id>.json``, written by a `Publisher` on a thread of
its own: never on a call path, never holding a breaker's lock. The record is held by a
session (TTL ``fleet_ttl``, behaviour ``delete``), renewed every ``fleet_ttl / 2``, so an
instance that dies without closing disappears when Consul invalidates its session.

`parse_records` and `fleet_view` turn the records under a service's prefix into the view
operators read (``Provider.fleet()`` and the CLI share them).

The record (``version`` 1)::

    {
      "version": 1,
      "service": "checkout",            # Config.service_name
      "instance": "web-3-4242",         # Config.instance_id, default "<host>-<pid>"
      "host": "web-3",
      "pid": 4242,
      "started": "2026-01-01T09:00:00Z",  # when the provider started publishing
      "updated": "2026-01-01T09:05:00Z",  # when this record was written
      "breakers": {
        "payments": {
          "state": "open",              # closed, open, half-open
          "mode": "auto",               # auto, forced-open, disabled, shadow
          "since": "2026-01-01T09:04:58Z",       # when it entered that state
          "mode_since": "2026-01-01T09:00:00Z",  # when it entered that mode
          "policy": {...},              # the effective policy, as Policy.to_dict()
          "calls": {"success": 120, "failure": 5, ...},  # Breaker.stats().calls
          "canary": {                   # only while its document holds a canary
            "id": "3f2a9c0d4e1b",       # which canary (breaker._layers.canary_id)
            "percent": 20.0,
            "abortIfOpen": true,
            "member": true,             # the hash names this instance
            "runs": "candidate",        # or "stable": the policy it runs
            "aborted": false            # true: it tripped and went back (abortIfOpen)
          }
        }
      }
    }
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from breaker import _fork
from breaker._policy import format_timestamp
from breaker._state import State

if TYPE_CHECKING:
    from breaker._engine import Breaker
    from breaker.coord._base import SessionCoord

__all__ = [
    "DEFAULT_FLEET_TTL",
    "MIN_WRITE_INTERVAL",
    "RECORD_VERSION",
    "CanaryInfo",
    "Publisher",
    "check_fleet_config",
    "default_instance_id",
    "fleet_prefix",
    "fleet_view",
    "forked_instance_id",
    "parse_records",
]

_log = logging.getLogger("breaker.fleet")

RECORD_VERSION = 1
DEFAULT_FLEET_TTL = 15.0
"""Seconds a record outlives its instance at least (Consul may keep it up to twice that)."""
MIN_FLEET_TTL = 10.0
MAX_FLEET_TTL = 86400.0
MIN_WRITE_INTERVAL = 1.0
"""A record is written at most once per this many seconds, however many transitions."""
STOP_TIMEOUT = 0.5
"""How long ``close()`` waits for the publisher to withdraw its record."""
_FAKE_CLOCK_POLL = 0.05
_STATES = tuple(state.value for state in State)

Sleep = Callable[[float, threading.Event], bool]
"""Wait ``seconds`` or until the event is set; return True if it was set."""
CanaryInfo = Callable[[str], "dict[str, Any] | None"]
"""Return what a breaker's record says of its canary (None: no canary in effect)."""


def default_instance_id() -> str:
    """Return ``"<hostname>-<pid>"``, this process's default instance id."""
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"


def forked_instance_id(explicit: str | None) -> str:
    """Return the instance id of a forked child: its own ``<hostname>-<pid>``, or
    ``<instance_id>-<pid>`` when the parent's was set (the parent keeps its own)."""
    return default_instance_id() if explicit is None else f"{explicit}-{os.getpid()}"


def fleet_prefix(fleet_path: str, service_name: str) -> str:
    """Return the key prefix of a service's records: ``<fleet_path><service_name>/``."""
    return fleet_path.strip("/") + "/" + service_name.strip("/") + "/"


def check_fleet_config(
    service_name: str,
    policies_prefix: str,
    fleet_path: str | None,
    instance_id: str | None,
    fleet_ttl: object,
) -> None:
    """Refuse fleet settings that cannot work, naming the setting and the problem."""
    if isinstance(fleet_ttl, bool) or not isinstance(fleet_ttl, (int, float)):
        raise TypeError(f"Config.fleet_ttl: expected seconds (a number), got {fleet_ttl!r}")
    if not MIN_FLEET_TTL <= fleet_ttl <= MAX_FLEET_TTL:
        raise ValueError(
            f"Config.fleet_ttl: a session TTL must be within [10, 86400] seconds "
            f"(Consul's bounds), got {fleet_ttl}"
        )
    if instance_id is not None and (
        not isinstance(instance_id, str) or not instance_id.strip() or "/" in instance_id
    ):
        raise ValueError(
            f"Config.instance_id: expected a non-empty name without '/', got {instance_id!r}"
        )
    if fleet_path is None:
        return
    if not isinstance(fleet_path, str) or not fleet_path.strip("/"):
        raise ValueError(f"Config.fleet_path: expected a non-empty key prefix, got {fleet_path!r}")
    path = fleet_path.strip("/")
    if "//" in path or any(part in (".", "..") for part in path.split("/")):
        raise ValueError(f"Config.fleet_path: {fleet_path!r} is not a usable key prefix")
    records = fleet_prefix(fleet_path, service_name)
    if (path + "/").startswith(policies_prefix) or records.startswith(policies_prefix):
        raise ValueError(
            f"Config.fleet_path: the fleet records ({records}<instance>.json) would sit under "
            f"the watched policies prefix {policies_prefix!r}, and every record written would "
            "wake every watcher; put the fleet beside the policies, not under them"
        )


# -- the view ------------------------------------------------------------------------------


def parse_records(snapshot: Mapping[str, bytes], prefix: str | None = None) -> list[dict[str, Any]]:
    """Return the valid records in ``snapshot``, by instance: ``<prefix><instance>.json``.

    Keys not ending ``.json``, and with ``prefix`` keys deeper under it (another service
    whose name starts with this one's and a ``/``), are not records. A record that is
    not JSON, or not shaped as a record, is skipped with one log line naming its key and
    the problem.
    """
    records = []
    for key, raw in sorted(snapshot.items()):
        if not key.endswith(".json"):
            continue
        if prefix is not None and (not key.startswith(prefix) or "/" in key[len(prefix) :]):
            continue
        try:
            record = json.loads(raw)
            _check_record(record)
        except (ValueError, TypeError) as exc:
            _log.warning("skipping fleet record %s: %s", key, exc)
            continue
        records.append(record)
    return sorted(records, key=lambda r: str(r["instance"]))


def _check_record(record: Any) -> None:
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    if not isinstance(record.get("instance"), str) or not record["instance"]:
        raise ValueError('no "instance"')
    breakers = record.get("breakers")
    if not isinstance(breakers, dict):
        raise ValueError('"breakers" is not an object')
    for name, brk in breakers.items():
        if not isinstance(brk, dict) or brk.get("state") not in _STATES:
            raise ValueError(f"breaker {name!r} has no valid state")
        if not isinstance(brk.get("mode"), str):
            raise ValueError(f"breaker {name!r} has no mode")


def fleet_view(records: Iterable[Mapping[str, Any]], name: str | None = None) -> dict[str, Any]:
    """Return the fleet view: who publishes, and per breaker which instances are in which
    state and mode (only breaker ``name`` when given).

    ``{"instances": [ids], "breakers": {name: {"closed": [ids], "open": [ids],
    "half-open": [ids], "modes": {mode: [ids]}}}}``, every list sorted.
    """
    instances: list[str] = []
    breakers: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: str(r["instance"])):
        instance = str(record["instance"])
        instances.append(instance)
        for brk_name, brk in record["breakers"].items():
            if name is not None and brk_name != name:
                continue
            entry = breakers.setdefault(
                brk_name, {"closed": [], "open": [], "half-open": [], "modes": {}}
            )
            entry[brk["state"]].append(instance)
            entry["modes"].setdefault(brk["mode"], []).append(instance)
    for entry in breakers.values():
        entry["modes"] = dict(sorted(entry["modes"].items()))
    return {"instances": instances, "breakers": dict(sorted(breakers.items()))}


# -- publishing ----------------------------------------------------------------------------


class Publisher:
    """Keep this instance's record in the coord, held by a session, on a thread of its own.

    ``changed()`` is all a call path ever does here: it marks the record stale and wakes
    the thread. The thread creates the session, writes the record (at most once per
    second), renews the session every ``ttl / 2`` and re-renders the record then (modes
    expire by themselves), writing it only when its content changed. A lost session is
    replaced and the record written again; failures are retried with the watcher's
    backoff, with one warning until the coord answers again.
    """

    def __init__(
        self,
        coord: SessionCoord,
        breakers: Callable[[], Mapping[str, Breaker]],
        *,
        service: str,
        fleet_path: str,
        instance_id: str | None,
        ttl: float,
        clock: Callable[[], float],
        wall: Callable[[], float],
        sleep: Sleep | None = None,
        random: Callable[[], float] = random.random,
        canary: CanaryInfo | None = None,
    ) -> None:
        self._coord = coord
        self._breakers = breakers
        self._canary = canary
        self._service = service
        self._prefix = fleet_prefix(fleet_path, service)
        self._explicit_id = instance_id
        self._ttl = float(ttl)
        self._clock = clock
        self._wall = wall
        self._sleep = sleep if sleep is not None else self._default_sleep
        self._random = random
        self._seen: dict[str, tuple[str, str, str, str]] = {}
        self._abandoned = False
        self.writes = 0
        """How many times the record was written (for tests and benchmarks)."""
        self.renewed_at: float | None = None
        """The clock's reading at the last successful renewal (or session creation)."""
        self._changed_at: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._fresh(default_instance_id() if instance_id is None else instance_id)
        _fork.register(self, _fork.FLEET)

    def _fresh(self, instance: str) -> None:
        self.instance_id = instance
        self.key = f"{self._prefix}{instance}.json"
        self._host = _hostname()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._session: str | None = None
        self._written: bytes | None = None
        self._dirty = True
        self._started = format_timestamp(_utc(self._wall()))

    def __repr__(self) -> str:
        return f"<fleet Publisher {self.key!r} session={self._session}>"

    @property
    def session(self) -> str | None:
        """Return the ID of the session holding the record now, if any."""
        return self._session

    def start(self) -> None:
        """Start publishing on the publisher's own thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"breaker-fleet:{self._service}", daemon=True
        )
        self._thread.start()

    def changed(self, name: str | None = None) -> None:
        """Note that a breaker changed; cheap, for the call path (no lock, no I/O)."""
        if name is not None:
            self._changed_at[name] = self._wall()
        self._dirty = True
        self._wake.set()

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """Withdraw the record (the session is destroyed) and end the thread, or give up
        waiting after ``timeout`` (the TTL then removes the record)."""
        self._stop.set()
        self._wake.set()
        _fork.unregister(self)
        self.join(timeout)

    def _abandon(self) -> None:
        """Stop publishing without withdrawing the record, as a crashed process does."""
        self._abandoned = True
        self.stop()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the thread to end."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _default_sleep(self, seconds: float, event: threading.Event) -> bool:
        if self._clock is not time.monotonic:
            seconds = min(seconds, _FAKE_CLOCK_POLL)  # an injected clock moves on its own
        return event.wait(max(seconds, 0.0))

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        from breaker._exceptions import CoordError
        from breaker.coord.consul._backoff import BACKOFF_CAP, BACKOFF_FIRST, backoff

        failures = 0
        failing = False
        next_renew = 0.0
        last_write = float("-inf")
        while not self._stop.is_set():
            self._wake.clear()
            now = self._clock()
            try:
                if self._session is None:
                    self._session = self._coord.create_session(
                        ttl=self._ttl,
                        behavior="delete",
                        lock_delay=0,
                        name=f"breaker fleet: {self._service}/{self.instance_id}",
                    )
                    self._written = None
                    self.renewed_at = now
                    next_renew = now + self._ttl / 2
                elif now >= next_renew:
                    if not self._coord.renew_session(self._session):
                        self._lost("its session is gone (expired, or Consul lost it)")
                        continue
                    self.renewed_at = now
                    next_renew = now + self._ttl / 2
                    self._dirty = True  # modes may have expired: look again
                if self._dirty and now - last_write >= MIN_WRITE_INTERVAL:
                    self._dirty = False
                    if self._publish():
                        last_write = now
            except (CoordError, OSError) as exc:
                if self._stop.is_set():
                    break
                if "invalid session" in str(exc):
                    self._lost("Consul no longer knows its session")
                    continue
                if not failing:
                    _log.warning(
                        "fleet record %s: cannot publish (%s); retrying with backoff, "
                        "calls are not affected",
                        self.key,
                        exc,
                    )
                    failing = True
                delay = backoff(
                    failures,
                    BACKOFF_FIRST,
                    BACKOFF_CAP,
                    self._random(),
                    getattr(exc, "retry_after", None),
                )
                failures += 1
                self._dirty = True
                self._pause(self._clock() + delay, self._stop)
                continue
            except Exception:  # a bug must not end publishing for good
                _log.exception("fleet record %s: publishing failed", self.key)
                self._dirty = True
                self._pause(self._clock() + BACKOFF_CAP, self._stop)
                continue
            if failing:
                _log.info("fleet record %s: published again", self.key)
                failing = False
            failures = 0
            deadline = next_renew
            if self._dirty:
                deadline = min(deadline, last_write + MIN_WRITE_INTERVAL)
            self._pause(deadline, self._wake)
        self._withdraw()

    def _lost(self, why: str) -> None:
        _log.warning("fleet record %s: %s; publishing again under a new session", self.key, why)
        self._session = None
        self._dirty = True

    def _pause(self, until: float, event: threading.Event) -> None:
        """Wait until the clock reads ``until``, the event is set, or the publisher stops."""
        while not self._stop.is_set():
            left = until - self._clock()
            if left <= 0 or self._sleep(left, event):
                return

    def _publish(self) -> bool:
        """Write the record if its content changed; return whether it was written."""
        record = self.render()
        content = _canonical(record)
        if content == self._written:
            return False
        record["updated"] = format_timestamp(_utc(self._wall()))
        body = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
        assert self._session is not None
        if not self._coord.acquire(self.key, body, self._session):
            from breaker._exceptions import CoordError

            raise CoordError(
                f"the key is held by another session: does another process publish as "
                f"instance {self.instance_id!r}? (set Config.instance_id to tell them apart)",
                condition="held elsewhere",
            )
        self._written = content
        self.writes += 1
        return True

    def render(self) -> dict[str, Any]:
        """Return this instance's record as it stands now (without ``updated``)."""
        now = format_timestamp(_utc(self._wall()))
        breakers: dict[str, Any] = {}
        for name, brk in sorted(self._breakers().items()):
            state, mode = brk.state.value, brk.mode.value
            seen = self._seen.get(name)
            changed = self._changed_at.get(name)
            since = mode_since = now
            if seen is not None:
                since = seen[2] if seen[0] == state else _at(changed, now)
                mode_since = seen[3] if seen[1] == mode else now
            elif changed is not None:
                since = _at(changed, now)
            self._seen[name] = (state, mode, since, mode_since)
            breakers[name] = {
                "state": state,
                "mode": mode,
                "since": since,
                "mode_since": mode_since,
                "policy": brk.policy.to_dict(),
                "calls": dict(brk.stats().calls),
            }
            canary = self._canary(name) if self._canary is not None else None
            if canary is not None:
                breakers[name]["canary"] = canary
        return {
            "version": RECORD_VERSION,
            "service": self._service,
            "instance": self.instance_id,
            "host": self._host,
            "pid": os.getpid(),
            "started": self._started,
            "breakers": breakers,
        }

    def _withdraw(self) -> None:
        session, self._session = self._session, None
        if session is None or self._abandoned:
            return
        try:
            self._coord.destroy_session(session)  # behaviour delete: the record goes with it
        except Exception as exc:
            _log.info(
                "fleet record %s: could not withdraw it (%s); Consul removes it when its "
                "session expires",
                self.key,
                exc,
            )

    # -- fork --------------------------------------------------------------------------------

    def _fork_acquire(self) -> None:
        pass

    def _fork_release(self) -> None:
        pass

    def _fork_reset(self) -> None:  # pragma: no cover - runs in a forked child
        """Publish as an instance of its own in the child (the parent keeps its record)."""
        instance = forked_instance_id(self._explicit_id)
        self._seen = {}
        self._changed_at = {}
        self._fresh(instance)
        if self._thread is not None and not self._stop.is_set():
            self.start()


def _canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()


def _utc(when: float) -> datetime:
    return datetime.fromtimestamp(when, timezone.utc)


def _at(when: float | None, default: str) -> str:
    return default if when is None else format_timestamp(_utc(when))


def _hostname() -> str:
    import socket

    return socket.gethostname()
