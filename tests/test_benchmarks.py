"""The benchmarks still run: the training benchmark's turn-taking children, on a tiny batch."""

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
