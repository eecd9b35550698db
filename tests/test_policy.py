from __future__ import annotations

import contextlib
import json
import logging
import math
from datetime import datetime, timedelta, timezone

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import breaker
from breaker import Mode, Policy, PolicyError
from breaker._duration import format_go_duration, parse_go_duration
from breaker._policy import (
    DEFAULT_MINIMUM_CALLS,
    DEFAULT_RATE_WINDOW,
    JSON_KEYS,
    MAX_COUNT,
    MAX_SECONDS,
    did_you_mean,
    read_document,
)

from .strategies import policies


class TestDuration:
    @pytest.mark.parametrize(
        ("text", "ns"),
        [
            ("0", 0),
            ("1m", 60 * 10**9),
            ("30s", 30 * 10**9),
            ("1m30s", 90 * 10**9),
            ("250ms", 250 * 10**6),
            ("1h", 3600 * 10**9),
            ("1.5s", 1_500_000_000),
            ("1.1s", 1_100_000_000),
            (".5s", 500_000_000),
            ("1.s", 10**9),
            ("2h45m10.5s", (2 * 3600 + 45 * 60 + 10) * 10**9 + 500_000_000),
            ("10us", 10_000),
            ("10\u00b5s", 10_000),
            ("10\u03bcs", 10_000),
            ("7ns", 7),
            ("-1s", -(10**9)),
            ("+1s", 10**9),
        ],
    )
    def test_parse_like_go(self, text: str, ns: int) -> None:
        assert parse_go_duration(text) == ns

    @pytest.mark.parametrize(
        "text",
        ["", "1", "s", "1x", "1S", "1m 30s", "--1s", "1.2.3s", "ms1", ".s", "1e3s", "9223372037s"],
    )
    def test_parse_rejects_what_go_rejects(self, text: str) -> None:
        with pytest.raises(ValueError, match="duration"):
            parse_go_duration(text)

    @pytest.mark.parametrize(
        ("ns", "text"),
        [
            (0, "0s"),
            (60 * 10**9, "1m0s"),
            (90 * 10**9, "1m30s"),
            (3600 * 10**9, "1h0m0s"),
            (250 * 10**6, "250ms"),
            (1_500_000_000, "1.5s"),
            (1_000, "1\u00b5s"),
            (1_500, "1.5\u00b5s"),
            (7, "7ns"),
            (-(10**9), "-1s"),
        ],
    )
    def test_format_like_go(self, ns: int, text: str) -> None:
        assert format_go_duration(ns) == text

    @given(st.integers(min_value=-(2**62), max_value=2**62))
    def test_round_trip(self, ns: int) -> None:
        assert parse_go_duration(format_go_duration(ns)) == ns

    @pytest.mark.parametrize("text", ["\uff15s", "\u0663s", "1\u00b2s", "\u09e8m"])
    def test_only_ascii_digits(self, text: str) -> None:
        with pytest.raises(ValueError, match="duration"):
            parse_go_duration(text)


