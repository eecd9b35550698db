"""The ways in: the ``@circuit`` decorator (on wrapt) and the ``guard`` context manager."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import wrapt

from breaker._engine import _CLOSED, Breaker, Exclusions, exclusions
from breaker._exceptions import BreakerOpenError

if TYPE_CHECKING:
    from breaker._provider import Provider

P = ParamSpec("P")
R = TypeVar("R")
ExcludeItem = type[BaseException] | Callable[[BaseException], bool]
Fallback = Callable[..., Any]

_log = logging.getLogger("breaker")
_default_provider: Provider | None = None


def set_default_provider(provider: Provider | None) -> None:
    """Make ``provider`` the one that ``breaker.circuit`` uses when given none; None clears it."""
    global _default_provider
    _default_provider = provider


class _Fixed:
    """The breaker of a decorator bound to a provider."""

    __slots__ = ("breaker",)

    def __init__(self, breaker: Breaker) -> None:
        self.breaker = breaker

    def get(self) -> Breaker | None:
        return self.breaker


class _FromDefault:
    """The breaker of a decorator bound to whichever provider is the default at call time."""

    __slots__ = ("_cached", "_name", "_warned")

    def __init__(self, name: str) -> None:
        self._name = name
        self._cached: tuple[Provider | None, Breaker | None] = (None, None)
        self._warned = False

    def get(self) -> Breaker | None:
        provider = _default_provider
        cached = self._cached
        if cached[0] is provider and provider is not None:
            return cached[1]
        if provider is None:
            if not self._warned:
                self._warned = True
                _log.warning(
                    "breaker %r: no default provider is set (breaker.set_default_provider); "
                    "calls run unguarded",
                    self._name,
                )
            return None
        brk = provider.get_breaker(self._name)
        self._cached = (provider, brk)
        return brk


def circuit(
    name: str,
    *,
    provider: Provider | None = None,
    exclude: Iterable[ExcludeItem] = (),
    fallback: Fallback | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Guard a function, method or ``async def`` with the breaker ``name``.

    Without ``provider`` the default provider (`set_default_provider`) is looked up at
    call time, so functions can be decorated at import time; with none set, calls run
    unguarded (a warning is logged once). ``exclude`` lists exception types or
    predicates that count as success and propagate. ``fallback(exc, *args, **kwargs)``
    receives what the function received (``self`` included for methods) and its result
    is returned instead of raising when the call fails or is rejected.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"circuit: a breaker name must be a non-empty string, got {name!r}")
    excl = exclusions(exclude)
    if fallback is not None and not callable(fallback):
        raise TypeError(f"circuit: fallback must be callable, got {fallback!r}")

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        inner = getattr(fn, "__func__", fn)
        if not callable(inner):
            raise TypeError(f"circuit: cannot decorate {fn!r}")
        if inspect.isgeneratorfunction(inner) or inspect.isasyncgenfunction(inner):
            raise TypeError(
                f"circuit: {inner.__qualname__} is a generator function; its body runs "
                "after the call returns, so guard the code that consumes it instead"
            )
        target: _Fixed | _FromDefault
        if provider is not None:
            target = _Fixed(provider.get_breaker(name))
        else:
            target = _FromDefault(name)
        if inspect.iscoroutinefunction(inner):
            wrapper = _async_wrapper(target, excl, fallback)
        else:
            wrapper = _sync_wrapper(target, excl, fallback)
        wrapped: Callable[P, R] = wrapt.FunctionWrapper(fn, wrapper)
        return wrapped

    return decorate


def _fallback_args(instance: object, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return args if instance is None else (instance, *args)


def _sync_wrapper(
    target: _Fixed | _FromDefault, excl: Exclusions | None, fallback: Fallback | None
) -> Callable[..., Any]:
    # The hot path of every guarded call: admission is inlined (closed needs no lock).
    def call(wrapped: Callable[..., Any], instance: object, args: Any, kwargs: Any) -> Any:
        brk = target.get()
        if brk is None:
            return wrapped(*args, **kwargs)
        era = brk._st.era
        if era.state is not _CLOSED:
            if fallback is None:
                era = brk._admit_slow()
            else:
                try:
                    era = brk._admit_slow()
                except BreakerOpenError as exc:
                    return fallback(exc, *_fallback_args(instance, args), **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except Exception as exc:
            if brk._failed(era, exc, excl) and fallback is not None:
                return fallback(exc, *_fallback_args(instance, args), **kwargs)
            raise
        except BaseException:
            brk._aborted(era)
            raise
        if era.state is not _CLOSED or brk._st.failures:
            brk._succeeded(era)
        return result

    return call


def _async_wrapper(
    target: _Fixed | _FromDefault, excl: Exclusions | None, fallback: Fallback | None
) -> Callable[..., Any]:
    async def call(wrapped: Callable[..., Any], instance: object, args: Any, kwargs: Any) -> Any:
        brk = target.get()
        if brk is None:
            return await wrapped(*args, **kwargs)
        era = brk._st.era
        if era.state is not _CLOSED:
            if fallback is None:
                era = brk._admit_slow()
            else:
                try:
                    era = brk._admit_slow()
                except BreakerOpenError as exc:
                    fallen = fallback(exc, *_fallback_args(instance, args), **kwargs)
                    return await _maybe_await(fallen)
        try:
            result = await wrapped(*args, **kwargs)
        except Exception as exc:
            if brk._failed(era, exc, excl) and fallback is not None:
                return await _maybe_await(fallback(exc, *_fallback_args(instance, args), **kwargs))
            raise
        except BaseException:
            brk._aborted(era)
            raise
        brk._succeeded(era)
        return result

    return call


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class Guard:
    """Guard a block with a breaker: ``with provider.guard("payments"):`` or ``async with``.

    Entering raises `BreakerOpenError` when the breaker rejects the call; leaving records
    the block's outcome. A guard is single-use: call ``guard()`` for each block.
    """

    __slots__ = ("_breaker", "_era", "_exclude", "_state")

    def __init__(self, breaker: Breaker, exclude: Iterable[ExcludeItem] = ()) -> None:
        self._breaker = breaker
        self._exclude = exclusions(exclude)
        self._era: Any = None
        self._state = 0  # 0 new, 1 entered, 2 done

    def __enter__(self) -> Breaker:
        if self._state:
            raise RuntimeError("a guard is single-use; call guard() again for each block")
        self._era = self._breaker._admit()
        self._state = 1
        return self._breaker

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._state != 1:
            return
        self._state = 2
        era, self._era = self._era, None
        if exc is None:
            self._breaker._succeeded(era)
        elif isinstance(exc, Exception):
            self._breaker._failed(era, exc, self._exclude)
        else:
            self._breaker._aborted(era)

    async def __aenter__(self) -> Breaker:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
