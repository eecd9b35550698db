"""Policy: how a breaker trips and recovers, validated on construction, and its JSON form.

A policy document is a JSON object in camelCase; every key is optional and keys a
document leaves out come from a base policy. Durations are Go duration strings or
numbers of seconds, bounded by Go's largest duration; counts by `MAX_COUNT`.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs

from breaker._duration import MAX_NS, format_go_duration, parse_go_duration
from breaker._exceptions import PolicyError
from breaker._state import Mode

_log = logging.getLogger("breaker.policies")

_NS_PER_S = 1_000_000_000
MAX_SECONDS = MAX_NS / _NS_PER_S
"""The longest duration a policy holds: Go's largest time.Duration (about 292 years)."""
MAX_COUNT = 1_000_000
"""The largest count a policy holds (thresholds, minimum calls)."""
DEFAULT_MINIMUM_CALLS = 20
"""Calls a rate window needs before ``failureRate`` can trip it, when a document names none."""
DEFAULT_RATE_WINDOW = 60.0
"""The rate window, in seconds, when a document sets ``failureRate`` and names none."""
_UNKNOWN_SAMPLE = 5


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {text!r}"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, int) and abs(value) > 10**30:
        return f"an integer of {len(str(abs(value)))} digits"
    return repr(value)


def _count(name: str, value: object, minimum: int) -> int:
    if value.__class__ is int and minimum <= value <= MAX_COUNT:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(
            f"{name}: expected an integer from {minimum} to {MAX_COUNT}, got {_describe(value)}",
            key=name,
        )
    if not minimum <= value <= MAX_COUNT:
        raise PolicyError(
            f"{name}: expected an integer from {minimum} to {MAX_COUNT}, got {_describe(value)}",
            key=name,
        )
    return value


def _seconds(name: str, value: object) -> float:
    """Return ``value`` (seconds, a timedelta or a Go duration string) as float seconds."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, str):
        try:
            return parse_go_duration(value) / _NS_PER_S
        except ValueError as exc:
            raise PolicyError(f"{name}: {exc}", key=name) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(
            f'{name}: expected a duration ("30s", "1m30s") or a number of seconds, '
            f"got {_describe(value)}",
            key=name,
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise PolicyError(f"{name}: expected a finite duration, got {value}", key=name)
    if value > MAX_SECONDS:
        raise PolicyError(
            f"{name}: {_describe(value)} (seconds) is longer than the longest duration "
            f"({format_go_duration(MAX_NS)})",
            key=name,
        )
    if value <= 0:
        return 0.0
    # Kept at nanosecond resolution, like Go's time.Duration, so the JSON form round-trips
    # (clamped: the float nearest the longest duration rounds to a nanosecond beyond it).
    return min(round(value * _NS_PER_S), MAX_NS) / _NS_PER_S


def _duration(name: str, value: object) -> float:
    if value.__class__ is float and 0.0 < value <= MAX_SECONDS:
        ns = min(round(value * _NS_PER_S), MAX_NS)
        if ns:  # the common case: a float in range, kept at nanosecond resolution
            return ns / _NS_PER_S
    seconds = _seconds(name, value)
    if seconds <= 0:
        raise PolicyError(f"{name}: expected a duration > 0, got {_describe(value)}", key=name)
    return seconds


def _open_state_timeout(value: object) -> float:
    return _duration("open_state_timeout", value)


def _rate_window(value: object) -> float:
    return _duration("rate_window", value)


def _slow_call_duration(value: object) -> float | None:
    return None if value is None else _duration("slow_call_duration", value)


def _max_open_state_timeout(value: object) -> float | None:
    return None if value is None else _duration("max_open_state_timeout", value)


def _timeout(value: object) -> float | None:
    return None if value is None else _duration("timeout", value)


def _max_wait_duration(value: object) -> float:
    """Return a wait as seconds: 0 (no wait) or more; a negative wait is a mistake."""
    if value.__class__ is float and 0.0 <= value <= MAX_SECONDS:
        return min(round(value * _NS_PER_S), MAX_NS) / _NS_PER_S
    negative = (
        parse_go_duration(value) < 0
        if isinstance(value, str) and value.lstrip().startswith("-")
        else isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0
    )
    seconds = _seconds("max_wait_duration", value)
    if negative:
        raise PolicyError(
            f"max_wait_duration: expected a duration >= 0, got {_describe(value)}",
            key="max_wait_duration",
        )
    return seconds


def _rate(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(
            f"failure_rate: expected a number in (0, 1], got {_describe(value)}", key="failure_rate"
        )
    if not 0 < value <= 1:
        raise PolicyError(
            f"failure_rate: expected a number in (0, 1], got {_describe(value)}", key="failure_rate"
        )
    return float(value)


def _mode(value: object) -> Mode:
    if isinstance(value, Mode):
        return value
    try:
        return Mode(value)
    except (ValueError, TypeError):
        choices = ", ".join(repr(m.value) for m in Mode)
        raise PolicyError(
            f"mode: expected one of {choices}, got {_describe(value)}", key="mode"
        ) from None


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z",
    re.ASCII,
)


def _timestamp(value: object) -> datetime | None:
    """Return ``value`` (an RFC 3339 string or an aware datetime) as an aware UTC datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise PolicyError(
                "mode_until: expected a timezone-aware datetime, got a naive one", key="mode_until"
            )
        return value.astimezone(timezone.utc)
    if not isinstance(value, str):
        raise PolicyError(
            f'mode_until: expected an RFC 3339 timestamp ("2026-11-29T14:00:00Z"), '
            f"got {_describe(value)}",
            key="mode_until",
        )
    match = _RFC3339.match(value)
    if match is None:
        raise PolicyError(
            f'mode_until: expected an RFC 3339 timestamp ("2026-11-29T14:00:00Z"), '
            f"got {_describe(value)}",
            key="mode_until",
        )
    year, month, day, hour, minute, second, frac, zone = match.groups()
    try:
        if zone in ("Z", "z"):
            tz = timezone.utc
        else:
            sign = 1 if zone[0] == "+" else -1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        micro = int((frac or ".0")[1:].ljust(9, "0")[:6])
        parsed = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise PolicyError(
            f"mode_until: {value!r} is not a valid time: {exc}", key="mode_until"
        ) from None


