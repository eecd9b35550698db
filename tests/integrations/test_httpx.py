"""breaker.integrations.httpx against httpx itself: MockTransport and a local server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

import breaker
from breaker.testing import FakeClock

httpx = pytest.importorskip("httpx")

from breaker.integrations.httpx import (  # noqa: E402
    AsyncBreakerTransport,
    BreakerOpenTransportError,
    BreakerTransport,
    default_name,
)

from ..helpers import PREFIX  # noqa: E402
from .servers import downstream, refused_url  # noqa: E402

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Backend:
    """A MockTransport handler: answers with ``status``, or raises ``error``; counts requests."""

    def __init__(self) -> None:
        self.status = 200
        self.error: Exception | None = None
        self.hits = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.hits += 1
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status, text=f"answered {self.status}")

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def async_transport(self) -> httpx.MockTransport:
        async def handle(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(0)
            return self(request)

        return httpx.MockTransport(handle)


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
def client(backend: Backend, provider: breaker.Provider) -> Iterator[httpx.Client]:
    with httpx.Client(transport=BreakerTransport(backend.transport(), provider=provider)) as c:
        yield c


def calls(provider: breaker.Provider, name: str) -> dict[str, int]:
    return dict(provider.get_breaker(name).stats().calls)


def test_a_success_counts_for_the_downstreams_breaker(
    client: httpx.Client, provider: breaker.Provider
) -> None:
    response = client.get("https://api.example.com/orders/1")
    assert response.status_code == 200 and response.text == "answered 200"
    assert calls(provider, "api.example.com:443")["success"] == 1
    assert list(provider.breakers()) == ["api.example.com:443"]


def test_a_5xx_counts_as_a_failure_and_is_still_returned(
    client: httpx.Client, backend: Backend, provider: breaker.Provider
) -> None:
    backend.status = 503
    for _ in range(3):
        assert client.get("https://api.example.com/").status_code == 503
    brk = provider.get_breaker("api.example.com:443")
    assert brk.stats().calls["failure"] == 3
    assert brk.state is breaker.State.OPEN


def test_a_4xx_counts_as_a_success(
    client: httpx.Client, backend: Backend, provider: breaker.Provider
) -> None:
    backend.status = 404
    for _ in range(4):
        assert client.get("https://api.example.com/").status_code == 404
    assert provider.get_breaker("api.example.com:443").state is breaker.State.CLOSED


def test_transport_errors_count_and_propagate(
    client: httpx.Client, backend: Backend, provider: breaker.Provider
) -> None:
    backend.error = httpx.ConnectError("connection refused")
    for _ in range(3):
        with pytest.raises(httpx.ConnectError):
            client.get("https://api.example.com/")
    assert provider.get_breaker("api.example.com:443").state is breaker.State.OPEN


def test_a_rejection_is_both_errors_and_never_reaches_the_downstream(
    client: httpx.Client, backend: Backend, provider: breaker.Provider
) -> None:
    backend.status = 500
    for _ in range(3):
        client.get("https://api.example.com/")
    hits = backend.hits
    with pytest.raises(httpx.HTTPError) as caught:
        client.get("https://api.example.com/orders/2")
    exc = caught.value
    assert isinstance(exc, BreakerOpenTransportError)
    assert isinstance(exc, breaker.BreakerOpenError)
    assert isinstance(exc, httpx.TransportError)
    assert exc.name == "api.example.com:443"
    assert exc.state is breaker.State.OPEN
    assert exc.retry_after == 10.0
    assert str(exc.request.url) == "https://api.example.com/orders/2"
    assert str(exc) == "breaker 'api.example.com:443' is open; retry in 10.000s"
    assert backend.hits == hits
    assert calls(provider, "api.example.com:443")["rejected"] == 1


def test_the_breaker_closes_again_after_trial_calls(
    client: httpx.Client, backend: Backend, provider: breaker.Provider, clock: FakeClock
) -> None:
    backend.status = 502
    for _ in range(3):
        client.get("https://api.example.com/")
    backend.status = 200
    clock.advance(10)
    for _ in range(2):
        assert client.get("https://api.example.com/").status_code == 200
    assert provider.get_breaker("api.example.com:443").state is breaker.State.CLOSED


def test_each_downstream_has_its_own_breaker(
    client: httpx.Client, backend: Backend, provider: breaker.Provider
) -> None:
    backend.status = 500
    for _ in range(3):
        client.get("https://api.example.com/")
    backend.status = 200
    assert client.get("http://other.example.com:8080/").status_code == 200
    assert provider.get_breaker("api.example.com:443").state is breaker.State.OPEN
    assert provider.get_breaker("other.example.com:8080").state is breaker.State.CLOSED


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://api.example.com/x", "api.example.com:443"),
        ("http://API.Example.com/x", "api.example.com:80"),
        ("http://api.example.com:8080/x?y=1", "api.example.com:8080"),
        ("http://127.0.0.1:9/", "127.0.0.1:9"),
        ("http://[::1]:8080/", "[::1]:8080"),
    ],
)
def test_default_names_are_host_and_port(url: str, name: str) -> None:
    assert default_name(httpx.Request("GET", url)) == name


def test_a_fixed_name_puts_every_request_under_one_breaker(
    backend: Backend, provider: breaker.Provider
) -> None:
    transport = BreakerTransport(backend.transport(), provider=provider, name="catalog")
    with httpx.Client(transport=transport) as client:
        client.get("https://a.example.com/")
        client.get("https://b.example.com/")
    assert list(provider.breakers()) == ["catalog"]
    assert calls(provider, "catalog")["success"] == 2


def test_a_name_function_chooses_per_request(backend: Backend, provider: breaker.Provider) -> None:
    def by_first_segment(request: httpx.Request) -> str:
        return "api/" + request.url.path.split("/")[1]

    transport = BreakerTransport(backend.transport(), provider=provider, name=by_first_segment)
    with httpx.Client(transport=transport) as client:
        client.get("https://api.example.com/orders/1")
        client.get("https://api.example.com/users/1")
    assert sorted(provider.breakers()) == ["api/orders", "api/users"]


@pytest.mark.parametrize(
    "bad", ["a//b", " payments", "payments ", "a/./b", "../x", "a/..", "", "/"]
)
def test_names_that_cannot_be_policy_keys_are_refused(bad: str, backend: Backend) -> None:
    with pytest.raises(ValueError, match="breaker"):
        BreakerTransport(backend.transport(), name=bad)
    transport = BreakerTransport(backend.transport(), name=lambda request: bad)
    with (
        httpx.Client(transport=transport) as client,
        pytest.raises(ValueError, match="breaker"),
    ):
        client.get("https://api.example.com/")
    assert backend.hits == 0


def test_a_grpc_style_name_keeps_its_leading_slash(
    backend: Backend, provider: breaker.Provider
) -> None:
    transport = BreakerTransport(backend.transport(), provider=provider, name="/svc/orders")
    with httpx.Client(transport=transport) as client:
        client.get("https://api.example.com/")
    assert list(provider.breakers()) == ["/svc/orders"]


def test_failure_if_replaces_the_default_rule(backend: Backend, provider: breaker.Provider) -> None:
    def throttled_or_5xx(response: httpx.Response) -> bool:
        return response.status_code == 429 or response.status_code >= 500

    transport = BreakerTransport(
        backend.transport(), provider=provider, name="api", failure_if=throttled_or_5xx
    )
    backend.status = 429
    with httpx.Client(transport=transport) as client:
        for _ in range(3):
            assert client.get("https://api.example.com/").status_code == 429
    assert provider.get_breaker("api").state is breaker.State.OPEN


def test_a_failure_if_that_raises_counts_a_failure(
    backend: Backend, provider: breaker.Provider, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(response: httpx.Response) -> bool:
        raise RuntimeError("bug in failure_if")

    transport = BreakerTransport(
        backend.transport(), provider=provider, name="api", failure_if=broken
    )
    with httpx.Client(transport=transport) as client:
        assert client.get("https://api.example.com/").status_code == 200
    assert calls(provider, "api")["failure"] == 1
    assert "failure_if" in caplog.text


def test_without_a_provider_the_default_provider_is_used_at_request_time(
    backend: Backend, provider: breaker.Provider
) -> None:
    with httpx.Client(transport=BreakerTransport(backend.transport())) as client:
        with breaker.set_default_provider(provider):
            client.get("https://api.example.com/")
        assert calls(provider, "api.example.com:443")["success"] == 1


def test_without_any_provider_requests_run_unguarded_with_one_warning(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.status = 500
    with (
        caplog.at_level(logging.WARNING, logger="breaker"),
        httpx.Client(transport=BreakerTransport(backend.transport())) as client,
    ):
        for _ in range(5):
            assert client.get("https://api.example.com/").status_code == 500
    assert backend.hits == 5
    warnings = [r for r in caplog.records if "no default provider" in r.getMessage()]
    assert len(warnings) == 1


def test_a_rejection_from_a_wrapped_breaker_transport_passes_through(
    backend: Backend, provider: breaker.Provider
) -> None:
    inner = BreakerTransport(backend.transport(), provider=provider, name="inner")
    breaker.testing.force_state(provider.get_breaker("inner"), "open")
    outer = BreakerTransport(inner, provider=provider, name="outer")
    with (
        httpx.Client(transport=outer) as client,
        pytest.raises(BreakerOpenTransportError) as caught,
    ):
        client.get("https://api.example.com/")
    assert caught.value.name == "inner"
    assert calls(provider, "outer")["failure"] == 1


def test_a_forced_open_breaker_says_so(
    backend: Backend, provider: breaker.Provider, coord: breaker.MemoryCoord
) -> None:
    coord.put(PREFIX + "api.json", '{"mode": "forced-open"}')
    transport = BreakerTransport(backend.transport(), provider=provider, name="api")
    with (
        httpx.Client(transport=transport) as client,
        pytest.raises(BreakerOpenTransportError) as caught,
    ):
        client.get("https://api.example.com/")
    assert "forced open" in str(caught.value)
    assert caught.value.args[3] is breaker.Mode.FORCED_OPEN


class Spy(httpx.BaseTransport):
    def __init__(self) -> None:
        self.events: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200)

    def __enter__(self) -> Spy:
        self.events.append("enter")
        return self

    def close(self) -> None:
        self.events.append("close")


def test_close_and_context_management_reach_the_wrapped_transport() -> None:
    spy = Spy()
    with httpx.Client(transport=BreakerTransport(spy)):
        pass
    assert spy.events == ["enter", "close"]
    spy = Spy()
    BreakerTransport(spy).close()
    assert spy.events == ["close"]


def test_against_a_local_server_with_httpx_own_transport(provider: breaker.Provider) -> None:
    with (
        downstream() as server,
        httpx.Client(transport=BreakerTransport(provider=provider)) as client,
    ):
        name = f"127.0.0.1:{server.server_address[1]}"
        assert client.get(server.url + "/status/200").text == "answered 200"
        for _ in range(3):
            assert client.get(server.url + "/status/500").status_code == 500
        with pytest.raises(BreakerOpenTransportError):
            client.get(server.url + "/status/200")
        assert server.hits == 4
    assert provider.get_breaker(name).stats().calls["rejected"] == 1


def test_refused_connections_trip_the_breaker(provider: breaker.Provider) -> None:
    url = refused_url()
    with httpx.Client(transport=BreakerTransport(provider=provider)) as client:
        for _ in range(3):
            with pytest.raises(httpx.ConnectError):
                client.get(url)
        with pytest.raises(BreakerOpenTransportError):
            client.get(url)


# -- the outcome settles with the body ---------------------------------------------------------

CUTS = ["short", "chunks-cut", "reset"]


@pytest.mark.parametrize("cut", CUTS)
def test_a_body_cut_short_is_a_failure(cut: str, provider: breaker.Provider) -> None:
    with (
        downstream() as server,
        httpx.Client(transport=BreakerTransport(provider=provider, name="api")) as client,
    ):
        for _ in range(3):
            with pytest.raises(httpx.TransportError):  # RemoteProtocolError, ReadError
                client.get(f"{server.url}/{cut}/200")
        with pytest.raises(BreakerOpenTransportError):
            client.get(f"{server.url}/status/200")
        assert server.hits == 3
    assert calls(provider, "api")["failure"] == 3
    assert calls(provider, "api")["success"] == 0


def test_a_streamed_body_cut_short_is_a_failure(provider: breaker.Provider) -> None:
    with (
        downstream() as server,
        httpx.Client(transport=BreakerTransport(provider=provider, name="api")) as client,
        client.stream("GET", f"{server.url}/short/200") as response,
    ):
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()
    assert calls(provider, "api")["failure"] == 1


def test_the_outcome_waits_for_the_body(provider: breaker.Provider) -> None:
    with (
        downstream() as server,
        httpx.Client(transport=BreakerTransport(provider=provider, name="api")) as client,
    ):
        with client.stream("GET", f"{server.url}/big/200000") as response:
            assert calls(provider, "api")["success"] == 0  # headers only, so far
            assert len(response.read()) == 200_000
            assert calls(provider, "api")["success"] == 1
        assert calls(provider, "api")["success"] == 1  # closing after the end counts nothing


@pytest.mark.parametrize(("status", "outcome"), [(200, "success"), (503, "failure")])
def test_a_stream_the_caller_closes_early_counts_by_its_status(
    status: int, outcome: str, provider: breaker.Provider
) -> None:
    path = "/big/1000000" if status == 200 else "/stall/503"
    with (
        downstream() as server,
        httpx.Client(transport=BreakerTransport(provider=provider, name="api")) as client,
    ):
        for _ in range(3):
            with client.stream("GET", server.url + path) as response:
                assert response.status_code == status
                next(response.iter_raw(10))
            # leaving the block closed the response before its body ended
        stats = calls(provider, "api")
        assert stats[outcome] == 3 and stats["success"] + stats["failure"] == 3


# -- async ---------------------------------------------------------------------------------


def test_async_success_failure_and_rejection(backend: Backend, provider: breaker.Provider) -> None:
    async def scenario() -> None:
        transport = AsyncBreakerTransport(backend.async_transport(), provider=provider)
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get("https://api.example.com/")).status_code == 200
            backend.status = 503
            for _ in range(3):
                assert (await client.get("https://api.example.com/")).status_code == 503
            hits = backend.hits
            with pytest.raises(httpx.TransportError) as caught:
                await client.get("https://api.example.com/")
            assert isinstance(caught.value, breaker.BreakerOpenError)
            assert caught.value.request.url.host == "api.example.com"
            assert backend.hits == hits

    run(scenario())
    assert calls(provider, "api.example.com:443") == {
        "success": 1,
        "failure": 3,
        "slow": 0,
        "timeout": 0,
        "excluded": 0,
        "rejected": 1,
        "bulkhead_full": 0,
        "cancelled": 0,
    }


def test_async_transport_errors_count(backend: Backend, provider: breaker.Provider) -> None:
    backend.error = httpx.ReadTimeout("timed out")

    async def scenario() -> None:
        transport = AsyncBreakerTransport(backend.async_transport(), provider=provider, name="api")
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):
                with pytest.raises(httpx.ReadTimeout):
                    await client.get("https://api.example.com/")

    run(scenario())
    assert provider.get_breaker("api").state is breaker.State.OPEN


def test_an_async_request_cancelled_in_flight_counts_as_neither(provider: breaker.Provider) -> None:
    async def scenario() -> None:
        started = asyncio.Event()

        async def hang(request: httpx.Request) -> httpx.Response:
            started.set()
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        transport = AsyncBreakerTransport(httpx.MockTransport(hang), provider=provider, name="api")
        async with httpx.AsyncClient(transport=transport) as client:
            task = asyncio.ensure_future(client.get("https://api.example.com/"))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(scenario())
    assert calls(provider, "api")["cancelled"] == 1


def test_async_default_provider_and_close(backend: Backend, provider: breaker.Provider) -> None:
    closed: list[str] = []

    class Closing(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

        async def aclose(self) -> None:
            closed.append("aclose")

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=AsyncBreakerTransport(Closing())) as client:
            with breaker.set_default_provider(provider):
                await client.get("https://api.example.com/")

    run(scenario())
    assert closed == ["aclose"]
    assert calls(provider, "api.example.com:443")["success"] == 1


def test_async_against_a_local_server_with_httpx_own_transport(provider: breaker.Provider) -> None:
    async def scenario(url: str) -> None:
        async with httpx.AsyncClient(transport=AsyncBreakerTransport(provider=provider)) as client:
            for _ in range(3):
                assert (await client.get(url + "/status/503")).status_code == 503
            with pytest.raises(BreakerOpenTransportError):
                await client.get(url + "/status/200")

    with downstream() as server:
        run(scenario(server.url))
        assert server.hits == 3


def test_the_rejection_can_be_built_like_breaker_open_error() -> None:
    exc = BreakerOpenTransportError("api", breaker.State.OPEN, 1.5)
    assert (exc.name, exc.state, exc.retry_after) == ("api", breaker.State.OPEN, 1.5)
    with pytest.raises(RuntimeError):
        exc.request  # noqa: B018 - httpx's own error when no request is attached


@pytest.mark.parametrize("cut", CUTS)
def test_async_a_body_cut_short_is_a_failure(cut: str, provider: breaker.Provider) -> None:
    async def scenario(url: str) -> None:
        transport = AsyncBreakerTransport(provider=provider, name="api")
        async with httpx.AsyncClient(transport=transport) as client:
            for _ in range(3):
                with pytest.raises(httpx.TransportError):
                    await client.get(f"{url}/{cut}/200")
            with pytest.raises(BreakerOpenTransportError):
                await client.get(f"{url}/status/200")

    with downstream() as server:
        run(scenario(server.url))
    assert calls(provider, "api")["failure"] == 3


def test_async_a_stream_closed_early_is_not_a_failure(provider: breaker.Provider) -> None:
    async def scenario(url: str) -> None:
        transport = AsyncBreakerTransport(provider=provider, name="api")
        async with httpx.AsyncClient(transport=transport) as client:
            async with client.stream("GET", f"{url}/big/1000000") as response:
                assert calls(provider, "api")["success"] == 0
                async for _ in response.aiter_raw(10):
                    break
            async with client.stream("GET", f"{url}/big/1000") as response:
                await response.aread()

    with downstream() as server:
        run(scenario(server.url))
    assert calls(provider, "api")["success"] == 2
    assert calls(provider, "api")["failure"] == 0


def test_async_a_body_read_cancelled_counts_as_neither(provider: breaker.Provider) -> None:
    async def scenario(url: str) -> None:
        transport = AsyncBreakerTransport(provider=provider, name="api")
        headers = asyncio.Event()

        async def read() -> None:
            async with client.stream("GET", f"{url}/stall/200") as response:
                headers.set()
                await response.aread()  # 10 bytes of 1000, then the server stalls

        async with httpx.AsyncClient(transport=transport) as client:
            task = asyncio.ensure_future(read())
            await headers.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with downstream() as server:
        run(scenario(server.url))
    assert calls(provider, "api")["cancelled"] == 1
    assert calls(provider, "api")["failure"] == 0
