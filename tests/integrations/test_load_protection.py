"""Load protection through the client integrations and the web helpers: the policy's timeout
becomes the client's, a full bulkhead is the client's own kind of error, and a 503."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import breaker
from breaker import BulkheadFullError, MemoryCoord, Policy
from breaker.testing import adopt

from ..helpers import PREFIX
from .servers import downstream

httpx = pytest.importorskip("httpx")
requests = pytest.importorskip("requests")
grpc = pytest.importorskip("grpc")

from breaker.integrations.grpc import (  # noqa: E402
    BreakerInterceptor,
    BulkheadFullAioRpcError,
    BulkheadFullRpcError,
    aio_interceptors,
)
from breaker.integrations.httpx import (  # noqa: E402
    AsyncBreakerTransport,
    BreakerTransport,
    BulkheadFullTransportError,
)
from breaker.integrations.requests import BreakerAdapter, BulkheadFullConnectionError  # noqa: E402

from .test_grpc import HANG, UNARY, Server  # noqa: E402


@pytest.fixture
def coord() -> MemoryCoord:
    return MemoryCoord()


@pytest.fixture
def provider(coord: MemoryCoord) -> Iterator[breaker.Provider]:
    with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:
        yield provider


def set_policy(coord: MemoryCoord, name: str, document: str) -> None:
    coord.put(PREFIX + name + ".json", document)


class TestTimeoutFromConsul:
    def test_httpx_requests_time_out_at_the_policys_timeout(
        self, coord: MemoryCoord, provider: breaker.Provider
    ) -> None:
        with downstream() as server:
            name = server.url.removeprefix("http://")
            set_policy(coord, name, '{"timeout": "200ms"}')
            with httpx.Client(transport=BreakerTransport(provider=provider), timeout=30) as c:
                t0 = time.monotonic()
                with pytest.raises(httpx.ReadTimeout):
                    c.get(server.url + "/stall/200").read()
                assert time.monotonic() - t0 < 5  # the operator's 200 ms, not the caller's 30 s
                server.release.set()
            assert provider.get_breaker(name).stats().calls["failure"] == 1

    def test_a_smaller_timeout_of_the_caller_stands(self, provider: breaker.Provider) -> None:
        seen: list[Any] = []

        def handle(request: httpx.Request) -> httpx.Response:
            seen.append(request.extensions["timeout"])
            return httpx.Response(200)

        adopt(provider.get_breaker("api.example.com:443"), Policy(timeout=2))
        transport = BreakerTransport(httpx.MockTransport(handle), provider=provider)
        with httpx.Client(transport=transport, timeout=httpx.Timeout(5, connect=1)) as client:
            client.get("https://api.example.com/")
        assert seen == [{"connect": 1, "read": 2, "write": 2, "pool": 2}]

    def test_async_httpx_too(self, provider: breaker.Provider) -> None:
        seen: list[Any] = []

        async def handle(request: httpx.Request) -> httpx.Response:
            seen.append(request.extensions["timeout"])
            return httpx.Response(200)

        adopt(provider.get_breaker("api.example.com:443"), Policy(timeout=2))

        async def scenario() -> None:
            transport = AsyncBreakerTransport(httpx.MockTransport(handle), provider=provider)
            async with httpx.AsyncClient(transport=transport) as client:
                await client.get("https://api.example.com/")

        asyncio.run(scenario())
        assert seen == [{"connect": 2, "read": 2, "write": 2, "pool": 2}]

    def test_requests_too_and_shadow_mode_leaves_timeouts_alone(
        self, coord: MemoryCoord, provider: breaker.Provider
    ) -> None:
        with downstream() as server, requests.Session() as session:
            session.mount("http://", BreakerAdapter(provider=provider))
            name = server.url.removeprefix("http://")
            set_policy(coord, name, '{"timeout": "200ms"}')
            t0 = time.monotonic()
            with pytest.raises(requests.exceptions.ConnectionError):
                session.get(server.url + "/stall/200", timeout=(30, 30))
            assert time.monotonic() - t0 < 5
            set_policy(coord, name, '{"timeout": "200ms", "mode": "shadow"}')
            t0 = time.monotonic()
            with pytest.raises(requests.exceptions.ConnectionError):
                session.get(server.url + "/stall/200", timeout=(30, 0.6))
            assert time.monotonic() - t0 >= 0.5  # the caller's own timeout, not the policy's
            server.release.set()

    def test_grpc_deadlines_too(self, coord: MemoryCoord, provider: breaker.Provider) -> None:
        server = Server()
        target = f"127.0.0.1:{server.port}"
        try:
            set_policy(coord, "grpc-hang", '{"timeout": "200ms"}')
            with grpc.insecure_channel(target) as raw:
                channel = grpc.intercept_channel(
                    raw, BreakerInterceptor(name="grpc-hang", provider=provider)
                )
                with pytest.raises(grpc.RpcError) as info:
                    channel.unary_unary(HANG)(b"x", timeout=30)
                assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert provider.get_breaker("grpc-hang").stats().calls["failure"] == 1
        finally:
            server.close()


class TestBulkheadFull:
    @pytest.fixture(autouse=True)
    def _one_at_a_time(self, coord: MemoryCoord) -> None:
        set_policy(coord, "api.example.com:443", '{"maxConcurrentCalls": 1}')
        set_policy(coord, "grpc", '{"maxConcurrentCalls": 1}')

    def hold(self, provider: breaker.Provider, name: str) -> breaker.Guard:
        return provider.guard(name).__enter__()

    def test_httpx(self, provider: breaker.Provider) -> None:
        held = self.hold(provider, "api.example.com:443")
        transport = BreakerTransport(
            httpx.MockTransport(lambda r: httpx.Response(200)), provider=provider
        )
        with httpx.Client(transport=transport) as client:
            with pytest.raises(BulkheadFullTransportError) as info:
                client.get("https://api.example.com/")
            assert isinstance(info.value, httpx.TransportError)
            assert isinstance(info.value, BulkheadFullError)
            assert info.value.request.url.host == "api.example.com"
            held.__exit__(None, None, None)
            assert client.get("https://api.example.com/").status_code == 200

    def test_async_httpx_waits_for_a_slot_without_blocking_its_loop(
        self, coord: MemoryCoord, provider: breaker.Provider
    ) -> None:
        set_policy(
            coord, "api.example.com:443", '{"maxConcurrentCalls": 1, "maxWaitDuration": "5s"}'
        )

        async def scenario() -> list[int]:
            gate = asyncio.Event()

            async def handle(request: httpx.Request) -> httpx.Response:
                await gate.wait()
                return httpx.Response(200)

            transport = AsyncBreakerTransport(httpx.MockTransport(handle), provider=provider)
            async with httpx.AsyncClient(transport=transport) as client:
                first = asyncio.ensure_future(client.get("https://api.example.com/1"))
                second = asyncio.ensure_future(client.get("https://api.example.com/2"))
                for _ in range(20):  # the loop runs while the second waits for the slot
                    await asyncio.sleep(0)
                assert not first.done() and not second.done()
                gate.set()
                return [(await first).status_code, (await second).status_code]

        assert asyncio.run(scenario()) == [200, 200]

    def test_requests(self, provider: breaker.Provider) -> None:
        held = self.hold(provider, "api.example.com:443")
        with requests.Session() as session:
            session.mount("https://", BreakerAdapter(provider=provider))
            with pytest.raises(BulkheadFullConnectionError) as info:
                session.get("https://api.example.com/")
            assert isinstance(info.value, requests.exceptions.ConnectionError)
            assert info.value.request is not None
        held.__exit__(None, None, None)

    def test_grpc_and_grpc_aio(self, provider: breaker.Provider) -> None:
        server = Server()
        target = f"127.0.0.1:{server.port}"
        try:
            held = self.hold(provider, "grpc")
            with grpc.insecure_channel(target) as raw:
                channel = grpc.intercept_channel(
                    raw, BreakerInterceptor(name="grpc", provider=provider)
                )
                with pytest.raises(BulkheadFullRpcError) as info:
                    channel.unary_unary(UNARY)(b"x")
                assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                future = channel.unary_unary(UNARY).future(b"x")
                assert isinstance(future.exception(), BulkheadFullRpcError)

            async def aio() -> None:
                interceptors = aio_interceptors(name="grpc", provider=provider)
                async with grpc.aio.insecure_channel(target, interceptors=interceptors) as ch:
                    with pytest.raises(BulkheadFullAioRpcError) as info:
                        await ch.unary_unary(UNARY)(b"x")
                    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

            asyncio.run(aio())
            held.__exit__(None, None, None)
        finally:
            server.close()


def test_the_web_helpers_answer_a_full_bulkhead_with_503(provider: breaker.Provider) -> None:
    pytest.importorskip("starlette")
    flask = pytest.importorskip("flask")
    from starlette.applications import Starlette
    from starlette.routing import Route

    with warnings.catch_warnings():  # Starlette 1.x prefers httpx2 for its TestClient
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from starlette.testclient import TestClient

    from breaker.integrations import flask as flask_helpers
    from breaker.integrations import starlette as starlette_helpers

    def full(*_: object) -> Any:
        raise BulkheadFullError("payments", 10, 0.0)

    app = Starlette(routes=[Route("/pay", full)])
    starlette_helpers.install(app, provider=provider)
    response = TestClient(app).get("/pay")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"

    flask_app = flask.Flask("load")
    flask_app.add_url_rule("/pay", "pay", full)
    flask_helpers.install(flask_app, provider=provider)
    response = flask_app.test_client().get("/pay")
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
