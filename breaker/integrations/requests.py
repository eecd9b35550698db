"""A requests transport adapter that guards every request with the breaker of its downstream.

::

    session = requests.Session()
    adapter = BreakerAdapter(provider=provider)
    session.mount("http://", adapter)
    session.mount("https://", adapter)

Names
    One breaker per downstream by default, named ``host:port`` from the request's URL
    (``api.example.com:443``, the scheme's default port when the URL has none), the
    same names as ``breaker.integrations.httpx``. ``name="payments"`` puts every
    request of the adapter under one breaker; a function of the
    ``requests.PreparedRequest`` chooses per request.
What counts
    A response for which ``failure_if(response)`` is true counts as a failure and is
    still returned; by default that is any 5xx. An exception from sending (connection
    refused, timeout, ...) counts as a failure and propagates. Retries configured with
    ``max_retries`` happen inside the adapter: the breaker counts the final outcome.
When it counts
    When the body has been read to its end or the response is closed, whichever comes
    first: without ``stream=True`` requests reads the body before it returns; with it,
    reading ``content``, ``text``, ``json()``, ``iter_content()`` or ``iter_lines()`` to
    the end settles, and so does ``close()`` (or the end of a ``with`` block). A body
    cut short (the server dies mid-body, a wrong ``Content-Length``, a read timeout) is
    a failure, whatever the status, even where urllib3 1.x returns the short body
    without an error. A streamed response that the caller closes before its end
    counts by its status alone. A response never read nor closed holds its verdict
    (and a half-open breaker's trial slot, for at most one ``open_state_timeout``).
Rejections
    `BreakerOpenConnectionError`, both a `breaker.BreakerOpenError` and a
    ``requests.exceptions.ConnectionError``, so ``except requests.RequestException``
    catches it too; the request is never sent. With ``maxConcurrentCalls`` reached,
    `BulkheadFullConnectionError` (a `breaker.BulkheadFullError`).
Timeout
    A policy's ``timeout`` tightens the request's (connect and read, or the one number)
    where the caller's is longer or unset: an operator shortens a client's timeout from
    Consul, without a deploy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

from breaker.integrations import _common

try:
    import requests
    from requests.adapters import HTTPAdapter
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise _common.missing("requests", "requests", "requests") from _exc

from breaker._engine import Breaker
from breaker._engine import judge as _judge
from breaker._exceptions import BreakerOpenError, BulkheadFullError, RejectedError
from breaker._provider import Provider
from breaker._state import Mode, State

__all__ = [
    "BreakerAdapter",
    "BreakerOpenConnectionError",
    "BulkheadFullConnectionError",
    "default_name",
    "server_error",
]

_Name = str | Callable[[requests.PreparedRequest], str] | None
_FailureIf = Callable[[requests.Response], object] | None


def default_name(request: requests.PreparedRequest) -> str:
    """Return the default breaker name of a request: its downstream's ``host:port``."""
    url = urlsplit(request.url or "")
    return _common.downstream_name(url.scheme, url.hostname or "", url.port)


def server_error(response: requests.Response) -> bool:
    """Return whether ``response`` is a 5xx answer: the default ``failure_if``."""
    return response.status_code >= 500


class BreakerOpenConnectionError(BreakerOpenError, requests.exceptions.ConnectionError):
    """Raise when a breaker rejects a request: a `breaker.BreakerOpenError` and a requests error.

    ``request`` is the request that was not sent; ``name``, ``state`` and ``retry_after``
    are the rejection's.
    """

    def __init__(
        self,
        name: str,
        state: State,
        retry_after: float,
        mode: Mode | None = None,
        /,
        *,
        request: requests.PreparedRequest | None = None,
    ) -> None:
        # Given positional arguments, OSError would read them as errno and strerror.
        requests.exceptions.ConnectionError.__init__(self, request=request)
        self.args = (name, state, retry_after) if mode is None else (name, state, retry_after, mode)


