"""helpers.neurons: neurons, toy data, gradient descent and gradient checks; its plots and widget."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from helpers import neurons as N
from helpers.neurons import biases_zeroed


def test_neuron_is_weighted_sum_plus_bias_through_activation():
    x = torch.tensor([[1.0, 2.0], [-1.0, 0.5]])
    w = torch.tensor([0.5, -1.0])
    z = x @ w + 0.25
    torch.testing.assert_close(N.neuron(x, w, 0.25, "identity"), z)
    torch.testing.assert_close(N.neuron(x, w, 0.25, "sigmoid"), torch.sigmoid(z))
    torch.testing.assert_close(N.neuron(x, w, 0.25, "step"), (z > 0).float())
    assert N.neuron([1, 2], [3, 4], 0.0, "identity").item() == 11  # ints are accepted


def test_bias_alone_decides_at_zero_input():
    zero = torch.zeros(2)
    for w in ([5.0, -3.0], [100.0, 100.0]):
        assert N.neuron(zero, w, 0.0, "step").item() == 0  # weights cannot make it fire
        assert N.neuron(zero, w, 0.1, "step").item() == 1  # a bias can


@pytest.mark.parametrize("call,match", [
    (lambda: N.neuron([1.0, 2.0], [[1.0, 2.0]], 0.0), "w must be a 1-D"),
    (lambda: N.neuron([1.0, 2.0, 3.0], [1.0, 2.0], 0.0), "x must end in 2"),
    (lambda: N.neuron([1.0], [1.0], float("nan")), "b must be a finite"),
    (lambda: N.neuron([1.0], [1.0], 0.0, "softsign"), "activation must be one of"),
    (lambda: N.toy_data("circles"), "kind must be one of"),
    (lambda: N.toy_data(n=1), "n must be an int >= 2"),
    (lambda: N.gradient_descent(lambda w, b: w * w, (0, 0), lr=0, steps=3), "lr must be"),
    (lambda: N.gradient_descent(lambda w, b: w * w, (0, 0), lr=0.1, steps=-1), "steps must be"),
    (lambda: N.finite_difference_grads(lambda: torch.tensor(0.0), {}, eps=0), "eps must be"),
])
def test_bad_input_raises_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_toy_data_is_deterministic_and_balanced():
    x1, y1 = N.toy_data("near_far", 100, seed=3)
    x2, y2 = N.toy_data("near_far", 100, seed=3)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (100, 2) and y1.sum().item() == 50


def test_near_far_needs_a_bias_opposite_does_not():
    x, y = N.toy_data("near_far", 200)
    without_bias, _ = N.best_accuracy_through_origin(x, y)
    assert without_bias < 0.8
    assert N.accuracy(x, y, [1.0, 1.0], -3.5) > 0.95  # the same direction plus a bias separates them
    xo, yo = N.toy_data("opposite", 200)
    best, w = N.best_accuracy_through_origin(xo, yo)
    assert best > 0.95 and N.accuracy(xo, yo, w, 0.0) == best


def test_boundary_segment_lies_on_the_line():
    seg = N.boundary_segment([1.0, 2.0], -3.0)
    assert seg is not None
    for p in seg:
        assert math.isclose(p[0] + 2 * p[1] - 3.0, 0.0, abs_tol=1e-9)
    assert N.boundary_segment([0.0, 0.0], 1.0) is None
    assert N.boundary_segment([1.0, 0.0], -2.0) == ((2.0, -1.0), (2.0, 4.0))  # vertical line x0 = 2
    assert N.boundary_segment([1.0, 0.0], -100.0) is None  # outside the box


def test_neuron_report_mentions_accuracy_and_distance():
    x, y = N.toy_data("near_far")
    text = N.neuron_report(x, y, [1.0, 1.0], -3.5)
    assert "accuracy" in text and "from the origin" in text
    assert "no boundary" in N.neuron_report(x, y, [0.0, 0.0], 1.0)


def test_gradient_descent_reaches_least_squares():
    x, y = N.line_data(n=80, w=2.0, b=-1.0, noise=0.1, seed=1)
    loss = lambda w, b: ((w * x + b - y) ** 2).mean()
    rows = N.gradient_descent(loss, start=(-2.0, 2.0), lr=0.4, steps=200)
    A = torch.stack([x, torch.ones_like(x)], 1)
    w_ls, b_ls = torch.linalg.lstsq(A, y[:, None]).solution.flatten().tolist()
    assert rows[-1]["loss"] < rows[0]["loss"] / 50
    assert math.isclose(rows[-1]["w"], w_ls, abs_tol=1e-4) and math.isclose(rows[-1]["b"], b_ls, abs_tol=1e-4)
    # each step moves the parameters by -lr * gradient, nothing else
    assert math.isclose(rows[1]["w"], rows[0]["w"] - 0.4 * rows[0]["grad_w"], rel_tol=1e-12)


def test_loss_surface_grid_orientation():
    surface = N.loss_surface(lambda w, b: (w - 1) ** 2 + 10 * b**2, ws=[0.0, 1.0, 2.0], bs=[-1.0, 0.0])
    assert surface.shape == (2, 3)
    assert surface[1, 1].item() == 0.0 and surface[0, 0].item() == 11.0


def test_compare_grads_exact_close_and_difference():
    a = torch.tensor([1.0, 2.0, 3.0])
    same = N.compare_grads("a", a, a.clone())
    assert same.exact and same.close and same.max_diff == 0.0
    near = N.compare_grads("a", a, a + 1e-6)
    assert not near.exact and near.close and 0 < near.max_diff < 1e-5
    far = N.compare_grads("a", a, a * 1.1)
    assert not far.close and math.isclose(far.max_diff, 0.3, rel_tol=1e-5)
    assert "exact: True" in str(same) and "max difference" in N.comparison_table([same, far])
    with pytest.raises(ValueError, match="shape"):
        N.compare_grads("a", a, a[:2])


def test_finite_differences_of_a_known_function():
    p = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    grads = N.finite_difference_grads(lambda: (p**3).sum(), {"p": p})
    torch.testing.assert_close(grads["p"], 3 * p**2, atol=1e-6, rtol=1e-6)
    assert p.tolist() == [1.0, -2.0, 0.5]  # restored after nudging


def _tiny_mlp(seed=0):
    g = torch.Generator().manual_seed(seed)
    params = {
        "W1": torch.randn(4, 3, generator=g, dtype=torch.float64).requires_grad_(),
        "b1": torch.randn(4, generator=g, dtype=torch.float64).requires_grad_(),
        "W2": torch.randn(2, 4, generator=g, dtype=torch.float64).requires_grad_(),
        "b2": torch.randn(2, generator=g, dtype=torch.float64).requires_grad_(),
    }
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 1, 0, 1])
    f = lambda: torch.nn.functional.cross_entropy(torch.tanh(x @ params["W1"].T + params["b1"]) @ params["W2"].T
                                                  + params["b2"], t)
    return f, params


def test_grad_check_passes_for_autograd_and_catches_a_wrong_gradient():
    f, params = _tiny_mlp()
    rows = N.grad_check(f, params)
    assert [r.name for r in rows] == ["W1", "b1", "W2", "b2"]
    assert all(r.close and r.max_diff < 1e-7 for r in rows)

    class WrongSquare(torch.autograd.Function):  # forward x**2, backward claims 3x
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x**2

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x

    p = torch.tensor([0.7, -1.3], dtype=torch.float64, requires_grad=True)
    (row,) = N.grad_check(lambda: WrongSquare.apply(p).sum(), {"p": p})
    assert not row.close and row.max_diff > 0.5
    with pytest.raises(ValueError, match="requires_grad"):
        N.grad_check(lambda: p.sum(), {"q": torch.zeros(2)})


def test_biases_zeroed_restores_exactly():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2, bias=False))
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    x = torch.randn(5, 3)
    with biases_zeroed(net) as names:
        assert names == ["0.bias", "1.bias"]
        assert net[0].bias.abs().sum() == 0 and net[1].bias.abs().sum() == 0
        assert torch.equal(net[0].weight, before["0.weight"])
        changed = net(x)
    assert all(torch.equal(p, before[n]) for n, p in net.named_parameters())
    assert not torch.equal(changed, net(x))
    with pytest.raises(RuntimeError), biases_zeroed(net[0]):
        raise RuntimeError("inside")
    assert torch.equal(net[0].bias, before["0.bias"])  # restored even after an error
    with pytest.raises(ValueError, match="at least one bias"):
        with biases_zeroed(net[2]):
            pass


def test_bias_ablation_measures_each_module_and_restores():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    with torch.no_grad():
        net[0].bias.fill_(1.0)
        net[1].bias.zero_()  # zeroing an already-zero bias changes nothing
    x = torch.randn(20, 2)
    target = net(x).detach() + 0.5
    loss = lambda: ((net(x) - target) ** 2).mean().item()
    before = loss()
    effects = N.bias_ablation(loss, {"first": net[0], "second": net[1], "all": net})
    assert effects["second"] == 0.0 and effects["first"] != 0.0
    assert effects["all"] == pytest.approx(effects["first"])
    assert loss() == before


def test_plots_return_figures():
    import matplotlib.pyplot as plt

    from helpers.plots import neurons as P

    x, y = N.toy_data("near_far", 40)
    xs, ys = N.line_data(20)
    loss = lambda w, b: ((w * xs + b - ys) ** 2).mean()
    rows = N.gradient_descent(loss, (0.0, 0.0), 0.3, 5)
    ws, bs = [i / 4 for i in range(-8, 13)], [i / 4 for i in range(-8, 9)]
    figs = [
        P.plot_decision_boundary(x, y, [1.0, 1.0], -3.5),
        P.plot_decision_boundary(x, y, [0.0, 0.0], 1.0),
        P.plot_activations(),
        P.plot_loss_landscape(ws, bs, N.loss_surface(loss, ws, bs), rows),
        P.plot_descent(rows),
        P.plot_parameter_histograms({"a": torch.randn(100), "b": torch.randn(10), "c": torch.randn(5), "d": torch.ones(3)}),
        P.plot_curve([1.0, 2.0], [1.0, 2.0]),
        P.plot_curve([1e-1, 1e-2], [1.0, 2.0], logx=True, logy=True),
        P.plot_parameter_trajectories({"w": [torch.zeros(2), torch.ones(2)], "b": [torch.zeros(1)] * 2}, [1.0, 0.5]),
    ]
    assert all(isinstance(f, Figure) for f in figs)

    def labelled(ax):
        return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}

    # the boundary drawn is the set w·x + b = 0; with w = 0 there is none to draw
    boundary = [ln for k, ln in labelled(figs[0].axes[0]).items() if "boundary" in k]
    assert len(boundary) == 1
    for x0, x1 in zip(boundary[0].get_xdata(), boundary[0].get_ydata()):
        assert 1.0 * x0 + 1.0 * x1 - 3.5 == pytest.approx(0.0, abs=1e-9)
    assert not [k for k in labelled(figs[1].axes[0]) if "boundary" in k]
    legend = [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    assert "class 0" in legend and "class 1" in legend
    # one panel per activation, each curve the function itself
    acts = {ax.get_title(): ax.get_lines()[0] for ax in figs[2].axes}
    assert {"sigmoid", "tanh", "relu"} <= set(acts)
    z = torch.as_tensor(acts["sigmoid"].get_xdata())
    assert torch.allclose(torch.as_tensor(acts["sigmoid"].get_ydata()), torch.sigmoid(z), atol=1e-6)
    assert torch.allclose(torch.as_tensor(acts["relu"].get_ydata()), torch.relu(torch.as_tensor(acts["relu"].get_xdata())))
    # the descent path over the landscape and per step: the (w, b) of every row
    path = labelled(figs[3].axes[0])["gradient descent"]
    assert list(path.get_xdata()) == [r["w"] for r in rows] and list(path.get_ydata()) == [r["b"] for r in rows]
    per_step = {ax.get_title(): list(ax.get_lines()[0].get_ydata()) for ax in figs[4].axes}
    assert per_step["loss"] == [r["loss"] for r in rows] and per_step["w"] == [r["w"] for r in rows]
    # a histogram per tensor, titled with its name and size, whose bars count every value
    hists = [ax for ax in figs[5].axes if ax.patches]
    assert len(hists) == 4 and [ax.get_title().split()[0] for ax in hists] == ["a", "b", "c", "d"]
    assert "100" in hists[0].get_title()
    assert [sum(p.get_height() for p in ax.patches) for ax in hists] == [100, 10, 5, 3]
    assert list(figs[6].axes[0].get_lines()[0].get_ydata()) == [1.0, 2.0]
    assert figs[7].axes[0].get_xscale() == figs[7].axes[0].get_yscale() == "log"
    # one panel per parameter (a line per element) and the loss
    traj = {ax.get_title(): ax for ax in figs[8].axes}
    assert len(traj["w"].get_lines()) == 2 and len(traj["b"].get_lines()) == 1
    assert list(traj["loss"].get_lines()[0].get_ydata()) == [1.0, 0.5]
    plt.close("all")


def test_widget_callback_updates_report():
    pytest.importorskip("ipywidgets")
    from helpers.widgets.neurons import neuron_widget

    x, y = N.toy_data("near_far", 40)
    box = neuron_widget(x, y, w=(1.0, 1.0), b=0.0)
    assert "accuracy 50%" in box.report.value  # no bias: everything fires
    box.sliders["b"].value = -3.5
    assert "-3.50 > 0" in box.report.value and "accuracy 50%" not in box.report.value
    box.sliders["w0"].value = 0.0
    box.sliders["w1"].value = 0.0
    assert "no boundary" in box.report.value
    with pytest.raises(ValueError, match="shape"):
        neuron_widget(torch.zeros(4, 3), torch.zeros(4))
