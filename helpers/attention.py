"""What the attention weights compute, recomputed from a model's own weights and inputs.

- ``capture_attention_inputs``: forward hooks on every attention module record what it was given
  (the LayerNormed residual stream), without changing the model;
- ``attention_by_hand``: queries, keys and values from ``c_attn``, scores q·k/√d, the causal mask,
  softmax, the weighted sum of the values, heads merged and projected by ``c_proj``, every
  intermediate kept so it can be looked at and checked against the model's forward pass;
- ``attention_weights``: the (layer, head, query, key) attention maps of a whole model;
- measures of what a head attends to (``previous_token_score``, ``mass_on``, ``attention_entropy``), and
  a toy model with one planted previous-token head to test them on;
- the loss at every position of one long text (``per_position_loss``).

The KV cache (its size, what a cache allocates, generation with and without it) is ``helpers.kv_cache``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.model import GPT, GPTConfig

# ---------------------------------------------------------------------------------------------
# Heads: splitting the width and merging it back
# ---------------------------------------------------------------------------------------------


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, n_head, T, C // n_head): each head gets its own slice of the channels."""
    if x.dim() != 3:
        raise ValueError(f"x must be (B, T, C), got shape {tuple(x.shape)}")
    B, T, C = x.shape
    if not isinstance(n_head, int) or n_head < 1 or C % n_head:
        raise ValueError(f"n_head must be a positive int dividing C={C}, got {n_head!r}")
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, n_head, T, hd) -> (B, T, n_head * hd): the heads' outputs side by side again."""
    if x.dim() != 4:
        raise ValueError(f"x must be (B, n_head, T, hd), got shape {tuple(x.shape)}")
    B, nh, T, hd = x.shape
    return x.transpose(1, 2).reshape(B, T, nh * hd)


# ---------------------------------------------------------------------------------------------
# One attention layer by hand
# ---------------------------------------------------------------------------------------------


@dataclass
class AttentionTrace:
    """Every intermediate of one causal self-attention layer (B batch, nh query heads, nkv key/value heads,
    T positions, hd head size). For a GPT nkv = nh; a model with grouped-query attention has fewer."""

    q: torch.Tensor  # (B, nh, T, hd) queries (rotated by their positions in a RoPE model)
    k: torch.Tensor  # (B, nkv, T, hd) keys, as the KV cache stores them
    v: torch.Tensor  # (B, nkv, T, hd) values
    scores: torch.Tensor  # (B, nh, T, T) q·k / sqrt(hd), -inf above the diagonal (the future)
    weights: torch.Tensor  # (B, nh, T, T) softmax of each row: how much query t takes from key s
    heads: torch.Tensor  # (B, nh, T, hd) weights @ v: each head's output
    out: torch.Tensor  # (B, T, C) heads merged, then the output projection: what the layer adds to the stream


_GPT_ATTENTION = ("c_attn", "c_proj", "n_head")  # helpers.model: queries, keys and values from one matrix
_LLAMA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj", "n_head", "n_kv_head")  # helpers.llama


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention modules of a course model, one per layer: the GPT's (``c_attn``, ``c_proj``) or the
    Llama's (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, RoPE tables passed in by the model)."""
    found = [m for m in model.modules()
             if all(hasattr(m, a) for a in _GPT_ATTENTION) or all(hasattr(m, a) for a in _LLAMA_ATTENTION)]
    if not found:
        raise ValueError(f"model must contain attention modules (c_attn/c_proj or q_proj/k_proj/v_proj/o_proj); "
                         f"{type(model).__name__} has none")
    return found


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE written out: channel i and channel i + hd/2 form a pair that turns by the angle whose cos
    and sin are given per position, ``x`` (..., T, hd), ``cos``/``sin`` (T, hd), each angle stored in
    both halves (only the second half of ``sin`` is read, so a table whose first half is negated, as
    ``helpers.llama.rope_tables`` stores it, works the same)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[..., half:], sin[..., half:]  # (T, hd/2): cos and sin of each pair's angle
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)  # a 2-D rotation of every pair (x1, x2)


