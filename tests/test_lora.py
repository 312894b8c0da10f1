"""LoRA layers, target matching, merging, adapter swapping, and the training-memory count."""

import pytest
import torch
import torch.nn as nn

from helpers.lora import (
    LoRALinear,
    apply_lora,
    load_lora_state_dict,
    lora_layers,
    lora_state_dict,
    matching_layers,
    merge_lora,
    remove_lora,
    trainable_parameters,
    unmerge_lora,
)
from helpers.memory import saved_activation_bytes, training_memory
from helpers.model import GPTConfig
from helpers.quantize import QuantLinear, quantize_model

CFG = TINY_GPT = GPTConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=64, block_size=16)  # for tiny_gpt


def _idx(batch: int = 2) -> torch.Tensor:
    return torch.randint(0, CFG.vocab_size, (batch, CFG.block_size), generator=torch.Generator().manual_seed(0))


def _randomise_b(model: nn.Module, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def test_starts_identical_and_freezes_everything_else(tiny_gpt):
    model = tiny_gpt().eval()
    x = _idx()
    before = model(x)
    apply_lora(model, rank=4, alpha=8, targets=["attn", "mlp"])
    torch.testing.assert_close(model(x), before, atol=0, rtol=0)  # B = 0: not a single bit changes
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer, LoRALinear) and layer.scaling == 2.0
    assert layer.lora_A.shape == (4, 32) and layer.lora_B.shape == (96, 4)
    report = trainable_parameters(model)
    expected = CFG.n_layer * 4 * (32 + 96 + 32 + 32 + 32 + 128 + 128 + 32)  # r * (in + out), 4 layers/block
    assert report.trainable == expected and report.total == model.num_parameters()
    assert "trainable" in str(report) and 0 < report.fraction < 0.2


def test_only_the_adapter_gets_gradients_and_learns(tiny_gpt):
    model = tiny_gpt()
    apply_lora(model, rank=2, alpha=4, targets="c_attn")
    x = _idx(4)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    base_w = model.transformer.h[0].attn.c_attn.base.weight.clone()
    first = None
    for _ in range(15):
        loss = model.loss(x, x)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    assert model.transformer.h[0].attn.c_attn.base.weight.grad is None
    assert torch.equal(model.transformer.h[0].attn.c_attn.base.weight, base_w)


@pytest.mark.parametrize(
    "targets, expected",
    [
        ("c_attn", {"attn.c_attn"}),
        ("c_proj", {"attn.c_proj", "mlp.c_proj"}),
        ("c_fc", {"mlp.c_fc"}),
        ("attn", {"attn.c_attn", "attn.c_proj"}),
        ("mlp", {"mlp.c_fc", "mlp.c_proj"}),
        ("mlp.c_proj", {"mlp.c_proj"}),
        (["attn", "c_fc"], {"attn.c_attn", "attn.c_proj", "mlp.c_fc"}),
    ],
)
def test_target_matching_rule(targets, expected, tiny_gpt):
    names = matching_layers(tiny_gpt().eval(), targets)
    assert {n.split(".", 3)[-1] for n in names} == expected
    assert len(names) == CFG.n_layer * len(expected)


def test_target_one_block_and_lm_head(tiny_gpt):
    assert matching_layers(tiny_gpt().eval(), "h.1") == [f"transformer.h.1.{n}" for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert matching_layers(tiny_gpt().eval(), "lm_head") == ["lm_head"]
    with pytest.raises(ValueError, match="targets: 'c_' matches no linear layer"):
        matching_layers(tiny_gpt().eval(), "c_")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(rank=0), "rank must be a positive int, got 0"),
        (dict(rank=-2), "rank must be a positive int"),
        (dict(rank=2.5), "rank must be a positive int"),
        (dict(alpha=0), "alpha must be a finite number > 0, got 0"),
        (dict(alpha=-1.0), "alpha must be a finite number > 0"),
        (dict(alpha=float("inf")), "alpha must be a finite number > 0, got inf"),
        (dict(alpha=float("nan")), "alpha must be a finite number > 0, got nan"),
        (dict(alpha=True), "alpha must be a finite number > 0, got True"),
        (dict(dropout=1.0), "dropout must be a number in"),
        (dict(dropout=True), "dropout must be a number in .*got True"),
        (dict(targets=None), "targets must be a layer name or a list of layer names, got None"),
        (dict(targets=3), "targets must be a layer name or a list of layer names, got 3"),
        (dict(targets=["c_attn", "q_proj"]), "targets: 'q_proj' matches no linear layer"),
        (dict(targets=[]), "targets must be a non-empty list"),
    ],
)
def test_bad_input(kwargs, message, tiny_gpt):
    model = tiny_gpt().eval()
    with pytest.raises(ValueError, match=message):
        apply_lora(model, **kwargs)
    assert not lora_layers(model) and all(p.requires_grad for p in model.parameters())  # left untouched


