"""LoRA: fine-tune a big frozen matrix through a small low-rank update.

A linear layer computes ``y = x W^T + b`` with ``W`` of shape ``(out, in)``. LoRA keeps ``W``
frozen and learns ``delta_W = scaling * B @ A`` with ``A`` ``(r, in)`` and ``B`` ``(out, r)``:

    y = x W^T + b + scaling * (x A^T) B^T,      scaling = alpha / r   (rslora: alpha / sqrt(r))

``B`` starts at zero, so at the start the update is zero whatever the rank; ``alpha / r`` is the original
paper's heuristic for keeping the update's size comparable across ranks. Rank-stabilised LoRA (Kalajdzievski,
2023; PEFT's ``use_rslora=True``) scales by ``alpha / sqrt(r)`` instead, because with ``alpha / r`` a high
rank's update, and its gradients, shrink with ``r`` and the adapter learns more slowly.

Only ``r * (in + out)`` numbers are trained instead of ``in * out``. ``B`` starts at zero, so the
adapted model starts out computing exactly what the base model computes. After training the update
can be folded into ``W`` (``merge_lora``), so that inference costs nothing extra.

Which layers get an adapter is chosen by *target names*, matched against each linear layer's
dotted name (``transformer.h.0.attn.c_attn``) component by component: a target matches when its
components appear as a consecutive run of the layer name's components. So

    "c_attn"       the fused q/k/v projection of every block
    "c_proj"       both output projections (attention's and the MLP's), as in PEFT
    "c_fc"         the MLP's expanding layer
    "attn"         every linear inside attention (c_attn and attn.c_proj)
    "mlp"          every linear inside the MLP (c_fc and mlp.c_proj)
    "mlp.c_proj"   only the MLP's output projection;  "h.3" every linear of block 3

A "linear layer" is an ``nn.Linear`` or any module that declares ``in_features`` and
``out_features`` and maps ``(..., in) -> (..., out)`` (such as ``helpers.quantize.QuantLinear``,
which is how LoRA on a quantised base works).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
import torch.nn as nn

from helpers.model import replace_submodule


class LoRALinear(nn.Module):
    """A frozen linear layer ``base`` plus a trainable low-rank update ``scaling * B @ A``."""

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float = 0.0, rslora: bool = False):
        super().__init__()
        _check_hyper(rank, alpha, dropout, rslora)
        if not _is_linear(base):
            raise ValueError(f"base must be a linear layer (in_features/out_features), got {type(base).__name__}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha, self.rslora = rank, float(alpha), rslora
        self.scaling = lora_scaling(rank, alpha, rslora)
        device = next((t.device for t in (*base.parameters(), *base.buffers())), None)
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=device))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=device))  # (out, r)
        # Same start as PEFT: A uniform in +-1/sqrt(in) (kaiming-uniform with a=sqrt(5)), B = 0.
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.lora_A, -bound, bound)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False  # True once delta_W lives inside base.weight

    def delta_weight(self) -> torch.Tensor:
        """The update ``scaling * B @ A`` as a full ``(out, in)`` matrix."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # (..., out)
        if self.merged:
            return y
        # Two thin matmuls, (..., in) -> (..., r) -> (..., out): the full delta_W is never built.
        # The adapter keeps its own dtype (float32 beside a bf16 or quantised base).
        delta = (self.dropout(x).to(self.lora_A.dtype) @ self.lora_A.t() @ self.lora_B.t()) * self.scaling
        return y + delta.to(y.dtype)

    def _base_weight(self) -> torch.Tensor:
        weight = self.base._parameters.get("weight")  # a real parameter, not a computed property
        if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
            raise ValueError(
                f"cannot merge into a {type(self.base).__name__} base layer; merging needs a float weight "
                "(a quantised base keeps its adapter separate)"
            )
        return weight

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight; the LoRA path is then skipped."""
        if self.merged:
            raise ValueError("merged is already True: this layer was merged before; call unmerge() first")
        weight = self._base_weight()
        weight += self.delta_weight().to(weight.dtype)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of the base weight (the inverse of ``merge``)."""
        if not self.merged:
            raise ValueError("merged is False: there is nothing to unmerge")
        weight = self._base_weight()
        weight -= self.delta_weight().to(weight.dtype)
        self.merged = False

    def extra_repr(self) -> str:
        rs = ", rslora=True" if self.rslora else ""
        return f"rank={self.rank}, alpha={self.alpha:g}{rs}, scaling={self.scaling:g}, merged={self.merged}"


