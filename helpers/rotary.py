"""Rotary position embeddings (RoPE) on the course's GPT: positions as rotations of queries and keys.

GPT-2 adds a learned vector per position to each token (``wpe``): it has exactly ``block_size``
of them and nothing for position ``block_size``. Llama-family models (SmolLM2 among them) instead
rotate each pair of query/key channels by an angle proportional to the position. The score q·k of
two rotated vectors then depends only on how far apart the two positions are, and any position
can be computed, trained or not.

``rotary_gpt(config)`` is the course's GPT with its attention layers replaced by ``RotaryAttention``
and the position table switched off (zero and frozen), so the two kinds of position can be trained
the same way and compared. The rotation follows the "rotate half" layout of Hugging Face's Llama, as
``helpers.llama`` does; the angles here are computed in float64, so that "only the distance counts"
holds to 1e-9 even at position 100,000 (``helpers.llama.rope_tables`` computes them in float32, as
Hugging Face does, which is exact enough inside a trained window; a test checks both agree).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from helpers.model import GPT, CausalSelfAttention, GPTConfig, KVCache, replace_submodule


def rotary_angles(positions: torch.Tensor, head_dim: int, base: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotation angles, each (T, head_dim): channel pair i turns by
    position × base^(-2i / head_dim), fast for the first pairs and slowly for the last."""
    if not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be an even int >= 2, got {head_dim!r}")
    if not base > 1:
        raise ValueError(f"base must be > 1, got {base!r}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
    angles = positions.double()[:, None] * inv_freq[None, :]  # (T, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hd): channel i pairs with channel i + hd/2
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, positions: torch.Tensor, base: float = 10_000.0) -> torch.Tensor:
    """Rotate ``x`` (..., T, head_dim) by the angles of ``positions`` (T,): lengths stay the same."""
    if x.shape[-2] != positions.shape[0]:
        raise ValueError(f"positions must have one entry per row of x ({x.shape[-2]}), got {positions.shape[0]}")
    cos, sin = rotary_angles(positions.cpu(), x.shape[-1], base)
    cos, sin = cos.to(x.device, x.dtype), sin.to(x.device, x.dtype)
    half = x.shape[-1] // 2
    rotated_half = torch.cat([-x[..., half:], x[..., :half]], dim=-1)  # (x1, x2) -> (-x2, x1)
    return x * cos + rotated_half * sin


class RotaryAttention(CausalSelfAttention):
    """The course's causal self-attention with queries and keys rotated by their positions."""

    def __init__(self, config: GPTConfig, layer: int, base: float = 10_000.0):
        super().__init__(config, layer)
        self.base = base

    def forward(self, x: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, hd).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        start = cache.pos if cache is not None else 0  # the model advances cache.pos after all layers
        positions = torch.arange(start, start + T)
        q, k = apply_rotary(q, positions, self.base), apply_rotary(k, positions, self.base)
        mask, causal = None, True
        if cache is not None:  # the cache keeps rotated keys: each key is rotated once, by its own position
            end = start + T
            cache.k[self.layer, :, :, start:end] = k
            cache.v[self.layer, :, :, start:end] = v
            k, v = cache.k[self.layer, :, :, :end], cache.v[self.layer, :, :, :end]
            if start > 0:
                causal = False
                if T > 1:
                    mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


def rotary_gpt(config: GPTConfig, base: float = 10_000.0) -> GPT:
    """A GPT whose positions come only from rotating queries and keys (the learned table is zero
    and frozen). ``config.block_size`` is the longest sequence it accepts, not what it trains on."""
    model = GPT(config)
    for i, block in enumerate(model.transformer.h):
        rotary = RotaryAttention(config, i, base)
        rotary.load_state_dict(block.attn.state_dict())  # keep GPT-2's initialisation
        replace_submodule(model, f"transformer.h.{i}.attn", rotary)
    with torch.no_grad():
        model.transformer.wpe.weight.zero_()
    model.transformer.wpe.weight.requires_grad_(False)
    return model
