"""helpers.attention, helpers.kv_cache and helpers.rotary: attention by hand against the model and PyTorch's kernel,
the KV-cache formula against the tensors a cache allocates, head measures on a planted head, RoPE
against Hugging Face's Llama rotation."""

import math

import pytest
import torch
import torch.nn.functional as F

from helpers.attention import (
    attention_by_hand,
    attention_entropy,
    attention_modules,
    attention_traces,
    attention_weights,
    block_shapes,
    capture_attention_calls,
    capture_attention_inputs,
    mass_on,
    mean_distance,
    merge_heads,
    per_position_loss,
    planted_previous_token_model,
    previous_token_score,
    split_heads,
    uniform_causal,
)
from helpers.kv_cache import PUBLISHED, allocated_bytes, greedy_timed, kv_cache_bytes
from helpers.llama import Llama, LlamaConfig, rope_tables
from helpers.model import GPT, GPTConfig
from helpers.rotary import apply_rotary, rotary_angles, rotary_gpt
from helpers.runtime import num_threads


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    with num_threads(1):
        yield


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(block_size=32, vocab_size=97, n_layer=2, n_head=4, n_embd=32)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def test_split_and_merge_heads_are_inverse_and_match_view():
    x = torch.randn(2, 5, 12)
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 5, 4)
    assert torch.equal(h[:, 1], x[..., 4:8])  # head 1 owns channels 4..7
    assert torch.equal(merge_heads(h), x)
    with pytest.raises(ValueError, match="n_head must be a positive int dividing C=12, got 5"):
        split_heads(x, 5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_by_hand_equals_the_model_and_sdpa(seed):
    model = _model(seed)
    idx = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(seed))
    inputs, outputs = capture_attention_inputs(model, idx)
    assert len(inputs) == len(outputs) == 2 and inputs[0].shape == (3, 20, 32)
    for attn, x, y in zip(attention_modules(model), inputs, outputs):
        trace = attention_by_hand(attn, x)
        torch.testing.assert_close(trace.out, y, rtol=1e-5, atol=1e-5)  # the model's own forward
        ref = F.scaled_dot_product_attention(trace.q, trace.k, trace.v, is_causal=True)
        torch.testing.assert_close(trace.heads, ref, rtol=1e-5, atol=1e-5)  # PyTorch's kernel
        assert torch.allclose(trace.weights.sum(-1), torch.ones(3, 4, 20))
        assert (trace.weights.triu(diagonal=1) == 0).all()  # nothing from the future
    # the logits are unchanged by the hooks
    with torch.no_grad():
        torch.testing.assert_close(model(idx), model(idx))


def test_by_hand_scores_are_q_dot_k_over_sqrt_d():
    model = _model()
    idx = torch.randint(0, 97, (1, 6))
    t = attention_traces(model, idx)[1]
    q, k = t.q[0, 2, 5], t.k[0, 2, 3]  # head 2, query 5, key 3
    assert math.isclose(float(t.scores[0, 2, 5, 3]), float(q @ k) / math.sqrt(8), rel_tol=1e-5)
    assert t.scores[0, 2, 3, 5] == float("-inf")


def test_attention_weights_shape_and_errors():
    model = _model()
    w = attention_weights(model, torch.randint(0, 97, (10,)))
    assert w.shape == (2, 4, 10, 10)
    with pytest.raises(ValueError, match="one sequence"):
        attention_weights(model, torch.randint(0, 97, (2, 10)))
    with pytest.raises(ValueError, match="attention modules"):
        attention_modules(torch.nn.Linear(2, 2))


def test_cached_keys_and_values_are_the_by_hand_ones():
    model = _model()
    idx = torch.randint(0, 97, (2, 9))
    cache = model.new_cache(2)
    with torch.no_grad():
        model(idx, cache)
    for layer, t in enumerate(attention_traces(model, idx)):
        torch.testing.assert_close(cache.k[layer, :, :, :9], t.k, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cache.v[layer, :, :, :9], t.v, rtol=1e-5, atol=1e-6)
        assert (cache.k[layer, :, :, 9:] == 0).all()  # preallocated, not yet used


@pytest.mark.parametrize("dtype,batch,kw", [(torch.float32, 1, {}), (torch.bfloat16, 3, {}),
                                            (torch.float32, 2, dict(n_layer=3, n_head=2, n_embd=24, block_size=50))])
