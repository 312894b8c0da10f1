"""Generation with the KV cache: ``generate``, ``stream`` and ``next_token_distribution``."""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from helpers.interface import LanguageModel, last_logits
from helpers.runtime import evaluating
from helpers.sampling.filters import _candidates, _end_ids, apply_logit_bias, process_logits, sample_token
from helpers.sampling.params import SamplingParams, _is_int


class Tokenizer(Protocol):
    """What the sampler needs from a tokenizer (``helpers.tokenizer.BPETokenizer`` has it)."""

    eot_id: int
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...
    def decode_bytes(self, ids: Sequence[int]) -> bytes: ...



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
        if not isinstance(prompt, (torch.Tensor, Sequence)):
            raise ValueError(f"prompt must be a str or a non-empty list of token ids in [0, {vocab_size}), "
                             f"got {type(prompt).__name__}: {prompt!r:.40}")
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
    if ids is not None and tied is None and values.shape[1] == 1:
        # greedy: one candidate, drawn with probability 1 (log-prob 0; NaN when it is -inf, everything masked)
        token = ids[:, 0]
        return token, token.tolist(), (values - values)[:, 0]
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
def _run(model: LanguageModel, prompt_ids: list[int], params: SamplingParams, seqs: list[_Sequence],
         end_ids: list[int], device: torch.device) -> Iterator[None]:
    """Generate into ``seqs`` (one per sample), yielding after every step; finished rows leave the batch."""
    n, P = len(seqs), len(prompt_ids)
    max_new = min(params.max_tokens, model.config.block_size - P)  # the window holds prompt + answer
    generator = None if params.seed is None else torch.Generator(device=device).manual_seed(params.seed)
    ends = set(end_ids)
    history = params.repetition_penalty != 1.0 or params.frequency_penalty != 0.0 or params.presence_penalty != 0.0
    prompt = torch.tensor([prompt_ids], device=device)  # (1, P)
    cache = model.new_cache(1)
    logits = last_logits(model, prompt, cache).float()  # (1, V): the prompt is read once for all n samples
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
        logits = last_logits(model, token[:, None], cache).float()  # (B, V): one new position per row
    flat = torch.cat(step_logprobs).tolist()
    if any(math.isnan(x) for x in flat):  # softmax of a row that is -inf everywhere
        raise ValueError("every token was masked (all logits -inf after processing): nothing to sample")
    pos = 0
    for rows in step_rows:
        for i in rows:
            seqs[i].logprobs.append(flat[pos])
            pos += 1


def _setup(model: LanguageModel, prompt, params: SamplingParams | None, tokenizer: Tokenizer | None, n: int,
           device) -> tuple[list[int], SamplingParams, list[_Sequence], list[int], torch.device]:
    params = SamplingParams() if params is None else params
    if not isinstance(params, SamplingParams):
        raise ValueError(f"params must be a SamplingParams, got {type(params).__name__}")
    if not _is_int(n) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if device is not None:
        try:
            if not isinstance(device, (str, torch.device)):  # torch.device(5) would mean cuda:5
                raise TypeError
            wanted = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be None or a device name such as {str(model.device.type)!r} (where the "
                             f"model is), got {device!r}") from None
        if wanted.type != model.device.type:
            raise ValueError(f"device={device!s} but the model is on {model.device}; move it first: "
                             f"model.to({str(device)!r})")
    if params.stop and tokenizer is None:
        raise ValueError("stop strings are matched on text and need a tokenizer (or use stop_token_ids)")
    V, block = model.config.vocab_size, model.config.block_size
    ids = _prompt_ids(prompt, tokenizer, V, block)
    apply_logit_bias(torch.zeros(1, V), params.logit_bias)  # raises for an unknown token id
    end_ids = _end_ids(params, tokenizer.eot_id if tokenizer is not None else None, V)
    seqs = [_Sequence(_Text(tokenizer, params.stop, params.include_stop_str_in_output)) for _ in range(n)]
    return ids, params, seqs, end_ids, model.device


def generate(model: LanguageModel, prompt: str | Sequence[int], params: SamplingParams | None = None,
             tokenizer: Tokenizer | None = None, n: int = 1, device: str | torch.device | None = None
             ) -> Completion | list[Completion]:
    """Sample a continuation of ``prompt`` (a str, which needs ``tokenizer``, or a list of token ids).

    Returns one ``Completion`` for n = 1 and a list of n for n > 1: the n samples run as one batch
    (the prompt is read once), each stopping on its own. End-of-text (``tokenizer.eot_id``), a stop
    token or a stop string ends a sample with "stop"; ``max_tokens`` or a full context window
    (prompt + answer = ``block_size``) with "length". A prompt that leaves no room raises ValueError.
    """
    ids, params, seqs, end_ids, dev = _setup(model, prompt, params, tokenizer, n, device)
    with evaluating(model):
        for _ in _run(model, ids, params, seqs, end_ids, dev):
            pass
    done = [Completion(s.text.text if tokenizer is not None else None, s.tokens, s.finish_reason, s.logprobs, ids)
            for s in seqs]
    return done[0] if n == 1 else done


def stream(model: LanguageModel, prompt: str | Sequence[int], params: SamplingParams | None = None,
           tokenizer: Tokenizer | None = None, device: str | torch.device | None = None) -> Iterator[str]:
    """Like ``generate`` (one sample), but yields text pieces as soon as they are decided.

    Characters that might be the start of a stop string are held back until the match is decided,
    and a multi-byte character is held back until all its bytes have arrived.
    """
    if tokenizer is None:
        raise ValueError("stream yields text and needs a tokenizer")
    ids, params, seqs, end_ids, dev = _setup(model, prompt, params, tokenizer, 1, device)
    text, shown = seqs[0].text, 0
    with evaluating(model):
        for _ in _run(model, ids, params, seqs, end_ids, dev):
            ready = text.ready()
            if ready > shown:
                yield text.text[shown:ready]
                shown = ready


# ---------------------------------------------------------------------------------------------------
# Looking at distributions


@torch.no_grad()
def next_token_distribution(model: LanguageModel, prompt: str | Sequence[int], params: SamplingParams | None = None,
                            tokenizer: Tokenizer | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's next-token probabilities after ``prompt``: raw (V,) and after ``params`` (V,), on the CPU."""
    params = SamplingParams() if params is None else params
    V, block = model.config.vocab_size, model.config.block_size
    ids = _prompt_ids(prompt, tokenizer, V, block)
    with evaluating(model):
        logits = last_logits(model, torch.tensor([ids], device=model.device)).float()  # (1, V)
    eos = tokenizer.eot_id if tokenizer is not None else None
    processed = process_logits(logits, params, torch.tensor([ids], device=model.device), None, eos)
    return logits.softmax(-1)[0].cpu(), processed.softmax(-1)[0].cpu()
