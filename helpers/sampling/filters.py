"""The processing chain: one small function per step, each from logits (B, V) to logits (B, V).

``_penalised`` runs the steps that change logits (bias, penalties, the min_tokens mask), ``FILTERS``
lists temperature's followers in order, and ``_candidates`` chains the two; everything that processes
logits (``process_logits``, generation) goes through ``_candidates``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from helpers.sampling.params import SamplingParams

NEG_INF = float("-inf")


# ---------------------------------------------------------------------------------------------------
# One function per step. Each takes logits (B, V) and returns new logits (B, V); the input is untouched.


def apply_logit_bias(logits: torch.Tensor, logit_bias: Mapping[int, float]) -> torch.Tensor:
    """Add ``logit_bias[i]`` to the logit of token i (±100 in practice forces / bans a token)."""
    if not logit_bias:
        return logits
    V = logits.shape[-1]
    bad = [i for i in logit_bias if not 0 <= i < V]
    if bad:
        raise ValueError(f"logit_bias token ids must be in [0, vocab_size={V}), got {bad[0]}")
    ids = torch.tensor(list(logit_bias), device=logits.device)
    bias = torch.tensor(list(logit_bias.values()), device=logits.device, dtype=logits.dtype)
    return logits.index_add(1, ids, bias.expand(logits.shape[0], -1))


def apply_repetition_penalty(logits: torch.Tensor, seen_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise every **distinct** token in ``seen_ids`` (B, L) once: logit / θ if > 0, else logit · θ.

    Dividing a positive logit and multiplying a negative one both make the token less likely (θ > 1).
    A token seen five times is penalised exactly like one seen once: scatter writes the same value.
    """
    if penalty == 1.0 or seen_ids.shape[-1] == 0:
        return logits
    score = logits.gather(1, seen_ids)  # (B, L)
    # a huge positive logit divided by a small θ must stay finite (+inf would become NaN after the shift)
    score = torch.where(score > 0, (score / penalty).clamp_max(torch.finfo(score.dtype).max), score * penalty)
    return logits.scatter(1, seen_ids, score)


def apply_frequency_presence_penalties(logits: torch.Tensor, output_ids: torch.Tensor,
                                       frequency_penalty: float, presence_penalty: float) -> torch.Tensor:
    """The OpenAI formula: logit_j -= count_j · α_f + [count_j > 0] · α_p, counting output tokens only.

    Done in place of a (B, V) count table: ``scatter_add`` subtracts α_f once per occurrence, and a
    ``scatter`` of the same value to a repeated id writes it once, so α_p counts each token once.
    """
    if output_ids.shape[-1] == 0 or (frequency_penalty == 0.0 and presence_penalty == 0.0):
        return logits
    if frequency_penalty != 0.0:
        logits = logits.scatter_add(1, output_ids, torch.full(output_ids.shape, -frequency_penalty,
                                                                 dtype=logits.dtype, device=logits.device))
    if presence_penalty != 0.0:
        logits = logits.scatter(1, output_ids, logits.gather(1, output_ids) - presence_penalty)
    return logits


