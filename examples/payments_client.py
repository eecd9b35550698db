"""A checkout service's payments client, guarded by a breaker: its whole life as a timeline.

Run it with ``python3 tasks.py demo``. Policies live in Consul: the agent at
``CONSUL_HTTP_ADDR`` when that is set, otherwise the Consul-compatible server that
ships in ``breaker.testing``, started here on a free port. The downstream payments
service is simulated in this process.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from datetime import datetime, timedelta, timezone

import breaker
from breaker.testing import ConsulServer

PREFIX = "config/dev/checkout/breakers/"
KEY = PREFIX + "payments.json"
T0 = time.monotonic()


def say(message: str) -> None:
    print(f"{time.monotonic() - T0:6.2f}s  {message}", flush=True)


class TimelineHandler(logging.Handler):
    """Show the library's own log lines (state changes, policy updates) in the timeline."""

    def emit(self, record: logging.LogRecord) -> None:
        say(f"  log {record.levelname}: {record.getMessage()}")


class PaymentsService:
    """The downstream: answers while healthy, refuses connections while down."""

    def __init__(self) -> None:
        self.healthy = True
        self.received = 0

    def charge(self, order: int, cents: int) -> str:
        self.received += 1
        if not self.healthy:
            raise ConnectionError("payments: connection refused")
        return f"ch_{order:04d}"


def main() -> None:
    server = None
    addr = os.environ.get("CONSUL_HTTP_ADDR")
    if addr:
        say(f"using the Consul agent at {addr} (CONSUL_HTTP_ADDR)")
    else:
        server = ConsulServer().start()
        addr = server.addr
        say(f"CONSUL_HTTP_ADDR is not set: started breaker.testing.ConsulServer at {addr}")
    try:
        # The operator's writes go through a client of their own, as `consul kv put` would;
        # both follow the consul CLI's environment (CONSUL_HTTP_TOKEN, CONSUL_HTTP_SSL, ...).
        operator = breaker.ConsulCoord(addr)
        try:
            run(addr, operator)
        finally:
            operator.close()
    finally:
        if server is not None:
            server.stop()


def run(addr: str, operator: breaker.ConsulCoord) -> None:
    def put(key: str, value: str) -> None:
        operator.put(key, value)

    log = logging.getLogger("breaker")
    log.addHandler(TimelineHandler())
    log.setLevel(logging.INFO)
    service = PaymentsService()
    put(KEY, json.dumps({"failureThreshold": 3, "successThreshold": 2, "openStateTimeout": "1s"}))
    config = breaker.Config(service_name="checkout", policies_path="/" + PREFIX)
    provider = breaker.new(config, coord=breaker.ConsulCoord(addr))
    transitions: list[str] = []  # a listener, as a metrics exporter would use one
    provider.add_listener(lambda e: transitions.append(f"{e.old}->{e.new}"))
    payments = provider.get_breaker("payments")

    def queue_for_later(exc: Exception, order: int, cents: int) -> str:
        if isinstance(exc, breaker.BreakerOpenError):
            why = "forced open" if exc.mode is breaker.Mode.FORCED_OPEN else str(exc.state)
            return f"queued (breaker {why}, retry in {exc.retry_after:.2f}s)"
        return f"queued ({exc})"

    @provider.circuit("payments", fallback=queue_for_later)
    def charge(order: int, cents: int) -> str:
        return service.charge(order, cents)

    order = 0

    def checkout(count: int) -> None:
        nonlocal order
        for _ in range(count):
            order += 1
            before_state, before_received = payments.state, service.received
            start = time.perf_counter()
            outcome = charge(order, 1999)
            took = (time.perf_counter() - start) * 1e6
            sent = "sent" if service.received > before_received else "not sent"
            say(f"[{before_state:9}] order {order:2}: {outcome:42} {sent}, {took:5.0f}us")

    say(f"policy read from Consul at start-up: {payments.policy}")
    say("--- the downstream is healthy")
    checkout(3)

    say("--- the downstream starts failing")
    service.healthy = False
    checkout(3)
    say("--- the breaker is open: calls fail at once, the downstream gets no traffic")
    checkout(3)

    say("--- an operator changes the policy in Consul (no restart)")
    say(f"PUT {KEY}")
    start = time.perf_counter()
    put(
        KEY, json.dumps({"failureThreshold": 5, "successThreshold": 3, "openStateTimeout": "500ms"})
    )
    while payments.policy.failure_threshold != 5 and time.perf_counter() - start < 10:
        time.sleep(0.0005)
    took = (time.perf_counter() - start) * 1000
    say(f"the live breaker adopted it {took:.1f} ms after the PUT was sent")
    say(f"the live breaker now uses {payments.policy}; still {payments.state}")

    say("--- the downstream recovers; the breaker waits out its open timeout")
    service.healthy = True
    checkout(1)
    time.sleep(0.55)
    say(f"after the timeout the breaker reads {payments.state}: trial calls go through")
    checkout(3)
    say("--- closed again")
    checkout(2)

    say("--- an incident elsewhere: an operator forces the breaker open for 2 s (a kill switch)")
    until = datetime.now(timezone.utc) + timedelta(seconds=2)
    document = {"failureThreshold": 5, "successThreshold": 3, "openStateTimeout": "500ms"}
    put(KEY, json.dumps({**document, "mode": "forced-open", "modeUntil": until.isoformat()}))
    # Wait for the whole change: the mode reads forced-open first, then the state opens.
    forced = (breaker.Mode.FORCED_OPEN, breaker.State.OPEN)
    while (payments.mode, payments.state) != forced and time.perf_counter() - start < 20:
        time.sleep(0.0005)
    checkout(2)
    say("--- nobody releases it; modeUntil passes and the breaker goes back to auto by itself")
    time.sleep(max((until - datetime.now(timezone.utc)).total_seconds(), 0) + 0.05)
    say(f"the breaker reads {payments.state}, mode {payments.mode}: trial calls decide")
    checkout(3)
    say(f"transitions seen by the listener: {', '.join(transitions)}")
    provider.close()
    if payments.state is not breaker.State.CLOSED:
        sys.exit("demo ended with the breaker not closed")


if __name__ == "__main__":
    main()
