"""helpers.sampling: parameter validation, every step on the edge cases of docs/SAMPLING_SPEC.md, sampling statistics."""

import dataclasses
import math

import pytest
import torch

from helpers.sampling import (
    MAX_STOP_STRINGS,
    PRESETS,
    SamplingParams,
    apply_frequency_presence_penalties,
    apply_logit_bias,
    apply_min_p,
    apply_min_tokens,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    distinct_n,
    entropy,
    filters,
    process_logits,
    repetition_rate,
    sample_token,
    source_overlap,
    words,
)

INF = float("inf")


pytestmark = pytest.mark.usefixtures("one_thread")


def logits_of(probs):
    return torch.tensor([probs]).log()


def kept(logits):
    """Indices of the tokens that survive (not -inf) in a (1, V) tensor."""
    return torch.isfinite(logits[0]).nonzero().flatten().tolist()


# -- SamplingParams --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "field,value,message",
    [
        ("temperature", -0.1, r"temperature must be 0 \(greedy\) or a float in \[1e-30, 1e30\] .*got -0.1"),
        # values float32 cannot carry: used to pass and fail later with "every token was masked"
        ("temperature", 1e-320, r"temperature must be 0 \(greedy\) or a float in \[1e-30, 1e30\].*got 1e-320"),
        ("temperature", 1e39, r"temperature must be .*got 1e\+39"),
        ("temperature", True, "temperature must be"),
        ("repetition_penalty", 1e-40, r"repetition_penalty must be a float in \[1e-30, 1e30\] \(1 = off\), got 1e-40"),
        ("repetition_penalty", 1e31, r"repetition_penalty must be a float in \[1e-30, 1e30\]"),
        ("temperature", math.nan, "temperature must be"),
        ("temperature", INF, "temperature must be"),
        ("top_k", -1, "top_k must be an int >= 0"),
        ("top_k", 2.5, "top_k must be an int >= 0"),
        ("top_k", True, "top_k must be an int"),
        ("top_p", 1.5, r"top_p must be in \(0, 1\], got 1.5"),
        ("top_p", 0.0, r"top_p must be in \(0, 1\], got 0.0"),
        ("top_p", math.nan, "top_p must be in"),
        ("min_p", 1.01, r"min_p must be in \[0, 1\], got 1.01"),
        ("min_p", -0.1, "min_p must be in"),
        ("repetition_penalty", 0.0, r"repetition_penalty must be a float in \[1e-30, 1e30\] \(1 = off\), got 0.0"),
        ("repetition_penalty", INF, "repetition_penalty must be"),
        ("frequency_penalty", 2.5, r"frequency_penalty must be in \[-2, 2\], got 2.5"),
        ("presence_penalty", -2.01, r"presence_penalty must be in \[-2, 2\]"),
        ("presence_penalty", "1", "presence_penalty must be"),
        ("logit_bias", {3: 101.0}, r"logit_bias\[3\] must be in \[-100, 100\], got 101.0"),
        ("logit_bias", {-1: 1.0}, "logit_bias keys must be token ids"),
        ("logit_bias", {1: math.nan}, r"logit_bias\[1\] must be"),
        ("logit_bias", [1, 2], "logit_bias must be a dict"),
        ("max_tokens", 0, "max_tokens must be an int >= 1, got 0"),
        ("min_tokens", 100, r"min_tokens must be an int in \[0, max_tokens=64\], got 100"),
        ("min_tokens", -1, "min_tokens must be"),
        ("stop", [""], "stop must be a list of at most 8 non-empty strings"),
        ("stop", ["a"] * 9, "stop must be a list of at most 8"),
        ("stop", [1], "stop must be"),
        ("stop_token_ids", [-3], "stop_token_ids must be a list of token ids"),
        ("seed", -1, "seed must be None or an int"),
        ("seed", 1.5, "seed must be None or an int"),
    ],
)
def test_bad_parameters_raise_naming_parameter_value_and_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**{field: value})


