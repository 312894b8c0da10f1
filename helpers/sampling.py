"""Turning next-token logits into text: every sampling parameter as one small, readable function.

One step of generation follows Hugging Face's order (see SAMPLING_SPEC.md), so a learner's intuition
transfers and ``transformers``' own processors serve as a numerical oracle in the tests:

    float32 -> logit_bias -> repetition penalty -> frequency, presence penalties -> min_tokens mask
    -> (temperature 0: argmax, done) -> temperature -> top_k -> top_p -> min_p -> softmax -> sample

``generate`` runs that step with the model's KV cache, so each new token costs one position, and
``stream`` yields the text as it is decided. Everything works on a batch ``(B, V)`` of logits.

Choices where the references differ or leave room:
- ``generate(..., n=1)`` returns one ``Completion``; ``n > 1`` returns a list of n, sampled as one batch.
- ``Completion.logprobs`` are log-probabilities under the *processed* distribution the token was drawn
  from (after penalties, temperature and filters; 0.0 for every greedy token), not the model's raw ones.
- A prompt that leaves no room in the context window raises ValueError (no silent truncation);
  generation that fills the window ends with finish_reason "length".
- ``min_tokens`` masks end-of-text and ``stop_token_ids`` only; stop strings apply from the first token.
- An empty text prompt starts a new document: the model sees the end-of-text token.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import torch

NEG_INF = float("-inf")
MAX_STOP_STRINGS = 8


class Tokenizer(Protocol):
    """What the sampler needs from a tokenizer (``helpers.tokenizer.BPETokenizer`` has it)."""

    eot_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def decode_bytes(self, ids: Sequence[int]) -> bytes: ...


# ---------------------------------------------------------------------------------------------------
# Parameters


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_number(name: str, value: object, lo: float, hi: float, allowed: str, *,
                  lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` as a float if it is a finite number inside the range, else a ValueError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick tokens; names and defaults as in vLLM / the OpenAI API. Validated on creation.

    Frozen, so that no value skips validation: ``params.replace(temperature=0.5)`` makes a changed copy.
    """

    temperature: float = 1.0  # logits / T; 0 = greedy (argmax; cutting filters ignored)
    top_k: int = 0  # keep the k most likely tokens (ties with the k-th kept); 0 = off
    top_p: float = 1.0  # keep the smallest most-likely set whose mass reaches p; 1 = off
    min_p: float = 0.0  # keep tokens with p >= min_p * p_max; 0 = off
    repetition_penalty: float = 1.0  # seen tokens (prompt + output): logit / θ if > 0 else logit * θ
    frequency_penalty: float = 0.0  # logit -= count_in_output * α_f
    presence_penalty: float = 0.0  # logit -= α_p if the token is in the output at all
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit
    max_tokens: int = 64  # hard cap on generated tokens
    min_tokens: int = 0  # end-of-text and stop_token_ids are masked until this many were generated
    stop: list[str] = field(default_factory=list)  # stop strings, matched on the decoded text
    stop_token_ids: list[int] = field(default_factory=list)  # generation ends when one is sampled
    seed: int | None = None  # a per-call random generator; None = PyTorch's global one
    include_stop_str_in_output: bool = False  # keep the matched stop string at the end of the text

    def __post_init__(self) -> None:
        def set_(name: str, value: object) -> None:  # normalise a field of the frozen instance
            object.__setattr__(self, name, value)

        set_("temperature", _check_number("temperature", self.temperature, 0, math.inf,
                                          "a finite float >= 0", hi_open=True))
        if not _is_int(self.top_k) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        set_("top_p", _check_number("top_p", self.top_p, 0, 1, "in (0, 1]", lo_open=True))
        set_("min_p", _check_number("min_p", self.min_p, 0, 1, "in [0, 1]"))
        set_("repetition_penalty", _check_number("repetition_penalty", self.repetition_penalty, 0, math.inf,
                                                 "a finite float > 0 (1 = off)", lo_open=True, hi_open=True))
        for name in ("frequency_penalty", "presence_penalty"):
            set_(name, _check_number(name, getattr(self, name), -2, 2, "in [-2, 2]"))
        if not isinstance(self.logit_bias, Mapping):
            raise ValueError(f"logit_bias must be a dict {{token_id: bias}}, got {self.logit_bias!r}")
        bias = {}
        for tid, b in self.logit_bias.items():
            if not _is_int(tid) or tid < 0:
                raise ValueError(f"logit_bias keys must be token ids (ints >= 0), got {tid!r}")
            bias[tid] = _check_number(f"logit_bias[{tid}]", b, -100, 100, "in [-100, 100]")
        set_("logit_bias", bias)
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be an int >= 1, got {self.max_tokens!r}")
        if not _is_int(self.min_tokens) or not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"min_tokens must be an int in [0, max_tokens={self.max_tokens}], got {self.min_tokens!r}")
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        if not isinstance(stop, (list, tuple)) or len(stop) > MAX_STOP_STRINGS or \
                not all(isinstance(s, str) and s for s in stop):
            raise ValueError(f"stop must be a list of at most {MAX_STOP_STRINGS} non-empty strings, got {self.stop!r}")
        set_("stop", list(stop))
        if not isinstance(self.stop_token_ids, (list, tuple)) or \
                not all(_is_int(t) and t >= 0 for t in self.stop_token_ids):
            raise ValueError(f"stop_token_ids must be a list of token ids (ints >= 0), got {self.stop_token_ids!r}")
        set_("stop_token_ids", list(self.stop_token_ids))
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise ValueError(f"seed must be None or an int in [0, 2**63), got {self.seed!r}")
        if not isinstance(self.include_stop_str_in_output, bool):
            raise ValueError(f"include_stop_str_in_output must be True or False, got {self.include_stop_str_in_output!r}")

    def replace(self, **changes) -> SamplingParams:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


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
    score = torch.where(score > 0, score / penalty, score * penalty)
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
        top = logits.argmax(dim=-1, keepdim=True)  # first maximum = lowest id among ties
        return torch.full_like(logits, NEG_INF).scatter(1, top, logits.gather(1, top))
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
    """
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # (B, V) probability of all more likely tokens
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
        top = logits.argmax(dim=-1, keepdim=True)
        return logits.gather(1, top), top, None
    if 0 < k < V:
        # Shortcut: dividing by T > 0 keeps the order, so the k largest logits are the same before
        # and after temperature; take them first and do the rest on k numbers (already sorted).
        values, ids = logits.topk(k + 1, dim=-1)  # one extra, to see whether the k-th is tied
        tied = values[:, k] == values[:, k - 1]  # (B,) rare: then the long way keeps all ties
        if trust_top_k or not bool(tied.any()):
            values = (values[:, :k] - values[:, :1]) / T  # shifted by the max: logits / T cannot overflow
            return apply_min_p(apply_top_p(values, params.top_p), params.min_p), ids[:, :k], tied
    # The long way, step by step over the vocabulary (the shift by the max changes no probability).
    logits = apply_temperature(logits - logits.amax(dim=-1, keepdim=True), T)
    logits = apply_top_k(logits, k)
    return apply_min_p(apply_top_p(logits, params.top_p), params.min_p), None, None


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
    """Apply every step of ``params`` to ``logits`` (B, V) in the spec's order; removed tokens are -inf.

    ``prompt_ids`` (B, P) and ``output_ids`` (B, O) (O may be 0) feed the penalties; ``eos_token_id``
    and ``params.stop_token_ids`` are masked while O < ``min_tokens``. With temperature 0 only the
    greedy choice survives. ``softmax`` of the result is the distribution the sampler draws from
    (up to a constant shift per row, the result is the processed logits).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V), got {tuple(logits.shape)}")
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


