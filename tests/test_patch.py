"""breaker.patch: functions of modules we do not own, guarded in place and restored exactly.

Every test patches throwaway modules (in sys.modules, or files under tmp_path that are
imported later), never a real library.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import sys
import textwrap
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import breaker
from breaker import _patch

from .helpers import Boom, NotFound


@pytest.fixture(autouse=True)
def _unpatch_everything() -> Iterator[None]:
    yield
    for handle in list(_patch._active.values()):
        handle.unpatch()


def unique(prefix: str = "fake_sdk") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


class Base:
    def describe(self) -> str:
        return f"{type(self).__name__}"


def build_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Return a module that stands for a vendor SDK, registered in sys.modules."""
    module = types.ModuleType(unique())
    state = {"fail": False, "calls": 0}

    def charge(amount: int) -> str:
        state["calls"] += 1
        if state["fail"]:
            raise Boom("payments down")
        return f"charged {amount}"

    async def refund(amount: int) -> str:
        await asyncio.sleep(0)
        if state["fail"]:
            raise Boom("payments down")
        return f"refunded {amount}"

    class Charge(Base):
        fee = 3

        def create(self, amount: int) -> str:
            return charge(amount)

        @classmethod
        def retrieve(cls, charge_id: str) -> str:
            if state["fail"]:
                raise Boom("payments down")
            return f"{cls.__name__} {charge_id}"

        @staticmethod
        def fee_for(amount: int) -> int:
            if state["fail"]:
                raise Boom("payments down")
            return amount // 100

        async def capture(self, amount: int) -> str:
            return await refund(-amount)

    def lines() -> Iterator[str]:
        yield "line"

    module.charge = charge  # type: ignore[attr-defined]
    module.refund = refund  # type: ignore[attr-defined]
    module.Charge = Charge  # type: ignore[attr-defined]
    module.lines = lines  # type: ignore[attr-defined]
    module.state = state  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    return build_module(monkeypatch)


def trip(fn: Any, *args: Any) -> None:
    for _ in range(3):
        with pytest.raises(Boom):
            fn(*args)


def test_a_module_function_is_guarded_and_restored_exactly(
    sdk: Any, provider: breaker.Provider
) -> None:
    original = vars(sdk)["charge"]
    handle = breaker.patch(f"{sdk.__name__}:charge", "payments", provider=provider)
    assert handle.applied and handle.active
    assert sdk.charge(5) == "charged 5"
    assert sdk.charge.__name__ == "charge"
    assert inspect.signature(sdk.charge) == inspect.signature(original)
    sdk.state["fail"] = True
    trip(sdk.charge, 1)
    calls = sdk.state["calls"]
    with pytest.raises(breaker.BreakerOpenError) as caught:
        sdk.charge(1)
    assert caught.value.name == "payments"
    assert sdk.state["calls"] == calls
    handle.unpatch()
    assert vars(sdk)["charge"] is original
    assert not handle.applied and not handle.active
    with pytest.raises(Boom):
        sdk.charge(1)  # unguarded again, though the breaker is still open


def test_methods_classmethods_and_staticmethods(sdk: Any, provider: breaker.Provider) -> None:
    before = dict(vars(sdk.Charge))
    handles = [
        breaker.patch(f"{sdk.__name__}:Charge.{attr}", f"charge-{attr}", provider=provider)
        for attr in ("create", "retrieve", "fee_for")
    ]
    charge = sdk.Charge()
    assert charge.create(7) == "charged 7"
    assert sdk.Charge.retrieve("ch_1") == "Charge ch_1" == charge.retrieve("ch_1")
    assert sdk.Charge.fee_for(250) == 2 == charge.fee_for(250)
    assert type(vars(sdk.Charge)["retrieve"]) is not classmethod  # the wrapper is stored
    sdk.state["fail"] = True
    trip(charge.create, 1)
    trip(sdk.Charge.retrieve, "ch_1")
    trip(sdk.Charge.fee_for, 1)
    for attr in ("create", "retrieve", "fee_for"):
        assert provider.get_breaker(f"charge-{attr}").state is breaker.State.OPEN
    with pytest.raises(breaker.BreakerOpenError):
        charge.retrieve("ch_2")
    for handle in handles:
        handle.unpatch()
    after = dict(vars(sdk.Charge))
    assert after.keys() == before.keys()
    assert all(after[key] is before[key] for key in before)
    assert isinstance(after["retrieve"], classmethod)
    assert isinstance(after["fee_for"], staticmethod)


