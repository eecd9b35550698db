"""breaker.integrations as a package: light to import, one extra per client, documented."""

from __future__ import annotations

import importlib
import inspect
import pickle
import subprocess
import sys

import pytest

import breaker
from breaker.integrations import retry_after_seconds

# integration module -> (the module it imports, its distribution, the extra that installs it)
INTEGRATIONS = {
    "httpx": ("httpx", "httpx", "httpx"),
    "requests": ("requests", "requests", "requests"),
    "grpc": ("grpc", "grpcio", "grpc"),
    "starlette": ("starlette", "starlette", "starlette"),
    "flask": ("flask", "flask", "flask"),
}
HEAVY = ["httpx", "httpcore", "requests", "grpc", "starlette", "flask", "werkzeug"]


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_breaker_and_the_package_imports_no_client_library() -> None:
    result = python(
        "import sys, breaker\n"
        "core = set(sys.modules)\n"
        "import breaker.integrations\n"
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))\n"
        "print(sorted(set(sys.modules) - core))"
    )
    assert result.returncode == 0, result.stderr
    imported, added = result.stdout.splitlines()
    # python-consul imports requests, and breaker.coord imports python-consul
    assert imported in ("[]", "['requests']")
    assert added == "['breaker.integrations', 'breaker.integrations._common']"


def test_a_missing_library_names_the_extra_to_install() -> None:
    checks = "\n".join(
        f"sys.modules[{library!r}] = None\n"
        "try:\n"
        f"    import breaker.integrations.{module}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        for module, (library, _, _) in INTEGRATIONS.items()
    )
    result = python("import sys\n" + checks)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"breaker.integrations.{module} needs {dist}: pip install 'consul-breaker[{extra}]'"
        for module, (_, dist, extra) in INTEGRATIONS.items()
    ]


@pytest.mark.parametrize("module", sorted(INTEGRATIONS))
def test_every_public_name_has_a_docstring(module: str) -> None:
    pytest.importorskip(INTEGRATIONS[module][0])
    mod = importlib.import_module(f"breaker.integrations.{module}")
    assert mod.__doc__
    for name in mod.__all__:
        obj = getattr(mod, name)
        assert obj.__doc__, f"{module}.{name} has no docstring"
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    assert member.__doc__, f"{module}.{name}.{attr} has no docstring"


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [(0.0, 1), (0.001, 1), (1.0, 1), (1.0001, 2), (9.5, 10), (60.0, 60)],
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(
    retry_after: float, header: int
) -> None:
    exc = breaker.BreakerOpenError("api", breaker.State.OPEN, retry_after)
    assert retry_after_seconds(exc) == header


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("httpx", "BreakerOpenTransportError"),
        ("requests", "BreakerOpenConnectionError"),
        ("grpc", "BreakerOpenRpcError"),
        ("grpc", "BreakerOpenAioRpcError"),
    ],
)
def test_rejections_are_built_and_pickled_like_breaker_open_error(module: str, name: str) -> None:
    pytest.importorskip(INTEGRATIONS[module][0])
    cls = getattr(importlib.import_module(f"breaker.integrations.{module}"), name)
    for args in [
        ("api", breaker.State.OPEN, 2.5),
        ("api", breaker.State.OPEN, 1.0, breaker.Mode.FORCED_OPEN),
    ]:
        exc = cls(*args)
        assert isinstance(exc, breaker.BreakerOpenError)
        assert exc.args == args
        copy = pickle.loads(pickle.dumps(exc))
        assert type(copy) is cls and copy.args == args and str(copy) == str(exc)
