from __future__ import annotations

import contextlib
import json
import logging
import math
from datetime import timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from breaker import Policy, PolicyError
from breaker._duration import format_go_duration, parse_go_duration


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


class TestConstruction:
    def test_defaults(self) -> None:
        p = Policy()
        assert (p.failure_threshold, p.success_threshold, p.open_state_timeout) == (5, 1, 60.0)

    def test_frozen(self) -> None:
        p = Policy()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            p.failure_threshold = 3  # type: ignore[misc]

    def test_timeout_accepts_int_float_timedelta(self) -> None:
        assert Policy(open_state_timeout=2).open_state_timeout == 2.0
        assert Policy(open_state_timeout=0.25).open_state_timeout == 0.25
        assert Policy(open_state_timeout=timedelta(minutes=1, seconds=30)).open_state_timeout == 90

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"failure_threshold": 0}, "failure_threshold"),
            ({"failure_threshold": -1}, "failure_threshold"),
            ({"failure_threshold": 2.0}, "failure_threshold"),
            ({"failure_threshold": True}, "failure_threshold"),
            ({"failure_threshold": "5"}, "failure_threshold"),
            ({"success_threshold": 0}, "success_threshold"),
            ({"success_threshold": None}, "success_threshold"),
            ({"open_state_timeout": 0}, "open_state_timeout"),
            ({"open_state_timeout": -5}, "open_state_timeout"),
            ({"open_state_timeout": math.inf}, "open_state_timeout"),
            ({"open_state_timeout": math.nan}, "open_state_timeout"),
            ({"open_state_timeout": "1m"}, "open_state_timeout"),
            ({"open_state_timeout": False}, "open_state_timeout"),
            ({"open_state_timeout": 1e-12}, "open_state_timeout"),
        ],
    )
    def test_invalid_values_raise_value_error_naming_the_field(
        self, kwargs: dict[str, object], field: str
    ) -> None:
        with pytest.raises(PolicyError, match=field) as info:
            Policy(**kwargs)  # type: ignore[arg-type]
        assert isinstance(info.value, ValueError)
        assert info.value.key == field

    def test_evolve_validates(self) -> None:
        with pytest.raises(PolicyError):
            attrs.evolve(Policy(), failure_threshold=0)


class TestJSON:
    def test_seed_document(self) -> None:
        p = Policy.from_json(
            '{"failureThreshold": 5, "successThreshold": 2, "openStateTimeout": "1m"}'
        )
        assert p == Policy(failure_threshold=5, success_threshold=2, open_state_timeout=60)

    def test_bytes_and_numbers_of_seconds(self) -> None:
        p = Policy.from_json(b'{"openStateTimeout": 1.5}')
        assert p.open_state_timeout == 1.5

    def test_missing_keys_come_from_base(self) -> None:
        base = Policy(failure_threshold=9, success_threshold=3, open_state_timeout=7)
        assert Policy.from_json('{"failureThreshold": 2}', base=base) == attrs.evolve(
            base, failure_threshold=2
        )
        assert Policy.from_json("{}") == Policy()

    def test_to_dict_uses_seed_keys_and_go_durations(self) -> None:
        assert Policy(open_state_timeout=90).to_dict() == {
            "failureThreshold": 5,
            "successThreshold": 1,
            "openStateTimeout": "1m30s",
        }

    @pytest.mark.parametrize(
        ("doc", "needle"),
        [
            ("{", "malformed JSON"),
            ("", "malformed JSON"),
            (b"\xff\xfe\x00", "malformed JSON"),
            ("[1, 2]", "must be a JSON object, got an array"),
            ('"x"', "must be a JSON object"),
            ("null", "must be a JSON object, got null"),
            (
                '{"failureThreshold": "5"}',
                "failureThreshold: expected an integer >= 1, got the string '5'",
            ),
            ('{"failureThreshold": 2.5}', "failureThreshold: expected an integer >= 1, got 2.5"),
            ('{"failureThreshold": 5.0}', "failureThreshold"),
            ('{"failureThreshold": 0}', "failureThreshold: expected an integer >= 1, got 0"),
            ('{"successThreshold": true}', "successThreshold: expected an integer >= 1, got true"),
            ('{"successThreshold": null}', "successThreshold"),
            ('{"openStateTimeout": "soon"}', "openStateTimeout: invalid duration 'soon'"),
            ('{"openStateTimeout": "10d"}', "openStateTimeout: unknown unit 'd'"),
            ('{"openStateTimeout": "-1s"}', "openStateTimeout: expected a number of seconds > 0"),
            ('{"openStateTimeout": 0}', "openStateTimeout"),
            ('{"openStateTimeout": 1e400}', "openStateTimeout"),
            (
                '{"openStateTimeout": [1]}',
                "openStateTimeout: expected a number of seconds > 0, got an array",
            ),
            ("[" * 100_000, "malformed JSON"),
        ],
    )
    def test_bad_documents_say_which_key_and_why(self, doc: str | bytes, needle: str) -> None:
        with pytest.raises(PolicyError) as info:
            Policy.from_json(doc, source="config/x/payments.json")
        assert isinstance(info.value, ValueError)
        message = str(info.value)
        assert message.startswith("config/x/payments.json: ")
        assert needle in message

    def test_unknown_keys_are_ignored_with_a_warning(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.WARNING, logger="breaker"):
            p = Policy.from_json('{"failureThreshold": 2, "halfOpenMaxCalls": 9}', source="k.json")
        assert p.failure_threshold == 2
        assert "k.json: ignoring unknown policy key 'halfOpenMaxCalls'" in caplog.text


policies = st.builds(
    Policy,
    failure_threshold=st.integers(1, 10**6),
    success_threshold=st.integers(1, 10**6),
    open_state_timeout=st.one_of(
        st.integers(1, 86_400 * 30),
        st.floats(min_value=1e-9, max_value=86_400 * 30, allow_nan=False, allow_infinity=False),
    ),
)


@given(policies)
def test_json_round_trip(policy: Policy) -> None:
    assert Policy.from_json(json.dumps(policy.to_dict())) == policy


@given(policies)
def test_construction_is_idempotent(policy: Policy) -> None:
    assert attrs.evolve(policy) == policy


@given(
    st.dictionaries(
        st.text(max_size=20),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=5), children, max_size=3)
            ),
            max_leaves=10,
        ),
    )
)
def test_any_decoded_json_gives_a_policy_or_a_policy_error(data: dict[str, object]) -> None:
    logging.getLogger("breaker").disabled = True
    try:
        with contextlib.suppress(PolicyError):
            Policy.from_dict(data)
    finally:
        logging.getLogger("breaker").disabled = False
