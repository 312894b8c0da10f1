"""Every step of helpers.sampling against its Hugging Face counterpart (and the OpenAI penalty formula)."""

import itertools

import pytest
import torch

from helpers.sampling import (
    LIBRARY_DEFAULTS,
    SamplingParams,
    apply_frequency_presence_penalties,
    apply_min_p,
    apply_min_tokens,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    process_logits,
)

lp = pytest.importorskip("transformers.generation.logits_process")

SHAPES = [(1, 7), (4, 50), (3, 1000)]
SCALES = [0.5, 2.0, 8.0]


pytestmark = pytest.mark.usefixtures("one_thread")


def random_logits(seed: int, shape, scale: float, ties: bool = False) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale
    return x.round() if ties else x  # rounding makes many exact ties


def cases(ties: bool = False):
    for seed, (shape, scale) in enumerate(itertools.product(SHAPES, SCALES)):
        yield random_logits(seed, shape, scale, ties)


def same_mask(a: torch.Tensor, b: torch.Tensor) -> None:
    assert torch.equal(torch.isinf(a), torch.isinf(b))


def no_input():
    return torch.zeros(1, 0, dtype=torch.long)


@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 1.0, 1.5, 3.0])
def test_temperature(t):
    for x in cases():
        torch.testing.assert_close(apply_temperature(x, t), lp.TemperatureLogitsWarper(t)(no_input(), x))


@pytest.mark.parametrize("k", [1, 2, 5, 40, 999, 5000])
def test_top_k_including_ties(k):
    for ties in (False, True):
        for x in cases(ties):
            ours, theirs = apply_top_k(x, k), lp.TopKLogitsWarper(k)(no_input(), x)
            same_mask(ours, theirs)
            torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("p", [1e-6, 0.1, 0.5, 0.7, 0.9, 0.95, 0.999])
def test_top_p(p):
    for x in cases():
        for t in (0.5, 1.0, 2.0):
            y = x / t
            same_mask(apply_top_p(y, p), lp.TopPLogitsWarper(p)(no_input(), y))


@pytest.mark.parametrize("m", [0.0, 0.01, 0.05, 0.1, 0.3, 0.8, 1.0])
def test_min_p_including_ties(m):
    for ties in (False, True):
        for x in cases(ties):
            same_mask(apply_min_p(x, m), lp.MinPLogitsWarper(m)(no_input(), x))


@pytest.mark.parametrize("theta", [0.5, 0.9, 1.0, 1.2, 2.0, 5.0])
def test_repetition_penalty(theta):
    for i, x in enumerate(cases()):
        B, V = x.shape
        seen = torch.randint(0, V, (B, 3 + 5 * i), generator=torch.Generator().manual_seed(i))  # many repeats
        torch.testing.assert_close(apply_repetition_penalty(x, seen, theta),
                                   lp.RepetitionPenaltyLogitsProcessor(float(theta))(seen, x))


@pytest.mark.parametrize("min_new,generated", [(0, 0), (3, 0), (3, 2), (3, 3), (5, 9)])
def test_min_tokens(min_new, generated):
    x = random_logits(0, (2, 20), 2.0)
    prompt_len = 4
    input_ids = torch.randint(0, 20, (2, prompt_len + generated))
    theirs = lp.MinNewTokensLengthLogitsProcessor(prompt_len, min_new, [3, 11])(input_ids, x)
    torch.testing.assert_close(apply_min_tokens(x, generated, min_new, [3, 11]), theirs)


def openai_penalties(logits, output_ids, alpha_f, alpha_p):
    """The formula from OpenAI's documentation, one token at a time."""
    out = logits.clone()
    for b in range(logits.shape[0]):
        counts = {}
        for t in output_ids[b].tolist():
            counts[t] = counts.get(t, 0) + 1
        for t, c in counts.items():
            out[b, t] -= c * alpha_f + (1.0 if c > 0 else 0.0) * alpha_p
    return out