def test_params_are_normalised_frozen_and_replaceable():
    p = SamplingParams(temperature=1, stop="\n", logit_bias={5: 1})
    assert p.temperature == 1.0 and isinstance(p.temperature, float)
    assert p.stop == ["\n"] and p.logit_bias == {5: 1.0}
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.temperature = 2.0
    q = p.replace(temperature=0.5)
    assert q.temperature == 0.5 and p.temperature == 1.0
    with pytest.raises(ValueError, match="top_p"):
        p.replace(top_p=2.0)
    for name, preset in PRESETS.items():
        assert isinstance(preset, SamplingParams), name


# -- the steps on the spec's edge cases -------------------------------------------------------------

def test_top_p_edge_cases():
    tiny = torch.tensor([[5.0, 0.0, -64.0, -69.0]])  # the last two have p ~ 1e-30
    assert kept(apply_top_p(tiny, 1.0)) == [0, 1, 2, 3]
    assert kept(process_logits(tiny, SamplingParams(top_p=1.0))) == [0, 1, 2, 3]
    assert kept(apply_top_p(logits_of([0.2, 0.5, 0.3]), 1e-9)) == [1]
    assert kept(apply_top_p(logits_of([0.5, 0.3, 0.15, 0.05]), 0.7)) == [0, 1]
    assert kept(apply_top_p(logits_of([0.05, 0.15, 0.3, 0.5]), 0.7)) == [2, 3]
    assert kept(apply_top_p(logits_of([0.5, 0.3, 0.15, 0.05]), 0.8001)) == [0, 1, 2]


def test_process_logits_names_bad_arguments():
    with pytest.raises(ValueError, match="logits must be a float tensor of shape \\(B, V\\), got list"):
        process_logits([[1.0, 2.0]], SamplingParams())
    with pytest.raises(ValueError, match="logits must be a float tensor .*dtype torch.int64"):
        process_logits(torch.tensor([[1, 2]]), SamplingParams())
    with pytest.raises(ValueError, match="params must be a SamplingParams, got NoneType"):
        process_logits(torch.zeros(1, 3), None)
    with pytest.raises(ValueError, match=r"^logits must be a float tensor of shape \(B, V\), got shape \(3,\), "
                                         r"dtype torch.float32$"):
        process_logits(torch.zeros(3), SamplingParams())  # one row must still be (1, V)
    with pytest.raises(ValueError, match=r"^logits must not contain NaN or \+inf$"):
        process_logits(torch.tensor([[0.0, math.inf]]), SamplingParams())
    assert kept(process_logits(torch.tensor([[0.0, -math.inf, 1.0]]), SamplingParams())) == [0, 2]  # -inf is a ban
    # penalty inputs: (B, L) or one row (L,) shared by every row; anything else is named with its shape
    logits = torch.zeros(2, 5)
    with pytest.raises(ValueError, match=r"^prompt_ids must have shape \(B=2, length\), got \(3, 1\)$"):
        process_logits(logits, SamplingParams(repetition_penalty=2.0), prompt_ids=torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"^output_ids must have shape \(B=2, length\), got \(2, 1, 1\)$"):
        process_logits(logits, SamplingParams(frequency_penalty=1.0), output_ids=torch.zeros(2, 1, 1, dtype=torch.long))
    shared = process_logits(logits, SamplingParams(frequency_penalty=1.0), output_ids=[4])
    assert shared[:, 4].tolist() == [-1.0, -1.0] and shared[:, :4].eq(0).all()
    with pytest.raises(ValueError, match=r"^stop_token_ids must be in \[0, vocab_size=5\), got 5$"):
        process_logits(logits, SamplingParams(min_tokens=1), eos_token_id=5)


def test_top_p_at_exact_boundaries():
    """A prefix whose mass equals p exactly ends there. cumsum - p rounded 0.8 below itself in float32
    and kept a third token; the exclusive cumulative sum does not."""
    # transformers' own top-p test example: [.3, .1, .1, .5] with p = 0.8 keeps .5 and .3
    assert kept(apply_top_p(logits_of([0.3, 0.1, 0.1, 0.5]), 0.8)) == [0, 3]
    assert kept(apply_top_p(logits_of([0.5, 0.25, 0.25]), 0.5)) == [0]
    # equal probabilities at the boundary: which of the tied tokens stays is not specified, how many is
    assert len(kept(apply_top_p(logits_of([0.5, 0.25, 0.25]), 0.75))) == 2
    assert len(kept(apply_top_p(logits_of([0.25, 0.25, 0.25, 0.25]), 0.5))) == 2
    assert kept(process_logits(logits_of([0.3, 0.1, 0.1, 0.5]), SamplingParams(top_p=0.8))) == [0, 3]