def test_merge_keeps_outputs_and_refuses_twice(tiny_gpt):
    model = tiny_gpt().eval()
    apply_lora(model, rank=4, alpha=8, targets=["attn", "mlp"])
    _randomise_b(model)
    x = _idx()
    with torch.no_grad():
        adapted = model(x)
        w = model.transformer.h[1].mlp.c_fc.base.weight.clone()
        merge_lora(model)
        torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)
        assert not torch.equal(model.transformer.h[1].mlp.c_fc.base.weight, w)
        with pytest.raises(ValueError, match="already merged"):
            merge_lora(model)
        unmerge_lora(model)
        torch.testing.assert_close(model.transformer.h[1].mlp.c_fc.base.weight, w, atol=1e-6, rtol=0)
        with pytest.raises(ValueError, match="not merged"):
            unmerge_lora(model)
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(tiny_gpt().eval())
    with pytest.raises(ValueError, match="already has LoRA layers"):
        apply_lora(model)


def test_remove_lora_gives_a_plain_gpt_with_the_update_inside(tiny_gpt):
    model = tiny_gpt().eval()
    apply_lora(model, rank=4, alpha=8, targets="c_attn")
    _randomise_b(model)
    x = _idx()
    with torch.no_grad():
        adapted = model(x)
        remove_lora(model)
        torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)
    assert not lora_layers(model)
    assert set(model.state_dict()) == set(tiny_gpt().eval().state_dict())  # saves like any checkpoint


def test_swap_two_adapters_on_one_base(tiny_gpt):
    model = tiny_gpt().eval()
    apply_lora(model, rank=4, alpha=8, targets=["c_attn", "c_fc"])
    x = _idx()
    _randomise_b(model, seed=1)
    first, out1 = lora_state_dict(model), model(x).detach()
    _randomise_b(model, seed=2)
    second, out2 = lora_state_dict(model), model(x).detach()
    assert not torch.allclose(out1, out2)
    load_lora_state_dict(model, first)
    torch.testing.assert_close(model(x).detach(), out1, atol=0, rtol=0)
    load_lora_state_dict(model, second)
    torch.testing.assert_close(model(x).detach(), out2, atol=0, rtol=0)
    n_bytes = sum(t.numel() * t.element_size() for t in first.values())
    # per block, float32: c_attn A (4, 32) + B (96, 4), c_fc A (4, 32) + B (128, 4), two scalar scalings
    assert n_bytes == CFG.n_layer * 4 * (4 * (32 + 96) + 4 * (32 + 128) + 2)
    assert n_bytes < 0.15 * sum(p.numel() * 4 for p in tiny_gpt().eval().parameters())
    merge_lora(model)
    with pytest.raises(ValueError, match="unmerge_lora"):
        load_lora_state_dict(model, first)


def test_load_rejects_other_rank_or_targets(tiny_gpt):
    model = tiny_gpt().eval()
    apply_lora(model, rank=4, alpha=8, targets="c_attn")
    other = tiny_gpt().eval()
    apply_lora(other, rank=2, alpha=8, targets="c_attn")
    with pytest.raises(ValueError, match="rank 2"):
        load_lora_state_dict(model, lora_state_dict(other))
    elsewhere = tiny_gpt().eval()
    apply_lora(elsewhere, rank=4, alpha=8, targets="c_fc")
    with pytest.raises(ValueError, match="missing"):
        load_lora_state_dict(model, lora_state_dict(elsewhere))


