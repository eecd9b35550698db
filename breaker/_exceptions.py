"""Every exception breaker raises, in one place.

The hierarchy::

    BreakerError                 base class: catch it to catch anything this package raises
    ├── RejectedError            a call was rejected without running (name, retry_after)
    │   ├── BreakerOpenError     ... because the breaker is open (or forced open)
    │   │                        (ErrBreakerOpen is the same class, the seed contract's name)
    │   └── BulkheadFullError    ... because maxConcurrentCalls calls were in flight
    ├── CallTimeoutError         an async call ran past the policy's timeout and was
    │                            cancelled (also a TimeoutError); counts as a failure
    ├── PolicyError              a policy value or document is invalid (also a ValueError)
    └── CoordError               a coord cannot read its backend (Consul unreachable, ...)

A rejection never counts against the downstream; a timeout does. Integrations add
subclasses that are also the client library's own error type (an ``httpx.TransportError``,
a ``requests.ConnectionError``, a ``grpc.RpcError``), so existing ``except`` clauses catch
rejections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from breaker._state import Mode, State


class BreakerError(Exception):
    """Base class of every exception breaker raises."""


class RejectedError(BreakerError):
    """Raise when a call is rejected without running: a breaker is open, or a bulkhead full.

    ``name`` names the breaker; ``retry_after`` is the number of seconds after which a
    call may be admitted again (an HTTP layer can send it as Retry-After).
    """

    @property
    def name(self) -> str:
        """Return the name of the breaker that rejected the call."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def retry_after(self) -> float:
        """Return the seconds after which a call may be admitted again (0.0: any time)."""
        return 0.0


class BreakerOpenError(RejectedError):
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


class BulkheadFullError(RejectedError):
    """Raise when ``maxConcurrentCalls`` calls are in flight and no slot freed in time.

    The downstream is not blamed: the call never ran and does not count as a failure.
    """

    if TYPE_CHECKING:

        def __init__(self, name: str, limit: int, waited: float, /) -> None: ...

    @property
    def limit(self) -> int:
        """Return the limit in force when the call was rejected."""
        return self.args[1]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        if len(self.args) < 3:  # built by hand, as subclasses of library errors may be
            return super().__str__()
        waited = f" (waited {self.args[2]:.3f}s)" if self.args[2] else ""
        return (
            f"breaker {self.name!r}: {self.limit} calls in flight, the most allowed "
            f"(maxConcurrentCalls){waited}"
        )


class CallTimeoutError(BreakerError, TimeoutError):
    """Raise when an async call runs past its policy's ``timeout``: it was cancelled.

    It counts as a failure of the downstream. It is also a ``TimeoutError`` (and so an
    ``asyncio.TimeoutError``), which existing handlers catch.
    """

    if TYPE_CHECKING:

        def __init__(self, name: str, timeout: float, /) -> None: ...

    @property
    def name(self) -> str:
        """Return the name of the breaker whose policy set the timeout."""
        return self.args[0]  # type: ignore[no-any-return]

    @property
    def timeout(self) -> float:
        """Return the timeout, in seconds, that the call ran past."""
        return self.args[1]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return f"breaker {self.args[0]!r}: the call ran past its timeout ({self.args[1]:g}s)"


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
