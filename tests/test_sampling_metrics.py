"""helpers.sampling.mean_logprob (the quality proxy of notebooks 06 and 07) against a token-by-token oracle."""

import math

import pytest
import torch

from helpers.sampling import mean_logprob

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_by_one(model, prompt, completion) -> float:
    """log p(c_t | everything before it), one forward pass per token over at most block_size tokens."""
    ids = list(prompt) + list(completion)
    total = 0.0
    with torch.no_grad():
        for pos in range(len(prompt), len(ids)):
            context = ids[max(0, pos - model.config.block_size):pos]
            logits = model(torch.tensor([context]))[0, -1].double()
            total += (logits.log_softmax(-1)[ids[pos]]).item()
    return total / len(completion)


def test_mean_logprob_is_the_average_per_token_log_probability(tiny_gpt):
    model = tiny_gpt(dropout=0.5)  # dropout on: the score must still be deterministic (eval mode)
    prompt, completion = [1, 2, 3], [4, 5, 6, 7]
    model.eval()
    want = _one_by_one(model, prompt, completion)
    model.train()
    assert mean_logprob(model, prompt, completion) == pytest.approx(want, abs=1e-5)
    assert model.training, "the model's mode is restored"
    assert mean_logprob(model, prompt, completion) == mean_logprob(model, prompt, completion)


def test_mean_logprob_of_one_token_and_of_none(tiny_gpt):
    model = tiny_gpt().eval()
    with torch.no_grad():
        logp = model(torch.tensor([[9, 8]]))[0, -1].log_softmax(-1)
    assert mean_logprob(model, [9, 8], [3]) == pytest.approx(logp[3].item(), abs=1e-6)
    assert math.isnan(mean_logprob(model, [9, 8], []))


def test_mean_logprob_beyond_the_block_scores_what_one_pass_can_see(tiny_gpt):
    """block_size 16: a 10-token prompt and a 10-token completion keep the last 17 ids, so the first
    completion token is scored after 6 prompt tokens and every later one inside the same window."""
    model = tiny_gpt().eval()
    prompt, completion = list(range(10, 20)), list(range(30, 40))
    ids = (prompt + completion)[-17:]
    with torch.no_grad():
        logp = model(torch.tensor([ids[:-1]]))[0].log_softmax(-1)  # (16, V)
    want = sum(logp[i - 1, ids[i]].item() for i in range(7, 17)) / 10
    assert mean_logprob(model, prompt, completion) == pytest.approx(want, abs=1e-5)
    # a completion longer than the window: only the last block_size tokens can be scored
    long = list(range(20, 45))  # 25 tokens
    ids = long[-17:]
    with torch.no_grad():
        logp = model(torch.tensor([ids[:-1]]))[0].log_softmax(-1)
    want = sum(logp[i - 1, ids[i]].item() for i in range(1, 17)) / 16
    assert mean_logprob(model, [1], long) == pytest.approx(want, abs=1e-5)
