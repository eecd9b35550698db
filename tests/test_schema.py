"""The JSON Schema of a policy document agrees with the layers' verdict on a document alone.

That verdict (`breaker._layers.check_alone`) is what ``breaker validate`` prints: every
value, the rules between keys over the built-in defaults, and no unknown key.

The schema is more permissive than `Policy` in exactly four places that JSON Schema cannot
express (its ``description`` lists them). `known_gap` recognises each one by the error
`Policy` raises and repairs that one value, so the documents on both sides of a gap are
checked too: a gap can never hide another disagreement.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import jsonschema
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from breaker import Mode, Policy, PolicyError
from breaker._layers import check_alone
from breaker._policy import CANARY_KEYS, CANDIDATE_KEYS, JSON_KEYS, MAX_COUNT, MAX_SECONDS

from .strategies import policies

SCHEMA = json.loads(
    importlib.resources.files("breaker").joinpath("policy.schema.json").read_text("utf-8")
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

COUNT_KEYS = ("failureThreshold", "successThreshold", "minimumCalls")
DURATION_KEYS = (
    "openStateTimeout",
    "slowCallDuration",
    "rateWindow",
    "maxOpenStateTimeout",
    "timeout",
)


def schema_accepts(document: object) -> bool:
    return bool(VALIDATOR.is_valid(document))


def policy_error(document: object) -> PolicyError | None:
    problems = check_alone(document)
    if not problems:
        return None
    return PolicyError(problems[0].message, key=problems[0].key)


def known_gap(document: Mapping[str, Any], error: PolicyError) -> tuple[str, dict[str, Any]] | None:
    """Return (the gap, ``document`` with that value repaired) if ``error`` is a known gap."""
    key, message, repaired = error.key, str(error), dict(document)
    if key is not None and key.startswith(CANDIDATE):
        return candidate_gap(document, key[len(CANDIDATE) :], message)
    value = document.get(key) if key else None
    if key in COUNT_KEYS and isinstance(value, float) and value.is_integer():
        # JSON Schema's data model: 5.0 is an integer; Go's encoding/json (and Policy) refuse it.
        repaired[key] = int(value)
        return "a count with a fraction or exponent", repaired
    if key in DURATION_KEYS and isinstance(value, str) and "out of range" in message:
        # A pattern cannot add up the parts of "2562047h48m" against Go's longest duration.
        repaired[key] = "1s"
        return "a duration string beyond Go's longest", repaired
    if (
        key == "maxOpenStateTimeout"
        and "is shorter than the open state timeout" in message
        and ("openStateTimeout" in document or isinstance(value, str))
    ):
        # JSON Schema cannot compare two values (the number-against-the-default case it can).
        del repaired[key]
        return "maxOpenStateTimeout below openStateTimeout", repaired
    if (
        key == "modeUntil"
        and isinstance(value, str)
        and value[:10] in ("0001-01-01", "9999-12-31")
        and "is not a valid time" in message
    ):
        # The offset moves the instant out of years 1-9999: a comparison of two fields.
        repaired[key] = None
        repaired.setdefault("mode", "forced-open")
        return "a modeUntil pushed out of years 1-9999 by its offset", repaired
    return None


CANDIDATE = "canary.policy."


def candidate_gap(
    document: Mapping[str, Any], key: str, message: str
) -> tuple[str, dict[str, Any]] | None:
    """Return a known gap inside a canary's candidate, and the document with it repaired."""
    candidate = dict(document["canary"]["policy"])
    value = candidate.get(key)
    if key in COUNT_KEYS and isinstance(value, float) and value.is_integer():
        candidate[key] = int(value)
        gap = "a count with a fraction or exponent"
    elif key in DURATION_KEYS and isinstance(value, str) and "out of range" in message:
        candidate[key] = "1s"
        gap = "a duration string beyond Go's longest"
    elif "is shorter than the open state timeout" in message and key in candidate:
        # The candidate goes on the document: two values, maybe from two layers, compared.
        del candidate[key]
        gap = "maxOpenStateTimeout below openStateTimeout"
    else:
        return None
    return gap, {**document, "canary": {**document["canary"], "policy": candidate}}