def lora_scaling(rank: int, alpha: float, rslora: bool = False) -> float:
    """The factor in front of ``B @ A``: ``alpha / rank``, or ``alpha / sqrt(rank)`` with ``rslora`` (as PEFT)."""
    _check_hyper(rank, alpha, 0.0, rslora)
    return alpha / math.sqrt(rank) if rslora else alpha / rank


def _check_hyper(rank: object, alpha: object, dropout: object, rslora: object = False) -> None:
    if not isinstance(rslora, bool):
        raise TypeError(f"rslora must be True or False, got {rslora!r}")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
        raise ValueError(f"rank must be a positive int, got {rank!r}")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < math.inf:
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")


def _is_linear(module: nn.Module) -> bool:
    if isinstance(module, LoRALinear):
        return False
    if isinstance(module, nn.Linear):
        return True
    return isinstance(getattr(module, "in_features", None), int) and isinstance(getattr(module, "out_features", None), int)


def target_matches(name: str, target: str) -> bool:
    """True when ``target``'s dotted components form a consecutive run inside ``name``'s."""
    parts, want = name.split("."), target.split(".")
    n = len(want)
    return any(parts[i:i + n] == want for i in range(len(parts) - n + 1))


def matching_layers(model: nn.Module, targets: str | Iterable[str]) -> list[str]:
    """Names of the linear layers of ``model`` that ``targets`` select (see the module docstring).

    Raises ``ValueError`` naming any target that matches no linear layer.
    """
    if not isinstance(targets, (str, Iterable)):
        raise ValueError(f"targets must be a layer name or a list of layer names, got {targets!r}")
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets must be a non-empty list of layer names, got {targets!r}")
    linears = [n for n, m in model.named_modules() if n and _is_linear(m) and not _inside_lora(model, n)]
    for t in targets:
        if not any(target_matches(n, t) for n in linears):
            short = sorted({n.split(".")[-1] for n in linears})
            raise ValueError(
                f"targets: {t!r} matches no linear layer; try names like {short} or 'attn', 'mlp'"
            )
    return [n for n in linears if any(target_matches(n, t) for t in targets)]


def _inside_lora(model: nn.Module, name: str) -> bool:
    parts = name.split(".")
    return any(isinstance(model.get_submodule(".".join(parts[:i])), LoRALinear) for i in range(1, len(parts)))


def apply_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16.0,
    targets: str | Iterable[str] = ("c_attn",),
    dropout: float = 0.0,
    rslora: bool = False,
) -> nn.Module:
    """Wrap the ``targets`` linear layers of ``model`` in ``LoRALinear``, in place; freeze the rest.

    ``rslora=True`` scales the update by ``alpha / sqrt(rank)`` instead of ``alpha / rank`` (PEFT's
    ``use_rslora``). Afterwards only the LoRA matrices have ``requires_grad=True``. Returns ``model``.
    """
    _check_hyper(rank, alpha, dropout, rslora)
    if lora_layers(model):
        raise ValueError("model already has LoRA layers; call remove_lora(model) first")
    names = matching_layers(model, targets)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        replace_submodule(model, name, LoRALinear(model.get_submodule(name), rank, alpha, dropout, rslora))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's LoRA layers by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def _require_lora(model: nn.Module) -> dict[str, LoRALinear]:
    layers = lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers; call apply_lora(model, ...) first")
    return layers


