"""Quantisation: round-trip error bounds, packing, sizes, quantised models, and PyTorch's int8 as reference.

Reference: ``torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)``. It is
deprecated in torch 2.13 (it warns that it moves to torchao, which is not installed here) but still
present and working, so it is what we compare against. It differs from ours in two stated ways:
its symmetric weight scale is absmax / 127.5 with codes in [-128, 127] (ours: absmax / 127, codes in
[-127, 127]), and it also rounds the *activations* to 8 bits at run time (ours keeps them float).
"""

import copy
import warnings

import pytest
import torch
import torch.nn as nn

from helpers.model import GPT, GPTConfig
from helpers.quantize import (
    QuantEmbedding,
    QuantLinear,
    dequantize_model,
    model_size_bytes,
    pack_int4,
    quantize_model,
    quantize_tensor,
    unpack_int4,
)

CFG = GPTConfig(n_layer=2, n_head=2, n_embd=64, vocab_size=64, block_size=32)


def _weight(rows: int = 48, cols: int = 70, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 0.05


def _sharp_gpt(seed: int = 0) -> GPT:
    """A random GPT with 5x larger matrices, so its predictions are confident and rounding shows."""
    torch.manual_seed(seed)
    model = GPT(CFG).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(5)
    return model


def _batch(model: GPT) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, CFG.vocab_size, (8, CFG.block_size), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x).argmax(-1)  # targets the float model favours: damage to the weights raises the loss
    return x, y


@pytest.mark.parametrize("bits, scheme", [(8, "per_tensor"), (8, "per_channel"), (4, "per_tensor"),
                                          (4, "per_channel"), (4, "group"), (8, "group")])
def test_round_trip_error_is_at_most_half_a_step(bits, scheme):
    w = _weight()
    q = quantize_tensor(w, bits=bits, scheme=scheme, group_size=32)
    err = (q.dequantize() - w).abs()  # (48, 70)
    if scheme == "group":
        step = q.scale.expand(-1, -1, 32).flatten(1)[:, :70]  # each weight's own group scale
    else:
        step = q.scale.expand_as(w)
    assert (err <= step / 2 * (1 + 1e-5) + 1e-9).all(), f"max error / step = {(err / step).max():.4f}"
    codes = q.codes()
    lo, hi = (0, 2**bits - 1) if scheme == "group" else (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    assert codes.min() >= lo and codes.max() <= hi


def test_int8_codes_equal_pytorch_rounding():
    """Given our scales, torch's own per-channel qint8 quantiser produces exactly our codes."""
    w = _weight()
    q = quantize_tensor(w, bits=8, scheme="per_channel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = torch.quantize_per_channel(w, q.scale.squeeze(1).double(), torch.zeros(48, dtype=torch.long),
                                            axis=0, dtype=torch.qint8).int_repr()
    assert torch.equal(q.data, theirs)


def test_per_tensor_scale_suffers_from_one_outlier():
    w = _weight()
    w[3, 5] = 2.0  # one weight 40x the typical size
    err_tensor = (quantize_tensor(w, 8, "per_tensor").dequantize() - w).abs().mean()
    err_channel = (quantize_tensor(w, 8, "per_channel").dequantize() - w).abs().mean()
    assert err_tensor > 5 * err_channel
    # The other 3359 weights share a few dozen of the 255 codes; per channel they use most of them.
    # Per tensor the step is 2.0 / 127, so the others' codes lie between round(min / step) and
    # round(max / step), plus the outlier's 127: a bound in closed form from the data.
    others = torch.cat([w.flatten()[: 3 * 70 + 5], w.flatten()[3 * 70 + 6:]])
    step = 2.0 / 127
    bound = round(others.max().item() / step) - round(others.min().item() / step) + 2
    per_tensor = quantize_tensor(w, 8, "per_tensor").codes().unique()
    assert per_tensor.numel() <= bound < 40 and 127 in per_tensor.tolist()
    # per channel, a plain loop: each row its own step max|row| / 127, codes rounded half to even
    naive = {round(v / (max(map(abs, row)) / 127)) for row in w.tolist() for v in row}
    assert quantize_tensor(w, 8, "per_channel").codes().unique().tolist() == sorted(naive)
    assert len(naive) > 150


def test_pack_int4_round_trip_and_sizes():
    codes = torch.randint(0, 16, (5, 9), dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.shape == (5, 5) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed)[:, :9], codes)
    w = _weight(48, 70)
    assert quantize_tensor(w, 8, "per_tensor").nbytes == 48 * 70 + 4
    assert quantize_tensor(w, 8, "per_channel").nbytes == 48 * 70 + 48 * 4
    assert quantize_tensor(w, 4, "per_channel").nbytes == 48 * 35 + 48 * 4
    groups = 3  # ceil(70 / 32); the last group is padded with zeros
    assert quantize_tensor(w, 4, "group", 32).nbytes == 48 * groups * 32 // 2 + 48 * groups * (4 + 1)