@pytest.mark.parametrize("probs,p", [([0.3, 0.1, 0.1, 0.5], 0.8), ([0.5, 0.25, 0.25], 0.5), ([0.5, 0.25, 0.25], 0.75),
                                     ([0.25] * 4, 0.5), ([0.5, 0.3, 0.15, 0.05], 0.95), ([0.6, 0.2, 0.2], 0.8)])
def test_top_p_boundaries_match_transformers(probs, p):
    lp = pytest.importorskip("transformers.generation.logits_process")
    logits = logits_of(probs)
    theirs = lp.TopPLogitsWarper(top_p=p)(torch.zeros(1, 1, dtype=torch.long), logits.clone())
    ours = kept(apply_top_p(logits, p))
    assert sorted(probs[i] for i in ours) == sorted(probs[i] for i in kept(theirs))  # (ties: either token)


def test_float32_edges_of_the_parameter_ranges_still_sample():
    """At the ends of the allowed ranges every step stays finite: something is always left to draw."""
    logits = torch.tensor([[3.0, -2.0, 1e4, -1e4, 0.5]])
    seen = torch.tensor([[0, 1, 2, 3]])
    for params in (SamplingParams(temperature=1e-30), SamplingParams(temperature=1e30, min_tokens=2),
                   SamplingParams(repetition_penalty=1e-30), SamplingParams(repetition_penalty=1e30),
                   SamplingParams(temperature=1e-30, repetition_penalty=1e-30, top_p=1e-9, min_p=1.0)):
        out = process_logits(logits, params, prompt_ids=seen, eos_token_id=4)
        probs = out.softmax(-1)
        assert torch.isfinite(probs).all() and probs.sum().item() == pytest.approx(1.0), params
    huge = torch.tensor([[3e38, 1.0, -3e38]])  # a positive logit divided by a small θ must not overflow
    out = process_logits(huge, SamplingParams(repetition_penalty=1e-30), prompt_ids=torch.tensor([[0, 1]]))
    assert not torch.isnan(out).any() and out.softmax(-1)[0, 0].item() == 1.0