def assert_agree(document: object) -> None:
    """Assert that the schema and Policy agree on ``document``, up to the documented gaps."""
    for _ in range(len(JSON_KEYS) + 1):
        accepted, error = schema_accepts(document), policy_error(document)
        if accepted == (error is None):
            return
        assert accepted, f"the schema rejects a document Policy accepts: {document!r}"
        assert isinstance(document, Mapping) and error is not None
        gap = known_gap(document, error)
        assert gap is not None, f"the schema accepts {document!r}; Policy says: {error}"
        document = gap[1]
    raise AssertionError(f"more gaps than keys in {document!r}")


# -- what the schema is --------------------------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_the_schema_names_every_policy_key_and_refuses_unknown_ones() -> None:
    assert set(SCHEMA["properties"]) == set(JSON_KEYS)
    assert SCHEMA["additionalProperties"] is False
    candidate = SCHEMA["$defs"]["candidate"]
    assert set(candidate["properties"]) == set(CANDIDATE_KEYS)
    assert candidate["additionalProperties"] is False
    assert set(SCHEMA["properties"]["canary"]["properties"]) == set(CANARY_KEYS)
    assert not schema_accepts({"failureTreshold": 3})
    assert [p.key for p in check_alone({"failureTreshold": 3})] == ["failureTreshold"]


def test_the_schema_needs_a_mode_beside_its_end() -> None:
    assert SCHEMA["dependentRequired"] == {"modeUntil": ["mode"]}
    assert_agree({"modeUntil": "2026-11-29T14:00:00Z"})
    assert not schema_accepts({"modeUntil": None})


def test_the_schema_ships_in_the_package_as_plain_ascii_json() -> None:
    raw = importlib.resources.files("breaker").joinpath("policy.schema.json").read_bytes()
    assert raw.isascii()  # the micro sign and the Greek mu stay apart as \u escapes
    assert json.loads(raw) == SCHEMA


def test_the_schema_documents_each_gap_the_tests_allow() -> None:
    description = SCHEMA["description"]
    for phrase in (
        "a count written with a fraction or an exponent (5.0, 1e2)",
        "maxOpenStateTimeout shorter than the openStateTimeout",
        "a duration string whose parts add up to more than Go's longest duration",
        "a modeUntil on 0001-01-01 or 9999-12-31",
    ):
        assert phrase in description


