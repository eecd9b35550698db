"""breaker.integrations.requests against requests and a local HTTP server."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import breaker
from breaker.testing import FakeClock

requests = pytest.importorskip("requests")

from breaker.integrations.requests import (  # noqa: E402
    BreakerAdapter,
    BreakerOpenConnectionError,
    default_name,
)

from .servers import Downstream, downstream, refused_url  # noqa: E402


@pytest.fixture
def server() -> Iterator[Downstream]:
    with downstream() as s:
        yield s


def session_with(adapter: BreakerAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@pytest.fixture
def session(provider: breaker.Provider) -> Iterator[requests.Session]:
    with session_with(BreakerAdapter(provider=provider)) as s:
        yield s


def name_of(server: Downstream) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


def test_a_success_counts_for_the_downstreams_breaker(
    session: requests.Session, server: Downstream, provider: breaker.Provider
) -> None:
    response = session.get(server.url + "/status/200")
    assert response.status_code == 200 and response.text == "answered 200"
    assert list(provider.breakers()) == [name_of(server)]
    assert provider.get_breaker(name_of(server)).stats().calls["success"] == 1


def test_5xx_count_trip_and_rejections_never_reach_the_server(
    session: requests.Session, server: Downstream, provider: breaker.Provider
) -> None:
    for _ in range(3):
        assert session.get(server.url + "/status/503").status_code == 503
    assert provider.get_breaker(name_of(server)).state is breaker.State.OPEN
    with pytest.raises(requests.RequestException) as caught:
        session.get(server.url + "/status/200")
    exc = caught.value
    assert isinstance(exc, BreakerOpenConnectionError)
    assert isinstance(exc, breaker.BreakerOpenError)
    assert isinstance(exc, requests.exceptions.ConnectionError)
    assert (exc.name, exc.state, exc.retry_after) == (name_of(server), breaker.State.OPEN, 10.0)
    assert exc.request is not None and exc.request.url == server.url + "/status/200"
    assert exc.response is None
    assert str(exc) == f"breaker {name_of(server)!r} is open; retry in 10.000s"
    assert server.hits == 3


def test_a_4xx_counts_as_a_success(
    session: requests.Session, server: Downstream, provider: breaker.Provider
) -> None:
    for _ in range(4):
        assert session.get(server.url + "/status/404").status_code == 404
    assert provider.get_breaker(name_of(server)).state is breaker.State.CLOSED


def test_the_breaker_closes_after_trial_calls(
    session: requests.Session, server: Downstream, provider: breaker.Provider, clock: FakeClock
) -> None:
    for _ in range(3):
        session.get(server.url + "/status/500")
    clock.advance(10)
    for _ in range(2):
        assert session.get(server.url + "/status/200").ok
    assert provider.get_breaker(name_of(server)).state is breaker.State.CLOSED


def test_refused_connections_count_as_failures(
    session: requests.Session, provider: breaker.Provider
) -> None:
    url = refused_url()
    for _ in range(3):
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            session.get(url)
        assert not isinstance(caught.value, breaker.BreakerOpenError)
    with pytest.raises(BreakerOpenConnectionError):
        session.get(url)


def test_retries_happen_inside_the_adapter_and_count_once(provider: breaker.Provider) -> None:
    url = refused_url()
    adapter = BreakerAdapter(provider=provider, name="flaky", max_retries=2)
    assert adapter.max_retries.total == 2
    with session_with(adapter) as session, pytest.raises(requests.exceptions.ConnectionError):
        session.get(url)
    assert provider.get_breaker("flaky").stats().calls["failure"] == 1


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://api.example.com/x", "api.example.com:443"),
        ("http://API.example.com/x", "api.example.com:80"),
        ("http://api.example.com:8080/x?y=1", "api.example.com:8080"),
        ("http://[::1]:8080/", "[::1]:8080"),
    ],
)
def test_default_names_are_host_and_port(url: str, name: str) -> None:
    assert default_name(requests.Request("GET", url).prepare()) == name


def test_a_fixed_name_and_a_name_function(server: Downstream, provider: breaker.Provider) -> None:
    with session_with(BreakerAdapter(provider=provider, name="catalog")) as session:
        session.get(server.url + "/a")
    with session_with(
        BreakerAdapter(provider=provider, name=lambda r: "by-method/" + str(r.method))
    ) as session:
        session.get(server.url + "/b")
    assert sorted(provider.breakers()) == ["by-method/GET", "catalog"]


def test_invalid_names_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot name a breaker"):
        BreakerAdapter(name="a//b")
    with pytest.raises(TypeError):
        BreakerAdapter(name=42)  # type: ignore[arg-type]


def test_failure_if_replaces_the_default_rule(
    server: Downstream, provider: breaker.Provider
) -> None:
    adapter = BreakerAdapter(
        provider=provider, name="api", failure_if=lambda r: r.status_code in (429, 503)
    )
    with session_with(adapter) as session:
        for _ in range(3):
            session.get(server.url + "/status/500")
        assert provider.get_breaker("api").state is breaker.State.CLOSED
        for _ in range(3):
            session.get(server.url + "/status/429")
        assert provider.get_breaker("api").state is breaker.State.OPEN


def test_the_default_provider_is_used_at_request_time(
    server: Downstream, provider: breaker.Provider, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="breaker"), session_with(BreakerAdapter()) as s:
        for _ in range(4):
            assert s.get(server.url + "/status/500").status_code == 500  # unguarded
        with breaker.set_default_provider(provider):
            s.get(server.url + "/status/200")
    assert len([r for r in caplog.records if "no default provider" in r.getMessage()]) == 1
    assert provider.get_breaker(name_of(server)).stats().calls["success"] == 1
    assert server.hits == 5


def test_a_provider_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(TypeError, match=r"breaker\.Provider"):
        BreakerAdapter(provider=object())  # type: ignore[arg-type]