class BulkheadFullConnectionError(BulkheadFullError, requests.exceptions.ConnectionError):
    """Raise when too many requests are in flight: a `breaker.BulkheadFullError`, a requests error.

    ``request`` is the request that was not sent.
    """

    def __init__(
        self,
        name: str,
        limit: int,
        waited: float,
        /,
        *,
        request: requests.PreparedRequest | None = None,
    ) -> None:
        requests.exceptions.ConnectionError.__init__(self, request=request)
        self.args = (name, limit, waited)


def _tighten(brk: Breaker, timeout: Any) -> Any:
    """Return the caller's timeout with the policy's applied where the caller's is longer."""
    if timeout is None or isinstance(timeout, (int, float)):
        return _common.request_timeout(brk, timeout)
    if isinstance(timeout, tuple) and len(timeout) == 2:
        return tuple(_common.request_timeout(brk, part) for part in timeout)
    return timeout  # a urllib3 Timeout: the caller's choice stands


class BreakerAdapter(HTTPAdapter):
    """Guard each request sent through this adapter with the breaker of its downstream.

    ``adapter_kwargs`` go to ``requests.adapters.HTTPAdapter`` (``max_retries``,
    ``pool_maxsize``, ...). Without ``provider`` the default provider is looked up at
    each request (with none set, requests go out unguarded and a warning is logged
    once).
    """

    def __init__(
        self,
        *,
        provider: Provider | None = None,
        name: _Name = None,
        failure_if: _FailureIf = None,
        **adapter_kwargs: Any,
    ) -> None:
        self._breakers = _common.Breakers(provider, name, "BreakerAdapter", "host:port")
        self._name = _common.namer(name, default_name, "BreakerAdapter")
        self._failure_if = failure_if if failure_if is not None else server_error
        super().__init__(**adapter_kwargs)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send ``request`` if its breaker admits it; see ``HTTPAdapter.send``."""
        brk = self._breakers.get(self._name(request))
        if brk is None:
            return super().send(request, stream, timeout, verify, cert, proxies)
        try:
            call = _common.Call.admit(brk)
        except BulkheadFullError as exc:
            raise BulkheadFullConnectionError(*exc.args, request=request) from None
        except RejectedError as exc:
            raise BreakerOpenConnectionError(*exc.args, request=request) from None
        timeout = _tighten(brk, timeout)
        try:
            response = super().send(request, stream, timeout, verify, cert, proxies)
        except BaseException as exc:
            call.settle(exc)
            raise
        failed = _judge(self._failure_if, response)
        # requests builds a plain Response; this one settles the call with its body.
        response.__class__ = _Response
        guarded = cast(_Response, response)
        guarded._breaker_call = call
        guarded._breaker_failed = failed
        return guarded


class _Response(requests.Response):
    """A response that settles its breaker call when its body ends or it is closed."""

    _breaker_call: _common.Call | None = None  # None once unpickled: nothing to settle
    _breaker_failed = False

    def iter_content(
        self, chunk_size: int | None = 1, decode_unicode: bool = False
    ) -> Iterator[Any]:
        """Iterate over the body as requests does; settle the call when the body ends."""
        chunks = super().iter_content(chunk_size, decode_unicode)
        call = self._breaker_call
        return chunks if call is None else self._settling(chunks, call)

    def _settling(self, chunks: Iterator[Any], call: _common.Call) -> Iterator[Any]:
        try:
            yield from chunks
        except GeneratorExit:  # the reader stopped early: close() settles
            raise
        except BaseException as exc:  # cut short: a failure (or an interrupt: neither)
            call.settle(exc)
            raise
        call.settle(failed=self._breaker_failed or _cut_short(self.raw))

    def close(self) -> None:
        """Close the response as requests does; settle the call if its body has not ended."""
        call = self._breaker_call
        failed = self._breaker_failed or _cut_short(self.raw)
        try:
            super().close()
        finally:
            if call is not None:
                call.settle(failed=failed)


def _cut_short(raw: object) -> bool:
    """Return whether ``raw``'s body ended before its ``Content-Length``.

    urllib3 2 raises when that happens; urllib3 1.x returns the short body, closed.
    """
    remaining = getattr(raw, "length_remaining", None)
    return bool(remaining) and bool(getattr(raw, "closed", False))