def apply_min_tokens(logits: torch.Tensor, n_generated: int, min_tokens: int, end_ids: Sequence[int]) -> torch.Tensor:
    """Ban the end tokens (end-of-text, stop_token_ids) while fewer than ``min_tokens`` were generated."""
    if n_generated >= min_tokens or not end_ids:
        return logits
    return logits.index_fill(1, torch.tensor(list(end_ids), device=logits.device), NEG_INF)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide by T: T < 1 sharpens, T > 1 flattens; the probabilities still sum to 1.

    T = 0 returns the limit T -> 0: every token but the argmax (lowest id among ties) at -inf.
    """
    if temperature == 0.0:
        value, top = logits.max(dim=-1, keepdim=True)  # first maximum = lowest id among ties
        return torch.full_like(logits, NEG_INF).scatter(1, top, value)
    return logits / temperature


def apply_top_k(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    """Keep the logits >= the k-th largest (ties with the k-th stay); 0 or k >= V keeps all."""
    if top_k == 0 or top_k >= logits.shape[-1]:
        return logits
    kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, NEG_INF)


def apply_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Nucleus: sort descending, keep the smallest prefix whose probability mass reaches ``top_p``.

    The token that crosses p is kept (its mass *before* it is still < p), so at least one survives.
    A prefix that reaches p exactly ends there: [.5, .3, .1, .1] with p = .8 keeps two tokens.
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # (B, V) mass of all more likely tokens: an exclusive cumulative sum. (cumsum - probs would round:
    # in float32 0.8000000119 - 0.0999999940 falls below 0.8 and keeps one token too many.)
    mass_before = torch.cat([torch.zeros_like(probs[:, :1]), probs[:, :-1].cumsum(dim=-1)], dim=-1)
    drop_sorted = mass_before >= top_p
    drop_sorted[:, 0] = False
    drop = drop_sorted.scatter(1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, NEG_INF)


def apply_min_p(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least ``min_p`` times the top token's (min_p = 1: the max and its ties)."""
    if min_p == 0.0:
        return logits
    probs = logits.softmax(dim=-1)
    threshold = min_p * probs.amax(dim=-1, keepdim=True)
    return logits.masked_fill(probs < threshold, NEG_INF)


def _penalised(logits: torch.Tensor, params: SamplingParams, prompt_ids: torch.Tensor,
               output_ids: torch.Tensor, n_generated: int, end_ids: Sequence[int]) -> torch.Tensor:
    """Steps 2-5: bias, the three penalties and the min_tokens mask."""
    logits = apply_logit_bias(logits, params.logit_bias)
    if params.repetition_penalty != 1.0:
        seen = torch.cat([prompt_ids.expand(logits.shape[0], -1), output_ids], dim=1)  # (B, P + O)
        logits = apply_repetition_penalty(logits, seen, params.repetition_penalty)
    logits = apply_frequency_presence_penalties(logits, output_ids, params.frequency_penalty,
                                                params.presence_penalty)
    return apply_min_tokens(logits, n_generated, params.min_tokens, end_ids)


# The steps after the penalties, in order: temperature, then the cutting filters, each a SamplingParams
# field and the function that applies it. This list is the one place that states their order (the
# module docstring of helpers.sampling repeats it for readers); a new filter is one more line here.
# top_k must stay first: the shortcut in ``_candidates`` keeps only the top-k candidates before running
# the list, which is exact only when nothing before top_k looks at the rest of the vocabulary.
FILTERS: tuple[tuple[str, Callable[[torch.Tensor, Any], torch.Tensor]], ...] = (
    ("top_k", apply_top_k),
    ("top_p", apply_top_p),
    ("min_p", apply_min_p),
)


