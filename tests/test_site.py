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
    assert len(tagged) == exercises > 0  # one hidden solution per exercise cell
    assert len(with_solutions["cells"]) == len(learner["cells"]) + exercises
    without = site.page_notebook(name, solved, solutions=False)
    assert [c["source"] for c in without["cells"]] == [c["source"] for c in learner["cells"]]
    assert len({c.get("id") for c in with_solutions["cells"]}) == len(with_solutions["cells"])  # ids unique


def test_site_writes_each_figures_alt_text_into_its_img():
    """A PNG output with {"alt": ...} in its metadata becomes <img alt="..."> (escaped); one without gets a
    placeholder rather than no alt attribute."""
    import base64

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats

    from helpers.plots import alt_text, install_display
    from helpers.plots.training import plot_bars

    shell = InteractiveShell.instance()
    select_figure_formats(shell, {"png"})
    assert install_display()
    fig = plot_bars({"adam": 4.1, "sgd <plain>": 5.2}, ylabel="loss", title='optimisers "tuned"')
    data, md = shell.display_formatter.format(fig)
    plt.close(fig)
    png = data["image/png"]
    png = png if isinstance(png, str) else base64.b64encode(png).decode()
    outputs = [{"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}, "metadata": md},
               {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}, "metadata": {}}]
    nb = {"cells": [{"cell_type": "code", "execution_count": 1, "id": "a", "metadata": {}, "source": "fig",
                     "outputs": outputs}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    page = site.render(nb, ["00_x.ipynb"], 0, {"00_x"})
    alts = _img_alts(page)
    assert len(alts) == 2
    assert alts[0] == alt_text(fig) and "sgd <plain> 5.2" in alts[0] and 'optimisers "tuned"' in alts[0]
    assert alts[1] == "A figure without a description"


def _img_alts(page: str) -> list[str | None]:
    """The alt attribute of every <img> of a page (None where it has none), as a browser reads it."""
    from html.parser import HTMLParser

    class Images(HTMLParser):
        def __init__(self):
            super().__init__()
            self.alts = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.alts.append(dict(attrs).get("alt"))

    parser = Images()
    parser.feed(page)
    return parser.alts
