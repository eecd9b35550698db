"""Provider: the registry, the policy mapping, dynamic policies through a coord."""

from __future__ import annotations

import functools
import gc
import json
import logging
import random
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

import breaker
from breaker import BreakerOpenError, Config, MemoryCoord, Policy, State, StateChange, _layers
from breaker.testing import FakeClock

from .helpers import PREFIX, Boom, fail


def put(coord: MemoryCoord, name: str, **doc: object) -> None:
    coord.put(PREFIX + name + ".json", json.dumps(doc))


def fail_n(brk: breaker.Breaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises((Boom, BreakerOpenError)):
            brk.do(fail)


class TestConfig:
    def test_prefix_is_normalised(self) -> None:
        assert Config("svc", "/config/dev/svc/breakers/").prefix == "config/dev/svc/breakers/"
        assert Config("svc", "config/dev/svc/breakers").prefix == "config/dev/svc/breakers/"

    @pytest.mark.parametrize(
        "kwargs", [{"service_name": ""}, {"policies_path": "/"}, {"policies_path": 3}]
    )
    def test_rejects_empty_values(self, kwargs: dict[str, object]) -> None:
        args: dict[str, object] = {"service_name": "svc", "policies_path": "p/"} | kwargs
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            Config(**args)  # type: ignore[arg-type]


class TestGetBreaker:
    def test_one_instance_per_name(self, provider: breaker.Provider) -> None:
        a = provider.get_breaker("payments")
        assert provider.get_breaker("payments") is a
        assert provider.get_breaker("inventory") is not a
        assert a.name == "payments"

    def test_one_instance_per_name_under_contention(self, provider: breaker.Provider) -> None:
        n = 32
        barrier = threading.Barrier(n)
        got: list[breaker.Breaker] = []

        def worker(i: int) -> None:
            barrier.wait()
            got.append(provider.get_breaker(f"svc-{i % 4}"))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len({id(b) for b in got}) == 4
        for name in ("svc-0", "svc-1", "svc-2", "svc-3"):
            assert sum(b.name == name for b in got) == n // 4

    @pytest.mark.parametrize("name", ["", None, 3])
    def test_rejects_bad_names(self, provider: breaker.Provider, name: object) -> None:
        with pytest.raises(ValueError, match="name"):
            provider.get_breaker(name)  # type: ignore[arg-type]

    def test_default_policy_without_a_document(self, provider: breaker.Provider) -> None:
        assert provider.get_breaker("payments").policy == provider.default_policy

    @pytest.mark.parametrize("exclude", [(), (KeyError,)])
    def test_guard_is_what_guard_makes(
        self, provider: breaker.Provider, exclude: tuple[type[BaseException], ...]
    ) -> None:
        # provider.guard() makes its guard without Guard.__init__ (speed): same fields.
        made = provider.guard("payments", exclude=exclude)
        brk = provider.get_breaker("payments")
        direct = breaker.Guard(brk, exclude)
        assert type(made) is breaker.Guard and made.breaker is brk
        for field in breaker.Guard.__slots__:
            assert hasattr(made, field) == hasattr(direct, field), field
            if hasattr(direct, field) and field != "_exclude":
                assert getattr(made, field) == getattr(direct, field), field
        assert (made._exclude is None) == (direct._exclude is None)
        with pytest.raises(KeyError), made:
            raise KeyError("x")
        assert brk.stats().calls["excluded" if exclude else "failure"] == 1

    def test_default_default_policy(self, coord: MemoryCoord) -> None:
        with breaker.new(Config("s", PREFIX), coord=coord) as p:
            assert p.default_policy == Policy()


class TestInitialLoad:
    def test_stored_policies_are_in_effect_when_new_returns(self, clock: FakeClock) -> None:
        coord = MemoryCoord(
            {PREFIX + "payments.json": '{"failureThreshold": 7, "openStateTimeout": "1m"}'}
        )
        with breaker.new(Config("checkout", "/" + PREFIX), coord=coord, clock=clock) as p:
            assert p.get_breaker("payments").policy == Policy(
                failure_threshold=7, open_state_timeout=60
            )
            assert dict(p.policies) == {
                "payments": Policy(failure_threshold=7, open_state_timeout=60)
            }

    def test_missing_keys_come_from_the_default_policy(self, coord: MemoryCoord) -> None:
        put(coord, "payments", failureThreshold=2)
        default = Policy(failure_threshold=9, success_threshold=4, open_state_timeout=3)
        with breaker.new(Config("s", PREFIX), coord=coord, default_policy=default) as p:
            assert p.policy("payments") == Policy(
                failure_threshold=2, success_threshold=4, open_state_timeout=3
            )

    def test_non_json_keys_and_other_prefixes_are_ignored(self, coord: MemoryCoord) -> None:
        coord.put(PREFIX + "README", "not a policy")
        coord.put(PREFIX + ".json", "{}")
        coord.put("config/dev/other/breakers/payments.json", '{"failureThreshold": 1}')
        put(coord, "svc/payments", failureThreshold=4)
        put(coord, "grpc:user-service", failureThreshold=6)
        with breaker.new(Config("s", PREFIX), coord=coord) as p:
            assert sorted(p.policies) == ["grpc:user-service", "svc/payments"]
            assert p.policy("svc/payments").failure_threshold == 4

    def test_grpc_method_names_drop_the_leading_slash(self, coord: MemoryCoord) -> None:
        put(coord, "pkg.UserService/GetUser", failureThreshold=2)
        with breaker.new(Config("s", PREFIX), coord=coord) as p:
            assert p.get_breaker("/pkg.UserService/GetUser").policy.failure_threshold == 2

    def test_an_unreadable_coord_starts_with_defaults_unless_strict(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Down(MemoryCoord):
            def load(self, prefix: str) -> dict[str, bytes]:
                raise breaker.CoordError("connection refused")

        with breaker.new(Config("s", PREFIX), coord=Down()) as p:
            assert p.policy("payments") == Policy()
        assert "could not load policies" in caplog.text and "connection refused" in caplog.text
        coord = Down()
        with pytest.raises(breaker.CoordError):
            breaker.new(Config("s", PREFIX), coord=coord, strict=True)


class TestDynamicPolicies:
    def test_new_policy_reaches_a_live_breaker(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        brk = provider.get_breaker("payments")
        put(coord, "payments", failureThreshold=1)
        assert brk.policy.failure_threshold == 1
        fail_n(brk, 1)
        assert brk.state is State.OPEN

    def test_state_and_counts_survive_a_change(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        brk = provider.get_breaker("payments")  # threshold 3 (the default)
        fail_n(brk, 2)
        put(coord, "payments", failureThreshold=5)
        fail_n(brk, 2)
        assert brk.state is State.CLOSED  # 4 of 5: the 2 earlier failures still count
        fail_n(brk, 1)
        assert brk.state is State.OPEN
        put(coord, "payments", failureThreshold=5, openStateTimeout="1h")
        assert brk.state is State.OPEN

    def test_delete_reverts_to_default_and_recreate_applies(
        self, provider: breaker.Provider, coord: MemoryCoord, caplog: pytest.LogCaptureFixture
    ) -> None:
        put(coord, "payments", failureThreshold=9)
        brk = provider.get_breaker("payments")
        with caplog.at_level(logging.INFO, logger="breaker"):
            coord.delete(PREFIX + "payments.json")
        assert brk.policy == provider.default_policy
        assert "policy 'payments' deleted" in caplog.text
        put(coord, "payments", failureThreshold=8)
        assert brk.policy.failure_threshold == 8
        coord.delete(PREFIX, recurse=True)
        assert brk.policy == provider.default_policy
        assert dict(provider.policies) == {}

    def test_breaker_created_later_gets_the_current_policy(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        put(coord, "inventory", successThreshold=4)
        assert provider.get_breaker("inventory").policy.success_threshold == 4

    @pytest.mark.parametrize(
        "doc",
        ["{not json", "[]", '{"failureThreshold": 0}', '{"openStateTimeout": "fast"}', "\xff"],
    )
    def test_invalid_document_keeps_the_last_good_policy(
        self,
        provider: breaker.Provider,
        coord: MemoryCoord,
        caplog: pytest.LogCaptureFixture,
        doc: str,
    ) -> None:
        put(coord, "payments", failureThreshold=4)
        brk = provider.get_breaker("payments")
        before = provider.policies
        with caplog.at_level(logging.WARNING, logger="breaker"):
            coord.put(PREFIX + "payments.json", doc)
        assert brk.policy.failure_threshold == 4
        assert provider.policies is before  # nothing swapped
        assert f"{PREFIX}payments.json" in caplog.text
        assert "keeping the last good policy" in caplog.text

    def test_invalid_first_document_leaves_the_default(
        self, provider: breaker.Provider, coord: MemoryCoord, caplog: pytest.LogCaptureFixture
    ) -> None:
        coord.put(PREFIX + "payments.json", '{"failureThreshold": -1}')
        assert provider.policy("payments") == provider.default_policy
        assert "keeping the default policy" in caplog.text
        # The same bad bytes again are not re-parsed nor re-logged.
        caplog.clear()
        coord.put(PREFIX + "other.json", "{}")
        assert "payments" not in caplog.text

    def test_mapping_is_swapped_not_mutated(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        put(coord, "a", failureThreshold=2)
        first = provider.policies
        put(coord, "b", failureThreshold=3)
        assert dict(first) == {
            "a": Policy(failure_threshold=2, success_threshold=2, open_state_timeout=10)
        }
        assert sorted(provider.policies) == ["a", "b"]
        with pytest.raises(TypeError):
            provider.policies["c"] = Policy()  # type: ignore[index]

    def test_readers_never_see_half_an_update(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        names = [f"svc-{i}" for i in range(50)]
        stop = threading.Event()
        torn: list[set[int]] = []

        def reader() -> None:
            while not stop.is_set():
                seen = {p.failure_threshold for p in provider.policies.values()}
                if len(seen) > 1:
                    torn.append(seen)

        def write_all(threshold: int) -> None:
            coord.put(PREFIX + "x", "ignored")  # not a policy
            doc = json.dumps({"failureThreshold": threshold})
            # One snapshot carrying every change, as Consul delivers it.
            coord.put_many({PREFIX + n + ".json": doc for n in names})

        t = threading.Thread(target=reader)
        t.start()
        for threshold in range(1, 30):
            write_all(threshold)
        stop.set()
        t.join()
        assert torn == []


class TestListenersAndLogging:
    def test_state_changes_are_logged_with_service_and_breaker(
        self, provider: breaker.Provider, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        brk = provider.get_breaker("payments")
        with caplog.at_level(logging.INFO, logger="breaker"):
            fail_n(brk, 3)
            clock.advance(10)
            brk.do(lambda: None)
            brk.do(lambda: None)
        records = [r for r in caplog.records if "->" in r.getMessage()]
        assert [(r.levelname, r.getMessage()) for r in records] == [
            ("WARNING", "service 'checkout': breaker 'payments' closed -> open"),
            ("INFO", "service 'checkout': breaker 'payments' open -> half-open"),
            ("INFO", "service 'checkout': breaker 'payments' half-open -> closed"),
        ]
        assert records[0].breaker == "payments"  # type: ignore[attr-defined]
        assert records[0].service == "checkout"  # type: ignore[attr-defined]

    def test_listeners_get_events_and_cannot_break_calls(
        self, provider: breaker.Provider, caplog: pytest.LogCaptureFixture
    ) -> None:
        events: list[StateChange] = []

        def bad(event: StateChange) -> None:
            raise RuntimeError("listener bug")

        provider.add_listener(bad)
        provider.add_listener(events.append)
        fail_n(provider.get_breaker("payments"), 3)
        assert events == [StateChange("checkout", "payments", State.CLOSED, State.OPEN)]
        assert "listener bug" in caplog.text
        provider.remove_listener(events.append)
        provider.remove_listener(bad)
        provider.remove_listener(bad)
        fail_n(provider.get_breaker("inventory"), 3)
        assert len(events) == 1

    def test_asynchronous_listeners_are_refused(self, provider: breaker.Provider) -> None:
        async def notify(event: StateChange) -> None:
            pass

        class Notifier:
            async def __call__(self, event: StateChange) -> None:
                pass

        async def stream(event: StateChange) -> AsyncIterator[None]:
            yield None

        for listener in (notify, Notifier(), functools.partial(notify), stream):
            with pytest.raises(TypeError, match=r"asynchronous.*call_soon_threadsafe"):
                provider.add_listener(listener)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be callable"):
            provider.add_listener("alerts")  # type: ignore[arg-type]
        assert provider._listeners == ()

    def test_plain_callables_stay_welcome(self, provider: breaker.Provider) -> None:
        events: list[StateChange] = []

        class Recorder:
            def __call__(self, event: StateChange) -> None:
                events.append(event)

        provider.add_listener(Recorder())
        provider.add_listener(functools.partial(events.append))
        fail_n(provider.get_breaker("payments"), 3)
        assert len(events) == 2


class TestLifecycle:
    def test_close_stops_watching_and_breakers_keep_working(self, coord: MemoryCoord) -> None:
        p = breaker.new(Config("s", PREFIX), coord=coord)
        brk = p.get_breaker("payments")
        p.close()
        p.close()
        put(coord, "payments", failureThreshold=1)
        assert brk.policy == Policy()
        assert brk.do(lambda: 5) == 5

    def test_context_manager_closes(self, coord: MemoryCoord) -> None:
        with breaker.new(Config("s", PREFIX), coord=coord) as p:
            assert isinstance(p, breaker.Provider)
        put(coord, "payments", failureThreshold=1)
        assert p.policy("payments") == Policy()

    def test_repr(self, provider: breaker.Provider) -> None:
        assert "checkout" in repr(provider) and PREFIX in repr(provider)


class TestConfigAndArguments:
    @pytest.mark.parametrize(
        "path", ["/config/../other/", "config/./x/", "..", "a/b/..", "./breakers/"]
    )
    def test_dot_segments_are_refused(self, path: str) -> None:
        with pytest.raises(ValueError, match=r"'\.' or '\.\.' segment"):
            Config("checkout", path)

    def test_a_default_policy_must_be_a_policy(self, coord: MemoryCoord) -> None:
        with pytest.raises(TypeError, match=r"default_policy must be a breaker\.Policy, got dict"):
            breaker.new(
                Config("s", PREFIX),
                coord=coord,
                default_policy={"failureThreshold": 2},  # type: ignore[arg-type]
            )

    def test_config_and_coord_are_checked(self, coord: MemoryCoord) -> None:
        with pytest.raises(TypeError, match="config"):
            breaker.new({"service_name": "s"}, coord=coord)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="coord"):
            breaker.new(Config("s", PREFIX), coord=object())  # type: ignore[arg-type]

    def test_a_failing_close_does_not_hide_why_new_failed(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        class Broken(MemoryCoord):
            def load(self, prefix: str) -> breaker.coord.Snapshot:
                raise breaker.CoordError("consul is down")

            def close(self) -> None:
                raise RuntimeError("close failed too")

        with pytest.raises(breaker.CoordError, match="consul is down"):
            breaker.new(Config("s", PREFIX), coord=Broken(), strict=True)
        assert "close failed too" in caplog.text


class TestHostileDocuments:
    @pytest.mark.parametrize(
        "doc",
        [
            '{"openStateTimeout": 1e300}',
            '{"failureThreshold": 1' + "0" * 400 + "}",
            '{"openStateTimeout": 1' + "0" * 5000 + "}",
            b'\xef\xbb\xbf{"failureThreshold": 2}',
            '{"failureThreshold": 2}'.encode("utf-16"),
        ],
    )
    def test_one_bad_document_never_stops_the_others(
        self, clock: FakeClock, doc: str | bytes, caplog: pytest.LogCaptureFixture
    ) -> None:
        coord = MemoryCoord(
            {PREFIX + "evil.json": doc, PREFIX + "good.json": '{"failureThreshold": 2}'}
        )
        with breaker.new(Config("s", PREFIX), coord=coord, clock=clock) as provider:
            assert provider.policy("good").failure_threshold == 2
            put(coord, "good", failureThreshold=3)
            assert provider.policy("good").failure_threshold == 3
            assert provider.policy("evil") == provider.default_policy
            assert provider.rejected_documents == 1
            assert list(provider.invalid_documents) == ["evil"]
        assert f"{PREFIX}evil.json" in caplog.text

    def test_any_error_while_parsing_is_logged_with_its_key_and_contained(
        self,
        provider: breaker.Provider,
        coord: MemoryCoord,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        put(coord, "evil", failureThreshold=4)
        real = _layers.judge

        def judge(raw: bytes) -> _layers.Document:
            if raw == b'{"failureThreshold": 5}':
                raise MemoryError("a bug we did not foresee")
            return real(raw)

        monkeypatch.setattr(_layers, "judge", judge)
        coord.put_many(
            {PREFIX + "evil.json": '{"failureThreshold": 5}', PREFIX + "good.json": "{}"}
        )
        assert provider.policy("evil").failure_threshold == 4  # the last good one
        assert "good" in provider.policies
        assert f"{PREFIX}evil.json" in caplog.text and "a bug we did not foresee" in caplog.text


class TestServiceDefault:
    def test_breakers_without_a_document_use_it_and_documents_layer_on_it(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        live = provider.get_breaker("inventory")
        put(coord, "payments", successThreshold=5)
        put(coord, "_default", failureThreshold=9, slowCallDuration="2s")
        assert live.policy.failure_threshold == 9  # adopted at once
        assert provider.policy("search").slow_call_duration == 2
        payments = provider.policy("payments")
        assert (payments.failure_threshold, payments.success_threshold) == (9, 5)
        assert payments.open_state_timeout == 10  # from the code's default_policy
        assert "_default" not in provider.policies
        assert provider.default_policy.failure_threshold == 9

    def test_deleting_it_reverts_to_the_code_default(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        live = provider.get_breaker("inventory")
        put(coord, "_default", failureThreshold=9)
        coord.delete(PREFIX + "_default.json")
        assert live.policy.failure_threshold == 3
        assert provider.policy("payments").failure_threshold == 3

    def test_an_invalid_service_default_keeps_the_last_good_one(
        self, provider: breaker.Provider, coord: MemoryCoord, caplog: pytest.LogCaptureFixture
    ) -> None:
        put(coord, "_default", failureThreshold=9)
        coord.put(PREFIX + "_default.json", '{"failureThreshold": -9}')
        assert provider.policy("payments").failure_threshold == 9
        assert "keeping the last good service default" in caplog.text

    def test_a_document_that_does_not_fit_a_new_default_runs_on_the_new_default(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        put(coord, "payments", maxOpenStateTimeout="20s")  # fine over a 10 s timeout
        put(coord, "_default", openStateTimeout="1m")  # now shorter than the timeout
        # Never its last good combination, which would hold a stale service default.
        assert provider.policy("payments") == provider.default_policy
        assert provider.policy("payments").open_state_timeout == 60
        assert provider.invalid_documents == {
            "payments": (
                "on top of _default.json: maxOpenStateTimeout: 20s is shorter than the open "
                "state timeout (1m0s)",
            )
        }


class TestStatus:
    def test_status_is_json_for_a_health_endpoint(
        self, provider: breaker.Provider, coord: MemoryCoord, clock: FakeClock
    ) -> None:
        put(coord, "payments", failureThreshold=1)
        brk = provider.get_breaker("payments")
        with pytest.raises(Boom):
            brk.do(fail)
        provider.get_breaker("inventory").do(lambda: None)
        status = json.loads(json.dumps(provider.status()))
        assert status["service"] == "checkout"
        assert status["coord"]["up"] is True and status["coord"]["last_error"] is None
        assert status["coord"]["last_sync"].endswith("Z")
        assert (status["rejected_documents"], status["invalid_documents"]) == (0, {})
        payments = status["breakers"]["payments"]
        assert payments["state"] == "open" and payments["mode"] == "auto"
        assert payments["policy"]["failureThreshold"] == 1
        assert payments["retry_after"] == 10
        assert payments["stats"]["calls"]["failure"] == 1
        assert payments["stats"]["transitions"] == {"closed->open": 1}
        assert status["breakers"]["inventory"]["stats"]["calls"]["success"] == 1

    def test_breakers_returns_a_snapshot_by_name(self, provider: breaker.Provider) -> None:
        brk = provider.get_breaker("a")
        snapshot = provider.breakers()
        provider.get_breaker("b")
        assert dict(snapshot) == {"a": brk}
        assert sorted(provider.breakers()) == ["a", "b"]


class TestAdoptionCallbacks:
    def test_a_listener_may_call_the_provider_while_a_policy_is_applied(
        self, provider: breaker.Provider, coord: MemoryCoord, clock: FakeClock
    ) -> None:
        put(coord, "payments", failureThreshold=1, successThreshold=3)
        brk = provider.get_breaker("payments")
        with pytest.raises(Boom):
            brk.do(fail)
        clock.advance(10)
        brk.do(lambda: None)  # 1 of 3 trial successes
        seen = []

        def listener(event: StateChange) -> None:
            seen.append((event.breaker, event.new))
            provider.get_breaker("created-by-a-listener")  # takes the provider's lock
            provider.status()
            put(coord, "other", failureThreshold=2)  # applies a snapshot from inside one

        provider.add_listener(listener)
        put(coord, "payments", failureThreshold=1, successThreshold=1)  # closes it at once
        assert seen == [("payments", State.CLOSED)]
        assert provider.policy("other").failure_threshold == 2


class TestUnclosed:
    def test_an_unclosed_provider_warns_when_collected_and_its_coord_closes(
        self, clock: FakeClock
    ) -> None:
        closed = threading.Event()

        class Coord(MemoryCoord):
            def close(self) -> None:
                super().close()
                closed.set()

        provider = breaker.new(Config("s", PREFIX), coord=Coord(), clock=clock)
        provider.get_breaker("payments").do(lambda: None)
        ref = weakref.ref(provider)
        with pytest.warns(ResourceWarning, match="'s' was never closed"):
            del provider
            gc.collect()
        assert ref() is None
        assert closed.wait(5)

    def test_a_closed_provider_is_collected_quietly(self, clock: FakeClock) -> None:
        provider = breaker.new(Config("s", PREFIX), coord=MemoryCoord(), clock=clock)
        provider.close()
        ref = weakref.ref(provider)
        del provider
        gc.collect()  # filterwarnings=error: a ResourceWarning here would fail the test
        assert ref() is None

    def test_the_watch_does_not_keep_the_provider_alive(self, clock: FakeClock) -> None:
        coord = MemoryCoord()
        provider = breaker.new(Config("s", PREFIX), coord=coord, clock=clock)
        ref = weakref.ref(provider)
        with pytest.warns(ResourceWarning):
            del provider
            gc.collect()
        assert ref() is None
        coord.put(PREFIX + "payments.json", "{}")  # nobody to deliver to, nothing breaks


class TestManyBreakers:
    def make(self, clock: FakeClock, coord: MemoryCoord | None = None) -> breaker.Provider:
        return breaker.new(
            Config("s", PREFIX),
            coord=coord or MemoryCoord(),
            clock=clock,
            default_policy=Policy(failure_threshold=2),
            max_breakers=100,
        )

    def test_idle_closed_breakers_are_dropped_beyond_the_cap(self, clock: FakeClock) -> None:
        with self.make(clock) as provider:
            for i in range(1000):
                provider.get_breaker(f"host-{i}").do(lambda: None)
            assert len(provider.breakers()) <= 120
            gc.collect()
            assert len(provider.breakers()) <= 120

    def test_open_half_open_and_counting_breakers_are_kept(self, clock: FakeClock) -> None:
        with self.make(clock) as provider:
            opened = provider.get_breaker("opened")
            counting = provider.get_breaker("counting")
            for _ in range(2):
                with pytest.raises(Boom):
                    opened.do(fail)
            with pytest.raises(Boom):
                counting.do(fail)  # one failure of two counted
            for i in range(1000):
                provider.get_breaker(f"host-{i}").do(lambda: None)
            names = set(provider.breakers())
            assert {"opened", "counting"} <= names
            del opened, counting
            gc.collect()
            assert {"opened", "counting"} <= set(provider.breakers())
            assert provider.get_breaker("opened").state is State.OPEN

    def test_a_breaker_held_elsewhere_stays_the_breaker_of_its_name(self, clock: FakeClock) -> None:
        with self.make(clock) as provider:

            @provider.circuit("held")
            def call() -> None:
                raise Boom

            with pytest.raises(Boom):
                call()
            provider.get_breaker("held").do(lambda: None)  # resets the failure count
            for i in range(1000):
                provider.get_breaker(f"host-{i}").do(lambda: None)
            gc.collect()
            for _ in range(2):
                with pytest.raises((Boom, BreakerOpenError)):
                    call()
            assert provider.get_breaker("held").state is State.OPEN  # one breaker, not two

    def test_a_breaker_in_use_when_set_aside_is_never_reset(self, clock: FakeClock) -> None:
        """Issue 16, defect 2: a call in flight while sweeps set its idle breaker aside."""
        with breaker.new(
            Config("s", PREFIX),
            coord=MemoryCoord(),
            clock=clock,
            default_policy=Policy(failure_threshold=1),
            max_breakers=2,
        ) as provider:
            guard = provider.guard("dead")
            guard.__enter__()
            for i in range(50):  # new names: sweeps set "dead" aside as idle
                provider.get_breaker(f"host-{i}").do(lambda: None)
            assert "dead" in provider.breakers()  # in use: never set aside
            guard.__exit__(Boom, Boom(), None)  # the call fails: the breaker opens
            del guard
            gc.collect()
            assert provider.get_breaker("dead").state is State.OPEN
            assert provider.get_breaker("dead").stats().calls["failure"] == 1

    def test_a_set_aside_breaker_that_counts_a_failure_is_kept(self, clock: FakeClock) -> None:
        with self.make(clock) as provider:
            brk = provider.get_breaker("flaky")
            brk.do(lambda: None)
            for i in range(1000):
                provider.get_breaker(f"host-{i}").do(lambda: None)
            with pytest.raises(Boom):
                brk.do(fail)  # one of two: not idle any more
            del brk
            gc.collect()
            assert provider.get_breaker("flaky").stats().calls["failure"] == 1

    def test_a_dropped_name_comes_back_with_its_policy(self, clock: FakeClock) -> None:
        coord = MemoryCoord({PREFIX + "host-7.json": '{"failureThreshold": 9}'})
        with self.make(clock, coord) as provider:
            for i in range(1000):
                provider.get_breaker(f"host-{i}").do(lambda: None)
            gc.collect()
            assert provider.get_breaker("host-7").policy.failure_threshold == 9

    def test_the_cap_must_be_positive(self, coord: MemoryCoord) -> None:
        with pytest.raises(ValueError, match="max_breakers"):
            breaker.new(Config("s", PREFIX), coord=coord, max_breakers=0)


class TestCustomCoords:
    """A coord of the user's own that predates Watch.health() still works."""

    class Silent(MemoryCoord):
        def watch(self, prefix: str, on_change: breaker.coord.OnChange) -> breaker.coord.Watch:
            inner = super().watch(prefix, on_change)

            class Watch:
                def stop(self) -> None:
                    inner.stop()

                def health(self) -> breaker.CoordHealth:
                    raise NotImplementedError("this coord keeps no health")

            return Watch()

    def test_status_reports_a_coord_that_cannot_say_its_health(self, clock: FakeClock) -> None:
        with breaker.new(Config("s", PREFIX), coord=self.Silent(), clock=clock) as provider:
            health = provider.health()
            assert not health.up and "this coord keeps no health" in str(health.last_error)
            status = provider.status()
            assert status["coord"] == {
                "up": False,
                "last_sync": None,
                "last_error": "health() failed: this coord keeps no health",
            }

    def test_double_slashes_in_policies_path_are_refused(self) -> None:
        with pytest.raises(ValueError, match="'//'"):
            Config("checkout", "config//breakers/")


class TestReloadMemo:
    def test_documents_with_the_same_bytes_are_parsed_once_and_warned_about_each(
        self,
        provider: breaker.Provider,
        coord: MemoryCoord,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        calls = []
        real = _layers.judge

        def counting(raw: bytes) -> _layers.Document:
            calls.append(raw)
            return real(raw)

        monkeypatch.setattr(_layers, "judge", counting)
        template = '{"failureThreshold": 7}'
        odd = '{"failureThreshold": 7, "retries": 3}'  # an unknown key: warned about per key
        coord.put_many({PREFIX + f"host-{i}.json": template for i in range(50)})
        assert len(calls) == 1
        assert {provider.policy(f"host-{i}").failure_threshold for i in range(50)} == {7}
        calls.clear()
        coord.put_many({PREFIX + f"odd-{i}.json": odd for i in range(3)})
        assert len(calls) == 1
        assert [
            r.getMessage().count("odd-") for r in caplog.records if "retries" in r.getMessage()
        ] == [1, 1, 1]


class TestIssue17:
    """Policy layers that cannot jam, seen from a live provider."""

    @pytest.fixture
    def provider(self, coord: MemoryCoord, clock: FakeClock) -> Iterator[breaker.Provider]:
        with breaker.new(
            Config("checkout", PREFIX),
            coord=coord,
            default_policy=Policy(failure_threshold=3, success_threshold=2, open_state_timeout=10),
            clock=clock,
            wall_clock=clock.wall,
        ) as provider:
            yield provider

    def test_lifting_a_service_wide_kill_switch_reaches_a_document_that_no_longer_fits(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        put(coord, "payments", openStateTimeout="1m")
        payments, search = provider.get_breaker("payments"), provider.get_breaker("search")
        put(coord, "_default", mode="forced-open", openStateTimeout="10s")
        assert payments.mode is search.mode is breaker.Mode.FORCED_OPEN
        put(coord, "_default", openStateTimeout="10s", maxOpenStateTimeout="30s")
        assert search.mode is breaker.Mode.AUTO
        assert payments.mode is breaker.Mode.AUTO  # forced open forever, before
        assert payments.policy == provider.default_policy
        assert list(provider.invalid_documents) == ["payments"]
        assert (
            "on top of _default.json"
            in provider.status()["invalid_documents"]["payments"]["problems"][0]["message"]
        )

    def test_a_kill_switch_set_while_the_wall_clock_is_behind_ends_on_time(
        self, provider: breaker.Provider, coord: MemoryCoord, clock: FakeClock
    ) -> None:
        until = clock.datetime() + timedelta(minutes=15)
        clock.step_wall(-86_400)  # a day behind when the switch is adopted
        early = provider.get_breaker("early")
        put(coord, "_default", mode="forced-open", modeUntil=until.isoformat())
        clock.step_wall(86_400)  # NTP steps it right
        late = provider.get_breaker("late")
        with pytest.raises(BreakerOpenError) as info:
            early.do(lambda: None)
        assert info.value.retry_after == pytest.approx(900)  # not 87,300 s
        clock.advance(16 * 60)
        assert early.mode is late.mode is breaker.Mode.AUTO
        assert early.retry_after == late.retry_after == 0

    def test_an_expired_kill_switch_never_comes_back_when_the_wall_clock_steps_back(
        self, provider: breaker.Provider, coord: MemoryCoord, clock: FakeClock
    ) -> None:
        until = clock.datetime() + timedelta(minutes=15)
        put(coord, "payments", mode="forced-open", modeUntil=until.isoformat())
        brk = provider.get_breaker("payments")
        assert brk.mode is breaker.Mode.FORCED_OPEN
        clock.advance(15 * 60 + 1)
        assert brk.mode is breaker.Mode.AUTO
        clock.step_wall(-600)
        put(coord, "_default", failureThreshold=4)  # an unrelated edit re-layers everything
        assert brk.mode is breaker.Mode.AUTO
        assert brk.policy.failure_threshold == 4
        provider._breakers.clear()  # a breaker created now gets the same fixed deadline
        provider._idle.clear()
        assert provider.get_breaker("payments").mode is breaker.Mode.AUTO

    def test_a_closed_provider_says_its_coord_is_closed(self, coord: MemoryCoord) -> None:
        provider = breaker.new(Config("s", PREFIX), coord=coord)
        synced = provider.health().last_sync
        provider.close()
        health = provider.health()
        assert (health.up, health.last_sync) == (False, synced)
        assert "closed" in str(health.last_error)
        coord_status = provider.status()["coord"]
        assert coord_status["up"] is False and "closed" in coord_status["last_error"]

    def test_status_lists_the_documents_invalid_now_beside_a_counter(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        coord.put(PREFIX + "payments.json", '{"failureThreshold": "many"}')
        status = provider.status()
        assert status["rejected_documents"] == 1
        assert status["invalid_documents"] == {
            "payments": {
                "key": PREFIX + "payments.json",
                "problems": [
                    {
                        "key": "failureThreshold",
                        "message": "failureThreshold: expected an integer from 0 to 1000000, "
                        "got the string 'many'",
                    }
                ],
                "kept": "keeping the default policy",
            }
        }
        put(coord, "payments", failureThreshold=2)
        status = provider.status()
        assert (status["rejected_documents"], status["invalid_documents"]) == (1, {})
        assert provider.invalid_documents == {}

    def test_explain_is_the_layers_answer(
        self, provider: breaker.Provider, coord: MemoryCoord
    ) -> None:
        put(coord, "_default", successThreshold=4)
        put(coord, "payments", failureThreshold=2)
        found = provider.explain("payments")
        assert found["policy"] == {
            "failureThreshold": 2,
            "successThreshold": 4,
            "openStateTimeout": "10s",
        }
        assert [f["from"] for f in found["fields"][:3]] == ["payments", "_default", "built-in"]


def test_a_provider_under_calls_writes_and_scrapes_at_once_stays_whole() -> None:
    """Threads call through 20 names over a registry bounded at 8 while the service's
    documents (and ``_default``) change, turn invalid and disappear, and a scrape, status
    and stats read it all: nothing raises but the calls' own errors, nothing hangs, and
    no call is left in flight."""
    coord = MemoryCoord()
    provider = breaker.new(Config("svc", PREFIX), coord=coord, max_breakers=8)
    names = [f"n{i}" for i in range(20)]
    stop = threading.Event()
    unexpected: list[BaseException] = []

    def work() -> None:
        if threading.get_ident() % 3 == 0:
            raise Boom

    def caller(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            name = rng.choice(names)
            try:
                if rng.random() < 0.5:
                    provider.get_breaker(name).do(work)
                else:
                    with provider.guard(name):
                        work()
            except (Boom, breaker.RejectedError):
                pass
            except BaseException as exc:  # pragma: no cover - what the test is for
                unexpected.append(exc)

    def writer() -> None:
        rng = random.Random(1)
        keys = [f"{PREFIX}{name}.json" for name in [*names, "_default"]]
        while not stop.is_set():
            doc: dict[str, object] = {"failureThreshold": rng.choice([1, 2, 5])}
            if rng.random() < 0.3:
                doc["mode"] = rng.choice(["auto", "forced-open", "disabled", "shadow"])
            if rng.random() < 0.3:
                doc["maxConcurrentCalls"] = rng.choice([0, 1, 3])
            if rng.random() < 0.3:
                doc["slowCallDuration"] = rng.choice(["1ms", "1s"])
            if rng.random() < 0.3:
                doc["failureRate"] = 0.5
            if rng.random() < 0.2:
                doc["openStateTimeout"] = "5ms"
            key = rng.choice(keys)
            roll = rng.random()
            if roll < 0.1:
                coord.delete(key)
            elif roll < 0.15:
                coord.put(key, "{not json")
            else:
                coord.put(key, json.dumps(doc))
            stop.wait(0.001)

    def observer() -> None:
        while not stop.is_set():
            try:
                provider.status()
                for brk in list(provider.breakers().values()):
                    brk.stats()
                    _ = brk.state, brk.mode
            except BaseException as exc:  # pragma: no cover - what the test is for
                unexpected.append(exc)
            stop.wait(0.005)

    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(4)]
    threads += [threading.Thread(target=f, daemon=True) for f in (writer, observer)]
    for t in threads:
        t.start()
    stop.wait(1.5)
    stop.set()
    for t in threads:
        t.join(5)
    try:
        assert not [t for t in threads if t.is_alive()], "a thread never got an answer"
        assert unexpected == []
        assert all(brk.stats().in_flight == 0 for brk in provider.breakers().values())
    finally:
        provider.close()
