"""httpx transports that guard every request with the breaker of its downstream.

::

    client = httpx.Client(transport=BreakerTransport(provider=provider))
    client = httpx.AsyncClient(transport=AsyncBreakerTransport(provider=provider))

Names
    One breaker per downstream by default, named ``host:port`` from the request's URL
    (``api.example.com:443``, the scheme's default port when the URL has none), so its
    policy is ``<policies_path>api.example.com:443.json``. ``name="payments"`` puts
    every request of the transport under one breaker; a function of the
    ``httpx.Request`` chooses per request.
What counts
    A response for which ``failure_if(response)`` is true counts as a failure and is
    still returned; by default that is any 5xx. An exception from the wrapped
    transport (connect error, timeout, ...) counts as a failure and propagates.
When it counts
    When the body has been read to its end or the response is closed, whichever comes
    first (``client.get()`` reads the body; ``client.stream()`` closes the response when
    its block ends). A body cut short (the server dies mid-body, a wrong
    ``Content-Length``, a read timeout) is a failure, whatever the status. A streamed
    response that the caller closes before its end counts by its status alone: the
    downstream answered, and stopping early was the caller's choice. A response never
    closed holds its verdict (and a half-open breaker's trial slot, for at most one
    ``open_state_timeout``). An async read that is cancelled counts as neither.
Rejections
    `BreakerOpenTransportError`, both a `breaker.BreakerOpenError` and an
    ``httpx.TransportError``, so ``except httpx.HTTPError`` catches it too; the request
    is never sent. With ``maxConcurrentCalls`` reached, `BulkheadFullTransportError`
    (a `breaker.BulkheadFullError`, an ``httpx.TransportError``); an async client's
    request waits for a slot without blocking its event loop.
Timeout
    A policy's ``timeout`` tightens each request's timeouts (connect, read, write, pool)
    where the caller's are longer or unset: an operator shortens a client's timeout from
    Consul, without a deploy.

The wrapped transport is httpx's own (``httpx.HTTPTransport()``) unless given: pass
``httpx.HTTPTransport(verify=..., retries=...)`` for settings that a client would
otherwise give its default transport. Closing the client closes the wrapped transport.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import TypeVar

from breaker.integrations import _common

try:
    import httpx
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise _common.missing("httpx", "httpx", "httpx") from _exc

from breaker._engine import Breaker
from breaker._engine import judge as _judge
from breaker._exceptions import BreakerOpenError, BulkheadFullError, RejectedError
from breaker._provider import Provider
from breaker._state import Mode, State

__all__ = [
    "AsyncBreakerTransport",
    "BreakerOpenTransportError",
    "BreakerTransport",
    "BulkheadFullTransportError",
    "default_name",
    "server_error",
]

_T = TypeVar("_T", bound="BreakerTransport")
_A = TypeVar("_A", bound="AsyncBreakerTransport")
_Name = str | Callable[[httpx.Request], str] | None
_FailureIf = Callable[[httpx.Response], object] | None


def default_name(request: httpx.Request) -> str:
    """Return the default breaker name of a request: its downstream's ``host:port``."""
    url = request.url
    return _common.downstream_name(url.scheme, url.host, url.port)


def server_error(response: httpx.Response) -> bool:
    """Return whether ``response`` is a 5xx answer: the default ``failure_if``."""
    return response.status_code >= 500


