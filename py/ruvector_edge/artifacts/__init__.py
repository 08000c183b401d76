"""Content-addressed artifacts: CIDv1 ids, chunked verified storage, signed pointers."""

from .blockstore import BlockStore, DiskBlockStore, LruBlockCache
from .cid import JSON, RAW, Cid, cid_for, parse_cid
from .pointer import ArtifactPointer, ArtifactType
from .store import CHUNK_SIZE, ArtifactStore, Manifest, StoreLimits, content_checksum

__all__ = [
    "ArtifactPointer",
    "ArtifactStore",
    "ArtifactType",
    "BlockStore",
    "CHUNK_SIZE",
    "Cid",
    "DiskBlockStore",
    "JSON",
    "LruBlockCache",
    "Manifest",
    "RAW",
    "StoreLimits",
    "cid_for",
    "content_checksum",
    "parse_cid",
]
