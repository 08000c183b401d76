"""memory/hnsw_index.py and memory/index_file.py: the HNSW kernel against exact search, live deletes,
and the index file beside SQLite (loaded when it matches, patched when stale, rebuilt when missing or
rejected, never trusted over the store)."""

from __future__ import annotations

import base64
import os
import sys

import numpy as np
import pytest

pytest.importorskip("hnswlib", reason="the [index] extra")

from ruvector_edge.errors import IndexFileRejected
from ruvector_edge.memory import SqliteMemoryStore, VectorMemory
from ruvector_edge.memory.hnsw_index import HnswKernel
from ruvector_edge.memory.index_file import IndexFile
from ruvector_edge.memory.numpy_kernel import NumpyKernel

from test_memory import good_entry

DIM = 48
THRESHOLD = 600


def corpus(n: int, seed: int = 5) -> np.ndarray:
    """Unit vectors near an 8-dimensional subspace: neighbours like sentence embeddings', not uniform noise."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((DIM, 8)))[0].T
    rows = rng.standard_normal((n, 8)) @ basis + 0.15 * rng.standard_normal((n, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def blobs(rows: np.ndarray) -> list[bytes]:
    return [row.astype("<f4").tobytes() for row in rows]


def recall(found: list[list[tuple[int, float]]], truth: list[list[tuple[int, float]]], k: int) -> float:
    return float(np.mean([len({r for r, _ in f} & {r for r, _ in t}) / k for f, t in zip(found, truth)]))


def memory(path, capacity: int = 5000) -> VectorMemory:
    return VectorMemory("agent-a", DIM, capacity, kernel=HnswKernel(DIM, exact_below=THRESHOLD),
                        store=SqliteMemoryStore(path, synchronous="NORMAL"))


def fill(mem: VectorMemory, rows: np.ndarray, start: int = 0) -> None:
    for i, row in enumerate(rows, start):
        mem.store_memory(f"memory {i}", row)


def exact_hits(mem: VectorMemory, queries: np.ndarray, k: int) -> list[list[str]]:
    """The exact top-k ids over what the memory holds, computed here from its entries."""
    ids = list(mem._entries)
    matrix = np.stack([np.frombuffer(mem.get(i).vector, dtype="<f4") for i in ids])
    order = np.argsort(-(queries @ matrix.T), axis=1)[:, :k]
    return [[ids[j] for j in row] for row in order]


def id_recall(found, truth) -> float:
    return float(np.mean([len({h.id for h in f} & set(t)) / len(t) for f, t in zip(found, truth)]))


# The kernel ------------------------------------------------------------------------------


def test_graph_is_built_at_the_threshold_and_matches_exact_search():
    rows = corpus(3000)
    kernel, exact = HnswKernel(DIM, exact_below=THRESHOLD), NumpyKernel(DIM)
    kernel.add_many(blobs(rows[: THRESHOLD - 1]))
    assert kernel.graph_size == 0
    kernel.add_many(blobs(rows[THRESHOLD - 1 :]))
    exact.add_many(blobs(rows))
    kernel.settle()
    assert kernel.graph_size == len(rows)
    queries = blobs(corpus(200, seed=6))
    found, truth = kernel.search(queries, 10), exact.search(queries, 10)
    assert recall(found, truth, 10) >= 0.95
    for query, hits in zip(queries, found):  # scores are the exact rows' cosines
        for row, score in hits:
            assert score == pytest.approx(float(rows[row] @ np.frombuffer(query, "<f4")), abs=1e-6)


def test_removed_rows_are_never_returned_and_recall_holds():
    rows = corpus(3000)
    kernel = HnswKernel(DIM, exact_below=THRESHOLD)
    kernel.add_many(blobs(rows))
    kernel.settle()
    alive = list(range(len(rows)))  # alive[row] = original index of what sits in `row`
    rng = np.random.default_rng(1)
    for _ in range(300):  # 10% deletes, each moving the last row into the hole as the interface says
        row = int(rng.integers(len(alive)))
        moved = kernel.remove(row)
        last = alive.pop()
        if moved is not None:
            alive[row] = last
    gone = sorted(set(range(len(rows))) - set(alive))
    exact = NumpyKernel(DIM)
    exact.add_many(blobs(rows[alive]))
    found = kernel.search(blobs(rows[gone]), 10)  # the deleted vectors themselves as queries
    assert all(alive[row] not in gone for hits in found for row, _ in hits)
    assert all(len(hits) == 10 for hits in found)  # deleted in the graph, not merely filtered out after it
    queries = blobs(corpus(200, seed=6))
    assert recall(kernel.search(queries, 10), exact.search(queries, 10), 10) >= 0.95


def test_without_the_index_extra_the_default_is_exact_numpy(monkeypatch, caplog):
    from ruvector_edge import platform

    monkeypatch.setitem(sys.modules, "ruvector_edge.memory.hnsw_index", None)  # as if hnswlib were missing
    platform._say_exact.cache_clear()
    assert isinstance(platform.default_vector_kernel(8), NumpyKernel)
    assert "exact only" in caplog.text


def test_bad_threshold_and_bad_row_are_refused_without_change():
    with pytest.raises(ValueError):
        HnswKernel(DIM, exact_below=0)
    kernel = HnswKernel(DIM, exact_below=10)
    kernel.add_many(blobs(corpus(20)))
    kernel.settle()
    with pytest.raises(IndexError):
        kernel.remove(20)
    assert len(kernel) == 20 and kernel.graph_size == 20


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 2), (16, 4)])
def test_inserts_use_the_cores_available_up_to_four(monkeypatch, cores, threads):
    from ruvector_edge.memory import hnsw_index

    monkeypatch.setattr(hnsw_index.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert HnswKernel(DIM).insert_threads == threads
    assert HnswKernel(DIM, insert_threads=1).insert_threads == 1


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_insert_threads_are_refused(threads):
    with pytest.raises(ValueError):
        HnswKernel(DIM, insert_threads=threads)


@pytest.mark.parametrize("batch", [32, 256])
def test_a_parallel_insert_batch_puts_every_row_in_the_graph(batch):
    rows = corpus(THRESHOLD + 4 * batch)
    kernel = HnswKernel(DIM, exact_below=THRESHOLD, insert_threads=2, graph_block=batch)
    kernel.add_many(blobs(rows[:THRESHOLD]))
    kernel.settle()
    for at in range(THRESHOLD, len(rows), batch):  # sync-sized batches into a live graph
        kernel.add_many(blobs(rows[at : at + batch]))
    assert kernel.graph_size == len(rows) and kernel.tombstones == 0
    new = rows[THRESHOLD:]
    found = kernel.search(blobs(new), 1)
    assert [hits[0][0] for hits in found] == list(range(THRESHOLD, len(rows)))  # each new row finds itself


@pytest.mark.parametrize("block", [0, -1, 1.5, "2", True])
def test_bad_graph_block_is_refused(block):
    with pytest.raises(ValueError):
        HnswKernel(DIM, graph_block=block)


def test_rows_waiting_for_the_graph_are_found_at_once():
    """New rows wait outside the graph until `graph_block` of them go in as one insert; searches score
    them exactly meanwhile, so each is found the moment it is added."""
    rows = corpus(THRESHOLD + 200)
    kernel = HnswKernel(DIM, exact_below=THRESHOLD, graph_block=256)
    kernel.add_many(blobs(rows[:THRESHOLD]))
    kernel.settle()
    for at in range(THRESHOLD, len(rows), 32):  # SYNC_MEMORIES pages
        page = rows[at : at + 32]
        kernel.add_many(blobs(page))
        assert kernel.graph_size == THRESHOLD and kernel.tombstones == 0  # waiting
        found = kernel.search(blobs(page), 1)
        assert [hits[0][0] for hits in found] == list(range(at, at + len(page)))
        assert all(hits[0][1] == pytest.approx(1.0, abs=1e-6) for hits in found)
    kernel.add_many(blobs(corpus(56, seed=9)))  # the 256th waiting row: all go in at once
    assert kernel.graph_size == len(kernel) == THRESHOLD + 256


def test_a_row_removed_while_waiting_is_never_returned_and_leaves_no_tombstone():
    rows = corpus(THRESHOLD + 100)
    kernel = HnswKernel(DIM, exact_below=THRESHOLD, graph_block=256)
    kernel.add_many(blobs(rows[:THRESHOLD]))
    kernel.settle()
    kernel.add_many(blobs(rows[THRESHOLD:]))
    alive = list(range(len(rows)))
    for row in range(THRESHOLD, THRESHOLD + 50):  # waiting rows (the last, also waiting, fills each hole)
        moved = kernel.remove(row)
        last = alive.pop()
        if moved is not None:
            alive[row] = last
    gone = sorted(set(range(len(rows))) - set(alive))
    for settled in (False, True):
        assert kernel.tombstones == 0
        found = kernel.search(blobs(rows[gone]), 10)  # the removed vectors themselves as queries
        assert all(alive[row] not in gone for hits in found for row, _ in hits)
        assert all(len(hits) == 10 for hits in found)
        kernel.settle()
        assert kernel.graph_size == len(kernel) == THRESHOLD + 50


@pytest.mark.parametrize("seed", range(3))
def test_interleaved_adds_removes_and_searches_see_exactly_the_rows_held(seed):
    """Random interleavings of pages added, rows removed (waiting or in the graph) and searches, against
    the list of what each row holds: every hit's score is its row's vector's, a held row finds itself."""
    rng = np.random.default_rng(seed)
    pool = corpus(4000, seed=10 + seed)
    kernel = HnswKernel(DIM, exact_below=200, graph_block=64)
    held: list[int] = []  # held[row] = index into pool
    added = 0
    for _ in range(300):
        op = int(rng.integers(3))
        if (op == 0 or len(held) < 250) and added + 40 <= len(pool):
            n = int(rng.integers(1, 40))
            kernel.add_many(blobs(pool[added : added + n]))
            held += range(added, added + n)
            added += n
        elif op == 1 and held:
            for _ in range(int(rng.integers(1, 30))):
                row = int(rng.integers(len(held)))
                moved = kernel.remove(row)
                last = held.pop()
                if moved is not None:
                    held[row] = last
        elif held:
            probe = rng.choice(len(held), 8).tolist()
            queries = pool[[held[row] for row in probe]]
            for row, query, hits in zip(probe, queries, kernel.search(blobs(queries), 3)):
                assert row in [hit for hit, _ in hits] and len({hit for hit, _ in hits}) == len(hits)
                for hit, score in hits:
                    assert score == pytest.approx(float(pool[held[hit]] @ query), abs=1e-6)
        assert len(kernel) == len(held)
        assert kernel._graph is None or kernel.graph_size + len(kernel._fresh) == len(held)


