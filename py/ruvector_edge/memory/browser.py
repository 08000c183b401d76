"""Pyodide vector memory: a Float32Array kernel and an IndexedDB store, both behind the worker's `edgeVectors` bridge.

Imported only under Pyodide (``import js`` fails elsewhere). Vectors already
cross the `VectorKernel` seam as packed little-endian float32 bytes, so a batch
is one copy into a reused `Uint8Array` and one synchronous call into JS; the JS
kernel views the bytes as float32 directly instead of converting element by
element through the FFI.

`MemoryStore` is synchronous (SQLite commits before `apply` returns) while
IndexedDB is promise-only. `IndexedDbMemoryStore` bridges the two without
changing the interface: it keeps an in-memory mirror that answers `load` and
takes `apply` at once, writes behind in the background when an event loop is
running, and offers `flush()`, a coroutine that returns once every change
applied before it is committed to disk. A browser caller must
``await store.flush()`` before it acknowledges a stored memory; until then a
closed tab can lose it.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Sequence

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, JsProxy  # type: ignore[import-not-found]

from ..errors import ProviderUnavailable
from ..platform.jsffi import WriteBehindStore, js_bridge
from ..platform.jsffi import to_u8 as _u8
from .entry import MemoryEntry
from .kernels import PurePythonKernel, VectorKernel
from .persistence import MemoryStore

__all__ = ["IndexedDbMemoryStore", "JsFloat32Kernel", "browser_default_kernel", "memory_db_name"]


def _bridge() -> JsProxy:
    return js_bridge("edgeVectors", "web/bridges/vectors.js")


BROWSER_ANN_ABOVE = 50_000  # bench/browser_ann.mjs: the exact scan 13 ms at 50K, 27 ms at 100K


class JsFloat32Kernel(VectorKernel):
    """Cosine top-k in JS over a growable Float32Array; one FFI call per batch.

    Exact by default. With `ann_above`, from that many rows on an HNSW graph
    (hnswlib-wasm, built in the worker's idle time) proposes candidates and the
    rows score them, as natively. Scores are float64 sums over the float32 components in component
    order, so they equal the pure-Python kernel's to the last few bits (its
    `math.sumprod` rounds once, the JS loop once per term) and the top-k is the same.
    """

    name = "js-float32"

    def __init__(self, dim: int, initial_rows: int = 1024, ann_above: int = 0, persist_as: str = "") -> None:
        """`persist_as` names the graph kept in IndexedDB across reloads (checked by SHA-256 and
        patched to the rows held when it is loaded; see bridges/vectors.js); empty: rebuilt each time."""
        super().__init__(dim)
        if type(ann_above) is not int or ann_above < 0:
            raise ValueError(f"ann_above must be a non-negative integer, not {ann_above!r}")
        if type(persist_as) is not str:
            raise ValueError(f"persist_as must be a string, not {persist_as!r}")
        self._js = _bridge()
        self._handle = self._js.create(dim, max(1, initial_rows), ann_above, persist_as)
        self._n = 0  # mirrored here so len() costs no crossing
        self._buffer = js.Uint8Array.new(4 * dim)

    def __len__(self) -> int:
        return self._n

    def _staged(self, blobs: Sequence[bytes]) -> JsProxy:
        """The blobs, each checked to be one packed vector, copied to the start of the reused buffer."""
        size = 4 * self.dim
        for blob in blobs:
            if len(blob) != size:
                raise ValueError(f"packed vector of {len(blob)} bytes, expected {size}")
        data = b"".join(blobs)
        if len(data) > self._buffer.length:
            self._buffer = js.Uint8Array.new(max(len(data), 2 * self._buffer.length))
        self._buffer.subarray(0, len(data)).assign(data)
        return self._buffer

    def add_many(self, vectors: Sequence[bytes]) -> None:
        if not vectors:
            return
        self._n = self._js.addMany(self._handle, self._staged(vectors), len(vectors))

    def ann_state(self) -> dict:
        """The graph's state: ready, nodes, tombstones, building, error (None, or why it could not load)."""
        return self._js.annState(self._handle).to_py()

    async def save_index(self) -> bool:
        """Save the graph now rather than after the changes pause; False when there was nothing to save
        (no persist name, no graph yet, unchanged, or too large for one IndexedDB value)."""
        return bool(await self._js.annSaveNow(self._handle))

    def remove(self, row: int) -> int | None:
        last = self._n - 1
        if type(row) is not int or not 0 <= row <= last:
            raise IndexError(row)
        self._js.remove(self._handle, row)
        self._n = last
        return None if row == last else last

    def search(self, queries: Sequence[bytes], k: int) -> list[list[tuple[int, float]]]:
        if not queries:
            return []
        if self._n == 0:
            return [[] for _ in queries]
        packed = self._js.search(self._handle, self._staged(queries), len(queries), k)
        values = array("d")
        values.frombytes(packed.to_bytes())
        if sys.byteorder != "little":  # pragma: no cover - wasm32 is little-endian
            values.byteswap()
        results: list[list[tuple[int, float]]] = []
        at = len(queries)
        for count in values[: len(queries)]:
            end = at + 2 * int(count)
            pairs = values[at:end]
            results.append([(int(pairs[i]), pairs[i + 1]) for i in range(0, len(pairs), 2)])
            at = end
        return results