def _check_failure_threshold(_: object, __: object, value: object) -> None:
    _count("failure_threshold", value, 0)


def _check_success_threshold(_: object, __: object, value: object) -> None:
    _count("success_threshold", value, 1)


def _check_minimum_calls(_: object, __: object, value: object) -> None:
    _count("minimum_calls", value, 1)


def _check_max_concurrent_calls(_: object, __: object, value: object) -> None:
    _count("max_concurrent_calls", value, 0)


def _no_rate_to_trip(threshold: int, rate: float | None) -> PolicyError | None:
    if threshold == 0 and rate is None:
        return PolicyError(
            "failure_threshold: 0 turns the consecutive-failure rule off, which needs a "
            "failure rate to trip on instead",
            key="failure_threshold",
        )
    return None


def _max_below_open(open_state: float, longest: float | None) -> PolicyError | None:
    if longest is not None and longest < open_state:
        return PolicyError(
            f"max_open_state_timeout: {_go(longest)} is shorter than the open state timeout "
            f"({_go(open_state)})",
            key="max_open_state_timeout",
        )
    return None


@attrs.frozen(repr=False)
class Policy:
    """How a breaker trips and recovers; immutable, so a new policy is a new object.

    ``failure_threshold`` consecutive failures open the breaker; after
    ``open_state_timeout`` seconds it half-opens and admits up to ``success_threshold``
    trial calls; that many consecutive successes close it again. The other fields are
    optional rules (slow calls, a failure rate over a window, growing open periods) and
    the operator's ``mode``; the README's Policies section describes each.
    ``max_concurrent_calls`` (0: no limit), ``max_wait_duration`` and ``timeout`` protect
    the caller from a downstream that does not answer (the README's Load protection).
    """

    failure_threshold: int = attrs.field(default=5, validator=_check_failure_threshold)
    success_threshold: int = attrs.field(default=1, validator=_check_success_threshold)
    open_state_timeout: float = attrs.field(default=60.0, converter=_open_state_timeout)
    slow_call_duration: float | None = attrs.field(default=None, converter=_slow_call_duration)
    failure_rate: float | None = attrs.field(default=None, converter=_rate)
    minimum_calls: int = attrs.field(default=DEFAULT_MINIMUM_CALLS, validator=_check_minimum_calls)
    rate_window: float = attrs.field(default=DEFAULT_RATE_WINDOW, converter=_rate_window)
    max_open_state_timeout: float | None = attrs.field(
        default=None, converter=_max_open_state_timeout
    )
    max_concurrent_calls: int = attrs.field(default=0, validator=_check_max_concurrent_calls)
    max_wait_duration: float = attrs.field(default=0.0, converter=_max_wait_duration)
    timeout: float | None = attrs.field(default=None, converter=_timeout)
    mode: Mode = attrs.field(default=Mode.AUTO, converter=_mode)
    mode_until: datetime | None = attrs.field(default=None, converter=_timestamp)

    def __repr__(self) -> str:
        """Show the seed's three fields, and the optional ones only when they are set."""
        parts = [
            f"failure_threshold={self.failure_threshold}",
            f"success_threshold={self.success_threshold}",
            f"open_state_timeout={self.open_state_timeout!r}",
        ]
        defaults = _DEFAULTS
        for field in _OPTIONAL_FIELDS:
            value = getattr(self, field)
            if value != getattr(defaults, field):
                parts.append(f"{field}={value.value if isinstance(value, Mode) else value!r}")
        return f"Policy({', '.join(parts)})"

    def __attrs_post_init__(self) -> None:
        error = _no_rate_to_trip(self.failure_threshold, self.failure_rate) or _max_below_open(
            self.open_state_timeout, self.max_open_state_timeout
        )
        if error is not None:
            raise error

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        base: Policy | None = None,
        source: str | None = None,
    ) -> Policy:
        """Return the policy a decoded JSON document describes; missing keys come from ``base``.

        ``source`` (a coord key, a file name) prefixes error messages and warnings.
        """
        where = f"{source}: " if source else ""
        changes, errors, unknown = read_document(data)
        changes.pop(CANARY_KEY, None)  # the stable policy: a canary is the provider's to run
        if unknown:
            _log.warning("%s%s", where, unknown_keys_message(unknown))
        if errors:
            raise PolicyError(f"{where}{errors[0]}", key=errors[0].key) from None
        try:
            return cls(**{**_fields_of(base if base is not None else _DEFAULTS), **changes})
        except PolicyError as exc:
            raise PolicyError(f"{where}{_json_message(exc)}", key=_json_key(exc.key)) from None

    @classmethod
    def _trusted(cls, fields: Mapping[str, Any], mode: Mode, mode_until: datetime | None) -> Policy:
        """Return the policy of values already converted and checked, without checking again.

        For the layers, which judge each document's values once and the rules between
        fields (`combination_errors`) on the combination: a reload converts each value once.
        ``fields`` holds every field but the mode's two.
        """
        policy = object.__new__(cls)
        setattr_ = object.__setattr__
        for name in _SETTINGS:
            setattr_(policy, name, fields[name])
        setattr_(policy, "mode", mode)
        setattr_(policy, "mode_until", mode_until)
        return policy

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        *,
        base: Policy | None = None,
        source: str | None = None,
    ) -> Policy:
        """Return the policy a JSON document describes (see `from_dict`).

        Bytes must be UTF-8 without a byte-order mark, as Go's encoding/json reads them.
        """
        return cls.from_dict(decode_document(text, source=source), base=base, source=source)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: durations as Go duration strings, optional keys only when set."""
        out: dict[str, Any] = {
            "failureThreshold": self.failure_threshold,
            "successThreshold": self.success_threshold,
            "openStateTimeout": _go(self.open_state_timeout),
        }
        if self.slow_call_duration is not None:
            out["slowCallDuration"] = _go(self.slow_call_duration)
        if self.failure_rate is not None:
            out["failureRate"] = self.failure_rate
        if self.failure_rate is not None or self.minimum_calls != DEFAULT_MINIMUM_CALLS:
            out["minimumCalls"] = self.minimum_calls
        if self.failure_rate is not None or self.rate_window != DEFAULT_RATE_WINDOW:
            out["rateWindow"] = _go(self.rate_window)
        if self.max_open_state_timeout is not None:
            out["maxOpenStateTimeout"] = _go(self.max_open_state_timeout)
        if self.max_concurrent_calls:
            out["maxConcurrentCalls"] = self.max_concurrent_calls
        if self.max_concurrent_calls or self.max_wait_duration:
            out["maxWaitDuration"] = _go(self.max_wait_duration)
        if self.timeout is not None:
            out["timeout"] = _go(self.timeout)
        if self.mode is not Mode.AUTO or self.mode_until is not None:
            out["mode"] = self.mode.value  # a document that ends a mode names it
        if self.mode_until is not None:
            out["modeUntil"] = format_timestamp(self.mode_until)
        return out


_base_fields: tuple[Policy | None, dict[str, Any]] = (None, {})


def _fields_of(policy: Policy) -> dict[str, Any]:
    """Return ``policy``'s fields by name (cheaper than attrs.evolve; one base is reused)."""
    global _base_fields
    cached, fields = _base_fields
    if cached is not policy:
        fields = {name: getattr(policy, name) for name in _FIELD_NAMES}
        _base_fields = (policy, fields)
    return fields


