"""environment.yml and pyproject.toml describe the same environment; check_env knows the same bounds."""

import re
from pathlib import Path

import pytest
import tomllib
import yaml

from helpers.check_env import REQUIRED

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge names that differ from PyPI's


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    name = m.group(1).lower().replace("_", "-")
    spec = ",".join(sorted(s.strip() for s in m.group(2).split(",") if s.strip()))
    return CONDA_NAMES.get(name, name), spec


def _pyproject(part: str = "all") -> dict[str, str]:
    """Requirements of pyproject.toml: 'course' (the dependencies), 'test' (the test extra) or 'all'."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = {"course": project["dependencies"], "test": project["optional-dependencies"]["test"]}
    chosen = reqs["course"] + reqs["test"] if part == "all" else reqs[part]
    return dict(_split(r) for r in chosen)


def _environment(name: str = "environment.yml") -> dict[str, str]:
    deps = yaml.safe_load((ROOT / name).read_text())["dependencies"]
    out = {}
    for dep in deps:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-") or item in ("pip",):
                continue
            name_, spec = _split(item)
            if name_ != "python":
                out[name_] = spec
    return out


@pytest.mark.parametrize("part,name", [("course", "environment.yml"), ("test", "environment-test.yml")])
def test_environment_yml_matches_pyproject(part, name):
    ours, theirs = _pyproject(part), _environment(name)
    assert ours.keys() == theirs.keys(), f"only in pyproject: {ours.keys() - theirs.keys()}, only in {name}: {theirs.keys() - ours.keys()}"
    for key in ours:
        assert ours[key] == theirs[key], f"{key}: pyproject says {ours[key]!r}, {name} {theirs[key]!r}"


def test_conda_files_use_only_options_a_requirements_file_allows():
    """conda hands the pip: list to `pip install -r`; options such as --no-deps are not allowed there."""
    for name in ("environment.yml", "environment-test.yml"):
        for dep in yaml.safe_load((ROOT / name).read_text())["dependencies"]:
            for item in dep["pip"] if isinstance(dep, dict) else []:
                assert not item.startswith("--no-deps"), f"{name}: {item!r} fails inside a requirements file"


def test_course_install_leaves_out_the_test_tools():
    """The lean install: nothing a notebook does not need is among the dependencies."""
    course = _pyproject("course")
    for tool in ("pytest", "nbmake", "pytest-xdist", "ruff", "nbstripout", "transformers", "peft", "playwright",
                 "hypothesis"):
        assert tool not in course, f"{tool} belongs in the test extra, not in the dependencies"
        assert tool in _pyproject("test"), f"{tool} is missing from the test extra"


def test_license_is_an_spdx_string():
    """The table form (license = {text = ...}) makes setuptools print a deprecation warning."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert data["project"]["license"] == "MIT"
    assert any(r.startswith("setuptools>=77") for r in data["build-system"]["requires"])  # SPDX form needs 77


def test_pyproject_has_lower_bounds_only_except_pytest():
    for name, spec in _pyproject().items():
        parts = spec.split(",")
        assert any(p.startswith(">=") for p in parts), f"{name} needs a lower bound, got {spec!r}"
        if name != "pytest":  # nbmake reads pytest's major version from one character: keep it < 10
            assert all(p.startswith(">=") for p in parts), f"{name} has more than a lower bound: {spec!r}"


def test_check_env_bounds_match_pyproject():
    deps = dict(_split(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert {k: f">={v}" for k, v in REQUIRED.items()} == deps


def test_make_calls_the_python_entry_point():
    """`make course` / `make test` and `python -m helpers.setup course|test` are one code path."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("needs make")
    for kind in ("course", "test"):
        dry = subprocess.run(["make", "-n", kind, "VENV=/nonexistent-venv"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
        assert f"-m helpers.setup {kind} --venv \"/nonexistent-venv\"" in dry, dry


def test_course_opens_the_start_notebook_and_allows_root_only_as_root(tmp_path):
    """JupyterLab refuses to start as root without --allow-root (containers and cloud machines run as root)."""
    import os
    import subprocess
    import sys

    dry = subprocess.run([sys.executable, "-m", "helpers.setup", "course", "--dry-run", "--venv", str(tmp_path / "v"),
                          "--torch-index", "http://127.0.0.1:9/cpu"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    lab = [line for line in dry.splitlines() if "jupyter lab" in line]
    assert lab and lab[-1].endswith("notebooks/00_start_here.ipynb")
    assert ("--allow-root" in lab[-1]) == (os.getuid() == 0)
