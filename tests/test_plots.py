"""Every figure of helpers.plots, read as JupyterLab shows it: width, text size, overlaps, legends,
bar axes, alt text; and the alt text's way into the notebook output and onto the site.

Each plot function is drawn with data shaped like the notebooks' (token labels such as ' village',
six learning-rate schedules, eight quantisation variants close together, SmolLM2's 30 x 9 heads), then
saved as the inline backend saves it (PNG, ``bbox_inches="tight"``) and measured.
"""

from __future__ import annotations

import base64
import importlib
import inspect
import io
import math
import struct

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from helpers import architecture as A  # noqa: E402
from helpers import neurons as N  # noqa: E402
from helpers import plots  # noqa: E402
from helpers.plots import style  # noqa: E402
from helpers.schedules import SCHEDULES, lr_curve  # noqa: E402
from helpers.train import History  # noqa: E402

MODULES = ["adaptation", "architecture", "attention", "corpus", "neurons", "sampling", "training", "tuning"]
MIN_TEXT_PX = 10.0  # the smallest text a learner must read, in screen pixels at JupyterLab's width
TOKENS = [" boy", " girl", " puppy", " turtle", " braver", " bird", " horse", " village", " bunny", " cat",
          " dog", " frog", " $x$", " the", "\n"]


def _probs(seed: int, v: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(v, generator=g) * 2.5).softmax(-1)