# ---------------------------------------------------------------------------------------------------
# Generation with the KV cache


@dataclass
class Completion:
    """One generated sequence."""

    text: str | None  # the generated text (None without a tokenizer); ends before a matched stop string
    token_ids: list[int]  # generated ids only; keeps the end-of-text / stop token or the one completing a stop string
    finish_reason: str  # "stop" (end-of-text, a stop token or a stop string) or "length" (max_tokens / context window)
    logprobs: list[float]  # log-prob of each chosen token under the *processed* distribution it was drawn from
    prompt_ids: list[int]  # the prompt as the model saw it


class _Text:
    """The decoded text of one sequence, built from token bytes as they arrive, and its stop strings.

    An incremental UTF-8 decoder keeps an incomplete multi-byte character back until its last byte
    arrives, so half a character is never shown.
    """

    def __init__(self, tokenizer: Tokenizer | None, stop: Sequence[str], include_stop: bool):
        self.tokenizer, self.stop, self.include_stop = tokenizer, list(stop), include_stop
        self.longest = max(map(len, self.stop), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text, self.final = "", False

    def add(self, token_id: int) -> bool:
        """Append one token's text; True when it completed a stop string (the text is then cut before it)."""
        if self.tokenizer is None:
            return False
        start = max(0, len(self.text) - self.longest + 1)  # a match must end in the new characters
        self.text += self._decoder.decode(self.tokenizer.decode_bytes([token_id]))
        hits = [(i, -len(s)) for s in self.stop if (i := self.text.find(s, start)) >= 0]
        if hits:
            i, minus_len = min(hits)  # the earliest match; the longest one if two start together
            self.text = self.text[: i - minus_len] if self.include_stop else self.text[:i]
            self.final = True
        return self.final

    def finish(self) -> None:
        if not self.final:
            self.text += self._decoder.decode(b"", final=True)  # an unfinished character becomes U+FFFD
            self.final = True

    def ready(self) -> int:
        """How many characters are decided: all but a tail that could still grow into a stop string."""
        if self.final:
            return len(self.text)
        for held in range(min(len(self.text), self.longest - 1), 0, -1):
            tail = self.text[-held:]
            if any(s.startswith(tail) for s in self.stop):
                return len(self.text) - held
        return len(self.text)


@dataclass
class _Sequence:
    text: _Text
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None


def _prompt_ids(prompt: str | Sequence[int] | torch.Tensor, tokenizer: Tokenizer | None, vocab_size: int,
                block_size: int) -> list[int]:
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError("a text prompt needs a tokenizer: pass tokenizer=..., or give the prompt as token ids")
        ids = tokenizer.encode(prompt) if prompt else [tokenizer.eot_id]  # "" = start of a new document
    else:
        ids = prompt.flatten().tolist() if isinstance(prompt, torch.Tensor) else list(prompt)
        if not ids or not all(_is_int(i) and 0 <= i < vocab_size for i in ids):
            raise ValueError(f"prompt must be a str or a non-empty list of token ids in [0, {vocab_size}), got {prompt!r}")
    if len(ids) >= block_size:
        raise ValueError(
            f"the prompt has {len(ids)} tokens but the context window (block_size) is {block_size} and must hold "
            f"the prompt and at least one new token: shorten it, e.g. keep its last tokens ids[-{block_size // 2}:]"
        )
    return ids


def _step(logits: torch.Tensor, params: SamplingParams, prompt: torch.Tensor, output_ids: torch.Tensor, step: int,
          end_ids: list[int], generator: torch.Generator | None) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """One token per row: ids on the device (B,), the same ids on the host, and their log-probs (B,)."""
    values, ids, tied = _candidates(logits, params, prompt, output_ids, step, end_ids, trust_top_k=True)
    choice, logprob = sample_token(values, generator)  # (B,), (B,)
    token = choice if ids is None else ids.gather(1, choice[:, None]).squeeze(1)
    if tied is None:
        return token, token.tolist(), logprob  # the one host sync per step
    tokens, tied_rows = torch.stack([token, tied.long()]).tolist()  # the tokens and top-k's tie flags at once
    if any(tied_rows):  # rare: a tie at top-k's cut; redo the step the long way, which keeps all tied tokens
        values, ids, _ = _candidates(logits, params, prompt, output_ids, step, end_ids)
        choice, logprob = sample_token(values, generator)
        token = choice if ids is None else ids.gather(1, choice[:, None]).squeeze(1)
        tokens = token.tolist()
    return token, tokens, logprob


@torch.inference_mode()
def _run(model: torch.nn.Module, prompt_ids: list[int], params: SamplingParams, seqs: list[_Sequence],
         end_ids: list[int], device: torch.device) -> Iterator[None]:
    """Generate into ``seqs`` (one per sample), yielding after every step; finished rows leave the batch."""
    n, P = len(seqs), len(prompt_ids)
    max_new = min(params.max_tokens, model.config.block_size - P)  # the window holds prompt + answer
    generator = None if params.seed is None else torch.Generator(device=device).manual_seed(params.seed)
    ends = set(end_ids)
    history = params.repetition_penalty != 1.0 or params.frequency_penalty != 0.0 or params.presence_penalty != 0.0
    prompt = torch.tensor([prompt_ids], device=device)  # (1, P)
    cache = model.new_cache(1)
    logits = model(prompt, cache=cache)[:, -1].float()  # (1, V): the prompt is read once for all n samples
    if n > 1:
        cache.select(torch.zeros(n, dtype=torch.long, device=device))  # n copies of the prompt's keys/values
        logits = logits.expand(n, -1)
    out = torch.empty(n, max_new if history else 0, dtype=torch.long, device=device)  # generated ids, for penalties
    active = list(range(n))  # which sequence each batch row belongs to
    step_logprobs, step_rows = [], []  # kept on the device until the end
    for step in range(max_new):
        token, tokens, logprob = _step(logits, params, prompt, out[:, :step], step, end_ids, generator)
        if history:
            out[:, step] = token
        step_logprobs.append(logprob)
        step_rows.append(active)
        keep = []
        for j, (i, t) in enumerate(zip(active, tokens)):
            seq = seqs[i]
            seq.tokens.append(t)
            if t in ends or seq.text.add(t):
                seq.finish_reason = "stop"
            elif step + 1 == max_new:
                seq.finish_reason = "length"
            else:
                keep.append(j)
                continue
            seq.text.finish()
        if len(keep) < len(active):
            if keep:
                kept = torch.tensor(keep, device=device)
                cache.select(kept)
                out, token = out[kept], token[kept]
            active = [active[j] for j in keep]
        yield
        if not active:
            break
        logits = model(token[:, None], cache=cache)[:, -1].float()  # (B, V): one new position per row
    flat = torch.cat(step_logprobs).tolist()
    if any(math.isnan(x) for x in flat):  # softmax of a row that is -inf everywhere
        raise ValueError("every token was masked (all logits -inf after processing): nothing to sample")
    pos = 0
    for rows in step_rows:
        for i in rows:
            seqs[i].logprobs.append(flat[pos])
            pos += 1


def _setup(model: torch.nn.Module, prompt, params: SamplingParams | None, tokenizer: Tokenizer | None, n: int,
           device) -> tuple[list[int], SamplingParams, list[_Sequence], list[int], torch.device]:
    params = SamplingParams() if params is None else params
    if not isinstance(params, SamplingParams):
        raise ValueError(f"params must be a SamplingParams, got {type(params).__name__}")
    if not _is_int(n) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if device is not None and torch.device(device).type != model.device.type:
        raise ValueError(f"device={device!s} but the model is on {model.device}; move it first: model.to({str(device)!r})")
    if params.stop and tokenizer is None:
        raise ValueError("stop strings are matched on text and need a tokenizer (or use stop_token_ids)")
    V, block = model.config.vocab_size, model.config.block_size
    ids = _prompt_ids(prompt, tokenizer, V, block)
    apply_logit_bias(torch.zeros(1, V), params.logit_bias)  # raises for an unknown token id
    end_ids = _end_ids(params, tokenizer.eot_id if tokenizer is not None else None, V)
    seqs = [_Sequence(_Text(tokenizer, params.stop, params.include_stop_str_in_output)) for _ in range(n)]
    return ids, params, seqs, end_ids, model.device


def generate(model: torch.nn.Module, prompt: str | Sequence[int], params: SamplingParams | None = None,
             tokenizer: Tokenizer | None = None, n: int = 1, device: str | torch.device | None = None
             ) -> Completion | list[Completion]:
    """Sample a continuation of ``prompt`` (a str, which needs ``tokenizer``, or a list of token ids).

    Returns one ``Completion`` for n = 1 and a list of n for n > 1: the n samples run as one batch
    (the prompt is read once), each stopping on its own. End-of-text (``tokenizer.eot_id``), a stop
    token or a stop string ends a sample with "stop"; ``max_tokens`` or a full context window
    (prompt + answer = ``block_size``) with "length". A prompt that leaves no room raises ValueError.
    """
    ids, params, seqs, end_ids, dev = _setup(model, prompt, params, tokenizer, n, device)
    was_training = model.training
    model.eval()
    try:
        for _ in _run(model, ids, params, seqs, end_ids, dev):
            pass
    finally:
        model.train(was_training)
    done = [Completion(s.text.text if tokenizer is not None else None, s.tokens, s.finish_reason, s.logprobs, ids)
            for s in seqs]
    return done[0] if n == 1 else done


def stream(model: torch.nn.Module, prompt: str | Sequence[int], params: SamplingParams | None = None,
           tokenizer: Tokenizer | None = None, device: str | torch.device | None = None) -> Iterator[str]:
    """Like ``generate`` (one sample), but yields text pieces as soon as they are decided.

    Characters that might be the start of a stop string are held back until the match is decided,
    and a multi-byte character is held back until all its bytes have arrived.
    """
    if tokenizer is None:
        raise ValueError("stream yields text and needs a tokenizer")
    ids, params, seqs, end_ids, dev = _setup(model, prompt, params, tokenizer, 1, device)
    text, shown = seqs[0].text, 0
    was_training = model.training
    model.eval()
    try:
        for _ in _run(model, ids, params, seqs, end_ids, dev):
            ready = text.ready()
            if ready > shown:
                yield text.text[shown:ready]
                shown = ready
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------------
# Looking at distributions and measuring samples


@torch.no_grad()
def next_token_distribution(model: torch.nn.Module, prompt: str | Sequence[int], params: SamplingParams | None = None,
                            tokenizer: Tokenizer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's next-token probabilities after ``prompt``: raw (V,) and after ``params`` (V,), on the CPU."""
    params = SamplingParams() if params is None else params
    V, block = model.config.vocab_size, model.config.block_size
    ids = _prompt_ids(prompt, tokenizer, V, block)
    was_training = model.training
    model.eval()
    try:
        logits = model(torch.tensor([ids], device=model.device))[:, -1].float()  # (1, V)
    finally:
        model.train(was_training)
    eos = tokenizer.eot_id if tokenizer is not None else None
    processed = process_logits(logits, params, torch.tensor([ids], device=model.device), None, eos)
    return logits.softmax(-1)[0].cpu(), processed.softmax(-1)[0].cpu()


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension (0 · log 0 counts as 0)."""
    return -(probs * probs.clamp_min(1e-45).log()).sum(dim=-1)


def _ngrams(seq: Sequence, n: int) -> list[tuple]:
    return [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]


def distinct_n(samples: Sequence[Sequence], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over a set of samples (token lists or strings): 1 = no n-gram repeats."""
    grams = [g for s in samples for g in _ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(sample: Sequence, n: int = 3) -> float:
    """Fraction of the n-grams in one sample that already appeared earlier in it (0 = no repeats)."""
    grams = _ngrams(sample, n)
    seen: set[tuple] = set()
    repeats = 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams) if grams else 0.0


@torch.no_grad()
def mean_logprob(model: torch.nn.Module, prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> float:
    """Average log-probability per token the model gives ``completion_ids`` after ``prompt_ids`` (T = 1, no filters).

    A quality proxy: how plausible a scoring model finds a sample (higher = more typical text).
    """
    if not completion_ids:
        return float("nan")
    ids = list(prompt_ids) + list(completion_ids)
    ids = ids[-model.config.block_size - 1 :]  # the most a single forward pass can score
    idx = torch.tensor([ids], device=model.device)
    was_training = model.training
    model.eval()
    try:
        logp = model(idx[:, :-1])[0].float().log_softmax(-1)  # (T-1, V)
    finally:
        model.train(was_training)
    k = min(len(completion_ids), len(ids) - 1)
    targets = idx[0, -k:]
    return logp[-k:].gather(1, targets[:, None]).mean().item()


# ---------------------------------------------------------------------------------------------------
# Presets: settings for use cases, as data (notebook 07 explains the reasoning)

PRESETS: dict[str, SamplingParams] = {
    # Reproducible and auditable: greedy, a mild repetition penalty against loops, a hard length cap.
    "factual_summary": SamplingParams(temperature=0.0, repetition_penalty=1.1, max_tokens=120, stop=["\n\n"]),
    # A sensible default for a chat assistant: some variety, long tails cut.
    "balanced_chat": SamplingParams(temperature=0.7, top_p=0.9, max_tokens=200),
    # Varied wording for stories: full temperature, min-p trims nonsense, additive penalties vary words.
    "creative_story": SamplingParams(temperature=1.0, top_p=0.95, min_p=0.05, frequency_penalty=0.3,
                                     presence_penalty=0.3, max_tokens=300),
    "greedy": SamplingParams(temperature=0.0),
}
