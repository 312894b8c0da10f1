"""The student bundle: notebooks without solutions, the helpers with their assets, the set-up files; usable."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import handout

ROOT = Path(__file__).resolve().parents[1]


def test_bundle_has_the_course_and_no_solutions(tmp_path):
    out = handout.build_bundle(tmp_path / "course.zip")
    names = zipfile.ZipFile(out).namelist()
    top = "llm-params-course/"
    assert all(n.startswith(top) for n in names)
    rel = {n[len(top):] for n in names}
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert shipped and shipped <= rel
    assert not any("solutions" in n for n in rel), "the bundle must not hand out the solutions"
    assert {"pyproject.toml", "Makefile", "README.md", "environment.yml", "helpers/setup.py"} <= rel
    assets = {p.relative_to(ROOT).as_posix() for p in (ROOT / "helpers" / "assets").rglob("*") if p.is_file()}
    assert assets and assets <= rel
    assert not any(n.endswith(".pyc") or "__pycache__" in n for n in rel)
    assert not any(n.startswith(("tests/", "benchmarks/", ".ci/")) for n in rel)
    assert "TEACHING.md" not in rel, "the instructor notes give the answers"
    with zipfile.ZipFile(out) as zf:
        for name in shipped:
            nb = json.loads(zf.read(top + name))
            assert all(c["outputs"] == [] and c["execution_count"] is None
                       for c in nb["cells"] if c["cell_type"] == "code"), name
            # the exercises are still open: the placeholders are there
            assert any("answer = ..." in "".join(c["source"]) for c in nb["cells"]), name


def test_unpacked_bundle_loads_the_base_model(tmp_path):
    out = handout.build_bundle(tmp_path / "course.zip")
    zipfile.ZipFile(out).extractall(tmp_path / "x")
    course = tmp_path / "x" / "llm-params-course"
    code = "from helpers.checkpoints import load_base_model; m, tok = load_base_model(); print(len(tok.encode('hi there')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=course, capture_output=True, text=True,
                          env={"PYTHONPATH": str(course), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 0


def test_bundle_out_must_be_a_zip(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="out="):
        handout.build_bundle(tmp_path / "course.tar")
