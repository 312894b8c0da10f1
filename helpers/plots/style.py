"""The course's figure style and the alt text every figure carries.

Sizes: JupyterLab shows a figure at ``inches x dpi`` pixels and scales it down when it is wider than the
output area (about 950 px at the default window width), shrinking its text with it. So every course
figure is at most ``MAX_WIDTH_IN`` inches wide at ``DPI``, and no text is smaller than ``MIN_FONT_PT``:
nothing is scaled down, and the smallest label is about 11 px high.

Alt text: each plot function stores a short description in its figure (``set_alt``); a figure without
one gets a description generated from what it shows (``describe``: titles, axis labels, the kind of
chart, the legend). In IPython the PNG of a figure is emitted with that text in its output metadata
(``{"image/png": {"alt": ...}}``), which ``helpers.site`` writes into ``<img alt="...">``.
"""

from __future__ import annotations

import textwrap

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

DPI = 100
OUTPUT_WIDTH_PX = 950  # JupyterLab's output area at its default width (measured: 900-1000 px)
MAX_WIDTH_IN = 9.0  # 900 px: fits with room for the few pixels bbox_inches="tight" may add
MIN_FONT_PT = 8.0  # 8 pt at 100 dpi = 11 px
MAX_ALT_CHARS = 600

RC = {
    "figure.dpi": DPI,
    "savefig.dpi": "figure",
    "figure.figsize": (7.0, 3.8),
    "font.size": 10.0,
    "axes.titlesize": 11.0,
    "axes.labelsize": 10.0,
    "xtick.labelsize": 9.0,
    "ytick.labelsize": 9.0,
    "legend.fontsize": 9.0,
    "legend.title_fontsize": 9.0,
    "figure.titlesize": 12.0,
}


def apply_style() -> None:
    """Set the course's matplotlib defaults (done when ``helpers.plots`` is imported)."""
    mpl.rcParams.update(RC)


def set_alt(fig: Figure, text: str) -> Figure:
    """Store ``text`` as the figure's alt text (shown instead of the image to readers who cannot see it)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string describing the figure, got {text!r}")
    fig.course_alt = " ".join(text.split())
    return fig


def _panel(ax: Axes) -> str:
    """One sentence about one panel: its title, the kind of chart, its axes and its legend."""
    kinds = []
    if ax.images:
        kinds.append("heat map")
    if any(isinstance(c, BarContainer) for c in ax.containers):
        kinds.append("bar chart")
    if any(isinstance(c, PathCollection) for c in ax.collections):
        kinds.append("scatter plot")
    if any(len(line.get_xdata()) > 2 for line in ax.get_lines()):
        kinds.append("line chart")
    words = [" and ".join(kinds) or "chart"]
    title = ax.get_title() or ax.get_title("left") or ax.get_title("right")
    if title:
        words.insert(0, f"{' '.join(title.split())}:")
    x, y = ax.get_xlabel(), ax.get_ylabel()
    if y and x:
        words.append(f"of {y} against {x}")
    elif y or x:
        words.append(f"of {y or x}")
    legend = ax.get_legend()
    if legend is not None:
        names = [t.get_text() for t in legend.get_texts() if t.get_text()]
        if names:
            words.append("showing " + ", ".join(names))
    return " ".join(words)


def _panels(fig: Figure) -> list[Axes]:
    return [ax for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ALT_CHARS else text[: MAX_ALT_CHARS - 1].rstrip() + "…"


def describe(fig: Figure) -> str:
    """A description generated from the figure's content: its title and one sentence per panel."""
    panels = _panels(fig)
    parts = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        parts.append(fig._suptitle.get_text())
    if len(panels) > 1:
        parts.append(f"{len(panels)} panels")
    parts += [_panel(ax) for ax in panels]
    return _clip(". ".join(p.rstrip(".") for p in parts if p) or "An empty figure")


def alt_text(fig: Figure) -> str:
    """The figure's alt text: the one its plot function stored, then a generated sentence for each panel
    whose title it does not already name (so every title is in it); without a stored one, ``describe``."""
    own = getattr(fig, "course_alt", None)
    if not own:
        return describe(fig)
    extra = [_panel(ax) for ax in _panels(fig)
             if " ".join(ax.get_title().split()) and " ".join(ax.get_title().split()) not in own]
    return _clip(". ".join([own.rstrip(".")] + [p.rstrip(".") for p in extra]))


def wrap_titles(fig: Figure) -> None:
    """Break a panel title that is wider than its panel into lines (long titles of neighbouring panels
    otherwise run into each other)."""
    for ax in fig.axes:
        title = ax.title
        text = title.get_text()
        width_pt = ax.get_position().width * fig.get_figwidth() * 72
        chars = int(width_pt / (0.5 * title.get_fontsize()) * 1.15)  # about 0.5 em a character; tight_layout widens panels
        if text and chars >= 12 and any(len(line) > chars for line in text.split("\n")):
            title.set_text("\n".join(textwrap.fill(line, chars) for line in text.split("\n")))


def finish(fig: Figure, alt: str, layout: bool = True) -> Figure:
    """The last step of every plot function: titles that fit, tight layout, the alt text, the display hook."""
    if layout:
        wrap_titles(fig)
        fig.tight_layout()
    set_alt(fig, alt)
    install_display()
    return fig


def _with_alt(base):
    """Wrap IPython's PNG formatter for figures so that its output carries the alt text as metadata."""
    def png_with_alt(fig: Figure):
        out = base(fig)
        if out is None:
            return None
        data, md = out if isinstance(out, tuple) else (out, None)
        return data, dict(md or {}, alt=alt_text(fig))

    png_with_alt.course_alt = True
    return png_with_alt


def install_display() -> bool:
    """In IPython, make every figure's PNG output carry its alt text; return whether it is installed.

    The inline backend registers its PNG formatter when it is activated (the first figure of a session,
    or ``%matplotlib inline``), replacing any earlier one, so this is called again by every plot function
    and after every cell, before the backend shows the cell's figures.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    formatter = shell.display_formatter.formatters["image/png"]
    try:
        current = formatter.lookup_by_type(Figure)
    except KeyError:
        return False  # no PNG output for figures here (another backend or format)
    if not getattr(current, "course_alt", False):
        formatter.for_type(Figure, _with_alt(current))
    if not getattr(shell, "_course_alt_hook", False):
        shell.events.register("post_execute", install_display)
        shell._course_alt_hook = True
    return True
