"""What Go's standard library does with the bytes a Consul agent receives and sends.

Consul is a Go program: how a path is unescaped and cleaned, which characters count as
printable or as space, how a query string is split, how JSON and quoted strings look, all
come from ``net/url``, ``net/http``, ``unicode``, ``strconv`` and ``encoding/json``. Each helper
here follows one of those functions, named in its docstring.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote_plus, unquote_to_bytes

_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
"""The characters Go's ``unicode.IsSpace`` accepts (what ``strings.TrimSpace`` trims)."""


def quote(text: str) -> str:
    """Quote ``text`` the way Go's ``%q`` does, so error messages read like Consul's."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def parse_uint(text: str) -> int:
    """Parse a uint64 as ``strconv.ParseUint(text, 10, 64)``; raise ValueError with its text."""
    if not text or any(char not in _DIGITS for char in text):
        raise ValueError(f"strconv.ParseUint: parsing {quote(text)}: invalid syntax")
    value = int(text)
    if value >= 2**64:
        raise ValueError(f"strconv.ParseUint: parsing {quote(text)}: value out of range")
    return value


def to_json(value: object, *, pretty: bool = False) -> bytes:
    """Encode ``value`` as ``encoding/json`` does: compact, with HTML characters escaped."""
    if pretty:
        text = json.dumps(value, indent=4, ensure_ascii=False) + "\n"
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return text.encode("utf-8")


def json_kind(value: object) -> str:
    """Name a decoded JSON value's kind as ``encoding/json``'s UnmarshalTypeError does."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string" if isinstance(value, str) else "null"


def has_control_byte(target: str) -> bool:
    """Say whether ``net/url`` refuses the request target for a control byte (CTL or DEL)."""
    return any(ord(char) < 0x20 or ord(char) == 0x7F for char in target)


def has_bad_escape(raw_path: str) -> bool:
    """Say whether ``net/url`` refuses to unescape the path (``%`` not followed by 2 hex)."""
    return _BAD_ESCAPE.search(raw_path) is not None


def unescape_path(raw_path: str) -> str:
    """Return ``URL.Path`` for an escaped request path (which must have no bad escapes).

    The request line arrives as Latin-1 text, so raw non-ASCII bytes are recovered first.
    Bytes that are not UTF-8 become U+FFFD, which is what Go yields when it reads them.
    """
    return unquote_to_bytes(raw_path.encode("latin-1")).decode("utf-8", errors="replace")


def is_printable(text: str) -> bool:
    """Say whether every character passes ``unicode.IsPrint`` (cleanhttp's path check)."""
    # Both Go and Python call printable exactly the categories L, M, N, P, S and U+0020.
    return text.isprintable()


def clean_path(path: str) -> str:
    """Return the path Go's ServeMux redirects to: no empty, ``.`` or ``..`` segments."""
    if not path.startswith("/"):
        path = "/" + path
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    cleaned = "/" + "/".join(segments)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def _query_unescape(text: str) -> str:
    """Unescape one query component as ``url.QueryUnescape``; raise ValueError on a bad ``%``."""
    for i, char in enumerate(text):
        if char == "%" and not (i + 2 < len(text) and text[i + 1] in _HEX and text[i + 2] in _HEX):
            raise ValueError(f"invalid URL escape {quote(text[i : i + 3])}")
    raw = text.replace("+", " ").encode("latin-1", errors="replace")
    return unquote_to_bytes(raw).decode("utf-8", errors="replace")


def parse_query(raw_query: str, *, strict: bool = True) -> list[tuple[str, str]]:
    """Split a query string as ``url.ParseQuery``; raise ValueError as it fails when ``strict``.

    Go refuses ``;`` separators and bad ``%`` escapes (the pair is skipped and an error is
    returned); with ``strict=False`` the skipped pairs are simply left out, which is what
    ``URL.Query()`` gives a handler.
    """
    pairs: list[tuple[str, str]] = []
    error: ValueError | None = None
    for part in raw_query.split("&"):
        if ";" in part:
            error = error or ValueError("invalid semicolon separator in query")
            continue
        if not part:
            continue
        name, _, value = part.partition("=")
        try:
            pairs.append((_query_unescape(name), _query_unescape(value)))
        except ValueError as exc:
            error = error or exc
    if error is not None and strict:
        raise error
    return pairs


class Values:
    """Query parameters with ``url.Values`` semantics: presence, first value, ``Encode``."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def has(self, name: str) -> bool:
        """Say whether ``name`` was given at all (``?recurse`` counts, empty as it is)."""
        return name in self._values

    def get(self, name: str) -> str:
        """Return the first value of ``name``, or "" (as ``Values.Get``)."""
        values = self._values.get(name)
        return values[0] if values else ""

    def first_values(self) -> dict[str, str]:
        """Return each name with its first value."""
        return {name: values[0] for name, values in self._values.items()}

    def encode(self) -> str:
        """Return the parameters as ``Values.Encode`` writes them: sorted by name, escaped."""
        return "&".join(
            f"{quote_plus(name)}={quote_plus(value)}"
            for name in sorted(self._values)
            for value in self._values[name]
        )


def accepts_gzip(header: str) -> bool:
    """Say whether an ``Accept-Encoding`` value lets gziphandler compress the answer.

    As NYTimes/gziphandler's ``parseEncodings``: codings split on ``,``, a ``q=`` parameter
    read as a float clamped to [0, 1] (each later parameter resets it to 1), a coding whose
    ``q`` does not parse is dropped, and only the name ``gzip`` (any case) counts.
    """
    accepted: dict[str, float] = {}
    for item in header.split(","):
        coding = ""
        qvalue = 1.0
        valid = True
        for n, part in enumerate(item.split(";")):
            part = part.strip()
            qvalue = 1.0
            if n == 0:
                coding = part.lower()
            elif part.startswith("q="):
                try:
                    qvalue = min(max(float(part[2:]), 0.0), 1.0)
                except ValueError:
                    valid = False
        if coding and valid:
            accepted[coding] = qvalue
    return accepted.get("gzip", 0.0) > 0.0
