"""Plotting functions, one submodule per area of the course (the only place that imports matplotlib).

Importing it sets the course's figure style (figures that fit JupyterLab's width, text of at least
8 pt) and makes every figure's displayed PNG carry its alt text: see ``helpers.plots.style``.
"""

from helpers.plots.style import alt_text, apply_style, describe, install_display, set_alt

__all__ = ["alt_text", "apply_style", "describe", "install_display", "set_alt"]

apply_style()
install_display()
