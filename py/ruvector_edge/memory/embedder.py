"""Text to vectors: an `Embedder` interface, and a default that needs no model, no network, no numpy.

`HashingEmbedder` is feature hashing (Weinberger et al., 2009) over word
unigrams and bigrams: each feature adds ±1 to one of `dim` buckets, both
chosen by SHA-256 of the feature, and the sum is L2-normalised. Texts sharing
words share buckets, so they score higher than unrelated ones; it knows no
synonyms, which is the price of working offline. `hashlib` rather than
`hash()`: the built-in is salted per process, and the vectors must be the same
in every process, natively and under Pyodide, for synced memories to be
comparable.
"""

from __future__ import annotations

import abc
import hashlib
import math
import re
from collections.abc import Sequence

from ..errors import MalformedMessage

__all__ = ["HASHING_MODEL", "Embedder", "HashingEmbedder"]

HASHING_MODEL = "feature-hashing-sha256-v1"

_WORD = re.compile(r"\w+")


class Embedder(abc.ABC):
    """Turns texts into `dim`-dimensional vectors; batch-first like every provider.

    `model_id` names the model (and, for a learned one, the hash of its weights):
    memories record it, and vectors made under different ids are never compared.
    """

    dim: int
    model_id: str

    @abc.abstractmethod
    def embed_many(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        """One vector per text, in order (a float32[n, dim] array where numpy is at hand)."""

    def embed(self, text: str) -> Sequence[float]:
        return self.embed_many([text])[0]


class HashingEmbedder(Embedder):
    """Deterministic signed feature hashing of lower-cased word unigrams and bigrams, L2-normalised."""

    model_id = HASHING_MODEL

    def __init__(self, dim: int = 384) -> None:
        if type(dim) is not int or dim < 1:
            raise ValueError(f"dimension must be a positive integer, not {dim!r}")
        self.dim = dim

    def embed_many(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def _embed(self, text: str) -> list[float]:
        if type(text) is not str:
            raise MalformedMessage("text to embed must be a string")
        words = _WORD.findall(text.lower())
        if not words:
            raise MalformedMessage("text has no words to embed")
        buckets = [0.0] * self.dim
        features = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
        for feature in features:
            digest = hashlib.sha256(feature.encode("utf-8", "surrogatepass")).digest()
            index = int.from_bytes(digest[:8], "little") % self.dim
            buckets[index] += 1.0 if digest[8] & 1 else -1.0
        norm = math.sqrt(math.fsum(x * x for x in buckets))
        if norm == 0.0:  # every feature cancelled out against another: fall back to the first word alone
            digest = hashlib.sha256(words[0].encode("utf-8", "surrogatepass")).digest()
            buckets = [0.0] * self.dim
            buckets[int.from_bytes(digest[:8], "little") % self.dim] = 1.0
            return buckets
        return [x / norm for x in buckets]