def test_any_valid_parameters_leave_something_to_sample():
    """Property: every SamplingParams that validation accepts processes any finite logits into a
    distribution with at least one token (never NaN, never "every token was masked")."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    scale = st.one_of(st.floats(1e-30, 1e30), st.sampled_from([1e-30, 1e30, 1.0]))
    params = st.builds(
        SamplingParams,
        temperature=st.one_of(st.just(0.0), scale),
        top_k=st.integers(0, 8),
        top_p=st.one_of(st.floats(1e-12, 1.0, exclude_min=False), st.just(1.0)),
        min_p=st.floats(0.0, 1.0),
        repetition_penalty=scale,
        frequency_penalty=st.floats(-2.0, 2.0),
        presence_penalty=st.floats(-2.0, 2.0),
        logit_bias=st.dictionaries(st.integers(0, 5), st.floats(-100.0, 100.0), max_size=3),
        max_tokens=st.just(8),
        min_tokens=st.integers(0, 8),
    )
    row = st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("-inf"))), min_size=6, max_size=6).filter(
        lambda r: any(math.isfinite(v) for v in r[:5]))  # at least one token that is not the end token

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(params, row, st.lists(st.integers(0, 5), max_size=4))
    def check(p, values, output):
        logits = torch.tensor([values])
        out = process_logits(logits, p, prompt_ids=torch.tensor([[1, 2]]), output_ids=torch.tensor([output], dtype=torch.long),
                             eos_token_id=5)
        probs = out.softmax(-1)
        assert not torch.isnan(probs).any() and probs.sum().item() == pytest.approx(1.0, abs=1e-5)

    check()


def test_top_k_ties_boundary_and_greedy():
    x = torch.tensor([[1.0, 3.0, 2.0, 2.0, 0.5]])
    assert kept(apply_top_k(x, 2)) == [1, 2, 3]  # the tie with the 2nd-largest stays (as in HF)
    assert kept(apply_top_k(x, 1)) == [1]
    assert kept(apply_top_k(x, 10)) == [0, 1, 2, 3, 4]  # k > V keeps all
    assert kept(apply_top_k(x, 0)) == [0, 1, 2, 3, 4]
    assert kept(process_logits(x, SamplingParams(top_k=2))) == [1, 2, 3]  # the fast path falls back on ties
    flat = torch.zeros(1, 50)
    assert len(kept(process_logits(flat, SamplingParams(top_k=5)))) == 50
    # top_k = 1 equals greedy
    x = torch.randn(8, 100, generator=torch.Generator().manual_seed(0))
    ids, _ = sample_token(process_logits(x, SamplingParams(top_k=1)))
    assert torch.equal(ids, x.argmax(-1))
    greedy = process_logits(x, SamplingParams(temperature=0.0, top_k=3, top_p=0.1))
    assert torch.equal(greedy.argmax(-1), x.argmax(-1))
    assert torch.isfinite(greedy).sum().item() == 8  # exactly one survivor per row


def test_greedy_ties_take_lowest_id():
    x = torch.tensor([[0.0, 2.0, 1.0, 2.0]])
    assert kept(apply_temperature(x, 0.0)) == [1]
    assert kept(process_logits(x, SamplingParams(temperature=0.0))) == [1]


def test_min_p_edge_cases_and_order_pin():
    x = logits_of([0.4, 0.3, 0.2, 0.1])
    assert kept(apply_min_p(x, 1.0)) == [0]
    assert kept(apply_min_p(torch.tensor([[2.0, 2.0, 1.0]]), 1.0)) == [0, 1]  # the max and its ties
    assert kept(apply_min_p(x, 0.0)) == [0, 1, 2, 3]
    assert kept(apply_min_p(x, 0.5)) == [0, 1]  # p >= 0.2
    # Our (Hugging Face's) order: top_p first keeps {.4, .3, .2}; min_p .3 of the renormalised max keeps all three.
    assert kept(process_logits(x, SamplingParams(top_p=0.75, min_p=0.3))) == [0, 1, 2]
    # vLLM's order (min_p before top_p) keeps two: the order changes the result.
    assert kept(apply_top_p(apply_min_p(x, 0.3), 0.75)) == [0, 1]


def test_repetition_penalty_spec_example_and_once_per_token():
    x = torch.tensor([[2.0, -2.0, 1.0]])
    out = apply_repetition_penalty(x, torch.tensor([[0, 1, 1, 0, 1]]), 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0]]
    assert x.tolist() == [[2.0, -2.0, 1.0]]  # the input is untouched
    # through process_logits: prompt and output both count, still once
    got = process_logits(x, SamplingParams(repetition_penalty=2.0), torch.tensor([[0]]), torch.tensor([[1, 1]]))
    assert torch.allclose(got.softmax(-1), torch.tensor([[1.0, -4.0, 1.0]]).softmax(-1))


def test_frequency_presence_spec_example_output_only():
    x = torch.zeros(1, 9)
    out = apply_frequency_presence_penalties(x, torch.tensor([[5, 5, 7]]), 0.5, 1.0)
    expected = torch.zeros(1, 9)
    expected[0, 5], expected[0, 7] = -2.0, -1.5
    assert torch.equal(out, expected)
    params = SamplingParams(frequency_penalty=0.5, presence_penalty=1.0, temperature=1.0)
    got = process_logits(x, params, prompt_ids=torch.tensor([[1, 2, 3, 3]]), output_ids=torch.tensor([[5, 5, 7]]))
    shift = got[0, 0]  # the chain shifts each row by its maximum
    assert torch.allclose(got - shift, expected)  # prompt-only tokens 1, 2, 3 untouched


def test_logit_bias_forces_and_bans():
    x = torch.randn(4, 30, generator=torch.Generator().manual_seed(1))
    forced = process_logits(x, SamplingParams(logit_bias={7: 100.0}))
    assert (forced.softmax(-1)[:, 7] > 0.999).all()
    banned = process_logits(x, SamplingParams(logit_bias={int(i): -100.0 for i in x.argmax(-1)}))
    assert (banned.softmax(-1)[torch.arange(4), x.argmax(-1)] < 1e-30).all()
    with pytest.raises(ValueError, match=r"logit_bias token ids must be in \[0, vocab_size=30\), got 30"):
        apply_logit_bias(x, {30: 1.0})


def test_min_tokens_masks_end_tokens_until_reached():
    x = torch.zeros(1, 6)
    params = SamplingParams(min_tokens=2, stop_token_ids=[3])
    early = process_logits(x, params, None, torch.tensor([[1]]), eos_token_id=5)
    assert kept(early) == [0, 1, 2, 4]
    late = process_logits(x, params, None, torch.tensor([[1, 2]]), eos_token_id=5)
    assert kept(late) == [0, 1, 2, 3, 4, 5]
    assert kept(apply_min_tokens(x, 0, 1, [0, 2])) == [1, 3, 4, 5]


def test_infinite_logits_masked_rows_and_overflow():
    one = torch.full((1, 5), -INF)
    one[0, 3] = 0.0
    out = process_logits(one, SamplingParams(temperature=0.7, top_k=2, top_p=0.5, min_p=0.1))
    assert kept(out) == [3] and not torch.isnan(out).any()
    assert sample_token(out)[0].item() == 3
    with pytest.raises(ValueError, match="every token was masked"):
        process_logits(torch.full((2, 5), -INF), SamplingParams())
    with pytest.raises(ValueError, match="every token was masked"):
        process_logits(torch.full((1, 5), -INF), SamplingParams(temperature=0.0))
    with pytest.raises(ValueError, match="NaN"):
        process_logits(torch.tensor([[0.0, math.nan]]), SamplingParams())
    huge = torch.tensor([[3e38, 1e38, -3e38]])
    p = process_logits(huge, SamplingParams(temperature=0.1)).softmax(-1)
    assert torch.isfinite(p).all() and p[0, 0] == 1.0
    half = (torch.randn(2, 50) * 1000).half()
    p = process_logits(half, SamplingParams(temperature=0.05, top_p=0.9)).softmax(-1)
    assert p.dtype == torch.float32 and torch.isfinite(p).all()
    assert torch.allclose(p.sum(-1), torch.ones(2))


def test_temperature_redistributes_mass_and_keeps_total():
    x = torch.randn(1, 200, generator=torch.Generator().manual_seed(2))
    entropies = []
    for t in (0.25, 0.5, 1.0, 2.0, 4.0):
        p = apply_temperature(x, t).softmax(-1)
        assert torch.allclose(p.sum(), torch.tensor(1.0))
        entropies.append(entropy(p).item())
    assert entropies == sorted(entropies)  # higher temperature, flatter distribution
    assert entropy(apply_temperature(x, 0.0).softmax(-1)).item() == 0.0


# -- sampling statistics ---------------------------------------------------------------------------

def test_unfiltered_sampling_follows_softmax_chi_square():
    logits = torch.tensor([[2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, 0.2, 1.2, -2.0]])
    probs = logits.softmax(-1)[0]
    draws = 20_000
    processed = process_logits(logits.expand(draws, -1), SamplingParams())
    ids, lp = sample_token(processed, torch.Generator().manual_seed(0))
    counts = torch.bincount(ids, minlength=10).double()
    expected = probs.double() * draws
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 27.88, chi2  # the 99.9% quantile of chi-square with 9 degrees of freedom
    assert torch.allclose(lp, probs.log()[ids])


def test_filtered_sampling_draws_only_survivors_in_proportion():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -3.0, -5.0]])
    params = SamplingParams(temperature=0.8, top_k=4, top_p=0.9)
    processed = process_logits(logits, params)
    probs = processed.softmax(-1)[0]
    ids, _ = sample_token(processed.expand(20_000, -1), torch.Generator().manual_seed(1))
    freq = torch.bincount(ids, minlength=6).double() / 20_000
    assert set(ids.unique().tolist()) == set(kept(processed))
    assert torch.allclose(freq, probs.double(), atol=0.015)


def test_same_seed_same_tokens():
    x = torch.randn(16, 300, generator=torch.Generator().manual_seed(3))
    a = sample_token(x, torch.Generator().manual_seed(42))[0]
    b = sample_token(x, torch.Generator().manual_seed(42))[0]
    c = sample_token(x, torch.Generator().manual_seed(43))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_process_logits_batch_matches_rows_one_by_one():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 80, generator=g) * 3
    prompt = torch.randint(0, 80, (5, 7), generator=g)
    output = torch.randint(0, 80, (5, 6), generator=g)
    params = SamplingParams(temperature=0.7, top_k=20, top_p=0.8, min_p=0.05, repetition_penalty=1.3,
                            frequency_penalty=0.4, presence_penalty=0.2, logit_bias={3: 2.0})
    batch = process_logits(x, params, prompt, output)
    rows = torch.cat([process_logits(x[i : i + 1], params, prompt[i : i + 1], output[i : i + 1]) for i in range(5)])
    assert torch.equal(torch.isfinite(batch), torch.isfinite(rows))
    assert torch.allclose(batch.softmax(-1), rows.softmax(-1))


# -- measuring samples -----------------------------------------------------------------------------

def test_distinct_n_and_repetition_rate():
    assert distinct_n([[1, 2, 3, 4]], 2) == 1.0
    assert distinct_n([[1, 2, 1, 2, 1, 2]], 2) == 2 / 5
    assert distinct_n(["abab", "abab"], 2) == 2 / 6
    assert distinct_n([[1]], 2) == 0.0
    assert repetition_rate([1, 2, 3, 4, 5], 2) == 0.0
    assert repetition_rate([7, 7, 7, 7], 1) == 3 / 4
    assert repetition_rate("the cat the cat", 3) > 0


def test_source_overlap_counts_copied_words():
    source = "The Riverside Clinic closes its pharmacy on 15 March."
    assert words("On 15 March, call!") == ["on", "15", "march", "call"]
    assert source_overlap("The clinic closes on 15 March", source) == 1.0  # case does not matter
    assert source_overlap("The clinic shuts in spring", source) == 2 / 5  # "the", "clinic"
    assert source_overlap("", source) == 0.0
    with pytest.raises(ValueError, match="text and source must be str"):
        source_overlap(["The"], source)


def test_presets_are_valid_and_the_summary_preset_penalises_no_copying():
    for name, preset in PRESETS.items():
        assert isinstance(preset, SamplingParams), name
    summary = PRESETS["factual_summary"]
    assert summary.temperature == 0.0 and summary.max_tokens <= 200 and summary.stop  # reproducible and bounded
    # the repetition penalty counts prompt tokens: it would push a summary away from its source's terms
    assert summary.repetition_penalty == 1.0
    assert summary.frequency_penalty == 0.0 and summary.presence_penalty == 0.0


def test_a_filter_added_to_the_chain_acts_on_the_top_k_shortcut_and_the_long_way(monkeypatch):
    """The chain is written once: one more entry in FILTERS reaches both paths of the sampler."""
    from helpers.sampling import filters

    def keep_two(logits, _value):  # a made-up filter: the two most likely tokens of each row survive
        return logits.masked_fill(logits < logits.topk(2, dim=-1).values[:, -1:], -INF)

    x = torch.randn(3, 30, generator=torch.Generator().manual_seed(0))
    params = SamplingParams(temperature=0.8, top_k=6)
    shortcut = process_logits(x, params)  # top_k < V: only the 6 candidates are processed
    assert torch.isfinite(shortcut).sum() == 18
    monkeypatch.setattr(filters, "FILTERS", (*filters.FILTERS, ("top_k", keep_two)))
    shortcut = process_logits(x, params)
    long_way = process_logits(x, params.replace(top_k=0))  # the whole vocabulary, step by step
    assert torch.isfinite(shortcut).sum() == 6 and torch.equal(torch.isfinite(shortcut), torch.isfinite(long_way))
    assert torch.equal(torch.isfinite(shortcut), x >= x.topk(2, dim=-1).values[:, -1:])
    torch.testing.assert_close(shortcut.softmax(-1), long_way.softmax(-1))


def test_any_non_number_for_a_number_field_is_named():
    """Property: NaN, ±inf, True/False, None, a string, or a value float32 cannot carry, in any numeric
    field of SamplingParams, raises a ValueError naming the field and showing the value."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    fields = ["temperature", "top_k", "top_p", "min_p", "repetition_penalty", "frequency_penalty",
              "presence_penalty", "max_tokens", "min_tokens"]
    bad = st.sampled_from([math.nan, math.inf, -math.inf, True, False, None, "1", [1], -1, 1e-320, 1e39])

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(st.sampled_from(fields), bad)
    def check(name, value):
        if value in (1e-320, 1e39) and name not in ("temperature", "repetition_penalty"):
            return  # (tiny or huge values are legal or clamped by the ranges of the other fields)
        if value == -1 and name in ("frequency_penalty", "presence_penalty"):
            return  # inside [-2, 2]
        with pytest.raises(ValueError, match=name) as err:
            SamplingParams(**{name: value})
        assert repr(value) in str(err.value)

    check()