def test_the_patterns_stay_within_ecma_262() -> None:
    # JSON Schema patterns are ECMA-262 regexes: no Python-only syntax such as \Z, (?P<...>),
    # inline flags or \d (which Python's re reads as any Unicode digit).
    def patterns(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
            return found + [p for value in node.values() for p in patterns(value)]
        if isinstance(node, list):
            return [p for value in node for p in patterns(value)]
        return []

    found = patterns(SCHEMA)
    assert len(found) == 3  # durations, waits (0 allowed), timestamps
    for pattern in found:
        assert pattern.startswith("^") and pattern.endswith("$(?!\\n)")
        assert not re.search(r"\\[AZzd]|\(\?P|\(\?[aiLmsux]", pattern), pattern


# -- the documented gaps, one example each ---------------------------------------------------


@pytest.mark.parametrize(
    ("document", "gap"),
    [
        ({"failureThreshold": 5.0}, "a count with a fraction or exponent"),
        ({"minimumCalls": 1e2}, "a count with a fraction or exponent"),
        ({"openStateTimeout": "2562048h"}, "a duration string beyond Go's longest"),
        ({"rateWindow": "2562047h47m16s1s"}, "a duration string beyond Go's longest"),
        ({"maxOpenStateTimeout": "30s"}, "maxOpenStateTimeout below openStateTimeout"),
        (
            {"openStateTimeout": 10, "maxOpenStateTimeout": 5},
            "maxOpenStateTimeout below openStateTimeout",
        ),
        (
            {"mode": "shadow", "modeUntil": "0001-01-01T00:30:00+01:00"},
            "a modeUntil pushed out of years 1-9999 by its offset",
        ),
        (
            {"mode": "shadow", "modeUntil": "9999-12-31T23:30:00-01:00"},
            "a modeUntil pushed out of years 1-9999 by its offset",
        ),
    ],
)
def test_each_documented_gap_is_real_and_recognised(document: dict[str, Any], gap: str) -> None:
    assert schema_accepts(document)
    error = policy_error(document)
    assert error is not None
    found = known_gap(document, error)
    assert found is not None and found[0] == gap
    assert schema_accepts(found[1]) and policy_error(found[1]) is None


def test_the_schema_compares_a_number_with_the_default_open_state_timeout() -> None:
    # The part of "maxOpenStateTimeout >= openStateTimeout" that if/then can say.
    assert not schema_accepts({"maxOpenStateTimeout": 30})
    assert schema_accepts({"maxOpenStateTimeout": 60})
    assert schema_accepts({"maxOpenStateTimeout": 30, "openStateTimeout": 10})  # gap (2)


# -- boundaries, where a rounding or an off-by-one would show ------------------------------

HALF_NS = 5e-10
MIN_60 = 59.9999999995  # rounds to 60 s at nanosecond resolution

BOUNDARY_DOCUMENTS: list[object] = [
    {},
    [],
    "{}",
    None,
    {"failureThreshold": 0},
    {"failureThreshold": 0, "failureRate": None},
    {"failureThreshold": 0, "failureRate": 0.5},
    {"failureThreshold": MAX_COUNT},
    {"failureThreshold": MAX_COUNT + 1},
    {"failureThreshold": -1},
    {"failureThreshold": True},
    {"successThreshold": 0},
    {"successThreshold": 1},
    {"minimumCalls": 0},
    {"failureRate": 0},
    {"failureRate": 1},
    {"failureRate": 1.0000000000000002},
    {"failureRate": False},
    {"openStateTimeout": HALF_NS},
    {"openStateTimeout": math.nextafter(HALF_NS, 1)},
    {"openStateTimeout": MAX_SECONDS},
    {"openStateTimeout": math.nextafter(MAX_SECONDS, math.inf)},
    {"openStateTimeout": 9223372037},
    {"openStateTimeout": 0},
    {"openStateTimeout": -0.0},
    {"openStateTimeout": None},
    {"slowCallDuration": None},
    {"maxOpenStateTimeout": MIN_60},
    {"maxOpenStateTimeout": math.nextafter(MIN_60, 0)},
    {"openStateTimeout": "0"},
    {"openStateTimeout": "0s"},
    {"openStateTimeout": "+0s"},
    {"openStateTimeout": "-1s"},
    {"openStateTimeout": "+1s"},
    {"openStateTimeout": "1"},
    {"openStateTimeout": "1.s"},
    {"openStateTimeout": ".5s"},
    {"openStateTimeout": ".s"},
    {"openStateTimeout": "1S"},
    {"openStateTimeout": "1d"},
    {"openStateTimeout": "1m 30s"},
    {"openStateTimeout": "1s\n"},
    {"openStateTimeout": "\uff11s"},  # a fullwidth digit
    {"openStateTimeout": "0.9ns"},
    {"openStateTimeout": "1ns"},
    {"openStateTimeout": "0.0009us"},
    {"openStateTimeout": "0.001\u00b5s"},
    {"openStateTimeout": "0.001\u03bcs"},
    {"openStateTimeout": "0.0000009ms"},
    {"openStateTimeout": "0.000001ms"},
    {"openStateTimeout": "0.0000000009s"},
    {"openStateTimeout": "0.000000001s"},
    {"openStateTimeout": "0.00000000001666m"},
    {"openStateTimeout": "0.00000000001667m"},
    {"openStateTimeout": "0.0000000000166666666666666666666667m"},
    {"openStateTimeout": "0.000000000000277h"},
    {"openStateTimeout": "0.000000000000278h"},
    {"openStateTimeout": "0.0000000000002777777777777777777777778h"},
    {"openStateTimeout": "0.5ns0.5ns1ms"},
    {"openStateTimeout": "0.5ns0.5ns"},
    {"openStateTimeout": "2562047h47m16.854775807s"},
    {"openStateTimeout": "2562047h47m16.854775808s"},
    {"openStateTimeout": "1mss"},
    {"mode": "forced-open"},
    {"mode": "FORCED-OPEN"},
    {"mode": None},
    {"modeUntil": None},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2026-11-29t14:00:00z"},
    {"mode": "forced-open", "modeUntil": "2026-11-29 14:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00.123456789+05:30"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00.1234567891Z"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00.Z"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T24:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:60:00Z"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:60Z"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00+24:00"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00+23:59"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00+05:60"},
    {"mode": "forced-open", "modeUntil": "2026-11-31T14:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2026-02-29T14:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2024-02-29T14:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2100-02-29T14:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2000-02-29T14:00:00Z"},
    {"mode": "forced-open", "modeUntil": "0400-02-29T14:00:00Z"},
    {"mode": "forced-open", "modeUntil": "0000-01-01T00:00:00Z"},
    {"mode": "forced-open", "modeUntil": "0001-01-01T00:00:00Z"},
    {"mode": "forced-open", "modeUntil": "0001-01-01T01:00:00+01:00"},
    {"mode": "forced-open", "modeUntil": "9999-12-31T23:59:59Z"},
    {"mode": "forced-open", "modeUntil": "2026-13-01T00:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2026-00-01T00:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2026-11-00T00:00:00Z"},
    {"mode": "forced-open", "modeUntil": "2026-11-29T14:00:00Z\n"},
    {"mode": "forced-open", "modeUntil": "\uff12026-11-29T14:00:00Z"},
    {"mode": "forced-open", "modeUntil": 1764424800},
    {"canary": {"policy": {}, "percent": 10}},
    {"canary": {"policy": {}, "percent": 0}},
    {"canary": {"policy": {}, "percent": 100}},
    {"canary": {"policy": {}, "percent": 100.5}},
    {"canary": {"policy": {}, "percent": "10"}},
    {"canary": {"policy": {}, "percent": True}},
    {"canary": {"policy": {}}},
    {"canary": {"percent": 10}},
    {"canary": {"policy": {}, "percent": 10, "abortIfOpen": True}},
    {"canary": {"policy": {}, "percent": 10, "abortIfOpen": None}},
    {"canary": {"policy": {}, "percent": 10, "abortIfopen": True}},
    {"canary": {"policy": [], "percent": 10}},
    {"canary": None},
    {"canary": {"policy": {"mode": "shadow"}, "percent": 10}},
    {"canary": {"policy": {"canary": {}}, "percent": 10}},
    {"canary": {"policy": {"failureTreshold": 2}, "percent": 10}},
    {"canary": {"policy": {"failureThreshold": -1}, "percent": 10}},
    {"canary": {"policy": {"failureThreshold": 0}, "percent": 10}},
    {"canary": {"policy": {"failureThreshold": 0}, "percent": 10}, "failureRate": 0.5},
    {"canary": {"policy": {"failureThreshold": 0}, "percent": 10}, "failureRate": None},
    {"canary": {"policy": {"failureThreshold": 0, "failureRate": None}, "percent": 10}},
    {
        "canary": {"policy": {"failureRate": None}, "percent": 10},
        "failureThreshold": 0,
        "failureRate": 0.5,
    },
    {
        "canary": {"policy": {"failureRate": None, "failureThreshold": 1}, "percent": 10},
        "failureThreshold": 0,
        "failureRate": 0.5,
    },
    {"canary": {"policy": {"maxOpenStateTimeout": 30}, "percent": 10}},
    {"canary": {"policy": {"maxOpenStateTimeout": MIN_60}, "percent": 10}},
    {"canary": {"policy": {"maxOpenStateTimeout": 30}, "percent": 10}, "openStateTimeout": 10},
    {"canary": {"policy": {"openStateTimeout": 120}, "percent": 10}, "maxOpenStateTimeout": 90},
    {"canary": {"policy": {"failureThreshold": 5.0}, "percent": 10}},
    {"canary": {"policy": {"openStateTimeout": "2562048h"}, "percent": 10}},
]


@pytest.mark.parametrize("document", BOUNDARY_DOCUMENTS, ids=repr)
def test_the_schema_and_policy_agree_at_the_boundaries(document: object) -> None:
    assert_agree(document)


def duration_strings() -> list[str]:
    """Return every one-part duration built from the edges of each unit's resolution."""
    wholes = ["", "0", "00", "1", "01", "59", "60"]
    fractions = ["", ".", ".0", ".5", ".9", ".001", ".0009", ".000001", ".0000009"]
    # The first digit that reaches a nanosecond: 9 zeros for s, 10 then 1.6... for m
    # (1/60e9), 12 then 2.7... for h (1/3.6e12); the repeating 6 and 7 never reach it.
    fractions += ["." + "0" * n + tail for n in (8, 9, 10, 11, 12, 13) for tail in ("1", "2", "9")]
    fractions += [".0000000000" + t for t in ("16", "1666", "1667", "16666666666666667")]
    fractions += [".000000000000" + t for t in ("27", "2777", "2778", "27777777777777778")]
    units = ["ns", "us", "\u00b5s", "\u03bcs", "ms", "s", "m", "h", "", "M", "sec", "\u00b5"]
    found = [w + f + u for w in wholes for f in fractions for u in units]
    found += [sign + text for sign in "+-" for text in ("1s", "0s", "0", ".5ms", "1m0.5ns")]
    found += ["0.5ns0.5ns", "0.5ns1ns", "1h0.0000000000001m", "0.0000000001s0.1ns", "1s1", "s1"]
    return found


def timestamp_strings() -> list[str]:
    """Return dates and times on each field's edges, and offsets on theirs."""
    found = []
    for year in ("0000", "0001", "0004", "0100", "0400", "1900", "1904", "2000", "2023", "9999"):
        for month in ("00", "01", "02", "04", "12", "13"):
            for day in ("00", "01", "28", "29", "30", "31", "32"):
                found.append(f"{year}-{month}-{day}T12:00:00Z")
    for time in ("00:00:00", "23:59:59", "24:00:00", "23:60:00", "23:59:60", "9:00:00"):
        for frac in ("", ".", ".1", ".123456789", ".1234567891"):
            for zone in ("Z", "z", "", "+00:00", "-23:59", "+24:00", "+05:60", "+0530", "+05"):
                found.append(f"2026-11-29T{time}{frac}{zone}")
    # Every year that could hold a 29 February, and a few that cannot.
    found += [f"{year:04d}-02-29T12:00:00Z" for year in (*range(0, 10000, 4), 1, 1901, 2023)]
    for day in ("0001-01-01", "0001-01-02", "9999-12-31", "9999-12-30"):
        for time in ("00:00:00", "00:59:59", "01:00:00", "22:59:59", "23:00:00", "23:59:59"):
            for zone in ("Z", "+01:00", "-01:00", "+23:59", "-23:59"):
                found.append(f"{day}T{time}{zone}")
    return found


@pytest.mark.parametrize(
    "key", ["openStateTimeout", "slowCallDuration", "rateWindow", "maxOpenStateTimeout"]
)
def test_the_schema_and_policy_agree_on_every_edge_of_a_duration(key: str) -> None:
    values = duration_strings()
    assert len(values) > 1000
    for value in values:
        assert_agree(
            {key: value, "openStateTimeout": "1ns"} if key.startswith("max") else {key: value}
        )


def test_the_schema_and_policy_agree_on_every_edge_of_a_timestamp() -> None:
    values = timestamp_strings()
    assert len(values) > 3000
    for value in values:
        assert_agree({"mode": "forced-open", "modeUntil": value})


# -- generated documents ---------------------------------------------------------------------


def test_every_valid_policy_is_valid_for_the_schema() -> None:
    @given(policies(), st.data())
    @settings(max_examples=150, deadline=None)
    def check(policy: Policy, data: st.DataObject) -> None:
        document = policy.to_dict()
        assert schema_accepts(document), document
        # Any part of a valid document is valid on its own too, unless a rule links keys.
        keys = data.draw(st.sets(st.sampled_from(sorted(document))))
        part = {key: document[key] for key in keys}
        assert_agree(part)

    check()


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "1m", "auto", "true", "5", "null"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)

counts = st.one_of(
    st.integers(-2, 3),
    st.integers(MAX_COUNT - 2, MAX_COUNT + 2),
    st.integers(),
    st.sampled_from([0.0, 1.0, 5.0, 1e2, 2.5, -1.0, 1e6, 1e6 + 1, 1e300]),
)

# Digit strings come from integers: hypothesis draws them far faster than text.
digits = st.one_of(st.integers(0, 9999).map(str), st.sampled_from(["00", "007"]))
fractions = st.one_of(
    st.just(""),
    st.just("."),
    st.builds(
        lambda zeros, rest: "." + "0" * zeros + rest,
        st.integers(0, 14),
        st.one_of(st.just(""), st.integers(0, 99999).map(str)),
    ),
)
units = st.sampled_from(
    ["ns", "us", "\u00b5s", "\u03bcs", "ms", "s", "m", "h", "", "d", "S", "sec"]
)
components = st.builds(
    lambda whole, frac, unit: whole + frac + unit,
    st.one_of(st.just(""), digits, st.integers(10**18, 10**21).map(str)),
    fractions,
    units,
)
go_durations = st.builds(
    lambda sign, parts, tail: sign + "".join(parts) + tail,
    st.sampled_from(["", "", "+", "-"]),
    st.lists(components, min_size=1, max_size=3),
    st.sampled_from(["", "", "", "\n", " "]),
)
near_limits = st.sampled_from(
    [
        "2562047h47m16.854775807s",
        "2562047h47m16.854775808s",
        "2562047h",
        "2562048h",
        "9223372036854775807ns",
        "9223372036854775808ns",
        "153722867m",
        "153722868m",
    ]
)
seconds = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=0, max_value=1e-8),
    st.integers(-5, 10**10),
    st.sampled_from(
        [
            HALF_NS,
            math.nextafter(HALF_NS, 1),
            math.nextafter(HALF_NS, 0),
            MAX_SECONDS,
            math.nextafter(MAX_SECONDS, math.inf),
            MIN_60,
            math.nextafter(MIN_60, 0),
            60,
            59,
            -0.0,
        ]
    ),
)
durations = st.one_of(go_durations, near_limits, seconds, st.none())


