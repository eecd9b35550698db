"""requests: a Session whose adapter guards every request, rejections caught as requests errors.

A local HTTP server on 127.0.0.1 stands in for a payments API that starts throttling
(answers 429). ``BreakerAdapter`` is mounted on the session with one
breaker named ``payments`` and a ``failure_if`` that also counts 429 as a failure.
Once the breaker is open, requests fail at once with an error that both ``except
requests.RequestException`` and ``except breaker.BreakerOpenError`` catch.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

import breaker
from breaker.integrations.requests import BreakerAdapter

PREFIX = "config/dev/checkout/breakers/"


class Payments(ThreadingHTTPServer):
    """The downstream: answers with ``status``; counts what reaches it."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.status = 200
        self.received = 0


class Handler(BaseHTTPRequestHandler):
    server: Payments

    def do_POST(self) -> None:
        self.server.received += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = f"status {self.server.status}".encode()
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def throttled_or_failed(response: requests.Response) -> bool:
    return response.status_code == 429 or response.status_code >= 500


def main() -> None:
    logging.basicConfig(format="  log: %(message)s", stream=sys.stdout)
    logging.getLogger("breaker").setLevel(logging.INFO)
    payments = Payments()
    thread = threading.Thread(target=payments.serve_forever, args=(0.01,))
    thread.start()
    try:
        run(payments)
    finally:
        payments.shutdown()
        thread.join()
        payments.server_close()


def run(payments: Payments) -> None:
    url = "http://{}:{}/v1/charges".format(*payments.server_address[:2])
    coord = breaker.MemoryCoord(
        {PREFIX + "payments.json": '{"failureThreshold": 2, "openStateTimeout": "200ms"}'}
    )
    with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:
        # Keyword arguments such as max_retries go to HTTPAdapter; retries happen inside
        # the adapter, so the breaker counts each request's final outcome once.
        adapter = BreakerAdapter(
            provider=provider, name="payments", failure_if=throttled_or_failed, max_retries=1
        )
        brk = provider.get_breaker("payments")
        with requests.Session() as session:
            session.mount("http://", adapter)
            session.mount("https://", adapter)

            def charge(order: int) -> None:
                try:
                    response = session.post(url, data={"order": order}, timeout=5)
                    print(f"order {order}: {response.status_code}  breaker: {brk.state}")
                except requests.RequestException as exc:
                    kind = "rejected" if isinstance(exc, breaker.BreakerOpenError) else "failed"
                    print(f"order {order}: {kind}: {exc}")

            charge(1)
            payments.status = 429
            print("the payments API starts throttling (429 counts as a failure here)")
            charge(2)
            charge(3)
            charge(4)
            print(f"the payments API received {payments.received} of 4 charges")
            payments.status = 200
            time.sleep(0.25)
            print("after openStateTimeout a trial charge goes out")
            charge(5)
            print("stats:", brk.stats().to_dict()["calls"])


if __name__ == "__main__":
    main()