def _filtered(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature (> 0) and then every filter of ``FILTERS`` in order, on logits (B, N)."""
    # shifted by the max first: logits / T cannot overflow, and no probability changes
    logits = apply_temperature(logits - logits.amax(dim=-1, keepdim=True), params.temperature)
    for name, apply in FILTERS:
        logits = apply(logits, getattr(params, name))
    return logits


def _candidates(logits: torch.Tensor, params: SamplingParams, prompt_ids: torch.Tensor, output_ids: torch.Tensor,
                n_generated: int, end_ids: Sequence[int], trust_top_k: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The whole chain on float32 logits (B, V): the surviving logits and where they sit in the vocabulary.

    Returns ``(values, ids, tied)``: with ``top_k`` set only the k candidates are kept, ``values``
    (B, k) and ``ids`` (B, k), so that temperature, top-p, min-p and the draw work on k numbers
    instead of the whole vocabulary; otherwise ``values`` is (B, V) and ``ids`` is None. Removed
    tokens are -inf. Tokens tied with the k-th largest logit must stay too; that check needs the
    host, so with ``trust_top_k`` it is not made here but returned as ``tied`` (B,) for the caller
    to look at together with the sampled token (and to redo the step the long way if it is set).
    """
    logits = _penalised(logits, params, prompt_ids, output_ids, n_generated, end_ids)
    T, k, V = params.temperature, params.top_k, logits.shape[-1]
    if T == 0.0:  # greedy: the argmax of the penalised logits, filters ignored
        # max gives the first maximum (the lowest id among ties), as argmax does, about 3x faster on a CPU
        value, top = logits.max(dim=-1, keepdim=True)
        return value, top, None
    if 0 < k < V:
        # Shortcut: dividing by T > 0 keeps the order, so the k largest logits are the same before
        # and after temperature; keep only them and run the same chain on k numbers (already
        # sorted; top_k itself then keeps all k).
        values, ids = logits.topk(k + 1, dim=-1)  # one extra, to see whether the k-th is tied
        tied = values[:, k] == values[:, k - 1]  # (B,) rare: then the long way keeps all ties
        if trust_top_k or not bool(tied.any()):
            return _filtered(values[:, :k], params), ids[:, :k], tied
    return _filtered(logits, params), None, None  # the long way, over the whole vocabulary


def _as_ids(ids: torch.Tensor | Sequence | None, batch: int, device: torch.device, name: str) -> torch.Tensor:
    if ids is None:
        return torch.zeros(batch, 0, dtype=torch.long, device=device)
    ids = torch.as_tensor(ids, dtype=torch.long, device=device)
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    if ids.dim() != 2 or ids.shape[0] not in (1, batch):
        raise ValueError(f"{name} must have shape (B={batch}, length), got {tuple(ids.shape)}")
    return ids.expand(batch, -1)


def process_logits(logits: torch.Tensor, params: SamplingParams, prompt_ids: torch.Tensor | None = None,
                   output_ids: torch.Tensor | None = None, eos_token_id: int | None = None) -> torch.Tensor:
    """Apply every step of ``params`` to ``logits`` (B, V) in the order of docs/SAMPLING_SPEC.md; removed tokens are -inf.

    ``prompt_ids`` (B, P) and ``output_ids`` (B, O) (O may be 0) feed the penalties; ``eos_token_id``
    and ``params.stop_token_ids`` are masked while O < ``min_tokens``. With temperature 0 only the
    greedy choice survives. ``softmax`` of the result is the distribution the sampler draws from
    (up to a constant shift per row, the result is the processed logits).
    """
    if not isinstance(params, SamplingParams):
        raise ValueError(f"params must be a SamplingParams, got {type(params).__name__}")
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        shape = f"shape {tuple(logits.shape)}, dtype {logits.dtype}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a float tensor of shape (B, V), got {shape}")
    if bool(torch.isnan(logits).any() | torch.isposinf(logits).any()):
        raise ValueError("logits must not contain NaN or +inf")
    B, V = logits.shape
    prompt_ids = _as_ids(prompt_ids, B, logits.device, "prompt_ids")
    output_ids = _as_ids(output_ids, B, logits.device, "output_ids")
    end_ids = _end_ids(params, eos_token_id, V)
    values, ids, _ = _candidates(logits.float(), params, prompt_ids, output_ids, output_ids.shape[1], end_ids)
    if not bool(torch.isfinite(values).any(dim=-1).all()):
        raise ValueError("every token was masked (all logits are -inf after processing): nothing to sample")
    if ids is None:
        return values
    return torch.full((B, V), NEG_INF, device=logits.device).scatter(1, ids, values)


def _end_ids(params: SamplingParams, eos_token_id: int | None, vocab_size: int) -> list[int]:
    ends = list(params.stop_token_ids) + ([eos_token_id] if eos_token_id is not None else [])
    bad = [t for t in ends if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"stop_token_ids must be in [0, vocab_size={vocab_size}), got {bad[0]}")
    return sorted(set(ends))


def sample_token(logits: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw one token per row from ``softmax(logits)`` (B, V); returns ids (B,) and their log-probs (B,).

    The draw is the "exponential race": token i wins with probability p_i when each token gets a
    waiting time E_i / p_i with E_i ~ Exp(1) and the shortest wait wins. It is exact, needs no
    cumulative sum and no check on the host (``torch.multinomial`` would), which keeps generation fast.
    """
    probs = logits.softmax(dim=-1)
    wait = torch.empty_like(probs).exponential_(generator=generator).clamp_min_(1e-30)  # no 0/0 for p = 0
    choice = (probs / wait).argmax(dim=-1, keepdim=True)  # (B, 1)
    return choice.squeeze(1), probs.gather(1, choice).log().squeeze(1)
