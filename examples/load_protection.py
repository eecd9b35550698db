"""Load protection during an incident: a downstream hangs, an operator caps it from Consul.

A worker pool of 16 threads calls ``payments``. The downstream stops answering: with no
limit, every worker ends up stuck. The operator writes one document to Consul:
``maxConcurrentCalls`` 4 keeps 12 workers free (calls beyond the limit are turned away
at once), ``slowCallDuration`` makes the stuck calls count as failures while they hang,
so the breaker trips and new calls fail fast. When the downstream answers again, trial
calls close the breaker. Real threads and real time; about two seconds.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import breaker

PREFIX = "config/dev/checkout/breakers/"
KEY = PREFIX + "payments.json"


def main() -> None:
    coord = breaker.MemoryCoord({KEY: '{"failureThreshold": 3, "openStateTimeout": "500ms"}'})
    answering = threading.Event()
    answering.set()

    def charge(order: int) -> str:
        answering.wait()  # a downstream that hangs holds the caller here
        return f"charged {order}"

    with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:
        payments = provider.get_breaker("payments")
        pool = ThreadPoolExecutor(16)

        def outcome(order: int) -> str:
            try:
                return payments.do(charge, order)
            except breaker.BulkheadFullError:
                return "turned away (bulkhead full)"
            except breaker.BreakerOpenError:
                return "rejected (breaker open)"

        print("healthy:", pool.submit(outcome, 1).result())

        answering.clear()
        print("the downstream hangs; the operator caps it from Consul")
        coord.put(
            KEY,
            '{"failureThreshold": 3, "openStateTimeout": "500ms", '
            '"maxConcurrentCalls": 4, "slowCallDuration": "200ms"}',
        )
        stuck = [pool.submit(outcome, n) for n in range(2, 6)]  # four calls hang
        while payments.stats().in_flight < 4:
            time.sleep(0.005)
        print("a fifth call:", outcome(6), "- its worker is free at once")
        while payments.state is not breaker.State.OPEN:  # the hung calls count as they hang
            time.sleep(0.01)
        stats = payments.stats()
        print(
            f"tripped while {stats.in_flight} calls still hang ({stats.calls['slow']} counted slow)"
        )
        print("a new call:", outcome(7))

        answering.set()
        print("the downstream answers again:", [f.result() for f in stuck])
        time.sleep(0.6)  # the open period ends
        print("a trial call:", outcome(8), "- breaker", payments.state.value)
        pool.shutdown()


if __name__ == "__main__":
    main()
