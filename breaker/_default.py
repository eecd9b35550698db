"""The default provider: the one ``breaker.circuit`` uses when it is given none."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from breaker._provider import Provider

current: Provider | None = None
"""The default provider, read by ``breaker.circuit`` at call time."""


class DefaultProvider:
    """Restore the previous default provider on ``restore()`` or when a ``with`` block ends."""

    __slots__ = ("_previous", "_restored")

    def __init__(self, previous: Provider | None) -> None:
        self._previous = previous
        self._restored = False

    def restore(self) -> None:
        """Make the provider that was the default before this one the default again."""
        global current
        if not self._restored:
            self._restored = True
            current = self._previous

    def __enter__(self) -> DefaultProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()


def set_default_provider(provider: Provider | None) -> DefaultProvider:
    """Make ``provider`` the one ``breaker.circuit`` uses when given none (None clears it).

    It takes effect at once; used as a context manager (``with set_default_provider(p):``)
    it restores the previous default when the block ends, as tests and scripts want.
    """
    global current
    previous, current = current, provider
    return DefaultProvider(previous)


def get_default_provider() -> Provider | None:
    """Return the default provider, or None when none is set."""
    return current
