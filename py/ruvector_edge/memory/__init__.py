"""Shared vector memory: what an agent stores, finds by cosine similarity, and syncs with its swarm.

`VectorMemory` holds the entries; a `VectorKernel` (numpy natively, pure
Python or a JS Float32Array kernel in the browser) does the arithmetic; a
`MemoryStore` (SQLite natively) keeps them across restarts; an `Embedder`
turns text into vectors, offline by default.
"""

from .embedder import Embedder, HashingEmbedder
from . import model_files
from .entry import MAX_CONTENT_BYTES, MAX_METADATA_BYTES, MemoryEntry, memory_id
from .kernels import PurePythonKernel, VectorKernel, default_kernel, pack_unit_vector
from .persistence import MemoryStore, SqliteMemoryStore
from .vector_memory import MAX_IMPORT_BATCH, ImportResult, MemoryHit, Rejection, VectorMemory

__all__ = [
    "MAX_CONTENT_BYTES",
    "MAX_IMPORT_BATCH",
    "MAX_METADATA_BYTES",
    "Embedder",
    "HashingEmbedder",
    "ImportResult",
    "MemoryEntry",
    "MemoryHit",
    "MemoryStore",
    "PurePythonKernel",
    "Rejection",
    "SqliteMemoryStore",
    "VectorKernel",
    "VectorMemory",
    "default_kernel",
    "memory_id",
    "pack_unit_vector",
]
