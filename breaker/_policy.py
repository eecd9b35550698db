"""Policy: the three knobs of a breaker, validated on construction, and its JSON form."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import attrs

from breaker._duration import format_go_duration, parse_go_duration
from breaker._exceptions import PolicyError

_log = logging.getLogger("breaker")

_NS_PER_S = 1_000_000_000
_JSON_KEYS = {
    "failureThreshold": "failure_threshold",
    "successThreshold": "success_threshold",
    "openStateTimeout": "open_state_timeout",
}


def _threshold(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"{name}: expected an integer >= 1, got {_describe(value)}", key=name)
    if value < 1:
        raise PolicyError(f"{name}: expected an integer >= 1, got {value}", key=name)
    return value


def _seconds(name: str, value: object) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(
            f"{name}: expected a number of seconds > 0, got {_describe(value)}", key=name
        )
    if not math.isfinite(value) or value <= 0:
        raise PolicyError(f"{name}: expected a number of seconds > 0, got {value}", key=name)
    # Kept at nanosecond resolution, like Go's time.Duration, so the JSON form round-trips.
    ns = round(value * _NS_PER_S)
    if ns < 1:
        raise PolicyError(f"{name}: {value} is shorter than a nanosecond", key=name)
    return ns / _NS_PER_S


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return repr(value)


def _check_failure_threshold(_: object, __: object, value: object) -> None:
    _threshold("failure_threshold", value)


def _check_success_threshold(_: object, __: object, value: object) -> None:
    _threshold("success_threshold", value)


def _convert_timeout(value: float | timedelta) -> float:
    return _seconds("open_state_timeout", value)


@attrs.frozen
class Policy:
    """How a breaker trips and recovers; immutable, so a new policy is a new object.

    ``failure_threshold`` consecutive failures open the breaker; after
    ``open_state_timeout`` seconds it half-opens and admits up to ``success_threshold``
    trial calls; that many consecutive successes close it again.
    """

    failure_threshold: int = attrs.field(default=5, validator=_check_failure_threshold)
    success_threshold: int = attrs.field(default=1, validator=_check_success_threshold)
    open_state_timeout: float = attrs.field(default=60.0, converter=_convert_timeout)

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
        if not isinstance(data, Mapping):
            raise PolicyError(f"{where}a policy must be a JSON object, got {_describe(data)}")
        changes: dict[str, Any] = {}
        try:
            for key, value in data.items():
                if key == "openStateTimeout":
                    if isinstance(value, str):
                        try:
                            value = parse_go_duration(value) / _NS_PER_S
                        except ValueError as exc:
                            raise PolicyError(f"{key}: {exc}", key=key) from None
                    changes["open_state_timeout"] = _seconds(key, value)
                elif key in _JSON_KEYS:
                    changes[_JSON_KEYS[key]] = _threshold(key, value)
                else:
                    _log.warning("%signoring unknown policy key %r", where, key)
        except PolicyError as exc:
            raise PolicyError(f"{where}{exc}", key=exc.key) from None
        return attrs.evolve(base if base is not None else cls(), **changes)

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        *,
        base: Policy | None = None,
        source: str | None = None,
    ) -> Policy:
        """Return the policy a JSON document describes (see `from_dict`)."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            where = f"{source}: " if source else ""
            raise PolicyError(f"{where}malformed JSON: {exc}") from None
        return cls.from_dict(data, base=base, source=source)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form, with the timeout as a Go duration string ("1m30s")."""
        return {
            "failureThreshold": self.failure_threshold,
            "successThreshold": self.success_threshold,
            "openStateTimeout": format_go_duration(round(self.open_state_timeout * _NS_PER_S)),
        }
