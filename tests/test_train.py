"""helpers.train: the training loop, its checks, accumulation, divergence and early stopping."""

import copy
import math
import re
import sys

import pytest
import torch

from helpers.data import TokenSplits, get_batch
from helpers.model import GPTConfig
from helpers.train import (
    History,
    TrainConfig,
    accumulate_gradients,
    backward_step,
    evaluate,
    loss_on_fixed_windows,
    make_optimizer,
    train,
    train_fresh,
)

CFG = TINY_GPT = GPTConfig(block_size=16, vocab_size=50, n_layer=1, n_head=2, n_embd=16)  # for tiny_gpt


def _pattern_data() -> TokenSplits:
    up = torch.arange(3000) % 50  # the next token is always id + 1: learnable
    return TokenSplits(train=up, val=up[:600].clone(), test=up[:600].clone())


def _config(**kw) -> TrainConfig:
    base = dict(steps=30, batch_size=8, lr=1e-2, schedule="constant", eval_every=10, eval_batches=2,
                device="cpu", progress=False)
    return TrainConfig(**(base | kw))


def test_training_lowers_the_loss_and_fills_the_history(tiny_gpt):
    model = tiny_gpt()
    hist = train(model, _pattern_data(), _config())
    assert isinstance(hist, History) and not hist.diverged
    assert hist.step == list(range(1, 31))
    assert len(hist.train_loss) == len(hist.lr) == len(hist.grad_norm) == len(hist.tokens_per_s) == 30
    assert hist.train_loss[0] == pytest.approx(math.log(50), abs=0.3)  # starts near uniform guessing
    assert hist.final_train_loss < hist.train_loss[0] - 1.0
    assert hist.eval_step == [10, 20, 30] and hist.val_loss[-1] < hist.val_loss[0]
    assert hist.best_val_loss == min(hist.val_loss) and hist.best_step in hist.eval_step
    assert hist.tokens_seen == 30 * 8 * 16 and all(t > 0 for t in hist.tokens_per_s)
    # on the CPU: fp32 weights, gradients and AdamW's two moments (4 bytes each per parameter), plus the
    # activations saved for one micro-batch, which hold at least its logits (B=8, T=16, V=50, fp32)
    activations = hist.peak_memory_bytes - 16 * model.num_parameters()
    assert 8 * 16 * 50 * 4 <= activations < 100 * 8 * 16 * 50 * 4 and hist.memory_source.startswith("estimate")
    assert model.training, "train() leaves the model in train mode"
    rows = hist.to_rows()
    assert rows[9]["val_loss"] == hist.val_loss[0] and rows[0]["val_loss"] is None
    s = hist.summary()
    assert s["steps_run"] == 30 and s["diverged"] is False


def test_gradient_accumulation_matches_one_large_batch(tiny_gpt):
    data = _pattern_data().train
    x, y = get_batch(torch.randint(50, (2000,)), 16, 16, torch.Generator().manual_seed(0))
    a, b = tiny_gpt(), tiny_gpt()
    accumulate_gradients(a, x, y, grad_accum=1)
    loss_b = accumulate_gradients(b, x, y, grad_accum=4)  # 4 micro-batches of 4 windows
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5, rtol=0), name
    assert loss_b.requires_grad is False
    # the same through train(): identical windows, identical update
    a, b = tiny_gpt(), tiny_gpt()
    cfg = dict(steps=2, optimizer="sgd", lr=0.5, grad_clip=None, eval_every=None, weight_decay=0.0)
    train(a, TokenSplits(data, data, data), _config(batch_size=16, grad_accum=1, **cfg))
    train(b, TokenSplits(data, data, data), _config(batch_size=4, grad_accum=4, **cfg))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5, rtol=0)


def test_divergence_stops_cleanly_and_names_step_and_lr(tiny_gpt):
    hist = train(tiny_gpt(), _pattern_data(), _config(lr=50.0, optimizer="sgd", grad_clip=None, steps=40))
    assert hist.diverged and len(hist.step) < 40
    assert f"step {hist.step[-1]}" in hist.message and "lr 5.00e+01" in hist.message
    last = hist.train_loss[-1]
    assert not math.isfinite(last) or last > 3 * hist.train_loss[0]
    assert hist.final_train_loss == math.inf and hist.summary()["diverged"] is True


def test_nan_loss_counts_as_divergence(tiny_gpt):
    model = tiny_gpt()
    with torch.no_grad():
        model.transformer.wte.weight[0, 0] = float("nan")
    hist = train(model, _pattern_data(), _config(steps=5))
    assert hist.diverged and hist.step == [1] and "not finite" in hist.message


