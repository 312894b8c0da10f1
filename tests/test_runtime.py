"""helpers.runtime: device choice, the fast-mode flag, seeding, budgets and the "verified on" report."""

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

from helpers import runtime

ROOT = Path(__file__).resolve().parents[1]


def _env(**env: str) -> dict[str, str]:
    """The environment of a child that must import this checkout's helpers (not an installed copy),
    whatever directory pytest was started from."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("COURSE_FAST", "COURSE_DEVICE")}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return full_env | env


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=_env(**env), cwd=ROOT, capture_output=True, text=True)


def test_children_import_this_checkout():
    out = _run("import helpers; print(helpers.__file__)")
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).resolve() == ROOT / "helpers" / "__init__.py"


@pytest.mark.parametrize("value,expected", [("", False), ("0", False), ("false", False), ("1", True), ("TRUE", True)])
def test_fast_flag_values(value, expected):
    out = _run("from helpers.runtime import FAST, scaled; print(FAST, scaled(full=10, fast=2))", COURSE_FAST=value)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(expected), "2" if expected else "10"]


def test_bad_fast_flag_names_the_variable():
    out = _run("import helpers.runtime", COURSE_FAST="yes please")
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert "COURSE_FAST" in last and "yes please" in last


def test_pick_device_default_is_first_available(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    assert runtime.pick_device().type == runtime.available_devices()[0]


def test_pick_device_env_override(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert runtime.pick_device() == torch.device("cpu")


@pytest.mark.parametrize("bad", ["tpu", "banana"])
def test_pick_device_unknown_names_variable_and_choices(monkeypatch, bad):
    monkeypatch.setenv("COURSE_DEVICE", bad)
    with pytest.raises(ValueError) as err:
        runtime.pick_device()
    assert "COURSE_DEVICE" in str(err.value) and bad in str(err.value) and "cpu" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_pick_device_missing_cuda_lists_what_exists(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    with pytest.raises(ValueError, match="this machine has: .*cpu"):
        runtime.pick_device("cuda")


def test_seed_everything_reproduces():
    runtime.seed_everything(3)
    a = torch.randn(5)
    runtime.seed_everything(3)
    assert torch.equal(a, torch.randn(5))
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)
    runtime.seed_everything(runtime.MAX_SEED)
    with pytest.raises(ValueError, match=r"seed must be an int in 0\.\.9223372036854775807 .*got 18446744073709551616"):
        runtime.seed_everything(2**64)
    with pytest.raises(ValueError, match="seed must be an int in .* got True"):
        runtime.seed_everything(True)


def test_describe_prints_device_versions_mode(capsys):
    device = runtime.describe("cpu")
    out = capsys.readouterr().out
    assert device == torch.device("cpu")
    assert "device: cpu" in out and "torch" in out and "mode:" in out


def test_check_env_reports_and_exits_zero():
    out = subprocess.run([sys.executable, "-m", "helpers.check_env"], env=_env(), cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "environment report" in out.stdout and "torch" in out.stdout and "devices" in out.stdout


def test_check_env_flags_too_old(monkeypatch):
    from helpers import check_env

    monkeypatch.setitem(check_env.REQUIRED, "numpy", "999")
    assert any("numpy" in p and "older" in p for p in check_env.problems())
    monkeypatch.setitem(check_env.REQUIRED, "no-such-package-xyz", "1")
    assert any("no-such-package-xyz is missing" in p for p in check_env.problems())


@pytest.mark.parametrize("bad", ["", "tpu", 5, 1.5, ["cpu"]])
def test_pick_device_bad_argument_names_the_parameter(monkeypatch, bad):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    with pytest.raises(ValueError, match=r"device.*(must be|not available).*cpu") as err:
        runtime.pick_device(bad)
    assert repr(bad) in str(err.value)


def test_evaluating_switches_to_eval_mode_and_back_even_after_an_error():
    from helpers.runtime import evaluating

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
    for start in (True, False):
        model.train(start)
        with evaluating(model) as m:
            assert m is model and not model.training and not model[1].training
        assert model.training is start and model[1].training is start
    model.train()
    with pytest.raises(RuntimeError), evaluating(model):
        raise RuntimeError("inside")
    assert model.training
    # modes that differ between modules come back module by module
    model.eval()
    model[1].train()
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert not model.training and not model[0].training and model[1].training
    # a model in eval mode throughout is not switched at all
    model.eval()
    with mock.patch.object(torch.nn.Module, "train", side_effect=AssertionError("switched")), evaluating(model):
        assert not model[1].training


# ------------------------------------------------------------------- budgets, "verified on", memory
def _verified(tmp_path, versions: dict[str, str]) -> Path:
    path = tmp_path / "verified.json"
    entry = {"wall_s": 150.0, "cpu_s": 240.0, "peak_mb": 800, "date": "2026-01-02", "versions": versions,
             "machine": {"device": "cpu", "cpu": "Test CPU", "threads": 2}}
    path.write_text(json.dumps({"notebooks": {"08_learning_rate": {"full": entry}}}))
    return path


def test_major_version_rule():
    # Python: 3.x is the major part; the libraries: the first number
    assert runtime._major("python", "3.12.3") == (3, 12)
    assert runtime._major("torch", "2.13.0+cpu") == (2,)
    assert runtime._major("numpy", "2.0.0rc1") == (2,)
    assert runtime._major("numpy", "missing") is None
    same = {"python": "3.12.1", "torch": "2.13.0+cpu", "numpy": "2.4.6"}
    assert runtime.major_differences(same, {"python": "3.12.9", "torch": "2.2.0", "numpy": "2.0.1"}) == []
    differ = runtime.major_differences(same, {"python": "3.11.7", "torch": "1.13.1", "numpy": "2.4.6"})
    assert differ == ["python 3.12.1 here, 3.11.7 verified", "torch 2.13.0+cpu here, 1.13.1 verified"]
    assert runtime.major_differences(same, {"numpy": "1.26.4"}) == ["numpy 2.4.6 here, 1.26.4 verified"]


def test_describe_shows_the_verified_set_and_warns_on_a_major_version(tmp_path, capsys):
    mine = runtime.versions()
    budget = runtime.Budget(full_minutes=4, full_gb=1, fast_seconds=20)
    runtime.describe("cpu", notebook="08", budget=budget, verified_file=_verified(tmp_path, dict(mine)))
    out = capsys.readouterr().out
    assert f"verified: python {mine['python']}" in out and "Test CPU, 2 threads" in out
    assert "2.5 min, 4.0 min of CPU, peak 0.80 GB" in out
    assert "budget:   full mode <= 4 min and <= 1 GB" in out
    assert "WARNING versions" not in out
    older = dict(mine, torch="1.0.0")
    runtime.describe("cpu", notebook="08", budget=budget, verified_file=_verified(tmp_path, older))
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING versions")]
    assert warnings == [f"WARNING versions: torch {mine['torch']} here, 1.0.0 verified "
                        "(a major version apart: results may differ)"]


def test_describe_without_a_verified_file_says_so(tmp_path, capsys):
    runtime.describe("cpu", notebook="08", verified_file=tmp_path / "missing.json")
    assert "verified: not verified yet" in capsys.readouterr().out
    (tmp_path / "broken.json").write_text("{not json")
    runtime.describe("cpu", notebook="08", verified_file=tmp_path / "broken.json")
    assert "verified: not verified yet" in capsys.readouterr().out
    runtime.describe("cpu", notebook="05", verified_file=_verified(tmp_path, {}))  # another notebook's record
    assert "verified: not verified yet" in capsys.readouterr().out
    with pytest.raises(TypeError, match="budget must be a Budget, got dict"):
        runtime.describe("cpu", budget={"full_minutes": 1})


def _cgroup(tmp_path, limit: str, current: str, version: int = 2) -> Path:
    root = tmp_path / "cgroup"
    if version == 2:
        root.mkdir()
        (root / "memory.max").write_text(limit + "\n")
        (root / "memory.current").write_text(current + "\n")
    else:
        (root / "memory").mkdir(parents=True)
        (root / "memory" / "memory.limit_in_bytes").write_text(limit + "\n")
        (root / "memory" / "memory.usage_in_bytes").write_text(current + "\n")
    return root


def test_available_memory_reads_cgroup_limits_and_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    # a JupyterHub-style limit of 2 GB with 0.5 GB used: 1.5 GB left, less than MemAvailable
    assert runtime.available_memory(_cgroup(tmp_path, "2000000000", "500000000"), meminfo) == (
        1_500_000_000, "cgroup limit 2.0 GB")
    v1 = tmp_path / "v1"
    v1.mkdir()
    assert runtime.available_memory(_cgroup(v1, "1000000000", "0", version=1), meminfo) == (
        1_000_000_000, "cgroup limit 1.0 GB")
    no_limit = tmp_path / "nolimit"
    no_limit.mkdir()
    assert runtime.available_memory(_cgroup(no_limit, "max", "500000000"), meminfo) == (8_192_000_000, "MemAvailable")
    # neither file (macOS, Windows): psutil's figure, or "unknown", never an exception
    free, source = runtime.available_memory(tmp_path / "none", tmp_path / "none")
    assert (free is None and source == "unknown") or (free > 0 and source == "available memory")


def test_memory_warning_before_the_heavy_cells(tmp_path, capsys):
    budget = runtime.Budget(full_minutes=4, full_gb=2, fast_seconds=20)
    small = (1_000_000_000, "cgroup limit 1.0 GB")
    warning = runtime.memory_warning(budget, fast=False, available=small, own_rss=300_000_000)
    assert warning.startswith("WARNING memory: full mode needs up to 2 GB, but only 1.0 GB are free")
    assert "cgroup limit 1.0 GB" in warning and "COURSE_FAST" in warning
    # the kernel's own memory is already part of the declared peak
    assert runtime.memory_warning(budget, fast=False, available=small, own_rss=1_000_000_000) is None
    assert runtime.memory_warning(budget, fast=False, available=(4_000_000_000, "MemAvailable"), own_rss=0) is None
    assert runtime.memory_warning(budget, fast=True, available=small, own_rss=0) is None  # fast mode is small
    assert runtime.memory_warning(budget, fast=False, available=(None, "unknown"), own_rss=0) is None


def test_the_memory_warning_reaches_the_first_output(tmp_path):
    # a faked 0.5 GB cgroup seen by a fresh interpreter in full mode
    code = ("from pathlib import Path; from helpers import runtime\n"
            "real = runtime.available_memory\n"
            f"runtime.available_memory = lambda: real({str(_cgroup(tmp_path, '500000000', '0'))!r}, '/nonexistent')\n"
            "runtime.describe('cpu', notebook='08', budget=runtime.Budget(full_minutes=4, full_gb=2, fast_seconds=20))")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("WARNING memory: full mode needs up to 2 GB, but only 0.5 GB are free here "
                                "(cgroup limit 0.5 GB)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_release_memory_hands_freed_heap_pages_back_to_the_system():
    """Freed blocks between live ones stay in the heap until trimmed: the resident size drops only then."""
    code = (
        "import resource\n"
        "from helpers.runtime import release_memory\n"
        "def rss():\n"
        "    return int(open('/proc/self/statm').read().split()[1]) * resource.getpagesize()\n"
        "blocks = [bytearray(4000) for _ in range(50_000)]  # 200 MB from the heap, below the mmap threshold\n"
        "keep = blocks[::50]  # a live block every 200 kB pins the heap's top, so free() cannot shrink it\n"
        "del blocks\n"
        "before = rss()\n"
        "release_memory()\n"
        "print(before, rss())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split())
    assert before - after > 100e6, (before, after)
