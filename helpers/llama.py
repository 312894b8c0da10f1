"""A Llama-family language model beside the GPT, with the same interface.

What differs from GPT-2 (helpers/model.py), block by block:

- **RMSNorm** instead of LayerNorm: scale each vector by 1 / its root-mean-square, then by a learned gain
  (no mean subtraction, no bias).
- **Rotary position embeddings (RoPE)** instead of a learned position table: queries and keys are rotated
  by an angle proportional to their position, pair of channels by pair of channels, so that their dot
  product depends on the *distance* between two positions. Channel i is paired with channel i + head_dim/2
  (Hugging Face's layout), at frequency ``rope_base ** (-2i / head_dim)``.
- **Grouped-query attention (GQA)**: ``n_head`` query heads share ``n_kv_head`` key/value heads (each group
  of ``n_head // n_kv_head`` query heads reads one), which shrinks the KV cache by that factor.
- **SwiGLU MLP**: ``down(silu(gate(x)) * up(x))``: two input projections, one gating the other.
- No biases anywhere; the output layer may share the token embedding matrix (``tie_embeddings``).

Module names follow Hugging Face's ``LlamaForCausalLM`` (``model.layers.0.self_attn.q_proj``...), so its
state dict loads as it is and LoRA targets such as ``q_proj``/``v_proj`` mean what they mean elsewhere.
To the rest of ``helpers`` the model looks like the GPT: ``model(idx, cache=None)`` gives ``(B, T, V)``
logits, ``loss``, ``new_cache``, ``device``, ``num_parameters``, ``gradient_checkpointing``, and a config
with ``vocab_size`` and ``block_size`` (the context window).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as _nn_module
from torch.utils.checkpoint import checkpoint

from helpers.fused_loss import _autocast_on, linear_cross_entropy
from helpers.interface import CheckpointingSwitch, check_token_ids

_RMS_NORM = getattr(F, "rms_norm", None)  # PyTorch >= 2.4
_SDPA_GQA = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def _rms_rows(x: torch.Tensor, gain: torch.Tensor, root_eps: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """RMSNorm of the rows of ``x`` (B, C), ``x * gain / sqrt(mean(x^2) + eps)``, in four operations for the
    decoding step (PyTorch's ``rms_norm`` takes about ten on a CPU), rearranged as ``sqrt(C) * (x * gain) /
    hypot(|x|, sqrt(eps * C))``; ``root_eps`` is sqrt(eps * C) and ``zero`` a 0, both (1, 1) tensors."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)  # (B, 1)
    return torch.addcdiv(zero, x * gain, torch.hypot(norm, root_eps), value=math.sqrt(x.shape[-1]))


def _global_hooks() -> bool:
    """Whether forward hooks are registered for every module (``nn.modules.module.register_module_forward_hook``)."""
    return bool(_nn_module._global_forward_hooks or _nn_module._global_forward_pre_hooks)


_REGISTRATIONS = [0]  # submodules and parameters registered by any module so far (see Llama._decode_plan)


def _count_registration(*_args: object) -> None:
    _REGISTRATIONS[0] += 1


_nn_module.register_module_module_registration_hook(_count_registration)
_nn_module.register_module_parameter_registration_hook(_count_registration)


class _DecodePlan(NamedTuple):
    layers: list[tuple[torch.Tensor, ...]]  # what the decoding step reads, per layer
    registrations: int  # _REGISTRATIONS when the plan was made
    hooks: list[dict]  # the forward (pre-)hook dicts of every module the step stands in for
    weights: list[torch.Tensor]  # those modules' parameters ...
    pointers: list[int]  # ... and where their memory was


def _positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass
class LlamaConfig:
    """The architecture hyperparameters of a Llama-family model (defaults: a small model for tests)."""

    block_size: int = 256  # context window (context length): the most positions the model can attend to
    vocab_size: int = 2048
    n_layer: int = 4
    n_embd: int = 128  # width of the residual stream
    n_mlp: int = 344  # hidden size of the SwiGLU MLP (gate and up projections)
    n_head: int = 4  # query heads
    n_kv_head: int = 2  # key/value heads; n_head must be a multiple of it (= n_head: plain multi-head)
    head_dim: int | None = None  # None: n_embd // n_head
    rope_base: float = 10_000.0  # RoPE's theta: the slowest rotation has wavelength ~ 2 pi rope_base
    norm_eps: float = 1e-5
    tie_embeddings: bool = True  # the output layer reuses the token embedding matrix
    dropout: float = 0.0  # on attention weights and both residual branches, in training only

    def __post_init__(self) -> None:
        if self.head_dim is None and isinstance(self.n_head, int) and self.n_head > 0 \
                and isinstance(self.n_embd, int) and self.n_embd % self.n_head == 0:
            self.head_dim = self.n_embd // self.n_head
        if self.head_dim is None:
            raise ValueError(f"head_dim is needed when n_embd={self.n_embd!r} is not a multiple of "
                             f"n_head={self.n_head!r}")
        for name in ("block_size", "vocab_size", "n_layer", "n_embd", "n_mlp", "n_head", "n_kv_head", "head_dim"):
            _positive_int(name, getattr(self, name))
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head must be a multiple of n_kv_head, got n_head={self.n_head}, "
                             f"n_kv_head={self.n_kv_head}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even (RoPE rotates pairs of channels), got {self.head_dim}")
        for name, lo in (("rope_base", 1.0), ("norm_eps", 0.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value <= lo:
                raise ValueError(f"{name} must be a finite number > {lo:g}, got {value!r}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"tie_embeddings must be True or False, got {self.tie_embeddings!r}")
        if not (isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool)
                and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def context_length(self) -> int:
        """The context window, under the name model cards use (same as ``block_size``)."""
        return self.block_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> LlamaConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown LlamaConfig fields {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**data)


def parameter_count(config: LlamaConfig) -> int:
    """The closed-form number of parameters of ``Llama(config)`` (a tied output matrix counted once)."""
    C, V, L, M = config.n_embd, config.vocab_size, config.n_layer, config.n_mlp
    q_out, kv_out = config.n_head * config.head_dim, config.n_kv_head * config.head_dim
    attention = C * q_out + 2 * C * kv_out + q_out * C  # q, k, v (fewer KV heads: GQA), o
    mlp = 3 * C * M  # gate, up, down (SwiGLU)
    embeddings = V * C * (1 if config.tie_embeddings else 2)
    return embeddings + L * (attention + mlp + 2 * C) + C  # + two RMSNorm gains per block, one at the end


class LlamaKVCache:
    """Keys and values of every layer for the positions already processed, with the methods of
    ``helpers.model.KVCache``.

    Sized for grouped-query attention (``n_kv_head`` heads, not ``n_head``). The storage grows in steps
    (doubling, up to the context window) instead of being allocated for the whole window at once: a model
    with an 8k context would otherwise hold hundreds of MB for a short chat. Within its capacity, appending
    a token writes into a slice.
    """

    def __init__(self, config: LlamaConfig, batch_size: int, device: torch.device, dtype: torch.dtype,
                 initial: int = 256):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.max_len = config.block_size
        self._shape = (config.n_layer, batch_size, config.n_kv_head, min(initial, self.max_len), config.head_dim)
        # not zeroed: attention reads only the positions written so far, and zeroing megabytes costs a
        # millisecond per generation
        self.k = torch.empty(self._shape, device=device, dtype=dtype)
        self.v = torch.empty(self._shape, device=device, dtype=dtype)
        self.batch_size = batch_size
        self.pos = 0  # positions filled so far
        self.step_buffers: _StepBuffers | None = None  # the decoding step's work space (``Llama._decode_step``)

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def reserve(self, length: int) -> None:
        """Make room for ``length`` positions (at most the context window), keeping what is stored."""
        if length <= self.capacity:
            return
        new = min(self.max_len, max(length, 2 * self.capacity))
        for name in ("k", "v"):
            old = getattr(self, name)
            grown = old.new_empty(*old.shape[:3], new, old.shape[4])
            grown[:, :, :, : self.pos] = old[:, :, :, : self.pos]
            setattr(self, name, grown)

    def reset(self) -> None:
        self.pos = 0

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (e.g. when some sequences have finished)."""
        self.k = self.k[:, rows]
        self.v = self.v[:, rows]
        self.batch_size = self.k.shape[1]
        self.step_buffers = None  # sized for the old batch

    @property
    def nbytes(self) -> int:
        """Bytes the cache holds now."""
        return 2 * self.k.numel() * self.k.element_size()


class _StepBuffers:
    """The tensors one decoding step writes into, made once per cache and batch size, with the views of them
    that each operation reads: the products write into memory that is already there (``out=``) instead of
    asking the allocator for fresh blocks, and no view is made per layer."""

    def __init__(self, config: LlamaConfig, B: int, like: torch.Tensor):
        H, KV, hd = config.n_head, config.n_kv_head, config.head_dim
        G = H // KV
        self.batch_size, self.dtype, self.device = B, like.dtype, like.device
        self.qkv = like.new_empty(B, (H + 2 * KV) * hd)  # the packed q/k/v product
        heads = self.qkv.view(B, H + 2 * KV, hd)
        self.v = heads[:, H + KV:]  # (B, KV, hd)
        turned = like.new_empty(B, H + KV, hd)  # queries and keys after RoPE
        # RoPE's product reads the q/k rows and writes the turned ones: matrices when B = 1, batches otherwise
        self.rope_in, self.rope_out = (heads[0, : H + KV], turned[0]) if B == 1 else (heads[:, : H + KV], turned)
        self.q = turned[:, :H].view(KV, G, hd) if B == 1 else None  # (B * KV, G, hd) when B = 1
        self.k = turned[:, H:]  # (B, KV, hd)
        self.y = like.new_empty(B * KV, G, hd)  # the attention's output
        self.y_rows = self.y.view(B, H * hd)
        self.gate_up = like.new_empty(B, 2 * config.n_mlp)
        self.gate, self.up = self.gate_up.chunk(2, dim=1)  # (B, n_mlp) each
        self.zero = like.new_zeros(1, 1)  # broadcasts to the rows of RMSNorm and to the attention scores
        self.root_eps = like.new_full((1, 1), math.sqrt(config.norm_eps * config.n_embd))

    def fits(self, B: int, like: torch.Tensor) -> bool:
        return self.batch_size == B and self.dtype == like.dtype and self.device == like.device


class RMSNorm(nn.Module):
    """x / rms(x) * gain, computed in float32 whatever the input's dtype."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype == torch.float32 and _RMS_NORM is not None:  # one fused operation instead of seven
            return _RMS_NORM(x, (x.shape[-1],), self.weight, self.eps)
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dtype)


def rope_tables(head_dim: int, base: float, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin (T, head_dim) of the rotation angles ``position * base ** (-2i / head_dim)``, float32.

    Each frequency appears twice, for channel i and channel i + head_dim / 2, the pair it rotates; the sin
    of the first half is negated, as ``apply_rope`` wants it.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float()
                               / head_dim))  # (head_dim / 2,)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, head_dim / 2)
    sin = angles.sin()
    return torch.cat([angles, angles], dim=-1).cos(), torch.cat([-sin, sin], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair (x1, x2) = (i, i + d/2) of ``x`` (B, heads, T, d) by its angle a:
    (x1 cos a - x2 sin a, x2 cos a + x1 sin a). Rolling the channels by d/2 puts x2 beside x1 and x1
    beside x2, and the signed sin carries the minus: three operations."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


def packed_weight(*linears: nn.Module) -> torch.Tensor | None:
    """One (sum of rows, in) matrix over the weights of plain bias-free ``nn.Linear`` layers whose weights lie
    one after the other in one block of memory (``Llama.pack_weights`` arranges that), without copying; None
    when they do not (a LoRA or quantised layer, a hook, weights moved or replaced), and the caller then runs
    the layers one by one. The view carries no gradient to the layers' weights: for inference only."""
    if any(type(m) is not nn.Linear for m in linears):
        return None
    first = linears[0].weight
    storage = first.untyped_storage().data_ptr()
    rows, expected = 0, first.data_ptr()
    for m in linears:
        w = m.weight
        if m.bias is not None or m._forward_hooks or m._forward_pre_hooks or w.dtype != first.dtype \
                or w.device != first.device or not w.is_contiguous() or w.shape[1] != first.shape[1] \
                or w.untyped_storage().data_ptr() != storage or w.data_ptr() != expected:
            return None  # not one block of one storage: reading across would leave the first weight's memory
        rows += w.shape[0]
        expected += w.numel() * w.element_size()
    return first.detach().as_strided((rows, first.shape[1]), (first.shape[1], 1))


class LlamaAttention(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        C, hd = config.n_embd, config.head_dim
        self.q_proj = nn.Linear(C, config.n_head * hd, bias=False)
        self.k_proj = nn.Linear(C, config.n_kv_head * hd, bias=False)
        self.v_proj = nn.Linear(C, config.n_kv_head * hd, bias=False)
        self.o_proj = nn.Linear(config.n_head * hd, C, bias=False)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: LlamaKVCache | None
                ) -> torch.Tensor:
        B, T, _ = x.shape
        H, KV, hd = self.n_head, self.n_kv_head, self.head_dim
        packed = None if torch.is_grad_enabled() else packed_weight(self.q_proj, self.k_proj, self.v_proj)
        if packed is not None:
            # inference with the three matrices stored one after the other (Llama.pack_weights): one matrix
            # product gives queries, keys and values, and one rotation turns queries and keys together
            qkv = F.linear(x, packed).view(B, T, H + 2 * KV, hd)  # (B, T, H + 2 KV, hd)
            qk = apply_rope(qkv[:, :, : H + KV], cos[:, None], sin[:, None])  # (B, T, H + KV, hd)
            q, k = qk[:, :, :H].transpose(1, 2), qk[:, :, H:].transpose(1, 2)  # (B, H, T, hd), (B, KV, T, hd)
            v = qkv[:, :, H + KV:].transpose(1, 2)  # (B, KV, T, hd)
        else:
            q = self.q_proj(x).view(B, T, H, hd).transpose(1, 2)  # (B, H, T, hd)
            k = self.k_proj(x).view(B, T, KV, hd).transpose(1, 2)  # (B, KV, T, hd)
            v = self.v_proj(x).view(B, T, KV, hd).transpose(1, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask, causal = None, True
        if cache is not None:
            start, end = cache.pos, cache.pos + T
            cache.k[self.layer, :, :, start:end] = k
            cache.v[self.layer, :, :, start:end] = v
            k, v = cache.k[self.layer, :, :, :end], cache.v[self.layer, :, :, :end]
            if start > 0:
                causal = False
                if T > 1:  # new query i sees every cached key and the new keys up to itself
                    mask = torch.ones(T, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        drop = self.dropout if self.training else 0.0
        if T == 1 and mask is None:
            # one new position sees every key: the G query heads of a group become G rows of one
            # attention against their shared key/value head, with no copies of k and v
            y = F.scaled_dot_product_attention(q.reshape(B, KV, H // KV, hd), k, v, dropout_p=drop)
        elif _SDPA_GQA:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal,
                                               enable_gqa=KV != H)
        else:  # older PyTorch: give every query head its own copy of its group's keys and values
            k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal)
        y = y.reshape(B, H, T, hd).transpose(1, 2).reshape(B, T, H * hd)  # heads side by side again
        y = self.o_proj(y)
        return F.dropout(y, drop, self.training) if drop else y


class LlamaMLP(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(config.n_embd, config.n_mlp, bias=False)
        self.up_proj = nn.Linear(config.n_embd, config.n_mlp, bias=False)
        self.down_proj = nn.Linear(config.n_mlp, config.n_embd, bias=False)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = None if torch.is_grad_enabled() else packed_weight(self.gate_proj, self.up_proj)
        if packed is not None:  # one matrix product for gate and up (Llama.pack_weights)
            gate, up = F.linear(x, packed).chunk(2, dim=-1)  # 2 x (B, T, n_mlp)
            y = self.down_proj(F.silu(gate) * up)
        else:
            y = self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return F.dropout(y, self.dropout, self.training) if self.dropout else y


class LlamaBlock(nn.Module):
    def __init__(self, config: LlamaConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.self_attn = LlamaAttention(config, layer)
        self.post_attention_layernorm = RMSNorm(config.n_embd, config.norm_eps)
        self.mlp = LlamaMLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: LlamaKVCache | None
                ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


def _decode_layers(x: torch.Tensor, plan: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                       torch.Tensor, torch.Tensor]],
                   k_new: list[torch.Tensor], v_new: list[torch.Tensor], keys: list[torch.Tensor],
                   values: list[torch.Tensor], qkv: torch.Tensor, rope_in: torch.Tensor, rope_out: torch.Tensor,
                   k: torch.Tensor, v: torch.Tensor, q: torch.Tensor | None, y: torch.Tensor, y_rows: torch.Tensor,
                   gate_up: torch.Tensor, gate: torch.Tensor, up: torch.Tensor, rotation: torch.Tensor,
                   zero: torch.Tensor, root_eps: torch.Tensor, n_head: int, n_kv_head: int, scale: float
                   ) -> torch.Tensor:
    """The layers of one decoding step (``Llama._decode_step``): ``x`` (B, C) in, the last layer's output out,
    written in place into ``x``; the other tensors are the plan's weights, the cache's slots and the step's
    buffers. Plain PyTorch calls only, so that TorchScript can compile it (``_layer_loop``)."""
    for layer in range(len(plan)):
        gain1, qkv_t, o_t, gain2, gate_up_t, down_t = plan[layer]
        torch.mm(_rms_rows(x, gain1, root_eps, zero), qkv_t, out=qkv)
        torch.matmul(rope_in, rotation, out=rope_out)  # queries and keys, rotated together
        k_new[layer].copy_(k)
        v_new[layer].copy_(v)
        # G = H / KV query heads share a key/value head: G rows of one attention, in a batch of B * KV
        if q is None:  # B > 1: the queries of each row are not one block of memory, so copy
            qs = rope_out[:, :n_head].reshape(-1, n_head // n_kv_head, rope_out.shape[-1])
        else:
            qs = q
        scores = torch.baddbmm(zero, qs, keys[layer], beta=0.0, alpha=scale)  # (B * KV, G, S)
        torch.bmm(scores.softmax(-1), values[layer], out=y)  # (B * KV, G, hd)
        x.addmm_(y_rows, o_t)  # x + attention output
        torch.mm(_rms_rows(x, gain2, root_eps, zero), gate_up_t, out=gate_up)
        x.addmm_(F.silu(gate).mul_(up), down_t)  # x + MLP output
    return x


_LAYER_LOOP: list = []  # [the compiled _decode_layers, or _decode_layers itself], made on first use


def _layer_loop() -> Callable[..., torch.Tensor]:
    """``_decode_layers`` compiled by TorchScript, which runs the ~15 operations per layer without Python
    between them (about 7 % of a SmolLM2 decoding step on a 2-core CPU); ``_decode_layers`` itself, with the
    same results, where TorchScript cannot compile it (no source files, or a PyTorch without it)."""
    if not _LAYER_LOOP:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PyTorch 2.x marks TorchScript deprecated
                _LAYER_LOOP.append(torch.jit.script(_decode_layers))
        except Exception:  # noqa: BLE001 - any failure to compile leaves the plain function, which is correct
            _LAYER_LOOP.append(_decode_layers)
    return _LAYER_LOOP[0]


class Llama(CheckpointingSwitch, nn.Module):
    """A Llama-family decoder: token embeddings, ``n_layer`` blocks, a final RMSNorm, the output layer."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise ValueError(f"config must be a LlamaConfig, got {type(config).__name__}")
        self.config = config
        self.model = nn.ModuleDict(dict(
            embed_tokens=nn.Embedding(config.vocab_size, config.n_embd),
            layers=nn.ModuleList([LlamaBlock(config, i) for i in range(config.n_layer)]),
            norm=RMSNorm(config.n_embd, config.norm_eps),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self._gradient_checkpointing = False
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None  # cos, sin for every position, float32
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)) and m.weight.device.type != "meta":
                nn.init.normal_(m.weight, mean=0.0, std=0.02)

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> LlamaKVCache:
        """An empty KV cache for ``batch_size`` sequences on the model's device."""
        return LlamaKVCache(self.config, batch_size, self.device, dtype or self.model.embed_tokens.weight.dtype)

    @torch.no_grad()
    def pack_weights(self) -> Llama:
        """Store each layer's query, key and value matrices one after the other in one block of memory, and its
        gate and up matrices in another, so that inference reads each group with one matrix product (fewer,
        larger products are faster on a CPU). Parameters keep their names, shapes, values and identity; training,
        LoRA and quantisation see the same model. Returns the model."""
        for block in self.model.layers:
            for group in ((block.self_attn.q_proj, block.self_attn.k_proj, block.self_attn.v_proj),
                          (block.mlp.gate_proj, block.mlp.up_proj)):
                if any(type(m) is not nn.Linear for m in group) or packed_weight(*group) is not None:
                    continue  # an adapted or quantised layer keeps its own storage; a packed one stays
                joined = torch.cat([m.weight for m in group])  # (sum of rows, in)
                for m, part in zip(group, joined.split([m.weight.shape[0] for m in group])):
                    m.weight.data = part
        return self

    def _check_input(self, idx: torch.Tensor, cache: LlamaKVCache | None) -> None:
        check_token_ids(idx, cache, self.config)

    def _rope_slice(self, start: int, T: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin (T, head_dim) for positions start..start+T-1, computed once per device in float32."""
        device = self.device
        if self._rope is None or self._rope[0].device != device:
            # built outside inference mode even when generation asks first: training later reuses the tables,
            # and autograd refuses to save tensors made in inference mode
            with torch.inference_mode(False):
                pos = torch.arange(self.config.block_size, device=device)
                self._rope = rope_tables(self.config.head_dim, self.config.rope_base, pos)
        cos, sin = self._rope[0][start:start + T], self._rope[1][start:start + T]
        return cos.to(dtype), sin.to(dtype)

    def forward(self, idx: torch.Tensor, cache: LlamaKVCache | None = None) -> torch.Tensor:
        """Logits ``(B, T, vocab_size)`` for token ids ``idx`` ``(B, T)``.

        With a ``cache``, ``idx`` holds only the new tokens: they take the next positions, attend to
        everything cached before them, and their keys and values are appended to the cache.
        """
        return self.lm_head(self.hidden(idx, cache))  # (B, T, V)

    def hidden(self, idx: torch.Tensor, cache: LlamaKVCache | None = None) -> torch.Tensor:
        """The final hidden states ``(B, T, n_embd)``, after the last RMSNorm: what the output layer reads."""
        self._check_input(idx, cache)
        T = idx.shape[1]
        if cache is not None and T == 1 and not self.training and not torch.is_grad_enabled() \
                and not _autocast_on(idx.device.type):
            plan = self._decode_plan()
            if plan is not None:
                return self._decode_step(idx, cache, plan)
        start = cache.pos if cache is not None else 0
        if cache is not None:
            cache.reserve(start + T)
        x = self.model.embed_tokens(idx)  # (B, T, C)
        cos, sin = self._rope_slice(start, T, x.dtype)
        recompute = self._gradient_checkpointing and cache is None and self.training and torch.is_grad_enabled()
        for block in self.model.layers:
            if recompute:
                x = checkpoint(block, x, cos, sin, None, use_reentrant=False)
            else:
                x = block(x, cos, sin, cache)
        if cache is not None:
            cache.pos += T
        return self.model.norm(x)

    def _decode_plan(self) -> list[tuple[torch.Tensor, ...]] | None:
        """Per layer, the tensors one decoding step reads: (input norm gain, packed q/k/v matrix, o matrix,
        post-attention norm gain, packed gate/up matrix, down matrix), the matrices as transposed views (in,
        out), so that ``x @ view`` is the layer's output; None when any layer is not the plain float32 layer
        ``pack_weights`` prepared (adapted, quantised, hooked, another dtype), and ``hidden`` then runs the
        blocks.

        The plan is kept and reused while nothing it depends on changed: no module or parameter was registered
        anywhere (a replaced layer or weight, counted by ``_REGISTRATIONS``), no forward hook was added to a module
        it stands in for, and every weight still lives in the same memory. Checking that touches far fewer objects
        than walking the model, which matters: between two weight products each object touched is a cache miss.
        """
        if _global_hooks():
            return None
        cached = self.__dict__.get("_plan")
        if cached is not None and cached.registrations == _REGISTRATIONS[0] and not any(cached.hooks) \
                and list(map(torch.Tensor.data_ptr, cached.weights)) == cached.pointers:
            return cached.layers
        self.__dict__["_plan"] = None
        model = self.model
        mods = [self, model, model.embed_tokens, model.norm]
        for block in model.layers:
            attn, mlp = block.self_attn, block.mlp
            mods += [block, attn, mlp, block.input_layernorm, block.post_attention_layernorm,
                     attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj]
        hooks = [d for m in mods for d in (m._forward_hooks, m._forward_pre_hooks)]
        if any(hooks):
            return None  # a hook must see its module run
        if type(model.norm) is not RMSNorm or type(model.embed_tokens) is not nn.Embedding:
            return None  # (the step adds into the embedding's output in place)
        layers = []
        for block in model.layers:
            attn, mlp = block.self_attn, block.mlp
            n1, n2 = block.input_layernorm, block.post_attention_layernorm
            qkv = packed_weight(attn.q_proj, attn.k_proj, attn.v_proj)
            gate_up = packed_weight(mlp.gate_proj, mlp.up_proj)
            down, o = mlp.down_proj, attn.o_proj
            if qkv is None or gate_up is None or qkv.dtype != torch.float32 \
                    or any(type(m) is not nn.Linear or m.bias is not None for m in (o, down)) \
                    or any(type(n) is not RMSNorm for n in (n1, n2)):
                return None
            layers.append((n1.weight.detach(), qkv.t(), o.weight.detach().t(), n2.weight.detach(), gate_up.t(),
                           down.weight.detach().t()))
        weights = [p for m in mods for p in m._parameters.values() if p is not None]
        self.__dict__["_plan"] = _DecodePlan(layers, _REGISTRATIONS[0], hooks, weights,
                                             list(map(torch.Tensor.data_ptr, weights)))
        return layers

    def _decode_step(self, idx: torch.Tensor, cache: LlamaKVCache, plan: list[tuple[torch.Tensor, ...]]
                     ) -> torch.Tensor:
        """``hidden`` for one new position per sequence, (B, 1) -> (B, 1, C), at inference.

        The same arithmetic as the blocks, in as few PyTorch operations as possible. Decoding one token is a
        matrix-vector product per weight matrix, and on a CPU each small operation between two products costs
        several microseconds, more than its arithmetic, because the product before it has pushed the
        operation's code and data out of the caches. So: the residual additions ride in the products, in place
        (``addmm_``); the products write into buffers kept with the cache (``_StepBuffers``), read through views
        made once; the matrices are read through transposed views made once (``_decode_plan``); queries and keys
        rotate in one product with this position's rotation matrix; RMSNorm takes four operations, attention
        three; the cache is sliced once per step, not per layer; no module is called; and the layers run in
        ``_decode_layers``, compiled by TorchScript where it can be, so that no Python runs between the
        operations. ``tests/test_llama.py`` checks that the logits are those of the blocks.
        """
        B = idx.shape[0]
        H, KV, hd = self.config.n_head, self.config.n_kv_head, self.config.head_dim
        pos = cache.pos
        cache.reserve(pos + 1)
        x = self.model.embed_tokens(idx[:, 0])  # (B, C), a new tensor the residual additions may write into
        buf = cache.step_buffers
        if buf is None or not buf.fits(B, x):
            buf = cache.step_buffers = _StepBuffers(self.config, B, x)
        zero, root_eps = buf.zero, buf.root_eps
        rotation = self._rotation(pos, x.dtype)  # (hd, hd): a row times it turns each channel pair by its angle
        k_new, v_new = cache.k[:, :, :, pos].unbind(0), cache.v[:, :, :, pos].unbind(0)  # per layer (B, KV, hd)
        keys = cache.k[:, :, :, : pos + 1].flatten(1, 2).transpose(2, 3).unbind(0)  # per layer (B * KV, hd, S)
        values = cache.v[:, :, :, : pos + 1].flatten(1, 2).unbind(0)  # per layer (B * KV, S, hd)
        x = _layer_loop()(x, plan, list(k_new), list(v_new), list(keys), list(values), buf.qkv, buf.rope_in,
                          buf.rope_out, buf.k, buf.v, buf.q, buf.y, buf.y_rows, buf.gate_up, buf.gate, buf.up,
                          rotation, zero, root_eps, H, KV, hd ** -0.5)
        cache.pos += 1
        return _rms_rows(x, self.model.norm.weight, root_eps, zero)[:, None]  # (B, 1, C)

    def _rotation(self, pos: int, dtype: torch.dtype) -> torch.Tensor:
        """(head_dim, head_dim) matrix R with x @ R = apply_rope(x) at position ``pos``: column i holds cos on
        the diagonal and the signed sin in row (i + head_dim / 2) mod head_dim, the partner channel."""
        cos, sin = self._rope_slice(pos, 1, dtype)  # (1, hd) each
        hd = cos.shape[1]
        partner = self.__dict__.get("_partner")
        if partner is None or partner.device != cos.device or partner.dtype != dtype:
            partner = torch.eye(hd, device=cos.device, dtype=dtype).roll(hd // 2, dims=0)  # 1 at (i + hd/2, i)
            self.__dict__["_partner"] = partner
        return torch.addcmul(torch.diag(cos[0]), partner, sin)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of predicting ``targets`` (B, T) from ``idx``; -100 marks ignored targets."""
        if targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
        head = self.lm_head
        plain_head = (type(head) is nn.Linear and head.bias is None and not head._forward_hooks
                      and not head._forward_pre_hooks and not _autocast_on(idx.device.type))
        if plain_head:  # the fused output layer + loss: the (N, V) logits never exist all at once
            h = self.hidden(idx)
            return linear_cross_entropy(h.flatten(0, 1), head.weight, targets.flatten())
        logits = self(idx)  # an adapted (LoRA), quantised or hooked output layer, or mixed precision
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters; tied tensors count once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def parameter_breakdown(self) -> dict[str, dict[str, int]]:
        """Parameters per component (embeddings, attention, mlp, norms), as for the GPT (no biases here)."""
        out = {k: {"weights": 0, "biases": 0} for k in ("embeddings", "attention", "mlp", "norms")}
        for name, p in self.named_parameters():
            if name.startswith(("model.embed_tokens", "lm_head")):
                part = "embeddings"
            elif ".self_attn." in name:
                part = "attention"
            elif ".mlp." in name:
                part = "mlp"
            else:
                part = "norms"
            out[part]["weights"] += p.numel()
        return out

    @classmethod
    def from_hf(cls, hf: nn.Module) -> Llama:
        """Our model with the weights of a Hugging Face ``LlamaForCausalLM`` (same names, same layout)."""
        hc = hf.config
        if getattr(hc, "hidden_act", "silu") != "silu" or getattr(hc, "attention_bias", False) \
                or getattr(hc, "mlp_bias", False):
            raise ValueError("only SiLU activations and bias-free linear layers are supported")
        scaling = getattr(hc, "rope_scaling", None)
        rope = getattr(hc, "rope_parameters", None) or {}
        if scaling and scaling.get("rope_type", scaling.get("type", "default")) != "default":
            raise ValueError(f"rope_scaling {scaling!r} is not supported (plain RoPE only)")
        base = rope.get("rope_theta", getattr(hc, "rope_theta", None))
        config = LlamaConfig(
            block_size=hc.max_position_embeddings, vocab_size=hc.vocab_size, n_layer=hc.num_hidden_layers,
            n_embd=hc.hidden_size, n_mlp=hc.intermediate_size, n_head=hc.num_attention_heads,
            n_kv_head=hc.num_key_value_heads, head_dim=getattr(hc, "head_dim", None) or
            hc.hidden_size // hc.num_attention_heads, rope_base=float(base), norm_eps=float(hc.rms_norm_eps),
            tie_embeddings=bool(hc.tie_word_embeddings),
        )
        model = cls(config)
        state = hf.state_dict()
        ours = model.state_dict()
        missing = [k for k in ours if k not in state]
        if missing:
            raise ValueError(f"the Hugging Face state dict has no tensor for {missing[0]!r}")
        model.load_state_dict({k: state[k] for k in ours})
        return model
