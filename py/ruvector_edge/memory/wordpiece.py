"""BERT WordPiece in pure Python: the ids HF `tokenizers` gives for all-MiniLM-L6-v2's tokenizer.json.

The browser has no `tokenizers` wheel, and the JS ports pull in large
dependencies; this is the same pipeline in ~200 lines that run unchanged in
CPython and Pyodide: special tokens matched in the raw text, BertNormalizer
(drop control characters, space out CJK ideographs, NFD, strip accents,
lower-case), BertPreTokenizer (split at whitespace, isolate punctuation),
greedy longest-match WordPiece, then [CLS] … [SEP] truncated to `max_tokens`.

Every per-character decision comes from `wordpiece_tables`, which records what
`tokenizers` itself does with each code point (see
scripts/gen_wordpiece_tables.py): Rust's Unicode tables are not Python's, and
Python's differ between 3.11 and Pyodide's 3.14, so `unicodedata` would give
other ids in each runtime. The normalizer is then one `str.translate`. It is
per-character except for NFD's canonical reordering of combining marks; that
cannot change an id as long as no vocabulary entry holds a mark that survives
accent stripping (a word containing one is [UNK] in any order), which the
constructor checks instead of reordering.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence

from ..errors import MalformedMessage, ProviderUnavailable
from . import wordpiece_tables as tables

__all__ = ["WordPiece"]

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_CACHE_LIMIT = 65_536  # characters and words remembered; beyond it, computed each time
_DROP, _SPACE, _PAD = 0, 1, 2


def _ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        out.append((int(first, 16), int(last or first, 16)))
    return out


def _char_class(ranges: list[tuple[int, int]]) -> str:
    """A regex character class body for code point ranges."""
    return "".join(f"\\U{a:08x}" if a == b else f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


class _Normalizer(dict):
    """A `str.translate` table computed on first use of each code point: BertNormalizer per character."""

    def __init__(self) -> None:
        super().__init__()
        for entry in tables.MAP.split(","):
            cp, _, outs = entry.partition(":")
            self[int(cp, 16)] = "".join(chr(int(o, 16)) for o in outs.split())
        spans = [(a, b, kind) for kind, name in ((_DROP, "DROP"), (_SPACE, "SPACE"), (_PAD, "PAD"))
                 for a, b in _ranges(getattr(tables, name))]
        spans.sort()
        self._starts = [a for a, _, _ in spans]
        self._spans = spans

    def __missing__(self, cp: int) -> str | int | None:
        value = self._compute(cp)
        if len(self) < _CACHE_LIMIT:
            self[cp] = value
        return value

    def _compute(self, cp: int) -> str | int | None:
        if _HANGUL_FIRST <= cp <= _HANGUL_LAST:
            index = cp - _HANGUL_FIRST
            trail = index % 28
            return chr(0x1100 + index // 588) + chr(0x1161 + (index % 588) // 28) + (chr(0x11A7 + trail) if trail else "")
        i = bisect.bisect_right(self._starts, cp) - 1
        if i >= 0 and cp <= self._spans[i][1]:
            kind = self._spans[i][2]
            return None if kind == _DROP else " " if kind == _SPACE else f" {chr(cp)} "
        return cp


class WordPiece:
    """Text to model input ids, as HF `tokenizers` with this tokenizer.json, truncation at `max_tokens`."""

    def __init__(self, tokenizer_json: bytes | str, max_tokens: int = 256) -> None:
        """ProviderUnavailable when the file is not the BERT WordPiece pipeline reproduced here."""
        try:
            doc = json.loads(tokenizer_json)
            model = doc["model"]
            self._vocab: dict[str, int] = dict(model["vocab"])
            self._unk = self._vocab[model["unk_token"]]
            self._prefix = model["continuing_subword_prefix"]
            self._max_chars = int(model["max_input_chars_per_word"])
            specials = doc["post_processor"]["special_tokens"]
            self._cls, self._sep = specials["[CLS]"]["ids"][0], specials["[SEP]"]["ids"][0]
            added = {t["content"]: t["id"] for t in doc["added_tokens"] if not t["normalized"]}
            expected = (model["type"], doc["normalizer"], doc["pre_tokenizer"]["type"], doc["post_processor"]["type"])
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise ProviderUnavailable(f"not a WordPiece tokenizer.json: {error!r}") from error
        bert = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True, "strip_accents": None, "lowercase": True}
        if expected != ("WordPiece", bert, "BertPreTokenizer", "TemplateProcessing") or not 3 <= max_tokens:
            raise ProviderUnavailable(f"unsupported tokenizer pipeline {expected!r} or max_tokens {max_tokens!r}")
        marks = {chr(cp) for a, b in _ranges(tables.MARKS) for cp in range(a, b + 1)}
        if marks.intersection("".join(self._vocab)):
            raise ProviderUnavailable("the vocabulary holds combining marks NFD reorders: per-character tables would be wrong")
        self.max_tokens = max_tokens
        self._added = added
        self._added_re = re.compile("|".join(map(re.escape, sorted(added, key=len, reverse=True)))) if added else None
        self._longest = max(map(len, self._vocab))
        self._normalizer = _Normalizer()
        punct, space = _char_class(_ranges(tables.PUNCT)), _char_class(_ranges(tables.WHITESPACE))
        self._words = re.compile(f"[{punct}]|[^{punct}{space}]+")
        self._word_cache: dict[str, list[int]] = {}

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(text) for text in texts]

    def encode(self, text: str) -> list[int]:
        """[CLS] + word pieces + [SEP], at most `max_tokens` ids; MalformedMessage for a non-string or a lone surrogate."""
        if type(text) is not str:
            raise MalformedMessage("text to tokenise must be a string")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise MalformedMessage(f"text is not valid Unicode: {error.reason}") from None
        limit = self.max_tokens - 2
        ids: list[int] = []
        start = 0
        matches = self._added_re.finditer(text) if self._added_re is not None else ()
        for match in matches:
            if len(ids) >= limit:
                break
            self._encode_plain(text[start : match.start()], ids, limit)
            ids.append(self._added[match.group()])
            start = match.end()
        self._encode_plain(text[start:], ids, limit)
        return [self._cls, *ids[:limit], self._sep]

    def _encode_plain(self, text: str, ids: list[int], limit: int) -> None:
        if not text or len(ids) >= limit:
            return
        for word in self._words.findall(text.translate(self._normalizer)):
            pieces = self._word_cache.get(word)
            if pieces is None:
                pieces = self._wordpiece(word)
                if len(self._word_cache) < _CACHE_LIMIT:
                    self._word_cache[word] = pieces
            ids.extend(pieces)
            if len(ids) >= limit:
                return

    def _wordpiece(self, word: str) -> list[int]:
        """Greedy longest match first; a word with any unmatched rest is one [UNK]."""
        if len(word) > self._max_chars:
            return [self._unk]
        pieces: list[int] = []
        start, n = 0, len(word)
        while start < n:
            end = min(n, start + self._longest)
            while end > start:
                piece = word[start:end] if start == 0 else self._prefix + word[start:end]
                found = self._vocab.get(piece)
                if found is not None:
                    break
                end -= 1
            else:
                return [self._unk]
            pieces.append(found)
            start = end
        return pieces
