"""breaker.integrations.requests against requests and a local HTTP server."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

import breaker
from breaker.testing import FakeClock

requests = pytest.importorskip("requests")
urllib3 = pytest.importorskip("urllib3")

from breaker.integrations.requests import (  # noqa: E402
    BreakerAdapter,
    BreakerOpenConnectionError,
    default_name,
)

from .servers import SENT, Downstream, downstream, refused_url  # noqa: E402


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


# -- the outcome settles with the body ---------------------------------------------------------


def calls(provider: breaker.Provider, server: Downstream) -> dict[str, int]:
    return dict(provider.get_breaker(name_of(server)).stats().calls)


@pytest.mark.parametrize("cut", ["short", "chunks-cut", "reset"])
def test_a_body_cut_short_is_a_failure(
    cut: str, session: requests.Session, server: Downstream, provider: breaker.Provider
) -> None:
    for _ in range(3):
        with pytest.raises(requests.RequestException):  # ChunkedEncodingError, ConnectionError
            session.get(f"{server.url}/{cut}/200")
    with pytest.raises(BreakerOpenConnectionError):
        session.get(server.url + "/status/200")
    assert server.hits == 3
    assert calls(provider, server)["failure"] == 3
    assert calls(provider, server)["success"] == 0


def test_a_short_body_is_a_failure_where_urllib3_returns_it_silently(
    session: requests.Session,
    server: Downstream,
    provider: breaker.Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # urllib3 1.x does not enforce Content-Length by default: the short body comes back.
    urlopen = urllib3.HTTPConnectionPool.urlopen

    def lenient(self: Any, *args: Any, **kwargs: Any) -> Any:
        return urlopen(self, *args, enforce_content_length=False, **kwargs)

    monkeypatch.setattr(urllib3.HTTPConnectionPool, "urlopen", lenient)
    response = session.get(f"{server.url}/short/200")
    assert response.content == SENT
    assert calls(provider, server)["failure"] == 1
    with session.get(f"{server.url}/short/200", stream=True) as response:
        body = b"".join(iter(lambda: response.raw.read(100), b""))  # past requests, to EOF
        assert body == SENT  # settled when the response closes
    assert calls(provider, server)["failure"] == 2


def test_a_raw_read_cut_short_is_a_failure_when_the_response_closes(
    session: requests.Session, server: Downstream, provider: breaker.Provider
) -> None:
    with session.get(f"{server.url}/short/200", stream=True) as response:
        with pytest.raises(urllib3.exceptions.HTTPError):
            response.raw.read()
        assert calls(provider, server)["failure"] == 0
    assert calls(provider, server)["failure"] == 1


def test_a_streamed_response_settles_when_its_body_ends(
    session: requests.Session, server: Downstream, provider: breaker.Provider
) -> None:
    with session.get(f"{server.url}/big/200000", stream=True) as response:
        assert calls(provider, server)["success"] == 0  # headers only, so far
        assert sum(len(chunk) for chunk in response.iter_content(65536)) == 200_000
        assert calls(provider, server)["success"] == 1
    assert calls(provider, server)["success"] == 1  # closing after the end counts nothing
    with (
        session.get(f"{server.url}/short/200", stream=True) as response,
        pytest.raises(requests.exceptions.ChunkedEncodingError),
    ):
        list(response.iter_lines())
    assert calls(provider, server)["failure"] == 1


@pytest.mark.parametrize(("status", "outcome"), [(200, "success"), (503, "failure")])
def test_a_stream_the_caller_closes_early_counts_by_its_status(
    status: int,
    outcome: str,
    session: requests.Session,
    server: Downstream,
    provider: breaker.Provider,
) -> None:
    path = "/big/1000000" if status == 200 else "/stall/503"
    for _ in range(3):
        with session.get(server.url + path, stream=True) as response:
            assert response.status_code == status
            next(response.iter_content(10))
    stats = calls(provider, server)
    assert stats[outcome] == 3 and stats["success"] + stats["failure"] == 3


def test_an_unpickled_response_has_nothing_to_settle(
    session: requests.Session, server: Downstream, provider: breaker.Provider
) -> None:
    response = session.get(server.url + "/status/200")
    copy = pickle.loads(pickle.dumps(response))
    assert copy.text == "answered 200" and list(copy.iter_content(5))
    copy.close()
    assert calls(provider, server)["success"] == 1
