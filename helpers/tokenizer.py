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
from collections.abc import Iterable, Sequence
from pathlib import Path

from helpers.corpus import STORY_SEPARATOR

EOT_TEXT = "<|endoftext|>"
FORMAT = "course-byte-bpe"
# GPT-2's pre-split rule written with the standard library's `re`: contractions, letters
# ([^\W\d_] = word characters minus digits and "_"), digits, other symbols, then whitespace.
# Whitespace before a word stays with the word (" cat"), except the last space of a run.
PATTERN = r"""'(?:s|t|re|ve|m|ll|d)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
_CACHE_LIMIT = 200_000  # cached chunk encodings; plenty for the course corpora


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


class BPETokenizer:
    """Byte-level BPE: ids 0..255 are bytes, then one id per merge, then the end-of-text token."""

    def __init__(self, merges: Sequence[tuple[int, int]], pattern: str = PATTERN):
        self.merges: list[tuple[int, int]] = [(int(a), int(b)) for a, b in merges]
        self.pattern = pattern
        self._split = re.compile(pattern).findall
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
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or not 257 <= vocab_size <= 65536:
            raise ValueError(f"vocab_size must be an int in 257..65536 (256 bytes + end-of-text), got {vocab_size!r}")
        chunk_counts = Counter(re.findall(pattern, text))
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
        """Token ids of ``text``; the text "<|endoftext|>" is encoded as ordinary characters."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        out: list[int] = []
        cache = self._cache
        for chunk in self._split(text):
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

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        if hasattr(ids, "tolist"):  # a tensor or an array
            ids = ids.tolist()
        ids = list(ids)
        for i in ids:
            if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < self.vocab_size:
                raise ValueError(f"token ids must be ints in [0, {self.vocab_size}), got {i!r}")
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes that ``ids`` stand for (a partial UTF-8 character stays partial)."""
        pieces = self._pieces
        return b"".join(pieces[i] for i in self._check_ids(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; incomplete UTF-8 sequences become U+FFFD, end-of-text "<|endoftext|>"."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_str(self, token_id: int) -> str:
        """A printable form of one token, for looking at tokens: "\\n" for a newline, "\\xc3" for a
        byte that is only part of a character. Spaces are kept (" cat" starts with a space)."""
        piece = self.decode_bytes([token_id])
        text = piece.decode("utf-8", errors="backslashreplace")
        return text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")

    def tokens(self, text: str) -> list[str]:
        """``text`` cut into its tokens' printable forms (see ``token_str``)."""
        return [self.token_str(i) for i in self.encode(text)]

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
            isinstance(m, list) and len(m) == 2 and all(isinstance(x, int) for x in m) for m in merges
        ):
            raise ValueError(f"{source}: 'pattern' must be a string and 'merges' a list of [int, int] pairs")
        try:
            tok = cls([tuple(m) for m in merges], pattern)
        except (ValueError, re.error) as err:
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
