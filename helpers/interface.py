"""The model interface: what the sampler, trainer, LoRA, quantisation, memory and checkpoint tools may use.

Two model families implement it: the course's GPT-2 (``helpers.model.GPT``) and a Llama-family model
(``helpers.llama``). The tools annotate their model parameter as ``LanguageModel`` and use nothing
else, so a model that has these members (and is a ``torch.nn.Module``) passes through all of them.
The protocols are runtime-checkable: ``isinstance(model, LanguageModel)`` checks that the members exist.

This module imports only torch: it sits below the model layer, so every layer may import it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class ModelConfig(Protocol):
    """The architecture hyperparameters a tool may read (``GPTConfig`` has more, which only its model reads)."""

    vocab_size: int  # token ids are in [0, vocab_size)
    block_size: int  # the context length: the most positions one forward pass (or one cache) can hold

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-able values, enough to build the same architecture again."""
        ...


@runtime_checkable
class Cache(Protocol):
    """Keys and values of the positions a model has already read (``helpers.model.KVCache``).

    The model writes into it during a forward pass with ``cache=``; the sampler only makes one,
    narrows it to the rows still generating, and passes it back.
    """

    batch_size: int  # rows (sequences) it holds
    pos: int  # positions filled so far; the next forward pass continues at this position

    def reset(self) -> None:
        """Forget every position (pos = 0), keeping the memory."""
        ...

    def select(self, rows: torch.Tensor) -> None:
        """Keep only batch ``rows`` (a (B',) tensor of row indices, repeats allowed: n copies of a prompt)."""
        ...


@runtime_checkable
class LanguageModel(Protocol):
    """A causal language model over token ids, as the tools see it. It is also a ``torch.nn.Module``.

    Forward: ``model(idx, cache=None)`` maps token ids ``idx`` (B, T), int64, to logits
    (B, T, vocab_size). With a ``cache`` from ``new_cache``, ``idx`` holds only the new tokens, which
    take positions ``cache.pos ..`` and see everything cached before them. ``T`` (plus the cached
    positions) must be at most ``config.block_size``; out-of-range ids or lengths raise ValueError.

    Of ``torch.nn.Module`` the tools use only the ordinary methods listed at the end (parameters
    and sub-modules, state dicts, train/eval mode, moving to a device); LoRA and quantisation swap
    ``nn.Linear`` sub-modules in place, so the model must compute with its sub-modules' outputs
    (never by reading their ``.weight`` directly), except ``loss`` which may take a fused path when
    its output layer is a plain ``nn.Linear``.
    """

    training: bool

    @property
    def config(self) -> ModelConfig:
        """The architecture; tools read ``vocab_size``, ``block_size`` and ``to_dict()``."""
        ...

    @property
    def device(self) -> torch.device:
        """Where the parameters are; inputs must be moved there."""
        ...

    @property
    def gradient_checkpointing(self) -> bool:
        """When True, training forward passes recompute activations during backward (less memory)."""
        ...

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None: ...

    def __call__(self, idx: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size) for ``idx`` (B, T); see the class docstring for ``cache``."""
        ...

    def new_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> Cache:
        """An empty cache for ``batch_size`` sequences on the model's device (``dtype``: the model's)."""
        ...

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (a 0-d tensor) of predicting ``targets`` (B, T) from ``idx`` (B, T); -100 = ignored."""
        ...

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters, shared (tied) tensors counted once."""
        ...

    # -- the torch.nn.Module methods the tools call
    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...
    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, torch.nn.Parameter]]: ...
    def named_modules(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, torch.nn.Module]]: ...
    def get_submodule(self, target: str) -> torch.nn.Module: ...
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...
    def to(self, *args: Any, **kwargs: Any) -> Any: ...


def check_token_ids(idx: torch.Tensor, cache: Cache | None, config: ModelConfig) -> None:
    """The input rule both model families apply: (B, T) integer ids in [0, vocab_size), at most
    ``block_size`` positions counting the cached ones, and a cache holding the same batch."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        shape = tuple(idx.shape) if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise ValueError(f"idx must be a 2-D tensor of token ids (B, T), got {shape}")
    if idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"idx must hold integer token ids, got dtype {idx.dtype}")
    start = cache.pos if cache is not None else 0
    if idx.shape[1] == 0 or start + idx.shape[1] > config.block_size:
        raise ValueError(
            f"sequence length must be in 1..block_size={config.block_size}, got "
            f"{start + idx.shape[1]}" + (f" ({start} cached + {idx.shape[1]} new)" if start else "")
        )
    if cache is not None and cache.batch_size != idx.shape[0]:
        raise ValueError(f"idx has batch size {idx.shape[0]} but the cache holds {cache.batch_size}")
    # One reduction; on a GPU it waits for the device, a price worth a clear error over a crash.
    lo, hi = torch.aminmax(idx)
    if lo < 0 or hi >= config.vocab_size:
        bad = int(hi) if hi >= config.vocab_size else int(lo)
        raise ValueError(f"token ids must be in [0, vocab_size={config.vocab_size}), got {bad}")


def last_logits(model: LanguageModel, idx: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
    """Logits (B, vocab_size) of the last position of ``idx`` (B, T): what a sampler needs after a prompt.

    A model that also has ``hidden(idx, cache)`` (the final hidden states, (B, T, C)) and an output layer
    ``lm_head`` (both course families do) runs that layer on the last position only: after a prompt of T
    tokens it skips T - 1 rows of a (C, vocab_size) product, which is most of the prompt's cost for a large
    vocabulary. Any other model runs its ordinary forward pass.
    """
    hidden, head = getattr(model, "hidden", None), getattr(model, "lm_head", None)
    hooked = isinstance(model, torch.nn.Module) and (model._forward_hooks or model._forward_pre_hooks)
    if callable(hidden) and isinstance(head, torch.nn.Module) and not hooked:
        return head(hidden(idx, cache)[:, -1])
    return model(idx, cache)[:, -1]


class CheckpointingSwitch:
    """The ``gradient_checkpointing`` flag both model families carry (a mix-in for their ``nn.Module``).

    When True, training forward passes keep only each block's input and recompute the block's activations
    during backward: the same gradients, far fewer saved activations, about one extra forward pass.
    """

    _gradient_checkpointing: bool = False

    @property
    def gradient_checkpointing(self) -> bool:
        return self._gradient_checkpointing

    @gradient_checkpointing.setter
    def gradient_checkpointing(self, enabled: bool) -> None:
        if not isinstance(enabled, bool):
            raise ValueError(f"gradient_checkpointing must be True or False, got {enabled!r}")
        self._gradient_checkpointing = enabled
