"""The public API as users write it, for the type checkers (mypy --strict, pyright).

Fallbacks have a module of their own (``fallbacks.py``), with the cases that must be errors.
"""

from __future__ import annotations

import asyncio

import breaker

provider = breaker.new(
    breaker.Config("checkout", "/config/dev/checkout/breakers/"),
    coord=breaker.MemoryCoord(),
    default_policy=breaker.Policy(failure_threshold=5, open_state_timeout="30s"),
)


# -- decorators keep signatures ---------------------------------------------------------


@provider.circuit("payments")
def charge(order_id: str, cents: int) -> str:
    return order_id


receipt: str = charge("o-1", 1999)


@breaker.circuit("payments", exclude=[KeyError], failure_if=lambda r: r is None)
async def refund(order_id: str) -> str | None:
    return order_id


async def use_refund() -> str | None:
    return await refund("o-1")


# -- fallbacks take what the function takes, after the error ----------------------------


def cached_rate(exc: Exception, currency: str) -> float:
    return 1.0


@provider.circuit("fx-rates", fallback=cached_rate)
def rate(currency: str) -> float:
    return 1.1


eur: float = rate("EUR")


@breaker.circuit("fx-rates", fallback=cached_rate)
async def async_rate(currency: str) -> float:  # a plain fallback for an async def
    return 1.1


async def cached_rate_async(exc: Exception, currency: str) -> float:
    return 1.0


@provider.circuit("fx-rates", fallback=cached_rate_async)
async def async_rate_2(currency: str) -> float:
    return 1.1


async def use_rates() -> float:
    return await async_rate("EUR") + await async_rate_2("EUR")


def no_stock(exc: Exception, self: Client, sku: str) -> int:
    return 0  # a method's fallback gets self too


class Client:
    @provider.circuit("inventory", fallback=no_stock)
    def stock(self, sku: str) -> int:
        return 7


stock: int = Client().stock("sku-1")


# -- guards, breakers, errors -------------------------------------------------------------


def guarded() -> None:
    with provider.guard("inventory") as call:
        call.record_failure()
    brk: breaker.Breaker = call.breaker
    state: breaker.State = brk.state
    mode: breaker.Mode = brk.mode
    stats: breaker.Stats = brk.stats()
    calls: int = stats.calls["success"]
    value: int = brk.do(len, "abc")
    try:
        brk.do(lambda: None)
    except breaker.BreakerOpenError as exc:
        seconds: float = exc.retry_after
        print(state, mode, calls, value, seconds)


async def guarded_async() -> None:
    async with provider.guard("inventory") as call:
        call.record_failure()
    result: int = await call.breaker.do_async(asyncio.sleep, 0, 1)
    print(result)


status: dict[str, object] = provider.status()


def exported() -> None:
    from breaker.metrics import DEFAULT_BUCKETS, OpenTelemetryMetrics, PrometheusMetrics

    prometheus = PrometheusMetrics(provider, breaker_limit=10, durations=True)
    otel = OpenTelemetryMetrics(provider, buckets=[0.1, *DEFAULT_BUCKETS[5:]])
    prometheus.close()
    otel.close()


with breaker.set_default_provider(provider):
    pass
provider.close()
