"""Web apps: a rejected call becomes 503 with Retry-After; /breakers serves the status.

The same storefront, once as a Flask app served by werkzeug on 127.0.0.1 and a free
port, once as a Starlette app driven in-process through httpx's ASGI transport. Its
``/checkout`` view charges a card through the ``payments`` breaker. While payments
fails, the view answers 502 itself; once the breaker is open, the ``BreakerOpenError``
reaches the handler that ``install()`` registered, which answers
``503 Service Unavailable`` with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

import flask
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from werkzeug.serving import make_server

import breaker
from breaker.integrations import flask as breaker_flask
from breaker.integrations import starlette as breaker_starlette

PREFIX = "config/dev/storefront/breakers/"


class Payments:
    """The downstream, simulated: raises ConnectionError while down."""

    def __init__(self) -> None:
        self.healthy = True

    def charge(self, cents: int) -> str:
        if not self.healthy:
            raise ConnectionError("payments refused the connection")
        return f"charged {cents}"


def flask_app(provider: breaker.Provider, charge: Any) -> flask.Flask:
    app = flask.Flask("storefront")
    breaker_flask.install(app, status_path="/breakers", provider=provider)

    @app.get("/checkout")
    def checkout() -> Any:
        try:
            return {"result": charge(1999)}
        except ConnectionError:  # failed, not rejected: the view says so itself
            return {"detail": "payments failed"}, 502

    return app


def starlette_app(provider: breaker.Provider, charge: Any) -> Starlette:
    async def checkout(request: Request) -> Response:
        try:
            return JSONResponse({"result": charge(1999)})
        except ConnectionError:
            return JSONResponse({"detail": "payments failed"}, status_code=502)

    app = Starlette(routes=[Route("/checkout", checkout)])
    breaker_starlette.install(app, status_path="/breakers", provider=provider)
    return app


def get(url: str) -> tuple[int, str, str]:
    """GET ``url``; return the status, the Retry-After header (or "-") and the body."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            body = answer.read().decode().strip()
            return answer.status, answer.headers.get("Retry-After", "-"), body
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Retry-After", "-"), error.read().decode().strip()


def show(framework: str, status: int, retry_after: str, body: str) -> None:
    print(f"{framework:9} GET /checkout -> {status}  Retry-After: {retry_after:2}  {body}")


def run_flask(provider: breaker.Provider, payments: Payments, charge: Any) -> None:
    server = make_server("127.0.0.1", 0, flask_app(provider, charge), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,))
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        for healthy in (True, False, False, False):
            payments.healthy = healthy
            show("flask", *get(base + "/checkout"))
        status = json.loads(get(base + "/breakers")[2])
        print("flask     GET /breakers ->", status["breakers"]["payments"]["state"])
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


async def run_starlette(provider: breaker.Provider, payments: Payments, charge: Any) -> None:
    transport = httpx.ASGITransport(app=starlette_app(provider, charge))
    async with httpx.AsyncClient(transport=transport, base_url="http://storefront") as client:
        for healthy in (True, False, False, False):
            payments.healthy = healthy
            answer = await client.get("/checkout")
            show(
                "starlette", answer.status_code, answer.headers.get("Retry-After", "-"), answer.text
            )
        status = (await client.get("/breakers")).json()
        print("starlette GET /breakers ->", status["breakers"]["payments"]["state"])


def new_provider() -> breaker.Provider:
    coord = breaker.MemoryCoord(
        {PREFIX + "payments.json": '{"failureThreshold": 2, "openStateTimeout": "30s"}'}
    )
    return breaker.new(breaker.Config("storefront", PREFIX), coord=coord)


def main() -> None:
    logging.basicConfig(format="  log: %(message)s", stream=sys.stdout)
    logging.getLogger("breaker.state").setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log
    with new_provider() as provider:
        payments = Payments()
        run_flask(provider, payments, provider.circuit("payments")(payments.charge))
    with new_provider() as provider:
        payments = Payments()
        asyncio.run(
            run_starlette(provider, payments, provider.circuit("payments")(payments.charge))
        )


if __name__ == "__main__":
    main()