def _history(losses, diverged=False, val=None) -> History:
    h = History(step=list(range(1, len(losses) + 1)), train_loss=list(losses), diverged=diverged, tokens_per_step=512)
    h.lr = [1e-3] * len(losses)
    h.grad_norm = [1.0 + 1 / (i + 1) for i in range(len(losses))]
    h.tokens_per_s = [1000.0] * len(losses)
    if val:
        h.eval_step, h.val_loss = [len(losses) // 2, len(losses)], list(val)
    return h


def _token_str(i: int) -> str:
    return TOKENS[i % len(TOKENS)] + ("" if i < len(TOKENS) else str(i))


def _catalogue() -> dict[str, callable]:
    """One or more drawings per public plot function: name -> a function that returns the Figure."""
    from helpers.plots import adaptation as AD
    from helpers.plots import architecture as AR
    from helpers.plots import attention as AT
    from helpers.plots import corpus as C
    from helpers.plots import neurons as NE
    from helpers.plots import sampling as S
    from helpers.plots import training as T
    from helpers.plots import tuning as TU
    from helpers.sampling import apply_min_p, apply_temperature, apply_top_k, apply_top_p

    logits = torch.log(_probs(0))[None]
    quant = [dict(variant=v, size_mb=s, val_loss=q) for v, s, q in [
        ("fp32", 4.36, 0.5782), ("bf16", 2.18, 0.5783), ("int8 per tensor", 1.13, 0.5784),
        ("int8 per channel", 1.15, 0.5782), ("int4 per tensor", 0.58, 0.673), ("int4 group 128", 0.63, 0.587),
        ("int4 group 64", 0.65, 0.5855), ("int4 group 32", 0.74, 0.5882)]]
    methods = [dict(method=m, trainable=t, memory_mb=mem, step_ms=ms, german_loss=g, english_loss=e)
               for m, t, mem, ms, g, e in [("full fine-tuning", 11_500_000, 180.0, 95.0, 1.9, 2.6),
                                           ("LoRA r=8", 98_304, 70.0, 60.0, 2.0, 2.3),
                                           ("LoRA r=64", 786_432, 80.0, 64.0, 1.95, 2.35),
                                           ("last layers", 1_800_000, 90.0, 40.0, 2.2, 2.25),
                                           ("head only", 12_000, 50.0, 30.0, 2.6, 2.21)]]
    curves = {name: lr_curve(name, 160, base_lr=0.3, warmup_steps=30, min_lr_ratio=0.1) for name in SCHEDULES}
    x, y = N.toy_data("near_far", 40)
    xs, ys = N.line_data(20)
    loss = lambda w, b: ((w * xs + b - ys) ** 2).mean()  # noqa: E731
    descent = N.gradient_descent(loss, (0.0, 0.0), 0.3, 5)
    ws, bs = [i / 4 for i in range(-8, 13)], [i / 4 for i in range(-8, 9)]
    labels40 = [_token_str(i) for i in range(40)]
    attn40 = torch.tril(torch.rand(40, 40))
    attn40 = attn40 / attn40.sum(-1, keepdim=True)
    g = torch.Generator().manual_seed(1)
    pts = [(float(a), float(b)) for a, b in torch.rand(12, 2, generator=g)]
    sched_final = {"constant": 5.6, "step": 5.1, "linear": 5.0, "cosine": 4.95, "warmup_cosine": 4.9,
                   "one_cycle": 4.93, "constant at lr 0.01 (best)": 5.02}
    return {
        "plot_methods": lambda: AD.plot_methods(methods, baseline={"german_loss": 2.7, "english_loss": 2.2}),
        "plot_forgetting": lambda: AD.plot_forgetting(methods, base=(2.7, 2.2)),
        "plot_weight_histogram": lambda: AD.plot_weight_histogram(torch.randn(64, 64) * 0.05, "h.0.attn.c_attn.weight"),
        "plot_size_vs_loss": lambda: AD.plot_size_vs_loss(quant, baseline=0.5782),
        "plot_error_by_scheme": lambda: AD.plot_error_by_scheme(
            {"int8 per tensor": 3e-4, "int8 per channel": 2e-4, "int4 per tensor": 5e-3, "int4 group 32": 1e-3,
             "int4 group 64": 1.3e-3, "int4 group 128": 1.6e-3}),
        "plot_parameter_shares": lambda: AR.plot_parameter_shares(
            {n: A.component_counts(c) for n, c in A.GPT2_CONFIGS.items()}),
        "plot_memory": lambda: AR.plot_memory(A.memory_table(A.GPT2_PARAMETERS), limit_gb=16),
        "plot_attention_cost": lambda: AR.plot_attention_cost(
            {"naive": [{"seq_len": t, "seconds": 1e-7 * t * t, "peak_bytes": 4 * t * t} for t in (64, 128, 256, 512)],
             "sdpa": [{"seq_len": t, "seconds": 4e-8 * t * t, "peak_bytes": 40 * t} for t in (64, 128, 256, 512)]},
            {"naive": A.fit_quadratic([64, 128, 256, 512], [1e-7 * t * t for t in (64, 128, 256, 512)])}),
        "plot_train_vs_val": lambda: AR.plot_train_vs_val(
            [{"data": d, "n_layer": n, "n_embd": c, "train_loss": 1.0 + n / c, "val_loss": 2.0 + n / c}
             for d in ("20k tokens", "200k tokens", "2M tokens") for n in (1, 2, 4) for c in (32, 64, 128)],
            x="n_layer", line="n_embd", panel="data"),
        "plot_loss_per_position": lambda: AR.plot_loss_per_position(torch.rand(512) + 3, 256),
        "plot_dropout": lambda: AR.plot_dropout([{"dropout": p, "train_loss": 1 + p, "val_loss": 2 - p + p * p}
                                                 for p in (0.0, 0.1, 0.2, 0.3, 0.5)]),
        "plot_attention_map": lambda: AT.plot_attention_map(attn40, labels40, title="layer 1, head 2",
                                                            highlight=[3, 17]),
        "plot_attention_grid": lambda: AT.plot_attention_grid(torch.rand(4, 4, 12, 12), suptitle="all 16 heads"),
        "plot_head_scores": lambda: AT.plot_head_scores({"previous token": torch.rand(4, 4),
                                                         "first token": torch.rand(4, 4)}),
        "plot_head_scores (five measures)": lambda: AT.plot_head_scores(
            {m: torch.rand(4, 4) * 30 for m in ("previous token", "on the name (× even)", "on sentence ends (× even)",
                                                "mean distance (tokens)", "entropy (nats)")}),
        "plot_head_scores (SmolLM2)": lambda: AT.plot_head_scores({"previous token": torch.rand(30, 9),
                                                                   "first token": torch.rand(30, 9)}),
        "plot_similarity": lambda: AT.plot_similarity(torch.rand(64, 64) * 2 - 1, title="wpe", xlabel="position",
                                                      ylabel="position"),
        "plot_loss_by_position": lambda: AT.plot_loss_by_position({"learned": torch.rand(128) + 3,
                                                                   "rotary": torch.rand(128) + 3}, 64),
        "plot_kv_cache": lambda: AT.plot_kv_cache(
            [{"model": m, "tokens": t, "bytes": b * t} for m, b in (("SmolLM2-135M (3 KV heads)", 46080),
                                                                    ("SmolLM2 with 9 KV heads", 138240),
                                                                    ("Llama-2-7B (32 KV heads)", 524288),
                                                                    ("Llama-3-8B (8 KV heads)", 131072))
             for t in (1000, 8000, 128000)], limit_bytes=16e9),
        "plot_step_times": lambda: AT.plot_step_times({"with the KV cache": [0.002] * 60,
                                                       "without (whole sequence every step)": [0.002 + 1e-4 * i
                                                                                               for i in range(60)]}),
        "plot_token_counts": lambda: C.plot_token_counts(TOKENS, list(range(1500, 0, -100))),
        "plot_decision_boundary": lambda: NE.plot_decision_boundary(x, y, [1.0, 1.0], -3.5),
        "plot_activations": lambda: NE.plot_activations(),
        "plot_loss_landscape": lambda: NE.plot_loss_landscape(ws, bs, N.loss_surface(loss, ws, bs), descent),
        "plot_descent": lambda: NE.plot_descent(descent),
        "plot_parameter_histograms": lambda: NE.plot_parameter_histograms(
            {"all weights": torch.randn(1000), "all biases": torch.randn(50), "embeddings": torch.randn(500)}),
        "plot_curve": lambda: NE.plot_curve([1e-1, 1e-3, 1e-6, 1e-9], [1e-2, 1e-5, 1e-9, 1e-7], "eps",
                                            "largest difference from autograd", "finite differences", True, True),
        "plot_parameter_trajectories": lambda: NE.plot_parameter_trajectories(
            {"w1": [torch.randn(2, 2) for _ in range(10)], "b1": [torch.randn(2) for _ in range(10)],
             "w2": [torch.randn(2) for _ in range(10)]}, [1.0 / (i + 1) for i in range(10)]),
        "plot_filter_steps": lambda: S.plot_filter_steps(
            [("model (T = 1)", logits.softmax(-1)[0]), ("top-k = 5", apply_top_k(logits, 5).softmax(-1)[0]),
             ("top-p = 0.9", apply_top_p(logits, 0.9).softmax(-1)[0]),
             ("min-p = 0.1", apply_min_p(logits, 0.1).softmax(-1)[0])], _token_str, top=15),
        "plot_filter_steps (greedy)": lambda: S.plot_filter_steps(
            [("T = 1", apply_temperature(logits, 1.0).softmax(-1)[0]),
             ("T = 0 (greedy)", apply_temperature(logits, 0.0).softmax(-1)[0])], _token_str, top=12),
        "plot_temperature_sweep": lambda: S.plot_temperature_sweep(
            [0.1, 0.5, 1.0, 1.5, 2.0, 3.0], [0.0, 0.9, 2.5, 3.7, 4.8, 6.2],
            {"tokens with p >= 1%": [1, 5, 19, 22, 23, 18], "tokens top-p 0.9 keeps": [1, 2, 16, 46, 200, 900]},
            max_entropy=7.62),
        "plot_sorted_distributions": lambda: S.plot_sorted_distributions(
            {"peaked: 'Once upon a'": _probs(1), "flat: 'Once upon a time, there was a little girl named'": _probs(2)},
            title="probabilities by rank"),
        "plot_metric_lines": lambda: S.plot_metric_lines(
            ["greedy", "T=0.2", "T=0.7", "T=1", "T=1.5", "T=1, k=40", "T=1, p=0.9", "T=1, min-p=0.1"],
            {"distinct-2 (diversity)": [0.2, 0.5, 0.8, 0.7, 0.9, 0.8, 0.7, 0.6],
             "token repetition": [0.3, 0.25, 0.2, 0.18, 0.1, 0.2, 0.2, 0.22],
             "log-likelihood (typicality)": [-0.6, -0.6, -0.7, -0.75, -2.0, -0.9, -0.65, -0.66]}, xlabel="", bars=True),
        "plot_lines": lambda: S.plot_lines(list(range(11)), {"repetition_penalty 1.3": [0.9] + [0.5] * 10,
                                                             "frequency_penalty 0.5": [0.9 * 0.8 ** c for c in range(11)],
                                                             "presence_penalty 0.5": [0.9] + [0.85] * 10},
                                           "times the token already occurred in the output",
                                           "probability of that token", "what each penalty does with repeats"),
        "plot_sweep_grid": lambda: S.plot_sweep_grid(
            {name: [dict(strength=s, distinct_2=0.5 + s / 8, repetition=0.3 - s / 10, loglik=-0.7 - s / 5)
                    for s in (0.0, 0.5, 1.0, 2.0)]
             for name in ("repetition_penalty", "frequency_penalty", "presence_penalty")},
            "strength", ["distinct_2", "repetition", "loglik"]),
        "plot_playground": lambda: S.plot_playground(_probs(3), apply_top_k(torch.log(_probs(3))[None], 5).softmax(-1)[0],
                                                     _token_str),
        "plot_loss_curves": lambda: T.plot_loss_curves(
            {f"lr = {lr:g}": _history([7.6 - k * math.log1p(i) / 3 for i in range(160)]) for k, lr in
             enumerate([1e-4, 1e-3, 1e-2, 1e-1, 0.3])} | {"lr = 1 (diverged)": _history([7.6, 11.0], diverged=True)},
            smoothing=5, title="one model, learning rates over four orders of magnitude",
            baselines={"uniform guess ln V": 7.62}),
        "plot_lr_schedules": lambda: T.plot_lr_schedules(curves, title="the six schedules, peak lr 0.3, 160 steps"),
        "plot_lr_sweep": lambda: T.plot_lr_sweep([1e-4, 1e-3, 1e-2, 1e-1, 0.3, 1.0], [7.1, 5.3, 5.0, 5.5, 5.9, math.inf],
                                                 [False] * 5 + [True]),
        "plot_range_test": lambda: T.plot_range_test([1e-5 * 1.2 ** i for i in range(60)],
                                                     [7.6 - 0.02 * i + (0.002 * i) ** 3 for i in range(60)], 1e-3),
        "plot_metric_per_step": lambda: T.plot_metric_per_step({"cosine, no warmup": _history([7.0] * 60),
                                                                "warmup 30 steps + cosine": _history([7.1] * 60)},
                                                               "grad_norm", steps=60),
        "plot_batch_size_costs": lambda: T.plot_batch_size_costs([1, 2, 4, 8, 16, 32], [900, 1700, 3000, 5200, 7900, 9000],
                                                                 [1e7, 2e7, 4e7, 8e7, 1.6e8, 3.2e8],
            "memory (estimate: parameters + gradients + optimiser state + saved activations)"),
        "plot_gradient_noise": lambda: T.plot_gradient_noise([1, 4, 16, 64], [[0.1, 0.3, -0.05], [0.4, 0.5, 0.45],
                                                                              [0.7, 0.75, 0.72], [0.9, 0.92, 0.91]]),
        "plot_bars": lambda: T.plot_bars(sched_final, ylabel="final training loss", title="schedules at peak lr 0.3",
                                         highlight="warmup_cosine"),
        "plot_bars (many, horizontal)": lambda: T.plot_bars(
            {f"h.{i}.{part}": 0.001 * (i + 1) * (-1) ** i for i in range(4)
             for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")} | {"all biases": 0.285},
            ylabel="nats / token", title="validation loss increase when biases are zeroed"),
        "plot_bars (diverged, negative)": lambda: T.plot_bars({"a": 0.4, "b": -0.1, "c": math.inf},
                                                              title="validation loss increase"),
        "plot_grid_vs_random": lambda: TU.plot_grid_vs_random([(i / 3, j / 3) for i in range(4) for j in range(4)], pts,
                                                           x_opt=0.3),
        "plot_best_so_far": lambda: TU.plot_best_so_far({"random": [[5 - 0.1 * i for i in range(20)],
                                                                    [5.1 - 0.09 * i for i in range(20)]],
                                                         "TPE": [4.9 - 0.12 * i for i in range(20)]}),
        "plot_learning_curves": lambda: TU.plot_learning_curves([([10, 20, 30], [5.0, 4.5, 4.2], False),
                                                                 ([10, 20], [5.5, 5.3], True)]),
        "plot_importances": lambda: TU.plot_importances({"lr": 0.7, "dropout": 0.1, "batch_size": 0.15,
                                                         "weight_decay": 0.05}),
        "plot_param_slice": lambda: TU.plot_param_slice({"wide": ([1e-4, 1e-3, 1e-2, 1e-1], [6.0, 5.0, 4.8, 7.0]),
                                                         "narrow": ([3e-3, 5e-3, 8e-3], [4.9, 4.8, 4.85])}, "lr",
                                                        span=(2e-3, 2e-2)),
        "plot_val_vs_test": lambda: TU.plot_val_vs_test([4.8, 4.9, 5.0, 5.2], [4.85, 4.88, 5.05, 5.1], chosen=0),
        "plot_pareto": lambda: TU.plot_pareto(pts, sorted(pts)[:3], ylabel="seconds per trial"),
    }


CATALOGUE = _catalogue()


def _public_plot_functions() -> set[str]:
    names = set()
    for m in MODULES:
        module = importlib.import_module(f"helpers.plots.{m}")
        for name, f in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("plot_") and f.__module__ == module.__name__:
                names.add(name)
    return names


def test_every_plot_function_is_in_the_catalogue():
    """A new plot function must be drawn here too, or its figure goes unchecked."""
    drawn = {k.split(" ")[0] for k in CATALOGUE}
    assert _public_plot_functions() <= drawn, sorted(_public_plot_functions() - drawn)


def _png_size(fig: Figure) -> tuple[int, int]:
    """The size in pixels of the PNG the inline backend shows (``bbox_inches="tight"``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    head = buf.getvalue()[16:24]
    return struct.unpack(">II", head)


def _texts(fig: Figure):
    """(kind, owner, Text) for every visible, non-empty text the figure draws."""
    out = []
    if fig._suptitle is not None:
        out.append(("suptitle", fig, fig._suptitle))
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        for t in (ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label):
            out.append(("label", ax, t))
        for kind, axis in (("xtick", ax.xaxis), ("ytick", ax.yaxis)):  # the ticks drawn, not those out of view
            out += [(kind, ax, tick.label1) for tick in axis._update_ticks()]
        out += [("text", ax, t) for t in ax.texts]
        leg = ax.get_legend()
        if leg is not None:
            out += [("legend", ax, t) for t in leg.get_texts()]
    for leg in fig.legends:
        out += [("legend", fig, t) for t in leg.get_texts()]
    return [(k, o, t) for k, o, t in out if t.get_visible() and t.get_text().strip()]


@pytest.fixture(params=sorted(CATALOGUE), scope="module")
def drawn(request):
    fig = CATALOGUE[request.param]()
    width, height = _png_size(fig)
    fig.canvas.draw()
    yield request.param, fig, width
    plt.close(fig)


def test_figure_fits_the_notebook_width_without_shrinking(drawn):
    """Wider than JupyterLab's output area, an image is scaled down and its labels with it."""
    name, fig, width = drawn
    assert fig.get_dpi() == style.DPI
    assert width <= style.OUTPUT_WIDTH_PX, f"{name}: {width} px wide, the notebook shows {style.OUTPUT_WIDTH_PX}"


def test_text_is_legible_at_the_notebook_width(drawn):
    """Every label, tick, legend entry and annotation is at least MIN_TEXT_PX high on screen."""
    name, fig, width = drawn
    shrink = min(1.0, style.OUTPUT_WIDTH_PX / width)
    small = [(t.get_text(), round(t.get_fontsize() * fig.dpi / 72 * shrink, 1)) for _, _, t in _texts(fig)
             if t.get_fontsize() * fig.dpi / 72 * shrink < MIN_TEXT_PX]
    assert not small, f"{name}: text below {MIN_TEXT_PX} px: {small[:5]}"


def _overlap(a, b, tol: float = 1.0) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > tol) and (min(a.y1, b.y1) - max(a.y0, b.y0) > tol)


def test_texts_do_not_overlap(drawn):
    """No two texts cover each other: titles, labels, ticks, numbers on bars, legend entries."""
    name, fig, _ = drawn
    renderer = fig.canvas.get_renderer()
    items = [(k, o, t, t.get_window_extent(renderer)) for k, o, t in _texts(fig)]
    bad = []
    for i, (k1, o1, t1, b1) in enumerate(items):
        for k2, o2, t2, b2 in items[i + 1:]:
            if k1 == k2 and o1 is o2 and k1 == "legend":
                continue
            if k1 == k2 and o1 is o2 and k1 in ("xtick", "ytick") and (t1.get_rotation() % 90 or t2.get_rotation() % 90):
                continue  # slanted labels: their boxes overlap though the letters do not
            if _overlap(b1, b2):
                bad.append((t1.get_text(), t2.get_text()))
    assert not bad, f"{name}: overlapping texts {bad[:5]}"


def test_numbers_on_the_data_stay_inside_their_panel(drawn):
    """A value written at the end of a bar or on a point must not leave its axes (into the next panel)."""
    name, fig, _ = drawn
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        box = ax.get_window_extent(renderer)
        for t in ax.texts:
            if t.get_visible() and t.get_text().strip() and t.get_clip_on() is not None:
                tb = t.get_window_extent(renderer)
                assert (tb.x0 >= box.x0 - 2 and tb.x1 <= box.x1 + 2 and tb.y0 >= box.y0 - 2
                        and tb.y1 <= box.y1 + 2), f"{name}: {t.get_text()!r} leaves the panel '{ax.get_title()}'"


def _data_points(ax) -> np.ndarray:
    """Display coordinates of the data an axes draws: line vertices, scatter points, bar tops."""
    pts = [line.get_transform().transform(np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float))
           for line in ax.get_lines() if len(line.get_xdata()) and not _is_reference(line)]
    for c in ax.collections:
        offsets = c.get_offsets()
        if len(offsets):
            pts.append(c.get_offset_transform().transform(np.asarray(offsets, dtype=float)))
    for container in ax.containers:
        if isinstance(container, BarContainer):
            for bar in container:
                box = bar.get_window_extent()
                pts.append(np.array([[box.x0, box.y1], [box.x1, box.y1], [(box.x0 + box.x1) / 2, box.y1]]))
    pts = [p for p in pts if p.size]
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def _is_reference(line) -> bool:
    """A horizontal or vertical reference line spanning the axes (axhline/axvline): legends may cross it."""
    x, y = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)
    return len(x) == 2 and (x[0] == x[1] or y[0] == y[1]) and line.get_transform() != line.axes.transData


