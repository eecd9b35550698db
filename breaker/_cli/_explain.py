"""``breaker explain NAME``: what a breaker runs on, where each key comes from, and why."""

from __future__ import annotations

import argparse
from typing import Any

from breaker._cli._app import EXIT_INVALID, EXIT_OK, Commands, Context
from breaker._cli._client import Client, checked_name, layered
from breaker._cli._output import compact, dump, seconds_text
from breaker._layers import BUILT_IN
from breaker._names import DEFAULT_DOCUMENT

_BUILT_IN_NOTE = "the code's defaults (Policy()); a service's own default_policy may differ"


def register(commands: Commands) -> None:
    """Add this group's commands."""
    sub = commands.add(
        "explain",
        cmd_explain,
        "show the policy NAME runs on, where each key comes from, and which layers apply",
    )
    sub.add_argument(
        "name", metavar="NAME", help="breaker name, or _default for breakers with no document"
    )
    sub.add_argument(
        "--instance",
        metavar="ID",
        help="explain it as instance ID runs it (a member of a canary runs its candidate)",
    )


def cmd_explain(args: argparse.Namespace, ctx: Context) -> int:
    """Explain the policy of one breaker, layer by layer; exit 1 if one of its layers is invalid."""
    name = checked_name(args.name)
    with Client(args, ctx) as client:
        layers = layered(client.snapshot(), client.prefix, ctx, args.instance)
    found = layers.explain(name)
    invalid = any(layer["state"] == "invalid" for layer in found["layers"])
    if args.json:
        ctx.out(dump(found))
    else:
        for line in explain_lines(found):
            ctx.out(line)
    return EXIT_INVALID if invalid else EXIT_OK


def explain_lines(found: dict[str, Any]) -> list[str]:
    """Return an explanation (`Layers.explain`) as lines for people."""
    if found["name"] == DEFAULT_DOCUMENT:
        lines = [f"breakers without a document ({found['key']})"]
    else:
        lines = [f"{found['name']} ({found['key']})"]
    mode = found["mode"]
    text = mode["mode"]
    if mode.get("ended"):
        text += f" ({mode['ended']} ended {mode['until']})"
    elif mode["until"] is not None:
        text += f" until {mode['until']} ({seconds_text(mode['ends_in'])} from now)"
    lines.append(f"mode:   {text}, set by {mode['set_by']}")
    lines.append("policy:")
    width = max(len(f["key"]) for f in found["fields"])
    values = [compact(f["value"]) for f in found["fields"]]
    value_width = max(len(v) for v in values)
    for field, value in zip(found["fields"], values, strict=True):
        lines.append(f"  {field['key']:<{width}}  {value:<{value_width}}  {field['from']}")
    lines.append("layers, bottom to top:")
    width = max(len(layer["layer"]) for layer in found["layers"])
    for layer in found["layers"]:
        label = f"  {layer['layer']:<{width}}  "
        if layer["layer"] == BUILT_IN:
            lines.append(f"{label}applies  {_BUILT_IN_NOTE}")
        elif layer["state"] == "absent":
            lines.append(f"{label}absent")
        elif layer["state"] == "applies":
            lines.append(f"{label}applies  {compact(layer['document'])}")
        else:
            lines.append(f"{label}INVALID  {compact(layer['document'])}")
            for problem in layer["problems"]:
                lines.append(f"  {'':<{width}}  {problem['message']}")
            lines.append(f"  {'':<{width}}  a service starting now: {layer['kept']}")
        if layer.get("unknown_keys"):
            unknown = ", ".join(repr(k) for k in layer["unknown_keys"])
            lines.append(f"  {'':<{width}}  ignored unknown keys: {unknown}")
    canary = found.get("canary")
    if canary is not None:
        lines.extend(canary_lines(canary))
    return lines


def canary_lines(canary: dict[str, Any]) -> list[str]:
    """Return the canary part of an explanation, and where this instance stands in it."""
    rule = ", abortIfOpen" if canary["abortIfOpen"] else ""
    percent = canary["percent"]
    percent = int(percent) if float(percent).is_integer() else percent
    lines = [
        f"canary {canary['id']}: {percent}% of instances{rule}",
        f"  candidate  {compact(canary['policy'])}",
    ]
    instance = canary["instance"]
    if not canary["applies"]:
        where = "runs nowhere: it does not fit on the document (above)"
    elif instance is None:
        where = "members run it; --instance ID says whether one is"
    elif not canary["member"]:
        where = f"{instance} is not a member: it runs the document's policy"
    elif canary["aborted"]:
        where = f"{instance} is a member that went back to the document's policy (abortIfOpen)"
    else:
        where = f"{instance} is a member: it runs the candidate (keys from canary above)"
        if canary["abortIfOpen"]:
            where += ", unless it tripped and went back (`breaker canary status` tells)"
    lines.append(f"  {where}")
    return lines
