"""The resolution model: built-in, then _default.json, then <name>.json, and their rules."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from breaker import Mode, Policy
from breaker._layers import BUILT_IN, Layers, judge, judge_alone
from breaker.testing import FakeClock

from .helpers import PREFIX

DEFAULT = PREFIX + "_default.json"


def key(name: str) -> str:
    return f"{PREFIX}{name}.json"


class Store:
    """Snapshots as a coord hands them over: unchanged keys keep their bytes objects."""

    def __init__(self, layers: Layers) -> None:
        self.layers = layers
        self.data: dict[str, bytes] = {}

    def put(self, name: str, document: object) -> tuple[bool, list[str]]:
        text = document if isinstance(document, str) else json.dumps(document)
        self.data[key(name)] = text.encode()
        return self.layers.update(dict(self.data))

    def delete(self, name: str) -> tuple[bool, list[str]]:
        del self.data[key(name)]
        return self.layers.update(dict(self.data))


@pytest.fixture
def layers(clock: FakeClock) -> Layers:
    return Layers(
        Policy(failure_threshold=3, open_state_timeout=10), PREFIX, clock=clock, wall=clock.wall
    )


@pytest.fixture
def store(layers: Layers) -> Store:
    return Store(layers)


def policy(layers: Layers, name: str) -> Policy:
    return layers.resolved.get(name, layers.default).policy


def mode(layers: Layers, name: str) -> Mode:
    return layers.mode_now(layers.resolved.get(name, layers.default))[0]


class TestJudgingADocumentAlone:
    def test_every_error_with_its_key(self) -> None:
        doc = judge(b'{"failureThreshold": -1, "mode": "off", "openStateTimout": "1m"}')
        assert [(p.key, p.message.split(":")[0]) for p in doc.errors] == [
            ("failureThreshold", "failureThreshold"),
            ("mode", "mode"),
        ]
        assert doc.unknown == ("openStateTimout",)
        assert [str(p) for p in doc.unknown_problems()] == [
            "openStateTimout: unknown key (did you mean 'openStateTimeout'?)"
        ]

    def test_not_json(self) -> None:
        doc = judge(b"{")
        assert not doc.valid and doc.errors[0].key is None
        assert str(doc.errors[0]).startswith("malformed JSON")

    def test_alone_over_the_built_in_default(self) -> None:
        doc, problems = judge_alone(b'{"failureThreshold": 0, "maxOpenStateTimeout": "1s"}')
        assert doc.valid  # each rule between keys needs a key it does not set
        assert [p.key for p in problems] == ["failureThreshold", "maxOpenStateTimeout"]
        assert judge_alone(b'{"maxOpenStateTimeout": "1s"}', Policy(open_state_timeout=1))[1] == ()


class TestLayering:
    def test_keys_left_out_come_from_the_layer_below(self, layers: Layers, store: Store) -> None:
        store.put("_default", {"successThreshold": 2})
        store.put("payments", {"openStateTimeout": "30s"})
        assert policy(layers, "payments") == Policy(
            failure_threshold=3, success_threshold=2, open_state_timeout=30
        )
        assert policy(layers, "search") == layers.default.policy
        assert "search" not in layers.resolved

    def test_a_document_that_no_longer_fits_runs_on_the_new_default(
        self, layers: Layers, store: Store
    ) -> None:
        # Issue 17, case 1: the lifted kill switch reaches payments too.
        store.put("payments", {"openStateTimeout": "1m"})
        store.put("_default", {"mode": "forced-open", "openStateTimeout": "10s"})
        assert mode(layers, "payments") is Mode.FORCED_OPEN
        relayered, _ = store.put(
            "_default", {"openStateTimeout": "10s", "maxOpenStateTimeout": "30s"}
        )
        assert relayered
        assert policy(layers, "payments") == layers.default.policy
        assert mode(layers, "payments") is Mode.AUTO
        found = layers.invalid["payments"]
        assert [str(p) for p in found.problems] == [
            "on top of _default.json: maxOpenStateTimeout: 30s is shorter than the open state "
            "timeout (1m0s)"
        ]
        assert found.problems[0].key == "openStateTimeout"  # the key the document sets
        assert found.kept == "keeping the default policy"

    def test_an_invalid_document_keeps_its_own_last_good_version(
        self, layers: Layers, store: Store
    ) -> None:
        store.put("payments", {"failureThreshold": 7})
        store.put("_default", {"successThreshold": 2})
        store.put("payments", {"failureThreshold": "seven"})
        assert policy(layers, "payments").failure_threshold == 7
        store.put("_default", {"successThreshold": 4})  # the kept version, on the new default
        assert policy(layers, "payments").success_threshold == 4
        assert layers.invalid["payments"].kept == "keeping the last good policy"

    def test_a_version_that_does_not_fit_keeps_the_last_one_that_does(
        self, layers: Layers, store: Store
    ) -> None:
        store.put("_default", {"maxOpenStateTimeout": "30s"})
        store.put("payments", {"openStateTimeout": "20s"})
        store.put("payments", {"openStateTimeout": "1m"})
        assert policy(layers, "payments").open_state_timeout == 20
        assert list(layers.invalid) == ["payments"]
        store.put("_default", {"maxOpenStateTimeout": "2m"})  # now the new version fits
        assert policy(layers, "payments").open_state_timeout == 60
        assert layers.invalid == {}

    def test_an_invalid_service_default_keeps_its_last_good_version(
        self, layers: Layers, store: Store
    ) -> None:
        store.put("_default", {"failureThreshold": 9})
        store.put("_default", {"failureThreshold": -9})
        assert layers.default.policy.failure_threshold == 9
        assert layers.invalid["_default"].kept == "keeping the last good service default"
        store.delete("_default")
        assert layers.default.policy.failure_threshold == 3
        assert layers.invalid == {}

    def test_a_service_default_that_does_not_fit_the_built_in_one(
        self, layers: Layers, store: Store
    ) -> None:
        store.put("_default", {"maxOpenStateTimeout": "5s"})  # the built-in timeout is 10 s
        assert layers.default.policy.max_open_state_timeout is None
        assert str(layers.invalid["_default"].problems[0]).startswith(
            "on top of the built-in default: maxOpenStateTimeout: 5s is shorter"
        )


class TestModes:
    def test_the_topmost_layer_that_sets_a_mode_decides(self, layers: Layers, store: Store) -> None:
        store.put("_default", {"mode": "forced-open"})
        store.put("payments", {"mode": "shadow", "failureThreshold": 4})
        store.put("search", {"failureThreshold": 4})
        assert mode(layers, "payments") is Mode.SHADOW
        assert mode(layers, "search") is Mode.FORCED_OPEN
        assert layers.mode_holders() == {"payments": Mode.SHADOW}

    def test_a_mode_applies_from_a_document_whose_settings_do_not_fit(
        self, layers: Layers, store: Store
    ) -> None:
        store.put("_default", {"maxOpenStateTimeout": "30s"})
        store.put("payments", {"openStateTimeout": "1m", "mode": "forced-open"})
        assert mode(layers, "payments") is Mode.FORCED_OPEN
        assert policy(layers, "payments").open_state_timeout == 10  # not its own
        assert (
            layers.invalid["payments"].kept
            == "keeping the default policy, with its mode (forced-open)"
        )

    def test_lifting_a_service_wide_kill_switch_reaches_a_broken_document(
        self, layers: Layers, store: Store
    ) -> None:
        store.put("payments", {"failureThreshold": 4})
        store.put("_default", {"mode": "forced-open"})
        store.put("payments", "{")  # broken: keeps its last good version, which sets no mode
        store.put("_default", {})
        assert mode(layers, "payments") is Mode.AUTO
        assert policy(layers, "payments").failure_threshold == 4

    def test_a_kill_switch_in_a_last_good_version_stays_until_its_layer_lifts_it(
        self, layers: Layers, store: Store
    ) -> None:
        store.put("payments", {"mode": "forced-open"})
        store.put("payments", {"mode": "forced-open", "failureThreshold": "x"})
        assert mode(layers, "payments") is Mode.FORCED_OPEN
        assert layers.invalid["payments"].kept == "keeping the last good policy"
        store.put("payments", {})
        assert mode(layers, "payments") is Mode.AUTO


class TestTwoClocks:
    def test_a_mode_ends_by_the_wall_clock_read_when_checked(
        self, clock: FakeClock, layers: Layers, store: Store
    ) -> None:
        # Issue 17, case 3a: adopted while the wall clock is a day behind.
        until = clock.datetime() + timedelta(minutes=15)
        clock.step_wall(-86_400)
        store.put("_default", {"mode": "forced-open", "modeUntil": until.isoformat()})
        assert layers.mode_now(layers.default) == (Mode.FORCED_OPEN, 86_400 + 900)
        clock.step_wall(86_400)
        assert layers.mode_now(layers.default) == (Mode.FORCED_OPEN, 900)
        clock.advance(900)
        assert layers.mode_now(layers.default) == (Mode.AUTO, None)

    def test_relayering_reuses_the_deadline_so_an_expired_mode_stays_expired(
        self, clock: FakeClock, layers: Layers, store: Store
    ) -> None:
        # Issue 17, case 3b.
        until = (clock.datetime() + timedelta(minutes=15)).isoformat()
        store.put("payments", {"mode": "forced-open", "modeUntil": until})
        deadline = layers.resolved["payments"].mode_deadline
        assert deadline == clock() + 900
        clock.advance(901)
        clock.step_wall(-600)
        store.put("_default", {"failureThreshold": 2})  # re-layers every name
        assert layers.resolved["payments"].mode_deadline == deadline
        assert mode(layers, "payments") is Mode.AUTO
        # A new version of the same layer with the same mode and end: the same deadline.
        store.put("payments", {"mode": "forced-open", "modeUntil": until, "failureThreshold": 4})
        assert layers.resolved["payments"].mode_deadline == deadline
        assert mode(layers, "payments") is Mode.AUTO
        # A new end is a new switch.
        later = (clock.datetime() + timedelta(minutes=5)).isoformat()
        store.put("payments", {"mode": "forced-open", "modeUntil": later})
        assert layers.mode_now(layers.resolved["payments"]) == (Mode.FORCED_OPEN, 300)


class TestCost:
    def test_unchanged_documents_are_found_by_identity_then_equality(
        self, layers: Layers, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        compared = []

        class Counted(bytes):
            def __eq__(self, other: object) -> bool:
                compared.append(1)
                return bytes.__eq__(self, other)

            __hash__ = bytes.__hash__

        snapshot = {key(f"svc-{i}"): Counted(b'{"failureThreshold": 4}') for i in range(100)}
        layers.update(snapshot)
        compared.clear()
        judged: list[bytes] = []
        monkeypatch.setattr("breaker._layers.judge", lambda raw: judged.append(raw))
        assert layers.update(dict(snapshot)) == (False, [])  # the same objects
        assert compared == [] and judged == []
        copies = {k: Counted(bytes(v)) for k, v in snapshot.items()}
        assert layers.update(copies) == (False, [])  # equal bytes: compared, never judged
        assert len(compared) == 100 and judged == []

    def test_a_change_resolves_what_it_touches_and_a_new_default_everything(
        self, layers: Layers, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for i in range(50):
            store.data[key(f"svc-{i}")] = json.dumps({"failureThreshold": 4 + i}).encode()
        layers.update(dict(store.data))
        fitted: list[Any] = []
        real = Layers._fit

        def counting(self: Layers, layer: Any, *args: Any) -> Any:
            fitted.append(layer)
            return real(self, layer, *args)

        monkeypatch.setattr(Layers, "_fit", counting)
        before = layers.resolved
        assert store.put("svc-7", {"failureThreshold": 99}) == (False, ["svc-7"])
        assert len(fitted) == 1
        assert layers.resolved is not before
        assert [n for n in layers.resolved if layers.resolved[n] is not before[n]] == ["svc-7"]
        fitted.clear()
        assert store.put("_default", {"successThreshold": 2})[0] is True
        assert len(fitted) == 51  # the default, then every name
        assert policy(layers, "svc-7").success_threshold == 2

    def test_names_holding_the_same_document_resolve_once(
        self, layers: Layers, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        layers.update({key(f"svc-{i}"): b'{"failureThreshold": 4}' for i in range(50)})
        assert len({id(layers.resolved[f"svc-{i}"]) for i in range(50)}) == 1


class TestReports:
    def test_the_invalid_list_is_now_and_the_counter_counts_rejections(
        self, layers: Layers, store: Store
    ) -> None:
        store.put("payments", {"failureThreshold": "x"})
        store.put("search", {"failureThreshold": 2})
        assert (list(layers.invalid), layers.rejected) == (["payments"], 1)
        store.put("_default", {"successThreshold": 2})  # re-layers: still the same rejection
        assert (list(layers.invalid), layers.rejected) == (["payments"], 1)
        store.put("payments", {"failureThreshold": 2})
        assert (layers.invalid, layers.rejected) == ({}, 1)

    def test_explain_says_where_each_key_comes_from_and_why(
        self, clock: FakeClock, layers: Layers, store: Store
    ) -> None:
        until = (clock.datetime() + timedelta(minutes=15)).isoformat()
        store.put("_default", {"successThreshold": 2, "mode": "forced-open", "modeUntil": until})
        store.put("payments", {"openStateTimeout": "30s", "mode": "off"})
        found = layers.explain("payments")
        sources = {f["key"]: f["from"] for f in found["fields"]}
        assert sources["failureThreshold"] == BUILT_IN
        assert sources["successThreshold"] == "_default"
        assert sources["mode"] == sources["modeUntil"] == "_default"
        assert sources["openStateTimeout"] == BUILT_IN  # its document does not apply
        assert found["mode"] == {
            "mode": "forced-open",
            "set_by": "_default",
            "until": "2026-01-01T00:15:00Z",
            "ends_in": 900.0,
        }
        assert [(entry["layer"], entry["state"]) for entry in found["layers"]] == [
            (BUILT_IN, "applies"),
            ("_default", "applies"),
            ("payments", "invalid"),
        ]
        assert found["layers"][2]["problems"][0]["key"] == "mode"
        clock.advance(900)
        assert layers.explain("payments")["mode"]["ended"] == "forced-open"
