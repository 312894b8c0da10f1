"""The memory check of a search space: counted corners against a real step, and the fitted batch range."""

import pytest
import torch

from helpers import tuning
from helpers.memory import training_memory
from helpers.model import GPT, GPTConfig

VOCAB, BLOCK = 64, 16
SPACE = {"n_layer": {"type": "int", "low": 1, "high": 2},
         "n_embd": {"type": "int", "low": 16, "high": 32, "step": 16},
         "batch_size": {"type": "int", "low": 2, "high": 64, "log": True}}


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_step_memory_matches_a_real_batch(batch):
    # the line through batches 1 and 2 must give what a forward pass at the real batch saves
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=BLOCK, vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    x = torch.randint(0, VOCAB, (batch, BLOCK))
    real = training_memory(model, lambda: model.loss(x, x), measure=False)
    counted = tuning.step_memory(2, 32, batch, vocab_size=VOCAB, block_size=BLOCK)
    assert counted["total"] == real.total and counted["activations"] == real.activations


def test_corners_and_fitted_batch():
    small = tuning.step_memory(1, 16, 2, vocab_size=VOCAB, block_size=BLOCK)["total"]
    big = tuning.step_memory(2, 32, 64, vocab_size=VOCAB, block_size=BLOCK)["total"]
    limit = (small + big) / 2
    rows = tuning.corner_memory(SPACE, vocab_size=VOCAB, block_size=BLOCK, limit_bytes=limit)
    assert len(rows) == 8 and rows[0]["total"] == small and rows[-1]["total"] == big
    assert [r["total"] <= limit for r in rows] == [r["fits"] for r in rows] and rows[0]["fits"] and not rows[-1]["fits"]
    fitted = tuning.fit_batch_size(SPACE, vocab_size=VOCAB, block_size=BLOCK, limit_bytes=limit)
    high = fitted["batch_size"]["high"]
    assert 2 <= high < 64 and SPACE["batch_size"]["high"] == 64  # a copy; the original is unchanged
    assert tuning.step_memory(2, 32, high, vocab_size=VOCAB, block_size=BLOCK)["total"] <= limit
    assert tuning.step_memory(2, 32, high + 1, vocab_size=VOCAB, block_size=BLOCK)["total"] > limit
    again = tuning.corner_memory(fitted, vocab_size=VOCAB, block_size=BLOCK, limit_bytes=limit)
    assert all(r["fits"] for r in again)


def test_bad_input():
    with pytest.raises(ValueError, match="limit_bytes"):
        tuning.corner_memory(SPACE, vocab_size=VOCAB, block_size=BLOCK, limit_bytes=0)
    with pytest.raises(ValueError, match="batch_size=2 does not fit"):
        tuning.fit_batch_size(SPACE, vocab_size=VOCAB, block_size=BLOCK, limit_bytes=1000)
    with pytest.raises(ValueError, match="'n_layer' is neither"):
        tuning.corner_memory({"lr": {"type": "float", "low": 1e-3, "high": 1e-1}}, vocab_size=VOCAB,
                             block_size=BLOCK, limit_bytes=1e9)
    with pytest.raises(ValueError, match="n_embd must be a positive int"):
        tuning.step_memory(1, 0, 1, vocab_size=VOCAB, block_size=BLOCK)