def test_dropout_only_in_training_mode(tiny_gpt):
    model = tiny_gpt().eval()
    apply_lora(model, rank=4, alpha=8, targets="c_attn", dropout=0.5)
    _randomise_b(model)
    x = _idx()
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


def test_lora_on_a_quantised_base(tiny_gpt):
    quantised = quantize_model(tiny_gpt().eval(), bits=4, scheme="group", group_size=16)
    x = _idx()
    before = quantised(x)
    apply_lora(quantised, rank=4, alpha=8, targets=["attn", "mlp"])
    assert isinstance(quantised.transformer.h[0].attn.c_attn.base, QuantLinear)
    torch.testing.assert_close(quantised(x), before, atol=0, rtol=0)
    assert all(n.endswith(("lora_A", "lora_B")) for n, p in quantised.named_parameters() if p.requires_grad)
    quantised.loss(x, x).backward()  # gradients reach A (through B) although the base is integer codes
    assert quantised.transformer.h[0].mlp.c_fc.lora_B.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="cannot merge into a QuantLinear"):
        merge_lora(quantised)


# --- training memory (helpers.memory) -------------------------------------------------------------


def test_memory_known_answer_linear():
    """y = x W^T, loss = sum(y): autograd keeps x (for dW) and nothing else; AdamW keeps 2 moments."""
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(10, 64)
    report = training_memory(layer, lambda: layer(x).sum())
    assert report.parameters == 64 * 32 * 4
    assert report.gradients == 64 * 32 * 4
    assert report.optimizer_state == 2 * 64 * 32 * 4
    assert report.activations == 10 * 64 * 4
    assert report.total == 4 * 64 * 32 * 4 + 10 * 64 * 4
    # squaring keeps y too (for d(y^2)/dy = 2y): 10 * 32 more floats
    assert saved_activation_bytes(lambda: layer(x).square().sum(), exclude=[layer.weight]) == (10 * 64 + 10 * 32) * 4
    assert training_memory(layer, lambda: layer(x).sum(), optimizer="sgd").optimizer_state == 0


def test_memory_frozen_weight_is_not_an_activation():
    layer = nn.Linear(64, 32, bias=False)
    x = torch.randn(10, 64, requires_grad=True)
    layer.weight.requires_grad_(False)
    assert saved_activation_bytes(lambda: layer(x).sum(), exclude=[layer.weight]) == 0  # W is kept, but it is a parameter
    with pytest.raises(ValueError, match="no trainable parameters"):
        training_memory(layer, lambda: layer(x).sum())
    with pytest.raises(ValueError, match="optimizer must be one of"):
        training_memory(nn.Linear(2, 2), lambda: None, optimizer="lion")


def test_memory_lora_vs_full_and_batch_scaling(tiny_gpt):
    full = tiny_gpt().eval()
    x1, x4 = _idx(1), _idx(4)
    a1 = training_memory(full, lambda: full.loss(x1, x1)).activations
    a4 = training_memory(full, lambda: full.loss(x4, x4)).activations
    assert 3.5 * a1 < a4 < 4.5 * a1  # activations grow with the batch
    lora = apply_lora(tiny_gpt().eval(), rank=2, alpha=4, targets="c_attn")
    r_full, r_lora = training_memory(full, lambda: full.loss(x1, x1)), training_memory(lora, lambda: lora.loss(x1, x1))
    n_lora = trainable_parameters(lora).trainable
    assert r_lora.gradients == n_lora * 4 and r_lora.optimizer_state == 2 * n_lora * 4
    assert r_lora.gradients < 0.05 * r_full.gradients


def test_float32_adapter_beside_a_bf16_base(tiny_gpt):
    model = tiny_gpt().eval().to(torch.bfloat16)
    apply_lora(model, rank=2, alpha=4, targets="c_fc")
    assert model.transformer.h[0].mlp.c_fc.lora_A.dtype == torch.float32
    out = model(_idx())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_merging_an_lm_head_adapter_leaves_the_tied_embedding_alone(tiny_gpt):
    model = tiny_gpt().eval()
    apply_lora(model, rank=4, alpha=8, targets=["attn", "lm_head"])
    _randomise_b(model)
    x = _idx()
    wte = model.transformer.wte.weight.clone()
    with torch.no_grad():
        adapted = model(x)
        merge_lora(model)
        torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)
        assert torch.equal(model.transformer.wte.weight, wte)  # the input embeddings did not move
        unmerge_lora(model)
        torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)
        remove_lora(model)
        torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)