def _two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


timestamps = st.builds(
    lambda y, mo, d, t, h, mi, s, frac, zone, tail: (
        f"{y}-{mo}-{d}{t}{h}:{mi}:{s}{frac}{zone}{tail}"
    ),
    st.one_of(
        st.sampled_from(
            ["0000", "0001", "0004", "0100", "0400", "1900", "2000", "2024", "2100", "9999"]
        ),
        st.integers(0, 9999).map(lambda n: f"{n:04d}"),
    ),
    _two(0, 13),
    _two(0, 32),
    st.sampled_from(["T", "t", " "]),
    _two(0, 24),
    _two(0, 60),
    _two(0, 60),
    st.one_of(
        st.just(""),
        st.just("."),
        st.integers(0, 10**10).map(lambda n: "." + str(n)),
        st.integers(0, 8).map(lambda n: "." + "0" * n + "1"),
    ),
    st.one_of(
        st.sampled_from(["Z", "z", ""]),
        st.builds(
            lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), _two(0, 24), _two(0, 60)
        ),
    ),
    st.sampled_from(["", "", "", "\n"]),
)
edge_timestamps = st.builds(
    lambda day, h, m, sign, oh, om: f"{day}T{h}:{m}:00{sign}{oh}:{om}",
    st.sampled_from(["0001-01-01", "9999-12-31"]),
    _two(0, 23),
    _two(0, 59),
    st.sampled_from("+-"),
    _two(0, 23),
    _two(0, 59),
)
modes = st.one_of(
    st.sampled_from([m.value for m in Mode]), st.sampled_from(["AUTO", "forced_open", "", "off"])
)

