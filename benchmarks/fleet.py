"""The fleet's load on Consul: what one instance's record costs, idle and under a storm.

* Idle: one publisher against the Consul stand-in for simulated minutes. The stand-in and
  the publisher share a fake clock that the publisher's own waits move, so an hour takes
  a second and every request the schedule makes is counted from the server's log.
* Storm: a real provider against the stand-in on real time, one breaker flipping 100
  times a second; the record writes (``PUT ?acquire=``) per second are counted.
* Trip to view: from a breaker tripping to `Provider.fleet()` showing it open on that
  instance, on real time: after a quiet second (written at once) and with changes 0.3 s
  apart (each waits for the second since the last write to pass).

``python benchmarks/fleet.py [--smoke]`` prints the numbers; ``run.py`` reports them.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import threading
import time
from typing import Any

import breaker
from breaker._fleet import Publisher
from breaker.testing import ConsulServer, FakeClock, force_state

SERVICE = "checkout"
POLICIES = "config/bench/checkout/breakers/"
FLEET = "config/bench/fleet/"
RECORD = f"{FLEET}{SERVICE}/a.json"
TTL = 15.0


def _fleet_request(path: str) -> bool:
    return path.startswith("/v1/session/") or path == "/v1/kv/" + RECORD


def idle(minutes: float) -> dict[str, float]:
    """Return the requests one idle instance sends per simulated minute, by kind."""
    clock = FakeClock()
    end = clock() + minutes * 60
    parked, done = threading.Event(), threading.Event()

    def sleep(seconds: float, event: threading.Event) -> bool:
        if clock() + seconds > end:
            parked.set()
            return done.wait()
        clock.advance(seconds)
        return event.is_set()

    with ConsulServer(jitter=False, clock=clock) as server:
        coord = breaker.ConsulCoord(server.addr, timeout=5)
        source = breaker.new(breaker.Config(SERVICE, POLICIES), coord=breaker.MemoryCoord())
        for name in ("payments", "ledger", "grpc:users"):
            source.get_breaker(name)
        server.clear_requests_log()
        publisher = Publisher(
            coord,
            source.breakers,
            service=SERVICE,
            fleet_path=FLEET,
            instance_id="a",
            ttl=TTL,
            clock=clock,
            wall=clock.wall,
            sleep=sleep,
        )
        publisher.start()
        if not parked.wait(60):
            raise RuntimeError("the simulated publisher did not reach its end")
        log = [r for r in server.requests_log if _fleet_request(r.path)]
        done.set()
        publisher.stop()
        coord.close()
        source.close()
    kinds = {
        "create": sum(r.path == "/v1/session/create" for r in log),
        "renew": sum(r.path.startswith("/v1/session/renew/") for r in log),
        "write": sum(r.path == "/v1/kv/" + RECORD for r in log),
    }
    return {kind: count / minutes for kind, count in kinds.items()} | {"total": len(log) / minutes}


def storm(seconds: float, rate: float = 100.0) -> dict[str, float]:
    """Return record writes per second while one breaker flips ``rate`` times a second."""
    with ConsulServer(jitter=False) as server:
        config = breaker.Config(SERVICE, POLICIES, fleet_path=FLEET, instance_id="a")
        with breaker.new(config, coord=breaker.ConsulCoord(server.addr)) as provider:
            brk = provider.get_breaker("payments")
            _wait(lambda: server.get(RECORD) is not None)
            time.sleep(1.1)  # past the first write's second
            start = time.monotonic()
            flips = 0
            while (now := time.monotonic()) < start + seconds:
                force_state(brk, breaker.State.OPEN if flips % 2 == 0 else breaker.State.CLOSED)
                flips += 1
                time.sleep(max(0.0, start + flips / rate - time.monotonic()))
            stop = now
            writes = [
                r
                for r in server.requests_log
                if r.path == "/v1/kv/" + RECORD and start <= r.time <= stop
            ]
    return {
        "transitions/s": flips / seconds,
        "writes/s": len(writes) / seconds,
        "writes": float(len(writes)),
        "seconds": seconds,
    }


def trip_to_view(trips: int, apart: float) -> dict[str, float]:
    """Return seconds from a trip to the view showing it, p50 and max over ``trips``
    changes ``apart`` seconds apart (under a second apart, a change waits for its write)."""
    latencies = []
    with ConsulServer(jitter=False) as server:
        config = breaker.Config(SERVICE, POLICIES, fleet_path=FLEET, instance_id="a")
        with breaker.new(config, coord=breaker.ConsulCoord(server.addr)) as provider:
            brk = provider.get_breaker("payments")
            for n in range(trips):
                state = breaker.State.OPEN if n % 2 == 0 else breaker.State.CLOSED
                t0 = time.monotonic()
                force_state(brk, state)
                _wait(lambda state=state: _shows(provider, state.value))
                latencies.append(time.monotonic() - t0)
                time.sleep(apart)
    return {"p50": statistics.median(latencies), "max": max(latencies)}


def _shows(provider: Any, state: str) -> bool:
    view = provider.fleet("payments")["breakers"].get("payments", {})
    return bool(view.get(state) == ["a"])


def _wait(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the fleet record did not show up in time")
        time.sleep(0.005)


def run(smoke: bool) -> dict[str, dict[str, float]]:
    """Run every fleet measurement (tiny counts with ``smoke``)."""
    logging.getLogger("breaker").setLevel(logging.ERROR)
    return {
        "idle": idle(2 if smoke else 60),
        "storm": storm(1.5 if smoke else 10.0),
        "trip": trip_to_view(2 if smoke else 10, apart=1.1),
        "trip-busy": trip_to_view(2 if smoke else 10, apart=0.3),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    for section, numbers in run(parser.parse_args().smoke).items():
        print(section, {k: round(v, 3) for k, v in numbers.items()})
