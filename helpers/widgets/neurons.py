"""The neuron playground: sliders for two weights and a bias move a decision boundary.

The callback only calls pure functions (``helpers.neurons.neuron_report`` and
``helpers.plots.neurons.plot_decision_boundary``), so what the widget shows can be tested without
a browser by setting the sliders' values from Python.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from helpers.neurons import neuron_report
from helpers.plots.neurons import plot_decision_boundary


def neuron_widget(x: torch.Tensor, y: torch.Tensor, w: tuple[float, float] = (1.0, 1.0), b: float = 0.0,
                  limit: float = 5.0) -> widgets.VBox:
    """Sliders ``w0``, ``w1``, ``b`` (each in [-limit, limit]), a one-line report and the plot.

    The returned box has ``.sliders`` (dict name -> slider), ``.report`` (the text widget) and
    ``.update()`` (redraw from the current slider values).
    """
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (N, 2) for a 2-D playground, got {tuple(x.shape)}")
    if not limit > 0:
        raise ValueError(f"limit must be > 0, got {limit!r}")
    make = lambda name, value: widgets.FloatSlider(value=value, min=-limit, max=limit, step=0.05,
                                                   description=name, continuous_update=False)
    sliders = {"w0": make("w0", w[0]), "w1": make("w1", w[1]), "b": make("b", b)}
    report = widgets.HTML()
    out = widgets.Output()

    def update(*_) -> None:
        w_now = (sliders["w0"].value, sliders["w1"].value)
        try:
            report.value = f"<code>{neuron_report(x, y, w_now, sliders['b'].value)}</code>"
            fig = plot_decision_boundary(x, y, w_now, sliders["b"].value)
        except ValueError as err:  # show the message in the widget instead of a traceback
            report.value = f"<b>ValueError:</b> {err}"
            return
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    for s in sliders.values():
        s.observe(update, names="value")
    box = widgets.VBox([widgets.HBox(list(sliders.values())), report, out])
    box.sliders, box.report, box.update = sliders, report, update
    update()
    return box
