"""SmolLM2 in our Llama model and tokenizer, against transformers reading the same GGUF file offline.

transformers dequantises the file with its own code, builds its own tokenizer from the file's metadata and
renders the chat template with its own Jinja set-up: an independent implementation of every step. Each
big model is loaded once per module.
"""

import math

import pytest
import torch

from helpers.pretrained import (
    chat_prompt,
    load_smollm2,
    smollm2_path,
    state_dict_from_gguf,
)
from helpers.sampling import SamplingParams, generate, next_token_distribution, stream

transformers = pytest.importorskip("transformers")

TEXTS = [
    "Grüße aus München, Bärbel! Öl, Übermaß, Straße.",
    "12345 + 678 = 13023; pi = 3.14159, eps = 1e-5, 1,000,000",
    "def f(x):\n    return x**2  # square\n\tpass\r\n",
    "Emoji: 🙂👍🏽 🇩🇪 family 👨‍👩‍👧",
    "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><repo_name>x<|im_end|>",
    "  leading and trailing   ",
    "",
    "I'm sure they'll've done it, it's OK'S",
    "naïve café résumé — “quotes” … ¿qué?",
    "日本語のテキスト、中文字符。한국어 Привет мир",
    "x²+y½ Ⅻ ٣٤ ０１ e\u0301",
    "tab\tand\u00a0nbsp\u2003em\u3000ideo\n\n\n   \n x",
    "a\x04b !\x04! \x1c\x1d",  # bytes the vocabulary lacks are dropped, as the reference does
    "<|im_start|",
    "https://example.com/path?q=1&x=2 $$$ ### @@@",
]
CHATS = [
    [{"role": "user", "content": "Name three fruits."}],
    [{"role": "system", "content": "Answer in German."}, {"role": "user", "content": "Wie spät ist es?"}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Tell me a joke about 42."}],
]


@pytest.fixture(scope="module")
def ours():
    torch.manual_seed(0)
    return load_smollm2(device="cpu")


@pytest.fixture(scope="module")
def hf_tokenizer():
    path = smollm2_path()
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="module")
def hf_model():
    path = smollm2_path()
    return transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                             dtype=torch.float32).eval()


def test_the_loaded_model_has_smollm2s_published_shape(ours):
    model, tok = ours
    c = model.config
    assert (c.n_layer, c.n_embd, c.n_mlp, c.n_head, c.n_kv_head, c.head_dim) == (30, 576, 1536, 9, 3, 64)
    assert (c.rope_base, c.block_size, c.vocab_size, c.tie_embeddings) == (100_000.0, 8192, 49152, True)
    assert math.isclose(c.norm_eps, 1e-5, rel_tol=1e-6)
    assert model.num_parameters() == 134_515_008
    assert tok.vocab_size == 49152 and tok.eot_token == "<|im_end|>"


def test_encode_gives_transformers_ids_and_decode_inverts_it(ours, hf_tokenizer):
    _, tok = ours
    for text in TEXTS:
        ids = tok.encode(text)
        assert ids == hf_tokenizer.encode(text, add_special_tokens=False), text
        assert tok.decode(ids) == hf_tokenizer.decode(ids), text
        if "\x04" not in text:
            assert tok.decode(ids) == text


def test_control_tokens_are_single_ids(ours, hf_tokenizer):
    _, tok = ours
    for name in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert tok.encode(name) == [hf_tokenizer.convert_tokens_to_ids(name)]
    assert tok.eot_id == hf_tokenizer.convert_tokens_to_ids("<|im_end|>") == hf_tokenizer.eos_token_id


def test_chat_prompt_equals_the_models_own_template(ours, hf_tokenizer):
    _, tok = ours
    for messages in CHATS:
        want = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert chat_prompt(messages) == want
        assert chat_prompt(messages, tokenizer=tok) == want
    assert "You are a helpful AI assistant named SmolLM" in chat_prompt(CHATS[0])  # the default system prompt