def _go(seconds: float) -> str:
    return format_go_duration(min(round(seconds * _NS_PER_S), MAX_NS))


def format_timestamp(when: datetime) -> str:
    """Return ``when`` as RFC 3339 in UTC ("2026-11-29T14:00:00Z")."""
    text = when.astimezone(timezone.utc).isoformat()
    return text.replace("+00:00", "Z")


@attrs.frozen
class Canary:
    """The ``canary`` key of a document: a candidate policy tried on a slice of the fleet.

    ``settings`` holds the converted value of each key the candidate sets, by attrs field
    (the candidate is a layer on top of the document); ``percent`` (0 < percent <= 100)
    the share of instances that run it; ``abort_if_open`` whether an instance whose
    breaker trips under it goes back to the stable policy; ``value`` the ``canary``
    object as written.
    """

    settings: Mapping[str, Any]
    percent: float
    abort_if_open: bool
    value: Mapping[str, Any]


_DEFAULTS = Policy()
_OPTIONAL_FIELDS = (
    "slow_call_duration",
    "failure_rate",
    "minimum_calls",
    "rate_window",
    "max_open_state_timeout",
    "max_concurrent_calls",
    "max_wait_duration",
    "timeout",
    "mode",
    "mode_until",
)
_FIELDS = {
    "failureThreshold": "failure_threshold",
    "successThreshold": "success_threshold",
    "openStateTimeout": "open_state_timeout",
    "slowCallDuration": "slow_call_duration",
    "failureRate": "failure_rate",
    "minimumCalls": "minimum_calls",
    "rateWindow": "rate_window",
    "maxOpenStateTimeout": "max_open_state_timeout",
    "maxConcurrentCalls": "max_concurrent_calls",
    "maxWaitDuration": "max_wait_duration",
    "timeout": "timeout",
    "mode": "mode",
    "modeUntil": "mode_until",
}
_KEYS = {field: key for key, field in _FIELDS.items()}
_FIELD_NAMES = tuple(_FIELDS.values())
_SETTINGS = tuple(f for f in _FIELD_NAMES if f not in ("mode", "mode_until"))
CANARY_KEY = "canary"
"""The key of a document's canary: not a policy field, a candidate policy beside it."""
CANARY_KEYS = ("policy", "percent", "abortIfOpen")
"""The keys of a ``canary`` object."""
_NOT_CANDIDATE = ("mode", "modeUntil", CANARY_KEY)
CANDIDATE_KEYS = tuple(key for key in _FIELDS if key not in _NOT_CANDIDATE)
"""The keys a canary's candidate policy may set: a policy's settings, never a mode."""
JSON_KEYS = (*_FIELDS, CANARY_KEY)
"""Every key a policy document may hold."""
KEY_FIELDS: Mapping[str, str] = _FIELDS
"""The attrs field each policy key sets (every key of a document but ``canary``)."""
_DURATIONS = frozenset(
    {
        "open_state_timeout",
        "slow_call_duration",
        "rate_window",
        "max_open_state_timeout",
        "max_wait_duration",
        "timeout",
    }
)


