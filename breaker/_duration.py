"""Go duration strings ("1m30s", "250ms"), the way Go's time package reads and writes them."""

from __future__ import annotations

import re

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
# ASCII digits only, as Go reads them (\d would also take fullwidth and other digits).
_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([a-z\u00b5\u03bc]+)")
MAX_NS = 2**63 - 1
"""Go's largest time.Duration, in nanoseconds (about 292 years)."""


def parse_go_duration(text: str) -> int:
    """Return the duration ``text`` spells, in nanoseconds; raise ValueError if it is not one."""
    s = text
    sign = 1
    if s and s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        number, unit = m.groups()
        scale = _UNIT_NS.get(unit)
        if scale is None:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        whole, _, frac = number.partition(".")
        total += int(whole or "0") * scale
        if frac:
            # Exact integer arithmetic, as Go does, so "1.1s" is 1100000000ns, not 1099999999.
            total += int(frac) * scale // 10 ** len(frac)
        pos = m.end()
    if total > MAX_NS + (0 if sign > 0 else 1):
        raise ValueError(f"invalid duration {text!r}: out of range")  # Go's int64 nanoseconds
    return sign * total


def format_go_duration(ns: int) -> str:
    """Return ``ns`` nanoseconds the way Go's Duration.String writes them ("1m30s", "250ms")."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, scale in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if ns >= scale:
                return sign + _fixed(ns, scale) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _fixed(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _fixed(value: int, scale: int) -> str:
    whole, frac = divmod(value, scale)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(scale)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
