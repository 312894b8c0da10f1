"""helpers.sampling.generate / stream: KV cache, stops, streaming, UTF-8, n samples, window, HF greedy."""

import math

import pytest
import torch

from helpers.model import GPT, GPTConfig, KVCache
from helpers.sampling import SamplingParams, generate, process_logits, stream

pytestmark = pytest.mark.usefixtures("one_thread")
TINY_GPT = GPTConfig(block_size=32, vocab_size=300, n_layer=2, n_head=2, n_embd=32)  # for tiny_gpt


class StubTokenizer:
    """Byte-level: ids 0..255 are the bytes, then the given multi-byte pieces, then end-of-text."""

    def __init__(self, pieces=()):
        self.pieces = [bytes([i]) for i in range(256)] + [p.encode() for p in pieces]
        self.eot_id = len(self.pieces)
        self.vocab_size = self.eot_id + 1

    def id(self, piece: str) -> int:
        return self.pieces.index(piece.encode())

    def encode(self, text: str) -> list[int]:
        data, ids = text.encode(), []
        while data:  # longest piece first
            best = max((i for i, p in enumerate(self.pieces) if data.startswith(p)), key=lambda i: len(self.pieces[i]))
            ids.append(best)
            data = data[len(self.pieces[best]) :]
        return ids

    def decode_bytes(self, ids) -> bytes:
        return b"".join(b"<|endoftext|>" if i == self.eot_id else self.pieces[i] for i in ids)


class ScriptedLM(torch.nn.Module):
    """Predicts a fixed script of tokens whatever the context (logit 10 for the scripted token,
    ``runner_up`` gets 5), with the GPT's interface and a real KV cache object."""

    def __init__(self, script, vocab_size, prompt_len, block_size=64, runner_up=None):
        super().__init__()
        self.config = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=1, n_head=1, n_embd=2)
        self.script, self.prompt_len, self.runner_up = list(script), prompt_len, runner_up
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    @property
    def device(self):
        return self.anchor.device

    def new_cache(self, batch_size):
        return KVCache(self.config, batch_size, self.device, torch.float32)

    def forward(self, idx, cache):
        B, T = idx.shape
        self.calls.append(T)
        start = cache.pos
        cache.pos += T
        logits = torch.zeros(B, T, self.config.vocab_size)
        if self.runner_up is not None:
            logits[:, :, self.runner_up] = 5.0
        for t in range(T):
            k = start + t + 1 - self.prompt_len  # index of the token this position predicts
            if 0 <= k < len(self.script):
                logits[:, t, self.script[k]] = 10.0
        return logits


def scripted(pieces, script_pieces, prompt="P", **kw):
    tok = StubTokenizer(pieces)
    script = [tok.eot_id if s is None else tok.id(s) for s in script_pieces]
    return ScriptedLM(script, tok.vocab_size, len(tok.encode(prompt)), **kw), tok


GREEDY = SamplingParams(temperature=0.0, max_tokens=20)


# -- stops and text --------------------------------------------------------------------------------

def test_stop_string_split_across_tokens():
    model, tok = scripted(["Hel", "lo w", "orld"], ["Hel", "lo w", "orld"])
    c = generate(model, "P", GREEDY.replace(stop=["o w"]), tok)
    assert (c.text, c.finish_reason) == ("Hell", "stop")
    assert c.token_ids == [tok.id("Hel"), tok.id("lo w")]  # keeps the token that completed the match
    c = generate(model, "P", GREEDY.replace(stop=["o w"], include_stop_str_in_output=True), tok)
    assert c.text == "Hello w"


def test_stop_string_inside_one_token_and_earliest_match():
    model, tok = scripted(["ending", " more"], ["ending", " more"])
    assert generate(model, "P", GREEDY.replace(stop=["end"]), tok).text == ""
    assert generate(model, "P", GREEDY.replace(stop=["din"]), tok).text == "en"
    assert generate(model, "P", GREEDY.replace(stop=["mo", "ng"]), tok).text == "endi"
    c = generate(model, "P", GREEDY.replace(max_tokens=5), tok)
    assert (c.text, c.finish_reason) == ("ending more\x00\x00\x00", "length")  # script ran out: token 0 follows


