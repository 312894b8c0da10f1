"""Measuring samples: entropy, distinct-n, repetition rate, copying from a source and mean log-probability."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from helpers.interface import LanguageModel
from helpers.runtime import evaluating


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension (0 · log 0 counts as 0)."""
    return -(probs * probs.clamp_min(1e-45).log()).sum(dim=-1)


def _ngrams(seq: Sequence, n: int) -> list[tuple]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(samples: Sequence[Sequence], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over a set of samples (token lists or strings): 1 = no n-gram repeats."""
    grams = [g for s in samples for g in _ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(sample: Sequence, n: int = 3) -> float:
    """Fraction of the n-grams in one sample that already appeared earlier in it (0 = no repeats)."""
    grams = _ngrams(sample, n)
    seen: set[tuple] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0


def words(text: str) -> list[str]:
    """The words and numbers of ``text``, lower-cased (``"On 15 March, call"`` -> ``["on", "15", "march", "call"]``)."""
    return re.findall(r"\w+", text.lower())


def source_overlap(text: str, source: str) -> float:
    """Share of the words of ``text`` that also occur in ``source`` (1 = every word taken from the source).

    A measure of copying for summaries: a faithful summary reuses its source's terms, names and numbers.
    An empty ``text`` gives 0.0.
    """
    if not isinstance(text, str) or not isinstance(source, str):
        raise ValueError(f"text and source must be str, got {type(text).__name__} and {type(source).__name__}")
    found = set(words(source))
    w = words(text)
    return sum(x in found for x in w) / len(w) if w else 0.0


@torch.no_grad()
def mean_logprob(model: LanguageModel, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> float:
    """Average log-probability per token the model gives ``completion_ids`` after ``prompt_ids`` (T = 1, no filters).

    A quality proxy: how plausible a scoring model finds a sample (higher = more typical text).
    """
    if not completion_ids:
        return float("nan")
    ids = list(prompt_ids) + list(completion_ids)
    ids = ids[-model.config.block_size - 1 :]  # the most a single forward pass can score
    idx = torch.tensor([ids], device=model.device)
    with evaluating(model):
        logp = model(idx[:, :-1])[0].float().log_softmax(-1)  # (T-1, V)
    k = min(len(completion_ids), len(ids) - 1)
    targets = idx[0, -k:]
    return logp[-k:].gather(1, targets[:, None]).mean().item()