class TestConstruction:
    def test_defaults(self) -> None:
        p = Policy()
        assert (p.failure_threshold, p.success_threshold, p.open_state_timeout) == (5, 1, 60.0)
        assert p.slow_call_duration is None and p.failure_rate is None
        assert (p.minimum_calls, p.rate_window) == (DEFAULT_MINIMUM_CALLS, DEFAULT_RATE_WINDOW)
        assert p.max_open_state_timeout is None
        assert p.mode is Mode.AUTO and p.mode_until is None

    def test_frozen(self) -> None:
        p = Policy()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            p.failure_threshold = 3  # type: ignore[misc]

    def test_durations_accept_numbers_timedeltas_and_go_strings(self) -> None:
        assert Policy(open_state_timeout=2).open_state_timeout == 2.0
        assert Policy(open_state_timeout=0.25).open_state_timeout == 0.25
        assert Policy(open_state_timeout=timedelta(minutes=1, seconds=30)).open_state_timeout == 90
        assert Policy(open_state_timeout="1m30s").open_state_timeout == 90  # type: ignore[arg-type]
        assert Policy(slow_call_duration="250ms").slow_call_duration == 0.25  # type: ignore[arg-type]

    def test_repr_shows_the_optional_fields_only_when_set(self) -> None:
        assert repr(Policy()) == (
            "Policy(failure_threshold=5, success_threshold=1, open_state_timeout=60.0)"
        )
        assert repr(Policy(failure_rate=0.5, mode="shadow")).endswith(  # type: ignore[arg-type]
            "failure_rate=0.5, mode='shadow')"
        )

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"failure_threshold": 0}, "failure_threshold"),
            ({"failure_threshold": -1}, "failure_threshold"),
            ({"failure_threshold": 2.0}, "failure_threshold"),
            ({"failure_threshold": True}, "failure_threshold"),
            ({"failure_threshold": "5"}, "failure_threshold"),
            ({"failure_threshold": MAX_COUNT + 1}, "failure_threshold"),
            ({"success_threshold": 0}, "success_threshold"),
            ({"success_threshold": None}, "success_threshold"),
            ({"open_state_timeout": 0}, "open_state_timeout"),
            ({"open_state_timeout": -5}, "open_state_timeout"),
            ({"open_state_timeout": math.inf}, "open_state_timeout"),
            ({"open_state_timeout": math.nan}, "open_state_timeout"),
            ({"open_state_timeout": 1e300}, "open_state_timeout"),
            ({"open_state_timeout": 10**400}, "open_state_timeout"),
            ({"open_state_timeout": "soon"}, "open_state_timeout"),
            ({"open_state_timeout": False}, "open_state_timeout"),
            ({"open_state_timeout": 1e-12}, "open_state_timeout"),
            ({"slow_call_duration": 0}, "slow_call_duration"),
            ({"failure_rate": 0}, "failure_rate"),
            ({"failure_rate": 1.5}, "failure_rate"),
            ({"failure_rate": "50%"}, "failure_rate"),
            ({"minimum_calls": 0}, "minimum_calls"),
            ({"rate_window": -1}, "rate_window"),
            ({"max_open_state_timeout": 30}, "max_open_state_timeout"),  # < 60 s default
            ({"mode": "off"}, "mode"),
            ({"mode": ["auto"]}, "mode"),
            ({"mode_until": "tomorrow"}, "mode_until"),
            ({"mode_until": datetime(2030, 1, 1)}, "mode_until"),  # naive: whose noon?
        ],
    )
    def test_invalid_values_raise_policy_error_naming_the_field(
        self, kwargs: dict[str, object], field: str
    ) -> None:
        with pytest.raises(PolicyError, match=field) as info:
            Policy(**kwargs)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
        assert isinstance(info.value, breaker.BreakerError)
        assert info.value.key == field

    def test_a_zero_failure_threshold_needs_a_failure_rate(self) -> None:
        assert Policy(failure_threshold=0, failure_rate=0.5).failure_threshold == 0
        with pytest.raises(PolicyError, match="failure rate"):
            Policy(failure_threshold=0)

    def test_the_largest_values_are_accepted_and_load_back(self) -> None:
        p = Policy(
            failure_threshold=MAX_COUNT,
            success_threshold=MAX_COUNT,
            open_state_timeout=MAX_SECONDS,
            slow_call_duration=MAX_SECONDS,
            failure_rate=1,
            minimum_calls=MAX_COUNT,
            rate_window=MAX_SECONDS,
            max_open_state_timeout=MAX_SECONDS,
        )
        assert p.to_dict()["openStateTimeout"] == "2562047h47m16.854775807s"
        assert Policy.from_json(json.dumps(p.to_dict())) == p

    def test_evolve_validates(self) -> None:
        with pytest.raises(PolicyError):
            attrs.evolve(Policy(), failure_threshold=-1)