def test_zero_weights_stay_exact():
    w = torch.zeros(4, 8)
    for scheme in ("per_tensor", "per_channel", "group"):
        out = quantize_tensor(w, 4, scheme, group_size=4).dequantize()
        assert torch.equal(out, w)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(bits=5), r"bits must be one of \(2, 3, 4, 8\), got 5"),
        (dict(bits=16), "bits must be one of"),
        (dict(bits=True), "bits must be one of"),
        (dict(scheme="per_row"), "scheme must be one of"),
        (dict(scheme="group", group_size=0), "group_size must be an int >= 2"),
        (dict(include_embeddings="yes"), "include_embeddings must be True or False"),
    ],
)
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        quantize_model(GPT(CFG), **kwargs)


def test_bad_tensor():
    with pytest.raises(ValueError, match="w must be a 2-D float tensor"):
        quantize_tensor(torch.randn(5))
    with pytest.raises(ValueError, match="w must be a 2-D float tensor"):
        quantize_tensor(torch.ones(3, 3, dtype=torch.long))


@pytest.mark.parametrize("scheme", ["per_tensor", "per_channel", "group"])
@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_weights_are_refused(scheme, bad):
    w = torch.randn(4, 8)
    w[2, 5] = bad
    with pytest.raises(ValueError, match=r"w must hold finite numbers only: 1 of 32 .* first at \[2, 5\]"):
        quantize_tensor(w, bits=8, scheme=scheme, group_size=4)
    model = GPT(CFG)
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.weight[0, 0] = bad
    with pytest.raises(ValueError, match=r"transformer.h.1.mlp.c_fc.weight holds inf or NaN"):
        quantize_model(model, scheme=scheme, group_size=32)


def test_dequantize_model_gives_back_the_float_model_it_computed_with():
    model = _sharp_gpt()
    x, _ = _batch(model)
    for include in (True, False):
        q = quantize_model(model, bits=4, scheme="group", group_size=32, include_embeddings=include)
        back = dequantize_model(q)
        assert not any(isinstance(m, (QuantLinear, QuantEmbedding)) for m in back.modules())
        assert (back.lm_head.weight is back.transformer.wte.weight) == include  # tied exactly when q shares codes
        assert torch.equal(back.lm_head.weight, q.lm_head.weight)
        with torch.no_grad():
            assert torch.allclose(back(x), q(x), atol=1e-5, rtol=1e-5)


def test_quantised_model_is_a_new_model_that_runs():
    model = _sharp_gpt()
    original = copy.deepcopy(model.state_dict())
    x, y = _batch(model)
    for bits, scheme in ((8, "per_tensor"), (8, "per_channel"), (4, "group")):
        q = quantize_model(model, bits=bits, scheme=scheme, group_size=32)
        assert isinstance(q.transformer.h[0].mlp.c_fc, QuantLinear)
        assert isinstance(q.transformer.wte, QuantEmbedding)
        assert q.lm_head.qdata is q.transformer.wte.qdata  # the tie survives: one table, stored once
        with torch.no_grad():
            assert torch.isfinite(q(x)).all()
            assert q.loss(x, y) >= model.loss(x, y) - 0.01
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), f"{k} changed: quantize_model must not mutate its input"
    same = quantize_model(model, inplace=True)
    assert same is model and isinstance(model.transformer.h[1].attn.c_attn, QuantLinear)


