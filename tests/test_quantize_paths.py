"""QuantLinear's bias and arguments, quantize_model's group size, and the group-size checks."""

import pytest
import torch
import torch.nn.functional as F

from helpers.model import GPTConfig
from helpers.quantize import QuantEmbedding, QuantLinear, quantize_model, quantize_tensor

TINY_GPT = GPTConfig(n_layer=1, n_head=2, n_embd=16, vocab_size=40, block_size=8)  # for tiny_gpt

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear(bias: bool = True) -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(16, 6, bias=bias)


def test_quant_linear_keeps_its_bias_and_computes_with_the_dequantised_weight():
    lin = _linear()
    q = QuantLinear.from_linear(lin, 4, "group", 8)
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))
    want = F.linear(x, quantize_tensor(lin.weight, 4, "group", 8).dequantize(), lin.bias)
    assert torch.equal(q.bias, lin.bias) and q.bias is not lin.bias  # a copy, not the same tensor
    torch.testing.assert_close(q(x), want, rtol=0, atol=1e-6)
    assert q.qweight.group_size == 8 and q.qweight.bits == 4 and q.qweight.scheme == "group"
    no_bias = QuantLinear.from_linear(_linear(bias=False))
    assert no_bias.bias is None
    torch.testing.assert_close(no_bias(x), F.linear(x, no_bias.weight), rtol=0, atol=0)


def test_from_linear_defaults_are_8_bit_per_channel():
    lin = _linear()
    q = QuantLinear.from_linear(lin)
    assert (q.qweight.bits, q.qweight.scheme) == (8, "per_channel")
    assert torch.equal(q.weight, quantize_tensor(lin.weight, 8, "per_channel").dequantize())


def test_quantize_model_passes_the_group_size_to_every_layer(tiny_gpt):
    model = quantize_model(tiny_gpt(), bits=4, scheme="group", group_size=4)
    layers = [m for m in model.modules() if isinstance(m, (QuantLinear, QuantEmbedding))]
    assert layers and all(m.qweight.group_size == 4 for m in layers)
    default = quantize_model(tiny_gpt(), bits=4, scheme="group")  # 64: wider than these 16-wide rows
    assert all(m.qweight.group_size == 64 for m in default.modules() if isinstance(m, (QuantLinear, QuantEmbedding)))


def test_group_size_two_is_the_smallest_allowed():
    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
    q = quantize_tensor(w, 8, "group", 2)
    assert q.group_size == 2 and q.dequantize().shape == w.shape
    for bad in (1, 2.0, True, "4"):
        with pytest.raises(ValueError, match=rf"group_size must be an int >= 2 for scheme='group', got {bad!r}"):
            quantize_tensor(w, 8, "group", bad)


def test_a_non_finite_weight_is_named(tiny_gpt):
    model = tiny_gpt()
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^transformer.h.0.mlp.c_fc.weight holds inf or NaN values; a quantised "
                                         r"copy would be NaN$"):
        quantize_model(model)
