"""Training memory measured over real steps, and activation checkpointing in the GPT."""

import copy

import pytest
import torch
import torch.nn as nn

from helpers.lora import apply_lora
from helpers.memory import LiveTensorBytes, measured_training_bytes, peak_tensor_bytes, training_memory
from helpers.model import GPTConfig
from helpers.optimizers import OPTIMIZER_STATES, OPTIMIZERS, make_optimizer

CFG = TINY_GPT = GPTConfig(n_layer=3, n_head=2, n_embd=32, vocab_size=64, block_size=32, dropout=0.1)  # for tiny_gpt


def _idx(batch: int = 4) -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (batch, CFG.block_size), generator=torch.Generator().manual_seed(0))


def test_live_tensor_bytes_follows_allocations_and_frees():
    x = torch.randn(1000)
    with LiveTensorBytes() as t:
        a = x * 2
        assert t.current == 4000
        b = a.view(10, 100)  # a view allocates nothing
        assert t.current == 4000
        c = a + 1
        assert t.current == 8000
        del a, b
        assert t.current == 4000  # a's storage died with its last view
        del c
    assert t.current == 0 and t.peak == 8000
    _, peak = peak_tensor_bytes(lambda: torch.ones(10) * torch.ones(10))
    assert peak == 2 * 40 + 40  # two inputs built inside, plus the product


def test_measured_peak_of_a_linear_layer_holds_weights_gradients_and_adam_state():
    layer = nn.Linear(256, 128, bias=False)
    x = torch.randn(4, 256)
    report = training_memory(layer, lambda: layer(x).sum())
    w = 256 * 128 * 4
    assert report.peak_source == "live tensors"
    # at the second optimizer step weight, gradient and both moments exist at once, and AdamW's
    # update builds its denominator sqrt(v) / c + eps in up to two weight-sized temporaries
    assert 4 * w <= report.peak <= 6 * w + 1024
    assert report.as_row()["peak"] == report.peak / 1e6
    assert training_memory(layer, lambda: layer(x).sum(), measure=False).peak is None


def test_measuring_leaves_weights_and_grads_untouched(tiny_gpt):
    model = tiny_gpt()
    before = copy.deepcopy(model.state_dict())
    training_memory(model, lambda: model.loss(_idx(), _idx()))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_measured_peak_sees_backward_and_shows_what_lora_saves(tiny_gpt):
    x = _idx(8)
    full = tiny_gpt()
    lora = apply_lora(tiny_gpt(), rank=2, alpha=4, targets="c_attn")
    r_full = training_memory(full, lambda: full.loss(x, x))
    r_lora = training_memory(lora, lambda: lora.loss(x, x))
    # gradients and AdamW moments are created during backward and the optimizer step: seen
    assert r_full.peak > r_full.parameters + r_full.gradients + r_full.optimizer_state
    assert r_lora.peak < r_full.peak
    assert r_full.peak - r_lora.peak > 0.5 * (r_full.gradients + r_full.optimizer_state)


@pytest.mark.parametrize("targets", [None, "c_attn"])
def test_checkpointing_gives_the_same_gradients_with_dropout(targets, tiny_gpt):
    plain = tiny_gpt()
    if targets:
        apply_lora(plain, rank=2, alpha=4, targets=targets, dropout=0.1)
    ckpt = copy.deepcopy(plain)
    ckpt.gradient_checkpointing = True
    x = _idx()
    torch.manual_seed(5)
    loss_plain = plain.loss(x, x)
    loss_plain.backward()
    torch.manual_seed(5)
    loss_ckpt = ckpt.loss(x, x)
    loss_ckpt.backward()
    assert torch.equal(loss_plain, loss_ckpt)
    grads = [(n, p.grad, q.grad) for (n, p), q in zip(plain.named_parameters(), ckpt.parameters()) if p.requires_grad]
    assert grads and all(torch.equal(a, b) for _, a, b in grads)


def test_checkpointing_cuts_saved_activations_and_the_measured_peak(tiny_gpt):
    x = _idx(8)
    plain = tiny_gpt()
    ckpt = copy.deepcopy(plain)
    ckpt.gradient_checkpointing = True
    r_plain = training_memory(plain, lambda: plain.loss(x, x))
    r_ckpt = training_memory(ckpt, lambda: ckpt.loss(x, x))
    assert r_ckpt.activations < 0.5 * r_plain.activations  # the blocks save nothing: they recompute
    assert r_ckpt.peak < r_plain.peak


def test_checkpointing_is_off_outside_training_and_validated(tiny_gpt):
    model = tiny_gpt()
    model.gradient_checkpointing = True
    x = _idx()
    model.eval()
    with torch.no_grad():
        ref = model(x)
    model.gradient_checkpointing = False
    with torch.no_grad():
        assert torch.equal(ref, model(x))
    cache = model.new_cache(1)
    model.gradient_checkpointing = True
    model.train()
    with torch.no_grad():
        model(x[:1, :4], cache)  # generation with a KV cache never checkpoints
    assert cache.pos == 4
    with pytest.raises(ValueError, match="gradient_checkpointing must be True or False, got 'yes'"):
        model.gradient_checkpointing = "yes"


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_optimizer_table_matches_the_state_each_optimizer_really_keeps(name, tiny_gpt):
    """Every optimiser train() offers is counted, and counted right: the table against a real step."""
    model = tiny_gpt()
    x = _idx(2)
    report = training_memory(model, lambda: model.loss(x, x), optimizer=name, measure=False)
    opt = make_optimizer(model, name, lr=1e-3)
    model.loss(x, x).backward()
    opt.step()
    assert report.optimizer_state == measured_training_bytes(model, opt)["optimizer_state"]
    assert report.optimizer_state == OPTIMIZER_STATES[name] * report.gradients
    assert set(OPTIMIZERS) == set(OPTIMIZER_STATES)


def test_rmsprop_is_measured_like_the_others():
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(4, 64)
    report = training_memory(layer, lambda: layer(x).sum(), optimizer="rmsprop")
    w = 64 * 32 * 4
    assert report.optimizer_state == w and report.peak >= 3 * w  # weight, gradient and square_avg at once


def test_counting_saved_activations_leaves_no_graph_behind(tiny_gpt):
    """Counting must not keep the forward pass alive: every operation that saves its own output (exp, a
    view, GELU, softmax) once held it in a reference loop through autograd's C++ side, so each call kept a
    whole graph of activations (in a notebook, one per training run) that no garbage collection freed."""
    import gc
    import weakref

    from helpers.memory import saved_activation_bytes

    x = torch.randn(50, 40, requires_grad=True)
    kept = []

    def forward() -> torch.Tensor:
        y = x.exp()  # exp saves its output for backward: d exp(x)/dx = exp(x)
        kept.append(weakref.ref(y))
        return y.sum()

    assert saved_activation_bytes(forward, exclude=[x]) == 50 * 40 * 4  # the output, counted
    gc.collect()
    assert kept[0]() is None, "the output of the counted forward pass is still alive"

    model = tiny_gpt()
    idx = _idx()
    before = {id(t) for t in gc.get_objects() if issubclass(type(t), torch.Tensor)}
    saved_activation_bytes(lambda: model.loss(idx, idx), exclude=list(model.parameters()))
    gc.collect()
    left = [t for t in gc.get_objects() if issubclass(type(t), torch.Tensor) and id(t) not in before]
    assert sum(t.untyped_storage().nbytes() for t in left) == 0, f"{len(left)} tensors of the forward pass stay alive"