# Through the memory, with the index file ----------------------------------------------


def test_evicted_memories_are_never_returned(tmp_path):
    rows = corpus(2500)
    mem = memory(tmp_path / "m.sqlite", capacity=1500)
    fill(mem, rows)  # 1,000 evictions, each a delete in the graph
    mem.kernel.settle()
    assert len(mem) == 1500 and mem.kernel.graph_size == 1500
    found = mem.search_many(list(rows[:1000]), 10)
    assert all(hit.id in mem for hits in found for hit in hits)
    assert id_recall(mem.search_many(list(corpus(100, seed=6)), 10), exact_hits(mem, corpus(100, seed=6), 10)) >= 0.95


def test_index_file_is_loaded_on_reopen(tmp_path):
    path = tmp_path / "m.sqlite"
    mem = memory(path)
    fill(mem, corpus(1000))
    mem.kernel.settle()  # every row in the graph (fresh rows are searched exactly, not through it)
    queries = list(corpus(50, seed=6))
    before = mem.search_many(queries, 10)
    mem.close()
    assert os.path.exists(f"{path}.index")
    again = memory(path)
    assert again.kernel.opened == "file"
    assert again.search_many(queries, 10) == before


def test_rows_waiting_at_close_are_in_the_saved_graph(tmp_path):
    path = tmp_path / "m.sqlite"
    rows = corpus(1000)
    mem = memory(path)
    fill(mem, rows[:800])
    mem.kernel.settle()
    fill(mem, rows[800:], start=800)
    assert mem.kernel.graph_size == 800  # 200 waiting
    mem.close()
    again = memory(path)
    assert again.kernel.opened == "file" and again.kernel.graph_size == 1000
    found = again.search_many(list(rows), 1)
    assert [hits[0].content for hits in found] == [f"memory {i}" for i in range(1000)]


