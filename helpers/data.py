"""Token data for training: the corpus splits as token tensors, and random training windows.

The token tensors stay on the CPU (a few MB of int64); only each batch of windows travels to the
device. That keeps GPU memory for the model and lets the same data feed any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from helpers.corpus import STORY_SEPARATOR, Splits

_INT_DTYPES = (torch.int64, torch.int32)


def _check_tokens(name: str, tokens: object) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1 or tokens.dtype not in _INT_DTYPES:
        what = (f"a {tokens.dim()}-D {tokens.dtype} tensor" if isinstance(tokens, torch.Tensor)
                else type(tokens).__name__)
        raise ValueError(f"{name} must be a 1-D integer tensor of token ids, got {what}")


@dataclass
class TokenSplits:
    """Train / validation / test token ids, each a 1-D int64 tensor on the CPU."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            _check_tokens(name, getattr(self, name))

    def __repr__(self) -> str:
        return f"TokenSplits(train={len(self.train):_}, val={len(self.val):_}, test={len(self.test):_} tokens)"


def encode_text(text: str, tokenizer, max_stories: int | None = None) -> torch.Tensor:
    """Token ids of ``text``: every story (stories are separated by a blank line) followed by the
    tokenizer's end-of-text token, so the model learns where a story ends.

    ``max_stories`` keeps only the first stories (a quick way to a small data set).
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    if max_stories is not None and (not isinstance(max_stories, int) or max_stories < 1):
        raise ValueError(f"max_stories must be a positive int or None, got {max_stories!r}")
    stories = [s for s in text.split(STORY_SEPARATOR) if s.strip()]
    if max_stories is not None:
        stories = stories[:max_stories]
    ids: list[int] = []
    for story in stories:
        ids.extend(tokenizer.encode(story))
        ids.append(tokenizer.eot_id)
    return torch.tensor(ids, dtype=torch.int64)


def encode_splits(splits: Splits, tokenizer, max_stories: int | None = None) -> TokenSplits:
    """Encode the three text splits (see ``encode_text``); ``max_stories`` caps each split."""
    return TokenSplits(
        train=encode_text(splits.train, tokenizer, max_stories),
        val=encode_text(splits.val, tokenizer, max_stories),
        test=encode_text(splits.test, tokenizer, max_stories),
    )


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Move a CPU batch to ``device``; to a GPU through pinned memory, without waiting for the copy."""
    device = torch.device(device)
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def windows(tokens: torch.Tensor, starts: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of the windows beginning at ``starts``: ``x[i] = tokens[s:s+T]``,
    ``y[i] = tokens[s+1:s+T+1]`` (the next token at every position). Both ``(B, T)``, on the CPU."""
    _check_tokens("tokens", tokens)
    # unfold gives every window of T+1 tokens as a view; indexing copies only the chosen ones
    w = tokens.unfold(0, block_size + 1, 1)[starts].long()  # (B, T+1)
    return w[:, :-1].contiguous(), w[:, 1:].contiguous()


def get_batch(
    tokens: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``block_size`` tokens: inputs ``x`` and next-token targets
    ``y``, both ``(B, T)`` on ``device``. The same ``generator`` state gives the same windows."""
    _check_tokens("tokens", tokens)
    for name, value in (("batch_size", batch_size), ("block_size", block_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if len(tokens) < block_size + 1:
        raise ValueError(
            f"tokens must hold more than block_size={block_size} tokens to cut one window, got {len(tokens)}"
        )
    starts = torch.randint(len(tokens) - block_size, (batch_size,), generator=generator)
    x, y = windows(tokens, starts, block_size)
    return to_device(x, device), to_device(y, device)