def test_model_size_ratios():
    model = GPT(CFG)
    fp32 = model_size_bytes(model)
    assert fp32 == model.num_parameters() * 4  # tied lm_head counted once
    int8 = model_size_bytes(quantize_model(model, 8, "per_channel"))
    int4 = model_size_bytes(quantize_model(model, 4, "group", group_size=32))
    bf16 = model_size_bytes(copy.deepcopy(model).to(torch.bfloat16))
    assert bf16 == fp32 // 2
    assert 0.25 < int8 / fp32 < 0.32  # 1 byte per weight + scales + float LayerNorms and biases
    assert 0.125 < int4 / fp32 < 0.22
    # exactly, from the stated layout: each weight matrix (rows, cols) of a Linear or Embedding (the tied
    # lm_head once) as codes + one float32 scale per row (int8) or per group of 32 plus a uint8 zero
    # point (int4, two codes per byte, each row padded to whole groups); everything else float32
    matrices = {id(m.weight): m.weight.shape for m in model.modules() if isinstance(m, (nn.Linear, nn.Embedding))}
    rest = 4 * (model.num_parameters() - sum(r * c for r, c in matrices.values()))
    assert int8 == rest + sum(r * c + 4 * r for r, c in matrices.values())
    assert int4 == rest + sum(r * (-(-c // 32)) * (32 // 2 + 4 + 1) for r, c in matrices.values())
    untied = model_size_bytes(quantize_model(model, 8, "per_channel", include_embeddings=False))
    assert untied > int8  # float embeddings plus a separate int8 copy for the head


def test_against_pytorch_quantize_dynamic_int8():
    """Loss of our int8 model vs PyTorch's dynamic int8 model on the same weights and batch.

    Tolerance: 0.01 nats (0.4% of a loss of ~2.5). Both round each weight by at most half a step;
    PyTorch also rounds activations. Measured gaps on this model: about 0.001-0.003 nats.
    """
    model = _sharp_gpt()
    x, y = _batch(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        with torch.no_grad():
            fp32 = model.loss(x, y).item()
            for scheme, qconfig in (("per_tensor", None), ("per_channel", per_channel_dynamic_qconfig)):
                ref = quantize_dynamic(model, {nn.Linear: qconfig} if qconfig else {nn.Linear}, dtype=torch.qint8)
                ours = quantize_model(model, 8, scheme, include_embeddings=False)  # same layers as theirs
                ref_loss, our_loss = ref.loss(x, y).item(), ours.loss(x, y).item()
                assert abs(our_loss - ref_loss) < 0.01, (scheme, our_loss, ref_loss)
                assert abs(our_loss - fp32) < 0.01 and abs(ref_loss - fp32) < 0.01
                # weight by weight: the two roundings differ by at most one step
                w_ref = ref.transformer.h[0].attn.c_attn.weight().dequantize()
                w_ours = ours.transformer.h[0].attn.c_attn.weight
                assert (w_ours - w_ref).abs().max() <= ours.transformer.h[0].attn.c_attn.scale.max()
    int4 = quantize_model(model, 4, "group", group_size=32).loss(x, y).item()
    assert int4 > our_loss  # fewer bits, more damage


def test_bf16_cast_baseline():
    model = _sharp_gpt()
    x, y = _batch(model)
    with torch.no_grad():
        fp32 = model.loss(x, y).item()
        bf16 = copy.deepcopy(model).to(torch.bfloat16).loss(x, y).item()
    assert abs(bf16 - fp32) < 0.05


def _rounding_bound(x: torch.Tensor, q) -> torch.Tensor:
    """|x @ W.T - x @ Wq.T| <= sum_i |x_i| * (half a step of the scale that rounded weight (row, i)): (N, rows)."""
    rows, cols = q.shape
    if q.scheme == "group":
        half_step = (q.scale.expand(rows, -1, q.group_size).flatten(1)[:, :cols]) / 2  # (rows, cols)
    else:
        half_step = (q.scale / 2).expand(rows, cols)
    return x.abs() @ half_step.T


def test_int8_kernel_and_dequantised_int4_products_match_fp32_within_their_rounding():
    from helpers.quantize import dequantised_product, int8_product

    g = torch.Generator().manual_seed(0)
    w = torch.randn(96, 200, generator=g) * torch.linspace(0.1, 3.0, 96)[:, None]  # rows of very different sizes
    x = torch.randn(5, 200, generator=g)
    exact = x @ w.T
    q8 = quantize_tensor(w, 8, "per_channel")
    y8 = int8_product(x, q8)
    # the kernel computes exactly x @ (codes * scale).T, up to float32 summation
    torch.testing.assert_close(y8, x @ q8.dequantize().T, atol=1e-4, rtol=1e-5)
    assert ((y8 - exact).abs() <= _rounding_bound(x, q8) + 1e-4).all()
    q4 = quantize_tensor(w, 4, "group", 32)
    y4 = dequantised_product(x, q4)
    assert ((y4 - exact).abs() <= _rounding_bound(x, q4) + 1e-4).all()
    assert (y4 - exact).abs().mean() > (y8 - exact).abs().mean()  # 16 levels round far more than 255
    # a kernel fed the codes of the transposed matrix, or scales of the wrong rows, breaks the bound
    wrong = quantize_tensor(w.flip(0), 8, "per_channel")
    assert not ((int8_product(x, wrong) - exact).abs() <= _rounding_bound(x, q8) + 1e-4).all()
    with pytest.raises(ValueError, match="8-bit per_channel"):
        int8_product(x, q4)
    with pytest.raises(ValueError, match=r"x must be \(N, 200\)"):
        int8_product(x[:, :50], q8)


def test_product_seconds_times_every_product_and_refuses_bad_input():
    from helpers.quantize import PRODUCTS, product_seconds

    times = product_seconds(torch.randn(64, 128), batch=2, repeats=1)
    assert list(times) == list(PRODUCTS) and all(t > 0 for t in times.values())
    for bad in (dict(batch=0), dict(repeats=True)):
        with pytest.raises(ValueError, match="must be an int >= 1"):
            product_seconds(torch.randn(4, 4), **bad)
    with pytest.raises(ValueError, match="2-D float tensor"):
        product_seconds(torch.ones(4, dtype=torch.int64))


@pytest.mark.parametrize("bits,scheme", [(8, "per_channel"), (4, "group"), (3, "group"), (2, "per_channel")])
def test_a_large_matrix_quantised_in_slices_of_rows_gives_the_same_codes(monkeypatch, bits, scheme):
    import helpers.quantize as quantize

    w = torch.randn(37, 100, generator=torch.Generator().manual_seed(1))
    whole = quantize_tensor(w, bits, scheme, group_size=32)
    monkeypatch.setattr(quantize, "_CHUNK", 7 * 100 + 5)  # slices of 7 rows, the last one shorter
    sliced = quantize_tensor(w, bits, scheme, group_size=32)
    assert sliced.shape == whole.shape and sliced.nbytes == whole.nbytes
    for name in ("data", "scale", "zero"):
        a, b = getattr(sliced, name), getattr(whole, name)
        assert (a is None and b is None) or torch.equal(a, b), name
    assert torch.equal(sliced.dequantize(), whole.dequantize())


def test_pack_int4_along_the_last_dim_of_any_shape():
    g = torch.Generator().manual_seed(0)
    for shape in ((9,), (2, 4, 9), (3, 2, 9)):
        codes = torch.randint(0, 16, shape, dtype=torch.uint8, generator=g)
        packed = pack_int4(codes)
        assert packed.shape == (*shape[:-1], 5)
        assert torch.equal(unpack_int4(packed)[..., :9], codes)


def test_quant_linear_repr_defaults_and_dtypes():
    lin = nn.Linear(70, 48)
    with torch.no_grad():
        lin.weight.copy_(_weight())
    assert repr(QuantLinear.from_linear(lin)) == "QuantLinear(shape=(48, 70), bits=8, scheme=per_channel)"
    group = QuantLinear.from_linear(lin, bits=4, scheme="group")
    assert group.group_size == 64  # the documented default
    assert repr(group) == "QuantLinear(shape=(48, 70), bits=4, scheme=group, group_size=64)"
    # a bf16 input is multiplied by the bf16-rounded weight and bias, and comes out bf16
    x = torch.randn(3, 70, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    out = group(x)
    assert out.dtype == torch.bfloat16
    want = nn.functional.linear(x, group.weight.to(torch.bfloat16), lin.bias.detach().to(torch.bfloat16))
    assert torch.equal(out, want)


def test_a_tied_head_with_a_bias_keeps_its_bias():
    """A model whose output layer shares the embedding matrix but has its own bias: the shared codes
    serve both ends, the bias stays the head's."""
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 8)
            self.head = nn.Linear(8, 10)
            self.head.weight = self.emb.weight

        def forward(self, idx):
            return self.head(self.emb(idx))

    torch.manual_seed(0)
    model = Tied()
    with torch.no_grad():
        model.head.bias.fill_(3.0)
    q = quantize_model(model, 8)
    assert q.head.qdata is q.emb.qdata
    assert torch.equal(q.head.bias, model.head.bias.detach())
    idx = torch.arange(10)
    with torch.no_grad():
        torch.testing.assert_close(q(idx), q.emb(idx) @ q.head.weight.T + 3.0, atol=1e-5, rtol=0)


def test_a_non_finite_embedding_is_refused_by_name():
    model = GPT(CFG)
    with torch.no_grad():
        model.transformer.wpe.weight[2, 3] = float("nan")
    with pytest.raises(ValueError) as err:
        quantize_model(model)
    assert str(err.value) == "transformer.wpe.weight holds inf or NaN values; a quantised copy would be NaN"
