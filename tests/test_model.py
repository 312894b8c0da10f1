"""helpers.model: GPT-2 equivalence with Hugging Face, the KV cache, parameter counts, bad input."""

import pytest
import torch

from helpers.model import GPT, GPTConfig, linear_cross_entropy, parameter_count


def _hf_pair(seed: int, **cfg):
    """A random Hugging Face GPT-2 built locally (no download) and our copy of it.

    Only the tests that compare with Hugging Face skip without ``transformers``; the KV-cache,
    finite-difference and bad-input tests run everywhere."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    hc = transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, **cfg)
    hf = transformers.GPT2LMHeadModel(hc).eval()
    # Random non-zero biases and LayerNorm parameters, so a mapping mistake cannot hide behind zeros.
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return hf, GPT.from_hf(hf).eval()


@pytest.mark.parametrize(
    "seed,cfg",
    [
        (0, dict(n_positions=32, vocab_size=97, n_layer=2, n_head=2, n_embd=16)),
        (1, dict(n_positions=64, vocab_size=300, n_layer=3, n_head=4, n_embd=48)),
        (2, dict(n_positions=16, vocab_size=50, n_layer=1, n_head=1, n_embd=8)),
    ],
)
def test_logits_match_hugging_face(seed, cfg):
    hf, ours = _hf_pair(seed, **cfg)
    idx = torch.randint(0, cfg["vocab_size"], (3, cfg["n_positions"]), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = hf(idx).logits
        got = ours(idx)
    assert got.shape == expected.shape == (3, cfg["n_positions"], cfg["vocab_size"])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert ours.num_parameters() == sum(p.numel() for p in hf.parameters())


def test_from_state_dict_needs_config_and_matches():
    hf, ours = _hf_pair(3, n_positions=16, vocab_size=40, n_layer=2, n_head=2, n_embd=16)
    with pytest.raises(ValueError, match="config is required"):
        GPT.from_hf(hf.state_dict())
    again = GPT.from_hf(hf.state_dict(), ours.config).eval()
    idx = torch.randint(0, 40, (2, 16))
    torch.testing.assert_close(again(idx), ours(idx))
    wrong = GPTConfig(block_size=16, vocab_size=40, n_layer=2, n_head=2, n_embd=32)
    with pytest.raises(ValueError, match="expected shape"):
        GPT.from_hf(hf.state_dict(), wrong)


def test_kv_cache_matches_full_forward():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=24, vocab_size=31, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 31, (2, 24))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache(2)
        pieces = [model(idx[:, :5], cache=cache), model(idx[:, 5:9], cache=cache)]
        pieces += [model(idx[:, t : t + 1], cache=cache) for t in range(9, 24)]
    assert cache.pos == 24
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="block_size=24"):
        model(idx[:, :1], cache=cache)
    cache.reset()
    torch.testing.assert_close(model(idx[:, :3], cache=cache), full[:, :3], atol=1e-5, rtol=1e-5)


def test_cache_select_keeps_rows():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=12, vocab_size=20, n_layer=1, n_head=2, n_embd=8)).eval()
    idx = torch.randint(0, 20, (3, 6))
    with torch.no_grad():
        full = model(idx)
        cache = model.new_cache(3)
        model(idx[:, :5], cache=cache)
        cache.select(torch.tensor([0, 2]))
        last = model(idx[[0, 2], 5:6], cache=cache)
    torch.testing.assert_close(last, full[[0, 2], 5:6], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_parameter_count_formula(bias):
    gen = torch.Generator().manual_seed(int(bias))
    for _ in range(8):
        n_head = int(torch.randint(1, 5, (1,), generator=gen))
        cfg = GPTConfig(
            block_size=int(torch.randint(1, 64, (1,), generator=gen)),
            vocab_size=int(torch.randint(1, 500, (1,), generator=gen)),
            n_layer=int(torch.randint(1, 4, (1,), generator=gen)),
            n_head=n_head,
            n_embd=n_head * int(torch.randint(1, 9, (1,), generator=gen)),
            bias=bias,
        )
        assert parameter_count(cfg) == GPT(cfg).num_parameters()


def test_gpt2_small_has_124439808_parameters():
    cfg = GPTConfig(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)
    with torch.device("meta"):
        model = GPT(cfg)
    assert model.num_parameters() == parameter_count(cfg) == 124_439_808
    parts = model.parameter_breakdown()
    assert sum(v for part in parts.values() for v in part.values()) == 124_439_808
    assert parts["embeddings"]["weights"] == 50257 * 768 + 1024 * 768


def test_weights_are_tied_and_logits_shape():
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model(torch.zeros(2, 8, dtype=torch.long)).shape == (2, 8, 11)


def test_loss_is_cross_entropy_and_ignores_minus_100():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    x = torch.randint(0, 11, (2, 8))
    y = torch.randint(0, 11, (2, 8))
    logits = model(x)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 11), y.reshape(-1))
    torch.testing.assert_close(model.loss(x, y), expected)
    y[:, :4] = -100
    expected = torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, 11), y[:, 4:].reshape(-1))
    torch.testing.assert_close(model.loss(x, y), expected)


def _plain_loss(model, x, y):
    return torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(), ignore_index=-100)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_fused_loss_and_gradients_match_the_plain_way(dtype, tol):
    torch.manual_seed(1)
    model = GPT(GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=8)).to(dtype)
    x, y = torch.randint(0, 37, (3, 16)), torch.randint(0, 37, (3, 16))
    y[0, :7] = -100  # ignored targets count for nothing
    fused = model.loss(x, y)
    fused.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    plain = _plain_loss(model, x, y)
    plain.backward()
    torch.testing.assert_close(fused, plain, rtol=tol, atol=tol)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=tol, atol=tol, msg=name)


@pytest.mark.parametrize("chunk_rows", [None, 1, 4])  # one chunk, one row per chunk, a ragged last chunk
def test_fused_loss_matches_finite_differences(chunk_rows):
    torch.manual_seed(2)
    h = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1, -100, 8, 0, 3, 3])
    linear_cross_entropy(h, w, t, chunk_rows=chunk_rows).backward()
    eps = 1e-6
    for tensor in (h, w):
        for index in [(0, 0), (2, 4), (5, 1), (1, 3), (8, 2)][: 4 + (tensor is w)]:
            with torch.no_grad():
                tensor[index] += eps
                up = linear_cross_entropy(h, w, t, chunk_rows=chunk_rows)
                tensor[index] -= 2 * eps
                down = linear_cross_entropy(h, w, t, chunk_rows=chunk_rows)
                tensor[index] += eps
            assert abs((up - down).item() / (2 * eps) - tensor.grad[index].item()) < 1e-7
    assert h.grad[1].abs().max() == 0  # the ignored row gets no gradient


@pytest.mark.parametrize("chunk_rows", [1, 5, 1000])
def test_fused_loss_in_chunks_matches_cross_entropy(chunk_rows):
    torch.manual_seed(5)
    h = torch.randn(23, 6, requires_grad=True)
    w = torch.randn(13, 6, requires_grad=True)
    t = torch.randint(0, 13, (23,))
    t[[0, 7, 22]] = -100
    linear_cross_entropy(h, w, t, chunk_rows=chunk_rows).mul(3.0).backward()  # a scaled upstream gradient
    got = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    F_loss = torch.nn.functional.cross_entropy(h @ w.t(), t, ignore_index=-100)
    F_loss.mul(3.0).backward()
    torch.testing.assert_close(got[0], h.grad)
    torch.testing.assert_close(got[1], w.grad)
    torch.testing.assert_close(linear_cross_entropy(h, w, t, chunk_rows=chunk_rows), F_loss)


def test_fused_loss_edge_cases():
    torch.manual_seed(3)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    x = torch.randint(0, 11, (2, 8))
    nothing = torch.full((2, 8), -100)
    assert torch.isnan(model.loss(x, nothing)) and torch.isnan(_plain_loss(model, x, nothing))  # as F.cross_entropy
    y = torch.randint(0, 11, (2, 8))
    loss = model.loss(x, y)
    loss.backward(retain_graph=True)  # a second backward pass adds the same gradients again
    once = {n: p.grad.clone() for n, p in model.named_parameters()}
    loss.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 2 * once[name], msg=name)
    with torch.no_grad():  # evaluation: the loss alone, no gradient work, no graph
        evaluated = model.loss(x, y)
    assert not evaluated.requires_grad
    torch.testing.assert_close(evaluated, loss.detach())


def test_loss_falls_back_to_the_plain_way_for_a_hooked_or_adapted_head():
    torch.manual_seed(4)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    x, y = torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))
    seen = []
    handle = model.lm_head.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    torch.testing.assert_close(model.loss(x, y), _plain_loss(model, x, y))
    assert seen and seen[0] == (2, 8, 11)  # the hook ran: loss() went through the output layer
    handle.remove()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_embd=10, n_head=3), "n_embd must be divisible by n_head"),
        (dict(n_layer=0), "n_layer must be a positive int, got 0"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (dict(dropout=False), r"dropout must be in \[0, 1\), got False"),
        (dict(dropout=float("nan")), r"dropout must be in \[0, 1\), got nan"),
        (dict(vocab_size=2.5), "vocab_size must be a positive int"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kwargs)


def test_new_cache_names_a_bad_batch_size():
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    for bad in (True, 0, 2.0):
        with pytest.raises(ValueError, match=f"batch_size must be an int >= 1, got {bad!r}"):
            model.new_cache(bad)


def test_bad_inputs():
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, vocab_size=11\), got 11"):
        model(torch.tensor([[1, 11]]))
    with pytest.raises(ValueError, match="got -1"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match="block_size=8, got 9"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D tensor"):
        model(torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="targets must be a tensor with the shape"):
        model.loss(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))


@pytest.mark.parametrize("plain_head", [True, False])
def test_loss_names_bad_targets(plain_head):
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    if not plain_head:  # the other path: F.cross_entropy after a hooked output layer
        model.lm_head.register_forward_hook(lambda m, i, o: o)
    x = torch.zeros(1, 3, dtype=torch.long)
    for bad, shown in ((11, "11"), (-1, "-1"), (-101, "-101")):
        with pytest.raises(ValueError, match=rf"targets must be token ids in \[0, vocab_size=11\) or -100 .*got {shown}"):
            model.loss(x, torch.tensor([[1, bad, 2]]))
    with pytest.raises(ValueError, match="targets must hold integer token ids, got dtype torch.float32"):
        model.loss(x, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="targets must be a tensor .* got list"):
        model.loss(x, [[1, 2, 3]])
    ok = model.loss(x, torch.tensor([[1, -100, 10]], dtype=torch.int32))  # int32 and the ignore index are fine
    ref = torch.nn.functional.cross_entropy(model(x)[0], torch.tensor([1, -100, 10]))
    torch.testing.assert_close(ok, ref)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8, dropout=0.5))
    x = torch.randint(0, 11, (2, 8))
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_autocast_close_to_fp32():
    from helpers.runtime import autocast

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=64, n_layer=2, n_head=2, n_embd=32)).cuda().eval()
    x = torch.randint(0, 64, (2, 32), device="cuda")
    with torch.no_grad(), autocast("cuda"):
        low = model(x).float()
    with torch.no_grad():
        ref = model(x)
    assert low.device.type == "cuda"
    torch.testing.assert_close(low, ref, atol=5e-2, rtol=5e-2)


def test_config_and_from_hf_refusals_name_the_value():
    """The promised errors of GPTConfig.from_dict, GPT() and GPT.from_hf, without transformers: a
    stand-in module carries only the config fields that from_hf reads."""
    from types import SimpleNamespace

    cfg = GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError) as err:
        GPTConfig.from_dict(cfg.to_dict() | {"n_heads": 2, "rope": True})
    assert str(err.value) == ("unknown GPTConfig fields ['n_heads', 'rope']; allowed: ['bias', 'block_size', "
                              "'dropout', 'n_embd', 'n_head', 'n_layer', 'vocab_size']")
    with pytest.raises(ValueError, match="config must be a GPTConfig, got dict"):
        GPT(cfg.to_dict())
    with pytest.raises(ValueError, match="bias must be True or False, got 1"):
        GPTConfig(bias=1)
    state = GPT(cfg).state_dict()
    del state["transformer.wpe.weight"]
    with pytest.raises(ValueError, match="the Hugging Face state dict has no tensor for 'transformer.wpe.weight'"):
        GPT.from_hf(state, cfg)

    def stand_in(**fields):
        module = torch.nn.Linear(1, 1)
        module.config = SimpleNamespace(n_positions=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4, **fields)
        return module

    with pytest.raises(ValueError, match="activation_function must be gelu_new or gelu_pytorch_tanh, got 'relu'"):
        GPT.from_hf(stand_in(activation_function="relu"))
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        with pytest.raises(ValueError, match="are not GPT-2 defaults"):
            GPT.from_hf(stand_in(**{flag: True}))
    with pytest.raises(ValueError, match="has no tensor for 'transformer.wte.weight'"):
        GPT.from_hf(stand_in(activation_function="gelu_pytorch_tanh"))  # passes the checks, lacks the weights


# -- paths the tests above left open ------------------------------------------------------------------

def test_the_cache_from_the_first_token_in_pieces_of_one_to_three():
    # start = 1 and chunks of 2 after a start > 0 are the cases the mask logic must get right
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=12, vocab_size=23, n_layer=2, n_head=2, n_embd=16)).eval()
    idx = torch.randint(0, 23, (2, 12))
    full = model(idx).detach()
    cache, pieces, t = model.new_cache(2), [], 0
    for size in (1, 1, 2, 3, 1, 2, 2):  # gradients on, as in a training-mode caller
        pieces.append(model(idx[:, t : t + size], cache=cache))
        t += size
    torch.testing.assert_close(torch.cat(pieces, dim=1).detach(), full, atol=1e-5, rtol=1e-5)
    model.train()  # in training mode too (dropout 0): the cache is filled, never skipped
    cache = model.new_cache(2)
    model(idx[:, :4], cache=cache)
    torch.testing.assert_close(model(idx[:, 4:6], cache=cache).detach(), full[:, 4:6], atol=1e-5, rtol=1e-5)


def test_cache_rows_device_and_dtype():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=20, n_layer=1, n_head=3, n_embd=12)).eval()
    cache = model.new_cache(1)  # one sequence is a valid batch
    assert cache.k.shape == cache.v.shape == (1, 1, 3, 8, 4) and cache.k.dtype == torch.float32
    cache = model.new_cache(2)
    cache.select(torch.tensor([1]))
    assert cache.batch_size == 1 and cache.k.shape[1] == 1
    assert model.new_cache(1, dtype=torch.bfloat16).v.dtype == torch.bfloat16
    assert model.to(torch.bfloat16).new_cache(1).k.dtype == torch.bfloat16  # follows the weights by default
    meta = model.to("meta").new_cache(2)  # the meta device stands in for an accelerator
    assert meta.k.device.type == meta.v.device.type == "meta"


def test_attention_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8, dropout=0.5))
    attn = model.transformer.h[0].attn
    attn.resid_dropout = torch.nn.Identity()  # what is left random is the attention weights' dropout
    x = torch.randn(2, 8, 8)
    attn.train()
    assert not torch.allclose(attn(x, None), attn(x, None))
    attn.eval()
    torch.testing.assert_close(attn(x, None), attn(x, None))


def test_gradient_checkpointing_is_off_by_default_and_changes_memory_not_results():
    from helpers.memory import saved_activation_bytes

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8))
    assert model.gradient_checkpointing is False
    x, y = torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))
    plain = saved_activation_bytes(lambda: model.loss(x, y), exclude=list(model.parameters()))
    loss = model.loss(x, y)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.gradient_checkpointing = True
    saved = saved_activation_bytes(lambda: model.loss(x, y), exclude=list(model.parameters()))
    again = model.loss(x, y)
    again.backward()
    assert saved < plain / 2  # only each block's input is kept
    torch.testing.assert_close(again, loss)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(p.grad, g)


def test_loss_takes_the_plain_way_for_any_head_the_fused_loss_cannot_see():
    torch.manual_seed(4)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    x, y = torch.randint(0, 11, (2, 8)), torch.randint(0, 11, (2, 8))
    fused = model.loss(x, y)

    def doubled(logits):  # cross-entropy of twice the logits, computed apart
        return torch.nn.functional.cross_entropy(2 * logits.flatten(0, 1), y.flatten())

    expected = doubled(model(x).detach())
    handle = model.lm_head.register_forward_hook(lambda module, args, out: 2 * out)
    torch.testing.assert_close(model.loss(x, y), expected)
    handle.remove()
    handle = model.lm_head.register_forward_pre_hook(lambda module, args: (2 * args[0],))
    torch.testing.assert_close(model.loss(x, y), expected)
    handle.remove()
    head = torch.nn.Linear(4, 11, bias=True)  # a head with a bias: not the tied, bias-free layer
    with torch.no_grad():
        head.weight.copy_(model.lm_head.weight)
        head.bias.fill_(0.5)
    model.lm_head = head
    assert (model.loss(x, y) - fused).abs().item() < 1e-6  # a constant shift of every logit changes nothing
    with torch.no_grad():
        head.bias.copy_(torch.arange(11.0))
    assert (model.loss(x, y) - fused).abs().item() > 1e-3


def test_loss_message_shows_the_shape_of_a_wrong_tensor():
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=1, n_embd=4))
    with pytest.raises(ValueError) as err:
        model.loss(torch.zeros(2, 8, dtype=torch.long), torch.zeros(2, 7, dtype=torch.long))
    assert str(err.value) == "targets must be a tensor with the shape of idx (2, 8), got (2, 7)"


def test_parameter_counts_trainable_and_by_component():
    config = GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=4, bias=True)
    model = GPT(config)
    C, V, T, L = 4, 11, 8, 2
    assert model.num_parameters() == parameter_count(config) == model.num_parameters(trainable_only=True)
    model.transformer.wpe.weight.requires_grad_(False)
    assert model.num_parameters() == parameter_count(config)
    assert model.num_parameters(trainable_only=True) == parameter_count(config) - T * C
    assert model.parameter_breakdown() == {
        "embeddings": {"weights": V * C + T * C, "biases": 0},
        "attention": {"weights": L * (3 * C * C + C * C), "biases": L * (3 * C + C)},
        "mlp": {"weights": L * (4 * C * C + 4 * C * C), "biases": L * (4 * C + C)},
        "norms": {"weights": (2 * L + 1) * C, "biases": (2 * L + 1) * C},
    }


def test_initial_weights_follow_gpt2():
    # GPT-2: N(0, 0.02) everywhere, the projections into the residual stream scaled by 1/sqrt(2 L)
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=64, vocab_size=500, n_layer=4, n_head=4, n_embd=64))
    residual = torch.cat([p.flatten() for n, p in model.named_parameters() if n.endswith("c_proj.weight")])
    others = torch.cat([p.flatten() for n, p in model.named_parameters()
                        if n.endswith("weight") and p.dim() == 2 and not n.endswith("c_proj.weight")])
    assert residual.mean().abs().item() < 1e-3 and others.mean().abs().item() < 1e-3
    assert residual.std().item() == pytest.approx(0.02 / (2 * 4) ** 0.5, rel=0.03)
    assert others.std().item() == pytest.approx(0.02, rel=0.03)


def test_from_hf_reads_the_heads_and_a_state_dict_without_the_prefix():
    hf, ours = _hf_pair(5, n_positions=16, vocab_size=40, n_layer=1, n_head=2, n_embd=16)  # not the default 4
    assert ours.config.n_head == 2
    idx = torch.randint(0, 40, (1, 16))
    expected = hf(idx).logits.detach()
    torch.testing.assert_close(ours(idx).detach(), expected, atol=1e-5, rtol=1e-5)
    # the state dict of GPT2Model (no "transformer." prefix) plus the output layer
    bare = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}
    assert not any(k.startswith("transformer.") for k in bare)
    torch.testing.assert_close(GPT.from_hf(bare, ours.config).eval()(idx).detach(), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError) as err:
        GPT.from_hf(bare)
    assert str(err.value) == "config is required when from_hf is given a state dict (n_head cannot be inferred)"
    hf.config.scale_attn_by_inverse_layer_idx = True
    with pytest.raises(ValueError) as err:
        GPT.from_hf(hf)
    assert str(err.value) == "scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not GPT-2 defaults"


def test_replace_submodule_puts_the_module_at_its_dotted_name():
    from helpers.model import replace_submodule

    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=1, n_embd=4))
    inner, top = torch.nn.Linear(4, 12), torch.nn.Linear(4, 11)
    replace_submodule(model, "transformer.h.1.attn.c_attn", inner)
    replace_submodule(model, "lm_head", top)
    assert model.transformer.h[1].attn.c_attn is inner and model.lm_head is top
    assert model.get_submodule("transformer.h.1.attn.c_attn") is inner


def test_under_cpu_autocast_the_loss_runs_the_plain_output_layer(monkeypatch):
    """Mixed precision takes the plain way (output layer, then cross-entropy on float32 logits); the fused
    loss, which computes in the weights' precision, is for full-precision runs only."""
    import helpers.model as model_module

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=40, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(0, 40, (2, 8))
    fused_calls = []
    real_fused = model_module.linear_cross_entropy
    monkeypatch.setattr(model_module, "linear_cross_entropy", lambda *a, **k: fused_calls.append(1) or real_fused(*a, **k))
    model.loss(x, x)
    assert fused_calls == [1]  # full precision: the fused loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model.loss(x, x)
        want = torch.nn.functional.cross_entropy(model(x).flatten(0, 1).float(), x.flatten())
    assert fused_calls == [1]  # mixed precision: not the fused loss
    torch.testing.assert_close(mixed, want, rtol=0, atol=0)
