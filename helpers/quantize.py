"""Weight quantisation written out: int8 absmax (per tensor / per channel) and group-wise int4.

Quantising stores each weight as a small integer *code* plus a few floats that say how codes map
back to numbers:

- absmax (symmetric), for a tensor or for each output channel (row):
  ``scale = max|w| / qmax`` with ``qmax = 2**(bits-1) - 1`` (127 for int8, 7 for int4),
  ``code = round(w / scale)`` in ``[-qmax, qmax]``, ``w ~ code * scale``.
  One large outlier makes ``scale`` large, and every small weight sharing that scale is rounded
  to a few codes around zero: the reason per-channel and group-wise scales help.
- group-wise with zero points (asymmetric), each row cut into groups of ``group_size`` weights:
  ``scale = (max - min) / (2**bits - 1)``, ``zero = round(-min / scale)``,
  ``code = round(w / scale) + zero`` in ``[0, 2**bits - 1]``, ``w ~ (code - zero) * scale``.
  The range always includes 0 so that a zero weight (and the padding of a last short group)
  stays exactly zero.

Rounding to the nearest code means every weight is off by at most ``scale / 2`` (tested).
4-bit codes are packed two per byte; 3-bit and 2-bit codes densely, every 8 codes in 3 or 2 bytes
(``pack_bits``). At 2 bits the absmax scheme has only the codes -1, 0, 1. Scales are kept in float32 and zero points in uint8, so the
sizes reported here are honest for this layout (libraries often use float16 scales, a little
smaller). The quantised layers dequantise their weight on the fly and compute in floating point:
this saves memory, not arithmetic.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers.memory import model_size_bytes  # noqa: F401  (part of this module's API)
from helpers.model import replace_submodule

BITS = (2, 3, 4, 8)
_CHUNK = 1 << 22  # weights quantised at once (16 MB of float32); larger matrices go in slices of rows
PACKED_BITS = (2, 3)  # stored by pack_bits; 4 bits by pack_int4, 8 bits one per byte
SCHEMES = ("per_tensor", "per_channel", "group")


def _check(bits: object, scheme: object, group_size: object) -> None:
    if bits not in BITS or isinstance(bits, bool):
        raise ValueError(f"bits must be one of {BITS}, got {bits!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if scheme == "group" and (not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 2):
        raise ValueError(f"group_size must be an int >= 2 for scheme='group', got {group_size!r}")


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Pack codes in ``[0, 15]`` two per byte along the last dim (padded to even length)."""
    if codes.shape[-1] % 2:
        codes = F.pad(codes, (0, 1))
    codes = codes.to(torch.uint8)
    return codes[..., 0::2] | (codes[..., 1::2] << 4)  # low nibble: even index, high: odd


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of ``pack_int4`` (length comes back even; callers crop)."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack((low, high), dim=-1).flatten(-2)


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack codes in ``[0, 2**bits - 1]`` densely along the last dim (bits 2 or 3; padded to a multiple of 8).

    Each run of 8 codes becomes one little-endian integer of ``8 * bits`` bits, code i in bits
    ``bits*i .. bits*i + bits - 1``, written out as ``bits`` bytes: (..., n) -> (..., ceil(n / 8) * bits).
    """
    if bits not in PACKED_BITS:
        raise ValueError(f"bits must be one of {PACKED_BITS} for pack_bits, got {bits!r}")
    shifts = torch.arange(8, device=codes.device, dtype=torch.int32)
    runs = F.pad(codes.to(torch.int32), (0, -codes.shape[-1] % 8)).unflatten(-1, (-1, 8))  # (..., n/8, 8)
    word = (runs << (bits * shifts)).sum(-1, dtype=torch.int32)  # (..., n/8): at most 24 bits used
    out = (word.unsqueeze(-1) >> (8 * shifts[:bits])) & 0xFF  # (..., n/8, bits)
    return out.to(torch.uint8).flatten(-2)


def unpack_bits(packed: torch.Tensor, bits: int) -> torch.Tensor:
    """The inverse of ``pack_bits``, as int32 (length comes back a multiple of 8; callers crop)."""
    if bits not in PACKED_BITS:
        raise ValueError(f"bits must be one of {PACKED_BITS} for unpack_bits, got {bits!r}")
    shifts = torch.arange(8, device=packed.device, dtype=torch.int32)
    word = (packed.to(torch.int32).unflatten(-1, (-1, bits)) << (8 * shifts[:bits])).sum(-1, dtype=torch.int32)
    return ((word.unsqueeze(-1) >> (bits * shifts)) & (2**bits - 1)).flatten(-2)  # (..., n/8 * 8)


def _store(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned codes in ``[0, 2**bits - 1]`` in their stored form (packed below 8 bits)."""
    if bits == 4:
        return pack_int4(codes)
    if bits in PACKED_BITS:
        return pack_bits(codes, bits)
    return codes.to(torch.uint8)