def test_end_of_text_and_stop_token_ids_end_with_stop():
    model, tok = scripted(["a", "b"], ["a", "b", None, "a"])
    c = generate(model, "P", GREEDY, tok)
    assert (c.text, c.finish_reason, c.token_ids) == ("ab", "stop", [tok.id("a"), tok.id("b"), tok.eot_id])
    c = generate(model, "P", GREEDY.replace(stop_token_ids=[tok.id("b")]), tok)
    assert (c.text, c.finish_reason) == ("a", "stop")


def test_min_tokens_masks_end_of_text():
    tok = StubTokenizer()
    model = ScriptedLM([tok.eot_id] * 10, tok.vocab_size, 1, runner_up=ord("x"))
    c = generate(model, "P", GREEDY.replace(min_tokens=3), tok)
    assert (c.text, c.finish_reason) == ("xxx", "stop")
    assert c.token_ids[-1] == tok.eot_id


def test_stream_never_emits_part_of_a_stop_string():
    model, tok = scripted(["ab", "c", "X", "Y", "Z"], ["ab", "c", "X", "Y", "Z"])
    pieces = list(stream(model, "P", GREEDY.replace(stop=["cXY"]), tok))
    assert "".join(pieces) == "ab" and all(p and "c" not in p for p in pieces)
    # a false start is released once it can no longer be a stop string
    pieces = list(stream(model, "P", GREEDY.replace(stop=["cXQ"], max_tokens=5), tok))
    assert "".join(pieces) == "abcXYZ"
    assert pieces[:2] == ["ab", "cXY"]  # "c", then "cX" were held back until "Y" decided it


def test_stream_and_generate_agree_and_utf8_is_never_split():
    # "ü" = c3 bc and "€" = e2 82 ac, sent one byte per token
    tok = StubTokenizer()
    model = ScriptedLM([0xC3, 0xBC, ord(" "), 0xE2, 0x82, 0xAC, ord("!")], tok.vocab_size, 1)
    pieces = list(stream(model, "P", GREEDY.replace(max_tokens=7), tok))
    assert "".join(pieces) == "ü €!" == generate(model, "P", GREEDY.replace(max_tokens=7), tok).text
    assert all("\ufffd" not in p for p in pieces)
    assert pieces == ["ü", " ", "€", "!"]
    # a character cut off by max_tokens becomes U+FFFD at the end, as a decoder would show it
    assert generate(model, "P", GREEDY.replace(max_tokens=5), tok).text == "ü \ufffd"


# -- the KV cache, the context window, n samples ---------------------------------------------------

def test_each_new_token_costs_one_position():
    model, tok = scripted(["a"], ["a"] * 30, prompt="PPPP")
    c = generate(model, "PPPP", GREEDY.replace(max_tokens=10), tok)
    assert len(c.token_ids) == 10 and model.calls == [4] + [1] * 9  # the last token is never fed back


def test_context_window_ends_with_length_and_long_prompt_raises(tiny_gpt):
    model = tiny_gpt(block_size=16).eval()
    c = generate(model, list(range(10)), SamplingParams(max_tokens=50, seed=0))
    assert (len(c.token_ids), c.finish_reason) == (6, "length")  # prompt + answer fill the 16 positions
    assert len(generate(model, list(range(15)), SamplingParams(max_tokens=50, seed=0)).token_ids) == 1
    with pytest.raises(ValueError, match="prompt has 16 tokens but the context window"):
        generate(model, list(range(16)), SamplingParams())
    with pytest.raises(ValueError, match="non-empty list of token ids"):
        generate(model, [], SamplingParams())
    with pytest.raises(ValueError, match="token ids in"):
        generate(model, [1, 300], SamplingParams())


def test_bad_calls_raise_clear_errors(tiny_gpt):
    model = tiny_gpt().eval()
    with pytest.raises(ValueError, match="needs a tokenizer"):
        generate(model, "hello", SamplingParams())
    with pytest.raises(ValueError, match="stop strings are matched on text"):
        generate(model, [1], SamplingParams(stop=["x"]))
    with pytest.raises(ValueError, match="logit_bias token ids must be in"):
        generate(model, [1], SamplingParams(logit_bias={300: 1.0}))
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        generate(model, [1], SamplingParams(), n=0)
    with pytest.raises(ValueError, match="every token was masked"):
        generate(model, [1], SamplingParams(temperature=0.0, stop_token_ids=list(range(300)), min_tokens=1))
    with pytest.raises(ValueError, match="every token was masked"):
        generate(model, [1], SamplingParams(top_k=5, stop_token_ids=list(range(300)), min_tokens=1), n=2)