def test_legends_do_not_cover_data(drawn):
    """A legend inside the axes must not sit on any data point (the warmup ramps of the schedules, say)."""
    name, fig, _ = drawn
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        leg = ax.get_legend()
        if leg is None or not ax.get_visible():
            continue
        box = leg.get_window_extent(renderer)
        pts = _data_points(ax)
        inside = pts[(pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)]
        assert len(inside) == 0, f"{name}: the legend of '{ax.get_title()}' covers {len(inside)} data points"


def test_bar_axes_start_at_zero(drawn):
    """A bar's length is its value only when the axis starts at 0."""
    name, fig, _ = drawn
    for ax in fig.axes:
        for container in ax.containers:
            if not isinstance(container, BarContainer):
                continue
            horizontal = container.orientation == "horizontal"
            if (ax.get_xscale() if horizontal else ax.get_yscale()) == "log":
                continue
            lo, hi = ax.get_xlim() if horizontal else ax.get_ylim()
            assert min(lo, hi) <= 0 <= max(lo, hi), f"{name}: bars of '{ax.get_title()}' on an axis from {lo:.3g}"


def test_alt_text_names_the_figure(drawn):
    """The alt text is a sentence, not a placeholder: it carries each panel's title."""
    name, fig, _ = drawn
    text = plots.alt_text(fig)
    assert getattr(fig, "course_alt", ""), f"{name}: the plot function stored no alt text"
    assert 20 <= len(text) <= style.MAX_ALT_CHARS, (name, text)
    for ax in fig.axes:
        title = " ".join(ax.get_title().split())
        if title and ax.axison and len(text) < style.MAX_ALT_CHARS:
            assert title in text, f"{name}: '{title}' missing from the alt text {text!r}"