def test_gradient_clipping_records_the_norm_before_clipping(tiny_gpt):
    a, b = tiny_gpt(), tiny_gpt()
    ha = train(a, _pattern_data(), _config(steps=3, grad_clip=None, eval_every=None))
    hb = train(b, _pattern_data(), _config(steps=3, grad_clip=1e-3, eval_every=None))
    assert ha.grad_norm[0] == pytest.approx(hb.grad_norm[0], rel=1e-5)  # same weights, same batch
    assert hb.grad_norm[0] > 1e-3
    # a clipped step moves the weights less
    moved_a = sum((p - q).norm() for p, q in zip(a.parameters(), tiny_gpt().parameters()))
    moved_b = sum((p - q).norm() for p, q in zip(b.parameters(), tiny_gpt().parameters()))
    assert moved_b < moved_a


def test_early_stopping_restores_the_best_weights(tiny_gpt):
    up = torch.arange(3000) % 50
    down = up.flip(0)  # validation text runs backwards: learning "id + 1" makes it worse
    snapshots = {}

    def remember(step, val_loss):
        snapshots[step] = copy.deepcopy(model.state_dict())

    model = tiny_gpt()
    hist = train(model, TokenSplits(up, down, down), _config(steps=100, eval_every=5, patience=2), on_eval=remember)
    assert hist.stopped_early and hist.restored_best and len(hist.step) < 100
    assert hist.val_loss.index(hist.best_val_loss) == len(hist.val_loss) - 3  # best, then 2 worse
    best = snapshots[hist.best_step]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    assert "restored the best weights" in hist.message


def test_on_eval_can_stop_the_run(tiny_gpt):
    hist = train(tiny_gpt(), _pattern_data(), _config(), on_eval=lambda step, loss: step >= 20)
    assert hist.eval_step == [10, 20] and len(hist.step) == 20 and "on_eval" in hist.message


def test_evaluate_uses_eval_mode_and_restores_train_mode(tiny_gpt):
    model = tiny_gpt(dropout=0.5)
    data = _pattern_data()
    a = evaluate(model, data.val, 4, 16, 2, torch.Generator().manual_seed(1), "cpu")
    b = evaluate(model, data.val, 4, 16, 2, torch.Generator().manual_seed(1), "cpu")
    assert a == b, "no dropout during evaluation"
    assert model.training


def test_same_seed_same_run(tiny_gpt):
    h1 = train(tiny_gpt(dropout=0.1), _pattern_data(), _config(steps=10))
    h2 = train(tiny_gpt(dropout=0.1), _pattern_data(), _config(steps=10))
    assert h1.train_loss == h2.train_loss and h1.val_loss == h2.val_loss


def test_weight_decay_only_on_matrices(tiny_gpt):
    opt = make_optimizer(tiny_gpt(), "adamw", 1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert isinstance(opt, torch.optim.AdamW)


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "rmsprop", "adam", "adamw"])
def test_every_optimizer_trains(name, tiny_gpt):
    lr = {"sgd": 0.5, "sgd_momentum": 0.1}.get(name, 1e-2)
    hist = train(tiny_gpt(), _pattern_data(), _config(optimizer=name, lr=lr, steps=20, eval_every=None))
    assert not hist.diverged and hist.final_train_loss < hist.train_loss[0] - 0.3, name


