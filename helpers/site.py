"""The course as a static website: ``python -m helpers.site build site/`` (full mode) or ``--fast``.

Each page is a solution notebook executed from scratch and converted with nbconvert: every plot, table and
sampled text as the run produced it. Each exercise shows the learner's version (``answer = ...``) and, behind
a click (``<details>``), the solved cell with its output. Widgets need a running kernel, so their output is
replaced by a note saying so. ``index.html`` holds the README's table of the notebooks; every page links to
the index, its neighbours, and the notebooks its text names. Each figure's ``<img>`` gets the alt text that
``helpers.plots`` put into the output's metadata.
"""

from __future__ import annotations

import argparse
import copy
import html
import json
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    "<div class='widget-note'><strong>Interactive widget.</strong> It needs a running kernel: open this notebook "
    "in JupyterLab (<code>make course</code> or <code>python -m helpers.setup course</code>) to use it.</div>"
)
TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{% block any_cell %}
{%- if 'course-solution' in cell.metadata.get('tags', []) -%}
<details class="course-solution"><summary>Show the solution</summary>
{{ super() }}
</details>
{%- else -%}
{{ super() }}
{%- endif -%}
{% endblock any_cell %}
{% block data_png scoped %}
{%- set alt = output | get_metadata('alt', 'image/png') or 'A figure without a description' -%}
{{ super() | replace('<img src=', '<img alt="' ~ (alt | escape_html) ~ '" src=', 1) }}
{%- endblock data_png %}
"""
STYLE = """<style>
.course-nav{font-family:sans-serif;margin:1em 2em;display:flex;gap:2em}
details.course-solution{margin:0.5em 0 1em 0;border-left:4px solid #4a8;padding-left:0.5em}
details.course-solution>summary{cursor:pointer;font-family:sans-serif;color:#276;font-weight:bold}
.widget-note{background:#fff7d6;border:1px solid #e0c060;padding:0.5em 1em;font-family:sans-serif}
</style>"""


def notebook_names(only: list[str] | None = None) -> list[str]:
    """The numbered notebooks in teaching order, or those whose number or name is in ``only``."""
    names = sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        wanted = set(only)
        picked = [n for n in names if n[:2] in wanted or n in wanted or n[:-6] in wanted]
        unknown = wanted - {n[:2] for n in picked} - set(picked) - {n[:-6] for n in picked}
        if unknown:
            raise ValueError(f"notebooks={sorted(unknown)}: not among {', '.join(n[:-6] for n in names)}")
        return picked
    return names


def execute(name: str, fast: bool, timeout: float = 1800.0) -> dict:
    """Run the solution notebook ``name`` from scratch in its own kernel and temporary folder; return it."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOKS / "solutions" / name, as_version=4)
    env = dict(os.environ, MPLBACKEND="module://matplotlib_inline.backend_inline",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env["COURSE_FAST"] = "1" if fast else "0"
    with tempfile.TemporaryDirectory(prefix="site-") as work:
        NotebookClient(nb, kernel_name="python3", timeout=int(timeout), resources={"metadata": {"path": work}}
                       ).execute(env=env)
    return json.loads(nbformat.writes(nb))


def page_notebook(name: str, executed: dict, solutions: bool = True) -> dict:
    """The notebook a page shows: exercises as given to learners, each followed by its hidden solution
    (or by nothing, without ``solutions``)."""
    learner = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
    out = copy.deepcopy(executed)
    cells = []
    for mine, done in zip(learner["cells"], executed["cells"]):
        if mine["cell_type"] == "code" and "".join(mine["source"]) != "".join(done["source"]):
            shown = copy.deepcopy(mine)
            shown["outputs"], shown["execution_count"] = [], None
            shown["id"] = f"{mine.get('id', 'cell')}-exercise"  # cell ids must stay unique
            cells.append(shown)
            if not solutions:
                continue
            done = copy.deepcopy(done)
            done.setdefault("metadata", {}).setdefault("tags", []).append("course-solution")
        cells.append(_without_widgets(done))
    out["cells"] = cells
    out.get("metadata", {}).pop("widgets", None)
    return out


def _without_widgets(cell: dict) -> dict:
    if cell["cell_type"] != "code":
        return cell
    cell = copy.deepcopy(cell)
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if WIDGET_MIME in data:
            output["data"] = {"text/html": WIDGET_NOTE, "text/plain": "Interactive widget: needs a running kernel."}
    return cell


def _title(nb: dict, name: str) -> str:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            m = re.search(r"^#\s+(.+)$", "".join(cell["source"]), re.MULTILINE)
            if m:
                return m.group(1).strip()
    return name


def _nav(names: list[str], i: int) -> str:
    parts = ["<nav class='course-nav'>", "<a href='index.html'>Contents</a>"]
    if i > 0:
        parts.append(f"<a href='{names[i - 1][:-6]}.html' rel='prev'>← {html.escape(names[i - 1][:-6])}</a>")
    if i + 1 < len(names):
        parts.append(f"<a href='{names[i + 1][:-6]}.html' rel='next'>{html.escape(names[i + 1][:-6])} →</a>")
    return "".join(parts) + "</nav>"


def link_notebooks(page: str, stems: set[str]) -> str:
    """Turn notebook names the text mentions (``<code>08_learning_rate</code>``, links to .ipynb) into links."""
    page = re.sub(r'href="(\d\d_[A-Za-z0-9_]+)\.ipynb"',
                  lambda m: f'href="{m.group(1)}.html"' if m.group(1) in stems else m.group(0), page)
    return re.sub(r"(?<!\">)(?<!'>)<code>(\d\d_[A-Za-z0-9_]+)</code>",
                  lambda m: f"<a href='{m.group(1)}.html'><code>{m.group(1)}</code></a>" if m.group(1) in stems
                  else m.group(0), page)


def render(nb: dict, names: list[str], i: int, stems: set[str]) -> str:
    """One page's HTML."""
    import nbformat
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    with tempfile.TemporaryDirectory() as tdir:
        (Path(tdir) / "course.html.j2").write_text(TEMPLATE)
        config = Config()
        config.HTMLExporter.template_name = "lab"
        config.HTMLExporter.extra_template_paths = [tdir]
        config.HTMLExporter.template_file = "course.html.j2"
        node = nbformat.reads(json.dumps(nb), as_version=4)  # joins sources given as lists of lines
        body, _ = HTMLExporter(config=config).from_notebook_node(node)
    nav = _nav(names, i)
    body = body.replace("</head>", STYLE + "\n</head>", 1)
    body = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + nav, body, count=1)
    body = body.replace("</body>", nav + "\n</body>", 1)
    return link_notebooks(body, stems)


def readme_table() -> list[tuple[str, list[str]]]:
    """The README's notebook table: (notebook stem, the other columns) per row, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The notebooks", 1)[1]
    rows = []
    for line in section.splitlines():
        m = re.match(r"^\|\s*`(\d\d_[A-Za-z0-9_]+)`\s*\|(.*)\|\s*$", line)
        if m:
            rows.append((m.group(1), [c.strip() for c in m.group(2).split("|")]))
        elif rows and not line.startswith("|"):
            break
    return rows


def index_page(names: list[str], fast: bool) -> str:
    """The contents page: the README's table, each notebook linked to its page."""
    from nbconvert.filters.markdown import markdown2html

    built = {n[:-6] for n in names}
    rows = [(stem, cols) for stem, cols in readme_table() if stem in built]
    rows += [(stem, [""]) for stem in sorted(built - {s for s, _ in rows})]  # not yet in the README
    # the topics only: times and memory are in the README's budget table, generated by `make full`
    md = ["| notebook | what it teaches |", "|---|---|"]
    for stem, cols in rows:
        md.append(f"| [{stem}]({stem}.html) | " + " | ".join(cols) + " |")
    intro = (ROOT / "README.md").read_text(encoding="utf-8").split("\n\n")[1]
    mode = ("fast mode (tiny sizes, as the tests run them: figures are smaller and noisier than the course's)"
            if fast else "full mode")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>LLM parameters and hyperparameters</title>"
        + STYLE + "</head><body style='font-family:sans-serif;max-width:60em;margin:2em auto'>"
        + "<h1>LLM parameters and hyperparameters, hands-on</h1>" + markdown2html(intro)
        + f"<p>Every page is a notebook executed from scratch in {mode}. Exercises show the learner's cell; the "
        "solution and its output are behind <em>Show the solution</em>. Sliders and other widgets need a running "
        "kernel: install the course (<code>make course</code>) to use them.</p>"
        + markdown2html("\n".join(md)) + "</body></html>\n"
    )


def _build_one(args: tuple[str, bool, float, Path | None]) -> tuple[str, dict, float]:
    name, fast, timeout, keep = args
    start = time.monotonic()
    saved = keep / name if keep is not None else None
    if saved is not None and saved.exists():
        return name, json.loads(saved.read_text(encoding="utf-8")), 0.0
    nb = execute(name, fast, timeout)
    if saved is not None:
        saved.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return name, nb, time.monotonic() - start


def build(out: Path, fast: bool = False, only: list[str] | None = None, jobs: int = 1,
          timeout: float = 1800.0, executed: Path | None = None, solutions: bool = True) -> list[Path]:
    """Execute the notebooks and write the site into ``out``; return the pages written, index first.

    With ``executed``, executed notebooks are kept in that folder and reused by the next build (delete the
    folder after changing a notebook or the helpers, or the pages show the old run).
    """
    if jobs < 1:
        raise ValueError(f"jobs={jobs}: must be at least 1")
    names = notebook_names(only)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if executed is not None:
        Path(executed).mkdir(parents=True, exist_ok=True)
    todo = [(n, fast, timeout, Path(executed) if executed is not None else None) for n in names]
    if jobs == 1:
        done = [_build_one(t) for t in todo]
    else:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            done = list(pool.map(_build_one, todo))
    stems = {n[:-6] for n in names}
    pages = [out / "index.html"]
    pages[0].write_text(index_page(names, fast), encoding="utf-8")
    for i, (name, executed, seconds) in enumerate(done):
        page = out / f"{name[:-6]}.html"
        page.write_text(render(page_notebook(name, executed, solutions), names, i, stems), encoding="utf-8")
        pages.append(page)
        print(f"{name}: executed in {seconds:.0f} s", flush=True)
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.site", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="execute the notebooks and write the website")
    p.add_argument("out", type=Path, help="the folder to write (replaced)")
    p.add_argument("--fast", action="store_true", help="execute in fast mode (COURSE_FAST=1), as CI does")
    p.add_argument("--notebooks", nargs="+", help="only these (numbers or names), e.g. 00 02")
    p.add_argument("--jobs", type=int, default=1, help="notebooks executed at a time (default 1)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per cell (default 1800)")
    p.add_argument("--executed", type=Path, help="keep executed notebooks here and reuse them next time")
    p.add_argument("--no-solutions", action="store_true", help="leave the solutions out (a site for students)")
    args = parser.parse_args(argv)
    pages = build(args.out, fast=args.fast, only=args.notebooks, jobs=args.jobs, timeout=args.timeout,
                  executed=args.executed, solutions=not args.no_solutions)
    print(f"site: {len(pages)} pages in {args.out}; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