def test_an_imported_page_is_found_at_once_and_what_it_evicts_never(tmp_path):
    rows = corpus(1600)
    mem = memory(tmp_path / "m.sqlite", capacity=1000)
    fill(mem, rows[:1000])
    mem.kernel.settle()
    for at in range(1000, 1600, 32):
        page = rows[at : at + 32]
        wire = [good_entry(f"peer {i}", dim=DIM, embedding=base64.b64encode(row.astype("<f4").tobytes()).decode())
                for i, row in enumerate(page, at)]
        assert mem.import_entries(wire, "agent-x").evicted == len(page)
        found = mem.search_many(list(page), 1)
        assert [hits[0].content for hits in found] == [f"peer {i}" for i in range(at, at + len(page))]
    assert mem.kernel.graph_size < len(mem)  # some still waiting
    found = mem.search_many(list(rows[:600]), 10)  # the evicted vectors as queries
    assert all(hit.id in mem for hits in found for hit in hits)
    assert all(len(hits) == 10 for hits in found)


def test_stale_index_file_is_patched_from_the_store(tmp_path):
    """A crash after the last save: the store moved on (evictions, new memories) without the file."""
    path = tmp_path / "m.sqlite"
    rows = corpus(1600)
    mem = memory(path, capacity=1000)
    fill(mem, rows[:1000])
    mem.close()
    behind = memory(path, capacity=1000)
    fill(behind, rows[1000:1300], start=1000)  # 300 new, 300 evicted; this process "crashes": no close
    behind._store.close()
    again = memory(path, capacity=1000)
    assert again.kernel.opened == "file"
    again.kernel.settle()
    assert again.kernel.graph_size == 1000
    found = again.search_many(list(rows[:300]), 10)  # the evicted vectors as queries
    assert all(hit.id in again for hits in found for hit in hits)
    assert all(len(hits) == 10 for hits in found)  # the graph no longer offers them (not merely filtered out)
    new = again.search_many(list(rows[1000:1300]), 1)  # each new memory is its own best match
    assert [hits[0].content for hits in new] == [f"memory {i}" for i in range(1000, 1300)]


