#!/usr/bin/env python3
"""Developer tasks that set themselves up: each creates ./.venv and installs what it needs.

python3 tasks.py demo          run the payments-client demo
python3 tasks.py test [ARGS]   run the test suite (ARGS go to pytest)
python3 tasks.py lint          mypy --strict and ruff
python3 tasks.py pythons       the test suite on every installed Python 3.10-3.13 (nox)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("BREAKER_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
EXTRAS = "test,lint"  # one environment serves every task


def ensure_venv(extras: str) -> None:
    """Create the virtualenv and install the project with ``extras`` unless already done."""
    if sys.version_info < (3, 10):  # noqa: UP036 - tasks.py runs on whatever python3 is
        sys.exit(f"breaker needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    stamp_text = hashlib.sha256(
        b"".join((ROOT / f).read_bytes() for f in ("setup.cfg", "pyproject.toml")) + extras.encode()
    ).hexdigest()
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == stamp_text and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except Exception as exc:  # e.g. Debian without python3-venv
            sys.exit(f"could not create a virtualenv ({exc}); install your OS's python3-venv")
    print(f"installing breaker[{extras}] into {VENV}", flush=True)
    pip = [str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    run([*pip, "--editable", f"{ROOT}[{extras}]"])
    stamp.write_text(stamp_text)


def run(cmd: list[str], **kwargs: object) -> None:
    """Run ``cmd``; exit with its status if it fails."""
    code = subprocess.call(cmd, cwd=ROOT, **kwargs)  # type: ignore[call-overload]
    if code:
        sys.exit(code)


def demo(args: list[str]) -> None:
    ensure_venv(EXTRAS)
    run([str(PYTHON), "examples/payments_client.py", *args])


def test(args: list[str]) -> None:
    ensure_venv(EXTRAS)
    run([str(PYTHON), "-m", "pytest", *args])


def lint(args: list[str]) -> None:
    ensure_venv(EXTRAS)
    run([str(PYTHON), "-m", "mypy", "--strict", "breaker"])
    paths = ["breaker", "tests", "examples", "benchmarks", "tasks.py", "noxfile.py"]
    run([str(PYTHON), "-m", "ruff", "check", *paths])
    run([str(PYTHON), "-m", "ruff", "format", "--check", *paths])


def pythons(args: list[str]) -> None:
    ensure_venv(EXTRAS)
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "nox>=2024.3"])
    run([str(PYTHON), "-m", "nox", *args])


TASKS = {"demo": demo, "test": test, "lint": lint, "pythons": pythons}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