def test_repetition_penalty_of_one_seen_token_matches_transformers():
    lp = pytest.importorskip("transformers.generation.logits_process")
    x = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    for seen in ([[0]], [[1]], [[3, 1]]):
        ids = torch.tensor(seen)
        theirs = lp.RepetitionPenaltyLogitsProcessor(penalty=1.7)(ids, x.clone())
        assert torch.allclose(apply_repetition_penalty(x, ids, 1.7), theirs), seen


def test_entropy_against_torch_categorical_over_the_last_dimension():
    probs = torch.softmax(torch.randn(2, 3, 7, generator=torch.Generator().manual_seed(0)), dim=-1)
    expected = torch.distributions.Categorical(probs=probs).entropy()  # (2, 3)
    assert torch.allclose(entropy(probs), expected, atol=1e-6)
    assert entropy(torch.full((4,), 0.25)).item() == pytest.approx(math.log(4))
    assert entropy(torch.tensor([0.5, 0.5, 0.0])).item() == pytest.approx(math.log(2))  # 0 · log 0 = 0


def test_metric_defaults_and_empty_samples():
    # by hand: "abab" has the bigrams ab, ba, ab (2 distinct of 3) and the trigrams aba, bab (2 of 2)
    assert distinct_n(["abab"]) == 2 / 3 == distinct_n(["abab"], 2)
    # "abcabc": trigrams abc, bca, cab, abc, one repeat in four; its 4-grams never repeat
    assert repetition_rate("abcabc") == 1 / 4 == repetition_rate("abcabc", 3)
    assert repetition_rate("ab") == 0.0 and repetition_rate([]) == 0.0  # no trigram at all


