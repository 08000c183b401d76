"""Approximate cosine top-k natively: an HNSW graph (hnswlib) proposes, the exact float32 rows decide.

Why hnswlib (bench/ann_libraries.py, 100K × 384 corpus of intrinsic dimension
24, one query thread, recall@10 against exact, on a loaded 2-core machine):
faiss IndexHNSWFlat searches fastest (M=32, ef=64: 0.26 ms, recall 0.98) but
IndexHNSW has no deletes, and a full memory evicts one entry per insert, so its
graph would fill with tombstones needing rebuilds of tens of seconds; usearch
deletes, but its f32 graph searched 4-5× slower here (ef=64: 1.2 ms) and built
at 220 inserts/s, and its i8 one tops out at recall 0.93 (unit vectors use few
of int8's levels). hnswlib searches within 20% of faiss and deletes (marks),
and M=16 with ef_construction=40 inserts ~5.9K rows/s on one thread (M=32:
1.5K/s) and reaches recall 0.977 at ef=128 in 0.35 ms (faiss FlatIP: 6-10 ms).

Deleted nodes stay in the graph as tombstones (still routing searches, never
returned). hnswlib can reuse their slots, but re-linking a reused node's
neighbours made inserts 8× slower, and a memory at capacity deletes one entry
per insert; so inserts always add fresh nodes, and once tombstones outnumber
live nodes a new graph is built over the live rows *in a thread* (hnswlib
releases the GIL), with the inserts and deletes made meanwhile replayed onto
it before it replaces the old one. The first graph (the memory reaching
`exact_below`, or an open without a usable file) is built the same way, and
the memory answers exactly until it is ready: no call waits for a build.

New rows reach the graph in blocks of `graph_block` (memory/fresh_rows.py): a
32-entry SYNC_MEMORIES page is too few rows for hnswlib's insert threads, and
until their block goes in they are searched exactly beside the graph.

Below `exact_below` rows the exact kernel answers: exact, and as fast or
faster there (one thread, 384-d: exact 0.08 ms against the graph's 0.11 ms at
4K rows, 0.15 against 0.14 at 8K, 0.44 against 0.24 at 16K).
The graph is a candidate generator only: its labels
are mapped back to live rows, and every score returned is recomputed from the
exact kernel's rows, which came from the store. So a stale or damaged graph can
lower recall, never return an evicted memory or a wrong score.

`persist` / `restore` carry the graph across restarts (memory/index_file.py
authenticates the file): the saved labels are matched to the store's ids, and a
graph that lags the store (a crash after the last save) is patched — labels of
ids gone are deleted, ids new to it inserted — rather than rebuilt.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

import hnswlib
import numpy as np

from ..errors import IndexFileRejected
from .fresh_rows import FreshRows
from .index_file import IndexFile
from .kernels import VectorKernel, _at_least_kth
from .numpy_kernel import NumpyKernel

__all__ = ["DEFAULT_EXACT_BELOW", "DEFAULT_GRAPH_BLOCK", "HnswKernel", "default_insert_threads"]

_log = logging.getLogger(__name__)

DEFAULT_EXACT_BELOW = 8192
DEFAULT_GRAPH_BLOCK = 256
_MAX_INSERT_THREADS = 4
_FORMAT = 1
_F32 = np.dtype("<f4")


class _Build:
    """A graph being built in a thread over a snapshot of the live rows.

    hnswlib releases the GIL while it inserts, so the memory keeps answering
    (exactly, or from the previous graph) and taking inserts and deletes
    meanwhile; those are logged here in order and replayed onto the new graph
    when it is done, before it replaces the old one."""

    def __init__(self, graph: hnswlib.Index, rows: np.ndarray, labels: np.ndarray, threads: int) -> None:
        self.graph = graph
        self.log: list[tuple[np.ndarray, np.ndarray | None]] = []  # (labels, vectors) added, (labels, None) deleted
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(rows, labels, threads), name="hnsw-build", daemon=True)
        self._thread.start()

    def _run(self, rows: np.ndarray, labels: np.ndarray, threads: int) -> None:
        try:
            self.graph.add_items(rows, labels, num_threads=threads)
        except BaseException as error:  # reported by the kernel in the caller's thread
            self.error = error

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> None:
        self._thread.join()


def default_insert_threads() -> int:
    """hnswlib threads per insert: the cores this process may use, at most 4.

    hnswlib releases the GIL and inserts a batch's rows in parallel: at 100K rows a
    sync import went from 3.0-4.1K to 4.8-5.4K entries/s (batch 32 / 256) with 2
    threads on 2 cores. At most 4 because hnswlib inserts a batch of <= 4 rows per
    thread on one thread, so more would leave a 32-entry SYNC_MEMORIES page serial."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity API (macOS, Windows)
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_INSERT_THREADS))


