"""LoRA adapters swapped between models with different alpha, and removed without merging."""

import pytest
import torch

from helpers.lora import (
    LoRALinear,
    apply_lora,
    load_lora_state_dict,
    lora_layers,
    lora_state_dict,
    merge_lora,
    remove_lora,
)
from helpers.model import GPTConfig

TINY_GPT = GPTConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=64, block_size=16)  # for tiny_gpt
TARGETS = ("c_attn", "c_fc")

pytestmark = pytest.mark.usefixtures("one_thread")


def _idx() -> torch.Tensor:
    return torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))


def _trained_adapter(model, seed: int = 1) -> None:
    """Random A and B, as after some training (B starts at zero, which would hide any scaling)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_A.copy_(torch.randn(layer.lora_A.shape, generator=g) * 0.2)
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.2)


def test_loading_an_adapter_restores_its_scaling(tiny_gpt):
    """An adapter trained with alpha=32, rank=4 (scaling 8) loaded into a model wrapped with alpha=4
    (scaling 1) must compute what it computed where it was trained: the scaling travels with it."""
    source = apply_lora(tiny_gpt(seed=3).eval(), rank=4, alpha=32.0, targets=TARGETS)
    _trained_adapter(source)
    target = apply_lora(tiny_gpt(seed=3).eval(), rank=4, alpha=4.0, targets=TARGETS)
    with torch.no_grad():
        want = source(_idx())
        before = target(_idx())
    assert not torch.allclose(before, want, atol=1e-3)
    load_lora_state_dict(target, lora_state_dict(source))
    assert all(m.scaling == 8.0 for m in lora_layers(target).values())
    with torch.no_grad():
        assert torch.equal(target(_idx()), want)
    state = lora_state_dict(target)
    assert all(float(state[k]) == 8.0 for k in state if k.endswith(".scaling"))


def test_remove_lora_without_merge_gives_back_the_base_model(tiny_gpt):
    base = tiny_gpt(seed=5).eval()
    with torch.no_grad():
        want = base(_idx())
    for merged_first in (False, True):
        model = apply_lora(tiny_gpt(seed=5).eval(), rank=4, alpha=8.0, targets=TARGETS)
        _trained_adapter(model)
        if merged_first:
            merge_lora(model)
        with torch.no_grad():
            assert not torch.allclose(model(_idx()), want, atol=1e-3), "the adapter changes the output"
        out = remove_lora(model, merge=False)
        assert out is model and not any(isinstance(m, LoRALinear) for m in model.modules())
        with torch.no_grad():
            got = model(_idx())
        if merged_first:  # merging and unmerging again rounds: equal up to float32 error
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        else:
            assert torch.equal(got, want)


def test_remove_lora_with_merge_keeps_the_adapters_output(tiny_gpt):
    model = apply_lora(tiny_gpt(seed=5).eval(), rank=4, alpha=8.0, targets=TARGETS)
    _trained_adapter(model)
    with torch.no_grad():
        want = model(_idx())
    remove_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(_idx()), want, rtol=0, atol=1e-5)


def test_defaults_initialisation_and_small_hyperparameters(tiny_gpt):
    """The documented defaults (rank 8, alpha 16, no dropout), A drawn from U(-1/sqrt(in), 1/sqrt(in))
    like nn.Linear's own init, B zero; rank 1 and alpha < 1 are valid."""
    from helpers.lora import trainable_parameters

    model = apply_lora(tiny_gpt(seed=0))
    layer = lora_layers(model)["transformer.h.0.attn.c_attn"]
    assert (layer.rank, layer.alpha, layer.scaling) == (8, 16.0, 2.0) and isinstance(layer.dropout, torch.nn.Identity)
    bound = 1 / 32**0.5  # in_features = n_embd = 32
    a = layer.lora_A.detach()
    assert a.abs().max() <= bound and a.min() < -bound / 2 and a.max() > bound / 2
    assert not layer.lora_B.any() and layer.lora_A.requires_grad and not layer.base.weight.requires_grad
    small = apply_lora(tiny_gpt(seed=0), rank=1, alpha=0.5)
    assert all(m.rank == 1 and m.scaling == 0.5 for m in lora_layers(small).values())
    report = trainable_parameters(small)
    assert str(report) == (f"trainable {report.trainable:,} of {report.total:,} parameters "
                           f"({100 * report.trainable / report.total:.2f}%)")
    for bad, match in ((dict(dropout=True), "dropout"), (dict(alpha=0), "alpha"), (dict(rank=0), "rank")):
        with pytest.raises(ValueError, match=match):
            apply_lora(tiny_gpt(seed=0), **bad)
