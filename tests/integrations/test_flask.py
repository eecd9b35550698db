"""breaker.integrations.flask with Flask's test client."""

from __future__ import annotations

import pytest

import breaker
from breaker.testing import FakeClock, force_state

flask = pytest.importorskip("flask")
requests = pytest.importorskip("requests")

from breaker.integrations.flask import breaker_open_handler, install, status_view  # noqa: E402
from breaker.integrations.requests import BreakerAdapter  # noqa: E402


def make_app(provider: breaker.Provider) -> flask.Flask:
    app = flask.Flask(__name__)

    @provider.circuit("payments")
    def charge() -> str:
        return "charged"

    @app.get("/pay")
    def pay() -> str:
        return charge()

    @app.get("/reject")
    def reject() -> str:
        seconds = float(flask.request.args["s"])
        raise breaker.BreakerOpenError("x", breaker.State.OPEN, seconds)

    @app.get("/fail")
    def fail() -> str:
        raise ValueError("a bug")

    @app.get("/downstream")
    def downstream() -> str:
        with requests.Session() as session:
            session.mount("http://", BreakerAdapter(provider=provider, name="inventory"))
            session.get("http://inventory.invalid/")
        return "unreachable"

    return app


@pytest.fixture
def app(provider: breaker.Provider) -> flask.Flask:
    app = make_app(provider)
    install(app, status_path="/breakers", provider=provider)
    return app


@pytest.fixture
def client(app: flask.Flask) -> flask.testing.FlaskClient:
    return app.test_client()


def test_calls_pass_while_the_breaker_is_closed(client: flask.testing.FlaskClient) -> None:
    assert client.get("/pay").text == "charged"


def test_a_rejection_answers_503_with_retry_after(
    client: flask.testing.FlaskClient, provider: breaker.Provider, clock: FakeClock
) -> None:
    force_state(provider.get_breaker("payments"), "open")
    response = client.get("/pay")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "10"
    assert response.get_json() == {"detail": "Service Unavailable"}
    clock.advance(9.9)
    assert client.get("/pay").headers["Retry-After"] == "1"


@pytest.mark.parametrize(("seconds", "header"), [("0", "1"), ("0.5", "1"), ("2.25", "3")])
def test_retry_after_is_whole_seconds_at_least_one(
    client: flask.testing.FlaskClient, seconds: str, header: str
) -> None:
    response = client.get("/reject", query_string={"s": seconds})
    assert response.status_code == 503 and response.headers["Retry-After"] == header


def test_a_client_integrations_rejection_is_a_503_too(
    client: flask.testing.FlaskClient, provider: breaker.Provider
) -> None:
    force_state(provider.get_breaker("inventory"), "open")
    response = client.get("/downstream")
    assert response.status_code == 503 and response.headers["Retry-After"] == "10"


def test_other_errors_are_left_alone(client: flask.testing.FlaskClient) -> None:
    assert client.get("/fail").status_code == 500


def test_the_status_view_serves_provider_status(
    client: flask.testing.FlaskClient, provider: breaker.Provider
) -> None:
    client.get("/pay")
    response = client.get("/breakers")
    assert response.status_code == 200
    assert response.get_json() == provider.status()
    assert response.get_json()["breakers"]["payments"]["state"] == "closed"
    assert client.post("/breakers").status_code == 405


def test_the_status_view_follows_the_default_provider(provider: breaker.Provider) -> None:
    app = flask.Flask(__name__)
    app.add_url_rule("/status", view_func=status_view())
    client = app.test_client()
    response = client.get("/status")
    assert response.status_code == 503
    assert response.get_json() == {"detail": "no breaker provider is set"}
    with breaker.set_default_provider(provider):
        assert client.get("/status").get_json()["service"] == "checkout"


def test_the_handler_can_be_registered_by_hand(provider: breaker.Provider) -> None:
    app = make_app(provider)
    app.register_error_handler(breaker.BreakerOpenError, breaker_open_handler)
    force_state(provider.get_breaker("payments"), "open")
    assert app.test_client().get("/pay").status_code == 503


def test_install_on_a_blueprint(provider: breaker.Provider) -> None:
    blueprint = flask.Blueprint("api", __name__, url_prefix="/api")

    @blueprint.get("/pay")
    def pay() -> str:
        return provider.get_breaker("payments").do(lambda: "charged")

    install(blueprint, status_path="/breakers", provider=provider)
    app = flask.Flask(__name__)
    app.register_blueprint(blueprint)
    force_state(provider.get_breaker("payments"), "open")
    client = app.test_client()
    assert client.get("/api/pay").status_code == 503
    assert client.get("/api/breakers").status_code == 200
    assert app.url_map.bind("").build("api.breaker_status") == "/api/breakers"


def test_a_provider_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError):
        status_view(object())  # type: ignore[arg-type]


def test_the_status_view_can_include_the_fleet(provider: breaker.Provider) -> None:
    from ..helpers import eventually

    coord = breaker.MemoryCoord()
    config = breaker.Config(
        "checkout", "/config/dev/checkout/breakers/", fleet_path="/config/dev/fleet/",
        instance_id="web-1",
    )  # fmt: skip
    with breaker.new(config, coord=coord) as fleet_provider:
        fleet_provider.get_breaker("payments")
        app = flask.Flask(__name__)
        install(app, status_path="/breakers", provider=fleet_provider, fleet=True)
        client = app.test_client()
        eventually(lambda: "payments" in client.get("/breakers").get_json()["fleet"]["breakers"])
        assert client.get("/breakers").get_json()["fleet"] == fleet_provider.fleet()
    with pytest.raises(ValueError, match=r"fleet=True needs a provider with Config\.fleet_path"):
        status_view(provider, fleet=True)
