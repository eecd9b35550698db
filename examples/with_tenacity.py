"""A breaker around a retry (tenacity): the breaker sits outside.

One guarded call may make several attempts; the breaker counts the call's final
outcome. Once the breaker is open no attempt is made at all, so retries cannot
pile onto a downstream that is already failing.
"""

from __future__ import annotations

import tenacity

import breaker

PREFIX = "config/dev/checkout/breakers/"
attempts = 0
healthy = False


def main() -> None:
    coord = breaker.MemoryCoord({PREFIX + "inventory.json": '{"failureThreshold": 2}'})
    with breaker.new(breaker.Config("checkout", PREFIX), coord=coord) as provider:

        @provider.circuit("inventory")  # outermost: one breaker verdict per call
        @tenacity.retry(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_exponential(multiplier=0.001, max=0.01),
            retry=tenacity.retry_if_exception_type(ConnectionError),
            reraise=True,
        )
        def reserve(sku: str) -> str:
            global attempts
            attempts += 1
            if not healthy:
                raise ConnectionError("inventory refused the connection")
            return f"reserved {sku}"

        for call in range(1, 5):
            before = attempts
            try:
                print(f"call {call}: {reserve('sku-1')}")
            except breaker.BreakerOpenError as exc:
                made = attempts - before
                print(f"call {call}: rejected by the breaker ({exc.state}); attempts made: {made}")
            except ConnectionError as exc:
                print(f"call {call}: failed after {attempts - before} attempts: {exc}")
        print("breaker:", provider.get_breaker("inventory").state)


if __name__ == "__main__":
    main()
