"""The attention explorer: pick a layer and a head, see its attention map on your text.

The maps of every layer and head are computed once per text (``helpers.attention``); moving the
sliders only redraws. Like the sampling playground it can be driven from Python (set the controls'
values) and shows a ValueError's message (say, a text longer than the context window) in the widget.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import torch

from helpers.attention import attention_entropy, attention_weights, previous_token_score
from helpers.plots.attention import plot_attention_map
from helpers.plots.sampling import figure_png


def attention_explorer(model, tokenizer, text: str = "Once upon a time, there was a little girl named Lily.",
                       layer: int = 0, head: int = 0) -> widgets.VBox:
    """Sliders for layer and head, a text box; shows that head's attention map and two measures.

    The returned box has ``.controls`` (``layer``, ``head``, ``text``), ``.readout``, ``.error``
    (HTML), ``.chart`` (an Image) and ``.update()``. CSS classes: ``explorer-<name>``.
    """
    L, H = model.config.n_layer, model.config.n_head
    controls = {
        "layer": widgets.IntSlider(value=layer, min=0, max=L - 1, description="layer", continuous_update=False),
        "head": widgets.IntSlider(value=head, min=0, max=H - 1, description="head", continuous_update=False),
        "text": widgets.Textarea(value=text, description="text", continuous_update=False,
                                 layout=widgets.Layout(width="700px")),
    }
    readout, error, chart = widgets.HTML(), widgets.HTML(), widgets.Image(format="png")
    for name, w in {**controls, "readout": readout, "error": error, "chart": chart}.items():
        w.add_class(f"explorer-{name}")
    state: dict = {"text": None}

    def update(*_) -> None:
        text_now = controls["text"].value
        try:
            if state["text"] != text_now:  # recompute the maps only when the text changed
                ids = tokenizer.encode(text_now)
                if len(ids) < 2:
                    raise ValueError(f"text must have at least 2 tokens, got {len(ids)}")
                idx = torch.tensor([ids], device=model.device)
                state.update(text=text_now, maps=attention_weights(model, idx),
                             labels=[tokenizer.token_str(i) for i in ids])
        except ValueError as err:
            error.value = f"<b style='color:#b00'>ValueError:</b> {html.escape(str(err))}"
            state["text"] = None
            return
        error.value = ""
        lay, hd = controls["layer"].value, controls["head"].value
        w = state["maps"][lay, hd]  # (T, T)
        prev, ent = float(previous_token_score(w)), float(attention_entropy(w))
        readout.value = (f"<code>layer {lay}, head {hd}: previous-token score {prev:.2f}, "
                         f"entropy {ent:.2f} nats, {w.shape[0]} tokens</code>")
        chart.value = figure_png(plot_attention_map(w, state["labels"], title=f"layer {lay}, head {hd}"))

    for w in controls.values():
        w.observe(update, names="value")
    box = widgets.VBox([controls["text"], widgets.HBox([controls["layer"], controls["head"]]), error, readout,
                        chart])
    box.controls, box.readout, box.error, box.chart, box.update = controls, readout, error, chart, update
    update()
    return box