@pytest.mark.parametrize("device", ["tpu", "", 5, 1.5, ["cpu"]])
def test_bad_device_names_the_parameter(tiny_gpt, device):
    model = tiny_gpt().eval()
    with pytest.raises(ValueError, match=r"device must be None or a device name such as 'cpu'.*got") as err:
        generate(model, [1], SamplingParams(max_tokens=1), device=device)
    assert repr(device) in str(err.value)
    assert generate(model, [1], SamplingParams(max_tokens=1), device="cpu").token_ids  # the model's own device is fine


@pytest.mark.parametrize("prompt", [None, 5, 2.5, {1: 2}])
def test_prompt_that_is_not_text_or_ids_names_the_parameter(tiny_gpt, prompt):
    with pytest.raises(ValueError, match=r"prompt must be a str or a non-empty list of token ids in \[0, 300\), got"):
        generate(tiny_gpt().eval(), prompt, SamplingParams(max_tokens=1))


def test_n_samples_stop_on_their_own_and_logprobs_are_the_processed_distribution(tiny_gpt):
    tok = StubTokenizer(["ab", "cd", "e"])
    model = tiny_gpt(1, block_size=48, vocab_size=tok.vocab_size).eval()
    with torch.no_grad():  # make end-of-text likely, so rows end at different times
        model.lm_head.weight[tok.eot_id] *= 0
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias.add_(0.3 * model.lm_head.weight[ord("e")])
        model.lm_head.weight[tok.eot_id] += model.lm_head.weight[ord("e")] * 1.2
    params = SamplingParams(temperature=1.3, top_k=50, top_p=0.95, repetition_penalty=1.2, frequency_penalty=0.3,
                            presence_penalty=0.2, max_tokens=25, seed=3)
    prompt = tok.encode("ab cd")
    outs = generate(model, prompt, params, tok, n=8)
    assert isinstance(outs, list) and len(outs) == 8
    lengths = {len(c.token_ids) for c in outs}
    reasons = {c.finish_reason for c in outs}
    assert len(lengths) > 1 and reasons == {"stop", "length"}
    for c in outs:
        assert (c.finish_reason == "stop") == (c.token_ids[-1] == tok.eot_id)
        assert tok.eot_id not in c.token_ids[:-1]
        assert len(c.logprobs) == len(c.token_ids)
        # replay without the cache: each logprob is the chosen token's under the processed distribution
        for step, (t, logprob) in enumerate(zip(c.token_ids, c.logprobs)):
            ids = torch.tensor([prompt + c.token_ids[:step]])
            with torch.no_grad():
                logits = model(ids)[:, -1]
            processed = process_logits(logits, params, torch.tensor([prompt]), torch.tensor([c.token_ids[:step]]),
                                       eos_token_id=tok.eot_id)
            assert processed.log_softmax(-1)[0, t].item() == pytest.approx(logprob, abs=1e-4)


def test_seed_reproducibility_and_training_mode_restored(tiny_gpt):
    model = tiny_gpt(2).eval()
    model.train()
    params = SamplingParams(temperature=1.5, max_tokens=20, seed=7)
    a = generate(model, [1, 2, 3], params, n=3)
    b = generate(model, [1, 2, 3], params, n=3)
    c = generate(model, [1, 2, 3], params.replace(seed=8), n=3)
    assert [x.token_ids for x in a] == [x.token_ids for x in b] != [x.token_ids for x in c]
    assert model.training
    greedy = generate(model, [1, 2, 3], SamplingParams(temperature=0.0, max_tokens=12), n=3)
    assert greedy[0].token_ids == greedy[1].token_ids == greedy[2].token_ids
    assert greedy[0].logprobs == [0.0] * 12


def test_empty_text_prompt_starts_a_new_document(tiny_gpt):
    tok = StubTokenizer()
    model = tiny_gpt(3, vocab_size=tok.vocab_size).eval()
    c = generate(model, "", SamplingParams(max_tokens=3, seed=0), tok)
    assert c.prompt_ids == [tok.eot_id]


# -- Hugging Face greedy generate() ----------------------------------------------------------------

