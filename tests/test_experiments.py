"""helpers.experiments: sweeps over a grid give tidy rows."""

import math

import pytest

from helpers.experiments import Table, grid_points, sweep
from helpers.train import History


def test_sweep_runs_every_point_in_order():
    rows = sweep(lambda lr, bs: {"score": lr * bs}, {"lr": [0.1, 0.2], "bs": [1, 10, 100]})
    assert isinstance(rows, Table) and len(rows) == 6
    assert rows[0] == {"lr": 0.1, "bs": 1, "score": 0.1}
    assert rows.column("bs") == [1, 10, 100, 1, 10, 100]
    assert rows.where(lr=0.2).column("score") == pytest.approx([0.2, 2.0, 20.0])
    assert rows.best("score") == rows[0] and rows.best("score", minimize=False)["bs"] == 100


def test_sweep_over_an_explicit_list_of_points():
    rows = sweep(lambda opt, lr: {"score": lr}, [{"opt": "sgd", "lr": 1.0}, {"opt": "adam", "lr": 0.01}])
    assert rows.column("opt") == ["sgd", "adam"] and rows.where(opt="adam")[0]["score"] == 0.01
    with pytest.raises(ValueError, match="list of dicts"):
        sweep(lambda x: {}, [1, 2])


def test_a_history_result_becomes_its_summary_and_is_kept():
    def fn(lr):
        h = History(step=[1, 2], train_loss=[3.0, 2.0], lr=[lr, lr], grad_norm=[1.0, 1.0], tokens_per_s=[5.0, 7.0])
        h.diverged = lr > 1
        return h

    rows = sweep(fn, {"lr": [0.5, 2.0]})
    assert rows[0]["final_train_loss"] == 2.5 and rows[0]["history"].lr == [0.5, 0.5]
    assert rows[1]["diverged"] is True and rows[1]["final_train_loss"] == math.inf
    assert rows.best("final_train_loss")["lr"] == 0.5


def test_to_markdown_shows_scalar_columns():
    rows = Table([{"lr": 0.001, "loss": 2.345678, "history": object()}, {"lr": 0.01, "loss": float("inf"), "history": None}])
    md = rows.to_markdown()
    assert md.splitlines()[0] == "| lr | loss |" and "| 0.001 | 2.346 |" in md and "inf" in md
    assert rows.to_markdown(columns=["loss"], digits=2).splitlines()[2] == "| 2.3 |"
    assert Table().to_markdown() == "(no rows)"


@pytest.mark.parametrize(
    "grid,match",
    [({}, "grid must be a non-empty dict"), ({"lr": []}, r"grid\['lr'\] must be a non-empty list"),
     ({"lr": "0.1"}, r"grid\['lr'\] must be a non-empty list")],
)
def test_bad_grids(grid, match):
    with pytest.raises(ValueError, match=match):
        grid_points(grid)


def test_bad_results():
    with pytest.raises(ValueError, match="fn must return a dict or a History, got float"):
        sweep(lambda x: 1.0, {"x": [1]})
    with pytest.raises(ValueError, match=r"reuse the grid names \['x'\]"):
        sweep(lambda x: {"x": 2}, {"x": [1]})
    with pytest.raises(ValueError, match="name must be one of the columns x, y"):
        sweep(lambda x: {"y": 2}, {"x": [1]}).column("z")


