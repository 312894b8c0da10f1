"""The Llama-family model on small random configs: against transformers' LlamaForCausalLM, and driven by
the course's sampler, LoRA, quantisation, trainer and memory tools exactly as the GPT is. No big model."""

import pytest
import torch
import torch.nn.functional as F

from helpers.data import TokenSplits
from helpers.llama import Llama, LlamaConfig, LlamaKVCache, parameter_count
from helpers.lora import apply_lora, lora_layers, merge_lora, trainable_parameters
from helpers.memory import training_memory
from helpers.quantize import QuantLinear, model_size_bytes, quantize_model
from helpers.sampling import SamplingParams, generate, next_token_distribution, stream
from helpers.train import TrainConfig, train

transformers = pytest.importorskip("transformers")

SMALL = dict(block_size=48, vocab_size=97, n_layer=2, n_embd=32, n_mlp=56, n_head=4, n_kv_head=2)


class Chars:
    """A tokenizer of one id per character of a small alphabet (with an end token), for text prompts."""

    alphabet = "abcdefghijklmnopqrstuvwxyz .!?"

    def __init__(self):
        self.eot_id = len(self.alphabet)
        self.vocab_size = SMALL["vocab_size"]

    def encode(self, text):
        return [self.alphabet.index(c) for c in text]

    def decode_bytes(self, ids):
        return "".join(self.alphabet[i] if i < len(self.alphabet) else "#" for i in ids).encode()


def _hf_pair(tied: bool, base: float, n_kv_head: int, seed: int = 0):
    cfg = transformers.LlamaConfig(
        vocab_size=SMALL["vocab_size"], hidden_size=SMALL["n_embd"], intermediate_size=SMALL["n_mlp"],
        num_hidden_layers=SMALL["n_layer"], num_attention_heads=SMALL["n_head"], num_key_value_heads=n_kv_head,
        max_position_embeddings=SMALL["block_size"], rope_theta=base, rms_norm_eps=1e-5,
        tie_word_embeddings=tied, attention_dropout=0.0)
    torch.manual_seed(seed)
    hf = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if name.endswith("norm.weight"):  # they start at 1: make them random so that they are tested too
                p.uniform_(0.5, 1.5)
            elif name.endswith(("q_proj.weight", "k_proj.weight")):  # sharp attention: positions matter
                p.normal_(0.0, 0.5)
    return hf, Llama.from_hf(hf).eval()


@pytest.mark.parametrize("tied,base,n_kv_head", [(True, 10_000.0, 2), (False, 500_000.0, 2),
                                                 (True, 500_000.0, 1), (False, 10_000.0, 4)])
def test_logits_loss_and_gradients_match_transformers(tied, base, n_kv_head):
    hf, ours = _hf_pair(tied, base, n_kv_head)
    assert ours.config.rope_base == base and ours.config.tie_embeddings == tied
    assert ours.num_parameters() == hf.num_parameters() == parameter_count(ours.config)
    x = torch.randint(0, SMALL["vocab_size"], (3, 40))
    y = torch.randint(0, SMALL["vocab_size"], (3, 40))
    y[0, :5] = -100
    with torch.no_grad():
        ref = hf(x).logits
        torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-5)
        cache = ours.new_cache(3)
        assert cache.k.shape[2] == n_kv_head  # sized for the key/value heads, not the query heads
        pieces = [ours(x[:, :17], cache=cache)] + [ours(x[:, t:t + 1], cache=cache) for t in range(17, 22)]
        pieces.append(ours(x[:, 22:], cache=cache))
        torch.testing.assert_close(torch.cat(pieces, dim=1), ref, atol=1e-5, rtol=1e-5)
    loss = ours.loss(x, y)
    ref_loss = F.cross_entropy(hf(x).logits.flatten(0, 1), y.flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    loss.backward()
    ref_loss.backward()
    theirs = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, atol=1e-5, rtol=1e-4, msg=name)


def test_the_rope_bases_matter():
    _, a = _hf_pair(True, 10_000.0, 2)
    _, b = _hf_pair(True, 500_000.0, 2)
    x = torch.randint(0, SMALL["vocab_size"], (1, 30))
    with torch.no_grad():
        assert (a(x) - b(x)).abs().max() > 1e-2  # far above the tolerance of the comparison with transformers


