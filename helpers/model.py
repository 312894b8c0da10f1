"""A GPT-2 language model in one short file, with a KV cache for generation.

The architecture is exactly GPT-2's (learned positions, pre-LayerNorm blocks, GELU with the tanh
approximation, tied input/output embeddings), so ``GPT.from_hf`` can take the weights of a
Hugging Face ``GPT2LMHeadModel`` and give the same logits. Module names follow Hugging Face's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from helpers.fused_loss import _autocast_on, linear_cross_entropy  # the output layer and the loss in one
from helpers.interface import CheckpointingSwitch, check_token_ids


@dataclass
class GPTConfig:
    """The architecture hyperparameters of a GPT."""

    block_size: int = 256  # context window: the most positions the model can attend to
    vocab_size: int = 2048
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in the linear layers and LayerNorms, as in GPT-2

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_embd must be divisible by n_head, got n_embd={self.n_embd}, n_head={self.n_head}"
            )
        if not (isinstance(self.dropout, (int, float)) and not isinstance(self.dropout, bool) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bias, bool):
            raise ValueError(f"bias must be True or False, got {self.bias!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown GPTConfig fields {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**data)


def parameter_count(config: GPTConfig) -> int:
    """The closed-form number of parameters of ``GPT(config)`` (tied embeddings counted once)."""
    C, V, T, L, b = config.n_embd, config.vocab_size, config.block_size, config.n_layer, int(config.bias)
    embeddings = V * C + T * C
    norm = C + b * C  # LayerNorm: a gain per channel, and a shift when bias=True
    attention = C * 3 * C + b * 3 * C + C * C + b * C  # c_attn (q, k, v together) + c_proj
    mlp = C * 4 * C + b * 4 * C + 4 * C * C + b * C  # c_fc (expand 4x) + c_proj (back)
    return embeddings + L * (2 * norm + attention + mlp) + norm


class KVCache:
    """Keys and values of every layer for the positions already processed.

    Preallocated for the whole context window, so appending a token writes into a slice instead of
    concatenating tensors (which would copy the whole cache at every step).
    """

    def __init__(self, config: GPTConfig, batch_size: int, device: torch.device, dtype: torch.dtype):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        hd = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_head, config.block_size, hd)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.batch_size = batch_size
        self.max_len = config.block_size
        self.pos = 0  # positions filled so far

    def reset(self) -> None:
        self.pos = 0

    def select(self, rows: torch.Tensor) -> None:
        """Keep only the given batch rows (e.g. when some sequences have finished)."""
        self.k = self.k[:, rows]
        self.v = self.v[:, rows]
        self.batch_size = self.k.shape[1]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.n_head = config.n_head
        self.layer = layer
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hd): each head attends on its own slice of the channels
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
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
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new", as one fused kernel
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)  # pre-LayerNorm: the residual path stays clean
        return x + self.mlp(self.ln_2(x))


class GPT(CheckpointingSwitch, nn.Module):
    """GPT-2: token + position embeddings, ``n_layer`` blocks, a final LayerNorm, tied output head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: one matrix reads and writes tokens
        self._gradient_checkpointing = False
        self.apply(self._init_weights)
        # GPT-2 scales the residual projections so the residual stream does not grow with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> KVCache:
        """An empty KV cache for ``batch_size`` sequences on the model's device."""
        return KVCache(self.config, batch_size, self.device, dtype or self.transformer.wte.weight.dtype)

    def _check_input(self, idx: torch.Tensor, cache: KVCache | None) -> None:
        check_token_ids(idx, cache, self.config)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits ``(B, T, vocab_size)`` for token ids ``idx`` ``(B, T)``.

        With a ``cache``, ``idx`` holds only the new tokens: they take the next positions, attend
        to everything cached before them, and their keys and values are appended to the cache.
        """
        return self.lm_head(self.hidden(idx, cache))  # (B, T, V)

    def hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """The final hidden states ``(B, T, n_embd)``, after ``ln_f``: what the output layer reads."""
        self._check_input(idx, cache)
        B, T = idx.shape
        start = cache.pos if cache is not None else 0
        pos = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        recompute = self._gradient_checkpointing and cache is None and self.training and torch.is_grad_enabled()
        for block in self.transformer.h:
            if recompute:  # keep x only; backward runs the block again (same dropout masks: RNG state is kept)
                x = checkpoint(block, x, None, use_reentrant=False)
            else:
                x = block(x, cache)
        if cache is not None:
            cache.pos += T
        return self.transformer.ln_f(x)

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of predicting ``targets`` (B, T) from ``idx``; -100 marks ignored targets."""
        if not isinstance(targets, torch.Tensor) or targets.shape != idx.shape:
            shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise ValueError(f"targets must be a tensor with the shape of idx {tuple(idx.shape)}, got {shape}")
        if targets.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
            raise ValueError(f"targets must hold integer token ids, got dtype {targets.dtype}")
        targets = targets.long()
        V = self.config.vocab_size
        bad = ((targets < 0) & (targets != -100)) | (targets >= V)
        if bad.any():  # one reduction (a sync on a GPU), for a clear error instead of an index error in gather
            value = int(targets[bad][0])
            raise ValueError(f"targets must be token ids in [0, vocab_size={V}) or -100 (ignored), got {value}")
        head = self.lm_head
        plain_head = (type(head) is nn.Linear and head.bias is None and not head._forward_hooks
                      and not head._forward_pre_hooks and not _autocast_on(idx.device.type))
        if plain_head:  # the usual case: the fused output layer + loss (same result, less memory traffic)
            h = self.hidden(idx)
            return linear_cross_entropy(h.flatten(0, 1), head.weight, targets.flatten())
        # an adapted (LoRA), quantised or hooked output layer, or mixed precision: the plain way
        logits = self(idx)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters; tied tensors count once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def parameter_breakdown(self) -> dict[str, dict[str, int]]:
        """Parameters per component (embeddings, attention, mlp, norms), split into weights and biases.

        "Weights" are the multiplying parameters (matrices, embedding tables and LayerNorm gains),
        "biases" the added ones.
        """
        out = {k: {"weights": 0, "biases": 0} for k in ("embeddings", "attention", "mlp", "norms")}
        for name, p in self.named_parameters():  # a tied tensor is listed once, under wte
            if name.startswith(("transformer.wte", "transformer.wpe")):
                part = "embeddings"
            elif ".attn." in name:
                part = "attention"
            elif ".mlp." in name:
                part = "mlp"
            else:
                part = "norms"
            out[part]["biases" if name.endswith(".bias") else "weights"] += p.numel()
        return out

    @classmethod
    def from_hf(cls, hf: nn.Module | Mapping[str, torch.Tensor], config: GPTConfig | None = None) -> GPT:
        """Our GPT with the weights of a Hugging Face ``GPT2LMHeadModel`` (or of its state dict).

        Hugging Face stores GPT-2's linear layers as ``Conv1D`` with weights ``(in, out)``; ours are
        ``nn.Linear`` with ``(out, in)``, so those matrices are transposed on the way in.
        """
        if isinstance(hf, nn.Module):
            hc = hf.config
            act = getattr(hc, "activation_function", "gelu_new")
            if act not in ("gelu_new", "gelu_pytorch_tanh"):
                raise ValueError(f"activation_function must be gelu_new or gelu_pytorch_tanh, got {act!r}")
            if getattr(hc, "scale_attn_by_inverse_layer_idx", False) or getattr(hc, "reorder_and_upcast_attn", False):
                raise ValueError("scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not GPT-2 defaults")
            if config is None:
                config = GPTConfig(block_size=hc.n_positions, vocab_size=hc.vocab_size, n_layer=hc.n_layer,
                                   n_head=hc.n_head, n_embd=hc.n_embd, bias=True)
            state = hf.state_dict()
        else:
            if config is None:
                raise ValueError("config is required when from_hf is given a state dict (n_head cannot be inferred)")
            state = hf
        model = cls(config)
        ours = model.state_dict()
        transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        new_state = {}
        for key, target in ours.items():
            source = next((k for k in (key, key.removeprefix("transformer.")) if k in state), None)
            if source is None:
                raise ValueError(f"the Hugging Face state dict has no tensor for {key!r}")
            tensor = state[source]
            if key.endswith(transposed):
                tensor = tensor.t()
            if tensor.shape != target.shape:
                raise ValueError(f"{key}: expected shape {tuple(target.shape)}, got {tuple(tensor.shape)}")
            new_state[key] = tensor
        model.load_state_dict(new_state)
        return model


def replace_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` where the dotted ``name`` (e.g. ``transformer.h.0.attn.c_attn``) is in ``model``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)