@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_matches_hugging_face_generate(penalty):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hc = transformers.GPT2Config(n_positions=64, vocab_size=120, n_layer=2, n_head=2, n_embd=32, resid_pdrop=0.0,
                                 embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(hc).eval()
    with torch.no_grad():
        for p in hf.parameters():  # larger weights: a less flat distribution, fewer near-ties
            p.mul_(4.0)
    ours = GPT.from_hf(hf).eval()
    prompt = [5, 17, 33, 2, 90, 41]
    expected = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=30, min_new_tokens=30,
                           repetition_penalty=penalty, eos_token_id=None, pad_token_id=0)[0, len(prompt) :]
    got = generate(ours, prompt, SamplingParams(temperature=0.0, max_tokens=30, repetition_penalty=penalty))
    assert got.token_ids == expected.tolist()


def test_top_k_ties_at_the_cut_are_kept_during_generation():
    tok = StubTokenizer()
    flat = ScriptedLM([], tok.vocab_size, 1)  # every logit 0: all tokens tie with the k-th
    outs = generate(flat, "P", SamplingParams(top_k=2, max_tokens=3, seed=0), tok, n=16)
    assert len({t for c in outs for t in c.token_ids}) > 2
    peaked, tok = scripted(["a", "b"], ["a"] * 5)  # one clear favourite: no tie, k = 1 is greedy
    assert generate(peaked, "P", SamplingParams(top_k=1, max_tokens=5, seed=0), tok).text == "aaaaa"


# -- the errors the docstrings promise, each naming the parameter and the value -------------------------

def test_stream_without_a_tokenizer_is_refused(tiny_gpt):
    with pytest.raises(ValueError, match=r"^stream yields text and needs a tokenizer$"):
        next(stream(tiny_gpt().eval(), [1], SamplingParams(max_tokens=1)))


def test_a_device_other_than_the_models_is_refused(tiny_gpt):
    model = tiny_gpt().eval()
    with pytest.raises(ValueError, match=r"^device=meta but the model is on cpu; move it first: model.to\('meta'\)$"):
        generate(model, [1], SamplingParams(max_tokens=1), device="meta")
    with pytest.raises(ValueError, match=r"^device=meta but the model is on cpu"):
        next(stream(model, [1], SamplingParams(max_tokens=1), StubTokenizer(), device=torch.device("meta")))


def test_params_that_are_not_sampling_params_are_refused(tiny_gpt):
    with pytest.raises(ValueError, match=r"^params must be a SamplingParams, got dict$"):
        generate(tiny_gpt().eval(), [1], {"temperature": 0.5})


def test_long_prompt_message_names_the_length_the_window_and_a_fix(tiny_gpt):
    with pytest.raises(ValueError, match=r"^the prompt has 20 tokens but the context window \(block_size\) is 16 "
                                         r"and must hold the prompt and at least one new token: .*ids\[-8:\]$"):
        generate(tiny_gpt(block_size=16).eval(), list(range(20)), SamplingParams())


def test_a_text_prompt_without_a_tokenizer_says_how_to_fix_it(tiny_gpt):
    with pytest.raises(ValueError, match=r"^a text prompt needs a tokenizer: pass tokenizer=\.\.\., or give the prompt "
                                         r"as token ids$"):
        generate(tiny_gpt().eval(), "hello", SamplingParams())


def test_stop_token_outside_the_vocabulary_is_named(tiny_gpt):
    with pytest.raises(ValueError, match=r"^stop_token_ids must be in \[0, vocab_size=300\), got 300$"):
        generate(tiny_gpt().eval(), [1], SamplingParams(stop_token_ids=[5, 300]))


# -- paths the tests above do not reach ------------------------------------------------------------

def test_a_tie_at_the_top_k_cut_is_redone_with_the_penalties_and_the_seed():
    tok = StubTokenizer()
    model = ScriptedLM([], tok.vocab_size, 1, runner_up=ord("x"))  # "x" 5, every other logit 0: a tie at the cut
    params = SamplingParams(top_k=3, repetition_penalty=3.0, max_tokens=6, seed=1)
    prompt = tok.encode("x")
    a = generate(model, prompt, params, tok, n=3)
    assert [c.token_ids for c in a] == [c.token_ids for c in generate(model, prompt, params, tok, n=3)]
    logits = torch.zeros(1, tok.vocab_size)
    logits[0, ord("x")] = 5.0
    for c in a:  # each log-prob is the chosen token's under the processed distribution (penalties included)
        for step, (t, logprob) in enumerate(zip(c.token_ids, c.logprobs)):
            processed = process_logits(logits, params, torch.tensor([prompt]), torch.tensor([c.token_ids[:step]]),
                                       eos_token_id=tok.eot_id)
            assert processed.log_softmax(-1)[0, t].item() == pytest.approx(logprob, abs=1e-5)


