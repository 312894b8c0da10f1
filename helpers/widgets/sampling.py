"""The sampling playground: sliders for every sampling parameter, the next-token distribution they
produce, and a continuation sampled with them.

The callback only calls pure functions of ``helpers.sampling`` and ``helpers.plots.sampling``, so
the widget can be tested without a browser by setting the controls' values from Python. An invalid
combination (say min_tokens > max_tokens) shows the ValueError's message instead of a traceback, and
clears the readout, the chart and the sample, so nothing on screen pretends to belong to the invalid
settings. Any other failure (in drawing the chart, say) is shown the same way, never a traceback.

A menu switches between the base model and other models, by default SmolLM2-135M-Instruct, which is
loaded on its first selection only and gets a chat prompt in the prompt box.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping

import ipywidgets as widgets
import torch

from helpers.plots.sampling import distribution_summary, figure_png, plot_playground
from helpers.sampling import SamplingParams, generate, next_token_distribution

# name -> (widget class, value, min, max, step)
_SLIDERS = {
    "temperature": (widgets.FloatSlider, 1.0, 0.0, 2.0, 0.05),
    "top_k": (widgets.IntSlider, 0, 0, 100, 1),
    "top_p": (widgets.FloatSlider, 1.0, 0.05, 1.0, 0.05),
    "min_p": (widgets.FloatSlider, 0.0, 0.0, 0.5, 0.01),
    "repetition_penalty": (widgets.FloatSlider, 1.0, 0.5, 2.0, 0.05),
    "frequency_penalty": (widgets.FloatSlider, 0.0, -2.0, 2.0, 0.1),
    "presence_penalty": (widgets.FloatSlider, 0.0, -2.0, 2.0, 0.1),
    "max_tokens": (widgets.IntSlider, 40, 1, 200, 1),
    "min_tokens": (widgets.IntSlider, 0, 0, 50, 1),
}

SMOLLM2 = "SmolLM2-135M-Instruct"
BASE = "base model"

# A loader for the model menu: no arguments, returns (model, tokenizer, the prompt to show for it).
ModelLoader = Callable[[], tuple]


def smollm2_loader(device: str | torch.device | None = None,
                   question: str = "Write a short poem about the sea.") -> ModelLoader:
    """A loader for the model menu that loads SmolLM2 on its first call only (a few seconds) and then keeps it.

    The prompt it offers is ``question`` in SmolLM2's chat template, so the model answers it.
    """
    kept: list[tuple] = []

    def load() -> tuple:
        if not kept:
            from helpers.pretrained import chat_prompt, load_smollm2

            model, tokenizer = load_smollm2(device=device)
            kept.append((model, tokenizer, chat_prompt([{"role": "user", "content": question}])))
        return kept[0]

    return load


def sampling_playground(model, tokenizer, prompt: str = "Once upon a time", seed: int = 0,
                        top: int = 20, models: Mapping[str, ModelLoader] | None = None) -> widgets.VBox:
    """Sliders, a prompt box, a seed and a model menu; shows the processed next-token distribution and a sample.

    ``model``/``tokenizer`` are the first entry of the menu ("base model"). ``models`` adds entries:
    name -> a loader called on the entry's first selection (see ``smollm2_loader``); None adds SmolLM2
    (loaded lazily, on the base model's device), ``{}`` shows no menu. Each model keeps its own prompt:
    switching back shows what was last typed for it.

    The returned box has ``.controls`` (name -> widget, including ``prompt``, ``seed`` and ``model``),
    ``.readout``, ``.sample``, ``.error`` (HTML widgets), ``.chart`` (an Image) and ``.update()``.
    CSS classes for finding them in a page: ``playground-readout``, ``playground-sample``,
    ``playground-error``, ``playground-chart`` and ``playground-<name>`` on each control.
    """
    controls: dict[str, widgets.Widget] = {}
    for name, (cls, value, lo, hi, step) in _SLIDERS.items():
        controls[name] = cls(value=value, min=lo, max=hi, step=step, description=name, continuous_update=False,
                             style={"description_width": "130px"}, layout=widgets.Layout(width="380px"))
    controls["prompt"] = widgets.Textarea(value=prompt, description="prompt", continuous_update=False,
                                          layout=widgets.Layout(width="760px"))
    controls["seed"] = widgets.IntText(value=seed, description="seed", layout=widgets.Layout(width="200px"))
    models = {SMOLLM2: smollm2_loader(model.device)} if models is None else dict(models)
    controls["model"] = widgets.Dropdown(options=[BASE, *models], value=BASE, description="model",
                                         layout=widgets.Layout(width="380px", display="flex" if models else "none"))
    for name, w in controls.items():
        w.add_class(f"playground-{name.replace('_', '-')}")
    again = widgets.Button(description="sample again (seed + 1)")
    readout, sample, error = widgets.HTML(), widgets.HTML(), widgets.HTML()
    chart = widgets.Image(format="png")
    for w, css in [(readout, "readout"), (sample, "sample"), (error, "error"), (chart, "chart")]:
        w.add_class(f"playground-{css}")

    current = {"name": BASE, "switching": False}
    loaded = {BASE: (model, tokenizer)}  # name -> (model, tokenizer) once loaded
    prompts = {BASE: prompt}  # name -> the prompt last shown for it

    def show_error(message: str) -> None:
        error.value = message
        readout.value = ""
        sample.value = "<i>no sample for these settings</i>"
        chart.value = b""  # an empty image: the old chart would look like the answer to the new settings

    def update(*_) -> None:
        if current["switching"]:  # the prompt box is being refilled by a model switch, which updates once
            return
        model, tokenizer = loaded[current["name"]]
        values = {name: w.value for name, w in controls.items()}
        values.pop("model")
        text = values.pop("prompt")
        try:
            params = SamplingParams(**values)
            raw, processed = next_token_distribution(model, text, params, tokenizer)
            completion = generate(model, text, params, tokenizer)
            png = figure_png(plot_playground(raw, processed, tokenizer.token_str, top))
            summary = distribution_summary(processed, tokenizer.token_str)
        except ValueError as err:  # show the message in the widget instead of a traceback
            show_error(f"<b style='color:#b00'>ValueError:</b> {html.escape(str(err))}")
            return
        except Exception as err:  # a widget callback has nowhere else to report to
            show_error(f"<b style='color:#b00'>{type(err).__name__}:</b> {html.escape(str(err))}")
            return
        error.value = ""
        readout.value = (f"<code>T = {params.temperature:.2f}, top_k = {params.top_k}, top_p = {params.top_p:.2f}, "
                         f"min_p = {params.min_p:.2f}: {html.escape(summary)}</code>")
        sample.value = (f"<pre style='white-space: pre-wrap'><b>{html.escape(text)}</b>{html.escape(completion.text)}"
                        f"</pre><small>{len(completion.token_ids)} tokens, finish_reason "
                        f"{completion.finish_reason!r}</small>")
        chart.value = png

    def sample_again(_) -> None:
        controls["seed"].value += 1  # triggers update

    def quietly_set(name: str, value) -> None:
        """Set a control without its callbacks running (they would redo the work of a switch)."""
        current["switching"] = True
        try:
            controls[name].value = value
        finally:
            current["switching"] = False

    def switch_model(change) -> None:
        name = change["new"]
        if current["switching"]:
            return
        if name not in loaded:
            shown = readout.value
            readout.value = f"<code>loading {html.escape(name)} ...</code>"
            try:
                new_model, new_tokenizer, prompts[name] = models[name]()
            except Exception as err:  # e.g. the package is missing (a ValueError that says how to install it)
                error.value = f"<b style='color:#b00'>{type(err).__name__}:</b> {html.escape(str(err))}"
                readout.value = shown
                quietly_set("model", current["name"])  # back to the model that works
                return
            loaded[name] = (new_model, new_tokenizer)
        prompts[current["name"]] = controls["prompt"].value
        current["name"] = name
        quietly_set("prompt", prompts[name])
        update()

    for name, w in controls.items():
        if name != "model":
            w.observe(update, names="value")
    controls["model"].observe(switch_model, names="value")
    again.on_click(sample_again)
    sliders = [controls[name] for name in _SLIDERS]
    grid = widgets.GridBox(sliders, layout=widgets.Layout(grid_template_columns="repeat(2, 390px)"))
    box = widgets.VBox([controls["model"], controls["prompt"], grid, widgets.HBox([controls["seed"], again]), error,
                        readout, chart, sample])
    box.controls, box.readout, box.sample, box.error, box.chart, box.update = (
        controls, readout, sample, error, chart, update)
    update()
    return box