def test_config_validation_and_round_trip():
    c = LlamaConfig(**SMALL)
    assert c.head_dim == 8 and c.context_length == c.block_size == 48
    assert LlamaConfig.from_dict(c.to_dict()) == c
    for bad, match in [(dict(n_kv_head=3), "n_head must be a multiple of n_kv_head"),
                       (dict(n_layer=0), "n_layer must be a positive int"),
                       (dict(rope_base=float("inf")), "rope_base must be a finite number"),
                       (dict(norm_eps=0.0), "norm_eps must be a finite number > 0"),
                       (dict(tie_embeddings="yes"), "tie_embeddings must be True or False"),
                       (dict(head_dim=7), "head_dim must be even"),
                       (dict(dropout=1.0), r"dropout must be in \[0, 1\)")]:
        with pytest.raises(ValueError, match=match):
            LlamaConfig(**{**SMALL, **bad})
    with pytest.raises(ValueError, match="unknown LlamaConfig fields"):
        LlamaConfig.from_dict({**SMALL, "n_heads": 4})
    with pytest.raises(ValueError, match="config must be a LlamaConfig"):
        Llama(SMALL)


def test_input_rules_are_the_gpts():
    model = Llama(LlamaConfig(**SMALL))
    with pytest.raises(ValueError, match=r"sequence length must be in 1\.\.block_size=48, got 49"):
        model(torch.zeros(1, 49, dtype=torch.long))
    cache = model.new_cache(1)
    model(torch.zeros(1, 40, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"got 49 \(40 cached \+ 9 new\)"):
        model(torch.zeros(1, 9, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, vocab_size=97\), got 97"):
        model(torch.tensor([[1, 97]]))
    with pytest.raises(ValueError, match="2-D tensor"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="context window"):
        generate(model, list(range(48)), SamplingParams(max_tokens=1))


def test_the_cache_grows_beyond_its_first_allocation_and_keeps_what_it_holds():
    config = LlamaConfig(**{**SMALL, "block_size": 700})
    model = Llama(config).eval()
    x = torch.randint(0, 97, (2, 600))
    with torch.no_grad():
        full = model(x)
        cache = LlamaKVCache(config, 2, model.device, torch.float32, initial=16)
        out = torch.cat([model(x[:, :10], cache=cache), model(x[:, 10:300], cache=cache),
                         model(x[:, 300:301], cache=cache), model(x[:, 301:], cache=cache)], dim=1)
    assert 600 <= cache.capacity <= 700 and cache.pos == 600
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)


def test_generate_stream_and_next_token_distribution_drive_it_unchanged():
    torch.manual_seed(3)
    model = Llama(LlamaConfig(**SMALL)).eval()
    tok = Chars()
    out = generate(model, "the cat", SamplingParams(temperature=0.0, max_tokens=12), tokenizer=tok)
    # greedy by hand, a full forward pass per token (no cache): the same tokens
    ids = tok.encode("the cat")
    want = []
    with torch.no_grad():
        for _ in range(len(out.token_ids)):
            nxt = int(model(torch.tensor([ids]))[0, -1].argmax())
            want.append(nxt)
            ids.append(nxt)
            if nxt == tok.eot_id:
                break
    assert out.token_ids == want
    assert "".join(stream(model, "the cat", SamplingParams(temperature=0.0, max_tokens=12), tokenizer=tok)) == out.text
    several = generate(model, "a", SamplingParams(temperature=1.0, max_tokens=8, seed=1), tokenizer=tok, n=3)
    assert len(several) == 3 and all(1 <= len(c.token_ids) <= 8 for c in several)
    probs, processed = next_token_distribution(model, "the", SamplingParams(top_k=5), tokenizer=tok)
    with torch.no_grad():
        ref = model(torch.tensor([tok.encode("the")]))[0, -1].softmax(-1)
    torch.testing.assert_close(probs, ref)
    assert int((processed > 0).sum()) == 5


def test_lora_targets_q_and_v_projections_by_name_and_trains():
    torch.manual_seed(4)
    model = Llama(LlamaConfig(**SMALL))
    x = torch.randint(0, 97, (4, 24))
    with torch.no_grad():
        before = model(x)
    apply_lora(model, rank=4, alpha=8, targets=("q_proj", "v_proj"))
    assert sorted(lora_layers(model)) == [f"model.layers.{i}.self_attn.{p}" for i in range(2) for p in ("q_proj", "v_proj")]
    report = trainable_parameters(model)
    assert report.trainable == 2 * (4 * 32 + 32 * 4) + 2 * (4 * 32 + 16 * 4)  # A and B; q: 32->32, v: 32->16
    with torch.no_grad():
        torch.testing.assert_close(model(x), before)  # B starts at zero: the adapted model is the base model
    splits = TokenSplits(torch.randint(0, 97, (3000,)), torch.randint(0, 97, (500,)), torch.randint(0, 97, (500,)))
    train(model, splits, TrainConfig(steps=3, batch_size=4, block_size=24, lr=1e-2, eval_every=0, progress=False,
                                     warmup_steps=0, device="cpu"))
    with torch.no_grad():
        adapted = model(x)
        assert not torch.allclose(adapted, before)
        merge_lora(model)
        torch.testing.assert_close(model(x), adapted, atol=1e-5, rtol=1e-5)


def test_quantize_model_keeps_the_tie_and_the_outputs_close():
    torch.manual_seed(5)
    model = Llama(LlamaConfig(**SMALL)).eval()
    q = quantize_model(model, bits=8)
    assert isinstance(q.model.layers[0].self_attn.k_proj, QuantLinear)
    assert model_size_bytes(q) < model_size_bytes(model) / 2
    x = torch.randint(0, 97, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(q(x), model(x), atol=0.02, rtol=0)
    out = generate(q, [1, 2, 3], SamplingParams(temperature=0.0, max_tokens=5))
    assert len(out.token_ids) == 5


def test_train_lowers_the_loss_and_checkpointing_gives_the_same_gradients():
    torch.manual_seed(6)
    model = Llama(LlamaConfig(**SMALL, dropout=0.0))
    pattern = torch.arange(0, 90).repeat(60)  # a learnable sequence
    splits = TokenSplits(pattern[:4000], pattern[4000:4800], pattern[4800:])
    history = train(model, splits, TrainConfig(steps=30, batch_size=8, block_size=32, lr=1e-2, eval_every=0,
                                               progress=False, warmup_steps=2, device="cpu"))
    assert history.train_loss[-1] < history.train_loss[0] - 1.0
    x, y = pattern[:64].view(2, 32), pattern[1:65].view(2, 32)
    model.zero_grad()
    model.train()
    model.loss(x, y).backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.gradient_checkpointing = True
    model.loss(x, y).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, plain[n], atol=1e-6, rtol=1e-5, msg=n)
    with pytest.raises(ValueError, match="gradient_checkpointing must be True or False"):
        model.gradient_checkpointing = 1


def test_training_memory_counts_its_parameters_and_activations():
    torch.manual_seed(7)
    model = Llama(LlamaConfig(**SMALL))
    x, y = torch.randint(0, 97, (2, 32)), torch.randint(0, 97, (2, 32))
    report = training_memory(model, lambda: model.loss(x, y))
    n = model.num_parameters()
    assert report.parameters == 4 * n and report.gradients == 4 * n and report.optimizer_state == 8 * n
    assert report.activations > 0 and report.peak >= report.parameters


def test_bfloat16_runs_and_keeps_the_norm_in_float32():
    torch.manual_seed(8)
    model = Llama(LlamaConfig(**SMALL)).eval()
    x = torch.randint(0, 97, (1, 16))
    with torch.no_grad():
        ref = model(x)
        low = model.to(torch.bfloat16)(x)
        assert low.dtype == torch.bfloat16
        assert model.new_cache(1).k.dtype == torch.bfloat16
        torch.testing.assert_close(low.float(), ref, atol=0.1, rtol=0.05)


def test_it_implements_the_model_interface():
    from helpers.interface import Cache, LanguageModel, ModelConfig

    model = Llama(LlamaConfig(**SMALL))
    assert isinstance(model, LanguageModel) and isinstance(model.config, ModelConfig)
    assert isinstance(model.new_cache(2), Cache)


@pytest.mark.parametrize("n_kv_head", [1, 2, 4])
def test_packed_weights_give_transformers_logits_and_leave_training_and_lora_alone(n_kv_head):
    from helpers.llama import packed_weight

    hf, ours = _hf_pair(False, 10_000.0, n_kv_head, seed=7)
    attn, mlp = ours.model.layers[0].self_attn, ours.model.layers[0].mlp
    assert packed_weight(attn.q_proj, attn.k_proj, attn.v_proj) is None  # separate allocations: not one block
    names = [n for n, _ in ours.named_parameters()]
    params = list(ours.parameters())
    assert ours.pack_weights() is ours
    assert [n for n, _ in ours.named_parameters()] == names and all(a is b for a, b in zip(ours.parameters(), params))
    qkv = packed_weight(attn.q_proj, attn.k_proj, attn.v_proj)
    gate_up = packed_weight(mlp.gate_proj, mlp.up_proj)
    assert qkv.shape == (SMALL["n_embd"] + 2 * n_kv_head * 8, SMALL["n_embd"]) and gate_up.shape == (2 * SMALL["n_mlp"], SMALL["n_embd"])
    assert torch.equal(qkv, torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
    assert packed_weight(attn.q_proj, attn.v_proj) is None  # not neighbours in memory
    x = torch.randint(0, SMALL["vocab_size"], (2, 30))
    with torch.no_grad():
        ref = hf(x).logits
        torch.testing.assert_close(ours(x), ref, atol=1e-5, rtol=1e-5)  # the packed path
        cache = ours.new_cache(2)
        pieces = [ours(x[:, :11], cache=cache)] + [ours(x[:, t:t + 1], cache=cache) for t in range(11, 30)]
        torch.testing.assert_close(torch.cat(pieces, dim=1), ref, atol=1e-5, rtol=1e-5)
    ours.loss(x, x).backward()  # with gradients the layers run one by one, and each weight gets its own gradient
    F.cross_entropy(hf(x).logits.flatten(0, 1), x.flatten()).backward()
    theirs = dict(hf.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad, atol=1e-5, rtol=1e-4, msg=name)
    apply_lora(ours, rank=2, alpha=4, targets=("k_proj",))
    with torch.no_grad():
        for i, block in enumerate(ours.model.layers):
            lora = block.self_attn.k_proj
            lora.lora_B.normal_()  # a non-zero update, which a packed product of the base weights would miss
            hf.model.layers[i].self_attn.k_proj.weight += lora.delta_weight()
        assert packed_weight(attn.q_proj, attn.k_proj, attn.v_proj) is None
        torch.testing.assert_close(ours(x), hf(x).logits, atol=1e-5, rtol=1e-5)


def test_the_decoding_step_gives_the_blocks_logits_and_steps_aside_for_what_it_cannot_run():
    from unittest import mock

    from helpers.llama import LlamaBlock

    hf, ours = _hf_pair(False, 10_000.0, 2, seed=11)
    ours.pack_weights()
    x = torch.randint(0, SMALL["vocab_size"], (2, 24))

    def decode(model, blocks_may_run=True):
        """Logits of x read as a 10-token prompt and then one token per step, with the cache."""
        cache = model.new_cache(2)
        out = [model(x[:, :10], cache=cache)]
        guard = mock.patch.object(LlamaBlock, "forward", side_effect=AssertionError("a block ran"))
        with torch.no_grad(), (mock.MagicMock() if blocks_may_run else guard):
            out += [model(x[:, t:t + 1], cache=cache) for t in range(10, x.shape[1])]
        return torch.cat(out, dim=1)

    with torch.no_grad():
        ref = hf(x).logits
        fast = decode(ours, blocks_may_run=False)  # the step runs without calling a block
        torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
        calls = []
        hook = ours.model.layers[1].register_forward_hook(lambda *a: calls.append(1))
        blocks = decode(ours)  # a hook must see its block run: the step steps aside
        hook.remove()
        assert len(calls) == 1 + 14
        torch.testing.assert_close(fast, blocks, atol=1e-6, rtol=1e-6)
        # new memory for a weight: the step reads the new weight, like the blocks
        o = ours.model.layers[0].self_attn.o_proj
        o.weight.data = o.weight.detach() * 1.5
        hf.model.layers[0].self_attn.o_proj.weight.mul_(1.5)
        torch.testing.assert_close(decode(ours, blocks_may_run=False), hf(x).logits, atol=1e-5, rtol=1e-5)
        # a new parameter object, then a whole new layer, both set as attributes: the step reads them too
        o.weight = torch.nn.Parameter(o.weight.detach() * 0.5)
        hf.model.layers[0].self_attn.o_proj.weight.mul_(0.5)
        torch.testing.assert_close(decode(ours, blocks_may_run=False), hf(x).logits, atol=1e-5, rtol=1e-5)
        down = torch.nn.Linear(SMALL["n_mlp"], SMALL["n_embd"], bias=False)
        ours.model.layers[1].mlp.down_proj = down
        hf.model.layers[1].mlp.down_proj.weight.copy_(down.weight)
        torch.testing.assert_close(decode(ours, blocks_may_run=False), hf(x).logits, atol=1e-5, rtol=1e-5)
    # an adapted layer with a non-zero update: the blocks run, and the update counts
    apply_lora(ours, rank=2, alpha=4, targets=("v_proj",))
    with torch.no_grad():
        for i, block in enumerate(ours.model.layers):
            block.self_attn.v_proj.lora_B.normal_()
            hf.model.layers[i].self_attn.v_proj.weight += block.self_attn.v_proj.delta_weight()
        assert ours._decode_plan() is None
        torch.testing.assert_close(decode(ours), hf(x).logits, atol=1e-5, rtol=1e-5)
    merge_lora(ours)
    quantize_model(ours, bits=8)
    assert ours._decode_plan() is None


def test_the_decoding_step_follows_a_batch_whose_rows_finish_at_different_times():
    import copy

    torch.manual_seed(5)
    blocks = Llama(LlamaConfig(**SMALL)).eval()
    fast = copy.deepcopy(blocks).pack_weights()  # packed: the decoding step runs; unpacked: the blocks
    assert fast._decode_plan() is not None and blocks._decode_plan() is None
    tok = Chars()
    params = SamplingParams(temperature=1.5, max_tokens=20, seed=4, stop_token_ids=[tok.alphabet.index(" ")])
    a = generate(fast, "the cat", params, tokenizer=tok, n=6)
    b = generate(blocks, "the cat", params, tokenizer=tok, n=6)
    # rows left the batch one by one, so the step's buffers were remade for each smaller batch
    assert len({len(c.token_ids) for c in a}) >= 3
    assert [c.token_ids for c in a] == [c.token_ids for c in b]
    torch.testing.assert_close(torch.tensor([x for c in a for x in c.logprobs]),
                               torch.tensor([x for c in b for x in c.logprobs]), atol=1e-5, rtol=1e-5)


def test_the_compiled_layer_loop_gives_the_plain_loops_logits_and_the_plain_loop_stands_in_when_it_cannot_compile(
        monkeypatch):
    from helpers import llama

    torch.manual_seed(6)
    model = Llama(LlamaConfig(**SMALL)).eval().pack_weights()
    assert model._decode_plan() is not None  # the decoding step runs
    x = torch.randint(0, SMALL["vocab_size"], (2, 20))

    def decode(batch):
        cache = model.new_cache(batch.shape[0])
        with torch.no_grad():
            out = [model(batch[:, :6], cache=cache)] + [model(batch[:, t:t + 1], cache=cache) for t in range(6, 20)]
        return torch.cat(out, dim=1)

    monkeypatch.setattr(llama, "_LAYER_LOOP", [])
    assert isinstance(llama._layer_loop(), torch.jit.ScriptFunction), "TorchScript compiled nothing"
    compiled = [decode(x[:1]), decode(x)]
    monkeypatch.setattr(llama, "_LAYER_LOOP", [])

    def refuse(fn):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(torch.jit, "script", refuse)
    assert llama._layer_loop() is llama._decode_layers
    plain = [decode(x[:1]), decode(x)]
    for a, b in zip(compiled, plain):  # the same operations in the same order: the same numbers
        assert torch.equal(a, b)
    with torch.no_grad():
        torch.testing.assert_close(plain[1], model(x), atol=1e-5, rtol=1e-5)
