"""helpers.tuning: search spaces as data, strategies, storage URLs, study read-outs, the GPT objective."""

from __future__ import annotations

import csv
import math

import optuna
import pytest
from optuna.trial import TrialState

from helpers import tuning
from helpers.runtime import num_threads

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "n_layer": {"type": "int", "low": 1, "high": 4},
    "n_embd": {"type": "categorical", "choices": [32, 64]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.3},
}


def test_validate_space_gives_optuna_distributions():
    dists = tuning.validate_space(SPACE)
    assert dists["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["n_layer"] == optuna.distributions.IntDistribution(1, 4)
    assert dists["n_embd"] == optuna.distributions.CategoricalDistribution([32, 64])


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"type": "float", "low": 1.0, "high": 1.0}, ["'p'", "low must be < high"]),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, ["'p'", "low > 0"]),
        ({"type": "normal", "low": 0.0, "high": 1.0}, ["'p'", "type must be one of", "'normal'"]),
        ({"type": "int", "low": 0.5, "high": 3}, ["'p'", "low must be an int"]),
        ({"type": "categorical", "choices": []}, ["'p'", "choices"]),
        ({"type": "float", "low": 0, "high": 1, "lo": 2}, ["'p'", "unknown keys"]),
        ({"type": "float", "low": 0, "high": 1, "log": "yes"}, ["'p'", "log must be True or False"]),
        ({"type": "float", "low": 0, "high": float("inf")}, ["'p'", "high must be a finite number", "inf"]),
        ({"type": "float", "low": float("nan"), "high": 1}, ["'p'", "low must be a finite number", "nan"]),
        ({"type": "float", "low": 0, "high": 1, "step": float("nan")}, ["'p'", "step must be a positive number"]),
        ("float", ["'p'", "must be a dict"]),
    ],
)
def test_invalid_space_names_the_parameter(spec, words):
    with pytest.raises(ValueError) as err:
        tuning.validate_space({"p": spec})
    for word in words:
        assert word in str(err.value)


def test_suggest_stays_inside_the_space():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        p = tuning.suggest(trial, SPACE)
        assert 1e-4 <= p["lr"] <= 1e-1 and 1 <= p["n_layer"] <= 4 and isinstance(p["n_layer"], int)
        assert p["n_embd"] in (32, 64) and 0.0 <= p["dropout"] <= 0.3
        study.tell(trial, p["lr"])


def test_grid_axes_are_log_spaced_where_log():
    grid = tuning.grid_axes(SPACE, 4)
    assert grid["lr"] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    assert grid["n_layer"] == [1, 2, 3, 4] and grid["n_embd"] == [32, 64]
    with pytest.raises(ValueError, match="per_axis"):
        tuning.grid_axes(SPACE, 1)


def _study_on(space, fn, n=30, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    study.optimize(lambda t: fn(tuning.suggest(t, space)), n_trials=n)
    return study


def test_edge_params_and_refine_space_move_towards_the_optimum():
    narrow = {"lr": {"type": "float", "low": 1e-5, "high": 1e-4, "log": True},
              "dropout": {"type": "float", "low": 0.0, "high": 0.5}}
    loss = lambda p: (math.log10(p["lr"]) + 2.5) ** 2 + (p["dropout"] - 0.25) ** 2  # optimum lr = 10^-2.5
    study = _study_on(narrow, loss)
    assert tuning.edge_params(study, narrow) == ["lr"]  # the best lr hugs the upper bound
    finer = tuning.refine_space(narrow, study, top_k=5)
    assert finer["lr"]["high"] > 1e-4 and finer["lr"]["log"]  # grows past the old edge
    assert finer["dropout"]["high"] - finer["dropout"]["low"] < 0.5 and finer["dropout"]["low"] >= 0


def test_random_tries_more_distinct_values_than_a_grid_on_the_important_axis():
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}, "y": {"type": "float", "low": 0.0, "high": 1.0}}
    fn = lambda t: tuning.one_axis_loss(t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1))
    grid = optuna.create_study(sampler=tuning.make_sampler("grid", 0, space=space, per_axis=4))
    grid.optimize(fn, n_trials=16)
    rand = optuna.create_study(sampler=tuning.make_sampler("random", 0))
    rand.optimize(fn, n_trials=16)
    assert len({t.params["x"] for t in grid.trials}) == 4
    assert len({t.params["x"] for t in rand.trials}) == 16