def test_source_overlap_names_both_types():
    for text, source, types in ((1, "x", "int and str"), ("x", 2.5, "str and float")):
        with pytest.raises(ValueError) as err:
            source_overlap(text, source)
        assert str(err.value) == f"text and source must be str, got {types}"


def test_greedy_keeps_the_maximum_of_every_row():
    x = torch.tensor([[0.0, 3.0, 1.0], [2.0, -1.0, 2.0]])
    out = apply_temperature(x, 0.0)
    assert out.tolist() == [[-math.inf, 3.0, -math.inf], [2.0, -math.inf, -math.inf]]  # row 2: the lower id of a tie


def test_rows_are_processed_apart():
    # each row is shifted by its own maximum before dividing by a tiny T: a row far below another must
    # not underflow to -inf everywhere
    x = torch.tensor([[1e9, 0.0], [0.0, -1.0]])
    probs = process_logits(x, SamplingParams(temperature=1e-30)).softmax(-1)
    assert probs.tolist() == [[1.0, 0.0], [1.0, 0.0]]
    # one row with nothing left is an error even when the other row has tokens
    with pytest.raises(ValueError) as err:
        process_logits(torch.tensor([[0.0, 1.0], [-math.inf, -math.inf]]), SamplingParams())
    assert str(err.value) == "every token was masked (all logits are -inf after processing): nothing to sample"


