"""What many test modules share: the prefix, errors that stand for outcomes, tiny calls."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping

from breaker.testing import ACLRule, ConsulServer, FakeClock

PREFIX = "config/dev/checkout/breakers/"


class Boom(Exception):
    """The downstream failed."""


class NotFound(Exception):
    """The downstream answered: the thing does not exist (usually excluded)."""


class Abort(BaseException):
    """Neither success nor failure, as KeyboardInterrupt or CancelledError."""


def ok() -> str:
    return "ok"


def fail() -> None:
    raise Boom("downstream failed")


async def aok() -> str:
    return "ok"


async def afail() -> None:
    raise Boom("downstream failed")


@contextlib.contextmanager
def acl_server(
    tokens: Mapping[str, Iterable[ACLRule]], *, keys: Mapping[str, str] | None = None
) -> Iterator[ConsulServer]:
    """Run a stand-in with ACLs on and a default-deny policy, holding ``keys``."""
    with ConsulServer(jitter=False, acl_tokens=tokens, acl_default_policy="deny") as server:
        for key, value in (keys or {}).items():
            server.put(key, value)
        yield server


class FakeSleep:
    """A watcher's sleep on a `FakeClock`: record the pause, move the clock, return at once.

    ``on_pause`` runs first (a test's cue to inject a fault). After ``park_after`` pauses it
    parks until the watch stops, so a watcher facing an endless fault makes a known number
    of requests instead of spinning.
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        park_after: int | None = None,
        on_pause: Callable[[float], None] | None = None,
    ) -> None:
        self.clock = clock
        self.pauses: list[float] = []
        self.park_after = park_after
        self.on_pause = on_pause
        self.parked = threading.Event()

    def __call__(self, seconds: float, stop: threading.Event) -> bool:
        if self.park_after is not None and len(self.pauses) >= self.park_after:
            self.parked.set()
            return stop.wait()
        if self.on_pause is not None:
            self.on_pause(seconds)
        self.pauses.append(seconds)
        self.clock.advance(seconds)
        return stop.is_set()


def save_coverage() -> None:
    """In a forked child about to ``os._exit``: save what coverage measured there, if it runs.

    The child's data file gets a name of its own (coverage notices the new pid) and
    pytest-cov combines it with the parent's, so code that only a child runs is measured.
    """
    try:
        import coverage
    except ImportError:  # pragma: no cover - the test extra installs it
        return
    cov = coverage.Coverage.current()
    if cov is not None:
        cov.save()
