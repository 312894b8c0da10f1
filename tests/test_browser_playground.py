"""Real-browser test: notebook 06 runs in JupyterLab (headless Chromium) and its sampling playground
reacts to the temperature slider and switches to SmolLM2."""

from pathlib import Path

import pytest
from jupyter_browser import (
    browser_page,
    course_copy,
    failure_report,
    jupyter_lab,
    open_and_run_all,
    wait_for_text,
)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "06_sampling_temperature_top_k_top_p.ipynb"
READOUT = ".playground-readout"

def _readout(page) -> str:
    return page.locator(READOUT).first.inner_text()


def _drag_temperature_to_zero(page) -> None:
    """Drag the slider's handle past the left end of its track: the slider stops at its minimum, 0.

    (A click at the very edge of the track does not always register; a drag beyond it always ends at
    the minimum.)"""
    track = page.locator(".playground-temperature .noUi-target, .playground-temperature .slider").first
    handle = page.locator(".playground-temperature .noUi-handle").first
    track.scroll_into_view_if_needed()
    box, grip = track.bounding_box(), handle.bounding_box()
    assert box is not None and grip is not None, "the temperature slider is not visible"
    y = grip["y"] + grip["height"] / 2
    page.mouse.move(grip["x"] + grip["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(box["x"] - 40, y, steps=8)
    page.mouse.up()


def _move_temperature(page, fraction: float) -> None:
    """Click the temperature slider's track at ``fraction`` of its width (noUiSlider jumps there)."""
    track = page.locator(".playground-temperature .noUi-target, .playground-temperature .slider").first
    track.scroll_into_view_if_needed()
    box = track.bounding_box()
    assert box is not None, "the temperature slider is not visible"
    page.mouse.click(box["x"] + fraction * box["width"], box["y"] + box["height"] / 2)


@pytest.mark.browser
def test_playground_reacts_to_the_temperature_slider(tmp_path):
    work = course_copy(tmp_path, NOTEBOOK)
    with jupyter_lab(work, extra_env={"COURSE_FAST": "1"}) as server, browser_page() as page:
        open_and_run_all(page, server, NOTEBOOK.name)
        try:
            page.locator(READOUT).first.wait_for(timeout=240_000)
        except Exception as err:
            raise AssertionError("the playground never appeared\n" + failure_report(page, server)) from err
        page.wait_for_function(f"() => document.querySelector('{READOUT}').innerText.includes('tokens can be drawn')",
                               timeout=60_000)
        before = _readout(page)
        assert "T = 1.00" in before, before
        chart_before = page.locator(".playground-chart").first.get_attribute("src")

        _move_temperature(page, 0.15)  # the slider spans 0..2: about T = 0.3
        page.wait_for_function(f"(old) => document.querySelector('{READOUT}').innerText !== old", arg=before,
                               timeout=60_000)
        after = _readout(page)
        assert "T = 1.00" not in after and "tokens can be drawn" in after, after
        page.wait_for_function("(old) => document.querySelector('.playground-chart').getAttribute('src') !== old",
                               arg=chart_before, timeout=30_000)

        _drag_temperature_to_zero(page)  # T = 0: greedy, exactly one token left
        try:
            page.wait_for_function(f"() => document.querySelector('{READOUT}').innerText.includes('T = 0.00')",
                                   timeout=60_000)
        except Exception as err:
            raise AssertionError(f"T = 0 never showed; readout: {_readout(page)!r}\n"
                                 + failure_report(page, server)) from err
        assert "1 token can be drawn" in _readout(page)

        greedy_base = _readout(page)  # the model menu: SmolLM2 gets a chat prompt and its own distribution
        page.locator(".playground-model select").first.select_option("SmolLM2-135M-Instruct")
        try:
            page.wait_for_function("() => document.querySelector('.playground-prompt textarea').value"
                                   ".includes('<|im_start|>assistant')", timeout=60_000)
            page.wait_for_function(f"(old) => {{ const t = document.querySelector('{READOUT}').innerText; "
                                   "return t !== old && t.includes('can be drawn'); }",  # not 'loading ...'
                                   arg=greedy_base, timeout=120_000)
        except Exception as err:
            raise AssertionError(f"switching to SmolLM2 showed nothing new; readout: {_readout(page)!r}\n"
                                 + failure_report(page, server)) from err
        assert "T = 0.00" in _readout(page) and "1 token can be drawn" in _readout(page)

        wait_for_text(page, server, "ex3")  # the notebook ran to its end
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert "Traceback" not in " ".join(errors.all_inner_texts())
        assert page.locator(".playground-error").first.inner_text().strip() == ""
