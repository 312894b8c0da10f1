"""Architecture hyperparameters made measurable: parameter counts, memory, attention cost, positions.

- GPT-2's published configurations as data, counted in closed form and on the ``meta`` device
  (shapes without storage, so even GPT-2 XL costs no memory);
- the same for the Llama family (grouped-query attention, SwiGLU MLP, RMSNorm, tied or untied embeddings):
  a per-component closed form and a few published configurations (Llama 2 and 3, Mistral, SmolLM2);
- the memory those parameters need for inference and for AdamW training (computed in ``helpers.memory``,
  importable from here too);
- the time and memory of causal self-attention against the sequence length, and a quadratic fit;
- what a model does at positions it never trained on (loss per position).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

# the memory figures live in helpers.memory; they stay importable from here for the notebooks
from helpers.interface import LanguageModel
from helpers.llama import Llama, LlamaConfig
from helpers.memory import (  # noqa: F401
    BYTES_PER_PARAMETER,
    TRAINING_BYTES,
    format_bytes,
    measured_training_bytes,
    memory_table,
    peak_tensor_bytes,
    training_bytes,
    weight_bytes,
)
from helpers.model import GPT, GPTConfig
from helpers.runtime import evaluating, pick_device, synchronize

# ---------------------------------------------------------------------------------------------
# GPT-2 as published (Radford et al. 2019; the Hugging Face configs gpt2, gpt2-medium, -large, -xl)
# ---------------------------------------------------------------------------------------------

_GPT2_SHAPES = {"small": (12, 768, 12), "medium": (24, 1024, 16), "large": (36, 1280, 20), "xl": (48, 1600, 25)}

#: The four GPT-2 sizes: 50257 tokens, 1024 positions, biases everywhere, tied embeddings.
GPT2_CONFIGS: dict[str, GPTConfig] = {
    name: GPTConfig(block_size=1024, vocab_size=50257, n_layer=L, n_head=H, n_embd=C, dropout=0.0, bias=True)
    for name, (L, C, H) in _GPT2_SHAPES.items()
}

#: The exact parameter counts of those models (what the nominal sizes 124M ... 1.5B round).
GPT2_PARAMETERS: dict[str, int] = {
    "small": 124_439_808, "medium": 354_823_168, "large": 774_030_080, "xl": 1_557_611_200,
}

#: How the sizes are usually quoted.
GPT2_NOMINAL: dict[str, str] = {"small": "124M", "medium": "355M", "large": "774M", "xl": "1.5B"}


def component_counts(config: GPTConfig) -> dict[str, dict[str, int]]:
    """Closed-form parameters per component, split like ``GPT.parameter_breakdown()``.

    Weights are matrices, embedding tables and LayerNorm gains; biases the vectors added after them.
    """
    C, V, T, L, b = config.n_embd, config.vocab_size, config.block_size, config.n_layer, int(config.bias)
    return {
        "embeddings": {"weights": V * C + T * C, "biases": 0},  # token table (shared with lm_head) + positions
        "attention": {"weights": L * (C * 3 * C + C * C), "biases": L * b * (3 * C + C)},  # c_attn + c_proj
        "mlp": {"weights": L * (C * 4 * C + 4 * C * C), "biases": L * b * (4 * C + C)},  # c_fc + c_proj
        "norms": {"weights": (2 * L + 1) * C, "biases": (2 * L + 1) * b * C},  # ln_1, ln_2 per block + ln_f
    }


class _SkipRandomInitOnMeta(TorchFunctionMode):
    """Skips random initialisation of meta tensors: there are no values to fill, and the first
    ``normal_`` on the meta device costs seconds (it loads PyTorch's Python reference kernels)."""

    _SKIP = {torch.nn.init.normal_, torch.nn.init.uniform_, torch.nn.init.kaiming_uniform_,
             torch.Tensor.normal_, torch.Tensor.uniform_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor")
        if func in self._SKIP and isinstance(target, torch.Tensor) and target.is_meta:
            return target
        return func(*args, **kwargs)


def meta_model(config: GPTConfig) -> GPT:
    """``GPT(config)`` on the ``meta`` device: every tensor has its shape but no storage.

    The same as ``with torch.device("meta"): GPT(config)``, only faster (see ``_SkipRandomInitOnMeta``).
    """
    with torch.device("meta"), _SkipRandomInitOnMeta():
        return GPT(config)


# ---------------------------------------------------------------------------------------------
# The Llama family: published configurations and their closed form
# ---------------------------------------------------------------------------------------------

#: Where each configuration below comes from: the model's ``config.json`` on the Hugging Face Hub.
LLAMA_FAMILY_SOURCES: dict[str, str] = {
    "SmolLM2-135M": "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct/blob/main/config.json",
    "SmolLM2-360M": "https://huggingface.co/HuggingFaceTB/SmolLM2-360M-Instruct/blob/main/config.json",
    "SmolLM2-1.7B": "https://huggingface.co/HuggingFaceTB/SmolLM2-1.7B-Instruct/blob/main/config.json",
    "Llama-2-7B": "https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json",
    "Mistral-7B": "https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json",
    "Llama-3-8B": "https://huggingface.co/meta-llama/Meta-Llama-3-8B/blob/main/config.json",
}

# config.json field -> LlamaConfig field: max_position_embeddings -> block_size, hidden_size -> n_embd,
# intermediate_size -> n_mlp, num_hidden_layers -> n_layer, num_attention_heads -> n_head,
# num_key_value_heads -> n_kv_head, rope_theta -> rope_base, rms_norm_eps -> norm_eps,
# tie_word_embeddings -> tie_embeddings. (Mistral's sliding attention window adds no parameters.)
_LLAMA_FAMILY = {  # name: (vocab, context, layers, width, mlp, heads, kv heads, rope base, tied)
    "SmolLM2-135M": (49_152, 8192, 30, 576, 1536, 9, 3, 100_000.0, True),
    "SmolLM2-360M": (49_152, 8192, 32, 960, 2560, 15, 5, 100_000.0, True),
    "SmolLM2-1.7B": (49_152, 8192, 24, 2048, 8192, 32, 32, 130_000.0, True),
    "Llama-2-7B": (32_000, 4096, 32, 4096, 11_008, 32, 32, 10_000.0, False),
    "Mistral-7B": (32_000, 32_768, 32, 4096, 14_336, 32, 8, 10_000.0, False),
    "Llama-3-8B": (128_256, 8192, 32, 4096, 14_336, 32, 8, 500_000.0, False),
}

#: Published Llama-family models as ``LlamaConfig`` (norm eps 1e-5 for all of them).
LLAMA_FAMILY_CONFIGS: dict[str, LlamaConfig] = {
    name: LlamaConfig(block_size=T, vocab_size=V, n_layer=L, n_embd=C, n_mlp=M, n_head=H, n_kv_head=KV,
                      rope_base=base, norm_eps=1e-5, tie_embeddings=tied)
    for name, (V, T, L, C, M, H, KV, base, tied) in _LLAMA_FAMILY.items()
}

#: How the sizes are usually quoted.
LLAMA_FAMILY_NOMINAL: dict[str, str] = {
    "SmolLM2-135M": "135M", "SmolLM2-360M": "360M", "SmolLM2-1.7B": "1.7B",
    "Llama-2-7B": "7B", "Mistral-7B": "7B", "Llama-3-8B": "8B",
}


def llama_component_counts(config: LlamaConfig) -> dict[str, dict[str, int]]:
    """Closed-form parameters per component of ``Llama(config)``, split like ``Llama.parameter_breakdown()``.

    With width C, MLP size M, head size d, H query heads and KV key/value heads, per block:
    attention ``C·Hd + 2·C·KVd + Hd·C`` (q, k, v, o: grouped-query attention shrinks k and v),
    SwiGLU MLP ``3·C·M`` (gate, up, down), two RMSNorm gains ``2C``; plus the token table ``V·C``
    (twice when the output layer has its own matrix) and the final norm ``C``. No biases, no position table.
    """
    C, V, L, M = config.n_embd, config.vocab_size, config.n_layer, config.n_mlp
    q_out, kv_out = config.n_head * config.head_dim, config.n_kv_head * config.head_dim
    parts = {
        "embeddings": V * C * (1 if config.tie_embeddings else 2),
        "attention": L * (C * q_out + 2 * C * kv_out + q_out * C),
        "mlp": L * 3 * C * M,
        "norms": (2 * L + 1) * C,
    }
    return {part: {"weights": n, "biases": 0} for part, n in parts.items()}


def llama_parameter_count(config: LlamaConfig) -> int:
    """The total of ``llama_component_counts`` (a tied output matrix counted once)."""
    return sum(p["weights"] + p["biases"] for p in llama_component_counts(config).values())


def llama_meta_model(config: LlamaConfig) -> Llama:
    """``Llama(config)`` on the ``meta`` device: shapes without storage, so an 8B model costs nothing."""
    with torch.device("meta"), _SkipRandomInitOnMeta():
        return Llama(config)


# ---------------------------------------------------------------------------------------------
# Attention cost against sequence length
# ---------------------------------------------------------------------------------------------

def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal self-attention written out: it builds the full (T, T) score matrix per head.

    ``q, k, v``: (B, nh, T, hd) -> (B, nh, T, hd).
    """
    T, hd = q.shape[-2], q.shape[-1]
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, nh, T, T): every query against every key
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(diagonal=1)
    scores = scores.masked_fill(future, float("-inf"))  # a position may not look ahead
    return torch.softmax(scores, dim=-1) @ v  # (B, nh, T, hd)


def fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The same result from PyTorch's fused kernel (what ``helpers.model`` uses)."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


ATTENTION = {"naive": naive_attention, "fused": fused_attention}


def attention_cost(seq_lens: Sequence[int], implementation: str = "naive", n_head: int = 4, head_dim: int = 16,
                   batch_size: int = 1, repeats: int = 3, device: str | torch.device | None = None,
                   seed: int = 0) -> list[dict]:
    """Measure one causal self-attention (forward) for each sequence length.

    Returns rows ``{"seq_len", "seconds" (fastest of ``repeats``), "peak_bytes" (tensors alive at
    once, inputs excluded), "flops" (of the two matrix products q·kᵀ and weights·v, 2·T·T·hd each
    per head, the same for both implementations), "score_bytes" (one (B, nh, T, T) float32 matrix)}``.
    """
    if implementation not in ATTENTION:
        raise ValueError(f"implementation must be one of {sorted(ATTENTION)}, got {implementation!r}")
    if not seq_lens or any(not isinstance(t, int) or t < 1 for t in seq_lens):
        raise ValueError(f"seq_lens must be a non-empty list of ints >= 1, got {seq_lens!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    fn = ATTENTION[implementation]
    device = pick_device(None if device is None else str(device))
    g = torch.Generator().manual_seed(seed)
    rows = []
    for T in seq_lens:
        q, k, v = (torch.randn(batch_size, n_head, T, head_dim, generator=g).to(device) for _ in range(3))
        with torch.no_grad():
            fn(q, k, v)  # warm-up: first calls pay for allocation and kernel selection
            times = []
            for _ in range(repeats):
                synchronize(device)
                start = time.perf_counter()
                fn(q, k, v)
                synchronize(device)
                times.append(time.perf_counter() - start)
            _, peak = peak_tensor_bytes(fn, q, k, v)
        # the fastest repeat: other programs on the machine can only ever make a run slower
        rows.append({"seq_len": T, "seconds": min(times), "peak_bytes": peak,
                     "flops": 4 * batch_size * n_head * T * T * head_dim,
                     "score_bytes": batch_size * n_head * T * T * 4})
    return rows


def fit_quadratic(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least-squares fit ``y = a + b·x + c·x²``; returns the coefficients a, b, c and r2 (1 = perfect fit)."""
    x, y = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    if x.shape != y.shape or x.size < 3:
        raise ValueError(f"xs and ys must have the same length >= 3, got {x.size} and {y.size}")
    c, b, a = np.polyfit(x, y, 2)
    pred = a + b * x + c * x**2
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    return {"a": float(a), "b": float(b), "c": float(c), "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Slope of log(y) against log(x): about 2 when y grows with the square of x, 1 when linearly."""
    x, y = np.log(np.asarray(xs, dtype=float)), np.log(np.asarray(ys, dtype=float))
    return float(np.polyfit(x, y, 1)[0])


# ---------------------------------------------------------------------------------------------
# Positions beyond the training length
# ---------------------------------------------------------------------------------------------

def extend_context(model: GPT, block_size: int, seed: int = 0) -> GPT:
    """A copy of ``model`` with a longer context window; the new position embeddings stay untrained.

    Every weight is copied; rows ``old_block_size ..`` of ``wpe`` keep their random initialisation,
    exactly what a model that never saw those positions has.
    """
    old = model.config.block_size
    if not isinstance(block_size, int) or block_size < old:
        raise ValueError(f"block_size must be an int >= the model's block_size={old}, got {block_size!r}")
    config = GPTConfig(**{**model.config.to_dict(), "block_size": block_size})
    bigger = GPT(config).to(model.device)
    state = model.state_dict()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in bigger.state_dict().items():
            if name == "transformer.wpe.weight":
                p[:old] = state[name]
                # drawn like a fresh model's (N(0, 0.02)), reproducibly
                p[old:] = (0.02 * torch.randn(block_size - old, p.shape[1], generator=g)).to(p)
            else:
                p.copy_(state[name])
    return bigger.train(model.training)


def loss_per_position(model: LanguageModel, tokens: torch.Tensor, seq_len: int | None = None, n_windows: int = 32,
                      batch_size: int = 8) -> torch.Tensor:
    """Mean next-token loss at each position 0..seq_len-1, over ``n_windows`` evenly spaced windows.

    ``tokens`` is a 1-D tensor of ids; position t predicts token t+1 of its window from tokens
    0..t. Returns a float tensor (seq_len,) on the CPU.
    """
    seq_len = model.config.block_size if seq_len is None else seq_len
    if not isinstance(seq_len, int) or not 1 <= seq_len <= model.config.block_size:
        raise ValueError(f"seq_len must be in 1..block_size={model.config.block_size}, got {seq_len!r}")
    if tokens.dim() != 1 or tokens.numel() < seq_len + 1:
        raise ValueError(f"tokens must be a 1-D tensor of at least seq_len+1={seq_len + 1} ids, got {tuple(tokens.shape)}")
    starts = torch.linspace(0, tokens.numel() - seq_len - 1, n_windows).long()
    total = torch.zeros(seq_len, dtype=torch.float64)
    with evaluating(model), torch.no_grad():
        for chunk in starts.split(batch_size):
            idx = torch.stack([tokens[s:s + seq_len + 1] for s in chunk.tolist()]).to(model.device)  # (B, T+1)
            logits = model(idx[:, :-1]).float()  # (B, T, V)
            loss = F.cross_entropy(logits.transpose(1, 2), idx[:, 1:], reduction="none")  # (B, T)
            total += loss.sum(0).double().cpu()
    return (total / len(starts)).float()
