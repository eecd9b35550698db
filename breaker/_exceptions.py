"""Every exception breaker raises, in one place.

The hierarchy::

    BreakerError                 base class: catch it to catch anything this package raises
    ├── BreakerOpenError         a breaker rejected a call without running it
    │                            (ErrBreakerOpen is the same class, the seed contract's name)
    ├── PolicyError              a policy value or document is invalid (also a ValueError)
    └── CoordError               a coord cannot read its backend (Consul unreachable, ...)

Integrations add subclasses that are also the client library's own error type (an
``httpx.TransportError``, a ``requests.ConnectionError``, a ``grpc.RpcError``), so existing
``except`` clauses catch rejections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from breaker._state import Mode, State


class BreakerError(Exception):
    """Base class of every exception breaker raises."""


class BreakerOpenError(BreakerError):
    """Raise when a breaker rejects a call without running it.

    ``retry_after`` is the number of seconds until the breaker admits a trial call
    again (an HTTP layer can send it as Retry-After); 0.0 when that is now.
    """

    # Rejection is the hot path of an outage: the attributes read the exception's args,
    # so raising one costs no Python-level __init__.
    if TYPE_CHECKING:

        def __init__(
            self, name: str, state: State, retry_after: float, mode: Mode | None = None, /
        ) -> None: ...

    @property
    def name(self) -> str:
        """Return the name of the breaker that rejected the call."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def state(self) -> State:
        """Return the breaker's state when it rejected the call."""
        return self.args[1]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float:
        """Return the seconds until the breaker admits a trial call again."""
        return self.args[2]  # type: ignore[no-any-return]

    @property
    def mode(self) -> Mode:
        """Return ``forced-open`` when an operator's kill switch rejected the call, else auto."""
        from breaker._state import Mode

        return self.args[3] if len(self.args) > 3 else Mode.AUTO

    def __str__(self) -> str:
        if len(self.args) < 3:  # built by hand, as subclasses of library errors may be
            return super().__str__()
        if len(self.args) > 3 and str(self.args[3]) == "forced-open":
            what = "is forced open by its policy (mode forced-open)"
        elif str(self.state) == "half-open":
            what = "is half-open and its trial calls are under way"
        else:
            what = "is open"
        return f"breaker {self.name!r} {what}; retry in {self.retry_after:.3f}s"


ErrBreakerOpen = BreakerOpenError
"""The seed contract's name for `BreakerOpenError` (the same class)."""


class PolicyError(BreakerError, ValueError):
    """Raise when a policy value or document is invalid; the message names the key and why."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class CoordError(BreakerError):
    """Raise when a coord cannot read its backend (unreachable, refused, malformed answer).

    ``condition`` names the kind of failure (a watcher logs once per change of it),
    ``status`` is the HTTP status when there is one, ``retry_after`` a server's hint.
    """

    def __init__(
        self,
        message: str,
        *,
        condition: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.condition = condition or message
        self.status = status
        self.retry_after = retry_after
