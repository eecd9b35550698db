"""gRPC: one breaker per target and method, so one dead replica never blocks a healthy one.

Two in-process gRPC servers on 127.0.0.1 stand in for two replicas of an inventory
service (generic handlers and raw bytes, so no generated code). Each channel is built
by ``insecure_channel(target, provider=...)``, whose interceptor knows the target: the
breaker of ``/shop.Inventory/Reserve`` on ``inventory-eu:50051`` is
``grpc:inventory-eu:50051/shop.Inventory/Reserve``, and its policy would live at
``<policies_path>grpc:inventory-eu:50051/shop.Inventory/Reserve.json`` (here the
provider's default policy applies). NOT_FOUND means the server answered and counts as
a success; UNAVAILABLE counts as a failure. The same configuration guards a
``grpc.aio`` channel through ``aio_insecure_channel()``.
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
from breaker.integrations.grpc import aio_insecure_channel, default_name, insecure_channel

PREFIX = "config/dev/storefront/breakers/"
RESERVE = "/shop.Inventory/Reserve"


class Inventory:
    """A replica: reserves known SKUs while healthy, UNAVAILABLE while down."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.healthy = True
        self.received = 0
        self._pool = ThreadPoolExecutor(max_workers=4)
        self._server = grpc.server(self._pool)
        handler = grpc.method_handlers_generic_handler(
            "shop.Inventory", {"Reserve": grpc.unary_unary_rpc_method_handler(self.reserve)}
        )
        self._server.add_generic_rpc_handlers((handler,))
        self.target = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def reserve(self, request: bytes, context: Any) -> bytes:
        self.received += 1
        if not self.healthy:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.region} is restarting")
        if request != b"sku-1":
            context.abort(grpc.StatusCode.NOT_FOUND, f"no such sku {request.decode()}")
        return f"reserved {request.decode()} in {self.region}".encode()

    def stop(self) -> None:
        self._server.stop(None).wait()
        self._pool.shutdown()


def main() -> None:
    logging.basicConfig(format="  log: %(message)s", stream=sys.stdout)
    logging.getLogger("breaker").setLevel(logging.INFO)
    eu, us = Inventory("eu"), Inventory("us")
    try:
        run(eu, us)
    finally:
        eu.stop()
        us.stop()


def run(eu: Inventory, us: Inventory) -> None:
    policy = breaker.Policy(failure_threshold=3, open_state_timeout="200ms")
    with (
        breaker.new(
            breaker.Config("storefront", PREFIX), coord=breaker.MemoryCoord(), default_policy=policy
        ) as provider,
        insecure_channel(eu.target, provider=provider) as eu_channel,
        insecure_channel(us.target, provider=provider) as us_channel,
    ):
        replicas: dict[str, tuple[Any, Inventory]] = {
            "eu": (eu_channel.unary_unary(RESERVE), eu),
            "us": (us_channel.unary_unary(RESERVE), us),
        }

        def call(region: str, sku: bytes) -> None:
            reserve, inventory = replicas[region]
            brk = provider.get_breaker(default_name(inventory.target, RESERVE))
            what = f"{region}: Reserve({sku.decode()})"
            try:
                print(f"{what} -> {reserve(sku).decode()}  breaker: {brk.state}")
            except grpc.RpcError as exc:  # a rejection is a grpc.RpcError too
                if isinstance(exc, breaker.BreakerOpenError):
                    print(f"{what} -> not sent: {exc.code().name}, breaker {brk.state}")
                else:
                    print(f"{what} -> {exc.code().name}: {exc.details()}  breaker: {brk.state}")

        call("eu", b"sku-1")
        call("eu", b"sku-404")  # NOT_FOUND: the server answered, a success for the breaker
        eu.healthy = False
        print("the eu replica goes down")
        for _ in range(4):
            call("eu", b"sku-1")
            call("us", b"sku-1")  # the us replica has breakers of its own
        future = replicas["eu"][0].future(b"sku-1")
        print(f"a future to eu while its breaker is open is already done: {future.done()}")
        print(f"the eu replica received {eu.received} of 7 calls; us received {us.received}")
        eu.healthy = True
        time.sleep(0.25)
        print("eu is back; after openStateTimeout a trial call goes out")
        call("eu", b"sku-1")
        for region, (_, inventory) in replicas.items():
            brk = provider.get_breaker(default_name(inventory.target, RESERVE))
            print(f"{region} breaker: {brk.state}, {brk.stats().to_dict()['calls']}")

        async def aio_reserve() -> bytes:
            async with aio_insecure_channel(us.target, provider=provider) as aio:
                response: bytes = await aio.unary_unary(RESERVE)(b"sku-1")
                return response

        print("grpc.aio with aio_insecure_channel():", asyncio.run(aio_reserve()).decode())


if __name__ == "__main__":
    main()