def _untie_shared(model: nn.Module, layers: Mapping[str, LoRALinear]) -> None:
    """Give a base layer its own copy of a weight it shares with another module, before merging.

    GPT's lm_head *is* the token embedding matrix; merging an lm_head adapter into the shared tensor
    would change the embeddings too. After the copy the merged model stores that matrix twice.
    """
    counts: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        counts[id(p)] = counts.get(id(p), 0) + 1
    for m in layers.values():
        weight = m.base._parameters.get("weight")
        if weight is not None and counts.get(id(weight), 0) > 1:
            m.base.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight (outputs unchanged); raises if already merged.

    A base weight tied to another layer (GPT's lm_head and token embedding) is first untied, so
    the other layer keeps its values.
    """
    layers = _require_lora(model)
    merged = [n for n, m in layers.items() if m.merged]
    if merged:
        raise ValueError(f"model is already merged ({merged[0]} has merged=True); call unmerge_lora first")
    _untie_shared(model, layers)
    for m in layers.values():
        m.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Take every adapter back out of its base weight, so adapters can be trained or swapped again."""
    layers = _require_lora(model)
    if not all(m.merged for m in layers.values()):
        raise ValueError("model is not merged (merged=False); there is nothing to unmerge")
    for m in layers.values():
        m.unmerge()
    return model


def remove_lora(model: nn.Module, merge: bool = True) -> nn.Module:
    """Replace each ``LoRALinear`` by its base layer, in place; with ``merge`` the update is kept in it.

    The result has the plain module structure again (so it can be saved as an ordinary checkpoint).
    Parameters stay frozen; call ``requires_grad_(True)`` to train the whole model.
    """
    layers = _require_lora(model)
    if merge:
        _untie_shared(model, {n: m for n, m in layers.items() if not m.merged})
    for name, m in layers.items():
        if merge and not m.merged:
            m.merge()
        elif not merge and m.merged:
            m.unmerge()
        replace_submodule(model, name, m.base)
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter alone: ``{layer.lora_A, layer.lora_B, layer.scaling}`` tensors (copies).

    A few kilobytes to megabytes, against the whole model: store one per task and swap them.
    """
    out = {}
    for name, m in _require_lora(model).items():
        out[f"{name}.lora_A"] = m.lora_A.detach().clone()
        out[f"{name}.lora_B"] = m.lora_B.detach().clone()
        out[f"{name}.scaling"] = torch.tensor(m.scaling)
    return out


@torch.no_grad()
def load_lora_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Put an adapter saved by ``lora_state_dict`` into ``model`` (same targets and rank)."""
    layers = _require_lora(model)
    if any(m.merged for m in layers.values()):
        raise ValueError("model is merged; call unmerge_lora(model) before loading another adapter")
    expected = {f"{n}.{k}" for n in layers for k in ("lora_A", "lora_B", "scaling")}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"state does not fit this model's LoRA layers: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, m in layers.items():  # check everything first, so a bad state changes nothing
        a, b = state[f"{name}.lora_A"], state[f"{name}.lora_B"]
        if a.shape != m.lora_A.shape or b.shape != m.lora_B.shape:
            raise ValueError(
                f"state: {name} has rank {a.shape[0]} (A {tuple(a.shape)}, B {tuple(b.shape)}) but the model "
                f"has rank {m.rank} (A {tuple(m.lora_A.shape)}, B {tuple(m.lora_B.shape)})"
            )
        scaling = float(state[f"{name}.scaling"])
        if not 0 < scaling < math.inf:
            raise ValueError(f"state: {name}.scaling must be a finite number > 0 (alpha / rank, or alpha / sqrt(rank) with rslora), got {scaling!r}")
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
            raise ValueError(f"state: {name}.lora_A / lora_B hold inf or NaN values")
    for name, m in layers.items():
        m.lora_A.copy_(state[f"{name}.lora_A"])
        m.lora_B.copy_(state[f"{name}.lora_B"])
        m.scaling = float(state[f"{name}.scaling"])
    return model


@dataclass
class ParameterReport:
    """How many parameters train and how many stay frozen (tied tensors counted once)."""

    trainable: int
    total: int

    @property
    def frozen(self) -> int:
        return self.total - self.trainable

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"trainable {self.trainable:,} of {self.total:,} parameters ({100 * self.fraction:.2f}%)"


def trainable_parameters(model: nn.Module) -> ParameterReport:
    """Count trainable (``requires_grad``) and all parameters of ``model``."""
    params = list(model.parameters())  # parameters() lists a tied tensor once
    return ParameterReport(sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
