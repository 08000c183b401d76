"""Where memories outlive the process: one `MemoryStore` per runtime (SQLite natively, IndexedDB in the browser).

`VectorMemory` writes through the store *before* it changes its own state and
before `store_memory` returns, so an acknowledged memory is on disk, and a
write that fails leaves memory and disk as they were. Each change is one
`apply` call — an insertion together with the eviction it causes, or a whole
import batch — so it lands atomically or not at all.

A peer's entries (an import) go through `apply_synced`: as atomic, but a
store may skip flushing them to stable storage, because what a peer sent it
will send again at the next sync while an agent's own memory exists nowhere
else.
"""

from __future__ import annotations

import abc
import os
import secrets
import sqlite3
from collections.abc import Sequence
from os import PathLike

from .embedder import HASHING_MODEL
from .entry import MemoryEntry
from .index_file import IndexFile

__all__ = ["CHECKPOINT_PAGES", "MemoryStore", "SqliteMemoryStore"]

CHECKPOINT_PAGES = 8192


class MemoryStore(abc.ABC):
    """Durable storage of memory entries, keyed by id."""

    @abc.abstractmethod
    def load(self, dim: int) -> list[MemoryEntry]:
        """Every stored entry in `seq` order; a store made for another dimension refuses (ValueError)."""

    @abc.abstractmethod
    def apply(self, put: Sequence[MemoryEntry], delete: Sequence[str]) -> None:
        """Insert or replace `put` (by id) and remove `delete` in one atomic, durable step."""

    def apply_synced(self, put: Sequence[MemoryEntry], delete: Sequence[str]) -> None:
        """`apply` for entries a peer sent (and the evictions they cause): atomic, and durable at the
        store's discretion (a power cut may lose the last ones; the peers resend them)."""
        self.apply(put, delete)

    def index_file(self) -> IndexFile | None:
        """Where a kernel may cache its ANN index for this store, and the key that authenticates it
        (None: nowhere; the index is rebuilt at each open)."""
        return None

    def close(self) -> None:
        """Release the store; the default holds nothing."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS memory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS memories (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    content TEXT NOT NULL,
    metadata TEXT,
    embedding BLOB NOT NULL,
    model TEXT NOT NULL DEFAULT '%s'
);
""" % HASHING_MODEL


class SqliteMemoryStore(MemoryStore):
    """SQLite in WAL mode; every `apply` is committed before it returns.

    `synchronous=FULL` fsyncs the WAL on each commit, so an acknowledged memory
    survives a power cut as well as a killed process (NORMAL would be enough
    for the latter only). `apply_synced` commits with NORMAL: no fsync, which
    was the largest cost of a sync-sized import after the graph insert (one
    per 32-entry SYNC_MEMORIES page). A killed process still loses nothing
    committed (the WAL is in the OS's cache); a power cut or OS crash can lose
    the imports committed since the last fsync (the next own write or WAL
    checkpoint), never part of one, and never an own memory: the database
    stays consistent and the peers resend what is missing.

    The WAL is copied back into the database every CHECKPOINT_PAGES pages rather
    than SQLite's default 1,000: each checkpoint fsyncs the database, and a full
    memory writes ~3 pages per import (the row, and a random leaf of the id index
    for it and for the entry it evicts), so at 1,000 pages (~330 imports of 384-d
    entries) those fsyncs were half of an import's commit. Between checkpoints the
    WAL holds up to ~32 MB (4 KiB pages; cut back to that after one if it grew past),
    so a power cut may lose more imports than before, which the peers resend.

    Embeddings are the packed float32 bytes as blobs,
    each with the id of the model that made it; a file from before models were
    recorded gains the column, its rows marked as the hashing embedder's.
    """

    def __init__(self, path: str | PathLike[str], synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = path
        self._synchronous = synchronous
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
        self._db.execute(f"PRAGMA journal_size_limit={CHECKPOINT_PAGES * 4096}")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(memories)")}
        if "model" not in columns:
            self._db.execute(f"ALTER TABLE memories ADD COLUMN model TEXT NOT NULL DEFAULT '{HASHING_MODEL}'")

    def load(self, dim: int) -> list[MemoryEntry]:
        row = self._db.execute("SELECT value FROM memory_meta WHERE key = 'dim'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO memory_meta (key, value) VALUES ('dim', ?)", (str(dim),))
        elif int(row[0]) != dim:
            raise ValueError(f"{self.path} holds {row[0]}-dimensional memories, not {dim}")
        rows = self._db.execute(
            "SELECT id, content, owner, embedding, metadata, seq, model FROM memories ORDER BY seq"
        ).fetchall()
        entries = []
        for id_, content, owner, blob, metadata, seq, model in rows:
            if len(blob) != 4 * dim:
                raise ValueError(f"{self.path}: memory {id_} has a {len(blob)}-byte embedding, expected {4 * dim}")
            entries.append(MemoryEntry(id_, content, owner, bytes(blob), metadata, seq, model))
        return entries

    def apply(self, put: Sequence[MemoryEntry], delete: Sequence[str]) -> None:
        self._commit(put, delete)

    def apply_synced(self, put: Sequence[MemoryEntry], delete: Sequence[str]) -> None:
        if self._synchronous == "NORMAL":
            self._commit(put, delete)
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._commit(put, delete)
        finally:
            self._db.execute(f"PRAGMA synchronous={self._synchronous}")

    def _commit(self, put: Sequence[MemoryEntry], delete: Sequence[str]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM memories WHERE id = ?", [(id_,) for id_ in delete])
            db.executemany(
                "INSERT OR REPLACE INTO memories (id, seq, owner, content, metadata, embedding, model)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(e.id, e.seq, e.owner, e.content, e.metadata_json, e.vector, e.model) for e in put],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def index_file(self) -> IndexFile | None:
        """`<database>.index` beside the database, authenticated with a random key kept in it."""
        if str(self.path) in ("", ":memory:"):
            return None
        row = self._db.execute("SELECT value FROM memory_meta WHERE key = 'index_key'").fetchone()
        if row is None:
            secret = secrets.token_hex(32)
            self._db.execute("INSERT INTO memory_meta (key, value) VALUES ('index_key', ?)", (secret,))
        else:
            secret = row[0]
        return IndexFile(f"{os.fspath(self.path)}.index", bytes.fromhex(secret))

    def close(self) -> None:
        self._db.close()
