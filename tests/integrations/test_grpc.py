"""breaker.integrations.grpc against real in-process gRPC servers, sync and aio.

The servers use generic handlers and plain bytes, so no protobuf code is generated.
A request ``b"code:NAME"`` makes a method end with status NAME (after its responses,
for streams); anything else is echoed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

import pytest

import breaker
from breaker.testing import FakeClock, force_state

grpc = pytest.importorskip("grpc")

from breaker.integrations.grpc import (  # noqa: E402
    FAILURE_CODES,
    BreakerInterceptor,
    BreakerOpenAioRpcError,
    BreakerOpenRpcError,
    _AioInterceptor,
    aio_insecure_channel,
    aio_interceptors,
    aio_secure_channel,
    default_name,
    insecure_channel,
    secure_channel,
)

from ..helpers import PREFIX, eventually  # noqa: E402

T = TypeVar("T")
SERVICE = "test.Echo"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"
COLLECT = f"/{SERVICE}/Collect"
CHAT = f"/{SERVICE}/Chat"
ENDLESS = f"/{SERVICE}/Endless"
HANG = f"/{SERVICE}/Hang"


def status(request: bytes) -> Any:
    """Return the status a request asks for, or None."""
    if request.startswith(b"code:"):
        return grpc.StatusCode[request[5:].decode()]
    return None


# -- the sync server ---------------------------------------------------------------------------


class Server:
    """An in-process grpc.server on 127.0.0.1 that counts the calls it receives, by method."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="test-grpc")
        self._server = grpc.server(self._pool)
        self._server.add_generic_rpc_handlers((self._handler(),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def close(self) -> None:
        self.stop.set()
        self._server.stop(None).wait()
        self._pool.shutdown(wait=True)

    def _handler(self) -> Any:
        def unary(request: bytes, context: Any) -> bytes:
            self.hits[UNARY] += 1
            code = status(request)
            if code is not None:
                context.abort(code, f"asked for {code.name}")
            return b"echo:" + request

        def stream(request: bytes, context: Any) -> Iterator[bytes]:
            self.hits[STREAM] += 1
            yield from (b"one", b"two")
            code = status(request)
            if code is not None:
                context.abort(code, f"asked for {code.name}")
            yield b"three"

        def collect(requests: Iterator[bytes], context: Any) -> bytes:
            self.hits[COLLECT] += 1
            received = list(requests)
            for request in received:
                code = status(request)
                if code is not None:
                    context.abort(code, f"asked for {code.name}")
            return b",".join(received)

        def chat(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
            self.hits[CHAT] += 1
            for request in requests:
                code = status(request)
                if code is not None:
                    context.abort(code, f"asked for {code.name}")
                yield b"echo:" + request

        def endless(request: bytes, context: Any) -> Iterator[bytes]:
            self.hits[ENDLESS] += 1
            while context.is_active() and not self.stop.is_set():
                yield b"tick"
                time.sleep(0.001)

        def hang(request: bytes, context: Any) -> bytes:
            self.hits[HANG] += 1
            while context.is_active() and not self.stop.wait(0.005):
                pass
            return b"late"

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(unary),
                "Stream": grpc.unary_stream_rpc_method_handler(stream),
                "Collect": grpc.stream_unary_rpc_method_handler(collect),
                "Chat": grpc.stream_stream_rpc_method_handler(chat),
                "Endless": grpc.unary_stream_rpc_method_handler(endless),
                "Hang": grpc.unary_unary_rpc_method_handler(hang),
            },
        )


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _fresh_counts(request: pytest.FixtureRequest) -> None:
    if "server" in request.fixturenames:
        request.getfixturevalue("server").hits.clear()


@pytest.fixture
def target(server: Server) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture
def n(target: str) -> Callable[[str], str]:
    """Return the function that names the breaker of a method on the server's channel."""
    return lambda method: default_name(target, method)


@pytest.fixture
def connect(target: str) -> Iterator[Callable[..., Any]]:
    """Return a function that opens an intercepted channel to the server (closed afterwards)."""
    channels: list[Any] = []

    def open_channel(**kwargs: Any) -> Any:
        raw = grpc.insecure_channel(target)
        channels.append(raw)
        return grpc.intercept_channel(raw, BreakerInterceptor(target=target, **kwargs))

    yield open_channel
    for channel in channels:
        channel.close()


def calls(provider: breaker.Provider, name: str) -> dict[str, int]:
    return {k: v for k, v in provider.get_breaker(name).stats().calls.items() if v}


def finished(future: Any) -> None:
    """Wait until ``future``'s done callbacks ran (ours was registered first, so it ran)."""
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    assert done.wait(5)


def test_a_unary_call_counts_for_its_methods_breaker(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    stub = connect(provider=provider).unary_unary(UNARY)
    assert stub(b"hi") == b"echo:hi"
    response, call = stub.with_call(b"there")
    assert response == b"echo:there" and call.code() is grpc.StatusCode.OK
    assert list(provider.breakers()) == [n(UNARY)]
    assert calls(provider, n(UNARY)) == {"success": 2}


def test_the_breaker_of_a_target_and_method_reads_its_policy(
    target: str,
    connect: Callable[..., Any],
    provider: breaker.Provider,
    coord: breaker.MemoryCoord,
) -> None:
    name = f"grpc:{target}/test.Echo/Unary"
    coord.put(PREFIX + name + ".json", '{"failureThreshold": 1}')
    stub = connect(provider=provider).unary_unary(UNARY)
    with pytest.raises(grpc.RpcError):
        stub(b"code:UNAVAILABLE")
    assert list(provider.breakers()) == [name]
    assert provider.get_breaker(name).state is breaker.State.OPEN


@pytest.mark.parametrize("code", sorted(FAILURE_CODES, key=lambda c: c.name))
def test_the_default_failure_codes_trip_the_breaker(
    n: Callable[[str], str],
    code: Any,
    connect: Callable[..., Any],
    provider: breaker.Provider,
    server: Server,
) -> None:
    stub = connect(provider=provider).unary_unary(UNARY)
    for _ in range(3):
        with pytest.raises(grpc.RpcError) as caught:
            stub(f"code:{code.name}".encode())
        assert caught.value.code() is code
    assert provider.get_breaker(n(UNARY)).state is breaker.State.OPEN
    with pytest.raises(grpc.RpcError) as caught:
        stub(b"hi")
    exc = caught.value
    assert isinstance(exc, BreakerOpenRpcError)
    assert isinstance(exc, breaker.BreakerOpenError)
    assert isinstance(exc, grpc.Call) and isinstance(exc, grpc.Future)
    assert exc.code() is grpc.StatusCode.UNAVAILABLE
    assert exc.details() == f"breaker {n(UNARY)!r} is open; retry in 10.000s"
    assert (exc.name, exc.state, exc.retry_after) == (n(UNARY), breaker.State.OPEN, 10.0)
    assert server.hits[UNARY] == 3


@pytest.mark.parametrize("code", ["NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED"])
def test_other_codes_mean_the_server_answered(
    n: Callable[[str], str], code: str, connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    stub = connect(provider=provider).unary_unary(UNARY)
    for _ in range(4):
        with pytest.raises(grpc.RpcError):
            stub(f"code:{code}".encode())
    assert calls(provider, n(UNARY)) == {"success": 4}


def test_a_deadline_exceeded_counts_as_a_failure(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    stub = connect(provider=provider).unary_unary(HANG)
    with pytest.raises(grpc.RpcError) as caught:
        stub(b"", timeout=0.05)
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert calls(provider, n(HANG)) == {"failure": 1}


def test_futures_settle_when_they_complete(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    stub = connect(provider=provider).unary_unary(UNARY)
    ok = stub.future(b"a")
    assert ok.result(timeout=5) == b"echo:a"
    finished(ok)
    failed = stub.future(b"code:UNAVAILABLE")
    assert failed.exception(timeout=5).code() is grpc.StatusCode.UNAVAILABLE
    finished(failed)
    assert calls(provider, n(UNARY)) == {"success": 1, "failure": 1}


def test_a_rejected_future_is_already_failed(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider, server: Server
) -> None:
    stub = connect(provider=provider).unary_unary(UNARY)
    force_state(provider.get_breaker(n(UNARY)), "open")
    future = stub.future(b"a")
    assert isinstance(future, BreakerOpenRpcError)
    assert future.done() and not future.running() and not future.cancelled()
    assert future.exception() is future
    assert future.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(BreakerOpenRpcError):
        future.result()
    seen: list[Any] = []
    future.add_done_callback(seen.append)
    assert seen == [future]
    assert future.traceback() is not None  # result() raised it
    assert not future.is_active() and future.time_remaining() is None
    assert future.initial_metadata() == () and future.trailing_metadata() == ()
    assert not future.cancel() and not future.add_callback(lambda: None)
    assert server.hits[UNARY] == 0
    assert calls(provider, n(UNARY)) == {"rejected": 1}


def test_a_cancelled_future_counts_as_neither(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    future = connect(provider=provider).unary_unary(HANG).future(b"")
    assert future.cancel()
    eventually(lambda: calls(provider, n(HANG)) == {"cancelled": 1})


def test_a_response_stream_settles_when_it_ends(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    stub = connect(provider=provider).unary_stream(STREAM)
    responses = stub(b"x")
    assert list(responses) == [b"one", b"two", b"three"]
    finished(responses)
    failing = stub(b"code:UNAVAILABLE")
    received = []
    with pytest.raises(grpc.RpcError) as caught:
        for item in failing:
            received.append(item)
    assert received == [b"one", b"two"]
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finished(failing)
    assert calls(provider, n(STREAM)) == {"success": 1, "failure": 1}


def test_a_rejected_response_stream_raises_when_read(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider, server: Server
) -> None:
    stub = connect(provider=provider).unary_stream(STREAM)
    force_state(provider.get_breaker(n(STREAM)), "open")
    responses = stub(b"x")
    assert responses.code() is grpc.StatusCode.UNAVAILABLE
    with pytest.raises(BreakerOpenRpcError):
        for _ in responses:
            pass
    assert server.hits[STREAM] == 0


def test_a_stream_cancelled_by_the_client_counts_as_neither(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    responses = connect(provider=provider).unary_stream(ENDLESS)(b"")
    assert next(responses) == b"tick"
    responses.cancel()
    eventually(lambda: calls(provider, n(ENDLESS)) == {"cancelled": 1})


def test_stream_unary_calls(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider, server: Server
) -> None:
    stub = connect(provider=provider).stream_unary(COLLECT)
    assert stub(iter([b"a", b"b"])) == b"a,b"
    response, call = stub.with_call(iter([b"c"]))
    assert response == b"c" and call.code() is grpc.StatusCode.OK
    future = stub.future(iter([b"d", b"code:INTERNAL"]))
    assert future.exception(timeout=5).code() is grpc.StatusCode.INTERNAL
    finished(future)
    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            stub(iter([b"code:UNAVAILABLE"]))
    with pytest.raises(BreakerOpenRpcError):
        stub(iter([b"e"]))
    assert server.hits[COLLECT] == 5
    assert calls(provider, n(COLLECT)) == {"success": 2, "failure": 3, "rejected": 1}


def test_stream_stream_calls(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider, server: Server
) -> None:
    stub = connect(provider=provider).stream_stream(CHAT)
    chat = stub(iter([b"a", b"b"]))
    assert list(chat) == [b"echo:a", b"echo:b"]
    finished(chat)
    for _ in range(3):
        failing = stub(iter([b"a", b"code:RESOURCE_EXHAUSTED"]))
        with pytest.raises(grpc.RpcError):
            list(failing)
        finished(failing)
    with pytest.raises(BreakerOpenRpcError):
        list(stub(iter([b"a"])))
    assert server.hits[CHAT] == 4
    assert calls(provider, n(CHAT)) == {"success": 1, "failure": 3, "rejected": 1}


def test_a_dead_target_never_trips_the_breakers_of_a_healthy_one(
    server: Server, provider: breaker.Provider
) -> None:
    dead = Server()
    dead.close()  # it served once; now its port refuses connections
    healthy_target, dead_target = f"127.0.0.1:{server.port}", f"127.0.0.1:{dead.port}"
    with (
        insecure_channel(healthy_target, provider=provider) as healthy,
        insecure_channel(dead_target, provider=provider) as gone,
    ):
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as caught:
                gone.unary_unary(UNARY)(b"a", timeout=5)
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        with pytest.raises(BreakerOpenRpcError):
            gone.unary_unary(UNARY)(b"a")
        for _ in range(5):
            assert healthy.unary_unary(UNARY)(b"a", timeout=5) == b"echo:a"
    assert calls(provider, default_name(dead_target, UNARY)) == {"failure": 3, "rejected": 1}
    assert calls(provider, default_name(healthy_target, UNARY)) == {"success": 5}


def test_a_shared_name_shares_one_breaker_across_targets(
    server: Server, provider: breaker.Provider
) -> None:
    dead = Server()
    dead.close()
    with (
        insecure_channel(f"127.0.0.1:{server.port}", provider=provider, name="users") as one,
        insecure_channel(f"127.0.0.1:{dead.port}", provider=provider, name="users") as two,
    ):
        for _ in range(3):
            with pytest.raises(grpc.RpcError):
                two.unary_unary(UNARY)(b"a", timeout=5)
        with pytest.raises(BreakerOpenRpcError):
            one.unary_unary(UNARY)(b"a")  # the dead target tripped the shared breaker
    assert list(provider.breakers()) == ["users"]


def test_a_secure_channel_names_its_breakers_by_target(provider: breaker.Provider) -> None:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        SERVICE, {"Unary": grpc.unary_unary_rpc_method_handler(lambda r, c: b"secure:" + r)}
    )
    server.add_generic_rpc_handlers((handler,))
    local = grpc.LocalConnectionType.LOCAL_TCP
    port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials(local))
    server.start()
    target = f"127.0.0.1:{port}"
    try:
        credentials = grpc.local_channel_credentials(local)
        with secure_channel(target, credentials, provider=provider) as channel:
            assert channel.unary_unary(UNARY)(b"a", timeout=5) == b"secure:a"
    finally:
        server.stop(None).wait()
    assert calls(provider, default_name(target, UNARY)) == {"success": 1}


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("users:50051", "grpc:users:50051/test.Echo/Unary"),
        ("dns:///users:50051", "grpc:users:50051/test.Echo/Unary"),
        ("dns://10.0.0.53/users:50051", "grpc:users:50051/test.Echo/Unary"),
        ("dns:users:50051", "grpc:users:50051/test.Echo/Unary"),
        (" users:50051 ", "grpc:users:50051/test.Echo/Unary"),
        ("unix:///run/users.sock", "grpc:unix:/run/users.sock/test.Echo/Unary"),
        ("ipv4:10.0.0.1:1,10.0.0.2:1", "grpc:ipv4:10.0.0.1:1,10.0.0.2:1/test.Echo/Unary"),
    ],
)
def test_default_names_are_target_and_method(target: str, name: str) -> None:
    assert default_name(target, UNARY) == name


def test_a_target_or_a_name_is_required() -> None:
    for make in (BreakerInterceptor, aio_interceptors):
        with pytest.raises(TypeError, match="target="):
            make()
        with pytest.raises(TypeError, match="target="):
            make(target=" ")
        with pytest.raises(ValueError, match="cannot name a breaker"):
            make(target="unix:///run/../users.sock")
        make(name=lambda method: method)  # one breaker per method, shared by every target


def test_one_breaker_for_a_whole_channel(
    connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    channel = connect(provider=provider, name="grpc:echo")
    channel.unary_unary(UNARY)(b"a")
    list(channel.unary_stream(STREAM)(b"a"))
    assert list(provider.breakers()) == ["grpc:echo"]


def test_a_name_function_of_the_method(
    connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    channel = connect(provider=provider, name=lambda method: method.rsplit("/", 1)[0])
    channel.unary_unary(UNARY)(b"a")
    assert list(provider.breakers()) == [f"/{SERVICE}"]


def test_failure_codes_are_configurable(
    n: Callable[[str], str], connect: Callable[..., Any], provider: breaker.Provider
) -> None:
    stub = connect(provider=provider, failure_codes={grpc.StatusCode.NOT_FOUND}).unary_unary(UNARY)
    with pytest.raises(grpc.RpcError):
        stub(b"code:UNAVAILABLE")
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            stub(b"code:NOT_FOUND")
    assert calls(provider, n(UNARY)) == {"success": 1, "failure": 3}
    with pytest.raises(TypeError, match="StatusCode"):
        BreakerInterceptor(target="echo:50051", failure_codes=["UNAVAILABLE"])


def test_a_call_on_a_closed_channel_counts_once_and_frees_its_slot(
    target: str, n: Callable[[str], str], coord: breaker.MemoryCoord, provider: breaker.Provider
) -> None:
    coord.put(PREFIX + n(UNARY) + ".json", '{"maxConcurrentCalls": 1}')
    raw = grpc.insecure_channel(target)
    stub = grpc.intercept_channel(
        raw, BreakerInterceptor(target=target, provider=provider)
    ).unary_unary(UNARY)
    assert stub(b"hi") == b"echo:hi"
    raw.close()
    for _ in range(2):  # a slot still taken would make the second a BulkheadFullRpcError
        with pytest.raises(ValueError, match="closed channel"):
            stub(b"hi")
    brk = provider.get_breaker(n(UNARY))
    assert brk.policy.max_concurrent_calls == 1
    assert calls(provider, n(UNARY)) == {"success": 1, "failure": 2}
    assert brk.stats().in_flight == 0


class Details(NamedTuple):
    """The client call details an interceptor gets (grpc's own type is private)."""

    method: str
    timeout: float | None = None
    metadata: Any = None
    credentials: Any = None
    wait_for_ready: Any = None
    compression: Any = None


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "aio"])
def test_a_continuation_that_raises_settles_its_call_and_frees_its_slot(
    is_async: bool, coord: breaker.MemoryCoord, provider: breaker.Provider
) -> None:
    # grpc's own channels turn what a continuation raises into a failed call; another
    # caller of the interceptor may let it raise: the call still settles, once.
    name = default_name("echo:50051", UNARY)
    coord.put(PREFIX + name + ".json", '{"maxConcurrentCalls": 1}')
    interceptors = aio_interceptors if is_async else None

    def raises(details: Any, request: Any) -> Any:
        raise ConnectionResetError("the transport went away")

    async def araises(details: Any, request: Any) -> Any:
        raise ConnectionResetError("the transport went away")

    for _ in range(2):  # a slot still taken would reject the second
        with pytest.raises(ConnectionResetError):
            if interceptors is None:
                interceptor = BreakerInterceptor(target="echo:50051", provider=provider)
                interceptor.intercept_unary_unary(raises, Details(UNARY), b"hi")
            else:
                (aio,) = [
                    i
                    for i in interceptors(target="echo:50051", provider=provider)
                    if hasattr(i, "intercept_unary_unary")
                ]
                asyncio.run(aio.intercept_unary_unary(araises, Details(UNARY), b"hi"))
    assert calls(provider, name) == {"failure": 2}
    assert provider.get_breaker(name).stats().in_flight == 0


def test_the_default_provider_at_call_time_and_none(
    n: Callable[[str], str],
    connect: Callable[..., Any],
    provider: breaker.Provider,
    server: Server,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stub = connect().unary_unary(UNARY)
    with caplog.at_level(logging.WARNING, logger="breaker"):
        for _ in range(4):
            with pytest.raises(grpc.RpcError):
                stub(b"code:UNAVAILABLE")
    assert len([r for r in caplog.records if "no default provider" in r.getMessage()]) == 1
    with breaker.set_default_provider(provider):
        assert stub(b"a") == b"echo:a"
    assert calls(provider, n(UNARY)) == {"success": 1}
    assert server.hits[UNARY] == 5


def test_the_breaker_closes_again_after_trial_calls(
    n: Callable[[str], str],
    connect: Callable[..., Any],
    provider: breaker.Provider,
    clock: FakeClock,
) -> None:
    stub = connect(provider=provider).unary_unary(UNARY)
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            stub(b"code:UNAVAILABLE")
    clock.advance(10)
    assert stub(b"a") == b"echo:a"
    assert stub(b"b") == b"echo:b"
    assert provider.get_breaker(n(UNARY)).state is breaker.State.CLOSED


def test_the_rejection_can_be_built_like_breaker_open_error() -> None:
    exc = BreakerOpenRpcError("x", breaker.State.HALF_OPEN, 0.0)
    assert str(exc) == "breaker 'x' is half-open and its trial calls are under way; retry in 0.000s"
    aio = BreakerOpenAioRpcError("x", breaker.State.OPEN, 2.0, breaker.Mode.FORCED_OPEN)
    assert aio.code() is grpc.StatusCode.UNAVAILABLE
    assert (
        aio.details()
        == "breaker 'x' is forced open by its policy (mode forced-open); retry in 2.000s"
    )
    assert aio.args == ("x", breaker.State.OPEN, 2.0, breaker.Mode.FORCED_OPEN)


# -- grpc.aio ---------------------------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def settled() -> None:
    """Wait until the calls finished so far have been recorded."""
    while _AioInterceptor._waiting:
        await asyncio.gather(*list(_AioInterceptor._waiting), return_exceptions=True)
        # A finished task leaves the set from a done callback, which runs only once the
        # loop gets a turn: a gather of finished tasks does not always give it one.
        await asyncio.sleep(0)


class AioServer:
    """An in-process grpc.aio server on 127.0.0.1 (start it inside the test's event loop)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((self._handler(),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"

    def name(self, method: str) -> str:
        """Return the breaker name of ``method`` on a channel to this server."""
        return default_name(self.target, method)

    async def __aenter__(self) -> AioServer:
        await self._server.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._server.stop(None)

    def _handler(self) -> Any:
        async def unary(request: bytes, context: Any) -> bytes:
            self.hits[UNARY] += 1
            code = status(request)
            if code is not None:
                await context.abort(code, f"asked for {code.name}")
            return b"echo:" + request

        async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
            self.hits[STREAM] += 1
            yield b"one"
            code = status(request)
            if code is not None:
                await context.abort(code, f"asked for {code.name}")
            yield b"two"

        async def collect(requests: AsyncIterator[bytes], context: Any) -> bytes:
            self.hits[COLLECT] += 1
            received = [r async for r in requests]
            for request in received:
                code = status(request)
                if code is not None:
                    await context.abort(code, f"asked for {code.name}")
            return b",".join(received)

        async def chat(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
            self.hits[CHAT] += 1
            async for request in requests:
                code = status(request)
                if code is not None:
                    await context.abort(code, f"asked for {code.name}")
                yield b"echo:" + request

        async def endless(request: bytes, context: Any) -> AsyncIterator[bytes]:
            self.hits[ENDLESS] += 1
            while True:
                yield b"tick"
                await asyncio.sleep(0.001)

        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(unary),
                "Stream": grpc.unary_stream_rpc_method_handler(stream),
                "Collect": grpc.stream_unary_rpc_method_handler(collect),
                "Chat": grpc.stream_stream_rpc_method_handler(chat),
                "Endless": grpc.unary_stream_rpc_method_handler(endless),
            },
        )


def aio_scenario(
    body: Callable[[Any, AioServer], Coroutine[Any, Any, None]], **kwargs: Any
) -> Callable[[str], str]:
    """Run ``body(channel, server)`` against a fresh aio server, in a fresh event loop.

    Return the function that names the breaker of a method on that server's channel.
    """
    target = ""

    async def main() -> None:
        nonlocal target
        async with AioServer() as server:
            target = server.target
            channel = grpc.aio.insecure_channel(
                target, interceptors=aio_interceptors(target=target, **kwargs)
            )
            try:
                await body(channel, server)
                await settled()
            finally:
                await channel.close()
                await settled()

    run(main())
    return lambda method: default_name(target, method)


def test_aio_unary_calls_count_trip_and_reject(provider: breaker.Provider) -> None:
    async def body(channel: Any, server: AioServer) -> None:
        stub = channel.unary_unary(UNARY)
        assert await stub(b"hi") == b"echo:hi"
        with pytest.raises(grpc.aio.AioRpcError):
            await stub(b"code:NOT_FOUND")
        for _ in range(3):
            with pytest.raises(grpc.RpcError) as caught:
                await stub(b"code:UNAVAILABLE")
            assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
            await settled()
        assert provider.get_breaker(server.name(UNARY)).state is breaker.State.OPEN
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub(b"hi")
        exc = caught.value
        assert isinstance(exc, BreakerOpenAioRpcError)
        assert isinstance(exc, breaker.BreakerOpenError)
        assert exc.code() is grpc.StatusCode.UNAVAILABLE
        assert exc.details() == f"breaker {server.name(UNARY)!r} is open; retry in 10.000s"
        call = stub(b"again")
        assert await call.code() is grpc.StatusCode.UNAVAILABLE
        assert await call.details() == exc.details()
        assert server.hits[UNARY] == 5

    n = aio_scenario(body, provider=provider)
    assert calls(provider, n(UNARY)) == {"success": 2, "failure": 3, "rejected": 2}


def test_aio_streams(provider: breaker.Provider) -> None:
    async def body(channel: Any, server: AioServer) -> None:
        stream = channel.unary_stream(STREAM)
        assert [r async for r in stream(b"x")] == [b"one", b"two"]
        call = stream(b"code:UNAVAILABLE")
        assert await call.read() == b"one"
        with pytest.raises(grpc.aio.AioRpcError):
            await call.read()
        collect = channel.stream_unary(COLLECT)
        assert await collect(iter([b"a", b"b"])) == b"a,b"
        writer = collect()
        await writer.write(b"c")
        await writer.write(b"code:INTERNAL")
        await writer.done_writing()
        with pytest.raises(grpc.aio.AioRpcError):
            await writer
        chat = channel.stream_stream(CHAT)
        assert [r async for r in chat(iter([b"a", b"b"]))] == [b"echo:a", b"echo:b"]
        talk = chat()
        await talk.write(b"c")
        assert await talk.read() == b"echo:c"
        await talk.done_writing()
        assert await talk.read() is grpc.aio.EOF

    n = aio_scenario(body, provider=provider)
    assert calls(provider, n(STREAM)) == {"success": 1, "failure": 1}
    assert calls(provider, n(COLLECT)) == {"success": 1, "failure": 1}
    assert calls(provider, n(CHAT)) == {"success": 2}


def test_aio_rejections_of_streams_never_reach_the_server(provider: breaker.Provider) -> None:
    async def body(channel: Any, server: AioServer) -> None:
        for method in (STREAM, COLLECT, CHAT):
            force_state(provider.get_breaker(server.name(method)), "open")
        with pytest.raises(BreakerOpenAioRpcError):
            async for _ in channel.unary_stream(STREAM)(b"x"):
                pass
        with pytest.raises(BreakerOpenAioRpcError):
            await channel.stream_unary(COLLECT)(iter([b"a"]))
        with pytest.raises(BreakerOpenAioRpcError):
            async for _ in channel.stream_stream(CHAT)(iter([b"a"])):
                pass
        assert sum(server.hits.values()) == 0

    aio_scenario(body, provider=provider)


def test_aio_a_call_cancelled_by_the_client_counts_as_neither(provider: breaker.Provider) -> None:
    async def body(channel: Any, server: AioServer) -> None:
        call = channel.unary_stream(ENDLESS)(b"")
        assert await call.read() == b"tick"
        assert call.cancel()
        await settled()

    n = aio_scenario(body, provider=provider)
    assert calls(provider, n(ENDLESS)) == {"cancelled": 1}


def test_aio_names_and_the_default_provider(provider: breaker.Provider) -> None:
    async def body(channel: Any, server: AioServer) -> None:
        assert await channel.unary_unary(UNARY)(b"a") == b"echo:a"
        assert [r async for r in channel.unary_stream(STREAM)(b"a")] == [b"one", b"two"]

    with breaker.set_default_provider(provider):
        aio_scenario(body, name="grpc:echo")
    assert calls(provider, "grpc:echo") == {"success": 2}
    assert list(provider.breakers()) == ["grpc:echo"]


def test_aio_failure_codes_are_configurable(provider: breaker.Provider) -> None:
    async def body(channel: Any, server: AioServer) -> None:
        for request in (b"code:NOT_FOUND", b"code:UNAVAILABLE"):
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary(UNARY)(request)

    n = aio_scenario(body, provider=provider, failure_codes=[grpc.StatusCode.NOT_FOUND])
    assert calls(provider, n(UNARY)) == {"success": 1, "failure": 1}


def test_aio_a_dead_target_never_trips_the_breakers_of_a_healthy_one(
    provider: breaker.Provider,
) -> None:
    async def main() -> tuple[str, str]:
        async with AioServer() as healthy_server:
            dead = AioServer()
            async with dead:
                pass  # it served; now its port refuses connections
            async with (
                aio_insecure_channel(healthy_server.target, provider=provider) as healthy,
                aio_insecure_channel(dead.target, provider=provider) as gone,
            ):
                for _ in range(3):
                    with pytest.raises(grpc.aio.AioRpcError) as caught:
                        await gone.unary_unary(UNARY)(b"a", timeout=5)
                    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
                    await settled()
                with pytest.raises(BreakerOpenAioRpcError):
                    await gone.unary_unary(UNARY)(b"a")
                for _ in range(5):
                    assert await healthy.unary_unary(UNARY)(b"a", timeout=5) == b"echo:a"
                await settled()
            return healthy_server.name(UNARY), dead.name(UNARY)

    healthy, dead = run(main())
    assert calls(provider, dead) == {"failure": 3, "rejected": 1}
    assert calls(provider, healthy) == {"success": 5}


def test_aio_a_secure_channel_with_more_interceptors(provider: breaker.Provider) -> None:
    seen: list[bytes] = []

    class Spy(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append(request)
            return await continuation(details, request)

    async def main() -> str:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((AioServer()._handler(),))
        local = grpc.LocalConnectionType.LOCAL_TCP
        port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials(local))
        target = f"127.0.0.1:{port}"
        await server.start()
        try:
            credentials = grpc.local_channel_credentials(local)
            async with aio_secure_channel(
                target, credentials, provider=provider, interceptors=[Spy()]
            ) as channel:
                assert await channel.unary_unary(UNARY)(b"a", timeout=5) == b"echo:a"
                await settled()
        finally:
            await server.stop(None)
        return default_name(target, UNARY)

    name = run(main())
    assert seen == [b"a"]
    assert calls(provider, name) == {"success": 1}