def test_filter_steps_two_panels_per_row_and_exact_titles():
    """Four steps make a 2 x 2 grid; greedy's title is '1 token left, entropy 0.00 nats'."""
    fig = CATALOGUE["plot_filter_steps"]()
    grid = {(round(ax.get_position().x0, 2), round(ax.get_position().y0, 2)) for ax in fig.axes if ax.axison}
    assert len({x for x, _ in grid}) == 2 and len({y for _, y in grid}) == 2
    greedy = CATALOGUE["plot_filter_steps (greedy)"]()
    titles = [ax.get_title() for ax in greedy.axes]
    assert titles[1] == "T = 0 (greedy)\n1 token left, entropy 0.00 nats", titles
    assert "300 tokens left" in titles[0]
    from helpers.plots.sampling import plot_filter_steps
    with pytest.raises(ValueError, match="ncols"):
        plot_filter_steps([("a", _probs(0))], ncols=4)
    plt.close("all")


def test_entropy_text_never_shows_minus_zero():
    from helpers.plots.sampling import _nats, distribution_summary

    assert _nats(-0.0) == "0.00" and _nats(-1e-9) == "0.00" and _nats(0.6931) == "0.69"
    one_hot = torch.zeros(5)
    one_hot[2] = 1.0
    assert distribution_summary(one_hot).startswith("1 token can be drawn; entropy 0.00 nats")


