"""The benchmarks still run: the training benchmark's turn-taking children and the adaptation
benchmark's memory tables, on tiny batches."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_training_benchmark_runs_and_reports_every_model():
    pytest.importorskip("transformers")
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_model", "--rounds", "2", "--per-turn", "1",
                          "--warmup", "0", "--batch", "1", "--threads", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {m.group(1): m for m in re.finditer(r"^\| (ours|hf) \| ([\d,]+) \| ([\d.]+)x", out.stdout, re.M)}
    assert set(rows) == {"ours", "hf"}, out.stdout
    assert float(rows["ours"].group(3)) == 1.0  # ours against itself
    assert all(int(r.group(2).replace(",", "")) > 0 for r in rows.values())


@pytest.mark.slow
def test_adaptation_benchmark_measures_every_method_with_and_without_checkpointing():
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_adaptation", "--batch", "1", "--seq", "16",
                          "--rounds", "1", "--steps", "1", "--warmup", "0", "--threads", "1", "--batches", "1",
                          "--skip-quantisation"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = re.findall(r"^\| (full fine-tuning|LoRA r=8, c_attn|LoRA r=8, attn\+mlp) \| (yes|no) \| .*?"
                      r"\| ([\d.]+) MB \| \*\*([\d.]+)x\*\*", out.stdout, re.M)
    assert len(rows) == 6, out.stdout
    ratio = {(m, ck): float(r) for m, ck, _, r in rows}
    assert ratio[("full fine-tuning", "no")] == ratio[("full fine-tuning", "yes")] == 1.0
    assert all(r < 1.0 for (m, _), r in ratio.items() if m.startswith("LoRA"))  # no gradients, no AdamW state
    assert re.search(r"^\| 1 \| 16 \| ", out.stdout, re.M), out.stdout  # the batch table's row


def test_adaptation_benchmark_rejects_a_window_longer_than_the_context():
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_adaptation", "--seq", "300"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--seq must be in 1..256 (the model's context), got 300" in out.stderr


@pytest.mark.slow
def test_smollm2_benchmark_reports_speed_ratios_load_time_and_memory():
    pytest.importorskip("transformers")
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_smollm2", "--tokens", "3", "--rounds", "1",
                          "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"^\| transformers `generate\(\)` \(same tokens\) \| [\d.]+ \| \*\*[\d.]+x\*\* faster",
                     out.stdout, re.M), out.stdout
    assert re.search(r"^\| weight-streaming floor .*\| \*\*[\d.]+x\*\* the floor", out.stdout, re.M), out.stdout
    for name in ("ours", "transformers"):  # first token and decoding steps, each against the floor
        assert re.search(rf"^\| {name} \| [\d.]+ \| -?[\d.]+ \| \*\*-?[\d.]+x\*\* \|$", out.stdout, re.M), out.stdout
    assert re.search(r"^\| `load_smollm2\(\)` wall time \| [\d.]+ s \|", out.stdout, re.M), out.stdout
    ratio = float(re.search(r"\*\*([\d.]+)x\*\* parameters \+ KV cache", out.stdout).group(1))
    assert ratio >= 1.0  # the parameters and the cache are alive while it generates


def test_smollm2_benchmark_rejects_bad_arguments():
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_smollm2", "--tokens", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--tokens must be >= 1, got 0" in out.stderr
