"""breaker.integrations.starlette with Starlette's TestClient."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

import breaker
from breaker.testing import FakeClock, force_state

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")  # Starlette's TestClient runs on httpx

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns when it falls back to httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

from breaker.integrations.httpx import AsyncBreakerTransport  # noqa: E402
from breaker.integrations.starlette import (  # noqa: E402
    breaker_open_handler,
    install,
    status_endpoint,
    status_route,
)


def make_app(provider: breaker.Provider) -> Starlette:
    @provider.circuit("payments")
    async def charge() -> str:
        return "charged"

    async def pay(request: Request) -> Response:
        return PlainTextResponse(await charge())

    async def reject(request: Request) -> Response:
        raise breaker.BreakerOpenError(
            "x", breaker.State.HALF_OPEN, float(request.query_params["s"])
        )

    async def fail(request: Request) -> Response:
        raise ValueError("a bug")

    async def downstream(request: Request) -> Response:
        transport = AsyncBreakerTransport(
            httpx.MockTransport(lambda r: httpx.Response(200)), provider=provider, name="inventory"
        )
        async with httpx.AsyncClient(transport=transport) as client:
            answer = await client.get("https://inventory.example.com/")
        return PlainTextResponse(str(answer.status_code))

    return Starlette(
        routes=[
            Route("/pay", pay),
            Route("/reject", reject),
            Route("/fail", fail),
            Route("/downstream", downstream),
        ]
    )


@pytest.fixture
def app(provider: breaker.Provider) -> Starlette:
    app = make_app(provider)
    install(app, status_path="/breakers", provider=provider)
    return app


@pytest.fixture
def client(app: Starlette) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_calls_pass_while_the_breaker_is_closed(client: TestClient) -> None:
    response = client.get("/pay")
    assert response.status_code == 200 and response.text == "charged"


def test_a_rejection_answers_503_with_retry_after(
    client: TestClient, provider: breaker.Provider, clock: FakeClock
) -> None:
    force_state(provider.get_breaker("payments"), "open")
    response = client.get("/pay")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    assert response.json() == {"detail": "Service Unavailable"}
    clock.advance(8.5)
    assert client.get("/pay").headers["Retry-After"] == "2"


@pytest.mark.parametrize(("seconds", "header"), [("0", "1"), ("0.2", "1"), ("3.01", "4")])
def test_retry_after_is_whole_seconds_at_least_one(
    client: TestClient, seconds: str, header: str
) -> None:
    response = client.get("/reject", params={"s": seconds})
    assert response.status_code == 503 and response.headers["Retry-After"] == header


def test_a_client_integrations_rejection_is_a_503_too(
    client: TestClient, provider: breaker.Provider
) -> None:
    assert client.get("/downstream").text == "200"
    force_state(provider.get_breaker("inventory"), "open")
    response = client.get("/downstream")
    assert response.status_code == 503 and response.headers["Retry-After"] == "10"


def test_other_errors_are_left_alone(client: TestClient) -> None:
    assert client.get("/fail").status_code == 500


def test_the_status_endpoint_serves_provider_status(
    client: TestClient, provider: breaker.Provider
) -> None:
    client.get("/pay")
    response = client.get("/breakers")
    assert response.status_code == 200
    body = response.json()
    assert body == provider.status()
    assert body["breakers"]["payments"]["state"] == "closed"
    assert client.post("/breakers").status_code == 405


def test_the_status_endpoint_follows_the_default_provider(provider: breaker.Provider) -> None:
    app = Starlette(routes=[status_route()])
    with TestClient(app) as client:
        response = client.get("/breakers")
        assert response.status_code == 503
        assert response.json() == {"detail": "no breaker provider is set"}
        with breaker.set_default_provider(provider):
            assert client.get("/breakers").json()["service"] == "checkout"


def test_the_pieces_can_be_registered_by_hand(provider: breaker.Provider) -> None:
    app = make_app(provider)
    app.add_exception_handler(breaker.BreakerOpenError, breaker_open_handler)
    app.add_route("/status", status_endpoint(provider))
    force_state(provider.get_breaker("payments"), "open")
    with TestClient(app) as client:
        assert client.get("/pay").status_code == 503
        assert client.get("/status").json()["breakers"]["payments"]["state"] == "open"


def test_install_without_a_status_path_adds_no_route(provider: breaker.Provider) -> None:
    app = make_app(provider)
    install(app)
    with TestClient(app) as client:
        assert client.get("/breakers").status_code == 404


def test_a_provider_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError):
        status_endpoint(object())  # type: ignore[arg-type]


def test_the_status_endpoint_can_include_the_fleet() -> None:
    from ..helpers import eventually

    coord = breaker.MemoryCoord()
    config = breaker.Config(
        "checkout", "/config/dev/checkout/breakers/", fleet_path="/config/dev/fleet/",
        instance_id="web-1",
    )  # fmt: skip
    with breaker.new(config, coord=coord) as provider:
        provider.get_breaker("payments")
        app = Starlette()
        install(app, status_path="/breakers", provider=provider, fleet=True)
        with TestClient(app) as client:
            eventually(lambda: "payments" in client.get("/breakers").json()["fleet"]["breakers"])
            body = client.get("/breakers").json()
            assert body["fleet"] == provider.fleet()
            assert body["fleet"]["breakers"]["payments"]["closed"] == ["web-1"]
            assert body["breakers"]["payments"]["state"] == "closed"  # the rest, as before

            def down(prefix: str) -> object:
                raise breaker.CoordError("Consul is down")

            coord.load = down  # type: ignore[method-assign]
            body = client.get("/breakers").json()
            assert body["fleet"] == {"error": "Consul is down"}
            assert body["service"] == "checkout"


def test_the_fleet_needs_a_provider_that_publishes_one(provider: breaker.Provider) -> None:
    with pytest.raises(ValueError, match=r"fleet=True needs a provider with Config\.fleet_path"):
        status_endpoint(provider, fleet=True)
    app = Starlette(routes=[status_route(fleet=True)])
    with TestClient(app) as client, breaker.set_default_provider(provider):
        assert client.get("/breakers").json()["fleet"] == {
            "error": "Provider.fleet: this provider has no Config.fleet_path"
        }
