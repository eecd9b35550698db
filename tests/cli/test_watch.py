"""breaker watch: changes as they happen, judged as the services judge them."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from breaker._cli import EXIT_OK
from breaker._cli._watch import HealthReport
from breaker.coord import CoordHealth
from breaker.testing import ConsulServer

from .support import (
    CONSUL_ENV,
    PATH,
    PREFIX,
    Watching,
    run_module,
)


@pytest.mark.consul
class TestWatch:
    def test_streams_changes_until_stopped(self, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        env.put(PREFIX + "slow.json", '{"maxOpenStateTimeout": "2m"}')
        watching = Watching("--path", PATH)
        try:
            watching.stream.wait_for("Ctrl-C to stop\n")
            env.put(PREFIX + "payments.json", '{"failureThreshold": 4}')
            watching.stream.wait_for("payments  changed")
            env.put(PREFIX + "README", "not a policy")
            env.put(PREFIX + "search.json", '{"failureThreshold": "five"}')
            watching.stream.wait_for("search  created")
            env.delete(PREFIX + "payments.json")
            watching.stream.wait_for("payments  deleted")
            env.put(PREFIX + "_default.json", '{"openStateTimeout": "5m"}')
            watching.stream.wait_for("slow  revalidated")
        finally:
            code = watching.end()
        assert code == EXIT_OK
        stamp = "2026-11-29T13:45:00Z"
        assert watching.stream.getvalue().splitlines() == [
            f"watching {PREFIX} (2 documents); Ctrl-C to stop",
            f"{stamp}  payments  changed  failureThreshold: 3 -> 4",
            f'{stamp}  search  created  failureThreshold: (absent) -> "five"  INVALID: '
            "failureThreshold: expected an integer from 0 to 1000000, got the string 'five'",
            f"{stamp}  payments  deleted  failureThreshold: 4 -> (absent)",
            f'{stamp}  _default  created  openStateTimeout: (absent) -> "5m"',
            # Unchanged, but the services now refuse it (and keep its last good policy).
            f"{stamp}  slow  revalidated  by the new _default.json  INVALID: on top of "
            "_default.json: maxOpenStateTimeout: 2m0s is shorter than the open state timeout "
            "(5m0s)",
        ]

    def test_json_lines(self, env: ConsulServer) -> None:
        watching = Watching("--path", PATH, "--json")
        try:
            watching.stream.wait_for("Ctrl-C to stop\n")
            env.put(PREFIX + "_default.json", '{"openStateTimeout": "5m"}')
            watching.stream.wait_for('"name": "_default"')
            env.put(PREFIX + "payments.json", '{"maxOpenStateTimeout": "2m"}')
            watching.stream.wait_for('"name": "payments"')
            env.put(PREFIX + "_default.json", '{"openStateTimeout": "1m"}')
            watching.stream.wait_for('"event": "revalidated"')
        finally:
            assert watching.end() == EXIT_OK
        lines = watching.stream.getvalue().splitlines()
        assert lines[0].startswith("watching ")
        events = [json.loads(line) for line in lines[1:]]
        assert events[0] == {
            "time": "2026-11-29T13:45:00Z",
            "name": "_default",
            "key": PREFIX + "_default.json",
            "event": "created",
            "changes": [{"key": "openStateTimeout", "new": "5m"}],
            "valid": True,
            "error": None,
        }
        assert events[1]["valid"] is False  # on top of the new service default
        assert events[1]["error"].startswith("on top of _default.json: maxOpenStateTimeout")
        assert [(e["name"], e["event"], e["valid"]) for e in events[2:]] == [
            ("_default", "changed", True),
            ("payments", "revalidated", True),  # unchanged, valid again on the new default
        ]
        assert events[3]["changes"] == []

    def test_says_when_consul_goes_away_and_comes_back(self, env: ConsulServer) -> None:
        watching = Watching("--path", PATH)
        try:
            watching.stream.wait_for("Ctrl-C to stop\n")
            env.stop()
            watching.stream.wait_for("still trying (services keep their policies)\n")
            env.start()
            env.put(PREFIX + "payments.json", "{}")
            watching.stream.wait_for("payments  created")
            watching.stream.wait_for("Consul answers again\n")
        finally:
            assert watching.end() == EXIT_OK
        lines = watching.stream.getvalue().splitlines()
        assert lines[1].startswith(
            f"2026-11-29T13:45:00Z  Consul: cannot reach Consul at http://{env.addr}: "
        )
        assert lines[1].endswith("; still trying (services keep their policies)")
        # The change and the recovery come from two threads, in either order.
        assert sorted(lines[2:]) == [
            "2026-11-29T13:45:00Z  Consul answers again",
            "2026-11-29T13:45:00Z  payments  created  (absent) -> {}",
        ]

    def test_ctrl_c_ends_python_dash_m_breaker_watch_cleanly(self, env: ConsulServer) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in CONSUL_ENV}
        environ["CONSUL_HTTP_ADDR"] = env.addr
        process = run_module("watch", "--path", PATH, stdout=subprocess.PIPE, env=environ)
        try:
            assert process.stderr is not None and process.stdout is not None
            assert process.stderr.readline().endswith("Ctrl-C to stop\n")
            env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
            line = process.stdout.readline()
            assert line.endswith("  payments  created  failureThreshold: (absent) -> 3\n"), line
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == EXIT_OK
        assert err == ""


def test_the_health_report_says_each_change_of_condition_once() -> None:
    report = HealthReport()
    up, down = CoordHealth(up=True, last_sync=1.0), CoordHealth(up=False, last_error="HTTP 500")
    assert report.lines(up, "t1") == []
    assert report.lines(down, "t2") == [
        "t2  Consul: HTTP 500; still trying (services keep their policies)"
    ]
    assert report.lines(down, "t3") == []
    assert report.lines(up, "t4") == ["t4  Consul answers again"]
    assert report.lines(up, "t5") == []
