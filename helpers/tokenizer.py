"""A byte-level BPE tokenizer, trained from scratch in a few seconds.

Byte-level means the first 256 token ids are the 256 possible bytes, so every string (any
language, emoji, random symbols) can be encoded and decoded back exactly. Training then
repeats one step: find the most frequent pair of neighbouring tokens in the training text and
give that pair a new id (a "merge"). After ~1800 merges, frequent words are single tokens and
rare words are spelled out of smaller pieces. As in GPT-2, the text is first cut into
word-like chunks (a leading space stays with its word) and merges never cross a chunk border.
The last id is a special end-of-text token that marks where one story ends.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import tempfile
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from helpers.byte_bpe import TokenStrings
from helpers.corpus import STORY_SEPARATOR

EOT_TEXT = "<|endoftext|>"
FORMAT = "course-byte-bpe"
# Unicode's non-decimal numerals (categories No and Nl: ², ½, ₂, Ⅻ, ①), as of Unicode 14.0. Python's
# `re` counts them as word characters, GPT-2's rule (\p{N}) as numbers; listing them keeps the two apart.
_NUMERALS = (
    "\u00b2-\u00b3\u00b9\u00bc-\u00be\u09f4-\u09f9\u0b72-\u0b77\u0bf0-\u0bf2\u0c78-\u0c7e"
    "\u0d58-\u0d5e\u0d70-\u0d78\u0f2a-\u0f33\u1369-\u137c\u16ee-\u16f0\u17f0-\u17f9\u19da\u2070"
    "\u2074-\u2079\u2080-\u2089\u2150-\u2182\u2185-\u2189\u2460-\u249b\u24ea-\u24ff\u2776-\u2793"
    "\u2cfd\u3007\u3021-\u3029\u3038-\u303a\u3192-\u3195\u3220-\u3229\u3248-\u324f\u3251-\u325f"
    "\u3280-\u3289\u32b1-\u32bf\ua6e6-\ua6ef\ua830-\ua835\U00010107-\U00010133\U00010140-\U00010178"
    "\U0001018a-\U0001018b\U000102e1-\U000102fb\U00010320-\U00010323\U00010341\U0001034a"
    "\U000103d1-\U000103d5\U00010858-\U0001085f\U00010879-\U0001087f\U000108a7-\U000108af"
    "\U000108fb-\U000108ff\U00010916-\U0001091b\U000109bc-\U000109bd\U000109c0-\U000109cf"
    "\U000109d2-\U000109ff\U00010a40-\U00010a48\U00010a7d-\U00010a7e\U00010a9d-\U00010a9f"
    "\U00010aeb-\U00010aef\U00010b58-\U00010b5f\U00010b78-\U00010b7f\U00010ba9-\U00010baf"
    "\U00010cfa-\U00010cff\U00010e60-\U00010e7e\U00010f1d-\U00010f26\U00010f51-\U00010f54"
    "\U00010fc5-\U00010fcb\U00011052-\U00011065\U000111e1-\U000111f4\U0001173a-\U0001173b"
    "\U000118ea-\U000118f2\U00011c5a-\U00011c6c\U00011fc0-\U00011fd4\U00012400-\U0001246e"
    "\U00016b5b-\U00016b61\U00016e80-\U00016e96\U0001d2e0-\U0001d2f3\U0001d360-\U0001d378"
    "\U0001e8c7-\U0001e8cf\U0001ec71-\U0001ecab\U0001ecad-\U0001ecaf\U0001ecb1-\U0001ecb4"
    "\U0001ed01-\U0001ed2d\U0001ed2f-\U0001ed3d\U0001f100-\U0001f10c"
)
# Python's \s also matches the four separators U+001C..U+001F, which Unicode (and GPT-2's rule) do not
# count as white space; they belong with the "other symbols".
_SEPARATORS = "\x1c-\x1f"
# GPT-2's pre-split rule, r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
# written with the standard library's `re`: contractions, letters ([^\W\d_] = word characters minus
# digits and "_", minus the numerals above), numbers (digits and numerals), other symbols, then white
# space. White space before a word stays with the word (" cat"), except the last space of a run.
# Tested against GPT-2's own pattern run by the `regex` module on random text.
PATTERN = (
    r"'(?:s|t|re|ve|m|ll|d)"
    r"| ?[^\W\d_" + _NUMERALS + r"]+"
    r"| ?[\d" + _NUMERALS + r"]+"
    r"| ?(?:[^\s\w]|[_" + _SEPARATORS + r"])+"
    r"|[^\S" + _SEPARATORS + r"]+(?![^\s]|[" + _SEPARATORS + r"])"
    r"|[^\S" + _SEPARATORS + r"]+"
)
_CACHE_LIMIT = 200_000  # cached chunk encodings; plenty for the course corpora
# A custom pattern must cut any text into pieces that rebuild it; this text catches the usual gaps
# (punctuation, spaces, line breaks, digits, non-Latin letters, emoji) when a tokenizer is made.
_PATTERN_PROBE = "Hello, world! It's 42 H\u2082O \u00bd caf\u00e9\n\t  \u65e5\u672c \U0001f642 _x_\r\n  end "


def _compile_pattern(pattern: object) -> re.Pattern:
    """The compiled pre-split pattern; refuses one that is not a regex, has capturing groups (then
    ``findall`` returns the groups, not the pieces), or drops characters of the probe text."""
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a regular expression string, got {type(pattern).__name__}")
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"pattern {pattern!r:.80} is not a valid regular expression: {err}") from err
    if compiled.groups:
        raise ValueError(f"pattern {pattern!r:.80} has {compiled.groups} capturing group(s); "
                         "write its groups as (?:...) so that each match is a whole piece")
    _check_pieces(compiled, _PATTERN_PROBE)
    return compiled


def _check_pieces(compiled: re.Pattern, text: str) -> list[str]:
    """``text`` cut by ``compiled``; refuses a cut whose pieces do not rebuild the text exactly.

    Matches never overlap and come in order, so the pieces rebuild the text exactly when their
    lengths add up to its length (one sum, no copy).
    """
    pieces = compiled.findall(text)
    if sum(map(len, pieces)) != len(text):
        kept = "".join(pieces)
        lost = "".join(sorted(set(text) - set(kept)))[:20] or "(repeats of kept characters)"
        raise ValueError(f"pattern {compiled.pattern!r:.80} drops characters: {text[:40]!r} would come back as "
                         f"{kept[:40]!r} (lost: {lost!r}); a pre-split pattern must match every character, "
                         "e.g. end it with |\\s+|[^\\s]")
    return pieces


def _merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every non-overlapping occurrence of ``pair`` in ``ids`` (left to right) by ``new_id``."""
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer(TokenStrings):
    """Byte-level BPE: ids 0..255 are bytes, then one id per merge, then the end-of-text token.

    ``decode``, ``decode_bytes``, ``token_str`` and ``tokens`` come from ``TokenStrings``.
    """

    def __init__(self, merges: Sequence[tuple[int, int]], pattern: str = PATTERN):
        self.merges: list[tuple[int, int]] = [(int(a), int(b)) for a, b in merges]
        self.pattern = pattern
        self._compiled = _compile_pattern(pattern)
        self._ranks = {pair: 256 + i for i, pair in enumerate(self.merges)}  # pair -> its new id
        self._pieces: list[bytes] = [bytes([i]) for i in range(256)]
        for i, (a, b) in enumerate(self.merges):
            if not (0 <= a < 256 + i and 0 <= b < 256 + i):
                raise ValueError(f"merge {i} = ({a}, {b}) refers to an id that does not exist yet")
            self._pieces.append(self._pieces[a] + self._pieces[b])
        self.eot_id = 256 + len(self.merges)
        self._pieces.append(EOT_TEXT.encode("utf-8"))
        self._cache: dict[str, list[int]] = {}

    # -- training ------------------------------------------------------------------------------

    @classmethod
    def train(cls, text: str, vocab_size: int = 2048, pattern: str = PATTERN) -> BPETokenizer:
        """Learn ``vocab_size - 257`` merges from ``text`` (fewer if the text runs out of pairs).

        Pair counts are updated incrementally: a merge only touches the chunks that contain the
        merged pair, and a heap finds the most frequent pair without rescanning all pairs.

        Ties: when several pairs are equally frequent, the pair with the smallest ids ``(a, b)``
        is merged first (the heap orders equal counts by the pair). GPT-2-style trainers often
        take the lexicographically greatest pair of byte strings instead, so on a small text the
        two can learn different merges from the same counts; both are valid BPE.
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or not 257 <= vocab_size <= 65536:
            raise ValueError(f"vocab_size must be an int in 257..65536 (256 bytes + end-of-text), got {vocab_size!r}")
        chunk_counts = Counter(_check_pieces(_compile_pattern(pattern), text))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]  # one entry per distinct chunk
        freqs = list(chunk_counts.values())
        pair_counts: dict[tuple[int, int], int] = defaultdict(int)
        where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> chunks that contain it
        for i, w in enumerate(words):
            for pair in zip(w, w[1:]):
                pair_counts[pair] += freqs[i]
                where[pair].add(i)
        heap = [(-count, pair) for pair, count in pair_counts.items()]
        heapq.heapify(heap)
        merges: list[tuple[int, int]] = []
        while len(merges) < vocab_size - 257 and heap:
            neg, pair = heapq.heappop(heap)
            count = pair_counts.get(pair, 0)
            if count != -neg:  # a stale heap entry: the pair's count changed since it was pushed
                continue
            if count < 2:  # merging a pair seen once only memorises; stop here
                break
            new_id = 256 + len(merges)
            merges.append(pair)
            changed: set[tuple[int, int]] = set()
            for i in where.pop(pair):
                old = words[i]
                new = _merge(old, pair, new_id)
                if len(new) == len(old):
                    continue  # this chunk lost the pair to an earlier merge
                f = freqs[i]
                for p in zip(old, old[1:]):
                    pair_counts[p] -= f
                    changed.add(p)
                for p in zip(new, new[1:]):
                    pair_counts[p] += f
                    where[p].add(i)
                    changed.add(p)
                words[i] = new
            del pair_counts[pair]
            changed.discard(pair)
            for p in changed:
                if pair_counts[p] > 0:
                    heapq.heappush(heap, (-pair_counts[p], p))
        return cls(merges, pattern)

    # -- encoding / decoding -------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of token ids: 256 bytes + the merges + the end-of-text token."""
        return len(self._pieces)

    def _encode_chunk(self, chunk: str) -> list[int]:
        try:
            ids = list(chunk.encode("utf-8"))
        except UnicodeEncodeError as err:
            raise ValueError(f"text must be valid Unicode (encodable as UTF-8), got {chunk!r}: {err.reason}") from err
        ranks = self._ranks
        while len(ids) > 1:
            # the pair that was merged earliest in training is applied first, as in training
            best = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, 1 << 30))
            if best not in ranks:
                break
            ids = _merge(ids, best, ranks[best])
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``.

        The text "<|endoftext|>" is encoded as ordinary characters (several tokens), never as the
        end-of-text id: only ``encode_stories`` inserts that id, between stories. (tiktoken refuses
        such text unless told otherwise, and Hugging Face tokenizers turn it into the special token.)
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        out: list[int] = []
        cache = self._cache
        for chunk in _check_pieces(self._compiled, text):
            ids = cache.get(chunk)
            if ids is None:
                ids = self._encode_chunk(chunk)
                if len(cache) < _CACHE_LIMIT:
                    cache[chunk] = ids
            out.extend(ids)
        return out

    def encode_stories(self, text: str) -> list[int]:
        """Encode stories separated by blank lines, each followed by the end-of-text token."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        out: list[int] = []
        for story in text.split(STORY_SEPARATOR):
            if story.strip():
                out.extend(self.encode(story))
                out.append(self.eot_id)
        return out

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, eot_id={self.eot_id})"

    # -- saving / loading ----------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, "pattern": self.pattern, "eot": EOT_TEXT,
                "vocab_size": self.vocab_size, "merges": [list(m) for m in self.merges]}

    def save(self, path: str | Path) -> Path:
        """Write the tokenizer as JSON (via a temporary file, so a crash never leaves half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, separators=(",", ":"))
            os.chmod(tmp, 0o644)  # mkstemp creates the file readable by its owner only
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def from_dict(cls, data: object, source: str = "tokenizer data") -> BPETokenizer:
        """Rebuild a tokenizer from ``to_dict()`` output, checking its structure."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{source} is not a tokenizer file (expected a JSON object with format={FORMAT!r})")
        merges, pattern = data.get("merges"), data.get("pattern")
        if not isinstance(pattern, str) or not isinstance(merges, list) or not all(
            isinstance(m, list) and len(m) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in m)
            for m in merges
        ):
            raise ValueError(f"{source}: 'pattern' must be a string and 'merges' a list of [int, int] pairs")
        try:
            tok = cls([tuple(m) for m in merges], pattern)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from err
        if data.get("vocab_size", tok.vocab_size) != tok.vocab_size:
            raise ValueError(f"{source}: says vocab_size={data['vocab_size']} but its merges give {tok.vocab_size}")
        return tok

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a tokenizer saved with ``save``; a missing or damaged file raises an error naming it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"tokenizer file {str(path)!r} is not valid JSON (truncated or corrupt?): {err}") from err
        return cls.from_dict(data, source=f"tokenizer file {str(path)!r}")
