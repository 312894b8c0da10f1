"""The KV cache: its size formula, the bytes a cache really allocates, published model shapes, and
generation with and without it, timed per token.

bytes = 2 (keys and values) × layers × KV heads × head size × tokens × bytes per value. Grouped-query
attention makes "KV heads" smaller than the number of query heads, and the cache smaller with it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from helpers.runtime import synchronize


def kv_cache_bytes(n_layer: int, n_kv_head: int, head_dim: int, tokens: int, bytes_per_value: float,
                   batch_size: int = 1) -> int:
    """2 (keys and values) × layers × KV heads × head size × tokens × bytes per value (× batch)."""
    for name, value in (("n_layer", n_layer), ("n_kv_head", n_kv_head), ("head_dim", head_dim),
                        ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise ValueError(f"tokens must be an int >= 0, got {tokens!r}")
    if not isinstance(bytes_per_value, (int, float)) or bytes_per_value <= 0:
        raise ValueError(f"bytes_per_value must be a positive number, got {bytes_per_value!r}")
    return int(2 * n_layer * n_kv_head * head_dim * tokens * bytes_per_value * batch_size)


def allocated_bytes(obj: object) -> int:
    """Bytes of all tensor storage an object holds in its attributes (also inside lists, tuples and
    dicts), each storage counted once: what a cache really allocated, whatever its layout."""
    seen: set[tuple] = set()
    total = 0
    stack = [obj]
    visited: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            s = item.untyped_storage()
            key = (item.device, s.data_ptr())
            if key not in seen:
                seen.add(key)
                total += s.nbytes()
            continue
        if id(item) in visited:
            continue
        visited.add(id(item))
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif hasattr(item, "__dict__") and not isinstance(item, (type, nn.Module)):
            stack.extend(vars(item).values())
    return total


@dataclass(frozen=True)
class AttentionShape:
    """What the KV cache formula needs from a model's configuration."""

    name: str
    n_layer: int
    n_head: int  # query heads
    n_kv_head: int  # key/value heads (fewer than n_head: grouped-query attention)
    head_dim: int
    context: int  # the trained context window, in tokens

    @property
    def group(self) -> int:
        """Query heads that share one key/value head."""
        return self.n_head // self.n_kv_head

    def cache_bytes(self, tokens: int, bytes_per_value: float = 2, batch_size: int = 1) -> int:
        """The KV cache of ``tokens`` positions (bf16 by default)."""
        return kv_cache_bytes(self.n_layer, self.n_kv_head, self.head_dim, tokens, bytes_per_value, batch_size)


#: Published configurations (the ``config.json`` files on Hugging Face): arithmetic only, nothing downloaded.
PUBLISHED: dict[str, AttentionShape] = {
    # HuggingFaceTB/SmolLM2-135M-Instruct: hidden 576 = 9 heads x 64, 3 KV heads, 30 layers
    "SmolLM2-135M": AttentionShape("SmolLM2-135M", n_layer=30, n_head=9, n_kv_head=3, head_dim=64, context=8192),
    # meta-llama/Llama-2-7b-hf: hidden 4096 = 32 x 128, every head has its own keys and values
    "Llama-2-7B": AttentionShape("Llama-2-7B", n_layer=32, n_head=32, n_kv_head=32, head_dim=128, context=4096),
    # meta-llama/Meta-Llama-3-8B: hidden 4096 = 32 x 128, 8 KV heads (grouped-query attention)
    "Llama-3-8B": AttentionShape("Llama-3-8B", n_layer=32, n_head=32, n_kv_head=8, head_dim=128, context=8192),
}


# ---------------------------------------------------------------------------------------------
# Generation with and without the cache
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def greedy_timed(model: nn.Module, prompt_ids: Sequence[int], new_tokens: int, use_cache: bool
                 ) -> tuple[list[int], list[float]]:
    """Greedy decoding of ``new_tokens`` tokens after ``prompt_ids``; returns the tokens and the
    seconds each step took (the first step reads the prompt).

    ``use_cache=True`` feeds the prompt once, then only each new token, reading the keys and values
    of earlier positions from ``model.new_cache(1)``. ``use_cache=False`` runs the whole sequence
    through the model again at every step. Both choose the same tokens (up to float rounding in the
    rare case of a near tie)."""
    if not isinstance(new_tokens, int) or new_tokens < 1:
        raise ValueError(f"new_tokens must be a positive int, got {new_tokens!r}")
    if not prompt_ids:
        raise ValueError("prompt_ids must hold at least one token id")
    was_training = model.training
    model.eval()
    ids = list(prompt_ids)
    cache = model.new_cache(1) if use_cache else None
    feed = torch.tensor([ids], device=model.device)
    times: list[float] = []
    try:
        for _ in range(new_tokens):
            synchronize(model.device)
            start = time.perf_counter()
            logits = model(feed, cache) if use_cache else model(torch.tensor([ids], device=model.device))
            nxt = int(logits[0, -1].argmax())
            synchronize(model.device)
            times.append(time.perf_counter() - start)
            ids.append(nxt)
            feed = torch.tensor([[nxt]], device=model.device)
    finally:
        model.train(was_training)
    return ids[len(prompt_ids):], times
