"""The output layer and the cross-entropy loss in one pass over chunks of rows, never holding all the logits.

Both model families (``helpers.model``, ``helpers.llama``) compute their training loss with it; it is
tested against ``F.cross_entropy`` and finite differences in tests/test_model.py.
"""

from __future__ import annotations

import torch


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # PyTorch < 2.4 takes no device argument
        return torch.is_autocast_enabled() or (device_type == "cpu" and torch.is_autocast_cpu_enabled())


def _loss_chunk_rows(vocab_size: int, device_type: str) -> int:
    """Rows of logits the fused loss handles at a time: about 2 MB of float32 on a CPU, 64 MB elsewhere.

    On a CPU a large fresh tensor costs a page fault per 4 kB page the first time it is written (the
    allocator hands big blocks back to the system), so small chunks that the allocator reuses, and that stay
    in cache, are much faster. A GPU wants larger matrix products; the chunks still bound the memory."""
    elements = 2**19 if device_type == "cpu" else 2**24
    return max(16, elements // max(vocab_size, 1))


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``logits = h @ weight.T`` against ``targets``, without ever holding all the logits.

    The plain way (``F.cross_entropy(F.linear(h, weight), targets)``) builds an ``(N, V)`` logit tensor, keeps
    a log-softmax of that size for the backward pass, and there writes two more. Here the rows go through
    in chunks of ``chunk_rows``: each chunk's logits become its softmax, subtracting one at each target makes
    that the gradient of the logits (``softmax - one_hot``), and two matrix products turn it into the
    chunk's share of the gradients of ``h`` and ``weight`` at once. Only those gradients, the sizes of ``h``
    and ``weight``, wait for the backward pass, which just scales them. When no gradient is wanted the
    chunks compute the loss alone.

    Same result as the plain way (tested against it and against finite differences); rows whose target is
    ``ignore_index`` count for nothing, and like ``F.cross_entropy`` the mean over no valid target is NaN.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                chunk_rows: int | None = None, with_grad: bool = True) -> torch.Tensor:
        n = h.shape[0]
        chunk = chunk_rows or _loss_chunk_rows(weight.shape[0], h.device.type)
        valid = targets != ignore_index
        safe = targets.masked_fill(~valid, 0)
        count = valid.sum()
        # (inside forward grad mode is always off: whether gradients are wanted comes in as with_grad)
        need_h, need_w = ctx.needs_input_grad[0] and with_grad, ctx.needs_input_grad[1] and with_grad
        grad_h = torch.empty(h.shape, dtype=h.dtype, device=h.device) if need_h else None
        # the weight's gradient is a sum over chunks: accumulate it in float32 at least
        acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        total = torch.zeros((), dtype=torch.float32 if h.dtype != torch.float64 else h.dtype, device=h.device)
        all_valid = h.device.type == "cpu" and bool(valid.all())  # (on a CPU the check is free, elsewhere a sync)
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            h_c, safe_c, valid_c = h[rows], safe[rows, None], valid[rows, None]
            logp = torch.log_softmax(h_c @ weight.t(), dim=1)  # (rows, V); the logits are freed at once
            picked = logp.gather(1, safe_c).to(total.dtype)  # summed in float32 even for a bf16 model
            total += picked.sum() if all_valid else torch.where(valid_c, picked, 0.0).sum()
            if not (need_h or need_w):
                continue
            g = logp.exp_()  # the softmax, in place
            g.scatter_add_(1, safe_c, -valid_c.to(g.dtype))  # softmax - one-hot: the gradient of the logits
            if not all_valid:
                g.mul_(valid_c)  # ignored rows give no gradient
            if need_h:
                torch.mm(g, weight, out=grad_h[rows])
            if need_w:
                if g.dtype == acc:
                    grad_w.addmm_(g.t(), h_c)
                else:
                    grad_w += (g.t() @ h_c).to(acc)
        loss = -total / count.to(total.dtype)
        inv = 1.0 / count.to(total.dtype)  # a tensor: no sync; NaN gradients when nothing counts, as F.cross_entropy
        ctx.save_for_backward(*(x if x is not None else torch.empty(0) for x in (grad_h, grad_w)), inv)
        ctx.has, ctx.weight_dtype = (need_h, need_w), weight.dtype
        return loss.to(h.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        grad_h, grad_w, inv = ctx.saved_tensors
        scale = grad * inv
        need_h, need_w = ctx.has
        return (grad_h * scale.to(grad_h.dtype) if need_h else None,
                (grad_w * scale).to(ctx.weight_dtype) if need_w else None, None, None, None, None)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100,
                         chunk_rows: int | None = None) -> torch.Tensor:
    """``F.cross_entropy(h @ weight.T, targets, ignore_index=...)`` for ``h`` (N, C) and ``weight`` (V, C),
    computed in chunks of rows by :class:`LinearCrossEntropy` (gradients only when grad mode is on)."""
    return LinearCrossEntropy.apply(h, weight, targets, ignore_index, chunk_rows, torch.is_grad_enabled())
