"""gRPC client interceptors that guard every call with a breaker, for grpc and grpc.aio.

::

    channel = insecure_channel("users.internal:50051", provider=provider)
    channel = grpc.intercept_channel(
        grpc.insecure_channel(target), BreakerInterceptor(target=target, provider=provider)
    )
    channel = grpc.aio.insecure_channel(
        target, interceptors=aio_interceptors(target=target, provider=provider)
    )

Names
    An interceptor is not told the target of its channel, so it takes ``target=``: the
    target the channel was built with (`insecure_channel`, `secure_channel` and their
    ``aio_`` twins build the channel and pass it for you). One breaker per target and
    method by default, named by `default_name`: ``grpc:users.internal:50051/pkg.Users/Get``,
    whose policy is ``<policies_path>grpc:users.internal:50051/pkg.Users/Get.json``, so
    a dead replica never trips the breaker of a healthy one. ``name="user-service"``
    puts every call through the interceptor under one breaker, and a function of the
    method name chooses per call; give several channels' interceptors the same ``name``
    to share breakers across targets (``name=lambda method: method``: one per method
    whatever the target). One of ``target`` and ``name`` is required.
What counts
    A call that ends with a status in ``failure_codes`` counts as a failure; by
    default `FAILURE_CODES`: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
    INTERNAL and UNKNOWN. Any other status is a success: the server answered
    (NOT_FOUND, INVALID_ARGUMENT, ...). A call the client cancels is neither.
When it counts
    When the call completes: a blocking call when it returns or raises; a
    ``.future()`` when the future is done; a response stream when the RPC ends,
    that is once the stream is read to its end, fails, or is cancelled (dropping
    the iterator cancels it; a stream left open and unread holds its verdict, and a
    half-open breaker's trial slot, until it ends).
Rejections
    The call never starts. With ``grpc``, `BreakerOpenRpcError` stands in for the
    call: blocking calls raise it, ``.future()`` returns it already done (``result()``
    raises it, ``exception()`` returns it), response streams raise it when read.
    With ``grpc.aio``, `BreakerOpenAioRpcError` is raised where the call is awaited
    or read. Both are a `breaker.BreakerOpenError` and a ``grpc.RpcError`` with
    ``code()`` UNAVAILABLE and ``details()`` naming the breaker, so existing
    ``except grpc.RpcError`` clauses catch them. With ``maxConcurrentCalls`` reached,
    `BulkheadFullRpcError` and `BulkheadFullAioRpcError` do the same with ``code()``
    RESOURCE_EXHAUSTED (they are `breaker.BulkheadFullError`); an aio call waits for a
    slot without blocking its event loop.
Deadline
    A policy's ``timeout`` becomes the call's deadline where the caller set a longer one
    or none: an operator shortens a client's deadline from Consul, without a deploy.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, ClassVar, NoReturn

from breaker.integrations import _common

try:
    import grpc
    import grpc.aio
except ImportError as _exc:  # pragma: no cover - depends on what is installed
    raise _common.missing("grpc", "grpcio", "grpc") from _exc

from breaker._engine import Breaker
from breaker._exceptions import BreakerOpenError, BulkheadFullError, RejectedError
from breaker._provider import Provider
from breaker._state import Mode, State

__all__ = [
    "FAILURE_CODES",
    "BreakerInterceptor",
    "BreakerOpenAioRpcError",
    "BreakerOpenRpcError",
    "BulkheadFullAioRpcError",
    "BulkheadFullRpcError",
    "aio_insecure_channel",
    "aio_interceptors",
    "aio_secure_channel",
    "default_name",
    "insecure_channel",
    "secure_channel",
]

FAILURE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
"""The status codes that count as failures unless ``failure_codes`` says otherwise."""

_Name = str | Callable[[str], str] | None
_Options = Sequence[tuple[str, Any]] | None
_DNS = re.compile(r"dns:(//[^/]*/)?")


def default_name(target: str, method: str) -> str:
    """Return the default breaker name of a call: ``grpc:<target>/<method>``.

    The target is the channel's, less gRPC's default ``dns:`` scheme and its authority
    (``dns:///users:50051`` names ``users:50051``), with runs of ``/`` made one (a
    policy key holds no ``//``); the method loses its leading ``/``:
    ``default_name("users:50051", "/pkg.Users/Get") == "grpc:users:50051/pkg.Users/Get"``.
    """
    return _prefix(target) + method.lstrip("/")


def _prefix(target: str) -> str:
    return "grpc:" + re.sub("/{2,}", "/", _DNS.sub("", target.strip(), count=1)) + "/"


def _args(
    name: str, state: State, retry_after: float, mode: Mode | None
) -> tuple[str, State, float] | tuple[str, State, float, Mode]:
    return (name, state, retry_after) if mode is None else (name, state, retry_after, mode)


class _RejectedCall(grpc.RpcError, grpc.Call, grpc.Future):  # type: ignore[type-arg]
    """A call that never ran, as grpc's own failed calls look: an error, a call, a done future."""

    def code(self) -> grpc.StatusCode:
        """Return UNAVAILABLE: the downstream is treated as unavailable, and the call never ran."""
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        """Return which breaker rejected the call and when it admits a trial call again."""
        return str(self)

    def debug_error_string(self) -> str:
        """Return the same text as `details`."""
        return str(self)

    def initial_metadata(self) -> tuple[Any, ...]:
        """Return no metadata: nothing reached the server."""
        return ()

    def trailing_metadata(self) -> tuple[Any, ...]:
        """Return no metadata: nothing reached the server."""
        return ()

    def is_active(self) -> bool:
        """Return False: the call is over."""
        return False

    def time_remaining(self) -> float | None:  # type: ignore[override]
        """Return None, as grpc does for a call without a deadline: this one is over."""
        return None

    def cancel(self) -> bool:
        """Return False: a call that is over cannot be cancelled."""
        return False

    def cancelled(self) -> bool:
        """Return False: the call was rejected, not cancelled."""
        return False

    def running(self) -> bool:
        """Return False: the call is over."""
        return False

    def done(self) -> bool:
        """Return True: the call is over."""
        return True

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Return False without registering ``callback``: the call is over."""
        return False

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(self)`` now: the call is already done."""
        fn(self)

    def result(self, timeout: float | None = None) -> NoReturn:
        """Raise this error, as a failed call's future does."""
        raise self

    def exception(self, timeout: float | None = None) -> _RejectedCall:
        """Return this error, as a failed call's future does."""
        return self

    def traceback(self, timeout: float | None = None) -> TracebackType | None:
        """Return the traceback of this error (None until it was raised)."""
        return self.__traceback__

    def __iter__(self) -> _RejectedCall:
        return self

    def __next__(self) -> NoReturn:
        raise self


class BreakerOpenRpcError(BreakerOpenError, _RejectedCall):
    """Stand in for a call that a breaker rejected: a `breaker.BreakerOpenError` and a failed RPC.

    It is a ``grpc.RpcError``, a ``grpc.Call`` and a ``grpc.Future`` that is already
    done, as grpc's own failed calls are: ``code()`` is UNAVAILABLE, ``details()`` names
    the breaker, ``result()`` raises it; iterating it as a response stream raises it.
    """


class BulkheadFullRpcError(BulkheadFullError, _RejectedCall):
    """Stand in for a call turned away by ``maxConcurrentCalls``: a failed RPC that never ran.

    As `BreakerOpenRpcError`, with ``code()`` RESOURCE_EXHAUSTED.
    """

    def code(self) -> grpc.StatusCode:
        """Return RESOURCE_EXHAUSTED: this client has too many calls in flight."""
        return grpc.StatusCode.RESOURCE_EXHAUSTED


class BreakerOpenAioRpcError(BreakerOpenError, grpc.aio.AioRpcError):
    """Raise when a breaker rejects a ``grpc.aio`` call: a `breaker.BreakerOpenError`, an RPC error.

    ``code()`` is UNAVAILABLE and ``details()`` names the breaker.
    """

    def __init__(
        self, name: str, state: State, retry_after: float, mode: Mode | None = None, /
    ) -> None:
        grpc.aio.AioRpcError.__init__(
            self, grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata()
        )
        self.args = _args(name, state, retry_after, mode)

    def details(self) -> str:
        """Return which breaker rejected the call and when it admits a trial call again."""
        return str(self)

    def debug_error_string(self) -> str:
        """Return the same text as `details`."""
        return str(self)

    def __reduce__(self) -> tuple[type[BreakerOpenAioRpcError], tuple[Any, ...]]:
        return type(self), self.args


class BulkheadFullAioRpcError(BulkheadFullError, grpc.aio.AioRpcError):
    """Raise when ``maxConcurrentCalls`` turns a ``grpc.aio`` call away: RESOURCE_EXHAUSTED."""

    def __init__(self, name: str, limit: int, waited: float, /) -> None:
        grpc.aio.AioRpcError.__init__(
            self, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.aio.Metadata(), grpc.aio.Metadata()
        )
        self.args = (name, limit, waited)

    def details(self) -> str:
        """Return which breaker turned the call away, and its limit."""
        return str(self)

    def debug_error_string(self) -> str:
        """Return the same text as `details`."""
        return str(self)

    def __reduce__(self) -> tuple[type[BulkheadFullAioRpcError], tuple[Any, ...]]:
        return type(self), self.args


def _deadline(brk: Breaker, details: Any) -> Any:
    """Return the call details with the policy's timeout as deadline where it is tighter."""
    timeout = _common.request_timeout(brk, details.timeout)
    if timeout == details.timeout:
        return details
    return details._replace(timeout=timeout)


class _Rules:
    """How an interceptor names breakers and judges finished calls."""

    __slots__ = ("_breakers", "_failure_codes", "_name")

    def __init__(
        self,
        target: str | None,
        provider: Provider | None,
        name: _Name,
        failure_codes: Iterable[grpc.StatusCode],
        what: str,
    ) -> None:
        if name is None:
            if not isinstance(target, str) or not target.strip():
                raise TypeError(
                    f"{what}: pass target= (the target the channel was built with), or "
                    f"name= to choose breaker names yourself; got target={target!r}"
                )
            prefix = _prefix(target)
            _common.check_name(prefix + "method", what)  # a target no policy key can hold

            def per_target(method: str) -> str:
                return prefix + method.lstrip("/")

            self._name: Callable[[str], str] = per_target
            per = "target and method"
        else:
            self._name = _common.namer(name, _method, what)
            per = "method"
        self._breakers = _common.Breakers(provider, name, what, per)
        self._failure_codes = frozenset(failure_codes)
        for code in self._failure_codes:
            if not isinstance(code, grpc.StatusCode):
                raise TypeError(f"{what}: failure_codes must be grpc.StatusCode, got {code!r}")

    def breaker(self, details: Any) -> Breaker | None:
        method = details.method
        if isinstance(method, bytes):  # grpc.aio passes the method as bytes
            method = method.decode()
        return self._breakers.get(self._name(method))

    def settle(self, call: _common.Call, cancelled: bool, code: grpc.StatusCode | None) -> None:
        """Record a finished call: cancelled by the client, or ended with ``code``."""
        if cancelled:
            call.cancel()
        else:
            call.settle(failed=code in self._failure_codes)


def _method(method: str) -> str:
    return method


class BreakerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Guard each call on a ``grpc`` channel with a breaker: ``grpc.intercept_channel(ch, it)``.

    ``target`` is the channel's target, which names the breakers (see `default_name`);
    ``name`` names them instead. Without ``provider`` the default provider is looked up
    at each call (with none set, calls run unguarded and a warning is logged once).
    ``failure_codes`` are the status codes that count as failures (default
    `FAILURE_CODES`).
    """

    def __init__(
        self,
        *,
        target: str | None = None,
        provider: Provider | None = None,
        name: _Name = None,
        failure_codes: Iterable[grpc.StatusCode] = FAILURE_CODES,
    ) -> None:
        self._rules = _Rules(target, provider, name, failure_codes, "BreakerInterceptor")

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """Guard a unary-unary call: blocking, ``with_call`` or ``future``."""
        return self._intercept(continuation, client_call_details, request)

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """Guard a unary-stream call until its response stream ends."""
        return self._intercept(continuation, client_call_details, request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Guard a stream-unary call: blocking, ``with_call`` or ``future``."""
        return self._intercept(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """Guard a stream-stream call until its response stream ends."""
        return self._intercept(continuation, client_call_details, request_iterator)

    def _intercept(self, continuation: Any, details: Any, request: Any) -> Any:
        rules = self._rules
        brk = rules.breaker(details)
        if brk is None:
            return continuation(details, request)
        try:
            pending = _common.Call.admit(brk)
        except BulkheadFullError as exc:
            return BulkheadFullRpcError(*exc.args)
        except RejectedError as exc:
            return BreakerOpenRpcError(*exc.args)
        details = _deadline(brk, details)
        try:
            call = continuation(details, request)
        except BaseException as exc:
            pending.settle(exc)
            raise

        def done(call: Any) -> None:
            rules.settle(pending, call.cancelled(), call.code())

        # Blocking calls are complete here and report at once; futures and streams later.
        call.add_done_callback(done)
        return call


class _AioInterceptor:
    """What the four ``grpc.aio`` interceptors share: one breaker protocol for any arity."""

    # The tasks that wait for calls to finish, kept so that they are not collected.
    _waiting: ClassVar[set[asyncio.Task[None]]] = set()

    def __init__(self, rules: _Rules) -> None:
        self._rules = rules

    async def _intercept(self, continuation: Any, details: Any, request: Any) -> Any:
        brk = self._rules.breaker(details)
        if brk is None:
            return await continuation(details, request)
        try:
            pending = await _common.Call.admit_async(brk)
        except BulkheadFullError as exc:
            raise BulkheadFullAioRpcError(*exc.args) from None
        except RejectedError as exc:
            raise BreakerOpenAioRpcError(*exc.args) from None
        details = _deadline(brk, details)
        try:
            call = await continuation(details, request)
        except BaseException as exc:
            pending.settle(exc)
            raise
        # An aio call's status is only available to a coroutine, so a task waits for it.
        task = asyncio.get_running_loop().create_task(self._settle(pending, call))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)
        return call

    async def _settle(self, pending: _common.Call, call: Any) -> None:
        try:
            code = await call.code()
        except BaseException as exc:  # the loop is shutting down: cancelled
            pending.settle(exc)
            raise
        self._rules.settle(pending, call.cancelled(), code)


class _AioUnaryUnary(_AioInterceptor, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)


class _AioUnaryStream(_AioInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)


class _AioStreamUnary(_AioInterceptor, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request_iterator)


class _AioStreamStream(_AioInterceptor, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request_iterator)


def aio_interceptors(
    *,
    target: str | None = None,
    provider: Provider | None = None,
    name: _Name = None,
    failure_codes: Iterable[grpc.StatusCode] = FAILURE_CODES,
) -> list[grpc.aio.ClientInterceptor]:
    """Return interceptors that guard every kind of ``grpc.aio`` call, for ``interceptors=``.

    ``grpc.aio`` gives each interceptor object one kind of call, so there are four,
    sharing one configuration; the arguments are those of `BreakerInterceptor`.
    """
    rules = _Rules(target, provider, name, failure_codes, "aio_interceptors")
    return [
        _AioUnaryUnary(rules),
        _AioUnaryStream(rules),
        _AioStreamUnary(rules),
        _AioStreamStream(rules),
    ]


def insecure_channel(
    target: str,
    *,
    provider: Provider | None = None,
    name: _Name = None,
    failure_codes: Iterable[grpc.StatusCode] = FAILURE_CODES,
    options: _Options = None,
    compression: grpc.Compression | None = None,
) -> grpc.Channel:
    """Return ``grpc.insecure_channel(target, ...)`` guarded by a `BreakerInterceptor` for it."""
    channel = grpc.insecure_channel(target, options, compression)
    interceptor = BreakerInterceptor(
        target=target, provider=provider, name=name, failure_codes=failure_codes
    )
    return grpc.intercept_channel(channel, interceptor)


def secure_channel(
    target: str,
    credentials: grpc.ChannelCredentials,
    *,
    provider: Provider | None = None,
    name: _Name = None,
    failure_codes: Iterable[grpc.StatusCode] = FAILURE_CODES,
    options: _Options = None,
    compression: grpc.Compression | None = None,
) -> grpc.Channel:
    """Return ``grpc.secure_channel(target, credentials, ...)`` with a `BreakerInterceptor`."""
    channel = grpc.secure_channel(target, credentials, options, compression)
    interceptor = BreakerInterceptor(
        target=target, provider=provider, name=name, failure_codes=failure_codes
    )
    return grpc.intercept_channel(channel, interceptor)


def aio_insecure_channel(
    target: str,
    *,
    provider: Provider | None = None,
    name: _Name = None,
    failure_codes: Iterable[grpc.StatusCode] = FAILURE_CODES,
    options: _Options = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """Return ``grpc.aio.insecure_channel(target, ...)`` guarded by `aio_interceptors` for it.

    ``interceptors`` run inside the breaker's: it counts what they end with.
    """
    guards = aio_interceptors(
        target=target, provider=provider, name=name, failure_codes=failure_codes
    )
    return grpc.aio.insecure_channel(target, options, compression, [*guards, *interceptors])


def aio_secure_channel(
    target: str,
    credentials: grpc.ChannelCredentials,
    *,
    provider: Provider | None = None,
    name: _Name = None,
    failure_codes: Iterable[grpc.StatusCode] = FAILURE_CODES,
    options: _Options = None,
    compression: grpc.Compression | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """Return ``grpc.aio.secure_channel(target, credentials, ...)`` guarded by `aio_interceptors`.

    ``interceptors`` run inside the breaker's: it counts what they end with.
    """
    guards = aio_interceptors(
        target=target, provider=provider, name=name, failure_codes=failure_codes
    )
    return grpc.aio.secure_channel(
        target, credentials, options, compression, [*guards, *interceptors]
    )
