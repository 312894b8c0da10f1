"""The course-wide English-German glossary, collected from the glossaries that end the notebooks.

Each notebook's last cell is a Markdown table headed "## Glossary" whose first two columns are the English
term and the German one (a third column, where present, says what the term means in that notebook).
``GLOSSARY.md`` at the repository root is generated from them, one line per term, so that the two cannot
drift apart: ``python -m helpers.glossary`` rewrites it and ``tests/test_glossary.py`` compares.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
GLOSSARY_MD = ROOT / "GLOSSARY.md"
_ROW = re.compile(r"^\|(.+)\|\s*$")


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def glossary_cell(path: Path) -> str:
    """The source of the notebook's glossary: its last cell, which must be Markdown starting with "## Glossary"."""
    cells = json.loads(Path(path).read_text(encoding="utf-8"))["cells"]
    last = cells[-1] if cells else None
    if last is None or last["cell_type"] != "markdown" or not _source(last).startswith("## Glossary"):
        raise ValueError(f"{Path(path).name}: the last cell must be a Markdown cell starting with '## Glossary'")
    return _source(last)


def parse_glossary(text: str) -> list[tuple[str, str]]:
    """(English, German) pairs from a glossary table; the header row and the separator row are skipped."""
    rows = [m.group(1) for line in text.splitlines() if (m := _ROW.match(line.strip()))]
    pairs = []
    for row in rows[2:]:  # rows[0] is the header, rows[1] the |---| separator
        cols = [c.strip() for c in row.split("|")]
        if len(cols) < 2 or not cols[0] or not cols[1]:
            raise ValueError(f"glossary row needs an English and a German term, got {row!r}")
        pairs.append((cols[0], cols[1]))
    if not pairs:
        raise ValueError("glossary has no rows")
    return pairs


def notebook_glossary(path: Path) -> list[tuple[str, str]]:
    """The (English, German) pairs of one notebook's glossary."""
    return parse_glossary(glossary_cell(path))


def course_glossary(notebooks: Path = NOTEBOOKS) -> list[tuple[str, str, list[str]]]:
    """Every term of every notebook once: (English, German, notebook numbers), sorted by the English term.

    A term must have the same German translation wherever it appears; a ValueError names any that does not.
    """
    seen: dict[str, tuple[str, str, list[str]]] = {}
    for path in sorted(Path(notebooks).glob("[0-9][0-9]_*.ipynb")):
        number = path.name[:2]
        for english, german in notebook_glossary(path):
            key = english.lower()
            if key in seen and seen[key][1] != german:
                raise ValueError(f"{english!r} is {german!r} in notebook {number} but {seen[key][1]!r} in "
                                 f"notebook {seen[key][2][0]}: use one German term across the course")
            seen.setdefault(key, (english, german, []))[2].append(number)
    return sorted(seen.values(), key=lambda t: t[0].lower())


def render(entries: list[tuple[str, str, list[str]]]) -> str:
    """GLOSSARY.md's text for ``entries`` from :func:`course_glossary`."""
    lines = [
        "# Glossary: English ↔ Deutsch",
        "",
        "Every term from the glossaries at the end of the notebooks, once, with the German term practitioners use.",
        "Generated from the notebooks by `python -m helpers.glossary`; `tests/test_glossary.py` fails when it is",
        "out of date. Edit a notebook's glossary (and its solution), then regenerate.",
        "",
        "| English | Deutsch | notebooks |",
        "|---|---|---|",
    ]
    lines += [f"| {en} | {de} | {', '.join(nbs)} |" for en, de, nbs in entries]
    return "\n".join(lines) + "\n"


def main() -> None:
    GLOSSARY_MD.write_text(render(course_glossary()), encoding="utf-8")
    print(f"wrote {GLOSSARY_MD.name}")


if __name__ == "__main__":
    main()
