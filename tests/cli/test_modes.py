"""force-open and release: the kill switch, end to end."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

import breaker
from breaker import Mode, State
from breaker._cli import EXIT_INVALID, EXIT_OK
from breaker.coord.consul._coord import ConsulCoord
from breaker.testing import ConsulServer

from .support import (
    NOW,
    PATH,
    PREFIX,
    Result,
    Run,
    edit_after_read,
    stored,
    transactions,
)


@pytest.mark.consul
class TestKillSwitch:
    def test_force_open_sets_mode_and_expiry_and_keeps_the_rest(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3, "mode": "shadow", "x": 1}')
        result = cli("force-open", "--path", PATH, "payments", "--for", "1h30m")
        assert result == Result(
            EXIT_OK,
            f"forced open {PREFIX}payments.json until 2026-11-29T15:15:00Z\n"
            '  mode: "shadow" -> "forced-open"\n'
            '  modeUntil: (absent) -> "2026-11-29T15:15:00Z"\n',
            "",
        )
        assert env.get(PREFIX + "payments.json") == (
            b'{"failureThreshold": 3, "mode": "forced-open", "x": 1, '
            b'"modeUntil": "2026-11-29T15:15:00Z"}'
        )

    def test_for_takes_seconds_and_rounds_up_to_a_whole_second(
        self, cli: Run, env: ConsulServer
    ) -> None:
        now = NOW + timedelta(microseconds=250_000)
        cli("force-open", "--path", PATH, "payments", "--for", "90", "--create", now=now)
        assert stored(env, "payments") == {
            "mode": "forced-open",
            "modeUntil": "2026-11-29T13:46:31Z",
        }

    def test_a_multi_line_document_stays_multi_line(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", '{\n  "failureThreshold": 3\n}\n')
        cli("force-open", "--path", PATH, "payments", "--for", "5m")
        assert env.get(PREFIX + "payments.json") == (
            b'{\n  "failureThreshold": 3,\n  "mode": "forced-open",\n'
            b'  "modeUntil": "2026-11-29T13:50:00Z"\n}\n'
        )

    def test_release_removes_mode_and_expiry_and_nothing_else(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", '{"mode": "forced-open", "failureThreshold": 3}')
        result = cli("release", "--path", PATH, "payments")
        assert result.out == (
            f'released {PREFIX}payments.json\n  mode: "forced-open" -> (absent)\n'
        )
        assert stored(env, "payments") == {"failureThreshold": 3}
        env.put(
            PREFIX + "search.json", '{"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00Z"}'
        )
        cli("release", "--path", PATH, "search")
        assert stored(env, "search") == {}  # released, not deleted

    def test_release_with_nothing_to_release_writes_nothing(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        result = cli("release", "--path", PATH, "payments")
        assert result == Result(
            EXIT_OK, f"unchanged {PREFIX}payments.json (no mode to release)\n", ""
        )
        result = cli("release", "--path", PATH, "search")
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: no document at {PREFIX}search.json; nothing written. To create it, add "
            "--create.\n",
        )
        result = cli("release", "--path", PATH, "search", "--create")
        assert result == Result(EXIT_OK, f"unchanged {PREFIX}search.json (no document)\n", "")
        assert transactions(env) == []
        assert stored(env, "search") is None

    def test_a_typo_is_refused_not_a_new_document(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        result = cli("force-open", "--path", PATH, "paymnets", "--for", "10m")
        assert result == Result(
            EXIT_INVALID,
            "",
            f"breaker: no document at {PREFIX}paymnets.json; nothing written. Did you mean "
            "'payments'? To create it, add --create.\n",
        )
        assert stored(env, "paymnets") is None
        result = cli("force-open", "--path", PATH, "search", "--for", "10m", "--create")
        assert result.out.startswith(f"forced open {PREFIX}search.json until ")

    def test_a_document_that_does_not_fit_the_service_default_still_takes_the_switch(
        self, cli: Run, env: ConsulServer
    ) -> None:
        # Issue 17, case 2: a new service default made payments invalid; the kill switch on
        # payments must still work, and say that its other settings do not apply.
        env.put(PREFIX + "payments.json", '{"openStateTimeout": "1m"}')
        env.put(
            PREFIX + "_default.json", '{"openStateTimeout": "10s", "maxOpenStateTimeout": "30s"}'
        )
        result = cli("force-open", "--path", PATH, "payments", "--for", "15m")
        assert result.code == EXIT_OK
        assert result.err == (
            f"warning: {PREFIX}payments.json does not fit on _default.json (on top of "
            "_default.json: maxOpenStateTimeout: 30s is shorter than the open state timeout "
            "(1m0s)): its mode applies, its other settings do not\n"
        )
        explained = cli("explain", "--path", PATH, "payments", "--json").json()
        assert explained["mode"]["mode"] == "forced-open"
        assert explained["mode"]["set_by"] == "payments"
        assert explained["policy"]["openStateTimeout"] == "10s"

    def test_force_open_the_whole_service(self, cli: Run, env: ConsulServer) -> None:
        env.put(PREFIX + "_default.json", '{"successThreshold": 2}')
        assert cli("force-open", "--path", PATH, "_default", "--for", "5m").code == EXIT_OK
        assert stored(env, "_default") == {
            "successThreshold": 2,
            "mode": "forced-open",
            "modeUntil": "2026-11-29T13:50:00Z",
        }

    def test_the_whole_service_names_the_breakers_it_does_not_reach(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "_default.json", "{}")
        env.put(PREFIX + "payments.json", '{"mode": "shadow"}')
        env.put(PREFIX + "search.json", '{"mode": "auto", "failureThreshold": 2}')
        env.put(PREFIX + "broken.json", "{")
        env.put(PREFIX + "inventory.json", '{"failureThreshold": 2}')
        result = cli("force-open", "--path", PATH, "_default", "--for", "5m")
        assert result == Result(
            EXIT_OK,
            f"forced open {PREFIX}_default.json until 2026-11-29T13:50:00Z\n"
            '  mode: (absent) -> "forced-open"\n'
            '  modeUntil: (absent) -> "2026-11-29T13:50:00Z"\n'
            '  not reached: payments (its own document sets mode "shadow"; `breaker release '
            "payments` hands it to _default.json)\n"
            '  not reached: search (its own document sets mode "auto"; `breaker release search` '
            "hands it to _default.json)\n"
            "  not reached: broken (its document is invalid: services keep their last good "
            "version of it, whose mode wins if it sets one)\n",
            "",
        )
        result = cli("release", "--path", PATH, "_default", "--json")
        assert [m["name"] for m in result.json()["not_reached"]] == ["payments", "search", "broken"]
        assert cli("release", "--path", PATH, "search").code == EXIT_OK
        result = cli("force-open", "--path", PATH, "_default", "--for", "5m", "--json")
        assert [m["name"] for m in result.json()["not_reached"]] == ["payments", "broken"]

    def test_a_concurrent_edit_is_kept_and_the_switch_applied_again(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 7}')
        assert cli("force-open", "--path", PATH, "payments", "--for", "5m").code == EXIT_OK
        assert stored(env, "payments") == {
            "failureThreshold": 7,
            "mode": "forced-open",
            "modeUntil": "2026-11-29T13:50:00Z",
        }

    def test_an_edit_that_never_settles_is_refused(
        self, cli: Run, env: ConsulServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        edits = edit_after_read(monkeypatch, env, "payments", '{"failureThreshold": 7}', times=3)
        result = cli("force-open", "--path", PATH, "payments", "--for", "5m")
        assert result.code == EXIT_INVALID
        assert "kept changing while being updated (3 tries); nothing written" in result.err
        assert len(edits) == 3
        assert stored(env, "payments") == {"failureThreshold": 7}

    @pytest.mark.parametrize(
        ("document", "reason"),
        [
            ("[1]", "holds no JSON object (a policy must be a JSON object, got an array)"),
            ("{", "holds no JSON object (malformed JSON"),
            ('{"failureThreshold": -1}', "would be invalid (failureThreshold: expected"),
        ],
    )
    def test_a_broken_document_is_not_touched(
        self, cli: Run, env: ConsulServer, document: str, reason: str
    ) -> None:
        env.put(PREFIX + "payments.json", document)
        result = cli("force-open", "--path", PATH, "payments", "--for", "5m")
        assert result.code == EXIT_INVALID
        assert reason in result.err
        assert env.get(PREFIX + "payments.json") == document.encode()

    def test_a_running_provider_obeys_within_a_second_and_goes_back_to_auto(
        self, cli: Run, env: ConsulServer
    ) -> None:
        env.put(PREFIX + "payments.json", '{"failureThreshold": 3}')
        opened, back = threading.Event(), threading.Event()

        def listen(change: breaker.StateChange) -> None:
            if change.new is State.OPEN:
                opened.set()
            elif change.old is State.OPEN:
                back.set()

        config = breaker.Config("checkout", PATH)
        with breaker.new(config, coord=ConsulCoord(env.addr)) as provider:
            provider.add_listener(listen)
            brk = provider.get_breaker("payments")
            assert brk.do(lambda: "ok") == "ok"
            # The real clock: the provider compares modeUntil with time.time().
            now = datetime.now(timezone.utc)
            assert cli("force-open", "--path", PATH, "payments", "--for", "15m", now=now).code == 0
            assert opened.wait(1.0), "the provider did not obey force-open within a second"
            with pytest.raises(breaker.BreakerOpenError) as caught:
                brk.do(lambda: "never runs")
            assert caught.value.mode is Mode.FORCED_OPEN
            assert brk.policy.failure_threshold == 3  # the rest of the document still applies
            assert cli("release", "--path", PATH, "payments").code == EXIT_OK
            assert back.wait(1.0), "the provider did not leave forced-open within a second"
            assert brk.mode is Mode.AUTO
            assert brk.do(lambda: "ok") == "ok"  # a trial call closes it
            assert brk.state is State.CLOSED