def test_load_rejects_non_finite_adapters_and_changes_nothing(tiny_gpt):
    model = tiny_gpt()
    apply_lora(model, rank=2, alpha=4, targets=["c_attn", "c_fc"])
    before = lora_state_dict(model)
    for key, value in (("transformer.h.1.mlp.c_fc.scaling", torch.tensor(float("nan"))),
                       ("transformer.h.1.mlp.c_fc.scaling", torch.tensor(0.0)),
                       ("transformer.h.1.mlp.c_fc.lora_B", torch.full_like(before["transformer.h.1.mlp.c_fc.lora_B"], float("inf")))):
        bad = {k: v.clone() for k, v in before.items()}
        for k in bad:
            if k.endswith("lora_A"):
                bad[k].add_(1.0)  # every layer differs, so a partial load would show
        bad[key] = value
        with pytest.raises(ValueError, match="transformer.h.1.mlp.c_fc"):
            load_lora_state_dict(model, bad)
        after = lora_state_dict(model)
        assert all(torch.equal(after[k], before[k]) for k in before)


def test_error_messages_in_full(tiny_gpt):
    """Each refusal says what is wrong and what to call instead, in these words."""
    def raises(message, call, *args, **kwargs):
        with pytest.raises(ValueError) as err:
            call(*args, **kwargs)
        assert str(err.value) == message

    model = tiny_gpt().eval()
    raises("model has no LoRA layers; call apply_lora(model, ...) first", merge_lora, model)
    raises("targets must be a non-empty list of layer names, got ['']", apply_lora, model, targets=[""])
    raises("targets: 'q_proj' matches no linear layer; try names like ['c_attn', 'c_fc', 'c_proj', 'lm_head'] "
           "or 'attn', 'mlp'", matching_layers, model, "q_proj")
    raises("dropout must be a number in [0, 1), got '0.1'", apply_lora, model, dropout="0.1")
    raises("base must be a linear layer (in_features/out_features), got LayerNorm", LoRALinear, nn.LayerNorm(4), 2, 4.0)
    apply_lora(model, rank=2, alpha=4, targets="h.0.attn.c_attn")  # one layer only
    raises("model already has LoRA layers; call remove_lora(model) first", apply_lora, model)
    raises("model is not merged (merged=False); there is nothing to unmerge", unmerge_lora, model)
    merge_lora(model)
    raises("model is already merged (transformer.h.0.attn.c_attn has merged=True); call unmerge_lora first",
           merge_lora, model)
    quantised = quantize_model(tiny_gpt().eval(), bits=8)
    layer = LoRALinear(quantised.transformer.h[0].attn.c_attn, 2, 4.0)
    raises("cannot merge into a QuantLinear base layer; merging needs a float weight "
           "(a quantised base keeps its adapter separate)", layer.merge)


def test_what_counts_as_a_linear_layer():
    """A layer with both in_features and out_features counts; one with only one of them, or an
    adapter itself (its base is what gets adapted), does not."""
    class HalfLinear(nn.Module):
        in_features = 4  # no out_features

        def forward(self, x):
            return x

    for base in (HalfLinear(), LoRALinear(nn.Linear(4, 3), 2, 4.0)):
        with pytest.raises(ValueError, match="base must be a linear layer"):
            LoRALinear(base, 2, 4.0)
    with pytest.raises(ValueError, match="matches no linear layer"):
        matching_layers(nn.Sequential(HalfLinear()), "0")

    class Summing(nn.Module):  # a linear map without any tensor of its own: the adapter goes on the default device
        in_features, out_features = 4, 1

        def forward(self, x):
            return x.sum(-1, keepdim=True)

    layer = LoRALinear(Summing(), 2, 4.0)
    assert layer.lora_A.shape == (2, 4) and layer(torch.ones(3, 4)).shape == (3, 1)