class HnswKernel(VectorKernel):
    """The exact `NumpyKernel` plus an HNSW graph over the same rows once they number `exact_below`."""

    name = "hnsw"

    def __init__(
        self, dim: int, *, exact_below: int = DEFAULT_EXACT_BELOW, m: int = 16, ef_construction: int = 40,
        ef_search: int = 128, insert_threads: int | None = None, graph_block: int = DEFAULT_GRAPH_BLOCK,
    ) -> None:
        """`m`, `ef_construction`, `ef_search`: HNSW's links per node, build breadth and search breadth
        (chosen in bench/semantic_memory.py for recall@10 >= 0.95 at >= 5K inserts/s); `insert_threads`:
        hnswlib threads per insert batch and build (None: `default_insert_threads()`); `graph_block`: new
        rows wait (searched exactly, memory/fresh_rows.py) until this many go into the graph at once."""
        super().__init__(dim)
        if type(exact_below) is not int or exact_below < 1:
            raise ValueError(f"exact_below must be a positive integer, not {exact_below!r}")
        if type(graph_block) is not int or graph_block < 1:
            raise ValueError(f"graph_block must be a positive integer, not {graph_block!r}")
        if insert_threads is None:
            insert_threads = default_insert_threads()
        elif type(insert_threads) is not int or insert_threads < 1:
            raise ValueError(f"insert_threads must be a positive integer or None, not {insert_threads!r}")
        self.exact_below = exact_below
        self.params = {"m": m, "ef_construction": ef_construction}
        self.ef_search = ef_search
        self.insert_threads = insert_threads
        self.graph_block = graph_block
        self._exact = NumpyKernel(dim)
        self._fresh = FreshRows(dim)  # rows of `_graph` not inserted into it yet
        self._graph: hnswlib.Index | None = None
        self._building: _Build | None = None
        self._labels = np.empty(1024, dtype=np.int64)  # row -> graph label
        self._row_of: dict[int, int] = {}  # graph label -> row
        self._next_label = 0
        self.opened = "new"  # after restore: "file" (a saved graph was taken) or "rebuilt"

    def __len__(self) -> int:
        return len(self._exact)

    @property
    def graph_size(self) -> int:
        """Live nodes in the graph searches use (0 before the first one is ready)."""
        return 0 if self._graph is None else len(self._row_of) - len(self._fresh)

    @property
    def tombstones(self) -> int:
        """Deleted nodes still in that graph (hnswlib only marks them; a rebuild drops them)."""
        return 0 if self._graph is None else self._graph.get_current_count() - self.graph_size

    # Rows --------------------------------------------------------------------------

    def add_many(self, vectors: Sequence[bytes]) -> None:
        start = len(self._exact)
        self._exact.add_many(vectors)
        if len(self._exact) == start:
            return
        labels = self._label_rows(start, len(self._exact))
        block = self._block(vectors)
        if self._graph is not None:
            self._fresh.add(labels, block)
            if len(self._fresh) >= self.graph_block:
                self._insert(self._graph, *self._fresh.take())
        if self._building is not None:
            self._building.log.append((labels, block.copy()))
        self._maintain()

    def remove(self, row: int) -> int | None:
        moved = self._exact.remove(row)  # IndexError for a bad row, before anything changes
        label = int(self._labels[row])
        del self._row_of[label]
        if self._graph is not None and not self._fresh.discard(label):
            self._graph.mark_deleted(label)
        if self._building is not None:
            self._building.log.append((np.array([label]), None))
        if moved is not None:
            moved_label = int(self._labels[moved])
            self._labels[row] = moved_label
            self._row_of[moved_label] = row
        self._maintain()
        return moved

    def _label_rows(self, start: int, stop: int) -> np.ndarray:
        if stop > len(self._labels):
            grown = np.empty(max(stop, 2 * len(self._labels)), dtype=np.int64)
            grown[:start] = self._labels[:start]
            self._labels = grown
        labels = np.arange(self._next_label, self._next_label + stop - start, dtype=np.int64)
        self._labels[start:stop] = labels
        self._row_of.update(zip(labels.tolist(), range(start, stop)))
        self._next_label += stop - start
        return labels

    def _block(self, vectors: Sequence[bytes]) -> np.ndarray:
        return np.frombuffer(b"".join(vectors), dtype=_F32).reshape(len(vectors), self.dim)

    # The graph ---------------------------------------------------------------------

    def _new_graph(self, capacity: int) -> hnswlib.Index:
        graph = hnswlib.Index(space="ip", dim=self.dim)
        graph.init_index(max_elements=max(capacity, 1024), M=self.params["m"],
                         ef_construction=self.params["ef_construction"])
        return graph

    def _insert(self, graph: hnswlib.Index, labels: np.ndarray, block: np.ndarray) -> None:
        """Fresh nodes, never `replace_deleted`: re-linking a deleted node's neighbours made inserts
        8x slower here (883/s against 7.3K/s at 20K rows); tombstones are dropped by rebuilds instead."""
        needed = graph.get_current_count() + len(labels)
        if needed > graph.get_max_elements():
            graph.resize_index(max(2 * graph.get_max_elements(), needed))
        graph.add_items(block, labels, num_threads=self.insert_threads)

    def _maintain(self) -> None:
        """Swap in a finished build; start one when the memory reaches `exact_below`, or when the graph
        holds more tombstones than live nodes (a memory at capacity deletes one per insert)."""
        self._poll()
        n = len(self._exact)
        if self._building is None and n >= self.exact_below and (self._graph is None or self.tombstones > n):
            self._building = _Build(self._new_graph(2 * n), self._exact.rows(0, n), self._labels[:n].copy(),
                                    self.insert_threads)

    def _poll(self) -> None:
        build = self._building
        if build is None or not build.done():
            return
        self._building = None
        if build.error is not None:
            _log.warning("memory index: graph build failed, keeping the previous one: %s", build.error)
            return
        for labels, block in build.log:
            if block is None:
                build.graph.mark_deleted(int(labels[0]))
            else:
                self._insert(build.graph, labels, block)
        self._graph = build.graph
        self._fresh.clear()  # the new graph holds every row: the snapshot plus the log

    def settle(self) -> None:
        """Wait for a build in progress, swap it in, and put the fresh rows into the graph: it then holds
        every row (before saving; tests)."""
        if self._building is not None:
            self._building.wait()
            self._poll()
        if self._graph is not None and len(self._fresh):
            self._insert(self._graph, *self._fresh.take())

    # Search ------------------------------------------------------------------------

    def search(self, queries: Sequence[bytes], k: int) -> list[list[tuple[int, float]]]:
        self._poll()
        n = len(self._exact)
        if self._graph is None or n < self.exact_below or k >= n or not queries:
            return self._exact.search(queries, k)
        q = self._block(queries)
        self._graph.set_ef(max(self.ef_search, k))
        try:
            labels, _ = self._graph.knn_query(q, k=k, num_threads=1)
        except RuntimeError:  # fewer than k reachable (many deletes in a small graph): answer exactly
            return self._exact.search(queries, k)
        fresh_labels, fresh_scores = self._fresh.scores(q)
        fresh_rows = [self._row_of[label] for label in fresh_labels]
        results = []
        for query, found, fresh in zip(q, labels.tolist(), fresh_scores.tolist()):
            rows = [row for row in map(self._row_of.get, found) if row is not None]
            scores = self._exact.scores(query, rows)
            results.append(_at_least_kth([*zip(rows, scores.tolist()), *zip(fresh_rows, fresh)], k))
        return results

    # Persistence -------------------------------------------------------------------

    def persist(self, target: IndexFile, keys: Sequence[str], tag: str) -> None:
        self.settle()
        if self._graph is None:
            target.discard()
            return
        header = {"format": _FORMAT, "library": "hnswlib", "dim": self.dim, "tag": tag, **self.params,
                  "labels": self._labels[: len(self._exact)].tolist(), "keys": list(keys)}
        target.write(header, self._graph.save_index)

    def restore(self, vectors: Sequence[bytes], keys: Sequence[str], source: IndexFile, tag: str) -> None:
        if len(self):
            raise ValueError("restore fills an empty kernel")
        self._exact.add_many(vectors)
        try:
            with source.read() as saved:
                if saved is not None:
                    self._adopt(*saved, keys, tag)
            if saved is not None:
                self.opened = "file"
                self._maintain()
                return
            why = "no index file"
        except IndexFileRejected as error:
            why = str(error)
        self._labels, self._row_of, self._next_label, self._graph = np.empty(1024, dtype=np.int64), {}, 0, None
        self._label_rows(0, len(self._exact))
        self.opened = "rebuilt"
        if len(self._exact) >= self.exact_below:  # searched exactly until the graph is ready
            _log.info("memory index: rebuilding the HNSW graph over %d rows (%s)", len(self._exact), why)
        self._maintain()

    def _adopt(self, header: dict[str, Any], graph_path: str, keys: Sequence[str], tag: str) -> None:
        """Take a saved graph for the rows just loaded; IndexFileRejected (nothing adopted) when it is
        not this memory's, then patch what changed since it was saved."""
        expected = {"format": _FORMAT, "library": "hnswlib", "dim": self.dim, "tag": tag, **self.params}
        if any(header.get(key) != value for key, value in expected.items()):
            raise IndexFileRejected("index file made for another model, dimension or graph setting")
        labels, saved_keys = header.get("labels"), header.get("keys")
        if (not isinstance(labels, list) or not isinstance(saved_keys, list) or len(labels) != len(saved_keys)
                or not all(type(x) is int and 0 <= x < 2**62 for x in labels)
                or len(set(labels)) != len(labels) or len(set(saved_keys)) != len(saved_keys)):
            raise IndexFileRejected("index file label table is malformed")

        graph = hnswlib.Index(space="ip", dim=self.dim)
        try:
            graph.load_index(graph_path)
        except (RuntimeError, ValueError) as exc:
            raise IndexFileRejected(f"graph does not load: {exc}") from exc
        in_graph = graph.get_ids_list()
        if graph.dim != self.dim or not set(labels) <= set(in_graph):
            raise IndexFileRejected("graph does not match its label table")
        row_of_key = {key: row for row, key in enumerate(keys)}
        n = len(keys)
        self._labels = np.empty(max(1024, n), dtype=np.int64)
        self._row_of = {}
        have = np.zeros(n, dtype=bool)
        try:
            for label, key in zip(labels, saved_keys):
                row = row_of_key.get(key)
                if row is None:
                    graph.mark_deleted(label)  # evicted after the save
                else:
                    self._labels[row] = label
                    self._row_of[label] = row
                    have[row] = True
        except RuntimeError as exc:  # a label the graph holds as deleted already
            raise IndexFileRejected(f"graph does not match its label table: {exc}") from exc
        self._next_label = max(in_graph, default=-1) + 1  # past tombstones' labels too: a label is never reused
        self._graph = graph
        missing = np.flatnonzero(~have)
        if len(missing):  # stored after the save: give them labels and insert them
            new = np.arange(self._next_label, self._next_label + len(missing), dtype=np.int64)
            self._next_label += len(missing)
            self._labels[missing] = new
            self._row_of.update(zip(new.tolist(), missing.tolist()))
            self._insert(graph, new, self._exact.rows_at(missing))
        _log.info("memory index: loaded the HNSW graph (%d rows, %d patched in, %d patched out)",
                  n, len(missing), len(labels) - int(have.sum()))
