#!/usr/bin/env python3
"""Developer tasks that set themselves up: each creates a virtualenv with what it needs.

Every task uses ./.venv, with the project and every extra, except the demo, which uses
./.venv-demo, with the project and the consul extra alone.

python3 tasks.py setup          create .venv with the project and every extra (each task does)
python3 tasks.py demo           run the payments-client demo, from .venv-demo: the project and
                                the consul extra, nothing for development
python3 tasks.py test [ARGS]    the test suite (ARGS go to pytest); without ARGS it measures
                                branch coverage, then runs the Consul tests again on py-consul
python3 tasks.py lint           ruff (check and format), then the typing task
python3 tasks.py typing         mypy --strict on breaker/, tests/typing/ (and pyright there)
                                and these scripts
python3 tasks.py docs           the Sphinx docs into build/docs/html; warnings are errors
python3 tasks.py package        build the sdist and wheel into dist/, twine check them, run the
                                sdist's tests, install the wheel beside py-consul and check both
python3 tasks.py bench [ARGS]   the benchmarks against peers (--smoke: seconds)
python3 tasks.py pythons [ARGS] nox: lint, typing and tests on every Python 3.10-3.13 found,
                                and the tests on the oldest and newest pybreaker allowed

BREAKER_COVERAGE_FLOOR=95 makes the full test run fail below 95% branch coverage.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import venv
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("BREAKER_VENV", ROOT / ".venv"))
EXTRAS = "consul,test,lint,bench,docs"  # one environment serves every task but the demo
# The demo needs ConsulCoord and nothing else (its Consul is breaker.testing's stand-in),
# so a first `python3 tasks.py demo` installs a few packages, not the development tools.
DEMO_VENV = ROOT / ".venv-demo"
DEMO_EXTRAS = "consul"
# python-consul 1.1.0 is what the `consul` extra installs; the Consul tests also run on
# py-consul, the maintained fork that installs the same ``consul`` module, in an environment
# of its own: the test extra without python-consul, plus py-consul.
FORK_VENV = ROOT / ".venv-py-consul"
FORK = "py-consul"
FORK_TESTS = [
    "tests/test_coord.py",
    "tests/test_coord_consul.py",
    "tests/test_consul_settings.py",
    "tests/test_consul_watch.py",
    "tests/test_consul_fork.py",
    "tests/test_consul_kv_scenarios.py",
]
# The py-consul release the built wheel must coexist with (issue 12).
PY_CONSUL_PIN = "py-consul==1.8.0"
RELEASE_TOOLS = ["build>=1.2", "twine>=5.1"]  # for `package` only: not a dependency of anything
DIST = ROOT / "dist"
# The scripts around the library, type-checked as strictly as it is.
TOOLING = [
    "tasks.py",
    "noxfile.py",
    "docs/conf.py",
    "docs/_ext/cli_reference.py",
    "docs/_ext/metrics_reference.py",
    "docs/_ext/policy_reference.py",
    "benchmarks/importtime.py",
]
DOCS_OUT = ROOT / "build" / "docs" / "html"


def python_in(venv_dir: Path) -> Path:
    """Return the interpreter of the virtualenv at ``venv_dir``."""
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


PYTHON = python_in(VENV)


def extra_requirements(extra: str) -> list[str]:
    """Return the requirements that setup.cfg lists under ``extra``."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.extras_require"][extra].splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def requirement_name(requirement: str) -> str:
    """Return the distribution name of ``requirement`` ("urllib3>=1.26" -> "urllib3")."""
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def create_venv(venv_dir: Path) -> Path:
    """Create a fresh virtualenv with pip at ``venv_dir``; return its python."""
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    except Exception as exc:  # e.g. Debian without python3-venv
        sys.exit(f"could not create a virtualenv ({exc}); install your OS's python3-venv")
    return python_in(venv_dir)


def pip(python: Path) -> list[str | Path]:
    return [str(python), "-m", "pip", "--disable-pip-version-check"]