VALUES: dict[str, st.SearchStrategy[object]] = {
    "failureThreshold": counts,
    "successThreshold": counts,
    "minimumCalls": counts,
    "failureRate": st.one_of(st.floats(-0.5, 1.5), st.sampled_from([0, 1, 1.0, 2, None])),
    "openStateTimeout": durations,
    "slowCallDuration": durations,
    "rateWindow": durations,
    "maxOpenStateTimeout": durations,
    "mode": modes,
    "modeUntil": st.one_of(timestamps, edge_timestamps, st.none()),
}

candidates = st.fixed_dictionaries(
    {},
    optional={
        **{
            key: st.one_of(strategy, json_scalars)
            for key, strategy in VALUES.items()
            if key in CANDIDATE_KEYS
        },
        "mode": modes,
        "failureTreshold": json_scalars,
    },
)
canaries = st.fixed_dictionaries(
    {},
    optional={
        "policy": st.one_of(candidates, candidates, json_scalars),
        "percent": st.one_of(
            st.sampled_from([0, 0.001, 1, 20, 99.9, 100, 100.0001, -5, 1e300]), json_scalars
        ),
        "abortIfOpen": st.one_of(st.booleans(), json_scalars),
    },
)
VALUES["canary"] = st.one_of(
    canaries.map(lambda c: {"policy": {}, "percent": 10, **c}), canaries, json_scalars
)
documents = st.fixed_dictionaries(
    {},
    optional={key: st.one_of(strategy, json_scalars) for key, strategy in VALUES.items()},
)
documents_with_unknown_keys = st.builds(
    lambda extra, doc: {**extra, **doc},
    st.dictionaries(
        st.sampled_from(["failureTreshold", "owner", "", "Mode"]), json_values, max_size=2
    ),
    documents,
)


