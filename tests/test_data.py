"""helpers.data: encoding the splits with end-of-text tokens, and random training windows."""

import pytest
import torch

from helpers.corpus import Splits
from helpers.data import TokenSplits, encode_splits, encode_text, get_batch, windows


class CharTokenizer:
    """A stand-in tokenizer: one id per character (ord), end-of-text = 999."""

    eot_id = 999

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def test_each_story_is_followed_by_eot():
    ids = encode_text("ab\n\ncd\n\n\n\ne", CharTokenizer()).tolist()
    assert ids == [97, 98, 999, 99, 100, 999, 101, 999]


def test_max_stories_keeps_the_first_ones():
    ids = encode_text("ab\n\ncd\n\ne", CharTokenizer(), max_stories=2).tolist()
    assert ids == [97, 98, 999, 99, 100, 999]


def test_encode_splits_gives_int64_cpu_tensors():
    data = encode_splits(Splits(train="ab\n\ncd", val="x", test="yz"), CharTokenizer())
    assert isinstance(data, TokenSplits)
    assert data.val.tolist() == [120, 999] and data.test.tolist() == [121, 122, 999]
    for t in (data.train, data.val, data.test):
        assert t.dtype == torch.int64 and t.device.type == "cpu"
    assert "train=6" in repr(data)


def test_encode_splits_with_the_course_tokenizer():
    from helpers.tokenizer import BPETokenizer

    text = "the cat sat.\n\nthe dog ran.\n\nthe cat ran."
    tok = BPETokenizer.train(text, vocab_size=270)
    ids = encode_text(text, tok)
    assert (ids == tok.eot_id).sum() == 3 and ids[-1] == tok.eot_id
    assert tok.decode(ids.tolist()).count("<|endoftext|>") == 3


def test_get_batch_targets_are_inputs_shifted_by_one():
    tokens = torch.arange(100)
    x, y = get_batch(tokens, 8, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 10) and x.dtype == torch.int64
    assert torch.equal(y, x + 1)  # consecutive ids: the next token is always id + 1
    assert int(y.max()) <= 99


def test_get_batch_is_reproducible_with_a_generator():
    tokens = torch.randint(50, (500,))
    a = get_batch(tokens, 4, 16, torch.Generator().manual_seed(3))
    b = get_batch(tokens, 4, 16, torch.Generator().manual_seed(3))
    c = get_batch(tokens, 4, 16, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_windows_reach_the_last_token():
    tokens = torch.arange(11)
    x, y = windows(tokens, torch.tensor([0]), 10)  # the only window of 10 + 1 tokens
    assert x.tolist() == [list(range(10))] and y.tolist() == [list(range(1, 11))]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(tokens=torch.arange(10), batch_size=2, block_size=10), "more than block_size=10"),
        (dict(tokens=torch.arange(100), batch_size=0, block_size=4), "batch_size must be a positive int, got 0"),
        (dict(tokens=torch.arange(100), batch_size=2, block_size=-1), "block_size must be a positive int"),
        (dict(tokens=torch.zeros(4, 4, dtype=torch.long), batch_size=2, block_size=2), "1-D integer tensor"),
        (dict(tokens=torch.rand(100), batch_size=2, block_size=2), "1-D integer tensor"),
    ],
)
def test_get_batch_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        get_batch(**kwargs)


def test_token_splits_validate():
    with pytest.raises(ValueError, match="val must be a 1-D integer tensor"):
        TokenSplits(train=torch.arange(5), val=[1, 2], test=torch.arange(5))
