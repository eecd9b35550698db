"""The ways in: the ``@circuit`` decorator (on wrapt) and the ``guard`` context manager.

Both follow the engine's call protocol (`Breaker._admit`, then `Breaker._settle`), with
the closed breaker's fast path inlined as in `Breaker.do`.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from breaker import _default
from breaker._engine import Breaker, Exclusions, Ticket, exclusions
from breaker._exceptions import BreakerOpenError
from breaker._names import check_name

if TYPE_CHECKING:
    from breaker._provider import Provider

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
ExcludeItem = type[BaseException] | Callable[[BaseException], bool]
FailureIf = Callable[[Any], object]

_log = logging.getLogger("breaker")


class CircuitDecorator(Protocol[P, R]):
    """What ``circuit(..., fallback=f)`` returns: it guards functions whose parameters f takes.

    An ``async def`` may have a plain fallback that returns what it would have awaited.
    """

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R]: ...


class _FromDefault:
    """The breaker of a decorator bound to whichever provider is the default at call time.

    Integrations whose breaker names vary per call use `provider` alone.
    """

    __slots__ = ("_cached", "_name", "_warned")

    def __init__(self, name: str) -> None:
        self._name = name
        self._cached: tuple[Provider | None, Breaker | None] = (None, None)
        self._warned = False

    def get(self) -> Breaker | None:
        provider = _default.current
        cached = self._cached
        if cached[0] is provider and provider is not None:
            return cached[1]
        provider = self.provider()
        if provider is None:
            return None
        brk = provider.get_breaker(self._name)
        self._cached = (provider, brk)
        return brk

    def provider(self) -> Provider | None:
        """Return the current default provider; warn once when there is none."""
        provider = _default.current
        if provider is None and not self._warned:
            self._warned = True
            _log.warning(
                "breaker %r: no default provider is set (breaker.set_default_provider); "
                "calls run unguarded",
                self._name,
            )
        return provider


@overload
def circuit(
    name: str,
    *,
    provider: Provider | None = None,
    exclude: Iterable[ExcludeItem] = (),
    fallback: None = None,
    failure_if: FailureIf | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


@overload
def circuit(  # type: ignore[overload-overlap]
    name: str,
    *,
    provider: Provider | None = None,
    exclude: Iterable[ExcludeItem] = (),
    fallback: Callable[Concatenate[Exception, P], Awaitable[T]],
    failure_if: FailureIf | None = None,
) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]: ...


@overload
def circuit(
    name: str,
    *,
    provider: Provider | None = None,
    exclude: Iterable[ExcludeItem] = (),
    fallback: Callable[Concatenate[Exception, P], R],
    failure_if: FailureIf | None = None,
) -> CircuitDecorator[P, R]: ...


def circuit(
    name: str,
    *,
    provider: Provider | None = None,
    exclude: Iterable[ExcludeItem] = (),
    fallback: Callable[..., Any] | None = None,
    failure_if: FailureIf | None = None,
) -> Any:
    """Guard a function, method or ``async def`` with the breaker ``name``.

    Without ``provider`` the default provider (`set_default_provider`) is looked up at
    call time, so functions can be decorated at import time; with none set, calls run
    unguarded (a warning is logged once). ``exclude`` lists exception types or
    predicates that count as success and propagate. ``failure_if(result)`` judges a
    returned value: a result it calls a failure counts as one and is still returned.
    ``fallback(exc, *args, **kwargs)`` receives what the function received (``self``
    included for methods) and its result is returned instead of raising when the call
    fails with an error or is rejected.
    """
    check_name(name, "circuit")
    excl = exclusions(exclude)
    if fallback is not None and not callable(fallback):
        raise TypeError(f"circuit: fallback must be callable, got {fallback!r}")
    if failure_if is not None and not callable(failure_if):
        raise TypeError(f"circuit: failure_if must be callable, got {failure_if!r}")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        inner = getattr(fn, "__func__", fn)
        if not callable(inner):
            raise TypeError(f"circuit: cannot decorate {fn!r}")
        if inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner):
            raise TypeError(
                f"circuit: {inner.__qualname__} is a generator function; its body runs "
                "after the call returns, so guard the code that consumes it instead"
            )
        fixed = provider.get_breaker(name) if provider is not None else None
        lookup = None if provider is not None else _FromDefault(name)
        label = getattr(inner, "__qualname__", repr(inner))
        if inspect.iscoroutinefunction(inner):
            wrapper = _async_wrapper(fixed, lookup, excl, fallback, failure_if)
        else:
            wrapper = _sync_wrapper(fixed, lookup, excl, fallback, failure_if, label)
        import wrapt  # here, not at the top: importing wrapt costs more than the rest of breaker

        wrapped: Callable[P, R] = wrapt.FunctionWrapper(_stand_in(fn), wrapper)
        return wrapped

    return decorate


def _stand_in(fn: Any) -> Any:
    """Return what wrapt should wrap: for a plain function, a copy that has ``__self__``.

    wrapt's C wrapper looks up ``__self__`` on a plain function at every call, to spot
    bound methods, and pays for raising and clearing an AttributeError (about 300 ns,
    more than the rest of a guarded call). A copy carrying ``__self__ = None`` answers at
    once. It shares the function's code, globals, closure and defaults, and its
    ``__wrapped__`` is the user's function, which stays untouched: ``inspect.unwrap``
    and ``inspect.signature`` reach it.
    """
    if type(fn) is not types.FunctionType or "__self__" in fn.__dict__:
        return fn
    copy = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__
    )
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__ = fn.__qualname__
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    copy.__annotations__ = fn.__annotations__
    if hasattr(fn, "__type_params__"):  # Python 3.12+
        setattr(copy, "__type_params__", fn.__type_params__)  # noqa: B010
    copy.__dict__.update(fn.__dict__)
    copy.__wrapped__ = fn  # type: ignore[attr-defined]
    copy.__self__ = None  # type: ignore[attr-defined]
    return copy


def _fallback_args(instance: object, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return args if instance is None else (instance, *args)


def _judge(failure_if: FailureIf, result: object) -> bool:
    """Return whether ``failure_if`` calls ``result`` a failure; one that raises says yes."""
    try:
        return bool(failure_if(result))
    except Exception:
        _log.exception("failure_if %r raised; counting the call as a failure", failure_if)
        return True


def _sync_wrapper(
    fixed: Breaker | None,
    lookup: _FromDefault | None,
    excl: Exclusions | None,
    fallback: Callable[..., Any] | None,
    failure_if: FailureIf | None,
    label: str,
) -> Callable[..., Any]:
    checked = False

    def call(wrapped: Callable[..., Any], instance: object, args: Any, kwargs: Any) -> Any:
        nonlocal checked
        brk = fixed
        if brk is None:
            brk = lookup.get()  # type: ignore[union-attr]
            if brk is None:
                return wrapped(*args, **kwargs)
        era = brk._fast
        ticket: Ticket
        if era is not None:
            ticket = era
        elif fallback is None:
            ticket = brk._admit()
        else:
            try:
                ticket = brk._admit()
            except BreakerOpenError as exc:
                return fallback(exc, *_fallback_args(instance, args), **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            if brk._settle(ticket, exc, False, excl) and fallback is not None:
                return fallback(exc, *_fallback_args(instance, args), **kwargs)
            raise
        failed = False if failure_if is None else _judge(failure_if, result)
        if not checked:
            checked = True
            if inspect.isawaitable(result):
                _log.warning(
                    "breaker %r: %s returned an awaitable, but it is guarded as a plain "
                    "function, so failures of the awaited work are not counted; define it "
                    "with async def",
                    brk.name,
                    label,
                )
        if ticket is era and not failed:
            brk._left -= 1
            if brk._left <= 0:
                brk._spent(ticket)
        else:
            brk._settle(ticket, None, failed, excl)
        return result

    return call


def _async_wrapper(
    fixed: Breaker | None,
    lookup: _FromDefault | None,
    excl: Exclusions | None,
    fallback: Callable[..., Any] | None,
    failure_if: FailureIf | None,
) -> Callable[..., Any]:
    async def call(wrapped: Callable[..., Any], instance: object, args: Any, kwargs: Any) -> Any:
        brk = fixed
        if brk is None:
            brk = lookup.get()  # type: ignore[union-attr]
            if brk is None:
                return await wrapped(*args, **kwargs)
        era = brk._fast
        ticket: Ticket
        if era is not None:
            ticket = era
        elif fallback is None:
            ticket = brk._admit()
        else:
            try:
                ticket = brk._admit()
            except BreakerOpenError as exc:
                return await _maybe_await(fallback(exc, *_fallback_args(instance, args), **kwargs))
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            if brk._settle(ticket, exc, False, excl) and fallback is not None:
                return await _maybe_await(fallback(exc, *_fallback_args(instance, args), **kwargs))
            raise
        failed = False if failure_if is None else _judge(failure_if, result)
        if ticket is era and not failed:
            brk._left -= 1
            if brk._left <= 0:
                brk._spent(ticket)
        else:
            brk._settle(ticket, None, failed, excl)
        return result

    return call


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class Guard:
    """Guard a block with a breaker: ``with provider.guard("payments") as call:`` or ``async with``.

    Entering raises `BreakerOpenError` when the breaker rejects the call; leaving records
    the block's outcome. ``call.record_failure()`` marks a block that raised nothing as
    failed (after reading a 503 status, say). A guard is single-use: call ``guard()`` for
    each block.
    """

    __slots__ = ("_breaker", "_exclude", "_failed", "_state", "_ticket")

    def __init__(self, breaker: Breaker, exclude: Iterable[ExcludeItem] = ()) -> None:
        self._breaker = breaker
        self._exclude = exclusions(exclude)
        self._ticket: Ticket | None = None
        self._failed = False
        self._state = 0  # 0 new, 1 entered, 2 done

    @property
    def breaker(self) -> Breaker:
        """Return the breaker that guards the block."""
        return self._breaker

    def record_failure(self) -> None:
        """Count the block as failed even if it raises nothing; it still completes normally."""
        self._failed = True

    def __enter__(self) -> Guard:
        if self._state:
            raise RuntimeError("a guard is single-use; call guard() again for each block")
        self._ticket = self._breaker._admit()
        self._state = 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != 1:
            return
        self._state = 2
        ticket, self._ticket = self._ticket, None
        self._breaker._settle(ticket, exc, self._failed, self._exclude)  # type: ignore[arg-type]

    async def __aenter__(self) -> Guard:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
