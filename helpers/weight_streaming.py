"""Why decoding is slow on a CPU: every new token streams every weight matrix from memory once.

To produce one token, a model multiplies each of its weight matrices by one vector: 2 floating-point
operations per weight, and one read of the weight. A processor computes far faster than its memory
delivers bytes, so the time of a token is set by the bytes of the matrices, not by the arithmetic: the
*weight-streaming floor*. Fewer bytes per weight (bf16: 2, int8: 1 plus a scale per row) lower the floor,
if a kernel reads the narrower numbers directly.

``streamed_matrices`` lists what one decoding step reads (a tied embedding counts once, as the output
layer; an untied input table only looks up one row, so it is left out); ``streaming_bytes`` counts their
bytes in a number format; ``matvec_seconds`` measures one matrix-vector pass over all of them.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMATS = ("fp32", "bf16", "int8")


def streamed_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The 2-D weights one decoding step multiplies by a vector, each storage once."""
    lookup_only = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    used_as_matrix = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    seen, out = set(), []
    for p in model.parameters():  # parameters() yields a tied tensor once
        if p.dim() == 2 and id(p) not in seen and (id(p) in used_as_matrix or id(p) not in lookup_only):
            seen.add(id(p))
            out.append(p.detach())
    return out


def _check_format(fmt: object) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")


def streaming_bytes(matrices: list[torch.Tensor], fmt: str = "fp32") -> int:
    """Bytes one pass reads: 4 or 2 per weight, or 1 per weight plus a float32 scale per row for int8."""
    _check_format(fmt)
    per = {"fp32": 4, "bf16": 2, "int8": 1}[fmt]
    return sum(w.numel() * per + (4 * w.shape[0] if fmt == "int8" else 0) for w in matrices)


def _int8_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absmax int8 codes per row and their scales (rows,), as PyTorch's int8 weight-only kernel wants them."""
    w = w.float()
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)  # (rows,)
    codes = w / scale[:, None]  # one float temporary per matrix; rounding and clamping happen in place
    return codes.round_().clamp_(-127, 127).to(torch.int8).contiguous(), scale


@torch.no_grad()
def matvec_seconds(matrices: list[torch.Tensor], fmt: str = "fp32", repeats: int = 5) -> float:
    """Fastest of ``repeats`` passes of one vector through every matrix, with the weights stored as ``fmt``.

    fp32 and bf16 use ``F.linear``; int8 uses PyTorch's int8 weight-only kernel
    (``torch._weight_int8pack_mm``), which reads the int8 codes and scales them per row as it goes.
    A measurement: it depends on the machine and on what else runs on it.
    """
    _check_format(fmt)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if fmt == "int8":
        stored = [_int8_rows(w) for w in matrices]
        run = lambda x, s: torch._weight_int8pack_mm(x, s[0], s[1])  # noqa: E731
        x_dtype = torch.float32
    else:
        x_dtype = torch.float32 if fmt == "fp32" else torch.bfloat16
        stored = [w.to(x_dtype).contiguous() for w in matrices]
        run = lambda x, w: F.linear(x, w)  # noqa: E731
    xs = {w.shape[1]: torch.randn(1, w.shape[1], dtype=x_dtype, device=w.device) for w in matrices}
    times = []
    for _ in range(repeats + 1):  # the first pass warms caches and picks kernels
        start = time.perf_counter()
        for w, s in zip(matrices, stored):
            run(xs[w.shape[1]], s)
        times.append(time.perf_counter() - start)
    return min(times[1:])
