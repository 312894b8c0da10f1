"""Drive a real JupyterLab in headless Chromium, for the browser tests.

The server runs on 127.0.0.1 with its own temporary config, data, runtime and workspace folders, so
a test never reads or changes a learner's JupyterLab settings. Chromium is Debian's
(``/usr/bin/chromium``): browser downloads by test tools do not work offline.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# JupyterLab user settings for every test server: start the kernel without asking, attach every cell to
# the page (by default cells far outside the viewport are left out of the DOM), never fetch news.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def _write_lab_settings(root: Path) -> Path:
    for plugin, values in LAB_SETTINGS.items():
        path = root / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return root


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_browser() -> str:
    """Chromium's path; outside CI a missing Chromium or Playwright skips the test, in CI it fails."""
    path = chromium_path()
    missing = []
    if path is None:
        missing.append("Debian's chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"browser test needs {' and '.join(missing)}")
        pytest.skip(f"needs {' and '.join(missing)}")
    return path


def course_copy(tmp_path: Path, notebook: Path) -> Path:
    """Check the browser is there, then copy ``notebook`` into a fresh folder for the test server to serve."""
    require_browser()
    work = tmp_path / "course"
    work.mkdir()
    shutil.copy(notebook, work)
    return work


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def jupyter_lab(root_dir: Path, extra_env: dict[str, str] | None = None, timeout: float = 90) -> Iterator[str]:
    """Start JupyterLab serving ``root_dir``; yield its base URL (``http://127.0.0.1:PORT``) with the token."""
    port, token = _free_port(), secrets.token_hex(16)
    home = root_dir.parent / f"jupyter-home-{port}"
    dirs = {name: home / name for name in ("config", "data", "runtime", "workspaces", "settings")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    _write_lab_settings(dirs["settings"])
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
               JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
               JUPYTER_PLATFORM_DIRS="1", **(extra_env or {}))
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
        f"--port={port}", f"--ServerApp.token={token}", f"--ServerApp.root_dir={root_dir}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}", "--LabApp.news_url=", "--ServerApp.open_browser=False",
    ]
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed in finally
    _SERVER_LOGS[f"{port}"] = home / "server.log"
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited early:\n{(home / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer in {timeout} s")
            time.sleep(0.5)
        yield f"{base}?token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


_SERVER_LOGS: dict[str, Path] = {}  # port -> the server's log file, for failure reports


def failure_report(page, server: str) -> str:
    """What a failing test should show: cell prompts, the end of the outputs, the page's console, the server log."""
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    shown = "\n---\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    console = "\n".join(getattr(page, "console_lines", [])[-40:])
    port = server.split("?token=")[0].rsplit(":", 1)[-1]
    log_path = _SERVER_LOGS.get(port)
    log = log_path.read_text()[-3000:] if log_path and log_path.exists() else "(no log)"
    return (f"prompts: {prompts}\noutputs (end):\n{shown[-2500:]}\nbrowser console (end):\n{console}\n"
            f"server log (end):\n{log}")


def notebook_url(server: str, notebook: str) -> str:
    base, token = server.split("?token=")
    return f"{base}/lab/tree/{notebook}?token={token}"


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    """A fresh headless Chromium page (Playwright), closed afterwards."""
    from playwright.sync_api import sync_playwright

    path = require_browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.console_lines = []  # what the page logged: shown when a test fails
            page.on("console", lambda m: page.console_lines.append(f"{m.type}: {m.text}"[:500]))
            page.on("pageerror", lambda e: page.console_lines.append(f"pageerror: {e}"[:500]))
            yield page
        finally:
            browser.close()


ALL_QUEUED_JS = """() => {
    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
    return prompts.length > 0 && prompts.every(p => /\\[(\\*|\\d+)\\]/.test(p.innerText));
}"""


def open_and_run_all(page, server: str, notebook: str, timeout_s: float = 180) -> None:
    """Open ``notebook`` in JupyterLab, wait for its kernel, and run every cell through the Run menu.

    On a busy machine a Run All that lands while the kernel is still connecting can be lost or run only
    the first cell. So after each click this waits (patiently: the page itself may be slow to update) until
    every code cell shows that it is queued ``[*]`` or done ``[n]``, and clicks again only when cells are
    still untouched while the kernel sits idle. Clicking again any sooner would run cells twice."""
    page.goto(notebook_url(server, notebook), timeout=timeout_s * 1000)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_s * 1000)
    # The execution indicator in the notebook's toolbar reports "idle" once the kernel has started.
    idle = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
    page.wait_for_selector(idle, timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    while True:
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        try:
            page.wait_for_function(ALL_QUEUED_JS, timeout=60_000)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError("Run All never queued every cell\n" + failure_report(page, server)) from None
            page.wait_for_selector(idle, timeout=timeout_s * 1000)  # let whatever did run finish first


def wait_for_text(page, server: str, text: str, timeout_ms: int = 180_000) -> None:
    """Wait until ``text`` appears in some cell output; on timeout, fail with what the page shows."""
    try:
        page.locator(".jp-OutputArea-output", has_text=text).first.wait_for(timeout=timeout_ms)
    except Exception as err:
        raise AssertionError(f"{text!r} never appeared\n" + failure_report(page, server)) from err
