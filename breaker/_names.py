"""Breaker names and the keys of their documents: one rule, checked where a name first appears.

A breaker's policy document is ``<policies_path><key>.json``, where ``key`` is the name
without one leading ``/`` (a gRPC method ``/pkg.Service/Method`` reads
``pkg.Service/Method.json``). The rule keeps every name a key that Consul stores and an
HTTP layer leaves alone, and keeps keys that start with ``_`` for the service's own
documents (``_default.json``), so that every breaker can have a document of its own.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = [
    "DEFAULT_DOCUMENT",
    "RULE",
    "SUFFIX",
    "check_name",
    "key_of",
    "name_of",
    "policy_name",
    "problem",
]

SUFFIX = ".json"
"""What ends the key of every policy document."""
DEFAULT_DOCUMENT = "_default"
"""The name whose document (``<policies_path>_default.json``) is the service default."""
RULE = (
    "a breaker name is one or more parts separated by '/' (one leading '/' is allowed, as "
    "in gRPC method names), none of them empty, '.' or '..', with no control character, no "
    "leading or trailing space, and no leading '_' (kept for the service's own documents, "
    "such as '_default.json')"
)
"""The rule every breaker name follows, as error messages and the README state it."""


def policy_name(name: str) -> str:
    """Return the name whose ``.json`` key holds the policy of breaker ``name``."""
    return name[1:] if name.startswith("/") else name


# Names that plainly follow the rule, found in one match (a provider reads thousands of keys).
_PLAIN = re.compile(r"[^\s_/%\x00-\x1f\x7f][^/%\x00-\x1f\x7f]*(?:/[^/%\x00-\x1f\x7f]+)*")


def problem(name: object) -> str | None:
    """Return why ``name`` cannot name a breaker, or None if it can."""
    if not isinstance(name, str):
        return f"it is {type(name).__name__}, not a string"
    key = policy_name(name)
    if _PLAIN.fullmatch(key) and not key[-1].isspace() and "." not in key:
        return None
    if not key:
        return "it is empty"
    if key != key.strip():
        return "it has a leading or trailing space"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        return "it has a control character"
    if key.startswith("_"):
        return "it starts with '_'"
    parts = key.split("/")
    if "" in parts:
        return "it has an empty part ('//', or '/' at an end)"
    if _traverses(parts) or ("%" in key and _traverses(unquote(key).split("/"))):
        return "it has a '.' or '..' part, which an HTTP layer would resolve away"
    return None


def _traverses(parts: list[str]) -> bool:
    return any(part in (".", "..") for part in parts)


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it can name a breaker; raise ValueError saying the rule otherwise.

    ``what`` (the caller: "get_breaker", "circuit", "NAME") starts the message.
    """
    why = problem(name)
    if why is not None:
        raise ValueError(f"{what}: {name!r} cannot name a breaker ({why}): {RULE}")
    return name  # type: ignore[return-value]


def key_of(prefix: str, name: str) -> str:
    """Return the coord key of the document of ``name`` (a breaker or ``_default``)."""
    return prefix + policy_name(name) + SUFFIX


def name_of(prefix: str, key: str) -> str | None:
    """Return the name whose document ``key`` is (``_default`` included), or None.

    None for a key that is no policy document: outside ``prefix``, not ``.json``, or
    named against the rule (a provider ignores those keys).
    """
    if not key.startswith(prefix) or not key.endswith(SUFFIX):
        return None
    name = key[len(prefix) : -len(SUFFIX)]
    if name == DEFAULT_DOCUMENT or (name and not name.startswith("/") and problem(name) is None):
        return name
    return None