def test_size_vs_loss_names_every_variant_without_covering_the_reference():
    """Close variants (int8 per tensor / per channel) each get a legend entry beside the axes."""
    fig = CATALOGUE["plot_size_vs_loss"]()
    fig.canvas.draw()
    ax = fig.axes[0]
    entries = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(entries) == 9 and entries[0].startswith("fp32") and entries[-1].startswith("fp32 loss")
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1  # outside the data area
    plt.close(fig)


def test_loss_curves_show_every_validation_point():
    """Validation losses above every training loss (overfitting) stay inside the axes."""
    from helpers.plots.training import plot_loss_curves

    fig = plot_loss_curves({"none": _history([5.0 - i / 50 for i in range(100)], val=[6.1, 7.9])}, val=True)
    lo, hi = fig.axes[0].get_ylim()
    assert lo <= 3.0 and hi >= 7.9
    plt.close(fig)


def test_lr_schedule_legend_leaves_the_ramps_free():
    """The warmup and one-cycle ramps start at the lower left, where a legend inside the axes sat."""
    fig = CATALOGUE["plot_lr_schedules"]()
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.get_legend().get_window_extent()
    for line in ax.get_lines():
        first = ax.transData.transform(np.column_stack([line.get_xdata()[:40], line.get_ydata()[:40]]))
        assert not ((first[:, 0] > box.x0) & (first[:, 0] < box.x1) & (first[:, 1] > box.y0)
                    & (first[:, 1] < box.y1)).any(), line.get_label()
    plt.close(fig)