def json_value(field: str, value: Any) -> Any:
    """Return a field's value as a document writes it (a duration as a Go duration string)."""
    if value is None:
        return None
    if field in _DURATIONS:
        return _go(value)
    if isinstance(value, Mode):
        return value.value
    if isinstance(value, datetime):
        return format_timestamp(value)
    return value


_READERS: dict[str, Callable[[object], Any]] = {
    "failure_threshold": lambda value: _count("failure_threshold", value, 0),
    "success_threshold": lambda value: _count("success_threshold", value, 1),
    "open_state_timeout": _open_state_timeout,
    "slow_call_duration": _slow_call_duration,
    "failure_rate": _rate,
    "minimum_calls": lambda value: _count("minimum_calls", value, 1),
    "rate_window": _rate_window,
    "max_open_state_timeout": _max_open_state_timeout,
    "max_concurrent_calls": lambda value: _count("max_concurrent_calls", value, 0),
    "max_wait_duration": _max_wait_duration,
    "timeout": _timeout,
    "mode": _mode,
    "mode_until": _timestamp,
}


def combination_errors(fields: Mapping[str, Any]) -> list[PolicyError]:
    """Return what breaks the rules that tie fields together, among the fields given.

    ``fields`` holds converted values by attrs field name; a rule whose fields are not
    all there is not checked (a layer that sets one of them leaves it to the combination).
    Messages and keys use the document's keys.
    """
    errors = []
    if "failure_threshold" in fields and "failure_rate" in fields:
        error = _no_rate_to_trip(fields["failure_threshold"], fields["failure_rate"])
        if error is not None:
            errors.append(error)
    if "open_state_timeout" in fields and "max_open_state_timeout" in fields:
        error = _max_below_open(fields["open_state_timeout"], fields["max_open_state_timeout"])
        if error is not None:
            errors.append(error)
    return [PolicyError(_json_message(e), key=_json_key(e.key)) for e in errors]


