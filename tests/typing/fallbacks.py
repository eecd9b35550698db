"""Fallbacks as type checkers see them (mypy --strict and pyright, strict).

A type checker meets the fallback before the function it guards, so the decorated function
keeps the function's own signature; the fallback's first parameter must accept any
``Exception``, and its result joins the function's result type (a fallback may return a
narrower type, and then the result type is the function's).

Each line marked ``# type: ignore[code]  # pyright: ignore[rule]`` must be an error in both
checkers: mypy --strict warns about an ignore that is not needed (warn_unused_ignores), and
pyright reports one as an error (reportUnnecessaryTypeIgnoreComment, with plain
``type: ignore`` comments disabled), so a case that stops being an error fails the run.
Strict pyright also reports a lambda's parameters as unknown (nothing declares their
types), so the lambda fallbacks carry that ignore alone: it is not an error in mypy.
"""

from __future__ import annotations

from typing_extensions import assert_type

import breaker

provider = breaker.new(breaker.Config("checkout", "config/checkout/"), coord=breaker.MemoryCoord())


# -- a fallback may return a narrower type than the function ----------------------------------


def nothing_cached(exc: Exception, key: str) -> None:
    return None


@provider.circuit("cache", fallback=nothing_cached)
def lookup(key: str) -> bytes | None:
    return b"value"


@breaker.circuit("cache", fallback=nothing_cached)
async def lookup_async(key: str) -> bytes | None:  # a plain fallback for an async def
    return b"value"


async def nothing_cached_async(exc: Exception, key: str) -> None:
    return None


@breaker.circuit("cache", fallback=nothing_cached_async)
async def lookup_async_2(key: str) -> bytes | None:
    return b"value"


def empty(exc: Exception, key: str) -> bytes:
    return b""


@provider.circuit("cache", fallback=empty)
def lookup_2(key: str) -> bytes | None:
    return None


async def use_lookups() -> None:
    assert_type(lookup("k"), bytes | None)
    assert_type(lookup_2("k"), bytes | None)
    assert_type(await lookup_async("k"), bytes | None)
    assert_type(await lookup_async_2("k"), bytes | None)


# -- lambdas keep the function's parameters -------------------------------------------------


@provider.circuit("fx-rates", fallback=lambda exc, currency: 0.0)  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType]
def rate(currency: str) -> float:
    return 1.1


assert_type(rate("EUR"), float)
assert_type(rate(currency="EUR"), float)
rate(978)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
rate(currncy="EUR")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


@breaker.circuit("inventory", fallback=lambda exc, sku: -1)  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType]
async def stock(sku: str) -> int:
    return 7


async def use_stock() -> None:
    assert_type(await stock("sku-1"), int)
    await stock(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


class Client:
    @provider.circuit("inventory", fallback=lambda exc, self, sku: 0)  # pyright: ignore[reportUnknownLambdaType, reportUnknownArgumentType]
    def stock(self, sku: str) -> int:
        return 7


assert_type(Client().stock("sku-1"), int)
Client().stock(b"sku-1")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# -- a fallback that takes anything never changes the signature ---------------------------


@provider.circuit("fx-rates", fallback=lambda exc, *a: 0.0)
def rate_any(currency: str) -> float:
    return 1.1


def any_call(exc: Exception, *args: object, **kwargs: object) -> float:
    return 0.0


@breaker.circuit("fx-rates", fallback=any_call)
def rate_any_2(currency: str, *, day: int = 0) -> float:
    return 1.1


assert_type(rate_any("EUR"), float)
assert_type(rate_any_2("EUR", day=1), float)
rate_any()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
rate_any("EUR", "USD")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
rate_any_2("EUR", 1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]


# -- what a fallback returns is what a caller may get -----------------------------------------


def not_available(exc: Exception, currency: str) -> str:
    return "n/a"


@breaker.circuit("fx-rates", fallback=not_available)
def rate_or_text(currency: str) -> float:
    return 1.1


assert_type(rate_or_text("EUR"), float | str)
as_float: float = rate_or_text("EUR")  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


# -- fallbacks that cannot be called as circuit calls them ------------------------------------


def only_connection_errors(exc: ConnectionError, currency: str) -> float:
    return 0.0  # would be handed a BreakerOpenError, which is no ConnectionError


@breaker.circuit("fx-rates", fallback=only_connection_errors)  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType, reportUntypedFunctionDecorator]
def rate_5(currency: str) -> float:
    return 1.1


def no_error_parameter() -> float:
    return 0.0


@provider.circuit("fx-rates", fallback=no_error_parameter)  # type: ignore[arg-type]  # pyright: ignore[reportCallIssue, reportArgumentType, reportUntypedFunctionDecorator]
def rate_6(currency: str) -> float:
    return 1.1


async def cached_rate_async(exc: Exception, currency: str) -> float:
    return 1.0


@provider.circuit("fx-rates", fallback=cached_rate_async)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def rate_7(currency: str) -> float:  # an async fallback for a plain function: never awaited
    return 1.1
