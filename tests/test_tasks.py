"""tasks.py: the demo installs only what it needs, and needs only what it installs."""

from __future__ import annotations

import configparser
import importlib.util
import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def load_tasks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_installs_the_consul_extra_alone_in_a_venv_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = load_tasks()
    commands: list[list[str]] = []

    def create_venv(venv_dir: Path) -> Path:
        python = Path(tasks.python_in(venv_dir))
        python.parent.mkdir(parents=True)
        python.touch()
        commands.append(["create", str(venv_dir)])
        return python

    def run(cmd: list[Any], **kwargs: Any) -> None:
        commands.append([str(c) for c in cmd])

    monkeypatch.setattr(tasks, "DEMO_VENV", tmp_path / "demo")
    monkeypatch.setattr(tasks, "create_venv", create_venv)
    monkeypatch.setattr(tasks, "run", run)
    tasks.demo(["--fast"])
    python = str(tasks.python_in(tmp_path / "demo"))
    create, install, demo = commands
    assert create == ["create", str(tmp_path / "demo")]
    assert install[0] == python and install[-1] == f"{ROOT}[consul]"
    assert demo == [python, "examples/payments_client.py", "--fast"]
    commands.clear()
    tasks.demo([])  # set up once: the second run only runs the demo
    assert commands == [[python, "examples/payments_client.py"]]


def closure(requirements: list[str]) -> set[str]:
    """Return the distributions ``requirements`` install, with what they require in turn."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = metadata.distribution(req.name).metadata["Name"].lower()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            dep = Requirement(text)
            if dep.marker is None or dep.marker.evaluate({"extra": ""}):
                todo.append(dep)
    return seen


def test_the_demo_imports_nothing_the_consul_extra_does_not_install() -> None:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options"]["install_requires"] + cfg["options.extras_require"]["consul"]
    allowed = closure([r.strip() for r in lines.splitlines() if r.strip()])
    code = (
        "import json, runpy, sys; before = set(sys.modules); "
        "runpy.run_path('examples/payments_client.py', run_name='__main__'); "
        "print(json.dumps({m: getattr(sys.modules[m], '__file__', None) "
        "for m in sorted(set(sys.modules) - before)}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout.splitlines()[-1])
    # Who installed each module's file. A namespace package's __init__ is nobody's code:
    # urllib3 probes ``backports.zstd``, and the ``backports`` namespace that another
    # tool installed answers the probe.
    owner_of = {}
    for dist in metadata.distributions():
        for path in dist.files or ():
            if path.suffix in (".py", ".so", ".pyd"):
                owner_of[str(Path(str(dist.locate_file(path))).resolve())] = dist
    used = set()
    for module, file in files.items():
        if module.split(".")[0] in sys.stdlib_module_names or not file:
            continue
        if file.endswith("__init__.py") and "extend_path" in Path(file).read_text():
            continue
        dist = owner_of.get(str(Path(file).resolve()))
        if dist is not None:
            used.add(dist.metadata["Name"].lower())
    used.discard("consul-breaker")
    assert used, "the demo imports third-party modules (attrs, pybreaker, consul at least)"
    assert used <= allowed, f"the demo imports {sorted(used - allowed)}"