def test_kv_formula_equals_the_bytes_new_cache_allocates(dtype, batch, kw):
    model = _model(**kw)
    c = model.config
    cache = model.new_cache(batch, dtype=dtype)
    formula = kv_cache_bytes(c.n_layer, c.n_head, c.n_embd // c.n_head, c.block_size,
                             torch.finfo(dtype).bits // 8, batch_size=batch)
    assert allocated_bytes(cache) == formula
    assert allocated_bytes(cache) == (cache.k.numel() + cache.v.numel()) * cache.k.element_size()


def test_allocated_bytes_counts_shared_storage_once_and_walks_containers():
    a = torch.zeros(10)
    assert allocated_bytes({"x": [a, a[2:]], "y": (torch.zeros(3, dtype=torch.int8),)}) == 43


def test_kv_bytes_arithmetic_and_errors():
    # Llama-3-8B at 8,192 tokens in bf16: 2 * 32 * 8 * 128 * 8192 * 2 bytes = 1 GiB exactly
    assert PUBLISHED["Llama-3-8B"].cache_bytes(8192) == 2**30
    assert PUBLISHED["Llama-2-7B"].cache_bytes(8192) == 4 * 2**30  # 32 KV heads instead of 8
    assert PUBLISHED["SmolLM2-135M"].group == 3
    assert kv_cache_bytes(1, 1, 1, 0, 2) == 0
    with pytest.raises(ValueError, match="n_kv_head must be a positive int, got 0"):
        kv_cache_bytes(1, 0, 1, 1, 2)
    with pytest.raises(ValueError, match="tokens must be an int >= 0, got -1"):
        kv_cache_bytes(1, 1, 1, -1, 2)


@pytest.mark.parametrize("seed", [0, 1, 4, 7])
def test_previous_token_score_finds_a_planted_head(seed):
    model = planted_previous_token_model(seed=seed)
    layer, head = model.planted_head
    w = attention_weights(model, torch.randint(0, 64, (16,)))
    score = previous_token_score(w)  # (L, nh)
    assert score.shape == (3, 4)
    assert divmod(int(score.argmax()), 4) == (layer, head)
    assert score[layer, head] > 0.9 and score.flatten().sort().values[-2] < 0.5
    assert float(mean_distance(w[layer, head])) == pytest.approx(15 / 16, abs=0.05)  # one step back, from t >= 1
    # a head that spreads evenly scores the mean of 1/t
    u = uniform_causal(16)
    assert math.isclose(float(previous_token_score(u)), sum(1 / (t + 1) for t in range(1, 16)) / 15, rel_tol=1e-6)
    assert math.isclose(float(mean_distance(u)), sum(t / 2 for t in range(16)) / 16, rel_tol=1e-6)


def test_mass_on_and_entropy():
    u = uniform_causal(4)
    first = torch.tensor([True, False, False, False])
    assert math.isclose(float(mass_on(u, first)), (1 + 1 / 2 + 1 / 3 + 1 / 4) / 4, rel_tol=1e-6)
    only_last = torch.tensor([False, False, False, True])
    assert math.isclose(float(mass_on(u, first, only_last)), 0.25, rel_tol=1e-6)
    assert math.isclose(float(attention_entropy(u)), sum(math.log(t) for t in range(1, 5)) / 4, rel_tol=1e-6)
    with pytest.raises(ValueError, match="keys must be a bool tensor of shape"):
        mass_on(u, torch.ones(3, dtype=torch.bool))


def test_greedy_with_and_without_cache_pick_the_same_tokens():
    model = _model()
    with_cache, t1 = greedy_timed(model, [1, 2, 3], 12, use_cache=True)
    without, t2 = greedy_timed(model, [1, 2, 3], 12, use_cache=False)
    assert with_cache == without and len(t1) == len(t2) == 12
    with pytest.raises(ValueError, match="new_tokens"):
        greedy_timed(model, [1], 0, use_cache=True)


# ---------------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------------


def test_rotary_matches_hugging_face_llama():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    q, k = torch.randn(2, 3, 7, 16), torch.randn(2, 3, 7, 16)
    pos = torch.arange(5, 12)
    cos, sin = rotary_angles(pos, 16, base=100_000.0)
    q_hf, k_hf = llama.apply_rotary_pos_emb(q, k, cos.float()[None], sin.float()[None])
    torch.testing.assert_close(apply_rotary(q, pos, 100_000.0), q_hf)
    torch.testing.assert_close(apply_rotary(k, pos, 100_000.0), k_hf)


def test_rotary_scores_depend_only_on_the_distance():
    q, k = torch.randn(1, 16, dtype=torch.float64), torch.randn(1, 16, dtype=torch.float64)
    def score(m, n):
        return float(apply_rotary(q, torch.tensor([m])) @ apply_rotary(k, torch.tensor([n])).T)
    assert math.isclose(score(7, 3), score(1007, 1003), rel_tol=1e-9)
    assert not math.isclose(score(7, 3), score(7, 5), rel_tol=1e-3)
    assert torch.allclose(apply_rotary(q, torch.tensor([123])).norm(), q.norm())  # a rotation keeps length


def test_rotary_gpt_cache_equals_full_forward_and_positions_are_frozen():
    torch.manual_seed(0)
    model = rotary_gpt(GPTConfig(block_size=40, vocab_size=50, n_layer=2, n_head=2, n_embd=16)).eval()
    assert not model.transformer.wpe.weight.requires_grad and (model.transformer.wpe.weight == 0).all()
    idx = torch.randint(0, 50, (2, 30))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache(2)
        parts = [model(idx[:, :10], cache)] + [model(idx[:, t:t + 1], cache) for t in range(10, 30)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-4, atol=1e-5)


def test_rotary_angles_equal_the_llama_models_tables():
    pos = torch.arange(0, 300)
    (cos, sin), (their_cos, their_sin) = rotary_angles(pos, 64, 100_000.0), rope_tables(64, 100_000.0, pos)
    torch.testing.assert_close(cos.float(), their_cos, rtol=0, atol=1e-4)
    torch.testing.assert_close(sin[:, 32:].float(), their_sin[:, 32:], rtol=0, atol=1e-4)  # the same angles
    torch.testing.assert_close(sin[:, :32].float().abs(), their_sin[:, :32].abs(), rtol=0, atol=1e-4)


def test_rotary_errors():
    with pytest.raises(ValueError, match="head_dim must be an even int"):
        rotary_angles(torch.arange(3), 5)
    with pytest.raises(ValueError, match="positions must have one entry per row"):
        apply_rotary(torch.randn(4, 8), torch.arange(3))


def test_block_shapes_follow_the_data_through_a_block():
    model = _model(n_embd=24, n_head=3)
    rows = block_shapes(model, torch.randint(0, 97, (2, 7)), layer=1)
    assert [r["module"] for r in rows] == ["ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.gelu",
                                           "mlp.c_proj"]
    by = {r["module"]: r for r in rows}
    assert by["attn.c_attn"]["weight"] == (72, 24) and by["attn.c_attn"]["output"] == (2, 7, 72)
    assert by["mlp.c_fc"]["output"] == (2, 7, 96) and by["mlp.c_proj"]["output"] == (2, 7, 24)
    with pytest.raises(ValueError, match=r"layer must be an int in \[0, 1\], got 2"):
        block_shapes(model, torch.randint(0, 97, (1, 3)), layer=2)


def test_per_position_loss_equals_cross_entropy_of_the_logits():
    model = _model()
    ids = torch.randint(0, 97, (25,)).tolist()
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]]))[0]
    expected = F.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    torch.testing.assert_close(per_position_loss(model, ids, chunk=7), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="at least 2"):
        per_position_loss(model, [3])