def read_document(data: object) -> tuple[dict[str, Any], list[PolicyError], list[str]]:
    """Judge a decoded document on its own: what it sets, every error, its unknown keys.

    Returns the converted value of each valid key by attrs field name (a valid
    ``canary`` as a `Canary` under ``"canary"``); every error, each naming its key
    (``PolicyError.key`` is the document's key, dotted inside the canary:
    ``canary.policy.failureThreshold``); and the unknown keys (dotted likewise).
    The rules that tie keys together are checked among the keys the document sets, and
    a ``modeUntil`` needs its ``mode`` in the same document: a mode and its end come
    from one layer.
    """
    if not isinstance(data, Mapping):
        error = PolicyError(f"a policy must be a JSON object, got {_describe(data)}")
        return {}, [error], []
    fields: dict[str, Any] = {}
    errors: list[PolicyError] = []
    unknown: list[str] = []
    for key, value in data.items():
        field = _FIELDS.get(key)
        if field is None:
            if key == CANARY_KEY:
                canary = _read_canary(value, errors, unknown)
                if canary is not None:
                    fields[CANARY_KEY] = canary
                continue
            unknown.append(key)
            continue
        try:
            fields[field] = _READERS[field](value)
        except PolicyError as exc:
            errors.append(PolicyError(_json_message(exc), key=key))
    if "modeUntil" in data and "mode" not in data:
        errors.append(
            PolicyError(
                "modeUntil: set without mode; a document that ends a mode names it "
                '("mode": "forced-open" ...)',
                key="modeUntil",
            )
        )
    if len(fields) > 1:
        errors.extend(combination_errors(fields))
    return fields, errors, unknown


