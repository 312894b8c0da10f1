"""Text the course can always use offline: short stories generated from a seed, and splits.

Two small probabilistic grammars write simple children's stories, one in English (the base
model's pretraining data) and one in German (a second domain for fine-tuning). Each story
follows one of several plot arcs (a lost toy, sharing, a rescue, a fear overcome, ...), keeps
its named characters and their pronouns for the whole story and contains dialogue in quotes.
The text is regular enough for a model with about a million parameters to learn, and varied
enough that sampling has something to choose from. Nothing is downloaded or copied: the same
seed always gives the same text, on every machine.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from helpers.corpus.english import _EN_BOYS, _EN_GIRLS, _english_story
from helpers.corpus.german import _DE_BOYS, _DE_GIRLS, _DE_OBJECTS, _german_story, _np
from helpers.corpus.grammar import _MAX_BYTES, CORPORA, STORY_SEPARATOR, _check_size, _generate

__all__ = [
    "CORPORA", "STORY_SEPARATOR", "Splits", "english_stories", "german_stories", "load_corpus", "load_text",
    "split_text", "_DE_BOYS", "_DE_GIRLS", "_DE_OBJECTS", "_EN_BOYS", "_EN_GIRLS", "_MAX_BYTES", "_np",
]

# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def english_stories(n_bytes: int = 2_200_000, seed: int = 0) -> str:
    """At least ``n_bytes`` UTF-8 bytes of generated English stories, separated by a blank line.

    The same ``seed`` gives the same text on every machine; no story occurs twice.
    """
    _check_size(n_bytes, seed)
    return _generate(_english_story, n_bytes, seed)


@functools.lru_cache(maxsize=8)
def german_stories(n_bytes: int = 600_000, seed: int = 0) -> str:
    """At least ``n_bytes`` UTF-8 bytes of generated German stories (a second domain for fine-tuning)."""
    _check_size(n_bytes, seed)
    return _generate(_german_story, n_bytes, seed)


@dataclass(frozen=True)
class Splits:
    """Train / validation / test text, cut at story boundaries so that no story is in two of them."""

    train: str
    val: str
    test: str


def split_text(text: str, val_fraction: float = 0.05, test_fraction: float = 0.05) -> Splits:
    """Split ``text`` into train / val / test at story boundaries (blank lines; else single lines).

    The last stories go to the test split, the ones before them to validation: for generated or
    shuffled text this is as good as a random split, and it keeps each split readable.
    """
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    sep = STORY_SEPARATOR
    pieces = [p for p in text.strip().split(sep) if p.strip()]
    if len(pieces) < 3:  # no blank lines: fall back to lines
        sep = "\n"
        pieces = [p for p in text.strip().split(sep) if p.strip()]
    if len(pieces) < 3:
        raise ValueError(f"text must contain at least 3 stories or lines to split, got {len(pieces)}")
    n = len(pieces)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"text has only {n} stories: too few for val_fraction={val_fraction}, "
                         f"test_fraction={test_fraction}")
    return Splits(
        train=sep.join(pieces[:n_train]),
        val=sep.join(pieces[n_train:n_train + n_val]),
        test=sep.join(pieces[n_train + n_val:]),
    )


@functools.lru_cache(maxsize=4)
def load_corpus(name: str = "english", seed: int = 0) -> Splits:
    """The course corpus ``name`` ("english" or "german") split 90 / 5 / 5 into train / val / test."""
    if name == "english":
        return split_text(english_stories(seed=seed))
    if name == "german":
        return split_text(german_stories(seed=seed))
    raise ValueError(f"name must be one of {', '.join(CORPORA)}, got {name!r}")


def load_text(path: str | Path) -> str:
    """Read a learner's own UTF-8 text file (a BOM is dropped, Windows line ends become "\\n")."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"no file at {str(p)!r} (working directory: {Path.cwd()})")
    if not p.is_file():
        raise ValueError(f"path must be a text file, but {str(p)!r} is a directory or special file")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{str(p)!r} is not valid UTF-8 (bad byte 0x{data[err.start]:02x} at offset {err.start}); "
            "save it as UTF-8 and try again"
        ) from err
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ValueError(f"{str(p)!r} is empty (it holds no text besides whitespace)")
    return text
