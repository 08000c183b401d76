"""Content-addressed artifacts: chunked, verified on every read and on receipt.

An artifact of at most `CHUNK_SIZE` bytes stored as is is one raw block, and
its CID is the plain CIDv1 of its bytes. Anything larger, and anything stored
compressed, becomes `CHUNK_SIZE` raw chunks plus a manifest (canonical JSON,
json codec) that lists them in order with the total size and the encoding, so
a peer that holds only the CID learns everything else from verified bytes.

Peers fetch what they lack block by block: `missing_chunks(cid)` names the
blocks to ask for (first the manifest, then its chunks), `put_chunk` accepts a
block only if it hashes to its CID, so a bad block from one peer is refused and
fetched from another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..canonical import canonicalize
from ..errors import ChunkHashMismatch, InvalidCodecConfig, MalformedMessage, MissingChunks, OversizedMessage
from ..compression import CompressionLevel, Limits, TensorCodec
from ..p2p import wire
from .blockstore import BlockStore, LruBlockCache
from .cid import JSON, RAW, Cid, cid_for, parse_cid

__all__ = ["ArtifactStore", "Manifest", "StoreLimits", "CHUNK_SIZE", "content_checksum"]

CHUNK_SIZE = 256 * 1024
MANIFEST_FORMAT = "ruvector-edge/artifact@1"
ENCODINGS = ("identity", "rvtc")
_MANIFEST_KEYS = frozenset({"format", "size", "chunk_size", "encoding", "chunks"})


@dataclass(frozen=True)
class StoreLimits:
    max_artifact_bytes: int = 256 << 20
    max_block_bytes: int = 1 << 20
    max_member_disk_bytes: int = 256 << 20
    """Bytes of blocks one member may have this store persist (per run); past it they stay in the cache."""


@dataclass(frozen=True)
class Manifest:
    size: int
    encoding: str
    chunks: tuple[str, ...]
    chunk_size: int = CHUNK_SIZE

    def to_json(self) -> bytes:
        return canonicalize(
            {"format": MANIFEST_FORMAT, "size": self.size, "chunk_size": self.chunk_size,
             "encoding": self.encoding, "chunks": list(self.chunks)}
        )

    @classmethod
    def from_json(cls, data: bytes, limits: StoreLimits) -> "Manifest":
        obj = wire.parse_json_object(data, limits.max_block_bytes)
        wire.expect_keys(obj, _MANIFEST_KEYS, "manifest")
        if obj["format"] != MANIFEST_FORMAT or obj["encoding"] not in ENCODINGS:
            raise MalformedMessage("unknown manifest format or encoding")
        size = wire.get_int(obj, "size", 0, limits.max_artifact_bytes)
        chunk_size = wire.get_int(obj, "chunk_size", 1, limits.max_block_bytes)
        chunks = obj["chunks"]
        if not isinstance(chunks, list) or len(chunks) != -(-size // chunk_size):
            raise MalformedMessage("manifest chunk count does not match its size")
        for text in chunks:
            if parse_cid(text).codec != RAW:
                raise MalformedMessage("manifest chunks must be raw blocks")
        return cls(size, obj["encoding"], tuple(chunks), chunk_size)


class ArtifactStore:
    """Blocks in a bounded LRU cache, optionally backed by a persistent `BlockStore` (e.g. `DiskBlockStore`).

    Without a backend the cache is the store: evicted blocks become missing and
    are fetched again from peers like any other missing block. Blocks received
    from a member are held for that member: the cache shares its room fairly
    between owners (LruBlockCache) and the backend persists at most
    `max_member_disk_bytes` per member, so one member flooding blocks cannot
    evict or crowd out anyone else's. `over_share` counts what such a flood lost.
    """

    def __init__(
        self,
        backend: BlockStore | None = None,
        *,
        cache_bytes: int = 64 << 20,
        limits: StoreLimits | None = None,
        codec_level: CompressionLevel = CompressionLevel.HIGH,
    ) -> None:
        self.limits = limits or StoreLimits()
        if cache_bytes < self.limits.max_block_bytes:
            raise InvalidCodecConfig("the cache must hold at least one block of the largest size")
        self.cache = LruBlockCache(cache_bytes)
        self.backend = backend
        self._persisted: dict[str, int] = {}  # member -> bytes of its blocks written to the backend
        self.over_disk_quota = 0
        self.codec_level = codec_level
        self._tensor_codec: TensorCodec | None = None

    @property
    def _codec(self) -> TensorCodec:
        """Built on first use: only compressed artifacts need it, and in the browser it loads the LZ4 bridge."""
        if self._tensor_codec is None:
            cap = self.limits.max_artifact_bytes + (1 << 20)
            self._tensor_codec = TensorCodec(self.codec_level, limits=Limits(max_message_bytes=cap, max_decompressed_bytes=cap))
        return self._tensor_codec

    # Blocks ------------------------------------------------------------------------------
    def has(self, cid: str) -> bool:
        return self.cache.has(cid) or (self.backend is not None and self.backend.has(cid))

    @property
    def over_share(self) -> int:
        """Blocks members lost for holding more than their share: evicted from the cache, or kept off disk."""
        return self.cache.over_share + self.over_disk_quota

    def _put_block(self, cid: str, data: bytes, owner: str = "") -> None:
        if self.backend is not None:
            used = self._persisted.get(owner, 0)
            if not owner:
                self.backend.put(cid, data)
            elif used + len(data) <= self.limits.max_member_disk_bytes:
                self.backend.put(cid, data)
                self._persisted[owner] = used + len(data)
            else:
                self.over_disk_quota += 1
        self.cache.put(cid, data, owner)

    def _get_block(self, cid: Cid, text: str) -> bytes | None:
        data = self.cache.get(text)
        if data is None and self.backend is not None:
            data = self.backend.get(text)
            if data is not None:
                self.cache.put(text, data)
        if data is not None and not cid.matches(data):
            self.cache.discard(text)
            if self.backend is not None:
                self.backend.discard(text)
            raise ChunkHashMismatch(f"stored block {text} is corrupt; dropped, fetch it again")
        return data

    def put_chunk(self, cid: str, data: bytes, sender: str = "") -> None:
        """Accept a block received from member `sender`, only if it is what its CID names (a manifest must
        also parse); it is held within that member's share."""
        parsed = parse_cid(cid)
        if len(data) > self.limits.max_block_bytes:
            raise OversizedMessage(f"block of {len(data)} bytes exceeds {self.limits.max_block_bytes}")
        if not parsed.matches(data):
            raise ChunkHashMismatch(f"block does not hash to {cid}")
        if parsed.codec == JSON:
            Manifest.from_json(data, self.limits)
        if not sender or not self.has(cid):  # a block we already hold stays where it is
            self._put_block(cid, bytes(data), sender)

    def get_chunk(self, cid: str) -> bytes | None:
        """A verified block to serve to a peer, or None."""
        return self._get_block(parse_cid(cid), cid)

    def missing_chunks(self, cid: str) -> list[str]:
        """The blocks still needed before `get_artifact(cid)` can succeed: the manifest first, then chunks."""
        parsed = parse_cid(cid)
        if not self.has(cid):
            return [cid]
        if parsed.codec == RAW:
            return []
        manifest = self._manifest(parsed, cid)
        return [c for c in dict.fromkeys(manifest.chunks) if not self.has(c)]

    # Artifacts ---------------------------------------------------------------------------
    def store_artifact(self, data: bytes | bytearray | memoryview, compressed: bool = False) -> str:
        """Store `data` (compressed with the store's lossless codec if asked) and return its CID."""
        raw = bytes(data)
        if len(raw) > self.limits.max_artifact_bytes:
            raise OversizedMessage(f"artifact of {len(raw)} bytes exceeds {self.limits.max_artifact_bytes}")
        encoding = "identity"
        if compressed:
            raw, encoding = self._codec.compress(raw), "rvtc"
        elif len(raw) <= CHUNK_SIZE:
            cid = cid_for(raw, RAW)
            self._put_block(cid, raw)
            return cid
        chunks = []
        for start in range(0, len(raw), CHUNK_SIZE):
            piece = raw[start : start + CHUNK_SIZE]
            chunks.append(cid_for(piece, RAW))
            self._put_block(chunks[-1], piece)
        manifest = Manifest(len(raw), encoding, tuple(chunks)).to_json()
        cid = cid_for(manifest, JSON)
        self._put_block(cid, manifest)
        return cid

    def get_artifact(self, cid: str) -> bytes:
        """The artifact's bytes, every block verified against its hash; MissingChunks names what to fetch."""
        parsed = parse_cid(cid)
        data = self._get_block(parsed, cid)
        if data is None:
            raise MissingChunks([cid])
        if parsed.codec == RAW:
            return data
        manifest = Manifest.from_json(data, self.limits)
        missing = [c for c in dict.fromkeys(manifest.chunks) if not self.has(c)]
        if missing:
            raise MissingChunks(missing)
        parts = []
        for i, text in enumerate(manifest.chunks):
            block = self._get_block(parse_cid(text), text)
            if block is None:
                raise MissingChunks([text])
            expected = min(manifest.chunk_size, manifest.size - i * manifest.chunk_size)
            if len(block) != expected:
                raise MalformedMessage(f"chunk {i} is {len(block)} bytes, manifest implies {expected}")
            parts.append(block)
        body = b"".join(parts)
        return self._codec.decompress(body) if manifest.encoding == "rvtc" else body

    def _manifest(self, parsed: Cid, text: str) -> Manifest:
        data = self._get_block(parsed, text)
        if data is None:
            raise MissingChunks([text])
        return Manifest.from_json(data, self.limits)


def content_checksum(data: bytes) -> str:
    """SHA-256 hex of an artifact's decoded bytes (what an ArtifactPointer's checksum names)."""
    return hashlib.sha256(data).hexdigest()

