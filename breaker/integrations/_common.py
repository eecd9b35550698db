"""What the integrations share: breaker names, finding breakers, calls that settle later."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from breaker import _names
from breaker._decorators import _FromDefault
from breaker._engine import Guard
from breaker._exceptions import BreakerOpenError
from breaker._provider import Provider

if TYPE_CHECKING:
    from breaker._engine import Breaker

T = TypeVar("T")

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def missing(integration: str, library: str, extra: str) -> ImportError:
    """Return the ImportError to raise when ``library`` is missing: it names the extra."""
    return ImportError(
        f"breaker.integrations.{integration} needs {library}: pip install 'consul-breaker[{extra}]'"
    )


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it can name a breaker; raise ValueError saying the rule otherwise."""
    return _names.check_name(name, what)


def downstream_name(scheme: str, host: str, port: int | None) -> str:
    """Return the default breaker name of an HTTP downstream: ``host:port``, lower case.

    The port is the scheme's default when the URL has none; an IPv6 host is bracketed.
    """
    host = host.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is None:
        port = _DEFAULT_PORTS.get(scheme.lower())
    return host if port is None else f"{host}:{port}"


def namer(
    name: str | Callable[[T], str] | None, default: Callable[[T], str], what: str
) -> Callable[[T], str]:
    """Return the function that names the breaker of a call, from an integration's ``name``."""
    if name is None:
        return default
    if isinstance(name, str):
        fixed = check_name(name, what)
        return lambda _: fixed
    if callable(name):
        chosen = name
        return lambda call: check_name(chosen(call), what)
    raise TypeError(f"{what}: name must be a string, a function or None, got {name!r}")


class Breakers:
    """Find breakers by name: in one provider, or in the default provider at call time."""

    __slots__ = ("_default", "_provider")

    def __init__(self, provider: Provider | None, name: object, what: str, per: str) -> None:
        if provider is not None and not isinstance(provider, Provider):
            raise TypeError(
                f"{what}: provider must be a breaker.Provider or None, got {provider!r}"
            )
        self._provider = provider
        self._default = None
        if provider is None:  # the warning, if any, names what runs unguarded
            label = name if isinstance(name, str) else f"{what}, one per {per}"
            self._default = _FromDefault(label)

    def get(self, name: str) -> Breaker | None:
        """Return the breaker called ``name``; None when there is no provider (run unguarded)."""
        provider = self._provider
        if provider is None:
            provider = self._default.provider()  # type: ignore[union-attr]
            if provider is None:
                return None
        return provider.get_breaker(name)


class _Cancelled(BaseException):
    """Stand for a call that ended as neither success nor failure (the client cancelled it)."""


class Call:
    """An admitted call whose outcome settles later, once, when the integration knows it.

    A response's body or a gRPC call ends long after the request was admitted, outside
    any ``with`` block: the integrations drive the guard's `Guard.enter` and
    `Guard.exit` through this.
    """

    __slots__ = ("_guard",)

    def __init__(self, brk: Breaker) -> None:
        """Admit a call to ``brk``; raise `BreakerOpenError` if the breaker rejects it."""
        self._guard = Guard(brk).enter()

    def settle(self, exc: BaseException | None = None, *, failed: bool = False) -> None:
        """Record how the call ended: ``exc`` if it raised, ``failed`` if it returned a failure.

        Only the first settle counts; later ones (a close after the end) do nothing.
        """
        guard = self._guard
        if failed:
            guard.record_failure()
        guard.exit(exc)

    def cancel(self) -> None:
        """Record a call the client cancelled: neither a success nor a failure."""
        self.settle(_Cancelled())


def retry_after_seconds(exc: BreakerOpenError) -> int:
    """Return a rejection's ``retry_after`` as a Retry-After value: whole seconds, at least 1.

    Rounded up, so a client that honours it never comes back before the breaker admits
    a trial call; never 0, which many clients read as "retry at once".
    """
    return max(1, math.ceil(exc.retry_after))