def _logprobs(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    """log P(ids[t+1] | ids[:t+1]) at every position, from (1, T, V) logits."""
    return torch.log_softmax(logits[0, :-1].double(), -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


@torch.no_grad()
def test_log_probabilities_at_every_position_match_transformers(ours, hf_model):
    model, tok = ours
    text = chat_prompt(CHATS[0]) + "1. Bananas\n2. Oranges\n3. Grapes<|im_end|>"
    ids = tok.encode(text)
    x = torch.tensor([ids])
    mine, theirs = model(x), hf_model(x).logits
    assert mine.shape == theirs.shape == (1, len(ids), 49152)
    torch.testing.assert_close(_logprobs(mine, ids), _logprobs(theirs, ids), atol=2e-4, rtol=0)
    torch.testing.assert_close(mine, theirs, atol=2e-3, rtol=0)
    # the same positions read through the KV cache, in two pieces
    cache = model.new_cache(1)
    cached = torch.cat([model(x[:, :30], cache=cache), model(x[:, 30:], cache=cache)], dim=1)
    torch.testing.assert_close(cached, theirs, atol=2e-3, rtol=0)


def test_the_real_model_knows_a_fact(ours):
    model, tok = ours
    probs, _ = next_token_distribution(model, "The capital of France is", tokenizer=tok)
    assert tok.decode([int(probs.argmax())]) == " Paris"
    assert 0.5 < probs[tok.encode(" Paris")[0]] < 1.0


@torch.no_grad()
def test_greedy_text_equals_transformers_generate(ours, hf_model):
    model, tok = ours
    prompt = chat_prompt(CHATS[0])
    out = generate(model, prompt, SamplingParams(temperature=0.0, max_tokens=24), tokenizer=tok)
    ids = torch.tensor([tok.encode(prompt)])
    ref = hf_model.generate(ids, max_new_tokens=24, do_sample=False, eos_token_id=tok.eot_id,
                            pad_token_id=tok.eot_id)[0, ids.shape[1]:].tolist()
    assert out.token_ids == ref
    assert out.finish_reason == "stop" and out.token_ids[-1] == tok.eot_id  # the answer ends at <|im_end|>
    assert out.text == tok.decode(ref[:-1]) and "\n2." in out.text
    assert "".join(stream(model, prompt, SamplingParams(temperature=0.0, max_tokens=24), tokenizer=tok)) == out.text


@torch.no_grad()
def test_skipping_the_qk_unpermutation_is_caught(ours, hf_model):
    """llama.cpp stores query/key rows in the order its RoPE wants; loading them as they are still gives a
    model that talks, but one whose log-probabilities no longer match and whose text is less likely."""
    model, tok = ours
    from helpers.gguf_file import GGUFFile
    from helpers.llama import Llama

    with GGUFFile(smollm2_path()) as gguf:
        state = state_dict_from_gguf(gguf, model.config, unpermute=False)
    wrong = Llama(model.config).eval()
    wrong.load_state_dict(state)
    ids = tok.encode(chat_prompt(CHATS[1]) + "Es ist drei Uhr.<|im_end|>")
    x = torch.tensor([ids])
    good, bad = _logprobs(model(x), ids), _logprobs(wrong(x), ids)
    ref = _logprobs(hf_model(x).logits, ids)
    assert (bad - ref).abs().max() > 0.5  # far outside the tolerance of the test above
    assert bad.mean() < good.mean()
    torch.testing.assert_close(good, ref, atol=2e-4, rtol=0)


def test_a_prompt_longer_than_the_context_is_refused_by_the_gpts_rule(ours):
    model, tok = ours
    with pytest.raises(ValueError, match="context window"):
        generate(model, [1] * model.config.block_size, SamplingParams(max_tokens=1), tokenizer=tok)
    with pytest.raises(ValueError, match="block_size=8192"):
        model(torch.zeros(1, 8193, dtype=torch.long))
