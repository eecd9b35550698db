"""gRPC: one breaker per method, UNAVAILABLE counted, rejections caught as grpc.RpcError.

An in-process gRPC server on 127.0.0.1 stands in for an inventory service (generic
handlers and raw bytes, so no generated code). The channel goes through
``BreakerInterceptor``: the breaker of ``/shop.Inventory/Reserve`` reads its policy
from ``<policies_path>shop.Inventory/Reserve.json``. NOT_FOUND means the server
answered and counts as a success; UNAVAILABLE counts as a failure. The same
configuration guards a ``grpc.aio`` channel through ``aio_interceptors()``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio

import breaker
from breaker.integrations.grpc import BreakerInterceptor, aio_interceptors

PREFIX = "config/dev/storefront/breakers/"
RESERVE = "/shop.Inventory/Reserve"


class Inventory:
    """The downstream: reserves known SKUs while healthy, UNAVAILABLE while down."""

    def __init__(self) -> None:
        self.healthy = True
        self.received = 0

    def reserve(self, request: bytes, context: Any) -> bytes:
        self.received += 1
        if not self.healthy:
            context.abort(grpc.StatusCode.UNAVAILABLE, "inventory is restarting")
        if request != b"sku-1":
            context.abort(grpc.StatusCode.NOT_FOUND, f"no such sku {request.decode()}")
        return b"reserved " + request


def main() -> None:
    logging.basicConfig(format="  log: %(message)s", stream=sys.stdout)
    logging.getLogger("breaker").setLevel(logging.INFO)
    inventory = Inventory()
    pool = ThreadPoolExecutor(max_workers=4)
    server = grpc.server(pool)
    handler = grpc.method_handlers_generic_handler(
        "shop.Inventory", {"Reserve": grpc.unary_unary_rpc_method_handler(inventory.reserve)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        run(f"127.0.0.1:{port}", inventory)
    finally:
        server.stop(None).wait()
        pool.shutdown()


def run(target: str, inventory: Inventory) -> None:
    coord = breaker.MemoryCoord(
        {
            PREFIX + "shop.Inventory/Reserve.json": (
                '{"failureThreshold": 3, "openStateTimeout": "200ms"}'
            )
        }
    )
    with (
        breaker.new(breaker.Config("storefront", PREFIX), coord=coord) as provider,
        grpc.insecure_channel(target) as raw,
    ):
        channel = grpc.intercept_channel(raw, BreakerInterceptor(provider=provider))
        reserve = channel.unary_unary(RESERVE)
        brk = provider.get_breaker(RESERVE)

        def call(sku: bytes) -> None:
            what = f"Reserve({sku.decode()})"
            try:
                print(f"{what} -> {reserve(sku).decode()}  breaker: {brk.state}")
            except grpc.RpcError as exc:  # a rejection is a grpc.RpcError too
                if isinstance(exc, breaker.BreakerOpenError):
                    print(f"{what} -> not sent: {exc.code().name}: {exc.details()}")
                else:
                    print(f"{what} -> {exc.code().name}: {exc.details()}  breaker: {brk.state}")

        call(b"sku-1")
        call(b"sku-404")  # NOT_FOUND: the server answered, a success for the breaker
        inventory.healthy = False
        print("the inventory service goes down")
        for _ in range(4):
            call(b"sku-1")
        future = reserve.future(b"sku-1")
        print(f"a future while open is already done: {future.done()}, {future.code().name}")
        print(f"the inventory service received {inventory.received} of 7 calls")
        inventory.healthy = True
        time.sleep(0.25)
        print("the inventory service is back; after openStateTimeout a trial call goes out")
        call(b"sku-1")
        print("stats:", brk.stats().to_dict()["calls"])

        async def aio_reserve() -> bytes:
            interceptors = aio_interceptors(provider=provider)
            async with grpc.aio.insecure_channel(target, interceptors=interceptors) as aio:
                response: bytes = await aio.unary_unary(RESERVE)(b"sku-1")
                return response

        print("grpc.aio with aio_interceptors():", asyncio.run(aio_reserve()).decode())


if __name__ == "__main__":
    main()