@dataclass
class QuantizedTensor:
    """Integer codes of a 2-D weight ``(rows, cols)`` and what turns them back into floats."""

    data: torch.Tensor  # int8 codes (absmax, 8 bit) or uint8 (packed 2/3/4-bit, or 8-bit group codes)
    scale: torch.Tensor  # float32: () per tensor, (rows, 1) per channel, (rows, groups, 1) per group
    zero: torch.Tensor | None  # uint8 zero points (rows, groups, 1) for the group scheme
    shape: tuple[int, int]
    bits: int
    scheme: str
    group_size: int | None = None

    @property
    def nbytes(self) -> int:
        """Bytes actually stored: codes + scales + zero points."""
        extra = self.zero.numel() * self.zero.element_size() if self.zero is not None else 0
        return self.data.numel() * self.data.element_size() + self.scale.numel() * self.scale.element_size() + extra

    def codes(self) -> torch.Tensor:
        """The integer codes, unpacked, as int32 ``(rows, padded cols)``."""
        if self.bits in PACKED_BITS:
            codes = unpack_bits(self.data, self.bits)
        else:
            codes = unpack_int4(self.data) if self.bits == 4 else self.data
        codes = codes.to(torch.int32)
        if self.bits < 8 and self.scheme != "group":
            codes = codes - 2 ** (self.bits - 1)  # symmetric codes below 8 bits were stored shifted to >= 1
        return codes

    def dequantize(self) -> torch.Tensor:
        """The float32 weight these codes stand for, shape ``self.shape``."""
        rows, cols = self.shape
        codes = self.codes()
        if self.scheme == "group":
            codes = codes[:, : -(-cols // self.group_size) * self.group_size].view(rows, -1, self.group_size)
            w = (codes - self.zero.to(torch.int32)).float() * self.scale  # (rows, groups, group_size)
            return w.flatten(1)[:, :cols]
        return codes[:, :cols].float() * self.scale


@torch.no_grad()
def quantize_tensor(w: torch.Tensor, bits: int = 8, scheme: str = "per_channel", group_size: int = 64) -> QuantizedTensor:
    """Quantise a 2-D weight ``(rows, cols)``; rows are output channels (or embedding rows)."""
    _check(bits, scheme, group_size)
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or not w.is_floating_point():
        raise ValueError(f"w must be a 2-D float tensor, got {getattr(w, 'shape', type(w).__name__)}")
    w = w.detach().float()
    bad = ~torch.isfinite(w)
    if bad.any():  # one inf makes its scale inf (NaN codes for the row); a NaN gives a meaningless scale
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"w must hold finite numbers only: {int(bad.sum())} of {w.numel()} are inf or NaN, "
                         f"the first at [{row}, {col}] = {w[row, col].item()}")
    rows, cols = w.shape
    if scheme != "per_tensor" and rows * cols > _CHUNK:
        # rows are quantised independently: a large matrix (SmolLM2's 49,152 x 576 token table) in slices of
        # rows, so that the float temporaries below never take several copies of the whole matrix
        step = max(1, _CHUNK // cols)
        parts = [quantize_tensor(w[i:i + step], bits, scheme, group_size) for i in range(0, rows, step)]
        zero = None if parts[0].zero is None else torch.cat([q.zero for q in parts])
        return QuantizedTensor(torch.cat([q.data for q in parts]), torch.cat([q.scale for q in parts]), zero,
                               (rows, cols), bits, scheme, parts[0].group_size)
    if scheme == "group":
        n_groups = -(-cols // group_size)
        g = F.pad(w, (0, n_groups * group_size - cols)).view(rows, n_groups, group_size)
        lo = g.amin(dim=-1, keepdim=True).clamp(max=0.0)  # the range includes 0
        hi = g.amax(dim=-1, keepdim=True).clamp(min=0.0)
        levels = 2**bits - 1
        scale = (hi - lo) / levels
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero group: any scale works
        zero = torch.round(-lo / scale).clamp(0, levels)
        codes = (torch.round(g / scale) + zero).clamp(0, levels).to(torch.uint8).flatten(1)
        data = _store(codes, bits) if bits < 8 else codes
        return QuantizedTensor(data, scale, zero.to(torch.uint8), (rows, cols), bits, scheme, group_size)
    qmax = 2 ** (bits - 1) - 1
    absmax = w.abs().amax() if scheme == "per_tensor" else w.abs().amax(dim=1, keepdim=True)  # () or (rows, 1)
    scale = absmax / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round(w / scale).clamp(-qmax, qmax)
    data = _store(codes + 2 ** (bits - 1), bits) if bits < 8 else codes.to(torch.int8)
    return QuantizedTensor(data, scale, None, (rows, cols), bits, scheme, None)


class _QuantWeight(nn.Module):
    """Shared part of the quantised layers: codes and scales as buffers, ``weight`` dequantised."""

    def __init__(self, q: QuantizedTensor):
        super().__init__()
        self.register_buffer("qdata", q.data)
        self.register_buffer("scale", q.scale)
        self.register_buffer("zero", q.zero)
        self.shape, self.bits, self.scheme, self.group_size = q.shape, q.bits, q.scheme, q.group_size

    @property
    def qweight(self) -> QuantizedTensor:
        return QuantizedTensor(self.qdata, self.scale, self.zero, self.shape, self.bits, self.scheme, self.group_size)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight, recomputed at every access (that is what saves memory)."""
        return self.qweight.dequantize().to(self.scale.dtype)

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.scheme == "group" else ""
        return f"shape={self.shape}, bits={self.bits}, scheme={self.scheme}{group}"


class QuantLinear(_QuantWeight):
    """An inference-only ``nn.Linear`` whose weight is stored as integer codes."""

    def __init__(self, q: QuantizedTensor, bias: torch.Tensor | None = None):
        super().__init__(q)
        self.out_features, self.in_features = q.shape
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, scheme: str = "per_channel", group_size: int = 64) -> QuantLinear:
        return cls(quantize_tensor(linear.weight, bits, scheme, group_size), linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


class QuantEmbedding(_QuantWeight):
    """An inference-only ``nn.Embedding`` whose table is stored as integer codes (one row per token)."""

    def __init__(self, q: QuantizedTensor):
        super().__init__(q)
        self.num_embeddings, self.embedding_dim = q.shape

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.weight)


def quantize_model(
    model: nn.Module,
    bits: int = 8,
    scheme: str = "per_channel",
    group_size: int = 64,
    include_embeddings: bool = True,
    inplace: bool = False,
) -> nn.Module:
    """A copy of ``model`` (or ``model`` itself with ``inplace``) with quantised weight matrices.

    Every ``nn.Linear`` becomes a ``QuantLinear``. With ``include_embeddings`` every ``nn.Embedding``
    becomes a ``QuantEmbedding`` too, and a linear layer tied to an embedding (GPT's ``lm_head``)
    reuses the embedding's codes, so the tie survives. Without it the embeddings stay float32 and
    ``lm_head`` gets its own quantised copy, as ``torch.ao.quantization.quantize_dynamic`` does.
    LayerNorms and biases stay float32.
    """
    _check(bits, scheme, group_size)
    if not isinstance(include_embeddings, bool):
        raise ValueError(f"include_embeddings must be True or False, got {include_embeddings!r}")
    out = model if inplace else copy.deepcopy(model)
    shared: dict[int, QuantEmbedding] = {}  # id(float weight) -> its quantised embedding
    # names rather than modules: each float layer is freed once its quantised replacement is in place, so
    # quantising a large model in place never holds the float and the quantised weights in full at once
    names = [name for name, m in out.named_modules() if isinstance(m, (nn.Embedding, nn.Linear))]
    if include_embeddings:
        for name in names:
            m = out.get_submodule(name)
            if isinstance(m, nn.Embedding):
                if not torch.isfinite(m.weight).all():
                    raise ValueError(f"{name}.weight holds inf or NaN values; a quantised copy would be NaN")
                q = QuantEmbedding(quantize_tensor(m.weight, bits, scheme, group_size))
                shared[id(m.weight)] = q
                replace_submodule(out, name, q)
    for name in names:
        m = out.get_submodule(name)
        if isinstance(m, nn.Linear):
            if not torch.isfinite(m.weight).all():
                raise ValueError(f"{name}.weight holds inf or NaN values; a quantised copy would be NaN")
            tied = shared.get(id(m.weight))
            if tied is not None:  # the same codes and scales serve both ends of the model
                q = QuantLinear(tied.qweight, m.bias)  # qweight holds tied's own buffer tensors
            else:
                q = QuantLinear.from_linear(m, bits, scheme, group_size)
            replace_submodule(out, name, q)
    return out


@torch.no_grad()
def dequantize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """The float model back: every ``QuantLinear``/``QuantEmbedding`` becomes ``nn.Linear``/``nn.Embedding``
    holding its dequantised weight (what the quantised model computed with, rounding errors included).

    Layers that shared codes (GPT's ``lm_head`` and token embedding) share one float weight again.
    """
    out = model if inplace else copy.deepcopy(model)
    floats: dict[int, nn.Parameter] = {}  # id(qdata buffer) -> its float weight, to keep ties
    modules = list(out.named_modules())
    for name, m in modules:  # embeddings first, so that a tied lm_head finds the embedding's weight
        if isinstance(m, QuantEmbedding):
            emb = nn.Embedding(*m.shape, device=m.scale.device)
            emb.weight = floats.setdefault(id(m.qdata), nn.Parameter(m.weight.clone()))
            replace_submodule(out, name, emb)
    for name, m in modules:
        if isinstance(m, QuantLinear):
            lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, device=m.scale.device)
            lin.weight = floats.setdefault(id(m.qdata), nn.Parameter(m.weight.clone()))
            if m.bias is not None:
                lin.bias = nn.Parameter(m.bias.clone())
            replace_submodule(out, name, lin)
    return out


# ---------------------------------------------------------------------------------------------
# Speed: what a product with quantised weights costs on this processor
# ---------------------------------------------------------------------------------------------

#: The products ``product_seconds`` times: plain float32; int8 codes read by PyTorch's int8 weight-only
#: kernel; int8 and group-wise int4 codes dequantised to float32 first and then multiplied (what
#: ``QuantLinear`` does: it saves memory, not time).
PRODUCTS = ("fp32", "int8 kernel", "int8 dequantise + fp32", "int4 dequantise + fp32")


def int8_product(x: torch.Tensor, q: QuantizedTensor) -> torch.Tensor:
    """``x @ W.T`` for ``x`` (N, cols) float32 and ``W`` stored as int8 per-channel codes (``quantize_tensor(w, 8,
    "per_channel")``), by PyTorch's int8 weight-only kernel: it reads the codes as they are and multiplies each
    output by its row's scale, so no float32 copy of the weight is ever built. Returns (N, rows) float32."""
    if q.bits != 8 or q.scheme != "per_channel":
        raise ValueError(f"q must hold 8-bit per_channel codes, got bits={q.bits}, scheme={q.scheme!r}")
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != q.shape[1]:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be (N, {q.shape[1]}), got {shape}")
    return torch._weight_int8pack_mm(x.float().contiguous(), q.data, q.scale.reshape(-1))


def dequantised_product(x: torch.Tensor, q: QuantizedTensor) -> torch.Tensor:
    """``x @ W.T`` with ``W`` rebuilt in float32 from its codes first (dequantise on the fly), any scheme."""
    return F.linear(x, q.dequantize().to(x.dtype))


@torch.no_grad()
def product_seconds(w: torch.Tensor, batch: int = 1, repeats: int = 5, group_size: int = 64) -> dict[str, float]:
    """Fastest of ``repeats`` timed runs of ``x @ w.T`` for ``x`` (batch, cols), per entry of ``PRODUCTS``.

    batch 1 is a decoding step (one vector per matrix); a larger batch is a prompt or a training step.
    A measurement: it depends on the processor, its memory and whatever else runs at the same time.
    """
    if not isinstance(w, torch.Tensor) or w.dim() != 2 or not w.is_floating_point():
        raise ValueError(f"w must be a 2-D float tensor, got {getattr(w, 'shape', type(w).__name__)}")
    for name, value in (("batch", batch), ("repeats", repeats)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    w = w.detach().float().contiguous()
    x = torch.randn(batch, w.shape[1], generator=torch.Generator().manual_seed(0)).to(w.device)
    q8 = quantize_tensor(w, 8, "per_channel")
    q4 = quantize_tensor(w, 4, "group", group_size)
    runs = {"fp32": lambda: F.linear(x, w), "int8 kernel": lambda: int8_product(x, q8),
            "int8 dequantise + fp32": lambda: dequantised_product(x, q8),
            "int4 dequantise + fp32": lambda: dequantised_product(x, q4)}
    best = {}
    for name, run in runs.items():
        run()  # warm-up: caches, kernel choice
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    return best
