"""The tokenizer of a pretrained model: GPT-2-style byte-level BPE read from a vocabulary and a merge list.

The course's own ``helpers.tokenizer.BPETokenizer`` learns its merges; a pretrained model comes with
them, in an order of its own and with token ids that do not follow the merge order. Encoding works the
same way:

1. control tokens (``<|im_start|>``, ``<|im_end|>``...) are cut out of the text first and become one id each;
2. the rest is split into word-like chunks by GPT-2's rule (a leading space stays with its word, letters,
   digits and other symbols form separate runs, ``'s``-style endings are their own chunk);
3. each chunk becomes its UTF-8 bytes, each byte written as one printable character (GPT-2's byte
   alphabet: ``Ġ`` is the space, ``Ċ`` the newline), and the merges are applied, the earliest-listed
   pair first, until no listed pair is left;
4. the resulting pieces are looked up in the vocabulary.

GPT-2's rule uses Unicode's letter (L*) and number (N*) categories and its White_Space property; the
standard library's ``re`` has neither, so the character classes are built from ``unicodedata`` once.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

_CACHE_LIMIT = 200_000
# Unicode's White_Space property (PropList.txt): what ``\s`` means in the reference tokenizers
WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"


def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte -> character map: printable Latin-1 bytes stand for themselves, the other 68 bytes
    (controls, space, ...) get the characters from U+0100 on, in byte order, so every byte is visible."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


def _ranges(chars: Iterable[int]) -> str:
    """A regex character-class body for a sorted run of code points, as ranges."""
    parts, start, prev = [], None, None
    for c in chars:
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            parts.append((start, prev))
            start = prev = c
    if start is not None:
        parts.append((start, prev))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in parts)


@lru_cache(maxsize=1)
def gpt2_split_pattern() -> re.Pattern:
    """GPT-2's pre-split rule, ``'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+``,
    with \\p{L}, \\p{N} and \\s spelled out as character classes."""
    letters, numbers = [], []
    for c in range(sys.maxunicode + 1):
        cat = unicodedata.category(chr(c))
        if cat[0] == "L":
            letters.append(c)
        elif cat[0] == "N":
            numbers.append(c)
    L, N, S = _ranges(letters), _ranges(numbers), _ranges(sorted(map(ord, WHITE_SPACE)))
    return re.compile(
        rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{L}]+| ?[{N}]+| ?[^{S}{L}{N}]+|[{S}]+(?![^{S}])|[{S}]+"
    )


class TokenStrings:
    """Decoding shared by the byte-level tokenizers: ids -> bytes -> text, and a printable form per token.

    A subclass sets ``_pieces`` (the bytes each id stands for, indexed by id) and ``vocab_size``.
    """

    _pieces: list[bytes]
    vocab_size: int

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        if hasattr(ids, "tolist"):  # a tensor or an array
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise ValueError(f"ids must be a list (or 1-D tensor) of token ids, got {type(ids).__name__}: {ids!r:.40}")
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
        """Text of ``ids`` (special tokens as their text); incomplete UTF-8 sequences become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_str(self, token_id: int) -> str:
        """A printable form of one token, for looking at tokens: "\\n" for a newline, "\\xc3" for a
        byte that is only part of a character. Spaces are kept (" cat" starts with a space)."""
        text = self.decode_bytes([token_id]).decode("utf-8", errors="backslashreplace")
        return text.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")

    def tokens(self, text: str) -> list[str]:
        """``text`` cut into its tokens' printable forms (see ``token_str``)."""
        return [self.token_str(i) for i in self.encode(text)]  # type: ignore[attr-defined]