def attention_by_hand(attn: nn.Module, x: torch.Tensor, cos: torch.Tensor | None = None,
                      sin: torch.Tensor | None = None) -> AttentionTrace:
    """Recompute causal self-attention of module ``attn`` on its input ``x`` (B, T, C), step by step.

    Uses only the module's weight matrices and head counts; ``cos`` and ``sin`` (T, hd) are the
    rotation tables a RoPE model passes to its attention layers. Dropout is not applied (evaluation mode).
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (B, T, C), got shape {tuple(x.shape)}")
    B, T, C = x.shape
    nh = attn.n_head
    if hasattr(attn, "c_attn"):  # GPT-2: one (3C, C) matrix gives queries, keys and values
        q, k, v = (split_heads(part, nh) for part in attn.c_attn(x).split(C, dim=2))  # 3 x (B, nh, T, hd)
        project = attn.c_proj
    else:  # Llama: three matrices; fewer key/value heads than query heads (grouped-query attention)
        if cos is None or sin is None:
            raise ValueError("cos and sin are needed for a RoPE attention module (capture them with the input)")
        q = split_heads(attn.q_proj(x), nh)  # (B, nh, T, hd)
        k = split_heads(attn.k_proj(x), attn.n_kv_head)  # (B, nkv, T, hd)
        v = split_heads(attn.v_proj(x), attn.n_kv_head)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)  # positions enter here, as rotations
        project = attn.o_proj
    group = nh // k.shape[1]  # query heads per key/value head (1 for a GPT)
    k_q, v_q = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # head h reads KV head h // group
    scores = q @ k_q.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, T): every query against every key
    future = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))  # causal mask: a position never sees later ones
    weights = torch.softmax(scores.float(), dim=-1).to(q.dtype)  # each row sums to 1
    heads = weights @ v_q  # (B, nh, T, hd): a weighted average of the values
    out = project(merge_heads(heads))  # (B, T, C)
    return AttentionTrace(q, k, v, scores, weights, heads, out)


@dataclass
class AttentionCall:
    """What one attention module received and returned in a forward pass."""

    x: torch.Tensor  # (B, T, C) its input (the normalised residual stream)
    out: torch.Tensor  # (B, T, C) its output
    cos: torch.Tensor | None = None  # (T, hd) RoPE tables, for a Llama
    sin: torch.Tensor | None = None


def capture_attention_calls(model: nn.Module, idx: torch.Tensor) -> list[AttentionCall]:
    """Run ``model(idx)`` once and record, per layer, what its attention module got and gave. Forward
    hooks do it; they are removed afterwards and the model's result is unchanged."""
    calls: list[AttentionCall] = []
    hooks = []

    def record(mod, args, out):
        extra = [a.detach() if isinstance(a, torch.Tensor) else None for a in args[1:3]]
        calls.append(AttentionCall(args[0].detach(), out.detach(), *(extra if len(extra) == 2 else ())))
    for m in attention_modules(model):
        hooks.append(m.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for h in hooks:
            h.remove()
    return calls


def capture_attention_inputs(model: nn.Module, idx: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """What every attention module got and gave in ``model(idx)``: two lists (one entry per layer) of
    (B, T, C) tensors (``capture_attention_calls`` keeps the RoPE tables as well)."""
    calls = capture_attention_calls(model, idx)
    return [c.x for c in calls], [c.out for c in calls]


def _blocks(model: nn.Module) -> nn.ModuleList:
    for path in ("transformer.h", "model.layers"):  # the GPT's blocks, the Llama's
        try:
            return model.get_submodule(path)
        except AttributeError:
            continue
    raise ValueError(f"model must have blocks at transformer.h or model.layers; {type(model).__name__} has neither")


def block_shapes(model: nn.Module, idx: torch.Tensor, layer: int = 0) -> list[dict]:
    """What happens inside block ``layer`` on ``idx``: one row per submodule in the order they run,
    ``{"module", "weight" (shape or None), "input", "output"}``, recorded with forward hooks."""
    blocks = _blocks(model)
    if not isinstance(layer, int) or not 0 <= layer < len(blocks):
        raise ValueError(f"layer must be an int in [0, {len(blocks) - 1}], got {layer!r}")
    rows: list[dict] = []
    hooks = []
    for name, m in blocks[layer].named_modules():
        if not name or list(m.children()) or isinstance(m, nn.Dropout):  # leaves that compute something
            continue
        weight = getattr(m, "weight", None)

        def record(mod, args, out, name=name, weight=weight):
            rows.append({"module": name, "weight": None if weight is None else tuple(weight.shape),
                         "input": tuple(args[0].shape), "output": tuple(out.shape)})
        hooks.append(m.register_forward_hook(record))
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for h in hooks:
            h.remove()
    return rows


@torch.no_grad()
def attention_traces(model: nn.Module, idx: torch.Tensor) -> list[AttentionTrace]:
    """``attention_by_hand`` for every layer of ``model`` on token ids ``idx`` (B, T), in eval mode."""
    was_training = model.training
    model.eval()
    try:
        calls = capture_attention_calls(model, idx)
        return [attention_by_hand(m, c.x, c.cos, c.sin) for m, c in zip(attention_modules(model), calls)]
    finally:
        model.train(was_training)


def attention_weights(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """The attention maps of every layer and head for one sequence ``idx`` (1, T) or (T,):
    a float tensor (n_layer, n_head, T, T) on the CPU; row t is how query t spreads over keys 0..t."""
    if idx.dim() == 1:
        idx = idx[None]
    if idx.dim() != 2 or idx.shape[0] != 1:
        raise ValueError(f"idx must be one sequence of token ids, (T,) or (1, T), got shape {tuple(idx.shape)}")
    return torch.stack([t.weights[0] for t in attention_traces(model, idx)]).float().cpu()


# ---------------------------------------------------------------------------------------------
# What heads attend to, measured
# ---------------------------------------------------------------------------------------------


def _check_maps(weights: torch.Tensor) -> None:
    if weights.dim() < 2 or weights.shape[-1] != weights.shape[-2] or weights.shape[-1] < 2:
        raise ValueError(f"weights must end in (T, T) with T >= 2, got shape {tuple(weights.shape)}")


def previous_token_score(weights: torch.Tensor) -> torch.Tensor:
    """Mean attention that each query t >= 1 puts on key t - 1; ``weights`` (..., T, T) -> (...).

    1.0 for a head that always looks at the token just before; about 1/t on average for a head
    that spreads evenly."""
    _check_maps(weights)
    return weights.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


def mass_on(weights: torch.Tensor, keys: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
    """Mean attention mass on the key positions marked in ``keys`` (T,) bool, over the query positions
    marked in ``queries`` (T,) bool (default: all); ``weights`` (..., T, T) -> (...)."""
    _check_maps(weights)
    T = weights.shape[-1]
    queries = torch.ones(T, dtype=torch.bool) if queries is None else queries
    for name, m in (("keys", keys), ("queries", queries)):
        if m.shape != (T,) or m.dtype != torch.bool:
            raise ValueError(f"{name} must be a bool tensor of shape ({T},), got {m.dtype} {tuple(m.shape)}")
    if not queries.any():
        raise ValueError("queries must mark at least one position")
    per_query = (weights * keys.to(weights.device, weights.dtype)).sum(-1)  # (..., T)
    return per_query[..., queries.to(weights.device)].mean(-1)


def mean_distance(weights: torch.Tensor) -> torch.Tensor:
    """How far back a head looks on average, in tokens: sum over keys of weight × (t - s), averaged
    over the queries t; ``weights`` (..., T, T) -> (...)."""
    _check_maps(weights)
    T = weights.shape[-1]
    pos = torch.arange(T, device=weights.device)
    distance = (pos[:, None] - pos[None, :]).clamp_min(0).to(weights.dtype)  # (T, T): t - s, 0 for the future
    return (weights * distance).sum(-1).mean(-1)


def uniform_causal(T: int) -> torch.Tensor:
    """The attention map of a head that spreads evenly over everything it may see: (T, T)."""
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    allowed = torch.ones(T, T).tril()
    return allowed / allowed.sum(-1, keepdim=True)


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the attention rows; ``weights`` (..., T, T) -> (...). 0 = one key only."""
    _check_maps(weights)
    return -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean(-1)


def planted_previous_token_model(seed: int = 0, n_layer: int = 3, n_head: int = 4) -> GPT:
    """A toy GPT in which one head, chosen by ``seed``, attends to the previous token; the others keep
    their random initialisation (so they spread their attention almost evenly).

    How it is built: token embeddings are zero and position p's embedding is the one-hot vector e_p,
    so after a LayerNorm position p reads a·e_p - b (the same a, b for every p). Every output
    projection is zero, so every layer reads the same input. The chosen head's keys copy channel p
    (head dim p mod hd, with opposite signs for the two halves of the positions, so the two
    positions sharing a dim do not match each other), and its queries look for the channel of
    p - 1, scaled up so that the softmax is sharp. ``model.planted_head`` is ``(layer, head)``."""
    hd = 8
    C, T = n_head * hd, 2 * hd  # one-hot positions fit into the width
    g = torch.Generator().manual_seed(seed)
    layer, head = divmod(int(torch.randint(0, n_layer * n_head, (1,), generator=g)), n_head)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=T, vocab_size=64, n_layer=n_layer, n_head=n_head, n_embd=C)).eval()
    with torch.no_grad():
        model.transformer.wte.weight.zero_()
        model.transformer.wpe.weight.copy_(torch.eye(T, C))
        for block in model.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
        w, b = model.transformer.h[layer].attn.c_attn.weight, model.transformer.h[layer].attn.c_attn.bias
        q_rows, k_rows = slice(head * hd, (head + 1) * hd), slice(C + head * hd, C + (head + 1) * hd)
        for rows in (q_rows, k_rows):
            w[rows], b[rows] = 0.0, 0.0
        for p in range(T):
            sign = 1.0 if p < hd else -1.0
            w[C + head * hd + p % hd, p] = sign  # the key of position p
            if p + 1 < T:
                w[head * hd + p % hd, p + 1] = 60.0 * sign  # the query of position p + 1 looks for it
    model.planted_head = (layer, head)
    return model


# ---------------------------------------------------------------------------------------------
# Loss at every position of a long text
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def per_position_loss(model: nn.Module, ids: Sequence[int], chunk: int = 256) -> torch.Tensor:
    """Next-token loss at every position of one long sequence: (T - 1,) floats on the CPU, position t
    predicting token t + 1. The output layer runs on ``chunk`` positions at a time, so a large
    vocabulary never needs a (T, V) logit tensor."""
    if len(ids) < 2:
        raise ValueError(f"ids must hold at least 2 token ids, got {len(ids)}")
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    was_training = model.training
    model.eval()
    try:
        idx = torch.tensor([list(ids)], device=model.device)
        h = model.hidden(idx[:, :-1])[0]  # (T-1, C): the final hidden states
        targets = idx[0, 1:]
        losses = [F.cross_entropy(model.lm_head(h[s:s + chunk]).float(), targets[s:s + chunk], reduction="none")
                  for s in range(0, h.shape[0], chunk)]
    finally:
        model.train(was_training)
    return torch.cat(losses).cpu()
