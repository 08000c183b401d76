"""One stored memory, its content-derived id, and its wire form for SYNC_MEMORIES.

The id is `sha256(JCS({"content": content, "type": "memory"}))` in lowercase
hex: derived from the content alone, so the same text stored by two agents is
one memory everywhere and gossip deduplicates it, and a JS agent computes the
same id with JCS and SubtleCrypto. The dimension is deliberately left out: a
memory holds one dimension, entries of any other are refused before their id
matters, and keeping it out lets a swarm that re-embeds (same dim, new model)
keep its ids. The `type` field keeps these hashes apart from every other
hashed object in the protocol.

A received entry is rebuilt from scratch: the id is recomputed and compared,
the vector is re-checked and re-normalised, and the owner must be the
authenticated sender — nothing a peer claims is taken on trust.

`model` names the embedder that made the vector (its id pins the weights'
hash). It travels with the entry; a memory holds vectors of one model only and
re-embeds a peer's entry of another model from its content (VectorMemory).
Entries written before models were recorded were made by the hashing
embedder, hence the default.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..canonical import canonicalize
from ..errors import MalformedMessage, OversizedMessage, RejectedInput
from ..p2p import wire
from .embedder import HASHING_MODEL
from .kernels import pack_unit_blobs, unpack_vector

__all__ = [
    "MAX_CONTENT_BYTES",
    "MAX_METADATA_BYTES",
    "MemoryEntry",
    "check_content",
    "check_metadata",
    "entries_from_wire",
    "memory_id",
]

MAX_CONTENT_BYTES = 16 * 1024
MAX_METADATA_BYTES = 4 * 1024
MAX_MODEL_ID_CHARS = 128
WIRE_KEYS = frozenset({"id", "content", "owner", "embedding", "metadata", "seq", "model"})


def memory_id(content: str) -> str:
    """The content-derived id: lowercase hex SHA-256 of the canonical {"content", "type": "memory"}."""
    return hashlib.sha256(canonicalize({"content": content, "type": "memory"})).hexdigest()


def check_content(content: object) -> str:
    """Non-empty text of at most MAX_CONTENT_BYTES in UTF-8 (lone surrogates refused)."""
    if type(content) is not str or not content:
        raise MalformedMessage("memory content must be a non-empty string")
    if len(content) > MAX_CONTENT_BYTES:  # cheap bound before encoding: a character is at least one byte
        raise OversizedMessage(f"memory content exceeds {MAX_CONTENT_BYTES} bytes")
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:
        raise MalformedMessage("memory content contains a lone surrogate") from None
    if size > MAX_CONTENT_BYTES:
        raise OversizedMessage(f"memory content of {size} bytes exceeds {MAX_CONTENT_BYTES}")
    return content


def check_metadata(metadata: object) -> str | None:
    """None, or a JSON object of at most MAX_METADATA_BYTES, returned as canonical JSON text."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise MalformedMessage("memory metadata must be a JSON object or None")
    text = canonicalize(metadata)  # CanonicalizationError (a RejectedInput) for NaN, sets, bytes...
    if len(text) > MAX_METADATA_BYTES:
        raise OversizedMessage(f"memory metadata of {len(text)} bytes exceeds {MAX_METADATA_BYTES}")
    return text.decode("utf-8")


@dataclass(frozen=True)
class MemoryEntry:
    """A memory as held: `vector` is the packed unit float32 embedding, `seq` the local insertion order."""

    id: str
    content: str
    owner: str
    vector: bytes
    metadata_json: str | None
    seq: int
    model: str = HASHING_MODEL

    @property
    def metadata(self) -> dict[str, Any] | None:
        """A fresh copy each time, so a caller cannot change what is stored."""
        return None if self.metadata_json is None else json.loads(self.metadata_json)

    def embedding(self) -> list[float]:
        return unpack_vector(self.vector).tolist()

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "content": self.content,
            "owner": self.owner,
            "embedding": wire.b64(self.vector),
            "metadata": self.metadata,
            "seq": self.seq,
            "model": self.model,
        }


def entries_from_wire(objs: Sequence[object], dim: int, sender: str) -> list[MemoryEntry | RejectedInput]:
    """Validate a received page of entries completely, each on its own: the entry, or why it was refused.

    A refusal is a MalformedMessage / OversizedMessage / CanonicalizationError
    (all RejectedInput) for wrong keys or types, a vector of another dimension
    or with NaN/inf/zeros, oversized content or metadata, an owner other than
    the sender, or an id that is not the hash of the content. Entries come
    back with `seq` 0: their local position depends on which the memory keeps.
    The vectors of a page are normalised together (`pack_unit_blobs`), the
    checks run in the same order as for one entry, so an entry is refused for
    the same reason whichever page it came in.
    """
    heads: list[tuple[str, str, dict[str, Any], bytes] | RejectedInput] = []
    for obj in objs:
        try:
            heads.append(_head_from_wire(obj, dim, sender))
        except RejectedInput as error:
            heads.append(error)
    vectors = iter(pack_unit_blobs([head[3] for head in heads if isinstance(head, tuple)], dim))
    return [_tail_from_wire(head, next(vectors)) if isinstance(head, tuple) else head for head in heads]


def _head_from_wire(obj: object, dim: int, sender: str) -> tuple[str, str, dict[str, Any], bytes]:
    """The checks of a received entry up to its packed vector: (claimed id, content, the entry, vector bytes)."""
    if not isinstance(obj, dict):
        raise MalformedMessage("memory entry must be a JSON object")
    wire.expect_keys(obj, WIRE_KEYS, "memory entry")
    claimed = wire.get_hex(obj, "id", 32).hex()
    content = check_content(obj["content"])
    owner = wire.check_id(obj["owner"], "memory owner")
    if owner != sender:
        raise MalformedMessage(f"memory owner {owner!r} is not the sender {sender!r}: provenance unverifiable")
    encoded = obj["embedding"]
    if type(encoded) is not str or len(encoded) != 4 * -(-4 * dim // 3):
        raise MalformedMessage(f"embedding must be base64 of {dim} little-endian float32 values")
    packed = wire.get_b64(obj, "embedding", 4 * dim)
    if len(packed) != 4 * dim:
        raise MalformedMessage(f"embedding must be base64 of {dim} little-endian float32 values")
    return claimed, content, obj, packed


def _tail_from_wire(head: tuple[str, str, dict[str, Any], bytes], vector: bytes | RejectedInput) -> MemoryEntry | RejectedInput:
    """The vector's verdict, then the checks after it, and the entry (seq 0)."""
    if isinstance(vector, RejectedInput):
        return vector
    claimed, content, obj, _ = head
    try:
        metadata_json = check_metadata(obj["metadata"])
        wire.get_int(obj, "seq")
        model = obj["model"]
        if type(model) is not str or not 0 < len(model) <= MAX_MODEL_ID_CHARS or not model.isascii() or not model.isprintable():
            raise MalformedMessage(f"memory model must be a printable ASCII id of at most {MAX_MODEL_ID_CHARS} characters")
        if memory_id(content) != claimed:
            raise MalformedMessage("memory id is not the hash of its content")
    except RejectedInput as error:
        return error
    return MemoryEntry(claimed, content, obj["owner"], vector, metadata_json, 0, model)