@pytest.mark.parametrize("alpha_f,alpha_p", [(0.0, 0.0), (0.5, 1.0), (-1.0, 0.3), (2.0, -2.0), (0.1, 0.0)])
def test_frequency_presence_against_openai_formula(alpha_f, alpha_p):
    for i, x in enumerate(cases()):
        B, V = x.shape
        out_ids = torch.randint(0, V, (B, 1 + 4 * i), generator=torch.Generator().manual_seed(i))
        torch.testing.assert_close(apply_frequency_presence_penalties(x, out_ids, alpha_f, alpha_p),
                                   openai_penalties(x, out_ids, alpha_f, alpha_p))


def hf_chain(x, params, prompt, output, eos):
    """Hugging Face's processors in generate()'s order, plus the OpenAI penalties where HF has none."""
    seen = torch.cat([prompt, output], 1)
    x = x.clone()
    for tid, b in params.logit_bias.items():
        x[:, tid] += b
    if params.repetition_penalty != 1.0:
        x = lp.RepetitionPenaltyLogitsProcessor(params.repetition_penalty)(seen, x)
    x = openai_penalties(x, output, params.frequency_penalty, params.presence_penalty)
    x = lp.MinNewTokensLengthLogitsProcessor(prompt.shape[1], params.min_tokens, [eos])(seen, x)
    x = lp.TemperatureLogitsWarper(params.temperature)(seen, x)
    if params.top_k:
        x = lp.TopKLogitsWarper(params.top_k)(seen, x)
    if params.top_p < 1.0:
        x = lp.TopPLogitsWarper(params.top_p)(seen, x)
    if params.min_p > 0.0:
        x = lp.MinPLogitsWarper(params.min_p)(seen, x)
    return x


def test_whole_chain_matches_hugging_face_order():
    grid = itertools.product([0.3, 1.0, 1.7], [0, 1, 5, 40], [0.5, 0.9, 1.0], [0.0, 0.1], [1.0, 1.3])
    checked = 0
    for i, (t, k, p, m, theta) in enumerate(grid):
        g = torch.Generator().manual_seed(i)
        B, V = 3, 60
        x = torch.randn(B, V, generator=g) * (1 + i % 4)
        prompt = torch.randint(0, V, (B, 5), generator=g)
        output = torch.randint(0, V, (B, i % 6), generator=g)
        params = SamplingParams(temperature=t, top_k=k, top_p=p, min_p=m, repetition_penalty=theta,
                                frequency_penalty=0.3 * (i % 3), presence_penalty=0.2 * (i % 2),
                                logit_bias={i % V: 1.5}, min_tokens=3, max_tokens=10)
        ours = process_logits(x, params, prompt, output, eos_token_id=V - 1)
        theirs = hf_chain(x, params, prompt, output, V - 1)
        same_mask(ours, theirs)
        torch.testing.assert_close(ours.softmax(-1), theirs.softmax(-1))
        checked += 1
    assert checked == 144


def test_stated_transformers_defaults_are_the_installed_ones():
    """The defaults the course cites for transformers are what its GenerationConfig fills in."""
    from transformers import GenerationConfig

    if hasattr(GenerationConfig, "_get_default_generation_params"):  # version 5: unset fields get these
        theirs = GenerationConfig._get_default_generation_params()
    else:  # version 4: the defaults sit on a fresh config
        theirs = vars(GenerationConfig())
    ours = LIBRARY_DEFAULTS["transformers"]
    assert ours["sampling"] == theirs["do_sample"]
    for name in ("temperature", "top_k", "top_p", "repetition_penalty"):
        assert ours[name] == theirs[name], name
    assert ours["min_p"] == theirs.get("min_p")  # None: min-p is off unless set
    for course_name in ("frequency_penalty", "presence_penalty"):  # transformers has no such setting
        assert ours[course_name] is None and course_name not in theirs
