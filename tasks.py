#!/usr/bin/env python3
"""Developer tasks that set themselves up: each creates ./.venv and installs what it needs.

python3 tasks.py demo          run the payments-client demo
python3 tasks.py test [ARGS]   run the test suite (ARGS go to pytest; without ARGS the
                               Consul tests then run again on py-consul)
python3 tasks.py lint          mypy --strict and ruff
python3 tasks.py bench [ARGS]  the benchmarks against peers (--smoke: seconds)
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
EXTRAS = "test,lint,bench"  # one environment serves every task
# python-consul 1.1.0 is the declared dependency; the Consul tests also run on py-consul,
# the maintained fork that installs the same ``consul`` module, in an environment of its own.
FORK_VENV = ROOT / ".venv-py-consul"
FORK_TESTS = ["tests/test_coord.py", "tests/test_coord_consul.py", "tests/test_consul_settings.py"]


def python_in(venv_dir: Path) -> Path:
    """Return the interpreter of the virtualenv at ``venv_dir``."""
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


PYTHON = python_in(VENV)


def ensure_venv(venv_dir: Path = VENV, extras: str = EXTRAS, swap_in: str | None = None) -> Path:
    """Create a virtualenv with the project and ``extras`` unless done; return its python.

    ``swap_in`` replaces python-consul with another distribution of the ``consul`` module.
    """
    if sys.version_info < (3, 10):  # noqa: UP036 - tasks.py runs on whatever python3 is
        sys.exit(f"breaker needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    python = python_in(venv_dir)
    stamp_text = hashlib.sha256(
        b"".join((ROOT / f).read_bytes() for f in ("setup.cfg", "pyproject.toml"))
        + f"{extras}|{swap_in}".encode()
    ).hexdigest()
    stamp = venv_dir / ".installed"
    if stamp.exists() and stamp.read_text() == stamp_text and python.exists():
        return python
    if not python.exists():
        print(f"creating {venv_dir}", flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
        except Exception as exc:  # e.g. Debian without python3-venv
            sys.exit(f"could not create a virtualenv ({exc}); install your OS's python3-venv")
    print(f"installing breaker[{extras}] into {venv_dir}", flush=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    run([*pip, "install", "--quiet", "--editable", f"{ROOT}[{extras}]"])
    if swap_in:
        run([*pip, "uninstall", "--quiet", "--yes", "python-consul"])
        run([*pip, "install", "--quiet", swap_in])
    stamp.write_text(stamp_text)
    return python


def run(cmd: list[str], **kwargs: object) -> None:
    """Run ``cmd``; exit with its status if it fails."""
    code = subprocess.call(cmd, cwd=ROOT, **kwargs)  # type: ignore[call-overload]
    if code:
        sys.exit(code)


def demo(args: list[str]) -> None:
    ensure_venv()
    run([str(PYTHON), "examples/payments_client.py", *args])


def test(args: list[str]) -> None:
    ensure_venv()
    run([str(PYTHON), "-m", "pytest", *args])
    if not args:  # the full run also covers py-consul
        fork = ensure_venv(FORK_VENV, "test", swap_in="py-consul")
        print("\nthe Consul tests again, on py-consul:", flush=True)
        run([str(fork), "-m", "pytest", "-q", *FORK_TESTS])


def bench(args: list[str]) -> None:
    ensure_venv()
    run([str(PYTHON), "benchmarks/run.py", *args])


def lint(args: list[str]) -> None:
    ensure_venv()
    run([str(PYTHON), "-m", "mypy", "--strict", "breaker"])
    candidates = ["breaker", "tests", "examples", "benchmarks", "tasks.py", "noxfile.py"]
    paths = [p for p in candidates if (ROOT / p).exists()]
    run([str(PYTHON), "-m", "ruff", "check", *paths])
    run([str(PYTHON), "-m", "ruff", "format", "--check", *paths])


def pythons(args: list[str]) -> None:
    ensure_venv()
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "nox>=2024.3"])
    run([str(PYTHON), "-m", "nox", *args])


TASKS = {"demo": demo, "test": test, "lint": lint, "pythons": pythons, "bench": bench}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