def browser_default_kernel(dim: int, persist_as: str = "") -> VectorKernel:
    """numpy when the served Pyodide has it, else the JS Float32Array kernel (HNSW above
    BROWSER_ANN_ABOVE rows, the graph kept across reloads under the agent id `persist_as`),
    else pure Python."""
    try:
        from .numpy_kernel import NumpyKernel
    except ImportError:
        pass
    else:
        return NumpyKernel(dim)
    if getattr(js, "edgeVectors", None) is not None:
        return JsFloat32Kernel(dim, ann_above=BROWSER_ANN_ABOVE,
                               persist_as=memory_db_name(persist_as) if persist_as else "")
    return PurePythonKernel(dim)


def memory_db_name(agent_id: str) -> str:
    """The IndexedDB database that holds one agent's memories."""
    return f"ruvector-edge/memory/{agent_id}"


class IndexedDbMemoryStore(WriteBehindStore, MemoryStore):
    """Memories in IndexedDB, one database per agent, behind a synchronous in-memory mirror.

    Open with ``await IndexedDbMemoryStore.open(agent_id)``. `apply` updates the
    mirror and queues the change; queued changes are coalesced per id and
    written as *one* read-write transaction with strict durability (committed
    to disk before it completes), so a batch lands whole or not at all (see
    WriteBehindStore for flush and failure semantics).
    """

    def __init__(self, db: JsProxy, name: str, dim: int | None, entries: list[MemoryEntry]) -> None:
        """Use `open()`: the database must be opened and read with awaits first."""
        super().__init__(db, name)
        self._js = _bridge()
        self._dim = dim
        self._mirror: dict[str, MemoryEntry] = {entry.id: entry for entry in entries}
        self._pending_dim: int | None = None  # the dimension, written with the first batch

    @classmethod
    async def open(cls, agent_id: str, db_name: str | None = None) -> IndexedDbMemoryStore:
        """Open (creating if needed) the agent's database and read everything it holds."""
        bridge = _bridge()
        name = memory_db_name(agent_id) if db_name is None else db_name
        try:
            db = await bridge.idbOpen(name)
            loaded = await bridge.idbLoad(db)
        except JsException as error:
            raise ProviderUnavailable(f"IndexedDB database {name!r} could not be opened: {error}") from error
        fields = json.loads(loaded.fields)
        vectors = loaded.vectors.to_bytes()
        entries = []
        at = 0
        for id_, seq, owner, content, metadata, size in fields:
            entries.append(MemoryEntry(id_, content, owner, vectors[at : at + size], metadata, seq))
            at += size
        return cls(db, name, loaded.dim or None, entries)

    @property
    def unflushed(self) -> int:
        """How many ids (and the dimension) have changes not yet confirmed on disk."""
        return len(self._pending) + (self._pending_dim is not None)

    def _take_batch(self) -> tuple[dict[str, MemoryEntry | None], int | None]:
        batch, self._pending = self._pending, {}
        dim, self._pending_dim = self._pending_dim, None
        return batch, dim

    def _requeue(self, batch: tuple[dict[str, MemoryEntry | None], int | None]) -> None:
        entries, dim = batch
        super()._requeue(entries)
        if self._pending_dim is None:
            self._pending_dim = dim

    def _close_db(self, db: JsProxy) -> None:
        self._js.idbClose(db)

    def load(self, dim: int) -> list[MemoryEntry]:
        self._check_open()
        if self._dim is None:
            self._dim = self._pending_dim = dim
        elif self._dim != dim:
            raise ValueError(f"{self.name} holds {self._dim}-dimensional memories, not {dim}")
        entries = sorted(self._mirror.values(), key=lambda entry: entry.seq)
        for entry in entries:
            if len(entry.vector) != 4 * dim:
                size = len(entry.vector)
                raise ValueError(f"{self.name}: memory {entry.id} has a {size}-byte embedding, expected {4 * dim}")
        return entries

    def apply(self, put: Sequence[MemoryEntry], delete: Sequence[str]) -> None:
        self._check_open()
        sizes = {len(entry.vector) for entry in put}
        if self._dim is not None:
            sizes.add(4 * self._dim)
        if len(sizes) > 1:
            raise ValueError(f"{self.name}: embeddings of {sorted(sizes)} bytes in one store")
        for id_ in delete:
            self._mirror.pop(id_, None)
            self._pending[id_] = None
        for entry in put:
            self._mirror[entry.id] = entry
            self._pending[entry.id] = entry
        self._write_behind()

    # Internals -----------------------------------------------------------------------

    def _start_write(self, batch: tuple[dict[str, MemoryEntry | None], int | None]) -> JsProxy:
        batch, dim = batch
        puts = [entry for entry in batch.values() if entry is not None]
        deletes = [id_ for id_, entry in batch.items() if entry is None]
        size = len(puts[0].vector) if puts else 0
        fields = json.dumps([[e.id, e.seq, e.owner, e.content, e.metadata_json] for e in puts])
        return self._js.idbApply(
            self._db, dim, fields, _u8(b"".join(e.vector for e in puts)), size, json.dumps(deletes)
        )