def test_missing_or_one_dimensional_ids_are_an_empty_or_one_row_history():
    x = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    penalties = SamplingParams(repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25)
    # no ids given: nothing was seen or generated, so the penalties change nothing
    assert torch.equal(process_logits(x, penalties), process_logits(x, SamplingParams()))
    # no output yet: min_tokens = 1 still bans the end token
    assert kept(process_logits(x, SamplingParams(min_tokens=1), eos_token_id=0)) == [1, 2, 3]
    # a 1-D history is one row
    one_d = process_logits(x, penalties, torch.tensor([0, 2]), torch.tensor([1, 1]))
    assert torch.equal(one_d, process_logits(x, penalties, torch.tensor([[0, 2]]), torch.tensor([[1, 1]])))
    with pytest.raises(ValueError) as err:
        process_logits(x, {"temperature": 1.0})
    assert str(err.value) == "params must be a SamplingParams, got dict"


def test_every_field_is_stored_normalised_and_copied():
    bias, stop_ids = {5: 1}, (7,)
    p = SamplingParams(top_p=1, min_p=0, repetition_penalty=2, logit_bias=bias, stop_token_ids=stop_ids)
    for name in ("top_p", "min_p", "repetition_penalty"):
        assert type(getattr(p, name)) is float, name
    assert p.logit_bias == {5: 1.0} and type(p.logit_bias[5]) is float
    assert p.stop_token_ids == [7]
    bias[6] = 500.0  # changing the caller's dict afterwards must not slip an unchecked bias in
    assert p.logit_bias == {5: 1.0}
    assert sorted(vars(p)) == sorted(f.name for f in dataclasses.fields(SamplingParams))  # nothing else stored