def test_async_functions_and_methods(sdk: Any, provider: breaker.Provider) -> None:
    breaker.patch(f"{sdk.__name__}:refund", "refunds", provider=provider)
    breaker.patch(f"{sdk.__name__}:Charge.capture", "captures", provider=provider)
    assert inspect.iscoroutinefunction(sdk.refund)
    assert asyncio.run(sdk.refund(3)) == "refunded 3"
    assert asyncio.run(sdk.Charge().capture(4)) == "refunded -4"
    sdk.state["fail"] = True
    for _ in range(3):
        with pytest.raises(Boom):
            asyncio.run(sdk.refund(1))
    with pytest.raises(breaker.BreakerOpenError):
        asyncio.run(sdk.refund(1))
    assert provider.get_breaker("captures").stats().calls["success"] == 1


def test_an_inherited_method_is_guarded_on_the_subclass_only(
    sdk: Any, provider: breaker.Provider
) -> None:
    handle = breaker.patch(f"{sdk.__name__}:Charge.describe", "describe", provider=provider)
    assert "describe" in vars(sdk.Charge)
    assert sdk.Charge().describe() == "Charge"
    assert provider.get_breaker("describe").stats().calls["success"] == 1
    assert Base().describe() == "Base"
    assert provider.get_breaker("describe").stats().calls["success"] == 1
    handle.unpatch()
    assert "describe" not in vars(sdk.Charge)
    assert sdk.Charge.describe is Base.describe


def test_circuit_options_apply(sdk: Any, provider: breaker.Provider) -> None:
    sdk.state["fail"] = True
    breaker.patch(
        f"{sdk.__name__}:charge",
        "payments",
        provider=provider,
        fallback=lambda exc, amount: f"queued {amount}",
    )
    assert [sdk.charge(i) for i in range(4)] == [f"queued {i}" for i in range(4)]
    assert provider.get_breaker("payments").stats().calls["rejected"] == 1

    breaker.patch(f"{sdk.__name__}:Charge.fee_for", "fees", provider=provider, exclude=[Boom])
    for _ in range(4):
        with pytest.raises(Boom):
            sdk.Charge.fee_for(1)
    assert provider.get_breaker("fees").stats().calls["excluded"] == 4

    sdk.state["fail"] = False
    breaker.patch(
        f"{sdk.__name__}:Charge.retrieve",
        "lookups",
        provider=provider,
        failure_if=lambda result: result.endswith("missing"),
    )
    for _ in range(3):
        assert sdk.Charge.retrieve("missing") == "Charge missing"
    assert provider.get_breaker("lookups").state is breaker.State.OPEN


def test_without_a_provider_the_default_provider_is_used_at_call_time(
    sdk: Any, provider: breaker.Provider
) -> None:
    breaker.patch(f"{sdk.__name__}:charge", "payments")
    assert sdk.charge(1) == "charged 1"  # unguarded: no default provider yet
    with breaker.set_default_provider(provider):
        assert sdk.charge(2) == "charged 2"
    assert provider.get_breaker("payments").stats().calls["success"] == 1


def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    name = unique("later_sdk")
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name


LATER = """
    class Client:
        def get(self, key):
            raise ConnectionError("down")

    def ping():
        return "pong"
"""


def test_a_module_imported_later_is_patched_on_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: breaker.Provider
) -> None:
    name = write_module(tmp_path, monkeypatch, LATER)
    handle = breaker.patch(f"{name}:Client.get", "cache", provider=provider)
    other = breaker.patch(f"{name}:ping", "ping", provider=provider)
    assert not handle.applied and handle.active
    assert "waiting for import" in repr(handle)
    module = importlib.import_module(name)
    try:
        assert handle.applied and other.applied
        for _ in range(3):
            with pytest.raises(ConnectionError):
                module.Client().get("k")
        with pytest.raises(breaker.BreakerOpenError):
            module.Client().get("k")
        assert module.ping() == "pong"
        handle.unpatch()
        with pytest.raises(ConnectionError):
            module.Client().get("k")
    finally:
        sys.modules.pop(name, None)


def test_unpatching_before_the_import_leaves_the_module_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: breaker.Provider
) -> None:
    name = write_module(tmp_path, monkeypatch, LATER)
    handle = breaker.patch(f"{name}:ping", "ping", provider=provider)
    handle.unpatch()
    module = importlib.import_module(name)
    try:
        assert isinstance(vars(module)["ping"], types.FunctionType)
        assert not handle.applied and not handle.active
    finally:
        sys.modules.pop(name, None)


