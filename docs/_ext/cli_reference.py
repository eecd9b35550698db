"""``.. breaker-cli::``: the CLI reference, written from the ``breaker`` command's own parser.

Nothing here is copied from ``--help``: each build asks ``build_parser()`` for the commands,
their arguments and their help, so a new command or option shows up by itself. Each
command gets a section (label ``cli-<command>``) and its options ``.. option::`` entries,
so prose links to them with ``:ref:`cli-put``` and ``:option:`breaker put --create```.
Option groups that several commands share (the Consul connection options) are written
once, in a section of their own.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

_DEFAULT_GROUPS = ("positional arguments", "options", "optional arguments")
_INLINE = re.compile(r"`([^`]+)`")
_OPTION = re.compile(r"(?<![\w`-])(--?[a-z][\w-]*)")


def rst_text(text: str) -> str:
    """Return help text as reStructuredText: `code` and --options literal, the rest as written."""
    parts = _INLINE.split(_OPTION.sub(r"`\1`", " ".join(text.split())))
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"``{part}``")
        else:
            out.append(re.sub(r"([\\*`|_\[\]<>])", r"\\\1", part))
    return "".join(out)


def help_of(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """Return ``action``'s help as ``--help`` prints it, ``%(default)s`` and all expanded."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return parser._get_formatter()._expand_help(action)


def invocation(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """Return how an argument is written: ``NAME``, ``--path PREFIX``, ``--ssl, --no-ssl``."""
    formatter = parser._get_formatter()
    if not action.option_strings:
        return formatter._metavar_formatter(action, action.dest.upper())(1)[0]
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    args = formatter._format_args(action, action.dest.upper())
    return ", ".join(f"{option} {args}" for option in action.option_strings)


def usage_part(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """Return ``action`` as a usage line shows it (``[--create]``, ``--for DURATION``)."""
    text = invocation(parser, action).split(", ")[0]
    if action.option_strings and not action.required:
        return f"[{text}]"
    return text


def commands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """Return each command of ``parser``: its name, its one-line help, its parser."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found.append((name, helps.get(name, ""), sub))
    return found


def shown(group: argparse._ArgumentGroup) -> list[argparse.Action]:
    """Return the arguments of ``group`` that ``--help`` shows (not ``-h`` itself)."""
    return [
        action
        for action in group._group_actions
        if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)
    ]


def options(
    parser: argparse.ArgumentParser, program: str, actions: Iterable[argparse.Action]
) -> list[str]:
    """Return ``.. option::`` entries for ``actions`` under ``.. program:: program``."""
    lines = [f".. program:: {program}", ""]
    for action in actions:
        lines += [f".. option:: {invocation(parser, action)}", ""]
        text = help_of(parser, action)
        if action.required and action.option_strings:
            text += " (required)"
        if text:
            lines += [f"   {rst_text(text)}", ""]
    return lines


def section(title: str, char: str, label: str | None = None) -> list[str]:
    head = [f".. _{label}:", ""] if label else []
    return [*head, title, char * len(title), ""]


def reference(parser: argparse.ArgumentParser) -> list[str]:
    """Return the whole CLI reference as reStructuredText lines."""
    prog = parser.prog
    lines = [f"``{prog} COMMAND [OPTIONS]``: {rst_text(parser.description or '')}", ""]
    epilog = parser.epilog or ""
    if epilog:
        lines += [rst_text(epilog[:1].upper() + epilog[1:]), ""]
    top = [
        a
        for g in parser._action_groups
        for a in shown(g)
        if not isinstance(a, argparse._SubParsersAction)
    ]
    if top:
        lines += options(parser, prog, top)
    shared: dict[str, tuple[argparse._ArgumentGroup, argparse.ArgumentParser, list[str]]] = {}
    for name, summary, sub in commands(parser):
        lines += section(f"{prog} {name}", "-", f"cli-{name}")
        lines += [rst_text(sub.description or summary), ""]
        own = [g for g in sub._action_groups if g.title in _DEFAULT_GROUPS]
        others = [g for g in sub._action_groups if g.title not in _DEFAULT_GROUPS and shown(g)]
        actions = [a for g in own for a in shown(g)]
        usage = [usage_part(sub, a) for a in actions if a.option_strings]
        usage += [f"[{g.title.split(' ')[0].upper()} OPTIONS]" for g in others if g.title]
        usage += [usage_part(sub, a) for a in actions if not a.option_strings]
        lines += [".. code-block:: text", "", f"   {prog} {name} {' '.join(usage)}".rstrip(), ""]
        lines += options(sub, f"{prog} {name}", actions)
        for group in others:
            title = group.title or ""
            shared.setdefault(title, (group, sub, []))[2].append(name)
            lines += [f"And the :ref:`{label(title)}`.", ""]
    for title, (group, sub, users) in shared.items():
        lines += section(title.split(" (")[0] + " options", "-", label(title))
        why = title.split(" (", 1)[1].rstrip(")") if " (" in title else ""
        takers = ", ".join(f":ref:`{u} <cli-{u}>`" for u in users)
        lines += [f"Taken by {takers}. {rst_text(why[:1].upper() + why[1:])}.", ""]
        lines += options(sub, f"{prog} {title.split(' ')[0].lower()}-options", shown(group))
    return lines


def label(title: str) -> str:
    """Return the label of the section of a shared option group."""
    return "cli-" + title.split(" ")[0].lower() + "-options"


class CLIReference(SphinxDirective):
    """``.. breaker-cli::``: every command of ``breaker``, from ``build_parser()``."""

    def run(self) -> list[nodes.Node]:
        from breaker._cli._app import build_parser

        node = nodes.section()
        node.document = self.state.document
        lines = StringList(reference(build_parser()), source="breaker._cli build_parser()")
        nested_parse_with_titles(self.state, lines, node)
        return node.children