def test_the_edges_of_the_allowed_ranges():
    assert SamplingParams(logit_bias={1: -100, 2: 100}).logit_bias == {1: -100.0, 2: 100.0}
    with pytest.raises(ValueError, match=r"^logit_bias\[1\] must be in \[-100, 100\], got -100.5$"):
        SamplingParams(logit_bias={1: -100.5})
    assert len(SamplingParams(stop=["a"] * MAX_STOP_STRINGS).stop) == MAX_STOP_STRINGS
    assert SamplingParams(seed=2**63 - 1).seed == 2**63 - 1  # what torch.Generator.manual_seed takes
    with pytest.raises(ValueError, match=r"^seed must be None or an int in \[0, 2\*\*63\), got 9223372036854775808$"):
        SamplingParams(seed=2**63)
    with pytest.raises(ValueError) as err:
        SamplingParams(include_stop_str_in_output=1)
    assert str(err.value) == "include_stop_str_in_output must be True or False, got 1"


def test_presence_penalty_alone_and_float64_logits_follow_the_formula():
    x = torch.tensor([[2.0, -2.0, 1.0, 0.5]], dtype=torch.float64)
    out = apply_frequency_presence_penalties(x, torch.tensor([[1, 1, 3]]), 0.0, 1.0)
    assert out.dtype == torch.float64 and out.tolist() == [[2.0, -3.0, 1.0, -0.5]]  # once per distinct token
    out = apply_frequency_presence_penalties(x, torch.tensor([[1, 1, 3]]), 0.25, 1.0)
    assert out.tolist() == [[2.0, -3.5, 1.0, -0.75]]  # 2 · 0.25 + 1 and 0.25 + 1
    out = apply_logit_bias(x, {0: -1.5, 2: 0.25})
    assert out.dtype == torch.float64 and out.tolist() == [[0.5, -2.0, 1.25, 0.5]]


def test_steps_keep_their_tensors_on_the_logits_device():
    # the meta device stands in for an accelerator: an index built on the CPU cannot be used there
    x = torch.zeros(2, 5, device="meta")
    assert apply_logit_bias(x, {1: 2.0}).device.type == "meta"
    assert apply_min_tokens(x, 0, 1, [4]).device.type == "meta"
    meta = torch.device("meta")
    assert filters._as_ids(None, 2, meta, "prompt_ids").device.type == "meta"
    assert filters._as_ids([1, 2], 2, meta, "prompt_ids").device.type == "meta"
