"""Lint, typing and tests on every Python 3.10-3.13 found, the docs on the oldest and newest, and
the tests on the oldest and the newest pybreaker allowed: ``python3 tasks.py pythons`` (or
``nox``; ``nox -l`` lists the sessions)."""

from __future__ import annotations

import configparser
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
VERSIONS = ("3.10", "3.11", "3.12", "3.13")

nox.options.error_on_missing_interpreters = False


def interpreter(version: str) -> str | None:
    """Return a runnable interpreter for ``version``: PATH first, then pyenv's versions."""
    found = shutil.which(f"python{version}")
    if found and subprocess.call([found, "-c", ""], stderr=subprocess.DEVNULL) == 0:
        return found
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python"))
    return candidates[-1] if candidates else None


def _find_pythons() -> list[str]:
    """Return the versions found, putting pyenv's version folders on PATH so nox finds them."""
    found = []
    for version in VERSIONS:
        path = interpreter(version)
        if path is None:
            continue
        found.append(version)
        folder = os.path.dirname(path)
        if shutil.which(f"python{version}") != os.path.join(folder, f"python{version}"):
            os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")
    return found


PYTHONS = _find_pythons() or [VERSIONS[0]]
OLDEST, NEWEST = PYTHONS[0], PYTHONS[-1]


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    return cfg


def floors() -> list[str]:
    """Return every core dependency pinned to its lower bound ("attrs>=22.2" -> "attrs==22.2")."""
    pins = []
    for line in _setup_cfg()["options"]["install_requires"].split("\n"):
        match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*.*>=\s*([^,\s]+)", line)
        if match:
            pins.append(f"{match.group(1)}=={match.group(2)}")
    return pins


def extra(name: str) -> list[str]:
    """Return the requirements of the extra ``name`` in setup.cfg."""
    lines = _setup_cfg()["options.extras_require"][name].split("\n")
    return [line.strip() for line in lines if line.strip()]


@nox.session(python=NEWEST)
def lint(session: nox.Session) -> None:
    """Run ruff's checks and its format check."""
    session.install(*(r for r in extra("lint") if r.startswith("ruff")))
    paths = ["breaker", "tests", "examples", "benchmarks", "docs", "tasks.py", "noxfile.py"]
    paths = [p for p in paths if (ROOT / p).exists()]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session(python=PYTHONS)
def typing(session: nox.Session) -> None:
    """Run mypy --strict on breaker/ and tests/typing/ as this Python sees them."""
    session.install("-e", ".[consul,test,lint]")
    mypy = ["mypy", "--strict", "--python-version", str(session.python)]
    session.run(*mypy, "breaker")
    if (ROOT / "tests" / "typing").is_dir():
        session.run(*mypy, "tests/typing")


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (the benchmarks' smoke run included: bench extra)."""
    session.install("-e", ".[consul,test,bench]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=sorted({OLDEST, NEWEST}))
def docs(session: nox.Session) -> None:
    """Build the docs with -W on the oldest and newest Python (their Sphinx releases differ)."""
    session.install("-e", ".[consul,docs]")
    out = session.create_tmp()
    session.run("python", "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "docs", out)


@nox.session(python=OLDEST)
def pybreaker_oldest(session: nox.Session) -> None:
    """Run the suite on the oldest releases allowed: pybreaker, attrs and wrapt at their floors."""
    session.install("-e", ".[consul,test]")
    session.install(*floors())
    session.run("python", "-m", "pip", "list")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=NEWEST)
def pybreaker_newest(session: nox.Session) -> None:
    """Run the suite on the newest pybreaker (and everything else) allowed."""
    session.install("--upgrade", "--upgrade-strategy", "eager", "-e", ".[consul,test]")
    session.run("python", "-m", "pip", "list")
    session.run("python", "-m", "pytest", *session.posargs)
