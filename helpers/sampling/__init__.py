"""Turning next-token logits into text: every sampling parameter as one small, readable function.

One step of generation follows Hugging Face's order (docs/SAMPLING_SPEC.md), so a learner's intuition
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

from helpers.sampling.filters import (
    NEG_INF,
    _as_ids,
    _candidates,
    _end_ids,
    _penalised,
    apply_frequency_presence_penalties,
    apply_logit_bias,
    apply_min_p,
    apply_min_tokens,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    process_logits,
    sample_token,
)
from helpers.sampling.generation import (
    Completion,
    Tokenizer,
    _prompt_ids,
    _run,
    _Sequence,
    _setup,
    _step,
    _Text,
    generate,
    next_token_distribution,
    stream,
)
from helpers.sampling.metrics import (
    _ngrams,
    distinct_n,
    entropy,
    mean_logprob,
    repetition_rate,
    source_overlap,
    words,
)
from helpers.sampling.params import (
    LIBRARY_DEFAULTS,
    MAX_STOP_STRINGS,
    PRESETS,
    SamplingParams,
    _check_number,
    _is_int,
)

__all__ = [
    "LIBRARY_DEFAULTS", "MAX_STOP_STRINGS", "NEG_INF", "PRESETS", "Completion", "SamplingParams", "Tokenizer",
    "_as_ids", "_candidates", "_check_number", "_end_ids", "_is_int", "_ngrams", "_penalised", "_prompt_ids",
    "_run", "_Sequence", "_setup", "_step", "_Text",
    "apply_frequency_presence_penalties", "apply_logit_bias", "apply_min_p", "apply_min_tokens",
    "apply_repetition_penalty", "apply_temperature", "apply_top_k", "apply_top_p", "distinct_n", "entropy",
    "generate", "mean_logprob", "next_token_distribution", "process_logits", "repetition_rate", "sample_token",
    "source_overlap", "stream", "words",
]
