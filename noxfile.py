"""The test suite on every supported Python: ``python3 tasks.py pythons`` (or ``nox``)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess

import nox

VERSIONS = ("3.10", "3.11", "3.12", "3.13")


def interpreter(version: str) -> str:
    """Return a runnable interpreter for ``version``: PATH first, then pyenv's versions."""
    found = shutil.which(f"python{version}")
    if found and subprocess.call([found, "-c", ""], stderr=subprocess.DEVNULL) == 0:
        return found
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{root}/versions/{version}.*/bin/python"))
    return candidates[-1] if candidates else f"python{version}"


@nox.session(python=[interpreter(v) for v in VERSIONS])
def tests(session: nox.Session) -> None:
    """Run the test suite."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)
