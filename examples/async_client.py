"""asyncio: an ``async def`` under ``@circuit`` and a block under ``async with guard()``.

200 concurrent requests share one breaker without waiting on each other: the breaker
never holds a lock while a request is awaited.
"""

from __future__ import annotations

import asyncio
import time

import breaker

PREFIX = "config/dev/storefront/breakers/"


async def main() -> None:
    coord = breaker.MemoryCoord(
        {PREFIX + "inventory.json": '{"failureThreshold": 2, "openStateTimeout": "200ms"}'}
    )
    with breaker.new(breaker.Config("storefront", PREFIX), coord=coord) as provider:
        healthy = True

        @provider.circuit("inventory", fallback=lambda exc, sku: -1)
        async def stock(sku: str) -> int:
            await asyncio.sleep(0.01)  # a network round trip
            if not healthy:
                raise ConnectionError("inventory is down")
            return 7

        start = time.perf_counter()
        levels = await asyncio.gather(*(stock(f"sku-{i}") for i in range(200)))
        print(f"200 concurrent lookups took {time.perf_counter() - start:.3f}s: {set(levels)}")

        healthy = False
        print("inventory goes down:", [await stock("sku-1") for _ in range(4)])
        print("breaker:", provider.get_breaker("inventory").state)

        try:
            async with provider.guard("inventory"):
                print("never printed: the block does not run while the breaker is open")
        except breaker.BreakerOpenError as exc:
            print(f"guard rejected the block: retry in {exc.retry_after:.2f}s")

        healthy = True
        await asyncio.sleep(0.2)
        async with provider.guard("inventory") as call:
            print("trial call inside the guard, breaker", call.breaker.state)
        print("breaker:", provider.get_breaker("inventory").state, "| stock:", await stock("sku-1"))


if __name__ == "__main__":
    asyncio.run(main())