class BreakerOpenTransportError(BreakerOpenError, httpx.TransportError):
    """Raise when a breaker rejects a request: a `breaker.BreakerOpenError` and an httpx error.

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
        request: httpx.Request | None = None,
    ) -> None:
        httpx.TransportError.__init__(self, "", request=request)
        self.args = (name, state, retry_after) if mode is None else (name, state, retry_after, mode)


class BulkheadFullTransportError(BulkheadFullError, httpx.TransportError):
    """Raise when too many requests are in flight: a `breaker.BulkheadFullError`, an httpx error.

    ``request`` is the request that was not sent.
    """

    def __init__(
        self, name: str, limit: int, waited: float, /, *, request: httpx.Request | None = None
    ) -> None:
        httpx.TransportError.__init__(self, "", request=request)
        self.args = (name, limit, waited)


def _rejected(exc: RejectedError, request: httpx.Request) -> httpx.TransportError:
    if isinstance(exc, BulkheadFullError):
        return BulkheadFullTransportError(*exc.args, request=request)
    return BreakerOpenTransportError(*exc.args, request=request)


def _tighten(brk: Breaker, request: httpx.Request) -> None:
    """Apply the policy's timeout to the request's own where those are longer or unset."""
    given = request.extensions.get("timeout")
    if not isinstance(given, dict):
        given = dict.fromkeys(("connect", "read", "write", "pool"))
    timeouts = {key: _common.request_timeout(brk, value) for key, value in given.items()}
    if timeouts != given:
        request.extensions = {**request.extensions, "timeout": timeouts}


def _admit(brk: Breaker, request: httpx.Request) -> _common.Call:
    try:
        call = _common.Call.admit(brk)
    except RejectedError as exc:
        raise _rejected(exc, request) from None
    _tighten(brk, request)
    return call


async def _admit_async(brk: Breaker, request: httpx.Request) -> _common.Call:
    try:
        call = await _common.Call.admit_async(brk)
    except RejectedError as exc:
        raise _rejected(exc, request) from None
    _tighten(brk, request)
    return call


class _Body(httpx.SyncByteStream):
    """A response body that settles its call when read to the end, broken, or closed."""

    def __init__(self, stream: httpx.SyncByteStream, call: _common.Call, failed: bool) -> None:
        self._stream = stream
        self._call = call
        self._failed = failed

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except GeneratorExit:  # the reader stopped early: close() settles
            raise
        except BaseException as exc:  # cut short: a failure (or a cancellation)
            self._call.settle(exc)
            raise
        self._call.settle(failed=self._failed)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._call.settle(failed=self._failed)


class _AsyncBody(httpx.AsyncByteStream):
    """The same as `_Body`, for the responses of async transports."""

    def __init__(self, stream: httpx.AsyncByteStream, call: _common.Call, failed: bool) -> None:
        self._stream = stream
        self._call = call
        self._failed = failed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._call.settle(exc)
            raise
        self._call.settle(failed=self._failed)

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            self._call.settle(failed=self._failed)


class BreakerTransport(httpx.BaseTransport):
    """Guard each request of an ``httpx.Client`` with the breaker of its downstream.

    ``transport`` is the transport that sends the requests (default:
    ``httpx.HTTPTransport()``). Without ``provider`` the default provider is looked up
    at each request (with none set, requests go out unguarded and a warning is logged
    once).
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        provider: Provider | None = None,
        name: _Name = None,
        failure_if: _FailureIf = None,
    ) -> None:
        self._transport = transport if transport is not None else httpx.HTTPTransport()
        self._breakers = _common.Breakers(provider, name, "BreakerTransport", "host:port")
        self._name = _common.namer(name, default_name, "BreakerTransport")
        self._failure_if = failure_if if failure_if is not None else server_error

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the wrapped transport if its breaker admits it."""
        brk = self._breakers.get(self._name(request))
        if brk is None:
            return self._transport.handle_request(request)
        call = _admit(brk, request)
        try:
            response = self._transport.handle_request(request)
        except BaseException as exc:
            call.settle(exc)
            raise
        failed = _judge(self._failure_if, response)
        stream = response.stream
        if isinstance(stream, httpx.SyncByteStream) and not isinstance(stream, httpx.ByteStream):
            response.stream = _Body(stream, call, failed)
        else:  # the whole body is here already (or a stream that httpx's client refuses)
            call.settle(failed=failed)
        return response

    def close(self) -> None:
        """Close the wrapped transport."""
        self._transport.close()

    def __enter__(self: _T) -> _T:
        self._transport.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self._transport.__exit__(exc_type, exc_value, traceback)


class AsyncBreakerTransport(httpx.AsyncBaseTransport):
    """Guard each request of an ``httpx.AsyncClient`` with the breaker of its downstream.

    The same as `BreakerTransport`, for ``httpx.AsyncHTTPTransport`` and other async
    transports; a request cancelled while in flight counts as neither success nor failure.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        provider: Provider | None = None,
        name: _Name = None,
        failure_if: _FailureIf = None,
    ) -> None:
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._breakers = _common.Breakers(provider, name, "AsyncBreakerTransport", "host:port")
        self._name = _common.namer(name, default_name, "AsyncBreakerTransport")
        self._failure_if = failure_if if failure_if is not None else server_error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through the wrapped transport if its breaker admits it."""
        brk = self._breakers.get(self._name(request))
        if brk is None:
            return await self._transport.handle_async_request(request)
        call = await _admit_async(brk, request)
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException as exc:
            call.settle(exc)
            raise
        failed = _judge(self._failure_if, response)
        stream = response.stream
        if isinstance(stream, httpx.AsyncByteStream) and not isinstance(stream, httpx.ByteStream):
            response.stream = _AsyncBody(stream, call, failed)
        else:  # the whole body is here already (or a stream that httpx's client refuses)
            call.settle(failed=failed)
        return response

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._transport.aclose()

    async def __aenter__(self: _A) -> _A:
        await self._transport.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self._transport.__aexit__(exc_type, exc_value, traceback)