class TestJSON:
    def test_seed_document(self) -> None:
        p = Policy.from_json(
            '{"failureThreshold": 5, "successThreshold": 2, "openStateTimeout": "1m"}'
        )
        assert p == Policy(failure_threshold=5, success_threshold=2, open_state_timeout=60)
        assert p.to_dict() == {
            "failureThreshold": 5,
            "successThreshold": 2,
            "openStateTimeout": "1m0s",
        }

    def test_every_key(self) -> None:
        p = Policy.from_json(
            json.dumps(
                {
                    "failureThreshold": 0,
                    "successThreshold": 3,
                    "openStateTimeout": "30s",
                    "slowCallDuration": "2s",
                    "failureRate": 0.5,
                    "minimumCalls": 10,
                    "rateWindow": "1m",
                    "maxOpenStateTimeout": "10m",
                    "mode": "forced-open",
                    "modeUntil": "2026-11-29T14:00:00+01:00",
                }
            )
        )
        assert p == Policy(
            failure_threshold=0,
            success_threshold=3,
            open_state_timeout=30,
            slow_call_duration=2,
            failure_rate=0.5,
            minimum_calls=10,
            rate_window=60,
            max_open_state_timeout=600,
            mode=Mode.FORCED_OPEN,
            mode_until=datetime(2026, 11, 29, 13, tzinfo=timezone.utc),
        )
        assert p.to_dict()["modeUntil"] == "2026-11-29T13:00:00Z"
        assert Policy.from_dict(p.to_dict()) == p

    def test_bytes_and_numbers_of_seconds(self) -> None:
        p = Policy.from_json(b'{"openStateTimeout": 1.5}')
        assert p.open_state_timeout == 1.5

    def test_missing_keys_come_from_base_and_null_clears_an_optional_key(self) -> None:
        base = Policy(failure_threshold=9, open_state_timeout=7, slow_call_duration=3)
        assert Policy.from_json('{"failureThreshold": 2}', base=base) == attrs.evolve(
            base, failure_threshold=2
        )
        assert Policy.from_json('{"slowCallDuration": null}', base=base).slow_call_duration is None
        assert Policy.from_json("{}") == Policy()

    def test_only_failure_rate_takes_the_documented_defaults(self) -> None:
        p = Policy.from_json('{"failureRate": 0.25}')
        assert (p.minimum_calls, p.rate_window) == (20, 60.0)
        assert p.to_dict()["rateWindow"] == "1m0s"

    @pytest.mark.parametrize(
        ("doc", "needle"),
        [
            ("{", "malformed JSON"),
            ("", "malformed JSON"),
            (b"\xff\xfe\x00", "malformed JSON"),
            (b'\xef\xbb\xbf{"failureThreshold": 2}', "byte-order mark"),
            ('\ufeff{"failureThreshold": 2}', "byte-order mark"),
            ('{"failureThreshold": 2}'.encode("utf-16"), "malformed JSON"),
            ('{"failureThreshold": 2}'.encode("utf-16-le"), "malformed JSON"),
            (b'{"mode": "\xc3"}', "not UTF-8"),
            ('{"failureRate": NaN}', "NaN is not valid JSON"),
            ('{"openStateTimeout": Infinity}', "Infinity is not valid JSON"),
            ("[1, 2]", "must be a JSON object, got an array"),
            ('"x"', "must be a JSON object"),
            ("null", "must be a JSON object, got null"),
            (
                '{"failureThreshold": "5"}',
                "failureThreshold: expected an integer from 0 to 1000000, got the string '5'",
            ),
            ('{"failureThreshold": 2.5}', "failureThreshold: expected an integer"),
            ('{"failureThreshold": 5.0}', "failureThreshold"),
            ('{"failureThreshold": 0}', "failureThreshold: 0 turns the consecutive-failure"),
            ('{"failureThreshold": 1000001}', "failureThreshold"),
            ('{"successThreshold": true}', "successThreshold: expected an integer from 1"),
            ('{"successThreshold": null}', "successThreshold"),
            ('{"openStateTimeout": "soon"}', "openStateTimeout: invalid duration 'soon'"),
            ('{"openStateTimeout": "10d"}', "openStateTimeout: unknown unit 'd'"),
            ('{"openStateTimeout": "\uff15s"}', "openStateTimeout: invalid duration"),
            ('{"openStateTimeout": "-1s"}', "openStateTimeout: expected a duration > 0"),
            ('{"openStateTimeout": 0}', "openStateTimeout"),
            ('{"openStateTimeout": 1e400}', "openStateTimeout"),
            ('{"openStateTimeout": 1e300}', "openStateTimeout: 1e+300 (seconds) is longer"),
            ('{"openStateTimeout": 1' + "0" * 400 + "}", "an integer of 401 digits"),
            ('{"openStateTimeout": "99999999999999999999h"}', "out of range"),
            ('{"openStateTimeout": [1]}', "openStateTimeout: expected a duration"),
            ('{"slowCallDuration": "0s"}', "slowCallDuration"),
            ('{"failureRate": 2}', "failureRate: expected a number in (0, 1]"),
            ('{"minimumCalls": 0}', "minimumCalls"),
            ('{"rateWindow": "0s"}', "rateWindow"),
            ('{"maxOpenStateTimeout": "1s"}', "maxOpenStateTimeout: 1s is shorter"),
            ('{"mode": "kill"}', "mode: expected one of 'auto', 'forced-open'"),
            ('{"modeUntil": "2026-11-29 14:00"}', "modeUntil: expected an RFC 3339 timestamp"),
            ('{"modeUntil": "2026-02-30T00:00:00Z"}', "modeUntil: '2026-02-30T00:00:00Z' is not"),
            ('{"modeUntil": 1767225600}', "modeUntil"),
            ('{"modeUntil": "2026-11-29T14:00:00+24:00"}', "offset out of range"),
            ("[" * 100_000, "malformed JSON"),
            ('{"a": ' * 100_000, "malformed JSON"),
        ],
    )
    def test_bad_documents_say_which_key_and_why(self, doc: str | bytes, needle: str) -> None:
        with pytest.raises(PolicyError) as info:
            Policy.from_json(doc, source="config/x/payments.json")
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert message.startswith("config/x/payments.json: ")
        assert needle in message

    @pytest.mark.parametrize(
        ("text", "utc"),
        [
            ("2026-11-29T14:00:00Z", datetime(2026, 11, 29, 14, tzinfo=timezone.utc)),
            ("2026-11-29t14:00:00z", datetime(2026, 11, 29, 14, tzinfo=timezone.utc)),
            ("2026-11-29T14:00:00.5+02:00", datetime(2026, 11, 29, 12, 0, 0, 500000, timezone.utc)),
            (
                "2026-11-29T14:00:00.123456789-05:30",
                datetime(2026, 11, 29, 19, 30, 0, 123456, timezone.utc),
            ),
        ],
    )
    def test_mode_until_reads_rfc_3339(self, text: str, utc: datetime) -> None:
        assert Policy.from_dict({"mode": "shadow", "modeUntil": text}).mode_until == utc

    def test_a_mode_until_names_its_mode_in_the_same_document(self) -> None:
        # A mode and its end come from one layer: an end alone would silently shadow a
        # service-wide mode for this breaker.
        with pytest.raises(PolicyError, match="modeUntil: set without mode") as info:
            Policy.from_dict({"modeUntil": "2026-11-29T14:00:00Z"})
        assert info.value.key == "modeUntil"
        until = datetime(2026, 11, 29, 14, tzinfo=timezone.utc)
        assert Policy(mode_until=until).to_dict()["mode"] == "auto"  # round-trips

    def test_reading_a_document_collects_every_error_with_its_key(self) -> None:
        fields, errors, unknown = read_document(
            {
                "failureThreshold": -1,
                "openStateTimeout": "1m",
                "maxOpenStateTimeout": "30s",
                "mode": "off",
                "openStateTimout": "1m",
                "successThreshold": 2,
            }
        )
        assert fields == {
            "open_state_timeout": 60.0,
            "max_open_state_timeout": 30.0,
            "success_threshold": 2,
        }
        assert [(e.key, str(e)) for e in errors] == [
            ("failureThreshold", "failureThreshold: expected an integer from 0 to 1000000, got -1"),
            (
                "mode",
                "mode: expected one of 'auto', 'forced-open', 'disabled', 'shadow', got "
                "the string 'off'",
            ),
            (
                "maxOpenStateTimeout",
                "maxOpenStateTimeout: 30s is shorter than the open state timeout (1m0s)",
            ),
        ]
        assert unknown == ["openStateTimout"]
        assert [e.key for e in read_document([])[1]] == [None]

    def test_a_rule_between_keys_waits_for_both_keys(self) -> None:
        # Alone, a document setting one side of a rule is not judged by it: the layer
        # below may supply the other side (a failure rate, a shorter open period).
        assert read_document({"failureThreshold": 0})[1] == []
        assert read_document({"maxOpenStateTimeout": "1s"})[1] == []
        assert [e.key for e in read_document({"failureThreshold": 0, "failureRate": None})[1]] == [
            "failureThreshold"
        ]

    def test_unknown_keys_are_named_with_what_they_likely_meant(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        assert did_you_mean("openStateTimout") == " (did you mean 'openStateTimeout'?)"
        assert did_you_mean("owner") == ""
        assert did_you_mean("x" * 100) == ""
        with caplog.at_level(logging.WARNING, logger="breaker"):
            Policy.from_json('{"failureTreshold": 3, "owner": "sre"}')
        assert caplog.records[0].getMessage() == (
            "ignoring unknown policy keys: 'failureTreshold' (did you mean 'failureThreshold'?), "
            "'owner'"
        )

    def test_unknown_keys_are_one_warning_with_a_bounded_sample(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        doc = {"failureThreshold": 2, **{f"key{i}": i for i in range(40_000)}}
        with caplog.at_level(logging.WARNING, logger="breaker"):
            p = Policy.from_json(json.dumps(doc), source="k.json")
        assert p.failure_threshold == 2
        assert len(caplog.records) == 1
        message = caplog.records[0].getMessage()
        assert message.startswith("k.json: ignoring unknown policy keys: 'key0', 'key1'")
        assert message.endswith("and 39995 more")
        assert len(message) < 200


@given(policies())
def test_json_round_trip(policy: Policy) -> None:
    assert Policy.from_json(json.dumps(policy.to_dict())) == policy


@given(policies())
def test_construction_is_idempotent(policy: Policy) -> None:
    assert attrs.evolve(policy) == policy


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["1s", "-5m", "99999999999h", "2026-11-29T14:00:00Z", "shadow", "0s"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(JSON_KEYS) | st.text(max_size=20), json_values, max_size=len(JSON_KEYS)
    )
)
def test_any_decoded_json_gives_a_policy_or_a_policy_error(data: dict[str, object]) -> None:
    logging.getLogger("breaker").disabled = True
    try:
        with contextlib.suppress(PolicyError):
            policy = Policy.from_dict(data)
            assert Policy.from_json(json.dumps(policy.to_dict())) == policy
    finally:
        logging.getLogger("breaker").disabled = False
