"""Llama-family parameter counts: the closed form against real models, against transformers' own
LlamaForCausalLM built on the meta device from published configurations, and against the SmolLM2 file."""

import random

import pytest
import torch

from helpers import architecture as A
from helpers.gguf_file import GGUFFile
from helpers.llama import Llama, LlamaConfig, parameter_count
from helpers.pretrained import config_from_gguf, smollm2_path

transformers = pytest.importorskip("transformers")


def _random_configs(n: int, seed: int = 0):
    r = random.Random(seed)
    for _ in range(n):
        n_kv = r.randint(1, 3)
        n_head = n_kv * r.randint(1, 3)
        head_dim = 2 * r.randint(1, 6)
        yield LlamaConfig(block_size=r.randint(1, 40), vocab_size=r.randint(2, 300), n_layer=r.randint(1, 3),
                          n_embd=r.randint(1, 40), n_mlp=r.randint(1, 50), n_head=n_head, n_kv_head=n_kv,
                          head_dim=head_dim, tie_embeddings=r.random() < 0.5)


def test_closed_form_matches_real_llama_models_over_random_configs():
    torch.manual_seed(0)
    seen = set()
    for cfg in _random_configs(40):
        model = Llama(cfg)
        parts = A.llama_component_counts(cfg)
        assert parts == model.parameter_breakdown(), cfg
        assert A.llama_parameter_count(cfg) == model.num_parameters() == parameter_count(cfg), cfg
        seen.add((cfg.tie_embeddings, cfg.n_head == cfg.n_kv_head))
    assert seen == {(True, True), (True, False), (False, True), (False, False)}  # tied/untied, GQA/plain


def _hf_meta(cfg: LlamaConfig):
    """transformers' own LlamaForCausalLM with the same sizes, on the meta device (no weights)."""
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.n_embd, intermediate_size=cfg.n_mlp,
        num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_kv_head,
        head_dim=cfg.head_dim, max_position_embeddings=cfg.block_size, rope_theta=cfg.rope_base,
        rms_norm_eps=cfg.norm_eps, tie_word_embeddings=cfg.tie_embeddings)
    with torch.device("meta"):
        return transformers.LlamaForCausalLM(hf_cfg)


@pytest.mark.parametrize("name", list(A.LLAMA_FAMILY_CONFIGS))
def test_published_configs_closed_form_equals_transformers_on_meta(name):
    cfg = A.LLAMA_FAMILY_CONFIGS[name]
    hf = _hf_meta(cfg)
    assert all(p.is_meta for p in hf.parameters())
    theirs = sum(p.numel() for p in hf.parameters())  # parameters() lists a tied matrix once
    ours = A.llama_meta_model(cfg)
    assert ours.device.type == "meta"
    assert A.llama_parameter_count(cfg) == theirs == ours.num_parameters()
    assert [tuple(p.shape) for p in ours.state_dict().values()] == \
        [tuple(hf.state_dict()[k].shape) for k in ours.state_dict()]  # the same tensors, one by one
    nominal = A.LLAMA_FAMILY_NOMINAL[name]
    scale = 1e9 if nominal.endswith("B") else 1e6
    assert abs(theirs / scale - float(nominal[:-1])) / float(nominal[:-1]) < 0.05  # the label rounds it
    assert A.LLAMA_FAMILY_SOURCES[name].endswith("/config.json")


def test_gqa_and_tied_embeddings_are_what_make_the_differences():
    mistral, llama2 = A.LLAMA_FAMILY_CONFIGS["Mistral-7B"], A.LLAMA_FAMILY_CONFIGS["Llama-2-7B"]
    a, b = A.llama_component_counts(mistral), A.llama_component_counts(llama2)
    C = 4096
    # Mistral: 8 KV heads of 128 instead of 32: k and v shrink from C x C to C x C/4 in each of 32 blocks
    assert b["attention"]["weights"] - a["attention"]["weights"] == 32 * 2 * (C * C - C * C // 4)
    smol = A.LLAMA_FAMILY_CONFIGS["SmolLM2-135M"]
    untied = LlamaConfig(**{**smol.to_dict(), "tie_embeddings": False})
    assert A.llama_parameter_count(untied) - A.llama_parameter_count(smol) == 49_152 * 576


def test_smollm2_entry_is_the_shipped_files_config():
    with GGUFFile(smollm2_path()) as gguf:
        from_file = config_from_gguf(gguf)
    ours = A.LLAMA_FAMILY_CONFIGS["SmolLM2-135M"]
    for field in ("vocab_size", "block_size", "n_layer", "n_embd", "n_mlp", "n_head", "n_kv_head", "head_dim",
                  "rope_base", "norm_eps", "tie_embeddings"):
        assert getattr(from_file, field) == getattr(ours, field), field
    assert A.llama_parameter_count(from_file) == 134_515_008  # the published size (134.5M)


def test_rope_tables_made_while_generating_still_train():
    """Generation runs in inference mode; a training step afterwards must still work (regression)."""
    torch.manual_seed(0)
    model = Llama(LlamaConfig(block_size=16, vocab_size=20, n_layer=1, n_embd=8, n_mlp=8, n_head=2, n_kv_head=1))
    x = torch.randint(0, 20, (2, 8))
    with torch.inference_mode():
        model(x)
    model.loss(x, x).backward()
    assert model.model.embed_tokens.weight.grad is not None


def test_chat_examples_mask_everything_but_the_answers():
    from helpers.pretrained import _smollm2_tokenizer, chat_examples, chat_prompt

    tok = _smollm2_tokenizer()
    pairs = [("Hi?", "Hello."), ("What is two plus two, exactly?", "Four.")]
    idx, targets = chat_examples(pairs, tok, system="Be brief.")
    assert idx.shape == targets.shape and idx.shape[0] == 2
    for i, (q, a) in enumerate(pairs):
        prompt = chat_prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}])
        text = tok.decode(idx[i].tolist())
        assert text.startswith(prompt + a + tok.eot_token)  # then only padding with the end token
        taught = targets[i][targets[i] != -100].tolist()
        assert tok.decode(taught) == a + tok.eot_token  # exactly the answer and its end, nothing else
        n = len(tok.encode(prompt))
        assert torch.equal(targets[i, n - 1:n - 1 + len(taught)], idx[i, n:n + len(taught)])  # shifted by one
    with pytest.raises(ValueError, match="pairs"):
        chat_examples([("only a question",)], tok)
