"""environment.yml and pyproject.toml describe the same environment; check_env knows the same bounds."""

import re
from pathlib import Path

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


def _pyproject() -> dict[str, str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    reqs = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["dev"]
    return dict(_split(r) for r in reqs)


def _environment() -> dict[str, str]:
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    out = {}
    for dep in deps:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-") or item in ("pip",):
                continue
            name, spec = _split(item)
            if name != "python":
                out[name] = spec
    return out


def test_environment_yml_matches_pyproject():
    ours, theirs = _pyproject(), _environment()
    assert ours.keys() == theirs.keys(), f"only in pyproject: {ours.keys() - theirs.keys()}, only in environment.yml: {theirs.keys() - ours.keys()}"
    for name in ours:
        assert ours[name] == theirs[name], f"{name}: pyproject says {ours[name]!r}, environment.yml {theirs[name]!r}"


def test_pyproject_has_lower_bounds_only_except_pytest():
    for name, spec in _pyproject().items():
        parts = spec.split(",")
        assert any(p.startswith(">=") for p in parts), f"{name} needs a lower bound, got {spec!r}"
        if name != "pytest":  # nbmake reads pytest's major version from one character: keep it < 10
            assert all(p.startswith(">=") for p in parts), f"{name} has more than a lower bound: {spec!r}"


def test_check_env_bounds_match_pyproject():
    deps = dict(_split(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert {k: f">={v}" for k, v in REQUIRED.items()} == deps


def test_make_course_opens_the_start_notebook_and_allows_root_only_as_root():
    """`make course` must work where people run it as root (containers, cloud machines): JupyterLab refuses
    to start as root without --allow-root."""
    import os
    import shutil
    import subprocess

    import pytest

    if shutil.which("make") is None:
        pytest.skip("needs make")
    root = Path(__file__).resolve().parents[1]
    dry = subprocess.run(["make", "-n", "course", "VENV=/nonexistent-venv"], cwd=root, capture_output=True, text=True,
                         check=True).stdout
    lab = [line for line in dry.splitlines() if "jupyter lab" in line]
    assert lab and lab[-1].endswith("notebooks/00_start_here.ipynb")
    assert ("--allow-root" in lab[-1]) == (os.getuid() == 0)
