"""``.. policy-schema::``: the policy document reference, written from breaker/policy.schema.json.

Each build reads the schema the package ships (what ``breaker schema`` prints), so a key
added there shows up here with its type, bounds, default and description. Each key is a
``.. policy-key::`` entry, so prose links to it with ``:policy-key:`failureThreshold```.
A shape this renderer does not know is shown as its JSON Schema, never left out.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Mapping
from typing import Any

from cli_reference import rst_text
from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

Schema = Mapping[str, Any]

_DEFS = {  # a value format of $defs: how a key's type names it, and its section's title
    "duration": ("duration", "Durations"),
    "wait": ("duration, 0s allowed", "Durations that may be zero"),
    "timestamp": ("RFC 3339 time", "Times"),
}


def load_schema() -> Schema:
    """Return the JSON Schema of a policy document, as the package ships it."""
    text = importlib.resources.files("breaker").joinpath("policy.schema.json").read_text("utf-8")
    schema: Schema = json.loads(text)
    return schema


def number(value: float) -> str:
    """Return ``value`` as a reader wants it: 1,000,000 rather than 1000000."""
    return f"{value:,}" if isinstance(value, int) else repr(value)


def shape(spec: Schema) -> str | None:
    """Return the type of a schema fragment in words, or None for a shape not known here."""
    if "$ref" in spec:
        name = str(spec["$ref"]).rsplit("/", 1)[-1]
        return f":ref:`{_DEFS[name][0]} <policy-{name}>`" if name in _DEFS else None
    if "anyOf" in spec:
        parts = [shape(part) for part in spec["anyOf"]]
        return None if None in parts else " or ".join(str(p) for p in parts)
    if "enum" in spec:
        return "one of " + ", ".join(f"``{json.dumps(v)}``" for v in spec["enum"])
    types = spec.get("type")
    if types == "null":
        return "``null``"
    if types is None:
        return None
    kinds = [types] if isinstance(types, str) else list(types)
    words = [k for k in kinds if k != "null"]
    if len(words) != 1 or words[0] not in ("integer", "number", "string", "boolean"):
        return None
    text = words[0]
    low = spec.get("minimum", spec.get("exclusiveMinimum"))
    high = spec.get("maximum", spec.get("exclusiveMaximum"))
    if low is not None and high is not None and "exclusiveMinimum" not in spec:
        text += f", {number(low)} to {number(high)}"
    elif low is not None and high is not None:
        text += f", more than {number(low)} and at most {number(high)}"
    elif low is not None:
        text += f", at least {number(low)}"
    if "null" in kinds:
        text += ", or ``null``"
    return text


def key_entry(key: str, spec: Schema) -> list[str]:
    """Return the ``.. policy-key::`` entry of one key."""
    lines = [f".. policy-key:: {key}", ""]
    kind = shape(spec)
    facts = [kind] if kind else []
    if "default" in spec:
        facts.append(f"default ``{json.dumps(spec['default'])}``")
    if facts:
        lines += ["   " + "; ".join(facts), ""]
    lines += ["   " + rst_text(str(spec.get("description", ""))), ""]
    if kind is None:
        fragment = {k: v for k, v in spec.items() if k not in ("description", "default")}
        lines += ["   Its schema::", ""]
        lines += ["      " + line for line in json.dumps(fragment, indent=2).splitlines()]
        lines.append("")
    return lines


def reference(schema: Schema) -> list[str]:
    """Return the policy reference as reStructuredText lines."""
    lines = [rst_text(str(schema.get("description", ""))), ""]
    lines += ["Keys", "----", ""]
    for key, spec in schema.get("properties", {}).items():
        lines += key_entry(key, spec)
    rules = [rule for rule in schema.get("allOf", []) if "description" in rule]
    needs = schema.get("dependentRequired", {})
    if rules or needs:
        lines += ["Rules between keys", "------------------", ""]
        for key, others in needs.items():
            wanted = " and ".join(f":policy-key:`{o}`" for o in others)
            lines += [f"- :policy-key:`{key}` needs {wanted} in the same document.", ""]
        for rule in rules:
            lines += [f"- {rst_text(rule['description'])}", ""]
    defs = schema.get("$defs", {})
    if defs:
        lines += ["Value formats", "-------------", ""]
        for name, spec in defs.items():
            title = _DEFS[name][1] if name in _DEFS else name
            lines += [f".. _policy-{name}:", "", title]
            lines += [f"   {rst_text(str(spec.get('description', '')))}", ""]
    return lines


class PolicyReference(SphinxDirective):
    """``.. policy-schema::``: every key of a policy document, from the shipped schema."""

    def run(self) -> list[nodes.Node]:
        node = nodes.section()
        node.document = self.state.document
        lines = StringList(reference(load_schema()), source="breaker/policy.schema.json")
        nested_parse_with_titles(self.state, lines, node)
        return node.children
