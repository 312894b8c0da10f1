"""The rendered course in headless Chromium: built in fast mode from every notebook, served over HTTP; every
page loads, every figure is an image that renders, links between pages work, solutions are behind a click
and widgets are replaced by a note."""

import contextlib
import functools
import http.server
import os
import re
import threading
from pathlib import Path

import pytest
from jupyter_browser import browser_page, require_browser

from helpers import site

ONLY = os.environ.get("COURSE_SITE_NOTEBOOKS", "").split() or None  # e.g. "00 01" for a quick local run


@contextlib.contextmanager
def serve(folder: Path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    require_browser()
    out = tmp_path_factory.mktemp("site")
    pages = site.build(out, fast=True, only=ONLY, jobs=2, timeout=600)
    return out, pages


IMAGES_JS = """() => [...document.images].map(i => ({src: i.src.slice(0, 40), complete: i.complete,
                                                   width: i.naturalWidth}))"""


@pytest.mark.browser
def test_every_page_loads_with_its_figures_and_links(built):
    out, pages = built
    names = [p.name for p in pages]
    assert names[0] == "index.html" and len(names) == len(site.notebook_names(ONLY)) + 1
    with serve(out) as base, browser_page() as page:
        failed = []
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}")
                if r.url.startswith(base) and r.status >= 400 else None)
        page.goto(f"{base}/index.html", wait_until="load")
        index_links = page.eval_on_selector_all("a[href$='.html']", "els => els.map(e => e.getAttribute('href'))")
        assert sorted(index_links) == sorted(names[1:]), "the contents page links every notebook page once"
        figures = 0
        for name in names[1:]:
            response = page.goto(f"{base}/{name}", wait_until="load")
            assert response.status == 200, name
            assert page.title(), name
            page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=30_000)
            images = page.evaluate(IMAGES_JS)
            broken = [i for i in images if i["width"] == 0]
            assert not broken, f"{name}: images that do not render: {broken}"
            figures += len(images)
            # every link to another page of the course resolves
            for href in set(page.eval_on_selector_all("a[href$='.html']", "els => els.map(e => e.getAttribute('href'))")):
                assert not href.startswith(("http:", "https:")) and (out / href).is_file(), f"{name}: dead link {href}"
            assert "widget-view+json" not in page.content()
        assert figures > 0, "no figure on any page"
        assert not failed, failed

        # following the links: contents -> first page -> "next" all the way to the last page
        page.goto(f"{base}/index.html", wait_until="load")
        page.click(f"a[href='{names[1]}']")
        for name in names[2:]:
            page.locator("nav.course-nav a[rel='next']").first.click()
            page.wait_for_url(re.compile(re.escape(name) + "$"))
        assert page.locator("nav.course-nav a[rel='next']").count() == 0


@pytest.mark.browser
def test_solutions_are_behind_a_click_and_widgets_are_a_note(built):
    out, pages = built
    with serve(out) as base, browser_page() as page:
        with_exercises = [p.name for p in pages[1:]]
        page.goto(f"{base}/{with_exercises[0]}", wait_until="load")
        details = page.locator("details.course-solution")
        assert details.count() >= 1
        first = details.first
        assert first.get_attribute("open") is None
        assert not first.locator(".jp-Cell").first.is_visible(), "the solution shows before the click"
        first.locator("summary").click()
        assert first.locator(".jp-Cell").first.is_visible()
        # the learner's version of the exercise comes just before its solution
        assert "answer = ..." in page.content()
        widget_pages = [p.name for p in pages if p.name.startswith(("01_", "06_"))]
        for name in widget_pages:
            page.goto(f"{base}/{name}", wait_until="load")
            assert page.locator(".widget-note").count() >= 1, name
            assert "needs a running kernel" in page.locator(".widget-note").first.inner_text()
