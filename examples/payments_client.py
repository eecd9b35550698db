"""A checkout service's payments client, guarded by a breaker: its whole life as a timeline.

Run it with ``python3 tasks.py demo``. The downstream payments service is simulated in
this process so the demo needs nothing else.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import breaker

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
    log = logging.getLogger("breaker")
    log.addHandler(TimelineHandler())
    log.setLevel(logging.INFO)
    service = PaymentsService()
    coord = breaker.MemoryCoord()
    coord.put(
        KEY, json.dumps({"failureThreshold": 3, "successThreshold": 2, "openStateTimeout": "1s"})
    )
    provider = breaker.new(breaker.Config("checkout", "/" + PREFIX), coord=coord)
    transitions: list[str] = []  # a listener, as a metrics exporter would use one
    provider.add_listener(lambda e: transitions.append(f"{e.old}->{e.new}"))
    payments = provider.get_breaker("payments")

    def queue_for_later(exc: Exception, order: int, cents: int) -> str:
        if isinstance(exc, breaker.BreakerOpenError):
            return f"queued (breaker {exc.state}, retry in {exc.retry_after:.2f}s)"
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

    say(f"policy from the coord: {payments.policy}")
    say("--- the downstream is healthy")
    checkout(3)

    say("--- the downstream starts failing")
    service.healthy = False
    checkout(3)
    say("--- the breaker is open: calls fail at once, the downstream gets no traffic")
    checkout(3)

    say("--- an operator changes the policy in the coord (no restart)")
    say(f"PUT {KEY}")
    coord.put(
        KEY, json.dumps({"failureThreshold": 5, "successThreshold": 3, "openStateTimeout": "500ms"})
    )
    say(f"the live breaker now uses {payments.policy}; still {payments.state}")

    say("--- the downstream recovers; the breaker waits out its open timeout")
    service.healthy = True
    checkout(1)
    time.sleep(0.55)
    say(f"after the timeout the breaker reads {payments.state}: trial calls go through")
    checkout(3)
    say("--- closed again")
    checkout(2)
    say(f"transitions seen by the listener: {', '.join(transitions)}")
    provider.close()
    if payments.state is not breaker.State.CLOSED:
        sys.exit("demo ended with the breaker not closed")


if __name__ == "__main__":
    main()
