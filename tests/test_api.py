"""The public surface: one front door, typed, with no engine types leaking out."""

from __future__ import annotations

import ast
import inspect
import pathlib
import re
import typing

import breaker
import breaker.coord
import breaker.testing

PACKAGE = pathlib.Path(breaker.__file__).parent


def public_names(module: object) -> set[str]:
    return {name for name in vars(module) if not name.startswith("_")} - {"annotations"}


def test_all_lists_exactly_the_public_names() -> None:
    lazy = {"ConsulCoord"}  # loaded on first access, so that import breaker stays light
    subpackages = {"coord", "integrations", "metrics", "testing"}  # present once imported
    exported = public_names(breaker) - subpackages | lazy
    assert set(breaker.__all__) == exported
    assert breaker.__all__ == sorted(breaker.__all__)
    assert (
        set(breaker.coord.__all__)
        == (
            public_names(breaker.coord)
            - {
                name
                for name in public_names(breaker.coord)
                if inspect.ismodule(getattr(breaker.coord, name))
            }
        )
        | lazy
    )
    assert breaker.ErrBreakerOpen is breaker.BreakerOpenError


def test_every_public_name_has_a_docstring() -> None:
    for module in (breaker, breaker.coord, breaker.testing):
        for name in module.__all__:
            obj = getattr(module, name)
            ours = getattr(obj, "__module__", "").startswith("breaker")  # not a typing alias
            if ours and (inspect.isclass(obj) or inspect.isfunction(obj)):
                assert obj.__doc__, f"{module.__name__}.{name} has no docstring"
                for attr, member in vars(obj).items():
                    if not attr.startswith("_") and (
                        inspect.isfunction(member) or isinstance(member, property)
                    ):
                        assert member.__doc__, f"{name}.{attr} has no docstring"


# Modules users import by name; every other module is private and starts with "_".
PUBLIC_MODULES = {"metrics.py", "testing/pytest_plugin.py", "__main__.py"}


def test_private_modules_start_with_an_underscore() -> None:
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        public = rel.as_posix() in PUBLIC_MODULES or rel.parts[0] == "integrations"
        if path.name == "__init__.py" or public:
            continue
        assert all(part.startswith("_") for part in rel.parts[-1:]), rel


def test_pybreaker_is_imported_by_exactly_one_module() -> None:
    importers = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] == "pybreaker" for n in names):
                importers.append(path.relative_to(PACKAGE).as_posix())
    assert importers == ["_engine/_machine.py"]


def test_no_engine_or_transport_types_in_public_signatures() -> None:
    forbidden = re.compile(r"(?<![\w.])(pybreaker|requests|urllib3|consul)\.")
    for module in (breaker, breaker.coord, breaker.testing):
        for name in module.__all__:
            obj = getattr(module, name)
            members = [obj]
            if inspect.isclass(obj):
                members += [
                    m for a, m in vars(obj).items() if not a.startswith("_") and callable(m)
                ]
                members += [m.fget for m in vars(obj).values() if isinstance(m, property)]
            for member in members:
                if not callable(member):
                    continue
                try:
                    hints = typing.get_type_hints(member)
                except Exception:
                    hints = getattr(member, "__annotations__", {})
                for hint in hints.values():
                    text = repr(hint)
                    assert not forbidden.search(text), f"{name}: {text}"


def test_py_typed_ships() -> None:
    assert (PACKAGE / "py.typed").exists()
