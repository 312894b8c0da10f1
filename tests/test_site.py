"""helpers.site without a browser: the page notebook an executed solution notebook becomes."""

import json
from pathlib import Path

from helpers import site

ROOT = Path(__file__).resolve().parents[1]


def test_site_page_without_solutions_keeps_only_the_learners_cells():
    """The page notebook built from an executed solution: exercises open, solutions hidden or left out."""
    name = "02_backpropagation.ipynb"
    solved = json.loads((ROOT / "notebooks" / "solutions" / name).read_text(encoding="utf-8"))
    learner = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
    exercises = sum(a["source"] != b["source"] for a, b in zip(learner["cells"], solved["cells"]))
    with_solutions = site.page_notebook(name, solved)
    tagged = [c for c in with_solutions["cells"] if "course-solution" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == exercises == 3
    assert len(with_solutions["cells"]) == len(learner["cells"]) + exercises
    without = site.page_notebook(name, solved, solutions=False)
    assert [c["source"] for c in without["cells"]] == [c["source"] for c in learner["cells"]]
    assert len({c.get("id") for c in with_solutions["cells"]}) == len(with_solutions["cells"])  # ids unique