class ByteLevelBPE(TokenStrings):
    """A pretrained byte-level BPE tokenizer: ``encode``, ``decode``, ``decode_bytes``, ``eot_id``, ``vocab_size``.

    ``tokens[i]`` (kept as ``id_to_token``) is token i in the byte alphabet; ``merges`` are ``"a b"`` pairs, most important first;
    ``control`` lists the ids of control tokens, which are matched whole in the text.
    """

    def __init__(self, tokens: Sequence[str], merges: Sequence[str], control: Iterable[int], eot_id: int,
                 bos_id: int | None = None, chat_template: str | None = None, source: str = "tokenizer"):
        self.source = source
        self.id_to_token = list(tokens)
        self.vocab = {t: i for i, t in enumerate(self.id_to_token)}
        if len(self.vocab) != len(self.id_to_token):
            raise ValueError(f"{source}: the vocabulary lists a token twice")
        self._ranks: dict[tuple[str, str], int] = {}
        for rank, merge in enumerate(merges):
            pair = tuple(merge.split(" "))
            if len(pair) != 2 or "".join(pair) not in self.vocab:
                raise ValueError(f"{source}: merge {rank} ({merge!r}) is not two pieces forming a known token")
            self._ranks.setdefault(pair, rank)
        to_char = byte_alphabet()
        # A vocabulary may lack a few bytes (bytes that never occur in UTF-8, rare control characters); like
        # the reference tokenizers, such a byte is dropped from the text before merging (None here).
        self._byte_char = [to_char[b] if to_char[b] in self.vocab else None for b in range(256)]
        self._char_byte = {ch: b for b, ch in to_char.items()}
        self.control_ids = sorted(set(control))
        for i in self.control_ids + [eot_id] + ([bos_id] if bos_id is not None else []):
            if not 0 <= i < len(self.id_to_token):
                raise ValueError(f"{source}: special token id {i} is outside the vocabulary of {len(self.id_to_token)}")
        self.eot_id, self.bos_id = eot_id, bos_id
        self.chat_template = chat_template
        # control tokens are found first; the longest wins where two start at the same place
        specials = sorted((self.id_to_token[i] for i in self.control_ids), key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, specials))) if specials else None
        self._split = gpt2_split_pattern().findall
        self._pieces = [self._piece_bytes(i) for i in range(len(self.id_to_token))]
        self._cache: dict[str, list[int]] = {}

    def _piece_bytes(self, i: int) -> bytes:
        token = self.id_to_token[i]
        if i in self.control_ids or any(ch not in self._char_byte for ch in token):
            return token.encode("utf-8")  # control tokens (and odd entries) stand for their own text
        return bytes(self._char_byte[ch] for ch in token)

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_token)

    @property
    def eot_token(self) -> str:
        """The end-of-turn token's text (``<|im_end|>`` for a ChatML model)."""
        return self.id_to_token[self.eot_id]

    def _bpe(self, chunk: str) -> list[int]:
        symbols = [c for c in map(self._byte_char.__getitem__, chunk.encode("utf-8")) if c is not None]
        ranks = self._ranks
        while len(symbols) > 1:
            best, best_rank = None, None
            for pair in zip(symbols, symbols[1:]):
                r = ranks.get(pair)
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = pair, r
            if best is None:
                break
            a, b = best
            merged, i, n = [], 0, len(symbols)
            while i < n:  # every occurrence, left to right
                if i < n - 1 and symbols[i] == a and symbols[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return [self.vocab[s] for s in symbols]

    def _encode_plain(self, text: str, out: list[int]) -> None:
        cache = self._cache
        for chunk in self._split(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = self._bpe(chunk)
                if len(cache) < _CACHE_LIMIT:
                    cache[chunk] = ids
            out.extend(ids)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; control tokens written in the text (``<|im_start|>``) become their single id."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"text must be valid Unicode (encodable as UTF-8): {err.reason} at {err.start}") from err
        out: list[int] = []
        pos = 0
        if self._special_re is not None:
            for m in self._special_re.finditer(text):
                self._encode_plain(text[pos:m.start()], out)
                out.append(self.vocab[m.group()])
                pos = m.end()
        self._encode_plain(text[pos:], out)
        return out

    def __repr__(self) -> str:
        return (f"ByteLevelBPE(vocab_size={self.vocab_size}, merges={len(self._ranks)}, "
                f"control_tokens={len(self.control_ids)}, eot={self.eot_token!r})")
