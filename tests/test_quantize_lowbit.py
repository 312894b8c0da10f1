"""3-bit and 2-bit quantisation: dense bit packing, the error bound, sizes, and whole models."""

import numpy as np
import pytest
import torch

from helpers.model import GPT, GPTConfig
from helpers.quantize import (
    QuantLinear,
    model_size_bytes,
    pack_bits,
    quantize_model,
    quantize_tensor,
    unpack_bits,
)


@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 101])
def test_pack_bits_round_trip_and_size(bits, n):
    g = torch.Generator().manual_seed(n)
    codes = torch.randint(0, 2**bits, (3, n), generator=g)
    packed = pack_bits(codes, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (3, -(-n // 8) * bits)
    back = unpack_bits(packed, bits)
    assert back.shape == (3, -(-n // 8) * 8)
    assert torch.equal(back[:, :n], codes.to(torch.int32)) and not back[:, n:].any()  # padding stays 0


@pytest.mark.parametrize("bits", [2, 3])
def test_pack_bits_layout_written_out_with_python_integers(bits):
    codes = [(5 * i + 3) % 2**bits for i in range(16)]
    expected = b""
    for run in (codes[:8], codes[8:]):
        word = sum(c << (bits * i) for i, c in enumerate(run))  # code i in bits bits*i ..
        expected += word.to_bytes(bits, "little")
    assert bytes(pack_bits(torch.tensor(codes), bits).tolist()) == expected


def _reference(w: np.ndarray, bits: int, scheme: str, group: int) -> np.ndarray:
    """The schemes' formulas in numpy, element by element from the module's definition."""
    if scheme == "group":
        rows, cols = w.shape
        out = np.empty_like(w)
        levels = 2**bits - 1
        for r in range(rows):
            for start in range(0, cols, group):
                g = w[r, start:start + group]
                lo, hi = min(g.min(), 0.0), max(g.max(), 0.0)
                s = (hi - lo) / levels if hi > lo else 1.0
                z = np.clip(np.round(-lo / s), 0, levels)
                q = np.clip(np.round(g / s) + z, 0, levels)
                out[r, start:start + group] = (q - z) * s
        return out
    qmax = 2 ** (bits - 1) - 1
    amax = np.abs(w).max() if scheme == "per_tensor" else np.abs(w).max(axis=1, keepdims=True)
    s = np.where(amax > 0, amax / qmax, 1.0)
    return np.clip(np.round(w / s), -qmax, qmax) * s


@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("scheme", ["per_tensor", "per_channel", "group"])
def test_low_bit_schemes_match_the_formulas_and_the_error_bound(bits, scheme):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(6, 45, generator=g)  # 45: a short last group and a padded last run of 8 codes
    q = quantize_tensor(w, bits, scheme, group_size=16)
    deq = q.dequantize()
    ref = _reference(w.double().numpy(), bits, scheme, 16)
    assert np.allclose(deq.numpy(), ref, atol=1e-5)
    codes = q.codes()
    if scheme == "group":
        assert codes.min() >= 0 and codes.max() <= 2**bits - 1
        err = (deq - w).abs().view(6, -1)
        bound = q.scale.expand(6, 3, 16).flatten(1)[:, :45] / 2
        assert (err <= bound + 1e-6).all()  # the group's range always covers its weights
    else:
        qmax = 2 ** (bits - 1) - 1
        assert codes[:, :45].abs().max() <= qmax
    assert q.data.numel() == 6 * -(-codes.shape[1] // 8) * bits  # codes stored densely


def test_fewer_bits_more_error_and_honest_sizes():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 256, generator=g)
    errors, sizes = {}, {}
    for bits in (2, 3, 4, 8):
        q = quantize_tensor(w, bits, "group", group_size=64)
        errors[bits], sizes[bits] = (q.dequantize() - w).abs().mean().item(), q.nbytes
        n_groups = 64 * 4
        assert sizes[bits] == 64 * 256 * bits // 8 + n_groups * (4 + 1)  # codes + float32 scale + uint8 zero
    assert errors[2] > errors[3] > errors[4] > errors[8]


@pytest.mark.parametrize("bits", [2, 3])
def test_quantize_model_at_low_bits(bits):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=16, vocab_size=50, n_layer=2, n_head=2, n_embd=32)).eval()
    x = torch.randint(0, 50, (2, 16))
    q = quantize_model(model, bits=bits, scheme="group", group_size=32)
    assert all(isinstance(m, QuantLinear) for n, m in q.named_modules() if n.endswith(("c_attn", "c_fc")))
    assert q.lm_head.qdata is q.transformer.wte.qdata  # the tie survives
    four = quantize_model(model, bits=4, scheme="group", group_size=32)
    assert model_size_bytes(q) < model_size_bytes(four) < model_size_bytes(model)
    with torch.no_grad():
        assert torch.isfinite(q(x)).all()
        err = (q(x) - model(x)).abs().mean()
        assert err > (four(x) - model(x)).abs().mean()  # fewer bits, further from the float model


@pytest.mark.parametrize("bits", [1, 5, 16, True])
def test_unsupported_bits_are_refused(bits):
    with pytest.raises(ValueError, match="bits"):
        quantize_tensor(torch.randn(2, 8), bits=bits)
    with pytest.raises(ValueError, match="bits"):
        pack_bits(torch.zeros(8, dtype=torch.int32), 4)


@pytest.mark.parametrize("bits", [2, 3])
def test_packing_works_along_the_last_dim_of_any_shape_and_device(bits):
    """Codes of any number of leading dims pack along the last one; the work stays on the codes' device
    (the meta device stands in for a GPU: mixing it with a CPU tensor fails as CUDA would)."""
    g = torch.Generator().manual_seed(bits)
    for shape in ((13,), (2, 3, 13)):
        codes = torch.randint(0, 2**bits, shape, generator=g)
        back = unpack_bits(pack_bits(codes, bits), bits)
        assert back.shape == (*shape[:-1], 16) and torch.equal(back[..., :13], codes.to(torch.int32))
    meta = torch.zeros(2, 13, dtype=torch.uint8, device="meta")
    packed = pack_bits(meta, bits)
    assert packed.device.type == "meta" and packed.shape == (2, 2 * bits)
    assert unpack_bits(packed, bits).shape == (2, 16)
    for call in (pack_bits, unpack_bits):
        with pytest.raises(ValueError) as err:
            call(meta, 4)
        assert str(err.value) == f"bits must be one of (2, 3) for {call.__name__}, got 4"
