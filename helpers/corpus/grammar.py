"""The grammar engine both languages share: word lists, list lengths, drawing stories to a size."""

from __future__ import annotations

import random
from collections.abc import Callable

STORY_SEPARATOR = "\n\n"  # stories are separated by one blank line; no story contains one
CORPORA = ("english", "german")
_MAX_BYTES = 100_000_000


def _v(spec: str) -> tuple[str, ...]:
    """Split a '|'-separated list of variants (keeps the word lists below compact)."""
    return tuple(s.strip() for s in spec.split("|"))


def _check_size(n_bytes: object, seed: object) -> None:
    if not isinstance(n_bytes, int) or isinstance(n_bytes, bool) or not 0 < n_bytes <= _MAX_BYTES:
        raise ValueError(f"n_bytes must be an int in 1..{_MAX_BYTES:_}, got {n_bytes!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")


def _generate(make_story: Callable[[random.Random], str], n_bytes: int, seed: int) -> str:
    """Draw stories until ``n_bytes`` UTF-8 bytes are reached, skipping exact duplicates.

    Skipping duplicates matters for the splits: a story can then be in only one of them.
    """
    r = random.Random(seed)
    seen: set[str] = set()
    stories: list[str] = []
    total = 0
    while total < n_bytes:
        story = make_story(r)
        if story in seen:
            continue
        seen.add(story)
        stories.append(story)
        total += len(story.encode("utf-8")) + len(STORY_SEPARATOR)
    return STORY_SEPARATOR.join(stories)


def _count(r: random.Random, p_more: float, most: int) -> int:
    """How many items a list gets: 1, then one more with probability ``p_more`` each time.

    With ``p_more`` > 0.5, "one more" is always the likelier next step. Sampling stops such a list
    after a few items, but greedy decoding keeps taking the likelier step: a repetition loop.
    """
    n = 1
    while n < most and r.random() < p_more:
        n += 1
    return n


def _join(sentences: list[str]) -> str:
    """Sentences joined with spaces; a "\\n" item starts a new paragraph (one line break)."""
    return " ".join(sentences).replace(" \n ", "\n").strip()



def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]

