"""The distribution: its metadata, what the sdist and the wheel hold, and how they install.

The tests of built artifacts run from ``python3 tasks.py package``, which builds them and sets
BREAKER_DIST (the folder holding one sdist and one wheel) and BREAKER_TARGET_PYTHON (a fresh
virtualenv with py-consul 1.8.0 and then the wheel, without extras). Elsewhere they skip.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DIST = os.environ.get("BREAKER_DIST")
TARGET = os.environ.get("BREAKER_TARGET_PYTHON")
needs_dist = pytest.mark.skipif(not DIST, reason="run by python3 tasks.py package")
needs_target = pytest.mark.skipif(not TARGET, reason="run by python3 tasks.py package")

HEAVY = ("consul", "grpc", "httpx", "requests", "urllib3")
"""What ``import breaker`` must not load: these come with extras and load on first use."""
RUNTIME_EXTRAS = ("consul", "httpx", "requests", "grpc", "prometheus", "otel", "starlette", "flask")


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg")
    return cfg


def requirements(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def name_of(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def run_python(python: str, code: str, cwd: Path) -> str:
    """Run ``code`` in ``python`` from ``cwd``; return its stdout, failing on an error."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# -- metadata ---------------------------------------------------------------------------------


def test_distribution_name_is_free_on_the_index_and_the_package_is_breaker() -> None:
    cfg = setup_cfg()
    # "breaker" on the public index is an astronomy tool.
    assert cfg["metadata"]["name"] == "consul-breaker"
    assert requirements(cfg["options.packages.find"]["include"].replace(",", "\n")) == [
        "breaker",
        "breaker.*",
    ]


def test_license_is_mit_as_an_spdx_expression_with_the_file() -> None:
    meta = setup_cfg()["metadata"]
    assert meta["license_expression"] == "MIT"
    assert meta["license_files"] == "LICENSE"
    assert "license" not in meta  # the legacy free-text field
    assert not [c for c in meta["classifiers"].splitlines() if c.strip().startswith("License")]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the breaker authors" in text


def test_core_dependencies_are_attrs_pybreaker_and_wrapt_only() -> None:
    required = requirements(setup_cfg()["options"]["install_requires"])
    assert sorted(name_of(r) for r in required) == ["attrs", "pybreaker", "wrapt"]
    assert "pybreaker>=1.4,<2" in required  # 1.4.0 added success_threshold, which we pass


def test_all_is_the_union_of_the_runtime_extras() -> None:
    extras = setup_cfg()["options.extras_require"]
    union = {r for extra in RUNTIME_EXTRAS for r in requirements(extras[extra])}
    assert set(requirements(extras["all"])) == union


def test_consul_extra_has_what_the_coord_imports() -> None:
    consul = {name_of(r) for r in requirements(setup_cfg()["options.extras_require"]["consul"])}
    assert consul == {"python-consul", "requests", "urllib3"}


def test_console_script_is_declared() -> None:
    scripts = requirements(setup_cfg()["options.entry_points"]["console_scripts"])
    assert scripts == ["breaker = breaker._cli:main"]


def test_readme_renders_without_warnings_as_the_index_renders_it() -> None:
    core = pytest.importorskip("docutils.core")
    from docutils.writers.html5_polyglot import Writer

    # The settings that matter of readme_renderer (what twine check and the index use).
    html = core.publish_parts(
        (ROOT / "README.rst").read_text(),
        writer=Writer(),
        settings_overrides={
            "halt_level": 2,  # any warning raises
            "report_level": 2,
            "raw_enabled": False,
            "file_insertion_enabled": False,
            "warning_stream": False,
        },
    )["body"]
    assert "consul-breaker" in html


def test_changelog_has_an_unreleased_section() -> None:
    text = (ROOT / "CHANGELOG.rst").read_text()
    assert "\nUnreleased\n==========\n" in text
    assert "consul-breaker" in text


def test_every_public_name_is_listed_by_dir() -> None:
    import breaker

    # The API reference (autodoc) finds module members through dir(): a lazily imported
    # name must be listed there too (a module __dir__).
    assert set(breaker.__all__) <= set(dir(breaker))


# -- import cost --------------------------------------------------------------------------------


