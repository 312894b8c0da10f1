"""helpers.runtime: device choice, the fast-mode flag and seeding."""

import os
import subprocess
import sys
from pathlib import Path

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
