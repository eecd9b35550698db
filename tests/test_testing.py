"""breaker.testing stays light: the servers load when a test asks for one, not before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import breaker.testing

ROOT = Path(__file__).resolve().parent.parent
SERVER_MODULES = {
    "breaker.testing._proxy",
    "breaker.testing._server",
    "email",
    "http.client",
    "http.server",
    "socket",
    "socketserver",
    "ssl",
    "urllib.request",
}


def loaded_by(statement: str, after: str = "import breaker") -> set[str]:
    """Return the modules ``statement`` loads in a fresh interpreter, after ``after`` ran."""
    code = (
        f"import json, sys; {after}; before = set(sys.modules); {statement}; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


def test_import_breaker_testing_loads_no_server_module() -> None:
    assert loaded_by("import breaker.testing") == {"breaker.testing", "breaker.testing._clock"}
    from_scratch = loaded_by("import breaker.testing", after="pass")
    assert not from_scratch & SERVER_MODULES


def test_the_light_helpers_need_no_server_module() -> None:
    code = (
        "from breaker.testing import FakeClock, adopt, force_state; "
        "clock = FakeClock(); clock.advance(1); "
        "brk = breaker.new(breaker.Config('s', 'p/'), coord=breaker.MemoryCoord(), clock=clock)"
        ".get_breaker('b'); force_state(brk, 'open'); adopt(brk, breaker.Policy())"
    )
    assert not loaded_by(code) & SERVER_MODULES


def test_the_pytest_plugin_loads_no_server_module_until_a_server_is_asked_for() -> None:
    loaded = loaded_by("import breaker.testing.pytest_plugin", after="import pytest")
    assert not loaded & SERVER_MODULES


def test_the_servers_load_on_first_use_and_stay() -> None:
    loaded = loaded_by("from breaker.testing import ConsulServer, FaultProxy, ACLRule")
    assert {"breaker.testing._server", "breaker.testing._proxy", "http.server"} <= loaded
    from breaker.testing._proxy import FaultProxy
    from breaker.testing._server import ACLRule, ConsulServer

    assert breaker.testing.ConsulServer is ConsulServer
    assert breaker.testing.FaultProxy is FaultProxy
    assert breaker.testing.ACLRule is ACLRule
    assert "ConsulServer" in vars(breaker.testing)  # found once, then a plain attribute


def test_the_lazy_names_are_listed_and_others_are_missing() -> None:
    assert set(breaker.testing.__all__) <= set(dir(breaker.testing))
    with pytest.raises(AttributeError, match="no attribute 'Consul'"):
        breaker.testing.Consul  # noqa: B018
    with pytest.raises(ImportError):
        from breaker.testing import Consul  # type: ignore[attr-defined]  # noqa: F401
