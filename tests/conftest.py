from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

import breaker
from breaker.testing import FakeClock

from .helpers import PREFIX

pytest_plugins = ["breaker.testing.pytest_plugin"]


def pytest_report_header() -> str:
    from importlib import metadata

    found = []
    for dist in ("python-consul", "py-consul"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{dist} {metadata.version(dist)}")
    return "consul client: " + (", ".join(found) or "none")


@pytest.fixture(autouse=True)
def _no_default_provider() -> Iterator[None]:
    breaker.set_default_provider(None)
    yield
    breaker.set_default_provider(None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def coord() -> breaker.MemoryCoord:
    return breaker.MemoryCoord()


@pytest.fixture
def provider(coord: breaker.MemoryCoord, clock: FakeClock) -> Iterator[breaker.Provider]:
    config = breaker.Config(service_name="checkout", policies_path="/" + PREFIX)
    with breaker.new(
        config,
        coord=coord,
        default_policy=breaker.Policy(
            failure_threshold=3, success_threshold=2, open_state_timeout=10
        ),
        clock=clock,
    ) as p:
        yield p