# ---------------------------------------------------------------------------------------------
# The Llama layout: RoPE tables passed in, grouped-query attention
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(block_size=64, vocab_size=97, n_layer=2, n_embd=48, n_mlp=64, n_head=6, n_kv_head=2,
                              rope_base=100.0)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(10)  # sharp attention: a wrong rotation or head grouping changes the output visibly
    return model


def test_by_hand_equals_the_llama_forward_with_rope_and_gqa(llama):
    idx = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(1))
    calls = capture_attention_calls(llama, idx)
    assert len(calls) == 2 and calls[0].cos.shape == (20, 8)
    for attn, c in zip(attention_modules(llama), calls):
        with torch.no_grad():
            t = attention_by_hand(attn, c.x, c.cos, c.sin)
        assert t.q.shape == (2, 6, 20, 8) and t.k.shape == (2, 2, 20, 8) and t.weights.shape == (2, 6, 20, 20)
        torch.testing.assert_close(t.out, c.out, rtol=1e-4, atol=1e-4 * float(c.out.abs().max()))
        # and against PyTorch's kernel, each query head reading its group's key/value head
        ref = F.scaled_dot_product_attention(t.q, t.k.repeat_interleave(3, 1), t.v.repeat_interleave(3, 1), is_causal=True)
        torch.testing.assert_close(t.heads, ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="cos and sin are needed"):
        attention_by_hand(attention_modules(llama)[0], calls[0].x)


def test_llama_cache_holds_the_rotated_by_hand_keys_and_matches_the_formula(llama):
    idx = torch.randint(0, 97, (1, 12))
    cache = llama.new_cache(1)
    with torch.no_grad():
        llama(idx, cache)
    for layer, t in enumerate(attention_traces(llama, idx)):
        torch.testing.assert_close(cache.k[layer, :, :, :12], t.k, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cache.v[layer, :, :, :12], t.v, rtol=1e-5, atol=1e-5)
    cfg = llama.config
    assert allocated_bytes(cache) == kv_cache_bytes(cfg.n_layer, cfg.n_kv_head, cfg.head_dim, cache.k.shape[3], 4)
    assert block_shapes(llama, idx)[2]["module"] == "self_attn.k_proj" and block_shapes(llama, idx)[2]["output"] == (1, 12, 16)
    with_cache, _ = greedy_timed(llama, [1, 2, 3], 6, use_cache=True)
    without, _ = greedy_timed(llama, [1, 2, 3], 6, use_cache=False)
    assert with_cache == without