def test_logit_bias_forces_a_token_and_a_bad_one_is_refused_before_the_model_runs(tiny_gpt):
    model = tiny_gpt().eval()
    c = generate(model, [1, 2], SamplingParams(logit_bias={7: 100.0}, max_tokens=5, seed=0))
    assert c.token_ids == [7] * 5
    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        with pytest.raises(ValueError, match=r"^logit_bias token ids must be in \[0, vocab_size=300\), got 300$"):
            generate(model, [1], SamplingParams(logit_bias={3: 1.0, 300: 1.0}))
    finally:
        handle.remove()
    assert calls == []


def test_default_params_tensor_prompts_and_no_text_without_a_tokenizer(tiny_gpt):
    model = tiny_gpt().eval()
    c = generate(model, [1, 2, 3])  # SamplingParams() by default
    assert (len(c.token_ids), c.finish_reason) == (min(SamplingParams().max_tokens, 32 - 3), "length")
    assert c.text is None
    greedy = SamplingParams(temperature=0.0, max_tokens=6)
    assert generate(model, torch.tensor([[1, 2, 3]]), greedy).token_ids == generate(model, [1, 2, 3], greedy).token_ids
    with pytest.raises(ValueError) as err:
        generate(model, 2.5, greedy)
    assert str(err.value) == "prompt must be a str or a non-empty list of token ids in [0, 300), got float: 2.5"
    with pytest.raises(ValueError) as err:
        generate(model, [1], SamplingParams(stop=["x"]))
    assert str(err.value) == "stop strings are matched on text and need a tokenizer (or use stop_token_ids)"


def test_stream_gives_the_sampled_text_of_generate(tiny_gpt):
    tok = StubTokenizer()
    model = tiny_gpt(4, vocab_size=tok.vocab_size).eval()
    for seed in range(3):
        params = SamplingParams(temperature=1.0, max_tokens=12, seed=seed)
        assert "".join(stream(model, [1, 2], params, tok)) == generate(model, [1, 2], params, tok).text


def test_stream_releases_a_possible_stop_start_when_generation_ends():
    model, tok = scripted(["ab", "c"], ["ab", "c"])
    params = GREEDY.replace(stop=["cX"], max_tokens=2)
    assert generate(model, "P", params, tok).text == "abc"
    assert list(stream(model, "P", params, tok)) == ["ab", "c"]  # "c" could start "cX", but nothing follows


def test_a_stop_string_twice_in_one_token_cuts_at_the_first():
    model, tok = scripted(["a\nb\nc"], ["a\nb\nc"])
    assert generate(model, "P", GREEDY.replace(stop=["\n"]), tok).text == "a"
    assert generate(model, "P", GREEDY.replace(stop=["\n"], include_stop_str_in_output=True), tok).text == "a\n"


def test_a_greedy_step_takes_the_first_maximum_with_log_prob_zero_or_nan_when_all_is_masked():
    from helpers.sampling.filters import sample_token
    from helpers.sampling.generation import _step

    logits = torch.tensor([[0.5, 3.0, 3.0, -1.0], [2.0, 1.0, 0.0, 2.0], [-math.inf] * 4])
    prompt, out = torch.tensor([[0]]), torch.empty(3, 0, dtype=torch.long)
    token, tokens, logprob = _step(logits, SamplingParams(temperature=0.0), prompt, out, 0, [], None)
    assert tokens == [1, 0, 0] and token.tolist() == tokens  # the lowest id among tied maxima
    assert logprob[:2].tolist() == [0.0, 0.0] and math.isnan(logprob[2])
    # what the general draw gives for one candidate per row: the same
    choice, drawn = sample_token(logits.max(dim=-1, keepdim=True).values)
    assert choice.tolist() == [0, 0, 0] and torch.equal(drawn.isnan(), logprob.isnan())