def _read_canary(value: object, errors: list[PolicyError], unknown: list[str]) -> Canary | None:
    """Read a ``canary`` object; add its errors and unknown keys; return it if valid."""
    if not isinstance(value, Mapping):
        errors.append(
            PolicyError(
                'canary: expected an object ({"policy": {...}, "percent": 10}), got '
                f"{_describe(value)}",
                key=CANARY_KEY,
            )
        )
        return None
    before = len(errors)
    unknown.extend(f"canary.{key}" for key in value if key not in CANARY_KEYS)
    percent = value.get("percent")
    if "percent" not in value:
        errors.append(
            PolicyError(
                "canary.percent: missing: the share of instances that run the candidate "
                "(0 < percent <= 100)",
                key="canary.percent",
            )
        )
    elif (
        isinstance(percent, bool)
        or not isinstance(percent, (int, float))
        or not 0 < percent <= 100  # NaN fails too
    ):
        errors.append(
            PolicyError(
                f"canary.percent: expected a number in (0, 100], got {_describe(percent)}",
                key="canary.percent",
            )
        )
    abort = value.get("abortIfOpen", False)
    if not isinstance(abort, bool):
        errors.append(
            PolicyError(
                f"canary.abortIfOpen: expected true or false, got {_describe(abort)}",
                key="canary.abortIfOpen",
            )
        )
    candidate = value.get("policy")
    settings: dict[str, Any] = {}
    if "policy" not in value:
        errors.append(
            PolicyError(
                "canary.policy: missing: the candidate policy (an object of policy keys)",
                key="canary.policy",
            )
        )
    elif not isinstance(candidate, Mapping):
        errors.append(
            PolicyError(
                f"canary.policy: expected an object of policy keys, got {_describe(candidate)}",
                key="canary.policy",
            )
        )
    else:
        for key in _NOT_CANDIDATE:
            if key in candidate:
                errors.append(
                    PolicyError(
                        f"canary.policy.{key}: a canary tries policy settings, not modes; set "
                        "modes on the document itself",
                        key=f"canary.policy.{key}",
                    )
                )
        inner = {k: v for k, v in candidate.items() if k not in _NOT_CANDIDATE}
        settings, inner_errors, inner_unknown = read_document(inner)
        for error in inner_errors:
            errors.append(
                PolicyError(
                    f"canary.policy.{error}",
                    key=f"canary.policy.{error.key}" if error.key else "canary.policy",
                )
            )
        unknown.extend(f"canary.policy.{key}" for key in inner_unknown)
    if len(errors) > before:
        return None
    return Canary(settings, float(percent), abort, value)  # type: ignore[arg-type]


def unknown_keys_message(unknown: Sequence[str]) -> str:
    """Return one line naming unknown keys: a bounded sample, each with a likely meaning."""
    shown = [f"{str(key)[:40]!r}{did_you_mean(str(key))}" for key in unknown[:_UNKNOWN_SAMPLE]]
    more = len(unknown) - _UNKNOWN_SAMPLE
    return "ignoring unknown policy keys: " + ", ".join(shown) + (f" and {more} more" * (more > 0))


def did_you_mean(key: str) -> str:
    """Return ``" (did you mean 'openStateTimeout'?)"`` for a near miss of a key, else ``""``."""
    if len(key) > 64:
        return ""
    import difflib  # only a document with an unknown key needs it

    choices: Sequence[str] = JSON_KEYS
    if key.startswith("canary.policy."):
        key, choices = key[len("canary.policy.") :], CANDIDATE_KEYS
    elif key.startswith("canary."):
        key, choices = key[len("canary.") :], CANARY_KEYS
    found = difflib.get_close_matches(key, choices, n=1, cutoff=0.75)
    return f" (did you mean {found[0]!r}?)" if found else ""


def _json_key(field: str | None) -> str | None:
    return _KEYS.get(field, field) if field else field


def _json_message(exc: PolicyError) -> str:
    """Return the error with the attrs field name replaced by the document's key."""
    text = str(exc)
    if exc.key and text.startswith(exc.key + ":"):
        return _json_key(exc.key) + text[len(exc.key) :]  # type: ignore[operator]
    return text


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for every document: json.loads(..., parse_constant=...) would build one a call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def decode_document(text: str | bytes, *, source: str | None = None) -> Any:
    """Return the JSON value of a policy document; raise `PolicyError` if it is not JSON."""
    where = f"{source}: " if source else ""
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        if raw.startswith(b"\xef\xbb\xbf"):
            raise PolicyError(f"{where}malformed JSON: a byte-order mark before the document")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(
                f"{where}malformed JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
            ) from None
    elif text.startswith("\ufeff"):
        raise PolicyError(f"{where}malformed JSON: a byte-order mark before the document")
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise PolicyError(f"{where}malformed JSON: {exc}") from None