@given(documents_with_unknown_keys)
@settings(max_examples=400, deadline=None)
@example({"failureThreshold": 0, "failureRate": 0.5, "maxOpenStateTimeout": "2562048h"})
@example({"failureThreshold": 2.0, "modeUntil": "9999-12-31T23:30:00-01:00"})
def test_the_schema_and_policy_agree_on_generated_documents(document: dict[str, object]) -> None:
    assert_agree(copy.deepcopy(document))


@given(json_values)
@settings(max_examples=200, deadline=None)
def test_the_schema_and_policy_agree_on_any_json_value(value: object) -> None:
    assert_agree(value)


@given(policies(), policies(), st.data())
@settings(max_examples=300, deadline=None)
def test_the_schema_and_policy_agree_on_canaries_of_valid_values(
    stable: Policy, tried: Policy, data: st.DataObject
) -> None:
    # Valid values on both layers: what is left to judge is how the candidate goes on
    # top of the document (a failureThreshold of 0 needs a rate; maxOpenStateTimeout).
    def part(policy: Policy) -> dict[str, Any]:
        found = {k: v for k, v in policy.to_dict().items() if k not in ("mode", "modeUntil")}
        keys = data.draw(st.sets(st.sampled_from(sorted(found))))
        return {key: found[key] for key in keys}

    document = part(stable)
    candidate = part(tried)
    if data.draw(st.booleans()):
        document.update(
            data.draw(
                st.dictionaries(
                    st.sampled_from((*COUNT_KEYS, "failureRate")),
                    st.sampled_from([0, 1, None, 0.5]),
                )
            )
        )
        candidate.update(
            data.draw(
                st.dictionaries(
                    st.sampled_from((*COUNT_KEYS, "failureRate")),
                    st.sampled_from([0, 1, None, 0.5]),
                )
            )
        )
    percent = data.draw(st.floats(0, 100, exclude_min=True) | st.sampled_from([100, 1, 50]))
    document["canary"] = {"policy": candidate, "percent": percent}
    assert_agree(document)


@pytest.mark.parametrize(
    ("document", "gap"),
    [
        (
            {"canary": {"policy": {"successThreshold": 2.0}, "percent": 5}},
            "a count with a fraction or exponent",
        ),
        (
            {"canary": {"policy": {"rateWindow": "2562048h"}, "percent": 5}},
            "a duration string beyond Go's longest",
        ),
        (
            {
                "canary": {"policy": {"openStateTimeout": 120}, "percent": 5},
                "maxOpenStateTimeout": 90,
            },
            "maxOpenStateTimeout below openStateTimeout",
        ),
        (
            {"canary": {"policy": {"maxOpenStateTimeout": "30s"}, "percent": 5}},
            "maxOpenStateTimeout below openStateTimeout",
        ),
    ],
)
def test_each_documented_gap_is_the_same_in_a_candidate(document: dict[str, Any], gap: str) -> None:
    assert schema_accepts(document)
    error = policy_error(document)
    assert error is not None and error.key is not None and error.key.startswith(CANDIDATE)
    found = known_gap(document, error)
    assert found is not None and found[0] == gap
    assert schema_accepts(found[1]) and policy_error(found[1]) is None