@pytest.mark.parametrize("damage", ["missing", "flipped byte", "truncated", "other store's key", "garbage"])
def test_missing_or_rejected_index_file_is_rebuilt(tmp_path, damage):
    path = tmp_path / "m.sqlite"
    mem = memory(path)
    fill(mem, corpus(1000))
    queries = list(corpus(50, seed=6))
    mem.close()
    index = f"{path}.index"
    data = open(index, "rb").read()
    if damage == "missing":
        os.unlink(index)
    elif damage == "flipped byte":
        data = bytearray(data)
        data[len(data) // 2] ^= 1
        open(index, "wb").write(data)
    elif damage == "truncated":
        open(index, "wb").write(data[: len(data) // 3])
    elif damage == "other store's key":
        other = memory(tmp_path / "other.sqlite")
        fill(other, corpus(1000, seed=9))
        other.close()
        os.replace(f"{tmp_path / 'other.sqlite'}.index", index)
    else:
        open(index, "wb").write(os.urandom(4096))
    again = memory(path)
    assert again.kernel.opened == "rebuilt"
    again.kernel.settle()
    assert again.kernel.graph_size == 1000
    assert id_recall(again.search_many(queries, 10), exact_hits(again, np.array(queries), 10)) >= 0.95


def read(target: IndexFile):
    with target.read() as saved:
        return None if saved is None else (saved[0], open(saved[1], "rb").read())


def test_rejected_file_raises_a_typed_error(tmp_path):
    target = IndexFile(str(tmp_path / "x.index"), b"k" * 32)
    assert read(target) is None
    target.write({"format": 1}, lambda path: open(path, "wb").write(b"graph bytes"))
    assert read(target) == ({"format": 1}, b"graph bytes")
    good = open(target.path, "rb").read()
    for hostile in (b"", b"RVXIDX02", bytes(100), good[:-1] + bytes([good[-1] ^ 1]), good[1:], good + b"\0"):
        open(target.path, "wb").write(hostile)
        with pytest.raises(IndexFileRejected):
            read(target)
    open(target.path, "wb").write(good)
    with pytest.raises(IndexFileRejected):  # authentic, but under another store's key
        read(IndexFile(target.path, b"j" * 32))


def test_authentic_file_with_a_hostile_label_table_is_rebuilt(tmp_path):
    """Even a file that passes the MAC is checked: labels the graph does not hold, or a table
    that does not parse, mean a rebuild."""
    path = tmp_path / "m.sqlite"
    mem = memory(path)
    fill(mem, corpus(1000))
    mem.close()
    target = SqliteMemoryStore(path).index_file()
    header, graph = read(target)
    for hostile in ({**header, "labels": [x + 10**6 for x in header["labels"]]},
                    {**header, "labels": header["labels"][:-1]},
                    {**header, "labels": "nope"},
                    {**header, "tag": "another-model"}):
        target.write(hostile, lambda path: open(path, "wb").write(graph))
        again = memory(path)
        assert again.kernel.opened == "rebuilt"
        again.kernel.settle()
        assert again.kernel.graph_size == 1000
        again._store.close()


def test_index_file_never_overrides_the_store(tmp_path):
    """An authentic file whose keys are shuffled (each label names another memory): hits are still
    live memories with their own stored vectors' scores."""
    path = tmp_path / "m.sqlite"
    rows = corpus(1000)
    mem = memory(path)
    fill(mem, rows)
    mem.close()
    target = SqliteMemoryStore(path).index_file()
    header, graph = read(target)
    keys = header["keys"]
    target.write({**header, "keys": keys[1:] + keys[:1]}, lambda path: open(path, "wb").write(graph))
    again = memory(path)
    assert again.kernel.opened == "file"
    queries = corpus(50, seed=6)
    for query, hits in zip(queries, again.search_many(list(queries), 10)):
        for hit in hits:
            stored = np.frombuffer(again.get(hit.id).vector, dtype="<f4")
            assert hit.score == pytest.approx(float(query @ stored / np.linalg.norm(query)), abs=1e-5)


def test_small_memory_keeps_no_index_file(tmp_path):
    path = tmp_path / "m.sqlite"
    mem = memory(path)
    fill(mem, corpus(100))
    open(f"{path}.index", "wb").write(b"left over")
    mem.close()
    assert not os.path.exists(f"{path}.index")


def test_graph_is_rebuilt_without_tombstones_while_the_memory_keeps_working(tmp_path):
    """A memory at capacity deletes one entry per insert; once the graph holds more deleted nodes than
    live ones a new graph is built in a thread, and what happens meanwhile is replayed onto it."""
    rows = corpus(4000)
    kernel = HnswKernel(DIM, exact_below=THRESHOLD)
    kernel.add_many(blobs(rows[:1000]))
    kernel.settle()
    alive = list(range(1000))
    queries = blobs(corpus(100, seed=6))
    graphs = [kernel._graph]
    for i in range(1000, 4000):  # insert one, delete an older one (its hole takes the last row)
        kernel.add_many(blobs(rows[i : i + 1]))
        alive.append(i)
        victim = i * 37 % 1000
        moved = kernel.remove(victim)
        last = alive.pop()
        if moved is not None:
            alive[victim] = last
        if kernel._building is not None and i % 97 == 0:  # searched and changed mid-build
            found = kernel.search(blobs(rows[alive[5] : alive[5] + 1]), 1)
            assert alive[found[0][0][0]] == alive[5]
        if kernel._graph is not graphs[-1]:
            graphs.append(kernel._graph)
    kernel.settle()
    assert len(graphs) >= 3  # 3,000 deletes over 1,000 live rows: rebuilt at least twice
    assert kernel.tombstones <= len(kernel)
    exact = NumpyKernel(DIM)
    exact.add_many(blobs(rows[alive]))
    found = kernel.search(queries, 10)
    assert recall(found, exact.search(queries, 10), 10) >= 0.95
    for query, hits in zip(queries, found):  # each row still holds the vector the caller put there
        for row, score in hits:
            assert score == pytest.approx(float(rows[alive[row]] @ np.frombuffer(query, "<f4")), abs=1e-6)
