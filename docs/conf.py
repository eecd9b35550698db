"""Sphinx configuration: tutorial, how-to guides, the operators' guide, reference, explanation.

Built by ``python3 tasks.py docs`` with warnings as errors. The references that code can
write are written at build time by the extensions in ``_ext/``: the CLI's from its
parser, the policy keys' from the shipped JSON Schema, the metrics' from a scrape; the
API reference comes from the docstrings, and a check below warns about any public module
or name that it leaves out. ``tests/test_docs_site.py`` runs every page's examples.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import typing
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # document this checkout, whatever is installed
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

from cli_reference import CLIReference  # noqa: E402
from metrics_reference import MetricsTable  # noqa: E402
from policy_reference import PolicyReference  # noqa: E402

import breaker  # noqa: E402

project = "breaker"
author = "the breaker authors"
copyright = "the breaker authors"
release = version = breaker.__version__

extensions = ["sphinx.ext.autodoc"]
root_doc = "index"
exclude_patterns = ["_build", "_ext"]
html_theme = "furo"
html_title = f"breaker {release}"
html_static_path: list[str] = []
pygments_style = "default"

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False


_log = logging.getLogger(__name__)
_expected: dict[str, list[str]] = {}  # module -> the public names its section must document
_automodule: dict[str, list[str]] = {}  # module -> the names its automodule documents
_current: list[str] = []  # the module whose section autodoc is writing
_alias_docs: dict[str, list[str]] = {}  # "breaker.coord.Snapshot" -> its docstring's lines


def alias_doc(value: object) -> list[str]:
    """Return the docstring written under the assignment that defined the alias ``value``."""
    for modname, mod in list(sys.modules.items()):
        if modname.split(".")[0] != "breaker" or mod is None:
            continue
        for attr, obj in vars(mod).items():
            if obj is value:
                attr_docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
                docs: list[str] = list(attr_docs.get(("", attr), []))
                if docs:
                    return docs
    return []


class APIModule(SphinxDirective):
    """``.. api-module:: breaker.coord``: a section titled with the module, then its autodoc.

    Names that a module re-exports from ``breaker`` itself are documented there only.
    """

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        module = importlib.import_module(name)
        shown_at_top = [
            member
            for member in getattr(module, "__all__", [])
            if name != "breaker" and getattr(breaker, member, None) is getattr(module, member)
        ]
        public = [m for m in getattr(module, "__all__", []) if m not in shown_at_top]
        _expected[name] = public
        # automodule passes over type aliases (Snapshot = Mapping[str, bytes]); autodata doesn't.
        aliases = [m for m in public if typing.get_origin(getattr(module, m)) is not None]
        _automodule[name] = [m for m in public if m not in aliases]
        lines = [name, "-" * len(name), "", f".. automodule:: {name}"]
        if shown_at_top or aliases:
            lines.append(f"   :exclude-members: {', '.join(shown_at_top + aliases)}")
        lines += ["", *(f".. autodata:: {name}.{m}" for m in aliases)]
        _alias_docs.update({f"{name}.{m}": alias_doc(getattr(module, m)) for m in aliases})
        if shown_at_top:
            links = ", ".join(f":py:obj:`breaker.{m}`" for m in shown_at_top)
            lines += ["", f"{name} also exports {links}, documented under breaker above."]
        node = nodes.section()
        node.document = self.state.document
        _current[:] = [name]
        nested_parse_with_titles(self.state, StringList(lines, source=name), node)
        _current.clear()
        return node.children


def public_modules(name: str = "breaker") -> list[str]:
    """Return ``name`` and every module under it whose dotted name has no ``_`` part."""
    found = [name]
    module = importlib.import_module(name)
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if not info.name.startswith("_"):
            child = f"{name}.{info.name}"
            found += public_modules(child) if info.ispkg else [child]
    return found


def check_every_public_name(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn (an error under -W) about a name in ``__all__`` that the reference left out.

    autodoc silently passes over a name that ``dir(module)`` does not list: a lazily
    imported name needs the module's ``__dir__`` to list it.
    """
    documented = getattr(env.get_domain("py"), "objects", {})
    for module in public_modules():
        if module not in _expected:
            _log.warning("%s is a public module but has no api-module in the docs", module)
    for module, names in _expected.items():
        for name in names:
            if f"{module}.{name}" not in documented:
                _log.warning(
                    "%s.%s is public (in __all__) but not in the API reference: "
                    "is it missing from dir(%s)?",
                    module,
                    name,
                    module,
                )


def keep_public_names(
    app: Sphinx, what: str, name: str, obj: object, skip: bool, options: object
) -> bool | None:
    """Document every name in a module's ``__all__``, one without a docstring too."""
    if what == "module" and _current and name in _automodule[_current[0]]:
        return False
    return None


def alias_docstring(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Give a type alias its own docstring, not the one of the class it is an alias of."""
    if what == "data" and name in _alias_docs:
        lines[:] = _alias_docs[name]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("api-module", APIModule)
    app.add_directive("breaker-cli", CLIReference)
    app.add_directive("policy-schema", PolicyReference)
    app.add_directive("breaker-metrics", MetricsTable)
    app.add_object_type(
        "policy-key", "policy-key", objname="policy key", indextemplate="pair: %s; policy key"
    )
    app.connect("autodoc-skip-member", keep_public_names)
    app.connect("autodoc-process-docstring", alias_docstring)
    app.connect("env-check-consistency", check_every_public_name)
    return {"parallel_read_safe": False}
