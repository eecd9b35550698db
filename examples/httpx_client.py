"""httpx: one breaker per downstream, 5xx counted, rejections caught as httpx errors.

A local HTTP server on 127.0.0.1 stands in for the inventory service; it answers 503
while it is down. The client sends through ``BreakerTransport``, so the breaker named
after the downstream (``127.0.0.1:<port>``) counts every answer, and its policy is the
document ``<policies_path>127.0.0.1:<port>.json``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

import breaker
from breaker.integrations.httpx import AsyncBreakerTransport, BreakerTransport

PREFIX = "config/dev/storefront/breakers/"


class Inventory(ThreadingHTTPServer):
    """The downstream: 200 while healthy, 503 while down; it counts what reaches it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.healthy = True
        self.received = 0


class Handler(BaseHTTPRequestHandler):
    server: Inventory

    def do_GET(self) -> None:
        self.server.received += 1
        status, body = (200, b"7 in stock") if self.server.healthy else (503, b"overloaded")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    logging.basicConfig(format="  log: %(message)s", stream=sys.stdout)
    logging.getLogger("breaker").setLevel(logging.INFO)  # state changes, policies
    inventory = Inventory()
    thread = threading.Thread(target=inventory.serve_forever, args=(0.01,))
    thread.start()
    try:
        run(inventory)
    finally:
        inventory.shutdown()
        thread.join()
        inventory.server_close()


def run(inventory: Inventory) -> None:
    host, port = inventory.server_address[:2]
    name = f"{host}:{port}"  # the default breaker name: the downstream's host:port
    url = f"http://{name}/stock/sku-1"
    coord = breaker.MemoryCoord(
        {PREFIX + f"{name}.json": '{"failureThreshold": 3, "openStateTimeout": "200ms"}'}
    )
    with (
        breaker.new(breaker.Config("storefront", PREFIX), coord=coord) as provider,
        httpx.Client(transport=BreakerTransport(provider=provider)) as client,
    ):
        brk = provider.get_breaker(name)

        def get() -> None:
            try:
                response = client.get(url)
                print(f"GET -> {response.status_code} {response.text:11} breaker: {brk.state}")
            except httpx.HTTPError as exc:  # a rejection is an httpx.TransportError too
                print(f"GET -> not sent: {exc}")

        print(f"breaker {name!r} uses {brk.policy}")
        get()
        inventory.healthy = False
        print("the inventory service starts answering 503")
        for _ in range(4):
            get()
        print(f"the inventory service received {inventory.received} requests of 5")
        inventory.healthy = True
        time.sleep(0.25)
        print("the inventory service recovers; after openStateTimeout a trial request goes out")
        get()
        get()
        print("stats:", brk.stats().to_dict()["calls"])

        async def async_get() -> int:
            transport = AsyncBreakerTransport(provider=provider)
            async with httpx.AsyncClient(transport=transport) as async_client:
                return (await async_client.get(url)).status_code

        print("httpx.AsyncClient with AsyncBreakerTransport:", asyncio.run(async_get()))


if __name__ == "__main__":
    main()