def test_training_plots_return_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from helpers.plots import training as tp

    ok = History(step=[1, 2, 3], train_loss=[5.0, 4.0, 3.5], lr=[0.1] * 3, grad_norm=[1.0, 2.0, 1.5],
                 tokens_per_s=[10.0, 12.0, 11.0], eval_step=[3], val_loss=[3.8], tokens_per_step=64)
    bad = History(step=[1, 2], train_loss=[5.0, float("nan")], lr=[1.0] * 2, grad_norm=[1.0, 9.0],
                  tokens_per_s=[10.0, 10.0], diverged=True, tokens_per_step=64)
    runs = {"ok": ok, "diverged": bad}
    figures = [
        tp.plot_loss_curves(runs), tp.plot_loss_curves(runs, x="tokens", val=True, smoothing=3),
        tp.plot_loss_curves({"ok": ok}, val=True, baselines={"uniform": 3.0}), tp.plot_lr_schedules({"a": [0.1, 0.05, 0.01]}),
        tp.plot_lr_sweep([1e-3, 1e-2, 1.0], [4.0, 3.0, math.inf], [False, False, True]),
        tp.plot_range_test([1e-4, 1e-3, 1e-2, 1e-1], [5.0, 4.5, 3.0, 9.0], suggestion=1e-3),
        tp.plot_metric_per_step(runs, "grad_norm", steps=2), tp.plot_batch_size_costs([4, 16], [100.0, 300.0], [1e6, None]),
        tp.plot_gradient_noise([1, 4], [[0.1, 0.2], [0.5, 0.6]]), tp.plot_bars({"a": 1.0, "b": math.inf}, "loss", "t", "a"),
        tp.plot_bars({"a": -0.01, "b": 0.2}),
    ]
    assert all(isinstance(f, Figure) for f in figures)

    def labelled(fig, i=0):  # {legend label: (x, y)} of the lines of axes i
        return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata()))
                for ln in fig.axes[i].get_lines() if not ln.get_label().startswith("_")}

    # one training curve per run, named after it (a diverged run says so), with its losses
    curves = labelled(figures[0])
    assert len(curves) == 2 and curves["ok"] == ([1, 2, 3], [5.0, 4.0, 3.5])
    assert any(k.startswith("diverged") and "diverged" in k[len("diverged"):] for k in curves)
    assert figures[0].axes[0].get_xlabel() == "step" and "loss" in figures[0].axes[0].get_ylabel()
    # x="tokens" scales the step by the tokens per step; smoothing=3 averages the first points
    tok = labelled(figures[1])["ok"]
    assert tok[0] == [64, 128, 192] and "token" in figures[1].axes[0].get_xlabel()
    assert tok[1][-1] == pytest.approx((5.0 + 4.0 + 3.5) / 3) or tok[1][-1] == pytest.approx((4.0 + 3.5) / 2)
    assert any(list(ln.get_ydata()) == [3.8] for ln in figures[1].axes[0].get_lines()), "the validation point"
    assert labelled(figures[3]) == {"a": ([0, 1, 2], [0.1, 0.05, 0.01])}
    sweep_lines = labelled(figures[4])
    assert [k for k in sweep_lines if "diverged" in k] and figures[4].axes[0].get_xscale() == "log"
    assert any(x == [1e-3, 1e-2] and y == [4.0, 3.0] for x, y in sweep_lines.values()), "the finished runs"
    assert any("1e-02" in k for k in sweep_lines), "the best LR is named"
    rt = labelled(figures[5])
    assert any(y == [5.0, 4.5, 3.0, 9.0] for _, y in rt.values()) and any("1.0e-03" in k for k in rt)
    assert {k: v[1] for k, v in labelled(figures[6]).items()} == {"ok": [1.0, 2.0], "diverged": [1.0, 9.0]}
    assert len(figures[7].axes) == 2 and list(figures[7].axes[0].get_lines()[0].get_ydata()) == [100.0, 300.0]
    assert [p.get_height() for p in figures[10].axes[0].patches] == [-0.01, 0.2]
    assert [t.get_text() for t in figures[10].axes[0].get_xticklabels()] == ["a", "b"]
    assert len(figures[9].axes[0].patches) == 2 and any("diverged" in t.get_text() for t in figures[9].axes[0].texts)
    baseline = [line for line in figures[2].axes[0].get_lines() if line.get_label().startswith("uniform")]
    assert len(baseline) == 1 and list(baseline[0].get_ydata()) == [3.0, 3.0]
    assert figures[-1].axes[0].get_ylim()[0] < -0.01  # a negative bar is shown whole
    with pytest.raises(ValueError, match="x must be 'step' or 'tokens'"):
        tp.plot_loss_curves(runs, x="time")
    with pytest.raises(ValueError, match="metric must be one of"):
        tp.plot_metric_per_step(runs, "speed")
    plt.close("all")
