"""The notebook runner really fails on a broken notebook, and an untouched exercise does not fail it."""

import subprocess
import sys

import nbformat


def _run_nbmake(tmp_path, cells: list[str]) -> subprocess.CompletedProcess:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbmake", "--nbmake-timeout=60", "-p", "no:cacheprovider", "-q", str(path)],
        capture_output=True, text=True, cwd=tmp_path,
    )


def test_broken_notebook_fails(tmp_path):
    out = _run_nbmake(tmp_path, ["x = 1", "raise RuntimeError('deliberately broken')"])
    assert out.returncode != 0
    assert "deliberately broken" in out.stdout


def test_untouched_exercise_passes(tmp_path):
    out = _run_nbmake(tmp_path, ["from helpers.exercises import check", "answer = ...",
                                 "check('ex', answer, expected=2, hint='one plus one')"])
    assert out.returncode == 0, out.stdout
