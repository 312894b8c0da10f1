"""Real-browser smoke test: JupyterLab in headless Chromium runs 00_start_here through its Run menu."""

from pathlib import Path

import pytest
from jupyter_browser import browser_page, course_copy, jupyter_lab, open_and_run_all, wait_for_text

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.browser
def test_start_here_runs_in_jupyterlab(tmp_path):
    work = course_copy(tmp_path, NOTEBOOKS / "00_start_here.ipynb")
    with jupyter_lab(work, extra_env={"COURSE_FAST": "1"}) as server, browser_page() as page:
        open_and_run_all(page, server, "00_start_here.ipynb")
        wait_for_text(page, server, "environment report")
        wait_for_text(page, server, "problems: none")
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert "Traceback" not in " ".join(errors.all_inner_texts())
