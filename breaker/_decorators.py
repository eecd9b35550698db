"""The ``@circuit`` decorator, on wrapt, for functions, methods and ``async def``.

The guarded call is the engine's fast path (`breaker._engine._paths`), compiled for the
decorator's options. A plain function becomes a wrapt ``FunctionWrapper``; in a class
body it also installs, when the class is created, a plain function running the same fast
path, so a method binds as cheaply as any Python method does (wrapt would make a bound
wrapper on every attribute access).
"""

from __future__ import annotations

import functools
import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, overload

from breaker import _default
from breaker._engine import Breaker, exclusions
from breaker._engine._paths import wrapper_factory
from breaker._names import check_name

if TYPE_CHECKING:
    from breaker._provider import Provider

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
R_co = TypeVar("R_co", covariant=True)
ExcludeItem = type[BaseException] | Callable[[BaseException], bool]
FailureIf = Callable[[Any], object]

_log = logging.getLogger("breaker")


class Fallback(Protocol[R_co]):
    """A fallback: called as ``fallback(exc, *args, **kwargs)`` with what the function got.

    Only the error is typed here: a type checker meets the fallback before the function,
    so the function's own signature (never the fallback's) is what the decorated
    function keeps.
    """

    def __call__(self, exc: Exception, /, *args: Any, **kwargs: Any) -> R_co: ...


class CircuitDecorator(Protocol[R_co]):
    """What ``circuit(..., fallback=f)`` returns: f's result joins the function's result type.

    An ``async def`` may have a plain fallback that returns what it would have awaited.
    """

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R | R_co]]: ...

    @overload
    def __call__(self, fn: Callable[P, R], /) -> Callable[P, R | R_co]: ...


class AsyncCircuitDecorator(Protocol[R_co]):
    """What ``circuit(..., fallback=f)`` returns for an ``async def`` f: it guards ``async def``."""

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]], /
    ) -> Callable[P, Coroutine[Any, Any, R | R_co]]: ...


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
    fallback: Fallback[Awaitable[T]],
    failure_if: FailureIf | None = None,
) -> AsyncCircuitDecorator[T]: ...


@overload
def circuit(
    name: str,
    *,
    provider: Provider | None = None,
    exclude: Iterable[ExcludeItem] = (),
    fallback: Fallback[R],
    failure_if: FailureIf | None = None,
) -> CircuitDecorator[R]: ...


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
        if fallback is not None:
            _check_fallback(fallback, inner, label)
        is_async = inspect.iscoroutinefunction(inner)

        def build(shape: str, target: Callable[..., Any]) -> Callable[..., Any]:
            make = wrapper_factory(
                shape,
                is_async=is_async,
                lookup=lookup is not None,
                fallback=fallback is not None,
                failure_if=failure_if is not None,
                warn=not is_async,
            )
            warn = None if is_async else _awaitable_warning(name, label)
            return make(fixed, lookup, target, excl, fallback, failure_if, warn)  # type: ignore[no-any-return]

        wrapped: Callable[P, R] = _wrapper_class()(_stand_in(fn), build("wrapt", fn))
        if type(fn) is types.FunctionType:  # may be a method: bind it as functions bind
            wrapped._self_method = lambda: functools.update_wrapper(build("closure", fn), fn)  # type: ignore[attr-defined]
        return wrapped

    return decorate


@functools.cache
def _wrapper_class() -> type[Any]:
    """Return the wrapt wrapper class (made on first use: importing wrapt is not free)."""
    import wrapt

    class CircuitWrapper(wrapt.FunctionWrapper):  # type: ignore[type-arg]
        """A guarded callable; in a class body, a method that binds as functions do."""

        _self_method: Callable[[], Callable[..., Any]] | None = None

        def __set_name__(self, owner: type, name: str) -> None:
            method = self._self_method
            if method is not None:
                setattr(owner, name, method())
            else:  # a descriptor wrapt binds: let it know its name, as it would be told
                hook = getattr(type(self.__wrapped__), "__set_name__", None)
                if hook is not None:
                    hook(self.__wrapped__, owner, name)

    return CircuitWrapper


def _check_fallback(fallback: Callable[..., Any], fn: Callable[..., Any], label: str) -> None:
    """Refuse a fallback that cannot take ``(exc, *args, **kwargs)`` as ``fn`` is called.

    Type checkers meet the fallback before the function and cannot relate the two, so
    the decorator checks once, where a mistake would otherwise surface in an outage.
    """
    try:
        given, taken = inspect.signature(fallback), inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        return
    kinds = inspect.Parameter
    params = list(taken.parameters.values())
    positional = [
        p for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
    ]
    keywords = [p for p in params if p.kind is kinds.KEYWORD_ONLY]
    required = [p for p in positional if p.default is kinds.empty]
    for args, names in (
        (required, [p.name for p in keywords if p.default is kinds.empty]),
        (positional, [p.name for p in keywords]),
    ):
        try:
            given.bind(None, *[None] * len(args), **dict.fromkeys(names))
        except TypeError as exc:
            raise TypeError(
                f"circuit: fallback {getattr(fallback, '__qualname__', fallback)!r} must take "
                f"the error and then what {label} takes, {taken}: {exc}"
            ) from None


def _awaitable_warning(name: str, label: str) -> Callable[[object], None]:
    def warn(result: object) -> None:
        if inspect.isawaitable(result):
            _log.warning(
                "breaker %r: %s returned an awaitable, but it is guarded as a plain "
                "function, so failures of the awaited work are not counted; define it "
                "with async def",
                name,
                label,
            )

    return warn


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
