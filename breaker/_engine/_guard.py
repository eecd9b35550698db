"""Guard: a breaker around a block (``with`` or ``async with``), and the drivers' admit/settle."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from breaker._engine import _paths
from breaker._engine._recording import Exclusions, exclusions

if TYPE_CHECKING:
    from breaker._engine._breaker import Breaker, Ticket


class Guard:
    """Guard a block with a breaker: ``with provider.guard("payments") as call:`` or ``async with``.

    Entering raises `BreakerOpenError` when the breaker rejects the call; leaving records
    the block's outcome. ``call.record_failure()`` marks a block that raised nothing as
    failed (after reading a 503 status, say). A guard is single-use: call ``guard()`` for
    each block. Code that cannot wrap a block (an interceptor, a transport) calls
    `enter` and `exit` itself.
    """

    __slots__ = ("_breaker", "_deadline", "_exclude", "_failed", "_t0", "_ticket", "_tmo")

    def __init__(self, breaker: Breaker, exclude: Iterable[Any] = ()) -> None:
        self._breaker = breaker
        self._exclude: Exclusions | None = exclusions(exclude) if exclude else None
        self._ticket: Ticket | None = None  # then the admitted call's, then _paths.DONE
        self._failed = False

    @property
    def breaker(self) -> Breaker:
        """Return the breaker that guards the block."""
        return self._breaker

    def record_failure(self) -> None:
        """Count the block as failed even if it raises nothing; it still completes normally."""
        self._failed = True

    @_paths.guard
    def enter(self) -> Guard:  # type: ignore[empty-body]
        """Admit the call now or raise `BreakerOpenError` (what ``with`` does on entering)."""

    @_paths.guard
    async def aenter(self) -> Guard:  # type: ignore[empty-body]
        """Admit the call as `enter` does, from a coroutine: waiting for a slot awaits.

        The policy's timeout is the driver's to apply (as its client's request timeout).
        """

    @_paths.guard
    def exit(self, exc: BaseException | None = None) -> bool:  # type: ignore[empty-body]
        """Record the outcome (``exc``: what the call raised); return whether it is an error.

        An error is an ``Exception`` that the guard's ``exclude`` does not match: what a
        fallback may replace. Leaving a guard that was not entered, or twice, does nothing.
        """

    @_paths.guard
    def __enter__(self) -> Guard:  # type: ignore[empty-body]
        ...

    @_paths.guard
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    @_paths.guard
    async def __aenter__(self) -> Guard:  # type: ignore[empty-body]
        ...

    @_paths.guard
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