def test_one_sync_per_step(monkeypatch, tiny_gpt):
    calls = {"item": 0, "tolist": 0}
    item, tolist = torch.Tensor.item, torch.Tensor.tolist

    def counting(name, fn):
        def wrapper(self, *a, **kw):
            if sys._getframe(1).f_code.co_filename.endswith("train.py"):  # only the loop's own calls
                calls[name] += 1
            return fn(self, *a, **kw)
        return wrapper

    monkeypatch.setattr(torch.Tensor, "item", counting("item", item))
    monkeypatch.setattr(torch.Tensor, "tolist", counting("tolist", tolist))
    train(tiny_gpt(), _pattern_data(), _config(steps=10, eval_every=None, grad_accum=2))
    assert calls["tolist"] == 10 and calls["item"] == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(lr=0.0), "lr must be a positive number, got 0.0"),
        (dict(lr=-1e-3), "lr must be a positive number"),
        (dict(batch_size=0), "batch_size must be an int >= 1, got 0"),
        (dict(steps=0), "steps must be an int >= 1, got 0"),
        (dict(grad_accum=0), "grad_accum must be an int >= 1, got 0"),
        (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0, got -0.1"),
        (dict(optimizer="adamax"), "optimizer must be one of sgd, sgd_momentum, rmsprop, adam, adamw, got 'adamax'"),
        (dict(schedule="exp"), "schedule must be one of constant, step, linear, cosine, warmup_cosine, one_cycle"),
        (dict(schedule="warmup_cosine", warmup_steps=30), "warmup_steps must be < steps=30"),
        (dict(momentum=1.0), r"momentum must be a number in \[0, 1\), got 1.0"),
        (dict(grad_clip=-1.0), "grad_clip must be None, 0"),
        (dict(patience=0), "patience must be an int >= 1, got 0"),
        (dict(patience=2, eval_every=None), "patience=2 needs evaluations: set eval_every >= 1"),
        (dict(diverge_factor=1.0), "diverge_factor must be None or a finite number > 1"),
        # not finite, or True/False where a number belongs: refused at once, not "diverged" later
        (dict(weight_decay=math.nan), "weight_decay must be a finite number >= 0, got nan"),
        (dict(weight_decay=math.inf), "weight_decay must be a finite number >= 0, got inf"),
        (dict(weight_decay=True), "weight_decay must be a finite number >= 0, got True"),
        (dict(grad_clip=math.nan), "grad_clip must be None, 0 .* got nan"),
        (dict(grad_clip=math.inf), "grad_clip must be None, 0 .* got inf"),
        (dict(grad_clip=True), "grad_clip must be None, 0 .* got True"),
        (dict(diverge_factor=math.nan), "diverge_factor must be None or a finite number > 1, got nan"),
        (dict(diverge_factor=True), "diverge_factor must be None or a finite number > 1, got True"),
        (dict(lr=True), "lr must be a positive number, got True"),
        (dict(lr=math.nan), "lr must be a positive number, got nan"),
        (dict(momentum=False), r"momentum must be a number in \[0, 1\), got False"),
        (dict(min_lr_ratio=math.nan), "min_lr_ratio must be a number in"),
        (dict(betas=None), r"betas must be two numbers in \[0, 1\), got None"),
        (dict(betas=(0.9, math.nan)), r"betas must be two numbers in \[0, 1\), got \(0.9, nan\)"),
        (dict(betas=(0.9,)), r"betas must be two numbers"),
        (dict(seed=2**64), r"seed must be an int in 0..9223372036854775807 \(2\*\*63 - 1\), got 18446744073709551616"),
        (dict(seed=-1), "seed must be an int >= 0, got -1"),
        (dict(progress="yes"), "progress must be True or False, got 'yes'"),
        (dict(device=5), "device must be None or a device name"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _config(**kwargs)


def test_bad_train_input(tiny_gpt):
    with pytest.raises(ValueError, match="block_size must be <= the model's block_size=16, got 32"):
        train(tiny_gpt(), _pattern_data(), _config(block_size=32))
    with pytest.raises(ValueError, match="data must be a TokenSplits"):
        train(tiny_gpt(), torch.arange(100), _config())


def test_any_non_number_for_a_number_field_is_named():
    """Property: NaN, ±inf, True/False, None or a string in any numeric field of TrainConfig raises a
    ValueError whose message names the field and shows the value (never later, never a TypeError)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    # None is allowed where the field documents it (off / default)
    fields = {"steps": False, "batch_size": False, "lr": False, "momentum": False, "weight_decay": False,
              "warmup_steps": False, "min_lr_ratio": False, "grad_clip": True, "grad_accum": False,
              "eval_batches": False, "diverge_factor": True, "seed": False, "patience": True, "eval_every": True,
              "block_size": True}
    bad = st.sampled_from([math.nan, math.inf, -math.inf, True, False, None, "1", [1], 2**64, -1])

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(st.sampled_from(sorted(fields)), bad)
    def check(name, value):
        if value is None and fields[name]:
            return
        if value == 2**64 and name != "seed":
            return  # a huge int is a legal size or count
        with pytest.raises(ValueError, match=re.escape(name)) as err:
            _config(**{name: value})
        assert repr(value) in str(err.value)

    check()


def test_loss_on_fixed_windows_sees_the_same_windows_every_call(tiny_gpt):
    model, data = tiny_gpt(), _pattern_data()
    a = loss_on_fixed_windows(model, data.val, 4, batches=3, seed=5)
    windows = torch.Generator().manual_seed(5)
    total = 0.0
    with torch.no_grad():
        for _ in range(3):  # the same draws written out: get_batch with the seeded generator
            x, y = get_batch(data.val, 4, CFG.block_size, windows)
            total += model.eval().loss(x, y).item()
    model.train()
    assert a == pytest.approx(total / 3, rel=1e-5)
    assert loss_on_fixed_windows(model, data.val, 4, batches=3, seed=5) == a
    assert loss_on_fixed_windows(model, data.val, 4, batches=3, seed=6) != a
    assert model.training


def test_train_fresh_starts_every_run_from_the_same_weights(tiny_gpt):
    data = _pattern_data()
    runs = [train_fresh(tiny_gpt, data, steps=5, batch_size=4, lr=1e-2, schedule="constant", eval_every=None,
                        device="cpu") for _ in range(2)]
    (m1, h1), (m2, h2) = runs
    assert h1.train_loss == h2.train_loss and len(h1.step) == 5
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    other = train_fresh(tiny_gpt, data, seed=1, steps=5, batch_size=4, lr=1e-2, schedule="constant",
                        eval_every=None, device="cpu")[1]
    assert other.train_loss != h1.train_loss


@pytest.mark.parametrize("schedule,warmup", [("warmup_cosine", 3), ("one_cycle", 0), ("step", 0)])
def test_the_optimiser_uses_the_schedule_at_every_step(monkeypatch, tiny_gpt, schedule, warmup):
    """The LR the optimiser actually applies at update k (1-based) is the schedule's value at the
    0-based step k - 1, read from the param groups when ``step()`` is called, not from the History
    (which records what train() meant to use)."""
    import helpers.train as train_module

    used: list[list[float]] = []
    real = train_module.make_optimizer

    def recording(*args, **kwargs):
        opt = real(*args, **kwargs)
        opt.register_step_pre_hook(lambda o, a, kw: used.append([g["lr"] for g in o.param_groups]))
        return opt

    monkeypatch.setattr(train_module, "make_optimizer", recording)
    steps, base = 12, 0.02
    hist = train(tiny_gpt(), _pattern_data(), _config(steps=steps, lr=base, schedule=schedule, warmup_steps=warmup,
                                                       min_lr_ratio=0.1, eval_every=None))
    assert len(used) == steps and all(len(set(groups)) == 1 for groups in used)
    lo, last = base * 0.1, steps - 1
    if schedule == "warmup_cosine":
        want = [base * (s + 1) / (warmup + 1) if s < warmup
                else lo + (base - lo) * (1 + math.cos(math.pi * (s - warmup) / (last - warmup))) / 2 for s in range(steps)]
    elif schedule == "one_cycle":
        mid = last / 2
        want = [base / 25 + (base - base / 25) * s / mid if s <= mid else base + (lo - base) * (s - mid) / (last - mid)
                for s in range(steps)]
    else:
        want = [base * (1.0 if s < 6 else 0.1 if s < 9 else 0.01) for s in range(steps)]
    assert [groups[0] for groups in used] == pytest.approx(want, rel=1e-12)
    assert hist.lr == pytest.approx(want, rel=1e-12), "the History records the LR that was used"


def test_memory_estimate_counts_one_micro_batch_of_activations(tiny_gpt):
    """Accumulation keeps one micro-batch in memory at a time: 4 micro-batches of 4 windows need the
    activations of 4 windows, not 16, and a batch twice as large needs about twice the activations."""
    runs = {}
    for batch, accum in ((4, 1), (4, 4), (8, 1)):
        model = tiny_gpt()
        hist = train(model, _pattern_data(), _config(steps=1, batch_size=batch, grad_accum=accum, eval_every=None))
        runs[batch, accum] = hist.peak_memory_bytes - 16 * model.num_parameters()
    # (not exactly equal: the count is of distinct storages, and which coincide depends on the windows drawn)
    assert runs[4, 4] == pytest.approx(runs[4, 1], rel=0.05) and runs[4, 1] > 0
    assert 1.5 * runs[4, 1] < runs[8, 1] < 2.5 * runs[4, 1]


def test_history_worked_numbers():
    h = History(step=list(range(1, 21)), train_loss=[float(i) for i in range(20)], lr=[0.1] * 20, grad_norm=[1.0] * 20,
                tokens_per_s=[1000.0, 5.0, 1.0, 3.0, 2.0, 4.0] + [3.0] * 14, eval_step=[10, 20], val_loss=[2.5, 2.0],
                tokens_seen=640, seconds=1.5, best_val_loss=2.0, best_step=20, peak_memory_bytes=7)
    assert h.final_train_loss == sum(range(10, 20)) / 10  # the mean of the last ten steps
    assert h.final_val_loss == 2.0
    s = h.summary()
    assert s["tokens_per_s"] == 3.0  # the median without the first step (warm-up)
    assert s == {"final_train_loss": 14.5, "final_val_loss": 2.0, "best_val_loss": 2.0, "best_step": 20,
                 "diverged": False, "stopped_early": False, "steps_run": 20, "tokens_seen": 640, "tokens_per_s": 3.0,
                 "seconds": 1.5, "peak_memory_bytes": 7}
    rows = h.to_rows()
    assert len(rows) == 20 and rows[9] == {"step": 10, "train_loss": 9.0, "lr": 0.1, "grad_norm": 1.0,
                                           "tokens_per_s": 3.0, "val_loss": 2.5}
    assert [r["val_loss"] for r in rows].count(None) == 18
    assert math.isnan(History(train_loss=[1.0]).final_val_loss)  # never evaluated
    assert History().final_train_loss == math.inf and math.isnan(History().summary()["tokens_per_s"])
    gone = History(train_loss=[1.0], val_loss=[1.0], diverged=True)
    assert gone.final_train_loss == math.inf and gone.final_val_loss == math.inf
    assert History(tokens_per_s=[7.0]).summary()["tokens_per_s"] == 7.0  # one step: that step


def test_accumulation_needs_equal_parts(tiny_gpt):
    x = torch.zeros(6, 16, dtype=torch.long)
    with pytest.raises(ValueError, match=r"^the batch of 6 windows must split into grad_accum=4 equal parts$"):
        accumulate_gradients(tiny_gpt(), x, x, grad_accum=4)


def test_evaluation_uses_its_own_batch_size_windows_and_seed(tiny_gpt):
    """The validation loss after the last step is the loss on the fixed windows of eval_seed (default:
    seed + 1), eval_batches batches of eval_batch_size (default: batch_size) windows of block_size."""
    data = _pattern_data()
    for kw, (bs, seed) in ((dict(), (8, 1)), (dict(eval_batch_size=3, eval_seed=7, seed=2), (3, 7))):
        model = tiny_gpt(dropout=0.1)
        hist = train(model, data, _config(steps=4, eval_every=4, eval_batches=3, block_size=12, **kw))
        assert hist.eval_step == [4] and hist.tokens_per_step == 8 * 12 and hist.tokens_seen == 4 * 8 * 12
        assert hist.val_loss[-1] == pytest.approx(loss_on_fixed_windows(model, data.val, bs, 12, 3, seed), rel=1e-6)


def test_grad_clip_zero_means_off_and_no_eval_means_none(tiny_gpt):
    a, b = tiny_gpt(), tiny_gpt()
    ha = train(a, _pattern_data(), _config(steps=3, grad_clip=None, eval_every=None))
    hb = train(b, _pattern_data(), _config(steps=3, grad_clip=0, eval_every=0))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert ha.eval_step == hb.eval_step == [] and math.isnan(hb.final_val_loss)
    assert hb.message == "finished 3 steps"


def test_stop_messages_name_the_step_and_the_reason(tiny_gpt):
    hist = train(tiny_gpt(), _pattern_data(), _config(), on_eval=lambda step, loss: step >= 20)
    assert hist.message == "stopped at step 20 by on_eval"
    up = torch.arange(3000) % 50
    down = up.flip(0)
    hist = train(tiny_gpt(), TokenSplits(up, down, down), _config(steps=100, eval_every=5, patience=2))
    assert hist.message == (f"stopped early at step {hist.step[-1]}: no better validation loss for 2 evaluations "
                            f"(best {hist.best_val_loss:.4f} at step {hist.best_step}); restored the best weights "
                            f"(step {hist.best_step})")
    assert hist.step[-1] == hist.best_step + 10


def test_divergence_message_and_factor(tiny_gpt):
    hist = train(tiny_gpt(), _pattern_data(), _config(lr=50.0, optimizer="sgd", grad_clip=None, steps=40))
    k, loss = hist.step[-1], hist.train_loss[-1]
    if math.isfinite(loss):
        assert hist.message == f"diverged at step {k} (lr 5.00e+01): loss {loss:.4g} > 3 x first loss {hist.train_loss[0]:.3f}"
        assert all(x <= 3 * hist.train_loss[0] for x in hist.train_loss[:-1])
    # the step that diverged is recorded but not applied, and its tokens are not counted
    assert hist.tokens_seen == (k - 1) * 8 * 16 and len(hist.tokens_per_s) == k
    # a larger factor lets the same run go on for longer
    later = train(tiny_gpt(), _pattern_data(), _config(lr=50.0, optimizer="sgd", grad_clip=None, steps=40,
                                                       diverge_factor=1e6))
    assert len(later.step) >= len(hist.step)


def test_summary_takes_the_median_speed_without_the_first_step():
    h = History(tokens_per_s=[1000.0, 10.0, 20.0, 30.0, 40.0, 50.0])  # the first step includes warm-up
    assert h.summary()["tokens_per_s"] == 30.0  # median of 10, 20, 30, 40, 50 (one more dropped: 40)
    assert History(tokens_per_s=[7.0]).summary()["tokens_per_s"] == 7.0  # one step: it is all there is


def _reference_norm(params) -> float:
    """The global L2 norm written out: the square root of the sum of every gradient entry squared."""
    return math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in params if p.grad is not None))


@pytest.mark.parametrize("old_torch", [False, True])
def test_backward_step_norm_clipping_and_defaults(tiny_gpt, monkeypatch, old_torch):
    if old_torch:  # the torch < 2.6 path: neither fused helper exists
        monkeypatch.delattr(torch.nn.utils, "get_total_norm")
        monkeypatch.delattr(torch.nn.utils, "clip_grads_with_norm_")
    model = tiny_gpt()
    opt = make_optimizer(model, "sgd", 0.1)
    x, y = get_batch(_pattern_data().train, 3, 16, torch.Generator().manual_seed(0))  # 3 windows: no split by 2
    loss, norm = backward_step(model, opt, x, y, lr=0.1)  # every trainable parameter, one micro-batch
    params = list(model.parameters())
    assert norm.item() == pytest.approx(_reference_norm(params), rel=1e-5) and loss.item() > 0
    # a subset given: the norm is that subset's
    head = [model.lm_head.weight]
    _, norm = backward_step(model, opt, x, y, lr=0.1, params=head)
    assert norm.item() == pytest.approx(_reference_norm(head), rel=1e-5)
    # clipping rescales every gradient to the given global norm
    _, norm = backward_step(model, opt, x, y, lr=0.1, grad_clip=1e-3)
    assert norm.item() > 1e-3 and _reference_norm(params) == pytest.approx(1e-3, rel=1e-4)
    # no gradient at all: a zero norm
    frozen = torch.nn.Parameter(torch.ones(2))
    _, norm = backward_step(model, opt, x, y, lr=0.1, params=[frozen])
    assert norm.shape == () and norm.item() == 0.0


def test_loss_on_fixed_windows_defaults_and_block_size(tiny_gpt):
    model, data = tiny_gpt(), _pattern_data()
    expected = evaluate(model, data.val, 4, 16, 10, torch.Generator().manual_seed(0))  # 10 batches, seed 0, the window
    assert loss_on_fixed_windows(model, data.val, 4) == expected
    short = evaluate(model, data.val, 4, 5, 10, torch.Generator().manual_seed(0))
    assert loss_on_fixed_windows(model, data.val, 4, block_size=5) == short != expected


def test_train_fresh_is_quiet(tiny_gpt, capsys):
    train_fresh(tiny_gpt, _pattern_data(), steps=2, batch_size=2, schedule="constant", eval_every=None, device="cpu")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_the_memory_estimate_adds_the_saved_activations_without_the_parameters(tiny_gpt):
    model, data = tiny_gpt(), _pattern_data()
    x, y = get_batch(data.train, 4, 16, torch.Generator().manual_seed(0), "cpu")  # train()'s first windows
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):  # every distinct storage autograd keeps for the backward pass, parameters left out
        if t.untyped_storage().data_ptr() not in parameters:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model.loss(x, y)
    del loss
    hist = train(model, data, _config(steps=1, batch_size=4, eval_every=None))
    assert hist.peak_memory_bytes - 16 * model.num_parameters() == sum(saved.values())  # AdamW: 16 bytes a parameter


def test_accumulation_returns_the_mean_loss_of_the_whole_batch(tiny_gpt):
    model = tiny_gpt()
    x, y = get_batch(_pattern_data().train, 6, 16, torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = model.loss(x, y).item()
    assert accumulate_gradients(model, x, y).item() == pytest.approx(whole, rel=1e-6)  # default: one micro-batch
    x3, y3 = x[:3], y[:3]
    accumulate_gradients(model, x3, y3)  # 3 windows cannot split into 2: the default takes them at once
    model.zero_grad()
    assert accumulate_gradients(model, x, y, grad_accum=3).item() == pytest.approx(whole, rel=1e-5)


def test_train_names_data_of_the_wrong_type(tiny_gpt):
    with pytest.raises(ValueError) as err:
        train(tiny_gpt(), [1, 2, 3], _config())
    assert str(err.value) == "data must be a TokenSplits, got list"


def test_one_sgd_step_applies_weight_decay_to_matrices_only(tiny_gpt):
    model, data = tiny_gpt(), _pattern_data()
    before = copy.deepcopy(model)
    x, y = get_batch(data.train, 4, 16, torch.Generator().manual_seed(0), "cpu")  # the run's first windows
    before.loss(x, y).backward()
    lr, wd = 0.1, 0.5
    train(model, data, _config(steps=1, batch_size=4, optimizer="sgd", lr=lr, weight_decay=wd, grad_clip=None,
                               eval_every=None))
    for (name, p0), p1 in zip(before.named_parameters(), model.parameters()):
        decay = wd if p0.dim() >= 2 else 0.0  # L2 added to the gradient, matrices and embeddings only
        expected = p0 - lr * (p0.grad + decay * p0)
        assert torch.allclose(p1, expected, atol=1e-6), name


def test_the_windows_come_from_the_seed_alone_not_from_dropout(tiny_gpt, monkeypatch):
    import helpers.train as train_module

    def windows(dropout: float) -> list[torch.Tensor]:
        seen = []
        real = train_module.get_batch

        def spy(*args, **kwargs):
            x, y = real(*args, **kwargs)
            seen.append(x.clone())
            return x, y

        monkeypatch.setattr(train_module, "get_batch", spy)
        train(tiny_gpt(dropout=dropout), _pattern_data(), _config(steps=3, batch_size=2, eval_every=None, seed=4))
        return seen

    gen = torch.Generator().manual_seed(4)
    expected = [get_batch(_pattern_data().train, 2, 16, gen)[0] for _ in range(3)]
    for dropout in (0.0, 0.5):  # dropout draws from the global generator; the windows must not move
        assert all(torch.equal(a, b) for a, b in zip(windows(dropout), expected, strict=True)), dropout


def test_the_progress_bar_names_the_run_and_counts_the_steps(tiny_gpt, capsys):
    train(tiny_gpt(), _pattern_data(), _config(steps=3, batch_size=2, eval_every=None, progress=True))
    err = capsys.readouterr().err
    assert err.startswith("\rtrain:   0%|") and " 0/3 " in err
    assert "\n" not in err and err.rstrip("\r").rsplit("\r", 1)[-1].strip() == ""  # wiped at the end, not left


class _Bar:
    """Stands in for tqdm: records what the progress bar was told."""

    made: list = []

    def __init__(self, **kwargs):
        self.kwargs, self.n, self.postfix, self.closed = kwargs, 0, [], False
        _Bar.made.append(self)

    def update(self, n):
        self.n += n

    def set_postfix(self, **kwargs):
        self.postfix.append(kwargs)

    def close(self):
        self.closed = True


@pytest.mark.parametrize("progress", [False, True])
def test_the_progress_bar_gets_the_steps_and_a_postfix_every_ten(tiny_gpt, monkeypatch, progress):
    import helpers.train as train_module

    monkeypatch.setattr(train_module, "tqdm", _Bar)
    _Bar.made.clear()
    hist = train(tiny_gpt(), _pattern_data(), _config(steps=25, batch_size=2, eval_every=None, progress=progress))
    (bar,) = _Bar.made
    assert bar.kwargs == {"total": 25, "disable": not progress, "desc": "train", "leave": False}
    assert bar.n == 25 and bar.closed
    assert bar.postfix == [{"loss": f"{hist.train_loss[k - 1]:.3f}", "lr": f"{hist.lr[k - 1]:.1e}",
                            "tok_s": f"{hist.tokens_per_s[k - 1]:,.0f}", "refresh": False} for k in (10, 20, 25)]


def _fake_clock(monkeypatch):
    """train()'s clock made deterministic: every reading is 0.5 s after the one before, from 100 s."""
    import itertools
    import types

    import helpers.train as train_module

    ticks = itertools.count(100.0, 0.5)
    monkeypatch.setattr(train_module, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))


def test_speed_and_duration_from_the_clock(tiny_gpt, monkeypatch):
    _fake_clock(monkeypatch)
    hist = train(tiny_gpt(), _pattern_data(), _config(steps=3, batch_size=2, eval_every=None))
    # readings: the start, then per step its start and end (0.5 s apart), then the end of the run
    assert hist.tokens_per_s == [2 * 16 / 0.5] * 3
    assert hist.seconds == 7 * 0.5
    model = tiny_gpt()
    with torch.no_grad():
        model.transformer.wte.weight[0, 0] = float("nan")
    hist = train(model, _pattern_data(), _config(steps=5, batch_size=2))
    assert hist.tokens_per_s == [2 * 16 / 0.5]  # the diverged step is timed too
    assert hist.message == f"diverged at step 1 (lr {hist.lr[0]:.2e}): loss nan is not finite"


def test_divergence_is_measured_against_the_first_loss(tiny_gpt):
    cfg = dict(lr=10.0, optimizer="sgd", grad_clip=None, eval_every=None)
    hist = train(tiny_gpt(), _pattern_data(), _config(steps=10, diverge_factor=1.05, **cfg))
    first = hist.train_loss[0]
    assert hist.diverged and all(loss <= 1.05 * first for loss in hist.train_loss[:-1])
    assert math.isfinite(hist.train_loss[-1]) and hist.train_loss[-1] > 1.05 * first
    assert hist.message.endswith(f"> 1.05 x first loss {first:.3f}")
    # without a factor only NaN or inf count: the same rising loss goes on
    hist = train(tiny_gpt(), _pattern_data(), _config(steps=len(hist.step), diverge_factor=None, **cfg))
    assert not hist.diverged and hist.train_loss[-1] > 1.05 * hist.train_loss[0]


def test_an_equal_validation_loss_is_no_improvement(tiny_gpt):
    # a learning rate too small to change a float32 weight: every evaluation gives the same loss
    hist = train(tiny_gpt(), _pattern_data(), _config(steps=10, lr=1e-30, eval_every=1, patience=2))
    assert hist.val_loss[0] == hist.val_loss[1] == hist.val_loss[2]
    assert (hist.stopped_early, hist.best_step, hist.step[-1]) == (True, 1, 3)


def test_on_eval_gets_the_validation_loss_and_a_full_run_says_it_restored(tiny_gpt):
    calls = []
    hist = train(tiny_gpt(), _pattern_data(), _config(steps=20, eval_every=5, patience=10),
                 on_eval=lambda step, val: calls.append((step, val)))
    assert calls == list(zip(hist.eval_step, hist.val_loss)) and len(calls) == 4
    assert hist.message == f"restored the best weights (step {hist.best_step})"  # nothing stopped it early


def test_the_activation_count_costs_one_forward_pass_per_run(tiny_gpt):
    model = tiny_gpt()
    calls = []
    model.transformer.wte.register_forward_pre_hook(lambda module, args: calls.append(1))  # once per forward
    train(model, _pattern_data(), _config(steps=4, batch_size=2, eval_every=None))
    assert len(calls) == 4 + 1


@pytest.mark.parametrize("field,value", [("eval_batches", 0), ("warmup_steps", -1), ("eval_batch_size", 0),
                                         ("eval_seed", -1)])
def test_counts_are_named_in_their_messages(field, value):
    minimum = 0 if field in ("warmup_steps", "eval_seed") else 1
    with pytest.raises(ValueError) as err:
        _config(**{field: value})
    assert str(err.value) == f"{field} must be an int >= {minimum}, got {value}"


def test_the_edges_of_the_allowed_ranges_are_accepted():
    from helpers.runtime import MAX_SEED

    cfg = _config(momentum=0.0, betas=(0.0, 0.0), min_lr_ratio=0.0, diverge_factor=1.5, eval_seed=0, seed=MAX_SEED)
    assert (cfg.momentum, cfg.betas, cfg.min_lr_ratio, cfg.diverge_factor, cfg.seed) == (0.0, (0.0, 0.0), 0.0, 1.5,
                                                                                         MAX_SEED)
    assert _config(min_lr_ratio=1.0).min_lr_ratio == 1.0
    for field, value, message in (
            ("betas", (1.0, 0.9), "betas must be two numbers in [0, 1), got (1.0, 0.9)"),
            ("betas", (0.9, 1.5), "betas must be two numbers in [0, 1), got (0.9, 1.5)"),
            ("min_lr_ratio", 1.5, "min_lr_ratio must be a number in [0, 1], got 1.5"),
            ("block_size", 0, "block_size must be an int >= 1, got 0"),
            ("eval_every", -1, "eval_every must be an int >= 0, got -1"),
            ("eval_seed", -1, "eval_seed must be an int >= 0, got -1"),
            ("warmup_steps", 30, "warmup_steps must be < steps=30 for warmup_cosine, got 30 (lower warmup_steps or "
                                 "pick another schedule)")):
        with pytest.raises(ValueError) as err:
            _config(**{field: value, "schedule": "warmup_cosine" if field == "warmup_steps" else "constant"})
        assert str(err.value) == message, field


@pytest.mark.parametrize("amp", [False, True])
def test_the_amp_switch_reaches_every_forward_pass(tiny_gpt, monkeypatch, amp):
    """bf16 autocast only acts on CUDA, so on the CPU the switch is checked where it is handed over."""
    import contextlib

    import helpers.train as train_module

    asked = []

    def spy(device, enabled=True):
        asked.append(enabled)
        return contextlib.nullcontext()

    monkeypatch.setattr(train_module, "autocast", spy)
    model, data = tiny_gpt(), _pattern_data()
    train(model, data, _config(steps=2, batch_size=2, grad_accum=2, eval_every=2, eval_batches=2, amp=amp))
    # the activation count, 2 steps of 2 micro-batches, 2 evaluation batches
    assert asked == [amp] * (1 + 2 * 2 + 2)
    asked.clear()
    x, y = get_batch(data.train, 2, 16, torch.Generator().manual_seed(0))
    backward_step(model, make_optimizer(model, "sgd", 0.1), x, y, lr=0.1)
    accumulate_gradients(model, x, y)
    loss_on_fixed_windows(model, data.val, 2, batches=1)
    assert asked == [True, True, True]  # on by default


def test_memory_is_released_before_a_large_run_only(tiny_gpt, monkeypatch):
    import helpers.train as train_module

    calls, model = [], tiny_gpt()
    monkeypatch.setattr(train_module, "release_memory", lambda: calls.append(1))
    nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
    monkeypatch.setattr(train_module, "RELEASE_ABOVE_BYTES", nbytes + 1)  # one byte more than the model holds
    train(model, _pattern_data(), _config(steps=1, eval_every=None))
    assert calls == []
    monkeypatch.setattr(train_module, "RELEASE_ABOVE_BYTES", nbytes)  # exactly its size: a large model
    train(model, _pattern_data(), _config(steps=1, eval_every=None))
    assert calls == [1]


@pytest.mark.parametrize("second_loss,diverges", [(2.0, False), (2.0 + 2.0**-22, True)])  # the next float32 above 2
def test_a_loss_exactly_at_the_divergence_limit_is_not_divergence(tiny_gpt, second_loss, diverges):
    model = tiny_gpt()
    real = model.loss
    # the loss the training sees, step by step: the first call is train()'s activation count on the CPU
    scripted = iter([1.0, 1.0, second_loss, 1.0, 1.0])
    model.loss = lambda x, y: real(x, y) * 0.0 + next(scripted)
    hist = train(model, _pattern_data(), _config(steps=3, eval_every=None, diverge_factor=2.0))
    assert hist.train_loss[:2] == [1.0, second_loss]
    assert hist.diverged is diverges
    assert len(hist.step) == (2 if diverges else 3)
