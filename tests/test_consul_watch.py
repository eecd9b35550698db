"""breaker.testing.FaultProxy: the network faults the Consul watcher's tests stand on."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import requests

from breaker.testing import ConsulServer, FaultProxy

PREFIX = "config/dev/checkout/breakers/"
KEY = PREFIX + "payments.json"


def doc(failure_threshold: int) -> bytes:
    return json.dumps({"failureThreshold": failure_threshold}).encode()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def blocking_reads(server: ConsulServer) -> int:
    return sum(1 for r in server.requests_log if "index" in r.query)


@pytest.fixture
def server() -> Iterator[ConsulServer]:
    with ConsulServer(jitter=False) as server:
        for i in range(30):
            server.put(KEY, doc(1 + i % 5))
        server.put(KEY, doc(1))
        yield server


@pytest.fixture
def proxy(server: ConsulServer) -> Iterator[FaultProxy]:
    with FaultProxy(server.addr) as proxy:
        yield proxy


@pytest.mark.fault_injection
class TestFaultProxy:
    """The proxy the gap tests stand on."""

    def get(self, proxy: FaultProxy, *, timeout: float = 5.0, query: str = "") -> requests.Response:
        with requests.Session() as session:
            session.trust_env = False
            return session.get(f"{proxy.url}/v1/kv/{KEY}{query}", timeout=timeout)

    def test_forwards_and_rewrites_a_response_header(
        self, server: ConsulServer, proxy: FaultProxy
    ) -> None:
        first = self.get(proxy)
        assert first.status_code == 200 and first.headers["X-Consul-Index"] == str(server.index)
        proxy.rewrite_header("X-Consul-Index", "0")
        with requests.Session() as session:  # several answers on one kept-alive connection
            for _ in range(3):
                answer = session.get(f"{proxy.url}/v1/kv/{KEY}", timeout=5)
                assert answer.headers["X-Consul-Index"] == "0"
                assert answer.json()[0]["Key"] == KEY  # the body is intact
        proxy.rewrite_header("X-Consul-Index", None)
        assert self.get(proxy).headers["X-Consul-Index"] == str(server.index)
        assert proxy.accepted == 3

    def test_latency_holds_answers_back(self, proxy: FaultProxy) -> None:
        proxy.set_latency(to_client=2.0)
        with pytest.raises(requests.Timeout):
            self.get(proxy, timeout=0.2)
        proxy.set_latency()
        assert self.get(proxy).status_code == 200

    def test_pause_holds_everything_and_resume_delivers_it(self, proxy: FaultProxy) -> None:
        proxy.pause()
        answers: list[int] = []
        thread = threading.Thread(target=lambda: answers.append(self.get(proxy).status_code))
        thread.start()
        thread.join(0.3)
        assert answers == []
        proxy.resume()
        thread.join(5)
        assert answers == [200]

    def test_a_black_hole_answers_nothing_and_closes_nothing(self, proxy: FaultProxy) -> None:
        proxy.blackhole()
        with pytest.raises(requests.Timeout):
            self.get(proxy, timeout=0.2)
        proxy.blackhole(False)
        assert self.get(proxy).status_code == 200

    def test_reset_aborts_a_query_in_flight(self, server: ConsulServer, proxy: FaultProxy) -> None:
        errors: list[BaseException] = []

        def blocking_get() -> None:
            try:
                self.get(proxy, query=f"?index={server.index}&wait=30s")
            except requests.ConnectionError as exc:
                errors.append(exc)

        thread = threading.Thread(target=blocking_get)
        thread.start()
        wait_until(lambda: blocking_reads(server) == 1)
        proxy.reset()
        thread.join(5)
        assert len(errors) == 1 and "reset" in str(errors[0]).lower()

    @pytest.mark.skipif(not FaultProxy.can_sever(), reason="needs Linux and CAP_NET_ADMIN")
    def test_sever_leaves_the_client_to_find_out_by_itself(self, proxy: FaultProxy) -> None:
        with socket.create_connection(("127.0.0.1", proxy.port)) as client:
            wait_until(lambda: proxy.open_connections == 1)
            proxy.sever()
            assert proxy.open_connections == 0
            client.settimeout(0.2)
            with pytest.raises(TimeoutError):
                client.recv(1)  # silence: no FIN, no reset
            client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
            client.settimeout(10)
            with pytest.raises(ConnectionResetError):
                client.recv(1)  # the first keepalive probe finds nobody