def ensure_venv(
    venv_dir: Path = VENV, extras: str = EXTRAS, without: tuple[str, ...] = (), plus: str = ""
) -> Path:
    """Create a virtualenv with the project and ``extras`` unless done; return its python.

    ``without`` leaves those distributions out of the extras; ``plus`` adds a requirement.
    """
    if sys.version_info < (3, 10):  # noqa: UP036 - tasks.py runs on whatever python3 is
        sys.exit(f"breaker needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    python = python_in(venv_dir)
    stamp_text = hashlib.sha256(
        b"".join((ROOT / f).read_bytes() for f in ("setup.cfg", "pyproject.toml"))
        + f"{extras}|{without}|{plus}".encode()
    ).hexdigest()
    stamp = venv_dir / ".installed"
    if stamp.exists() and stamp.read_text() == stamp_text and python.exists():
        return python
    if not python.exists():
        print(f"creating {venv_dir}", flush=True)
        create_venv(venv_dir)
    # Before the rename to consul-breaker the project was installed as "breaker".
    if any(venv_dir.glob("**/site-packages/breaker-*.dist-info")):
        run([*pip(python), "uninstall", "--quiet", "--yes", "breaker"])
    if without:
        reqs = [
            r
            for extra in extras.split(",")
            for r in extra_requirements(extra)
            if requirement_name(r) not in without
        ]
        what = [f"{ROOT}", *reqs]
        print(f"installing breaker, [{extras}] without {', '.join(without)}, {plus}", flush=True)
    else:
        what = [f"{ROOT}[{extras}]"]
        print(f"installing breaker[{extras}] into {venv_dir}", flush=True)
    run([*pip(python), "install", "--quiet", "--editable", *what, *([plus] if plus else [])])
    stamp.write_text(stamp_text)
    return python


def run(
    cmd: Sequence[str | Path], *, cwd: Path = ROOT, env: Mapping[str, str] | None = None
) -> None:
    """Run ``cmd``; exit with its status if it fails."""
    code = subprocess.call([str(c) for c in cmd], cwd=cwd, env=env)
    if code:
        sys.exit(code)


def say(text: str) -> None:
    print(f"\n-- {text}", flush=True)


def setup(args: list[str]) -> None:
    ensure_venv()


def demo(args: list[str]) -> None:
    python = ensure_venv(DEMO_VENV, DEMO_EXTRAS)
    run([python, "examples/payments_client.py", *args])


def test(args: list[str]) -> None:
    python = ensure_venv()
    if args:
        run([python, "-m", "pytest", *args])
        return
    # The full run: branch coverage of breaker/ (settings in pyproject.toml), then py-consul.
    cov = ["--cov=breaker", "--cov-branch", "--cov-report=term-missing:skip-covered"]
    floor = os.environ.get("BREAKER_COVERAGE_FLOOR")
    if floor:
        cov.append(f"--cov-fail-under={floor}")
    run([python, "-m", "pytest", *cov])
    fork = ensure_venv(FORK_VENV, "test", without=("python-consul",), plus=FORK)
    print("\nthe Consul tests again, on py-consul:", flush=True)
    run([fork, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FORK_TESTS])


def bench(args: list[str]) -> None:
    python = ensure_venv()
    run([python, "benchmarks/run.py", *args])


def lint(args: list[str]) -> None:
    python = ensure_venv()
    candidates = ["breaker", "tests", "examples", "benchmarks", "docs", "tasks.py", "noxfile.py"]
    paths = [p for p in candidates if (ROOT / p).exists()]
    run([python, "-m", "ruff", "check", *paths])
    run([python, "-m", "ruff", "format", "--check", *paths])
    typing(args)


def typing(args: list[str]) -> None:
    python = ensure_venv()
    run([python, "-m", "mypy", "--strict", "breaker"])
    if (ROOT / "tests" / "typing").is_dir():  # the public API as users write it
        run([python, "-m", "mypy", "--strict", "tests/typing"])
        # pyright too (it fetches its own Node.js package from the npm registry once).
        config = "tests/typing/pyrightconfig.json"
        run([python, "-m", "pyright", "-p", config, "--pythonpath", python])
    run([python, "-m", "mypy", "--strict", *TOOLING])


def docs(args: list[str]) -> None:
    python = ensure_venv()
    # -E: read every source again, so the check that each public name is documented runs.
    sphinx: list[str | Path] = [
        python,
        "-m",
        "sphinx",
        "-W",
        "--keep-going",
        "-E",
        "-q",
        "-b",
        "html",
    ]
    run([*sphinx, "docs", DOCS_OUT, *args])
    print(f"docs: {DOCS_OUT / 'index.html'}")


def package(args: list[str]) -> None:
    python = ensure_venv()
    run([*pip(python), "install", "--quiet", *RELEASE_TOOLS])
    say("build the sdist and the wheel")
    shutil.rmtree(DIST, ignore_errors=True)
    run([python, "-m", "build", "--quiet", "--outdir", DIST, ROOT])
    (sdist,), (wheel,) = DIST.glob("*.tar.gz"), DIST.glob("*.whl")
    say("twine check --strict (what the index validates on upload)")
    run([python, "-m", "twine", "check", "--strict", sdist, wheel])
    with tempfile.TemporaryDirectory(prefix="breaker-package-") as tmp:
        say(f"a fresh virtualenv with {PY_CONSUL_PIN}, then the wheel without extras")
        target = create_venv(Path(tmp, "venv"))
        run([*pip(target), "install", "--quiet", PY_CONSUL_PIN])
        run([*pip(target), "install", "--quiet", wheel])
        run([*pip(target), "check"])
        say("the artifacts' contents, and py-consul and breaker working in that virtualenv")
        env = {**os.environ, "BREAKER_DIST": str(DIST), "BREAKER_TARGET_PYTHON": str(target)}
        run([python, "-m", "pytest", "-p", "no:cacheprovider", "tests/test_packaging.py"], env=env)
        say(f"the sdist's own tests, from {sdist.name} unpacked")
        with tarfile.open(sdist) as tar:
            # The "data" filter where this Python has it (3.12, and 3.10.12+/3.11.4+).
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(tmp, **safe)  # type: ignore[arg-type]
        unpacked = Path(tmp, sdist.name.removesuffix(".tar.gz"))
        # PYTHONPATH puts the sdist's breaker/ first, in subprocesses too, ahead of the
        # editable install of this checkout that .venv has.
        env = {**os.environ, "PYTHONPATH": str(unpacked)}
        check = "import breaker, sys; print(breaker.__file__)"
        where = subprocess.run(
            [python, "-c", check], cwd=tmp, env=env, capture_output=True, text=True
        ).stdout
        if not where.startswith(str(unpacked)):
            sys.exit(f"the sdist's tests would import breaker from {where.strip()}")
        run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=unpacked, env=env)
    print(f"\nbuilt and checked: {sdist.name}, {wheel.name}")


def pythons(args: list[str]) -> None:
    python = ensure_venv()
    run([python, "-m", "nox", *args])


TASKS = {
    "setup": setup,
    "demo": demo,
    "test": test,
    "lint": lint,
    "typing": typing,
    "docs": docs,
    "package": package,
    "pythons": pythons,
    "bench": bench,
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TASKS:
        sys.exit(__doc__)
    TASKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