def test_sampler_and_pruner_names():
    for name in ("random", "tpe", "nsga2"):
        assert isinstance(tuning.make_sampler(name, 0), optuna.samplers.BaseSampler)
    for name in ("none", "median", "halving", "hyperband"):
        assert isinstance(tuning.make_pruner(name, min_steps=5, max_steps=50), optuna.pruners.BasePruner)
    with pytest.raises(ValueError, match="sampler must be one of"):
        tuning.make_sampler("bayes")
    for bad in (True, -1, 2**32, 2.5):
        with pytest.raises(ValueError, match=rf"seed must be None or an int in \[0, 2\*\*32\).*got {bad!r}"):
            tuning.make_sampler("random", bad)
    with pytest.raises(ValueError, match="pruner must be one of"):
        tuning.make_pruner("mean")
    with pytest.raises(ValueError, match="space="):
        tuning.make_sampler("grid")
    if not tuning.HAS_CMAES:
        with pytest.raises(ImportError, match="pip install cmaes"):
            tuning.make_sampler("cmaes")


@pytest.mark.parametrize(
    "url, words",
    [
        ("", ["storage"]),
        ("not a url", ["storage", "not a url"]),
        ("oracle://u:p@host/db", ["storage", "oracle"]),
        ("sqlite://", ["storage", "in-memory"]),
        ("sqlite:////no/such/folder/x.db", ["storage", "does not exist"]),
        ("journal:/no/such/folder/x.log", ["storage", "does not exist"]),
    ],
)
def test_bad_storage_urls_raise_clear_errors(url, words):
    with pytest.raises(ValueError) as err:
        tuning.make_storage(url)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_study_persists_in_storage_and_exports_rows(tmp_path, kind):
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal:{tmp_path / 's.log'}"
    study = optuna.create_study(study_name="s", storage=tuning.make_storage(url),
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(tuning.quadratic_objective(), n_trials=5)
    again = optuna.load_study(study_name="s", storage=tuning.make_storage(url))  # a new process would do this
    assert [t.value for t in again.trials] == [t.value for t in study.trials]
    rows = tuning.trial_rows(again)
    assert len(rows) == 5 and {"number", "state", "value", "params_x", "params_y", "duration_s"} <= set(rows[0])
    path = tuning.write_csv(rows, tmp_path / "trials.csv")
    with path.open() as f:
        assert len(list(csv.DictReader(f))) == 5


def test_interrupted_csv_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tuning.write_csv([{"a": 1}, {"a": 2}], tmp_path / "trials.csv")
    before = path.read_text()

    def crash(self, rows):
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(csv.DictWriter, "writerows", crash)
    with pytest.raises(KeyboardInterrupt):
        tuning.write_csv([{"a": 3}], path)
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["trials.csv"]
    assert path.stat().st_mode & 0o777 == 0o644


def test_best_so_far_skips_missing_values():
    assert tuning.best_so_far([3.0, None, 2.0, 5.0, 1.0]) == [3.0, 3.0, 2.0, 2.0, 1.0]
    assert tuning.best_so_far([1.0, 3.0], direction="maximize") == [1.0, 3.0]
    assert math.isnan(tuning.best_so_far([None])[0])


def test_pruning_savings_counts_steps():
    study = optuna.create_study()
    for steps, state in ((100, TrialState.COMPLETE), (20, TrialState.PRUNED), (40, TrialState.PRUNED)):
        trial = study.ask()
        trial.set_user_attr("steps_trained", steps)
        study.tell(trial, 1.0 if state == TrialState.COMPLETE else None, state=state)
    s = tuning.pruning_savings(study, full_steps=100)
    assert s["steps_spent"] == 160 and s["steps_without_pruning"] == 300 and s["pruned"] == 2
    assert s["saved_fraction"] == pytest.approx(140 / 300)


def test_warm_start_queues_the_best_params_first():
    old = _study_on(tuning.QUADRATIC_SPACE, lambda p: (p["x"] - 1) ** 2 + (p["y"] + 2) ** 2, n=12)
    new = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    queued = tuning.warm_start(new, old, top_k=2)
    new.optimize(tuning.quadratic_objective(), n_trials=3)
    assert [t.params for t in new.trials[:2]] == queued
    assert new.trials[0].value == pytest.approx(old.best_value)


# ----------------------------------------------------------------------------- the GPT objective


@pytest.fixture(scope="module")
def tiny_data():
    import torch

    from helpers.data import TokenSplits

    g = torch.Generator().manual_seed(0)
    # a learnable toy language: every token is followed by (token + 1) mod 32, with some noise
    base = torch.arange(6000) % 32
    noise = torch.randint(0, 32, (6000,), generator=g)
    tokens = torch.where(torch.rand(6000, generator=g) < 0.1, noise, base)
    with num_threads(1):  # tiny models: more threads only add overhead on a busy machine
        yield TokenSplits(tokens[:4000], tokens[4000:5000], tokens[5000:])


def _objective(data, **kw):
    space = kw.pop("space", {"lr": {"type": "float", "low": 3e-3, "high": 3e-2, "log": True}})
    fixed = {"n_layer": 1, "n_embd": 16, "batch_size": 4, "warmup_steps": 1, **kw.pop("fixed", {})}
    fixed = {k: v for k, v in fixed.items() if k not in space}
    return tuning.gpt_objective(data, 32, space, steps=12, block_size=8, eval_every=4, eval_batches=2,
                                fixed=fixed, device="cpu", **kw)


def test_gpt_objective_trains_and_records_what_it_spent(tiny_data):
    space = {**SPACE, "n_embd": {"type": "categorical", "choices": [16, 32]}, "n_layer": {"type": "int", "low": 1, "high": 2}}
    objective = _objective(tiny_data, space=space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=2)
    for t in study.trials:
        assert t.state == TrialState.COMPLETE and math.isfinite(t.value) and t.value < math.log(32) + 0.5
        assert t.user_attrs["steps_trained"] == 12 and t.user_attrs["parameters"] > 0
        assert sorted(t.intermediate_values) == [4, 8, 12]  # reported at every evaluation
        assert t.intermediate_values[12] == t.value


def test_gpt_objective_is_pruned_through_on_eval(tiny_data):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=0.0))  # prunes any loss > 0
    study.optimize(_objective(tiny_data), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["steps_trained"] == 4  # stopped at the 1st eval
    assert tuning.pruning_savings(study, full_steps=12)["saved_fraction"] == pytest.approx(2 / 3)


def test_a_diverging_trial_is_pruned_and_the_study_goes_on(tiny_data):
    space = {"lr": {"type": "float", "low": 1e-3, "high": 1e4, "log": True}}
    study = optuna.create_study()
    study.enqueue_trial({"lr": 1e4})  # absurd: the loss explodes within a few steps
    study.enqueue_trial({"lr": 1e-2})
    study.optimize(_objective(tiny_data, space=space, fixed={"grad_clip": None}), n_trials=2)
    bad, good = study.trials
    assert bad.state == TrialState.PRUNED and bad.user_attrs["diverged"] is True
    assert bad.user_attrs["steps_trained"] < 12
    assert good.state == TrialState.COMPLETE and study.best_trial.number == 1


def test_multi_objective_returns_loss_and_cost(tiny_data):
    space = {"n_embd": {"type": "categorical", "choices": [16, 32]}, "lr": {"type": "float", "low": 3e-3, "high": 3e-2}}
    objective = _objective(tiny_data, space=space, cost="parameters")
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    for t in study.trials:
        assert t.values[1] == t.user_attrs["parameters"] and not t.intermediate_values
    # the Pareto front, worked out from the trials: those no other trial beats in both loss and cost
    def dominated(t):
        return any(all(a <= b for a, b in zip(o.values, t.values)) and o.values != t.values for o in study.trials)

    front = {t.number for t in study.trials if not dominated(t)}
    assert front and {t.number for t in study.best_trials} == front


def test_objective_rejects_unknown_or_doubled_names(tiny_data):
    with pytest.raises(ValueError, match="'learning_rate' is neither"):
        _objective(tiny_data, space={"learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}})
    with pytest.raises(ValueError, match="fixed and space both set"):
        tuning.gpt_objective(tiny_data, 32, {"lr": {"type": "float", "low": 1e-3, "high": 1e-2}}, fixed={"lr": 1e-3})
    with pytest.raises(ValueError, match="cost must be one of"):
        _objective(tiny_data, cost="energy")


def test_heads_follow_the_width(tiny_data):
    model_cfg, train_cfg = _objective(tiny_data, fixed={"n_embd": 48}).configs({"lr": 1e-2})
    assert model_cfg.n_head == 3 and model_cfg.n_embd % model_cfg.n_head == 0 and train_cfg.lr == 1e-2


def test_evaluate_on_test_retrains_the_same_model(tiny_data):
    objective = _objective(tiny_data)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(objective, n_trials=2)
    result = tuning.evaluate_on_test(study, objective)
    assert result["number"] == study.best_trial.number
    assert result["val_loss"] == pytest.approx(study.best_value, abs=1e-6)  # seeded: the same model again
    assert math.isfinite(result["test_loss"]) and result["params"] == study.best_trial.params
    # measured with the retrained model on the test split: a test split equal to the validation split
    # gives the validation loss again, one whose text runs backwards a higher loss
    from helpers.data import TokenSplits

    same = tuning.evaluate_on_test(study, _objective(TokenSplits(tiny_data.train, tiny_data.val, tiny_data.val.clone())))
    assert same["test_loss"] == pytest.approx(same["val_loss"], abs=1e-6)
    backwards = TokenSplits(tiny_data.train, tiny_data.val, tiny_data.val.flip(0))
    assert tuning.evaluate_on_test(study, _objective(backwards))["test_loss"] > result["val_loss"] + 0.3


def test_plots_draw_from_plain_data():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers.plots import tuning as tplots

    pts = [(0.1, 0.2), (0.5, 0.9), (0.7, 0.4)]
    figs = [
        tplots.plot_grid_vs_random(pts, pts[::-1], x_opt=0.37),
        tplots.plot_best_so_far({"random": [3.0, 2.0, 2.0], "tpe": [[3.0, 1.5, 1.0], [2.5, 2.5, 1.2]]}),
        tplots.plot_learning_curves([([5, 10], [3.0, 2.5], False), ([5], [4.0], True)]),
        tplots.plot_importances({"lr": 0.7, "dropout": 0.3}),
        tplots.plot_param_slice({"a": ([1e-3, 1e-2], [2.0, 1.5])}, "lr", span=(1e-4, 1e-3)),
        tplots.plot_val_vs_test([1.0, 1.1], [1.2, 1.1], chosen=0),
        tplots.plot_pareto([(1.0, 100.0), (1.2, 50.0), (1.3, 80.0)], [(1.0, 100.0), (1.2, 50.0)], log_y=True),
    ]
    for fig in figs:
        assert isinstance(fig, matplotlib.figure.Figure) and fig.axes

    def labelled(ax):
        return {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata()))
                for ln in ax.get_lines() if not ln.get_label().startswith("_")}

    def scattered(ax):
        return [[list(map(float, p)) for p in c.get_offsets()] for c in ax.collections if len(c.get_offsets())]

    # grid and random side by side: every trial drawn, the titles count the distinct x values
    grid_ax, random_ax = figs[0].axes[:2]
    assert [list(map(list, pts))] == scattered(grid_ax) and [list(map(list, pts[::-1]))] == scattered(random_ax)
    assert "3 distinct x" in grid_ax.get_title() and any("0.37" in k for k in labelled(grid_ax))
    # best so far: a single run as is, several runs as the mean of their running minima
    best = labelled(figs[1].axes[0])
    assert best["random"][1] == [3.0, 2.0, 2.0]
    assert best["tpe"][1] == pytest.approx([(3.0 + 2.5) / 2, (1.5 + 2.5) / 2, (1.0 + 1.2) / 2])
    curves = [ln for ln in figs[2].axes[0].get_lines() if len(ln.get_xdata())]
    assert any(list(ln.get_ydata()) == [3.0, 2.5] for ln in curves) and any(list(ln.get_ydata()) == [4.0] for ln in curves)
    # importances: one bar per parameter, its length the importance, labelled with the name
    assert {t.get_text() for t in figs[3].axes[0].get_yticklabels()} == {"lr", "dropout"}
    assert sorted(p.get_width() for p in figs[3].axes[0].patches) == pytest.approx([0.3, 0.7])
    sl = figs[4].axes[0]
    assert scattered(sl) == [[[1e-3, 2.0], [1e-2, 1.5]]] and sl.get_xscale() == "log" and sl.get_xlabel() == "lr"
    vt = figs[5].axes[0]
    assert [[1.0, 1.2], [1.1, 1.1]] in scattered(vt) and [[1.0, 1.2]] in scattered(vt)  # the chosen trial marked
    pareto = figs[6].axes[0]
    assert labelled(pareto)["Pareto front"] == ([1.0, 1.2], [100.0, 50.0]) and pareto.get_yscale() == "log"
    assert scattered(pareto) == [[[1.0, 100.0], [1.2, 50.0], [1.3, 80.0]]]
    for fig in figs:
        plt.close(fig)


def test_every_trial_is_validated_on_the_same_windows_whatever_its_batch_size_and_seed(tiny_data):
    objective = _objective(tiny_data, eval_batch_size=5)
    for batch_size, seed in ((4, None), (8, 7)):
        model, history = objective.train({"lr": 1e-2, "batch_size": batch_size}, seed=seed)
        # the trainer's last evaluation is the objective's own measurement on its fixed windows
        assert history.eval_step == [4, 8, 12]
        assert history.val_loss[-1] == pytest.approx(objective.validate(model), rel=1e-6)
        assert history.best_val_loss == min(history.val_loss)


def test_refine_space_keeps_ints_on_their_grid_and_layer_counts_positive():
    space = {"width": {"type": "int", "low": 16, "high": 128, "step": 16},
             "layers": {"type": "int", "low": 1, "high": 6},
             "act": {"type": "categorical", "choices": ["gelu", "relu", "tanh"]}}
    study = optuna.create_study()
    tried = [(32, 1, "gelu", 1.0), (64, 2, "relu", 2.0), (48, 2, "gelu", 3.0), (128, 6, "tanh", 9.0)]
    for width, layers, act, _ in tried:
        study.enqueue_trial({"width": width, "layers": layers, "act": act})
    values = {(w, n, a): v for w, n, a, v in tried}
    study.optimize(lambda t: values[tuple(tuning.suggest(t, space).values())], n_trials=len(tried))
    finer = tuning.refine_space(space, study, top_k=3)
    # by hand, the three best: widths 32..64, span 32, a quarter of it on each side gives 24..72, widened
    # to the grid of 16 from 16: 16..80; layers 1..2, +-0.25 gives 0.75..2.25, whole numbers 0..3, and a
    # layer count stays >= 1: 1..3; the choices the three used
    assert finer == {"width": {"type": "int", "low": 16, "high": 80, "log": False, "step": 16},
                     "layers": {"type": "int", "low": 1, "high": 3, "log": False},
                     "act": {"type": "categorical", "choices": ["gelu", "relu"]}}