def test_a_target_missing_at_import_is_logged_and_the_import_succeeds(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: breaker.Provider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = write_module(tmp_path, monkeypatch, LATER)
    handle = breaker.patch(f"{name}:Client.post", "cache", provider=provider)
    with caplog.at_level(logging.ERROR, logger="breaker"):
        module = importlib.import_module(name)
    try:
        assert module.ping() == "pong"
        assert not handle.active
        assert "could not patch it on import" in caplog.text
    finally:
        sys.modules.pop(name, None)


def test_patching_twice_replaces_the_first_patch(sdk: Any, provider: breaker.Provider) -> None:
    original = vars(sdk)["charge"]
    first = breaker.patch(f"{sdk.__name__}:charge", "first", provider=provider)
    second = breaker.patch(f"{sdk.__name__}:charge", "second", provider=provider)
    assert not first.active and second.applied
    assert sdk.charge.__wrapped__.__wrapped__ is original  # guarded once (see _stand_in)
    sdk.charge(1)
    assert provider.get_breaker("second").stats().calls["success"] == 1
    assert provider.get_breaker("first").stats().calls["success"] == 0
    first.unpatch()  # an inactive handle changes nothing
    assert second.applied and vars(sdk)["charge"] is not original
    second.unpatch()
    second.unpatch()
    assert vars(sdk)["charge"] is original


def test_a_function_replaced_since_it_was_patched_is_left_alone(
    sdk: Any, provider: breaker.Provider, caplog: pytest.LogCaptureFixture
) -> None:
    handle = breaker.patch(f"{sdk.__name__}:charge", "payments", provider=provider)

    def replacement(amount: int) -> str:
        return "mine"

    sdk.charge = replacement
    with caplog.at_level(logging.WARNING, logger="breaker"):
        handle.unpatch()
    assert sdk.charge is replacement
    assert "replaced since it was patched" in caplog.text


def test_a_patch_is_a_context_manager(sdk: Any, provider: breaker.Provider) -> None:
    original = vars(sdk)["charge"]
    with breaker.patch(f"{sdk.__name__}:charge", "payments", provider=provider) as handle:
        assert handle.applied and vars(sdk)["charge"] is not original
    assert vars(sdk)["charge"] is original


@pytest.mark.parametrize(
    "target", ["charge", "a:b:c", "sdk:", ":charge", "sdk:1x", "sdk:Charge..create", "s dk:f", 42]
)
def test_malformed_targets_are_refused(target: Any) -> None:
    with pytest.raises(ValueError, match=r"module:Qualified\.name"):
        breaker.patch(target, "payments")


def test_what_cannot_be_patched_raises_and_changes_nothing(
    sdk: Any, provider: breaker.Provider
) -> None:
    with pytest.raises(AttributeError):
        breaker.patch(f"{sdk.__name__}:Charge.delete", "payments", provider=provider)
    with pytest.raises(AttributeError):
        breaker.patch(f"{sdk.__name__}:Refund.create", "payments", provider=provider)
    with pytest.raises(TypeError, match="generator function"):
        breaker.patch(f"{sdk.__name__}:lines", "payments", provider=provider)
    with pytest.raises(ValueError, match="cannot name a breaker"):
        breaker.patch(f"{sdk.__name__}:charge", "a//b", provider=provider)
    assert isinstance(vars(sdk)["lines"], types.FunctionType)
    assert isinstance(vars(sdk)["charge"], types.FunctionType)
    assert _patch._active == {}


def test_the_handle_says_what_it_guards(sdk: Any, provider: breaker.Provider) -> None:
    handle = breaker.patch(f"{sdk.__name__}:charge", "payments", provider=provider)
    assert (handle.target, handle.name) == (f"{sdk.__name__}:charge", "payments")
    assert repr(handle) == f"<Patch '{sdk.__name__}:charge' breaker='payments' applied>"


def test_not_found_style_errors_can_be_excluded(sdk: Any, provider: breaker.Provider) -> None:
    def lookup(charge_id: str) -> str:
        raise NotFound(charge_id)

    sdk.lookup = lookup
    breaker.patch(f"{sdk.__name__}:lookup", "lookups", provider=provider, exclude=[NotFound])
    for _ in range(5):
        with pytest.raises(NotFound):
            sdk.lookup("ch_404")
    assert provider.get_breaker("lookups").state is breaker.State.CLOSED
