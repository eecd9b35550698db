"""The resolution model: built-in, then _default.json, then <name>.json, and their rules."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import attrs
import pytest

from breaker import Mode, Policy
from breaker._layers import BUILT_IN, Layers, in_canary, judge, judge_alone
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


# -- canaries ------------------------------------------------------------------------------------

MEMBERS = ["web-07", "web-11", "web-12", "web-19"]
"""The instances among web-01..web-20 that the hash puts in a 20% canary of "payments"."""


def canaried(
    clock: FakeClock, instance: str | None, builtin: Policy | None = None
) -> tuple[Layers, Store]:
    layers = Layers(
        builtin or Policy(failure_threshold=3, open_state_timeout=10),
        PREFIX,
        clock=clock,
        wall=clock.wall,
        instance=instance,
    )
    return layers, Store(layers)


CANARY = {"policy": {"failureThreshold": 1}, "percent": 20, "abortIfOpen": True}


class TestCanaries:
    def test_the_hash_is_stable_independent_per_breaker_and_nested_by_percent(self) -> None:
        ids = [f"web-{i:02d}" for i in range(1, 21)]
        assert [i for i in ids if in_canary(i, "payments", 20)] == MEMBERS
        assert [i for i in ids if in_canary(i, "search", 20)] == [
            "web-06",
            "web-08",
            "web-10",
            "web-15",
        ]
        for low, high in [(5, 20), (20, 50), (50, 100)]:
            small = {i for i in ids if in_canary(i, "payments", low)}
            assert small <= {i for i in ids if in_canary(i, "payments", high)}
        assert all(in_canary(i, "payments", 100) for i in ids)
        # The share is what it says, to within the spread of a fair hash.
        many = sum(in_canary(f"host-{n}", "payments", 20) for n in range(10_000))
        assert 1_850 < many < 2_150

    @pytest.mark.parametrize("instance", ["web-07", "web-08", None])
    def test_members_run_the_candidate_on_top_of_the_document(
        self, clock: FakeClock, instance: str | None
    ) -> None:
        layers, store = canaried(clock, instance)
        store.put("_default", {"successThreshold": 2})
        store.put("payments", {"openStateTimeout": "30s", "canary": CANARY})
        found = layers.resolved["payments"]
        stable = Policy(failure_threshold=3, success_threshold=2, open_state_timeout=30)
        member = instance == "web-07"
        assert found.policy == (attrs.evolve(stable, failure_threshold=1) if member else stable)
        assert found.canary is not None
        assert found.canary.member is member
        assert found.canary.runs == ("candidate" if member else "stable")
        assert found.canary.stable == stable
        assert found.canary.to_dict() == {
            "id": found.canary.id,
            "percent": 20.0,
            "abortIfOpen": True,
            "member": member,
            "runs": "candidate" if member else "stable",
            "aborted": False,
        }
        assert layers.invalid == {}

    def test_the_mode_comes_from_its_layer_for_members_too(self, clock: FakeClock) -> None:
        layers, store = canaried(clock, "web-07")
        store.put("payments", {"canary": CANARY})
        store.put("_default", {"mode": "forced-open"})  # a service-wide kill switch
        assert layers.resolved["payments"].policy.mode is Mode.FORCED_OPEN
        assert layers.resolved["payments"].policy.failure_threshold == 1

    def test_an_aborted_member_stays_stable_until_the_canary_changes(
        self, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        layers, store = canaried(clock, "web-07")
        store.put("payments", {"failureThreshold": 4, "canary": CANARY})
        with caplog.at_level(logging.INFO, logger="breaker"):
            found = layers.abort_canary("payments", "it tripped")
        assert found is not None and found.policy.failure_threshold == 4
        assert found.canary is not None and found.canary.aborted
        assert found.canary.runs == "stable" and found.canary.member
        assert [r.getMessage() for r in caplog.records] == [
            f"{PREFIX}payments.json: instance web-07 leaves the canary {found.canary.id} (20%) "
            "and goes back to the stable policy: it tripped (abortIfOpen)"
        ]
        assert layers.abort_canary("payments") is None  # once is enough
        # The stable part changes, the canary does not: still out of it.
        store.put("payments", {"failureThreshold": 5, "canary": CANARY})
        assert layers.resolved["payments"].policy.failure_threshold == 5
        store.put("_default", {"successThreshold": 2})  # re-layers every name
        assert layers.resolved["payments"].canary.aborted  # type: ignore[union-attr]
        # A new candidate is a new trial.
        store.put("payments", {"failureThreshold": 5, "canary": {**CANARY, "percent": 25}})
        assert layers.resolved["payments"].policy.failure_threshold == 1
        assert not layers.resolved["payments"].canary.aborted  # type: ignore[union-attr]

    def test_abort_only_concerns_a_member_running_the_candidate(self, clock: FakeClock) -> None:
        layers, store = canaried(clock, "web-08")
        store.put("payments", {"canary": CANARY})
        store.put("search", {"failureThreshold": 2})
        assert layers.abort_canary("payments") is None
        assert layers.abort_canary("search") is None
        assert layers.abort_canary("nothing") is None

    def test_an_invalid_new_version_keeps_the_last_good_ones_canary(self, clock: FakeClock) -> None:
        layers, store = canaried(clock, "web-07")
        store.put("payments", {"canary": CANARY})
        store.put("payments", {"canary": CANARY, "failureThreshold": "x"})
        assert layers.resolved["payments"].policy.failure_threshold == 1
        assert layers.invalid["payments"].kept == "keeping the last good policy"
        store.put("payments", {"canary": {**CANARY, "percent": "20%"}})  # an invalid canary
        assert layers.resolved["payments"].policy.failure_threshold == 1
        assert [p.key for p in layers.invalid["payments"].problems] == ["canary.percent"]

    def test_a_document_that_goes_away_takes_its_canary_and_abort_with_it(
        self, clock: FakeClock
    ) -> None:
        layers, store = canaried(clock, "web-07")
        store.put("payments", {"canary": CANARY})
        layers.abort_canary("payments")
        store.delete("payments")
        assert "payments" not in layers.resolved
        store.put("payments", {"canary": CANARY})  # the same canary again: a new start
        assert layers.resolved["payments"].canary.runs == "candidate"  # type: ignore[union-attr]
        store.put("payments", {"failureThreshold": 2})  # promoted, or aborted
        assert layers.resolved["payments"].canary is None

    def test_a_candidate_that_does_not_fit_runs_nowhere(self, clock: FakeClock) -> None:
        layers, store = canaried(clock, "web-07")
        store.put("payments", {"canary": {"policy": {"failureThreshold": 0}, "percent": 20}})
        found = layers.resolved["payments"]
        assert found.policy.failure_threshold == 3
        assert found.canary is not None and found.canary.candidate is None
        assert found.canary.runs == "stable"
        invalid = layers.invalid["payments"]
        assert [(p.key, p.message) for p in invalid.problems] == [
            (
                "canary.policy.failureThreshold",
                "canary.policy: on top of the document: failureThreshold: 0 turns the "
                "consecutive-failure rule off, which needs a failure rate to trip on instead",
            )
        ]
        assert invalid.kept == "its canary runs nowhere: every instance runs the document's policy"
        # The document below changes so that it fits: it runs.
        store.put(
            "payments",
            {"failureRate": 0.5, "canary": {"policy": {"failureThreshold": 0}, "percent": 20}},
        )
        assert layers.resolved["payments"].policy.failure_threshold == 0
        assert layers.invalid == {}

    def test_a_new_service_default_can_unfit_a_candidate(self, clock: FakeClock) -> None:
        layers, store = canaried(clock, "web-07")
        store.put("payments", {"canary": {"policy": {"openStateTimeout": "1m"}, "percent": 20}})
        assert layers.resolved["payments"].policy.open_state_timeout == 60
        store.put("_default", {"maxOpenStateTimeout": "30s"})
        assert layers.resolved["payments"].policy.open_state_timeout == 10
        assert list(layers.invalid) == ["payments"]

    def test_the_service_default_cannot_hold_a_canary(self, clock: FakeClock) -> None:
        layers, store = canaried(clock, "web-07")
        store.put("payments", {"canary": CANARY})  # the same bytes as below: judged apart
        store.put("_default", {"canary": CANARY})
        assert layers.default.policy.failure_threshold == 3
        assert [p.message for p in layers.invalid["_default"].problems] == [
            "canary: only a breaker's own document can hold a canary; the service default cannot"
        ]
        assert layers.resolved["payments"].canary is not None

    def test_a_new_instance_is_hashed_anew(self, clock: FakeClock) -> None:
        layers, store = canaried(clock, "web-07")
        store.put("payments", {"canary": CANARY})
        store.put("search", {"failureThreshold": 2})
        layers.abort_canary("payments")
        assert layers.set_instance("web-07") == []
        assert layers.set_instance("web-11") == ["payments"]
        assert layers.resolved["payments"].canary.runs == "candidate"  # type: ignore[union-attr]
        assert layers.set_instance("web-08") == ["payments"]
        assert layers.resolved["payments"].policy.failure_threshold == 3

    def test_a_canary_is_judged_alone_as_validate_does(self) -> None:
        doc, problems = judge_alone(
            b'{"canary": {"policy": {"failureThreshold": 0, "mode": "shadow"}, "percent": 0}}'
        )
        assert [p.key for p in doc.errors] == ["canary.percent", "canary.policy.mode"]
        doc, problems = judge_alone(
            b'{"canary": {"policy": {"failureThreshold": 0}, "percent": 5}}'
        )
        assert doc.valid and [p.key for p in problems] == ["canary.policy.failureThreshold"]
        doc = judge(b'{"canary": {"policy": {"failureTreshold": 1}, "percnt": 5, "percent": 5}}')
        assert [str(p) for p in doc.unknown_problems()] == [
            "canary.percnt: unknown key (did you mean 'percent'?)",
            "canary.policy.failureTreshold: unknown key (did you mean 'failureThreshold'?)",
        ]

    def test_explain_shows_the_canary_and_this_instances_part_in_it(self, clock: FakeClock) -> None:
        layers, store = canaried(clock, "web-07")
        store.put("payments", {"openStateTimeout": "30s", "canary": CANARY})
        found = layers.explain("payments")
        sources = {f["key"]: f["from"] for f in found["fields"]}
        assert (sources["failureThreshold"], sources["openStateTimeout"]) == ("canary", "payments")
        assert found["policy"]["failureThreshold"] == 1
        assert found["canary"] == {
            "id": layers.resolved["payments"].canary.id,  # type: ignore[union-attr]
            "percent": 20.0,
            "abortIfOpen": True,
            "policy": {"failureThreshold": 1},
            "applies": True,
            "instance": "web-07",
            "member": True,
            "runs": "candidate",
            "aborted": False,
            "stable": {"failureThreshold": 3, "successThreshold": 1, "openStateTimeout": "30s"},
            "candidate": {"failureThreshold": 1, "successThreshold": 1, "openStateTimeout": "30s"},
        }
        unknown, store = canaried(clock, None)
        store.put("payments", {"canary": CANARY})
        found = unknown.explain("payments")
        assert (found["canary"]["member"], found["canary"]["runs"]) == (None, None)
        assert {f["key"]: f["from"] for f in found["fields"]}["failureThreshold"] == BUILT_IN
        assert layers.explain("search")["canary"] is None