def test_layers_inside_an_adapter_are_not_targets(tiny_gpt):
    """Once a layer is wrapped, its frozen base is no target: not at the top of the model, nor deeper."""
    shallow = nn.Sequential(LoRALinear(nn.Linear(4, 4), 2, 4.0), nn.Linear(4, 4))
    assert matching_layers(shallow, "1") == ["1"]
    with pytest.raises(ValueError, match="'base' matches no linear layer; try names like \\['1'\\]"):
        matching_layers(shallow, "base")  # "0.base" is inside the adapter
    model = apply_lora(tiny_gpt().eval(), rank=2, alpha=4, targets="c_attn")
    with pytest.raises(ValueError, match="'c_attn' matches no linear layer"):
        matching_layers(model, "c_attn")
    assert matching_layers(model, "attn") == [f"transformer.h.{i}.attn.c_proj" for i in range(CFG.n_layer)]


def test_a_new_layer_defaults_to_no_dropout_and_lives_beside_its_base():
    layer = LoRALinear(nn.Linear(4, 3, device="meta"), 2, 4.0)
    assert isinstance(layer.dropout, nn.Identity) and layer.merged is False
    assert layer.lora_A.device.type == "meta" and layer.lora_B.device.type == "meta"
    assert "rank=2, alpha=4, scaling=2, merged=False" in repr(layer)


def test_merging_unties_only_the_shared_weight(tiny_gpt):
    """Merging writes into each untied base weight in place (no copy); the tied lm_head gets its own
    frozen copy. ``remove_lora`` straight from the unmerged state unties as well."""
    model = apply_lora(tiny_gpt().eval(), rank=2, alpha=4, targets=["c_attn", "lm_head"])
    _randomise_b(model)
    c_attn = model.transformer.h[0].attn.c_attn.base.weight
    merge_lora(model)
    assert model.transformer.h[0].attn.c_attn.base.weight is c_attn
    head = model.lm_head.base.weight
    assert head is not model.transformer.wte.weight and not head.requires_grad
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)

    model = apply_lora(tiny_gpt().eval(), rank=2, alpha=4, targets="lm_head")
    _randomise_b(model)
    wte = model.transformer.wte.weight.clone()
    x = _idx()
    with torch.no_grad():
        adapted = model(x)
        remove_lora(model)
        assert torch.equal(model.transformer.wte.weight, wte)
        torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rank", [1, 2, 8, 32])
def test_rslora_scales_by_alpha_over_sqrt_rank(rank, tiny_gpt):
    plain = apply_lora(tiny_gpt(), rank=rank, alpha=8, targets="c_attn")
    stable = apply_lora(tiny_gpt(), rank=rank, alpha=8, targets="c_attn", rslora=True)
    for layer in lora_layers(plain).values():
        assert layer.scaling == pytest.approx(8 / rank) and not layer.rslora
    for layer in lora_layers(stable).values():
        assert layer.scaling == pytest.approx(8 / rank**0.5) and layer.rslora
        assert "rslora=True" in repr(layer)
    # the two rules agree at rank 1 only, and the rslora factor is larger by sqrt(rank) above it
    ratio = next(iter(lora_layers(stable).values())).scaling / next(iter(lora_layers(plain).values())).scaling
    assert ratio == pytest.approx(rank**0.5)


def test_rslora_must_be_a_bool(tiny_gpt):
    model = tiny_gpt()
    with pytest.raises(TypeError, match="rslora must be True or False, got 1"):
        apply_lora(model, rank=2, targets="c_attn", rslora=1)
    assert not lora_layers(model)


def test_rslora_adapter_round_trips_with_its_scaling(tiny_gpt):
    model = apply_lora(tiny_gpt(), rank=4, alpha=8, targets="c_attn", rslora=True)
    state = lora_state_dict(model)
    other = apply_lora(tiny_gpt(), rank=4, alpha=8, targets="c_attn")
    load_lora_state_dict(other, state)
    assert all(layer.scaling == pytest.approx(4.0) for layer in lora_layers(other).values())  # 8 / sqrt(4)
