"""Sampling parameters: ``SamplingParams`` (validated on creation) and named ``PRESETS``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

MAX_STOP_STRINGS = 8
# The sampler works in float32: logits / T and logit / θ must stay finite and a nonzero T must not
# round to 0 (1e-320 does) or to inf (1e39 does). Inside this range both hold with room to spare.
SCALE_RANGE = (1e-30, 1e30)


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

    temperature: float = 1.0  # logits / T; 0 = greedy (argmax; cutting filters ignored); else in SCALE_RANGE
    top_k: int = 0  # keep the k most likely tokens (ties with the k-th kept); 0 = off
    top_p: float = 1.0  # keep the smallest most-likely set whose mass reaches p; 1 = off
    min_p: float = 0.0  # keep tokens with p >= min_p * p_max; 0 = off
    repetition_penalty: float = 1.0  # seen tokens (prompt + output): logit / θ if > 0 else logit * θ; θ in SCALE_RANGE
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

        lo, hi = SCALE_RANGE
        allowed_t = "0 (greedy) or a float in [1e-30, 1e30] (what float32 arithmetic can carry)"
        set_("temperature", _check_number("temperature", self.temperature, 0, hi, allowed_t))
        if 0 < self.temperature < lo:
            raise ValueError(f"temperature must be {allowed_t}, got {self.temperature!r}")
        if not _is_int(self.top_k) or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {self.top_k!r}")
        set_("top_p", _check_number("top_p", self.top_p, 0, 1, "in (0, 1]", lo_open=True))
        set_("min_p", _check_number("min_p", self.min_p, 0, 1, "in [0, 1]"))
        set_("repetition_penalty", _check_number("repetition_penalty", self.repetition_penalty, lo, hi,
                                                 "a float in [1e-30, 1e30] (1 = off)"))
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
# Presets: settings for use cases, as data (notebook 07 explains the reasoning and measures them)

PRESETS: dict[str, SamplingParams] = {
    # Reproducible and auditable: greedy, a hard length cap and a stop at the first blank line. No
    # penalty: a faithful summary must copy its source's names, dates and numbers, and the repetition
    # penalty counts the prompt, so it punishes exactly that copying; frequency and presence penalties
    # count the output only but still push a term away the second time it is needed. The cap and the
    # stop string bound a greedy loop instead (measured on SmolLM2 in notebook 07).
    "factual_summary": SamplingParams(temperature=0.0, max_tokens=120, stop=["\n\n"]),
    # A sensible default for a chat assistant: some variety, long tails cut.
    "balanced_chat": SamplingParams(temperature=0.7, top_p=0.9, max_tokens=200),
    # Varied wording for stories: full temperature, min-p trims nonsense, additive penalties vary words.
    "creative_story": SamplingParams(temperature=1.0, top_p=0.95, min_p=0.05, frequency_penalty=0.3,
                                     presence_penalty=0.3, max_tokens=300),
    "greedy": SamplingParams(temperature=0.0),
}


# ---------------------------------------------------------------------------------------------------
# What three widely used samplers do when a setting is left unset, in this course's names.
# None: the setting does not exist there (or is unset, which means off). Where each value comes from:
# - transformers: ``GenerationConfig._get_default_generation_params()`` in
#   ``transformers/generation/configuration_utils.py`` (version 5); a checkpoint's
#   ``generation_config.json`` overrides them. ``do_sample`` is False, so ``generate()`` is greedy
#   unless asked to sample, and top_k=50 then applies to every sampled token. tests/test_sampling_oracle.py
#   checks these against the installed package.
# - llama.cpp: ``struct common_params_sampling`` in ``common/common.h`` (the command-line tools and
#   the server); its repetition penalties look at the last 64 tokens (``penalty_last_n``).
# - OpenAI API: the Chat Completions reference; it has no top_k, min_p or repetition penalty.
LIBRARY_DEFAULTS: dict[str, dict[str, float | int | bool | None]] = {
    "transformers": dict(sampling=False, temperature=1.0, top_k=50, top_p=1.0, min_p=None,
                         repetition_penalty=1.0, frequency_penalty=None, presence_penalty=None),
    "llama.cpp": dict(sampling=True, temperature=0.8, top_k=40, top_p=0.95, min_p=0.05,
                      repetition_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0),
    "OpenAI API": dict(sampling=True, temperature=1.0, top_k=None, top_p=1.0, min_p=None,
                       repetition_penalty=None, frequency_penalty=0.0, presence_penalty=0.0),
}
