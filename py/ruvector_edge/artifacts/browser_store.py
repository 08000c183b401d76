"""Pyodide block store: artifact blocks in IndexedDB, behind the worker's `edgeArtifacts` bridge.

Imported only under Pyodide (``import js`` fails elsewhere). `BlockStore` is
synchronous, IndexedDB is promise-only; as for memories (memory/browser.py) a
synchronous in-memory mirror answers reads and takes writes at once, and the
writes go to IndexedDB behind it: in the background when an event loop runs,
and for certain on an awaited `flush()`. Blocks are immutable, so the queue
only holds puts and discards, coalesced per CID.

The mirror holds every stored block, so this suits the artifacts a page keeps
(models, Q-tables, memory snapshots), not gigabytes; an `ArtifactStore` over it
can use a small cache (``cache_bytes=max_block_bytes``) to avoid holding
blocks twice. Blocks are verified against their CIDs when the ArtifactStore
reads them, so a block altered inside IndexedDB is caught and dropped there.
"""

from __future__ import annotations

import asyncio
import json
import logging

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, JsProxy  # type: ignore[import-not-found]

from ..errors import ProviderUnavailable
from .blockstore import BlockStore
from .cid import parse_cid

__all__ = ["IndexedDbBlockStore", "artifact_db_name"]

log = logging.getLogger(__name__)


def _bridge() -> JsProxy:
    bridge = getattr(js, "edgeArtifacts", None)
    if bridge is None:
        raise ProviderUnavailable("globalThis.edgeArtifacts is missing: load web/bridges/artifact-idb.js in the worker first")
    return bridge


def _u8(data: bytes) -> JsProxy:
    arr = js.Uint8Array.new(len(data))
    if data:
        arr.assign(data)
    return arr


def artifact_db_name(agent_id: str) -> str:
    """The IndexedDB database that holds one agent's artifact blocks."""
    return f"ruvector-edge/artifacts/{agent_id}"


class IndexedDbBlockStore(BlockStore):
    """Blocks in IndexedDB under their CID text; open with ``await IndexedDbBlockStore.open(agent_id)``.

    A failed write stays queued: `flush()` raises OSError and the next flush retries it.
    """

    def __init__(self, db: JsProxy, name: str, blocks: dict[str, bytes]) -> None:
        """Use `open()`: the database must be opened and read with awaits first."""
        self._js = _bridge()
        self._db: JsProxy | None = db
        self.name = name
        self._mirror = blocks
        self._pending: dict[str, bytes | None] = {}  # cid -> bytes to put, or None to delete
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, agent_id: str, db_name: str | None = None) -> IndexedDbBlockStore:
        """Open (creating if needed) the database and read every block it holds."""
        bridge = _bridge()
        name = artifact_db_name(agent_id) if db_name is None else db_name
        try:
            db = await bridge.blocksOpen(name)
            loaded = await bridge.blocksLoad(db)
        except JsException as error:
            raise ProviderUnavailable(f"IndexedDB database {name!r} could not be opened: {error}") from error
        data = loaded.data.to_bytes()
        blocks: dict[str, bytes] = {}
        at = 0
        for cid, size in zip(json.loads(loaded.cids), json.loads(loaded.lengths)):
            blocks[cid] = data[at : at + size]
            at += size
        return cls(db, name, blocks)

    @property
    def unflushed(self) -> int:
        """How many CIDs have changes not yet confirmed on disk."""
        return len(self._pending)

    def __len__(self) -> int:
        return len(self._mirror)

    # BlockStore --------------------------------------------------------------------------
    def get(self, cid: str) -> bytes | None:
        return self._mirror.get(cid)

    def has(self, cid: str) -> bool:
        return cid in self._mirror

    def put(self, cid: str, data: bytes) -> None:
        self._check_open()
        parse_cid(cid)
        if cid in self._mirror:
            return
        self._mirror[cid] = bytes(data)
        self._pending[cid] = self._mirror[cid]
        self._write_behind()

    def discard(self, cid: str) -> None:
        self._check_open()
        if self._mirror.pop(cid, None) is not None or cid in self._pending:
            self._pending[cid] = None
            self._write_behind()

    # Persistence -------------------------------------------------------------------------
    async def flush(self) -> None:
        """Return once every change made before this call is committed to IndexedDB."""
        async with self._lock:
            if not self._pending:
                return
            self._check_open()
            batch, self._pending = self._pending, {}
            try:
                await self._start_write(batch)
            except JsException as error:
                batch.update(self._pending)  # later changes win over the failed ones
                self._pending = batch
                raise OSError(f"IndexedDB write to {self.name!r} failed: {error}") from error

    def close(self) -> None:
        """Close the database; unflushed changes are still written, but nobody learns whether they landed."""
        if self._db is None:
            return
        if self._pending:
            log.warning("%s closed with %d unflushed blocks: writing them unconfirmed", self.name, len(self._pending))
            batch, self._pending = self._pending, {}
            self._start_write(batch).catch(js.console.warn)
        self._js.blocksClose(self._db)
        self._db = None

    def _check_open(self) -> None:
        if self._db is None:
            raise ValueError(f"{self.name} is closed")

    def _start_write(self, batch: dict[str, bytes | None]) -> JsProxy:
        """Create the transaction now (synchronously, inside the JS call); returns its promise."""
        puts = [(cid, data) for cid, data in batch.items() if data is not None]
        deletes = [cid for cid, data in batch.items() if data is None]
        return self._js.blocksApply(
            self._db,
            json.dumps([[cid, len(data)] for cid, data in puts]),
            _u8(b"".join(data for _, data in puts)),
            json.dumps(deletes),
        )

    def _write_behind(self) -> None:
        if self._background is not None and not self._background.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._background = loop.create_task(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        while self._pending and self._db is not None:
            try:
                await self.flush()
            except Exception as error:  # kept queued; the caller's own flush() retries and raises
                log.warning("background write of %s failed: %s", self.name, error)
                return
