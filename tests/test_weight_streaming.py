"""helpers.weight_streaming: which matrices one decoding step reads, their bytes, and the timed pass."""

import pytest
import torch

from helpers.llama import Llama, LlamaConfig
from helpers.model import GPT, GPTConfig
from helpers.weight_streaming import _int8_rows, matvec_seconds, streamed_matrices, streaming_bytes

CFG = dict(block_size=16, vocab_size=40, n_layer=2, n_embd=16, n_mlp=24, n_head=4, n_kv_head=2)


@pytest.mark.parametrize("tied", [True, False])
def test_streamed_matrices_of_a_llama(tied):
    model = Llama(LlamaConfig(**CFG, tie_embeddings=tied))
    mats = streamed_matrices(model)
    linear_weights = {m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Linear)}
    assert {w.data_ptr() for w in mats} == linear_weights  # the tied table once, as lm_head; an untied one not at all
    assert len(mats) == 2 * 7 + 1
    n = sum(w.numel() for w in mats)
    norms = (2 * CFG["n_layer"] + 1) * CFG["n_embd"]
    untied_table = 0 if tied else CFG["vocab_size"] * CFG["n_embd"]
    assert n == model.num_parameters() - norms - untied_table


def test_streamed_matrices_of_the_gpt_skip_the_position_table():
    model = GPT(GPTConfig(block_size=8, vocab_size=30, n_layer=1, n_head=2, n_embd=8))
    mats = streamed_matrices(model)
    assert all(m.data_ptr() != model.transformer.wpe.weight.data_ptr() for m in mats)  # a lookup, not a product
    assert any(m.data_ptr() == model.lm_head.weight.data_ptr() for m in mats)


def test_streaming_bytes_per_format():
    mats = [torch.zeros(3, 5), torch.zeros(7, 2)]
    assert streaming_bytes(mats, "fp32") == 4 * 29
    assert streaming_bytes(mats, "bf16") == 2 * 29
    assert streaming_bytes(mats, "int8") == 29 + 4 * (3 + 7)  # one byte per weight, a float32 scale per row
    with pytest.raises(ValueError, match="fmt"):
        streaming_bytes(mats, "int4")


def test_int8_kernel_computes_the_scaled_codes_product():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(24, 32, generator=g)
    codes, scale = _int8_rows(w)
    deq = codes.float() * scale[:, None]
    assert (deq - w).abs().max() <= scale.max() / 2 + 1e-6
    x = torch.randn(1, 32, generator=g)
    assert torch.allclose(torch._weight_int8pack_mm(x, codes, scale), x @ deq.T, atol=1e-4)


@pytest.mark.parametrize("fmt", ["fp32", "bf16", "int8"])
def test_matvec_seconds_runs_every_format(fmt):
    mats = streamed_matrices(Llama(LlamaConfig(**CFG)))
    seconds = matvec_seconds(mats, fmt, repeats=1)
    assert isinstance(seconds, float) and seconds > 0
    with pytest.raises(ValueError, match="repeats"):
        matvec_seconds(mats, fmt, repeats=0)
