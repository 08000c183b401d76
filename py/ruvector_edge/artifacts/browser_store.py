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

import json

from pyodide.ffi import JsException, JsProxy  # type: ignore[import-not-found]

from ..errors import ProviderUnavailable
from ..platform.jsffi import WriteBehindStore, js_bridge
from ..platform.jsffi import to_u8 as _u8
from .blockstore import BlockStore
from .cid import parse_cid

__all__ = ["IndexedDbBlockStore", "artifact_db_name"]


def _bridge() -> JsProxy:
    return js_bridge("edgeArtifacts", "web/bridges/artifact-idb.js")


def artifact_db_name(agent_id: str) -> str:
    """The IndexedDB database that holds one agent's artifact blocks."""
    return f"ruvector-edge/artifacts/{agent_id}"


class IndexedDbBlockStore(WriteBehindStore, BlockStore):
    """Blocks in IndexedDB under their CID text; open with ``await IndexedDbBlockStore.open(agent_id)``.

    A failed write stays queued: `flush()` raises OSError and the next flush retries it.
    """

    def __init__(self, db: JsProxy, name: str, blocks: dict[str, bytes]) -> None:
        """Use `open()`: the database must be opened and read with awaits first."""
        super().__init__(db, name)  # self._pending: cid -> bytes to put, or None to delete
        self._js = _bridge()
        self._mirror = blocks

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

    # Persistence (flush, close: WriteBehindStore) ---------------------------------------
    def _close_db(self, db: JsProxy) -> None:
        self._js.blocksClose(db)

    def _start_write(self, batch: dict[str, bytes | None]) -> JsProxy:
        puts = [(cid, data) for cid, data in batch.items() if data is not None]
        deletes = [cid for cid, data in batch.items() if data is None]
        return self._js.blocksApply(
            self._db,
            json.dumps([[cid, len(data)] for cid, data in puts]),
            _u8(b"".join(data for _, data in puts)),
            json.dumps(deletes),
        )