def test_describe_reads_what_a_figure_made_with_matplotlib_shows():
    """A figure made directly with matplotlib gets an alt text from its title, axes and legend."""
    fig, (a, b) = plt.subplots(1, 2)
    a.plot([1, 2, 3], [3, 1, 2], label="loss")
    a.set(title="training", xlabel="step", ylabel="loss")
    a.legend()
    b.bar(["x", "y"], [1, 2])
    b.set_title("counts")
    text = plots.describe(fig)
    assert text.startswith("2 panels. training: line chart of loss against step showing loss. counts: bar chart")
    assert plots.alt_text(fig) == text  # nothing stored: the description alone
    plots.set_alt(fig, "Loss falls; y is twice x")
    assert plots.alt_text(fig) == ("Loss falls; y is twice x. training: line chart of loss against step showing "
                                   "loss. counts: bar chart")
    with pytest.raises(ValueError, match="text"):
        plots.set_alt(fig, "  ")
    plt.close(fig)


def test_ipython_png_output_carries_the_alt_text():
    """Displayed in IPython, a figure's PNG comes with {"alt": ...} in its metadata, also after the inline
    backend (re-)registers its formatter, as it does when it is activated."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats

    shell = InteractiveShell.instance()
    select_figure_formats(shell, {"png"})  # what the inline backend does when it starts
    assert style.install_display()
    fig = CATALOGUE["plot_bars"]()
    data, md = shell.display_formatter.format(fig)
    png = data["image/png"]
    assert (base64.b64decode(png) if isinstance(png, str) else png)[:8] == b"\x89PNG\r\n\x1a\n"
    assert md["image/png"]["alt"] == plots.alt_text(fig) and "warmup_cosine 4.9" in md["image/png"]["alt"]
    select_figure_formats(shell, {"png"})  # activated again (%matplotlib inline): the hook wraps it again
    shell.events.trigger("post_execute")
    _, md = shell.display_formatter.format(fig)
    assert md["image/png"]["alt"] == plots.alt_text(fig)
    plt.close(fig)


def test_course_style_is_set_on_import():
    assert matplotlib.rcParams["figure.dpi"] == style.DPI
    assert min(matplotlib.rcParams[k] for k in ("font.size", "xtick.labelsize", "ytick.labelsize",
                                               "legend.fontsize")) >= style.MIN_FONT_PT