def test_import_breaker_loads_no_http_or_consul_module(tmp_path: Path) -> None:
    # The installed wheel when tasks.py package names one; else this checkout (from ROOT).
    python, cwd = (TARGET, tmp_path) if TARGET else (sys.executable, ROOT)
    code = "import json, sys; import breaker; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(run_python(python, code, cwd))
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HEAVY))
    assert heavy == [], f"import breaker loaded {heavy}"


def test_importtime_benchmark_reports_breaker_and_what_it_imports() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "importtime.py"), "--runs", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0 < report["median_us"] <= report["with_consul_us"]
    assert 0 < report["ratio"] <= 1 and len(report["runs_us"]) == 1
    assert {"attrs", "pybreaker"} <= set(report["third_party"])
    assert "wrapt" not in report["third_party"]  # loaded on the first decoration


# -- built artifacts (python3 tasks.py package) --------------------------------------------------


def artifact(pattern: str) -> Path:
    assert DIST
    (found,) = Path(DIST).glob(pattern)
    return found


@needs_dist
def test_sdist_ships_what_its_tests_and_docs_need() -> None:
    sdist = artifact("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for needed in (
        "LICENSE",
        "README.rst",
        "CHANGELOG.rst",
        "setup.cfg",
        "pyproject.toml",
        "breaker/py.typed",
        "tests/conftest.py",
        "tests/test_packaging.py",
        "docs/conf.py",
        "docs/index.rst",
        "docs/api.rst",
        "examples/payments_client.py",
        "benchmarks/run.py",
        "tasks.py",
    ):
        assert needed in names, f"the sdist lacks {needed}"
    assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n]


@needs_dist
def test_wheel_ships_breaker_and_the_license_and_nothing_else() -> None:
    with zipfile.ZipFile(artifact("*.whl")) as whl:
        names = whl.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = whl.read(metadata_name).decode()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = whl.read(entry_points).decode()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"breaker"}
    assert "breaker/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    headers = metadata.split("\n\n", 1)[0].splitlines()
    assert "Name: consul-breaker" in headers
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers
    requires = [h.split(": ", 1)[1] for h in headers if h.startswith("Requires-Dist: ")]
    core = sorted(name_of(r) for r in requires if "extra ==" not in r)
    assert core == ["attrs", "pybreaker", "wrapt"]
    assert "breaker = breaker._cli:main" in scripts


@needs_target
def test_py_consul_keeps_working_beside_the_wheel(tmp_path: Path) -> None:
    assert TARGET
    code = """if True:
        import json
        from importlib import metadata
        import consul
        client = consul.Consul(host="127.0.0.1", port=8500)
        try:
            metadata.version("python-consul")
            python_consul = True
        except metadata.PackageNotFoundError:
            python_consul = False
        print(json.dumps({
            "version": consul.__version__,
            "py-consul": metadata.version("py-consul"),
            "python-consul installed": python_consul,
            "file": consul.__file__,
            "has kv": hasattr(client, "kv"),
            "consul-breaker": metadata.version("consul-breaker"),
        }))
    """
    found = json.loads(run_python(TARGET, code, tmp_path))
    assert found["version"] == found["py-consul"] == "1.8.0", found
    assert found["python-consul installed"] is False, found
    assert found["has kv"] and found["consul-breaker"]
    assert Path(found["file"]).is_relative_to(Path(TARGET).parent.parent), found


@needs_target
def test_consul_coord_reads_policies_on_py_consul(tmp_path: Path) -> None:
    assert TARGET
    code = """if True:
        import breaker
        from breaker.testing import ConsulServer
        with ConsulServer() as server:
            server.put("config/dev/app/breakers/payments.json", '{"failureThreshold": 7}')
            config = breaker.Config("app", "/config/dev/app/breakers/")
            with breaker.new(config, coord=breaker.ConsulCoord(server.addr)) as provider:
                print(provider.get_breaker("payments").policy.failure_threshold)
                print(breaker.__file__)
    """
    threshold, where = run_python(TARGET, code, tmp_path).split()
    assert threshold == "7"
    assert Path(where).is_relative_to(Path(TARGET).parent.parent)  # the wheel, not a checkout
