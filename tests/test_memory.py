"""Vector memory: kernels against a brute-force reference, eviction, provenance, sync with hostile peers, persistence.

The reference is float64 cosine over the stored float32 unit vectors; kernels
may differ from it in the last float32 bits, so "correct top-k" means: the
returned scores match the reference within 1e-5 and no left-out entry beats a
returned one by more than that.
"""

from __future__ import annotations

import base64
from array import array
import hashlib
import math
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruvector_edge.errors import CanonicalizationError, MalformedMessage, OversizedMessage, RejectedInput
from ruvector_edge.memory import (
    MAX_CONTENT_BYTES,
    MAX_IMPORT_BATCH,
    Embedder,
    HashingEmbedder,
    MemoryStore,
    PurePythonKernel,
    SqliteMemoryStore,
    VectorMemory,
    default_kernel,
    memory_id,
    pack_unit_vector,
)
from ruvector_edge.memory.embedder import HASHING_MODEL
from ruvector_edge.memory import kernels
from ruvector_edge.memory.kernels import _exact_row_sums, pack_unit_blobs, unpack_vector
from ruvector_edge.memory.numpy_kernel import NumpyKernel

KERNELS = [PurePythonKernel, NumpyKernel]
TOL = 1e-5
PY = Path(__file__).resolve().parents[1] / "py"


def unit(values) -> np.ndarray:
    return np.asarray(unpack_vector(pack_unit_vector(values, len(values))), dtype=np.float64)


def reference_scores(rows: list[list[float]], query: list[float]) -> list[float]:
    q = unit(query)
    return [float(unit(r) @ q) for r in rows]


def one_hot(dim: int, i: int) -> list[float]:
    v = [0.0] * dim
    v[i] = 1.0
    return v


def b64_f32(values) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def memory(kernel_cls=NumpyKernel, dim=4, capacity=100, owner="agent-a", store=None) -> VectorMemory:
    return VectorMemory(owner, dim, capacity, kernel=kernel_cls(dim), store=store)


def snapshot(m: VectorMemory):
    return [(e.id, e.seq, e.owner, e.vector, e.metadata_json) for e in m._entries.values()], list(m._id_at)


# Packing -------------------------------------------------------------------------------


def test_pack_normalises_to_float32_unit_vectors():
    blob = pack_unit_vector([3, 4.0], 2)
    assert len(blob) == 8 and list(unpack_vector(blob)) == pytest.approx([0.6, 0.8])
    assert pack_unit_vector(np.array([3, 4], dtype=np.float32), 2) == blob
    assert pack_unit_vector([1e300, 1e300], 2) == pack_unit_vector([1e-300, 1e-300], 2) == pack_unit_vector([1, 1], 2)


@pytest.mark.parametrize(
    "bad",
    [
        [1.0, 2.0],  # wrong dimension
        [1.0, 2.0, 3.0, 4.0],
        [float("nan"), 1.0, 1.0],
        [float("inf"), 1.0, 1.0],
        [0.0, 0.0, 0.0],
        [True, 1.0, 1.0],
        ["1", 1.0, 1.0],
        [[1.0], 1.0, 1.0],
        [10**400, 1.0, 1.0],
        "abc",
        b"abcdefghijkl",
        None,
        {"a": 1},
        12,
    ],
)
def test_pack_refuses_bad_vectors(bad):
    with pytest.raises(MalformedMessage):
        pack_unit_vector(bad, 3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=40))
def test_pack_of_float_arrays_is_bit_identical_to_the_pure_python_loop(values):
    """Float arrays take a vectorised path (a synced entry's array('f'), an embedder's ndarray); the
    stored bytes must not depend on which path ran, or on which runtime."""
    if not any(values):
        return
    pure = pack_unit_vector(list(values), len(values))  # a list of Python floats: the loop
    assert pack_unit_vector(array("f", values), len(values)) == pure
    assert pack_unit_vector(np.array(values, dtype=np.float32), len(values)) == pure
    assert pack_unit_vector(np.array(values, dtype=np.float64), len(values)) == pure


@pytest.mark.parametrize("bad", [[1.0, 2.0], [1.0, 2.0, 3.0, 4.0], [float("nan"), 1.0, 1.0], [float("inf"), 1.0, 1.0],
                                 [0.0, 0.0, 0.0]])
@pytest.mark.parametrize("kind", ["array", "float32", "float64"])
def test_pack_refuses_bad_float_arrays(bad, kind):
    values = array("d", bad) if kind == "array" else np.array(bad, dtype=kind)
    with pytest.raises(MalformedMessage):
        pack_unit_vector(values, 3)
    with pytest.raises(MalformedMessage):
        pack_unit_vector(np.array([bad]), 3)  # 2-D


page_rows = st.lists(st.floats(width=32), min_size=5, max_size=5) | st.sampled_from(
    [[0.0] * 5, [1.0, 2.0**-24, 2.0**-49, 0.0, 0.0], [float("nan")] * 5, [3.4e38, -3.4e38, 1e-45, 0.0, 1.0]])


@settings(max_examples=200, deadline=None)
@given(st.lists(page_rows, min_size=1, max_size=40))
def test_a_page_is_packed_bit_for_bit_as_each_vector_alone(rows):
    """A SYNC_MEMORIES page is normalised in one vectorised pass; each row's bytes, or its refusal,
    must be what `pack_unit_vector` gives that vector alone (and so what any runtime stores)."""
    blobs = [struct.pack("<5f", *row) for row in rows]
    for blob, packed in zip(blobs, pack_unit_blobs(blobs, 5)):
        try:
            alone = pack_unit_vector(list(unpack_vector(blob)), 5)
        except MalformedMessage as error:
            assert isinstance(packed, MalformedMessage) and str(packed) == str(error)
        else:
            assert packed == alone


@pytest.mark.parametrize("row", [
    [1.0, 2.0**-53, 2.0**-106],          # just above a midpoint: rounds up, the float64 cascade says down
    [1.0, 2.0**-53, 0.0],                # exactly a midpoint: ties to even
    [1.0, 2.0**-53, 2.0**-53, 2.0**-106],
    [0.5, 2.0**-55, 2.0**-107, 2.0**-300],
    [1.0, 3 * 2.0**-54, 2.0**-107],
])
def test_page_sums_near_a_midpoint_are_rounded_as_fsum_rounds_them(row):
    """The page's sums of squares are exactly rounded like `math.fsum`'s, also where float64
    arithmetic alone lands on the wrong side of a rounding midpoint."""
    squares = np.array([row, [1.0] + [0.0] * (len(row) - 1)])
    assert _exact_row_sums(squares).tolist() == [math.fsum(row), 1.0]


def test_a_page_is_packed_without_numpy_too(monkeypatch):
    """In a Pyodide without numpy a page is packed vector by vector, with the same result."""
    blobs = [struct.pack("<3f", *row) for row in ([3, 4, 0], [0, 0, 0], [1e-30, 2e-30, -1], [float("inf"), 0, 1])]
    expected = pack_unit_blobs(blobs, 3)
    monkeypatch.setattr(kernels, "_np", None)
    got = pack_unit_blobs(blobs, 3)
    assert [g if isinstance(g, bytes) else str(g) for g in got] == [e if isinstance(e, bytes) else str(e) for e in expected]
    assert isinstance(got[1], MalformedMessage) and isinstance(got[3], MalformedMessage)


# Kernels -------------------------------------------------------------------------------

vectors = st.lists(st.integers(-3, 3), min_size=3, max_size=3).filter(any)


@pytest.mark.parametrize("kernel_cls", KERNELS)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(vectors, min_size=1, max_size=40), query=vectors, k=st.integers(1, 45))
def test_top_k_matches_brute_force(kernel_cls, rows, query, k):
    m = VectorMemory("agent-a", 3, 100, kernel=kernel_cls(3))
    ids = {}
    for i, row in enumerate(rows):
        ids[m.store_memory(f"row {i}", row)] = i
    ref = reference_scores(rows, query)
    hits = m.search_memory(query, k)
    assert len(hits) == min(k, len(rows))
    got = [ids[h.id] for h in hits]
    assert len(set(got)) == len(got)
    for hit, i in zip(hits, got):
        assert hit.score == pytest.approx(ref[i], abs=TOL)
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
    left_out = [ref[i] for i in range(len(rows)) if i not in set(got)]
    if left_out:
        assert max(left_out) <= min(ref[i] for i in got) + TOL


@pytest.mark.parametrize("kernel_cls", KERNELS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_kernel_rows_stay_consistent_through_removals(kernel_cls, data):
    rows = data.draw(st.lists(vectors, min_size=2, max_size=20))
    kernel = kernel_cls(3)
    kernel.add_many([pack_unit_vector(r, 3) for r in rows])
    live = list(range(len(rows)))  # live[row] = index into rows
    for _ in range(data.draw(st.integers(1, len(rows) - 1))):
        row = data.draw(st.integers(0, len(live) - 1))
        moved = kernel.remove(row)
        last = live.pop()
        if moved is None:
            assert row == len(live)
        else:
            assert moved == len(live)
            live[row] = last
    query = data.draw(vectors)
    ref = reference_scores(rows, query)
    found = kernel.search([pack_unit_vector(query, 3)], len(live))[0]
    assert sorted(r for r, _ in found) == list(range(len(live)))
    for row, score in found:
        assert score == pytest.approx(ref[live[row]], abs=TOL)


def test_numpy_two_pass_top_k_on_a_large_set_matches_argsort():
    rng = np.random.default_rng(7)
    data = rng.standard_normal((20_000, 24)).astype(np.float32)
    kernel = NumpyKernel(24, initial_rows=16)  # also grows several times
    kernel.add_many([pack_unit_vector(r, 24) for r in data])
    stored = np.frombuffer(b"".join(pack_unit_vector(r, 24) for r in data), dtype="<f4").reshape(-1, 24)
    queries = rng.standard_normal((30, 24))
    packed = [pack_unit_vector(q, 24) for q in queries]
    for k in (1, 10, 100):
        batch = kernel.search(packed, k)
        for q_blob, found in zip(packed, batch):
            q = np.frombuffer(q_blob, dtype="<f4").astype(np.float64)
            ref = stored.astype(np.float64) @ q
            best = set(np.argsort(-ref)[:k].tolist())
            assert len(found) == k and {r for r, _ in found} == best
        for found, single in zip(batch, (kernel.search([p], k)[0] for p in packed)):  # GEMM and GEMV agree
            assert [r for r, _ in sorted(found)] == [r for r, _ in sorted(single)]
            assert [s for _, s in sorted(found)] == pytest.approx([s for _, s in sorted(single)], abs=TOL)


@pytest.mark.parametrize("kernel_cls", KERNELS)
def test_boundary_ties_are_all_returned_by_the_kernel(kernel_cls):
    dim = 16  # one-hot rows: every dot product is exactly 0 or 1
    kernel = kernel_cls(dim)
    kernel.add_many([pack_unit_vector(one_hot(dim, i % dim), dim) for i in range(3200)])
    found = kernel.search([pack_unit_vector(one_hot(dim, 5), dim)], 3)[0]
    assert sorted(r for r, _ in found) == list(range(5, 3200, dim)) and {s for _, s in found} == {1.0}


def test_both_kernels_agree_on_random_data():
    rng = np.random.default_rng(3)
    data = rng.standard_normal((1500, 32))
    mems = [memory(k, dim=32, capacity=2000) for k in KERNELS]
    for i, row in enumerate(data):
        for m in mems:
            m.store_memory(f"doc {i}", row)
    queries = list(rng.standard_normal((15, 32)))
    py_hits, np_hits = (m.search_many(queries, 10) for m in mems)
    for a, b in zip(py_hits, np_hits):
        assert [h.id for h in a] == [h.id for h in b]
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=TOL)


def test_default_kernel_is_numpy_here():
    """numpy is the exact kernel natively; a memory's default adds the HNSW graph with the [index] extra."""
    assert isinstance(default_kernel(8), NumpyKernel)
    from ruvector_edge.memory.hnsw_index import HnswKernel

    assert isinstance(VectorMemory("a", 8, 10).kernel, HnswKernel)


# VectorMemory ----------------------------------------------------------------------------


def test_id_is_the_hash_of_the_canonical_content():
    assert memory_id("héllo") == hashlib.sha256('{"content":"héllo","type":"memory"}'.encode()).hexdigest()
    a, b = memory(owner="agent-a"), memory(owner="agent-b")
    assert a.store_memory("same text", [1, 0, 0, 0]) == b.store_memory("same text", [0, 1, 0, 0]) == memory_id("same text")


@pytest.mark.parametrize("kernel_cls", KERNELS)
def test_store_and_search_with_provenance_and_metadata(kernel_cls):
    m = memory(kernel_cls)
    m.store_memory("north", [0, 1, 0, 0], {"tags": ["dir"]})
    m.store_memory("east", [1, 0, 0, 0])
    m.store_memory("north-east", [1, 1, 0, 0])
    hits = m.search_memory([0.1, 1, 0, 0], 2)
    assert [h.content for h in hits] == ["north", "north-east"]
    assert all(h.owner == "agent-a" for h in hits)
    assert hits[0].metadata == {"tags": ["dir"]} and hits[1].metadata is None
    hits[0].metadata["tags"].append("changed")
    assert m.search_memory([0, 1, 0, 0], 1)[0].metadata == {"tags": ["dir"]}
    assert hits[0].score == pytest.approx(0.1 * 0 + 1 / math.sqrt(1.01), abs=TOL)
    assert len(m.search_memory([1, 1, 1, 1], 50)) == 3


@pytest.mark.parametrize("kernel_cls", KERNELS)
def test_equal_scores_are_ordered_by_id_whatever_the_insertion_order(kernel_cls):
    contents = [f"twin {i}" for i in range(12)]
    orders = [contents, contents[::-1], contents[5:] + contents[:5]]
    results = []
    for order in orders:
        m = memory(kernel_cls, dim=4)
        for c in order:
            m.store_memory(c, [1, 0, 0, 0])
        m.store_memory("other", [0, 1, 0, 0])
        results.append([h.id for h in m.search_memory([1, 0, 0, 0], 5)])
    assert results[0] == results[1] == results[2] == sorted(memory_id(c) for c in contents)[:5]


@pytest.mark.parametrize(
    "content, embedding, metadata, error",
    [
        ("x", [1, 2, 3], None, MalformedMessage),  # wrong dimension
        ("x", [1, 2, 3, 4, 5], None, MalformedMessage),
        ("x", [float("nan"), 0, 0, 1], None, MalformedMessage),
        ("x", [float("-inf"), 0, 0, 1], None, MalformedMessage),
        ("x", [0, 0, 0, 0], None, MalformedMessage),
        ("", [1, 0, 0, 0], None, MalformedMessage),
        (42, [1, 0, 0, 0], None, MalformedMessage),
        ("\ud800", [1, 0, 0, 0], None, MalformedMessage),
        ("x" * (MAX_CONTENT_BYTES + 1), [1, 0, 0, 0], None, OversizedMessage),
        ("é" * (MAX_CONTENT_BYTES // 2 + 1), [1, 0, 0, 0], None, OversizedMessage),
        ("x", [1, 0, 0, 0], ["not", "an", "object"], MalformedMessage),
        ("x", [1, 0, 0, 0], {"v": float("nan")}, CanonicalizationError),
        ("x", [1, 0, 0, 0], {"big": "y" * 5000}, OversizedMessage),
    ],
)
def test_bad_stores_are_refused_and_change_nothing(tmp_path, content, embedding, metadata, error):
    store = SqliteMemoryStore(tmp_path / "m.db")
    m = memory(store=store)
    m.store_memory("kept", [0, 0, 1, 0])
    before = snapshot(m)
    with pytest.raises(error):
        m.store_memory(content, embedding, metadata)
    assert snapshot(m) == before and len(m.kernel) == 1
    assert store.load(4) == list(m._entries.values())


@pytest.mark.parametrize("k", [0, -1, True, 1.5, "3", None])
def test_k_must_be_a_positive_integer(k):
    m = memory()
    m.store_memory("a", [1, 0, 0, 0])
    with pytest.raises(MalformedMessage):
        m.search_memory([1, 0, 0, 0], k)


def test_query_is_checked_like_an_embedding():
    m = memory()
    m.store_memory("a", [1, 0, 0, 0])
    for bad in ([1, 0, 0], [0, 0, 0, 0], [float("nan"), 1, 0, 0]):
        with pytest.raises(MalformedMessage):
            m.search_memory(bad, 1)
    assert memory().search_memory([1, 0, 0, 0], 3) == []


def test_restoring_the_same_content_keeps_the_first_entry_and_refreshes_its_age():
    m = memory(capacity=3)
    first = m.store_memory("a", [1, 0, 0, 0], {"v": 1})
    m.store_memory("b", [0, 1, 0, 0])
    m.store_memory("c", [0, 0, 1, 0])
    assert m.store_memory("a", [0, 0, 0, 1], {"v": 2}) == first and len(m) == 3
    entry = m.get(first)
    assert entry.metadata == {"v": 1} and entry.embedding() == [1.0, 0.0, 0.0, 0.0]
    m.store_memory("d", [0, 0, 0, 1])  # evicts b, the least recently stored, not a
    assert first in m and memory_id("b") not in m


@pytest.mark.parametrize("kernel_cls", KERNELS)
def test_eviction_is_by_store_order_and_searches_do_not_protect_entries(kernel_cls):
    m = memory(kernel_cls, capacity=3)
    ids = [m.store_memory(c, v) for c, v in [("a", [1, 0, 0, 0]), ("b", [0, 1, 0, 0]), ("c", [0, 0, 1, 0])]]
    for _ in range(20):  # a hot entry under LRU-on-read would survive; here it does not
        assert m.search_memory([1, 0, 0, 0], 1)[0].id == ids[0]
    m.store_memory("d", [0.9, 0.1, 0, 0])
    assert ids[0] not in m and len(m) == 3 and len(m.kernel) == 3
    assert m.search_memory([1, 0, 0, 0], 1)[0].content == "d"
    assert {h.content for h in m.search_memory([1, 1, 1, 1], 10)} == {"b", "c", "d"}
    stored = ["b", "c", "d"]
    for i in range(10):  # keep churning: rows, ids and kernel stay in step
        stored.append(m.get(m.store_memory(f"n{i}", one_hot(4, i % 4))).content)
        assert len(m) == len(m.kernel) == 3
        assert {h.content for h in m.search_memory([1, 1, 1, 1], 3)} == set(stored[-3:])


# Sync: export / import -------------------------------------------------------------------


def test_collaborative_rag_an_agent_finds_what_another_stored():
    embed = HashingEmbedder(64)
    a, b = VectorMemory("agent-a", 64, 100), VectorMemory("agent-b", 64, 100, kernel=PurePythonKernel(64))
    docs = ["the relay forwards signed frames", "bananas are rich in potassium", "gun stores the swarm graph"]
    for d in docs:
        a.store_memory(d, embed.embed(d), {"by": "a"})
    b.store_memory("b's own note about relay frames", embed.embed("b's own note about relay frames"))
    result = b.import_entries(a.export_entries(), "agent-a")
    assert len(result.added) == 3 and result.duplicates == 0 and not result.rejected
    hit = b.search_memory(embed.embed("which fruit has potassium"), 1)[0]
    assert hit.content == docs[1] and hit.owner == "agent-a" and hit.metadata == {"by": "a"}
    assert b.get(hit.id).vector == a.get(hit.id).vector  # bit-identical embeddings
    assert [e["owner"] for e in b.export_entries()] == ["agent-b"]  # only its own entries go out
    again = b.import_entries(a.export_entries(), "agent-a")
    assert again.added == () and again.duplicates == 3


def test_export_pages_with_since():
    m = memory()
    for i in range(7):
        m.store_memory(f"m{i}", one_hot(4, i % 4))
    page1 = m.export_entries(limit=3)
    page2 = m.export_entries(since=page1[-1]["seq"], limit=3)
    page3 = m.export_entries(since=page2[-1]["seq"], limit=3)
    assert [e["content"] for e in page1 + page2 + page3] == [f"m{i}" for i in range(7)]
    assert m.export_entries(since=page3[-1]["seq"]) == []
    with pytest.raises(MalformedMessage):
        m.export_entries(since=-1)


def good_entry(content="valid", dim=4, owner="agent-x", **override):
    entry = {
        "id": memory_id(content), "content": content, "owner": owner,
        "embedding": b64_f32([1.0] + [0.0] * (dim - 1)), "metadata": {"k": 1}, "seq": 1, "model": HASHING_MODEL,
    }
    entry.update(override)
    return entry


HOSTILE = {
    "wrong dim (short)": (good_entry(embedding=b64_f32([1.0, 0.0, 0.0])), "base64 of 4"),
    "wrong dim (long)": (good_entry(embedding=b64_f32([1.0] * 40)), "base64 of 4"),
    "nan": (good_entry(embedding=b64_f32([float("nan"), 1.0, 0.0, 0.0])), "NaN"),
    "inf": (good_entry(embedding=b64_f32([float("inf"), 1.0, 0.0, 0.0])), "infinity"),
    "zero": (good_entry(embedding=b64_f32([0.0] * 4)), "all zeros"),
    "id not content hash": (good_entry(id=memory_id("something else")), "not the hash"),
    "id uppercase": (good_entry(id=memory_id("valid").upper()), "lowercase hex"),
    "huge content": (good_entry(content="z" * (MAX_CONTENT_BYTES + 1)), "exceeds"),
    "content not str": (good_entry(content=5, id=memory_id("5")), "non-empty string"),
    "embedding as list": (good_entry(embedding=[1.0, 0.0, 0.0, 0.0]), "base64 of 4"),
    "embedding not base64": (good_entry(embedding="!" * 24), "padded base64"),
    "metadata list": (good_entry(metadata=[1]), "JSON object or None"),
    "metadata huge": (good_entry(metadata={"x": "y" * 5000}), "exceeds"),
    "seq string": (good_entry(seq="1"), "seq must be"),
    "seq bool": (good_entry(seq=True), "seq must be"),
    "missing key": ({k: v for k, v in good_entry().items() if k != "metadata"}, "missing ['metadata']"),
    "extra key": (good_entry(score=1.0), "unexpected ['score']"),
    "owner not the sender": (good_entry(owner="agent-y"), "not the sender"),
    "owner bad id": (good_entry(owner="bad owner!"), "valid identifier"),
    "model not str": (good_entry(model=7), "printable ASCII id"),
    "model empty": (good_entry(model=""), "printable ASCII id"),
    "model huge": (good_entry(model="m" * 129), "printable ASCII id"),
    "model control chars": (good_entry(model="a\nb"), "printable ASCII id"),
    "model of another embedder": (good_entry(model="other-model"), "embedded by model other-model"),
    "not an object": (["id", "content"], 'must be a JSON object'),
    "null": (None, 'must be a JSON object'),
}


@pytest.mark.parametrize("kernel_cls", KERNELS)
def test_hostile_entries_are_counted_and_change_nothing(tmp_path, kernel_cls):
    store = SqliteMemoryStore(tmp_path / "m.db")
    m = memory(kernel_cls, store=store)
    m.store_memory("mine", [0, 0, 0, 1])
    batch = [entry for entry, _ in HOSTILE.values()] + [good_entry("welcome")]
    result = m.import_entries(batch, "agent-x")
    assert result.added == (memory_id("welcome"),)
    assert len(result.rejected) == len(HOSTILE)
    assert [r.index for r in result.rejected] == list(range(len(HOSTILE)))
    for (_, reason), rejection in zip(HOSTILE.values(), result.rejected):
        assert isinstance(rejection.error, RejectedInput) and reason in str(rejection.error)
    assert isinstance(result.rejected[list(HOSTILE).index("huge content")].error, OversizedMessage)
    assert len(m) == 2 and len(m.kernel) == 2
    assert {e.content for e in store.load(4)} == {"mine", "welcome"}
    assert m.get(memory_id("welcome")).owner == "agent-x"


def test_a_sent_vector_is_renormalised():
    m = memory()
    m.import_entries([good_entry(embedding=b64_f32([50.0, 0.0, 0.0, 0.0]))], "agent-x")
    assert m.search_memory([1, 0, 0, 0], 1)[0].score == pytest.approx(1.0)


@pytest.mark.parametrize(
    "entries, sender, error",
    [
        ([good_entry()] * (MAX_IMPORT_BATCH + 1), "agent-x", OversizedMessage),
        ({"0": good_entry()}, "agent-x", MalformedMessage),
        ("entries", "agent-x", MalformedMessage),
        ([good_entry()], "bad sender!", MalformedMessage),
        ([good_entry()], None, MalformedMessage),
    ],
)
def test_a_bad_batch_is_refused_whole(entries, sender, error):
    m = memory()
    m.store_memory("mine", [0, 0, 0, 1])
    before = snapshot(m)
    with pytest.raises(error):
        m.import_entries(entries, sender)
    assert snapshot(m) == before


def test_imports_evict_the_largest_owners_oldest_and_a_batch_larger_than_capacity_keeps_its_newest():
    m = memory(capacity=5)
    for i in range(3):
        m.store_memory(f"local {i}", one_hot(4, i))
    result = m.import_entries([good_entry(f"peer {i}") for i in range(4)], "agent-x")
    assert (result.evicted, result.over_share, len(m)) == (0, 2, 5)  # agent-x holds the most: its own go (issue 14)
    assert [e.content for e in m._entries.values()] == [f"local {i}" for i in range(3)] + ["peer 2", "peer 3"]
    result = m.import_entries([good_entry(f"flood {i}") for i in range(8)], "agent-x")
    assert result.added == tuple(memory_id(f"flood {i}") for i in range(6, 8)) and result.evicted == 2
    seqs = [e.seq for e in m._entries.values()]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert len(m.kernel) == 5 and {h.content for h in m.search_memory([1, 0, 0, 0], 10)} == {
        *(f"local {i}" for i in range(3)), "flood 6", "flood 7"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(json_values | st.fixed_dictionaries({k: json_values for k in good_entry()}), max_size=6))
def test_arbitrary_entries_are_only_ever_rejected(entries):
    m = memory()
    result = m.import_entries(entries, "agent-x")
    assert len(result.rejected) == len(entries) and len(m) == 0


# Persistence -----------------------------------------------------------------------------


def test_reopened_store_has_everything_in_order(tmp_path):
    path = tmp_path / "m.db"
    m = memory(store=SqliteMemoryStore(path), capacity=4)
    for i in range(6):
        m.store_memory(f"m{i}", one_hot(4, i % 4), {"i": i})
    m.import_entries([good_entry("from x")], "agent-x")
    hits = m.search_memory([1, 0.5, 0, 0], 4)
    m.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)

    again = memory(store=SqliteMemoryStore(path), capacity=4)
    assert [e.content for e in again._entries.values()] == ["m3", "m4", "m5", "from x"]
    assert again.search_memory([1, 0.5, 0, 0], 4) == hits
    assert again.get(memory_id("from x")).owner == "agent-x"
    last = again.export_entries()[-1]["seq"]
    again.store_memory("after restart", [0, 0, 1, 1])
    assert [e["content"] for e in again.export_entries(since=last)] == ["after restart"]
    assert memory_id("m3") not in again  # eviction order survived the restart
    again.close()

    smaller = memory(store=SqliteMemoryStore(path), capacity=2)
    assert [e.content for e in smaller._entries.values()] == ["from x", "after restart"]
    smaller.close()
    assert len(SqliteMemoryStore(path).load(4)) == 2
    with pytest.raises(ValueError):
        memory(store=SqliteMemoryStore(path), dim=8)


def test_imports_are_copied_back_from_the_wal_in_large_steps_and_all_kept(tmp_path):
    """Each WAL checkpoint fsyncs the database; at SQLite's default (every 1,000 pages) that was half
    an import's commit, so the store checkpoints every CHECKPOINT_PAGES instead."""
    path = tmp_path / "m.db"
    dim = 1024  # a 4 KiB vector: at least a WAL page per entry
    m = VectorMemory("agent-a", dim, 10_000, kernel=NumpyKernel(dim), store=SqliteMemoryStore(path))
    for page in range(60):
        m.import_entries([good_entry(f"peer {page} {i}", dim=dim) for i in range(32)], "agent-x")
    assert os.path.getsize(f"{path}-wal") > 1920 * 4096  # nothing copied back yet
    m.close()
    assert len(SqliteMemoryStore(path).load(dim)) == 1920


class FailingStore(MemoryStore):
    def load(self, dim):
        return []

    def apply(self, put, delete):
        raise OSError("disk full")


def test_a_failed_write_changes_nothing():
    m = memory(store=FailingStore(), capacity=1)
    with pytest.raises(OSError):
        m.store_memory("a", [1, 0, 0, 0])
    assert len(m) == 0 and len(m.kernel) == 0
    with pytest.raises(OSError):
        m.import_entries([good_entry()], "agent-x")
    assert len(m) == 0 and m.search_memory([1, 0, 0, 0], 1) == []


WRITER = textwrap.dedent(
    """
    import sys
    from ruvector_edge.memory import SqliteMemoryStore, VectorMemory
    m = VectorMemory("writer", 8, 100_000, store=SqliteMemoryStore(sys.argv[1]))
    for i in range(100_000):
        m.store_memory(f"memory {i}", [float(i + 1)] + [1.0] * 7, {"i": i})
        print(f"stored {i}", flush=True)
    """
)


def test_a_killed_process_loses_nothing_it_acknowledged(tmp_path):
    path = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(PY)},
    )
    acknowledged = []
    try:
        for line in proc.stdout:
            acknowledged.append(int(line.split()[1]))
            if len(acknowledged) == 300:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL and acknowledged == list(range(300))

    m = VectorMemory("reader", 8, 100_000, store=SqliteMemoryStore(path))
    assert all(memory_id(f"memory {i}") in m for i in acknowledged)
    assert m.get(memory_id("memory 299")).metadata == {"i": 299}
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert m.search_memory([300.0] + [1.0] * 7, 1)[0].content.startswith("memory ")


# Embedder --------------------------------------------------------------------------------


def test_hashing_embedder_is_unit_deterministic_and_process_independent():
    embed = HashingEmbedder()
    v = embed.embed("Hello, world: hello again")
    assert len(v) == 384 and math.fsum(x * x for x in v) == pytest.approx(1.0)
    assert embed.embed_many(["Hello, world: hello again"]) == [v]
    code = "from ruvector_edge.memory import HashingEmbedder; print(HashingEmbedder().embed('Hello, world: hello again'))"
    outputs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONPATH": str(PY), "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")
    }
    assert outputs == {f"{v}\n"}
    # Pinned so the browser build can be checked against the same numbers.
    nonzero = [(i, round(x, 6)) for i, x in enumerate(v) if x]
    assert nonzero == GOLDEN_HELLO


GOLDEN_HELLO = [(57, 0.333333), (172, -0.666667), (185, 0.333333), (308, 0.333333), (328, -0.333333), (371, 0.333333)]


def test_similar_texts_score_higher_than_unrelated_ones():
    embed = HashingEmbedder()
    cos = lambda a, b: sum(x * y for x, y in zip(embed.embed(a), embed.embed(b)))  # noqa: E731
    cases = [
        ("the agent stores a vector memory", "an agent stores vector memories", "bananas grow in tropical climates"),
        ("sign every envelope with ed25519", "every envelope is signed with ed25519 keys", "the cat sleeps on the sofa"),
        ("relay forwards frames to peers", "the relay forwards frames", "quarterly revenue grew by ten percent"),
    ]
    for anchor, similar, unrelated in cases:
        assert cos(anchor, similar) > cos(anchor, unrelated) + 0.2


def test_embedder_refuses_text_without_words():
    for bad in ("", "  ... !!", 5):
        with pytest.raises(MalformedMessage):
            HashingEmbedder(16).embed(bad)


class FixedEmbedder(Embedder):
    """A stand-in for a second model: each text's vector is a pure function of its length."""

    def __init__(self, dim=4, model_id="fixed-model-v1"):
        self.dim, self.model_id, self.calls = dim, model_id, 0

    def embed_many(self, texts):
        self.calls += 1
        for text in texts:
            if "refuse" in text:
                raise MalformedMessage("this model refuses the text")
        return [[1.0, float(len(text)), 0.0, 1.0] for text in texts]


def test_entries_carry_the_model_that_made_them_on_the_wire_and_on_disk(tmp_path):
    store = SqliteMemoryStore(tmp_path / "m.db")
    m = VectorMemory("agent-a", 4, 10, kernel=NumpyKernel(4), store=store, embedder=FixedEmbedder())
    m.store_memory("mine", [0, 0, 0, 1])
    assert [e["model"] for e in m.export_entries()] == ["fixed-model-v1"]
    assert [e.model for e in store.load(4)] == ["fixed-model-v1"]
    assert VectorMemory("agent-b", 4, 10).model == HASHING_MODEL  # no embedder: vectors are the hashing embedder's


def test_a_peers_entry_of_another_model_is_reembedded_from_its_content():
    embedder = FixedEmbedder()
    m = VectorMemory("agent-a", 4, 10, kernel=NumpyKernel(4), embedder=embedder)
    result = m.import_entries([good_entry("from a hashing tab"), good_entry("native", model="fixed-model-v1")], "agent-x")
    assert len(result.added) == 2 and not result.rejected
    adopted = m.get(memory_id("from a hashing tab"))
    assert adopted.model == "fixed-model-v1" and adopted.owner == "agent-x"
    assert adopted.vector == pack_unit_vector([1.0, float(len("from a hashing tab")), 0.0, 1.0], 4)
    assert m.get(memory_id("native")).vector == pack_unit_vector([1.0, 0.0, 0.0, 0.0], 4)  # same model: as sent
    assert sorted(e.seq for e in m._entries.values()) == [1, 2]


def test_entries_of_another_model_that_cannot_be_reembedded_are_refused_alone(tmp_path):
    store = SqliteMemoryStore(tmp_path / "m.db")
    m = VectorMemory("agent-a", 4, 10, kernel=NumpyKernel(4), store=store, embedder=FixedEmbedder())
    batch = [good_entry("please refuse me"), good_entry("welcome"), good_entry("bad", seq="x")]
    result = m.import_entries(batch, "agent-x")
    assert result.added == (memory_id("welcome"),)
    assert [(r.index, type(r.error)) for r in result.rejected] == [(0, MalformedMessage), (2, MalformedMessage)]
    assert [e.content for e in store.load(4)] == ["welcome"] and len(m.kernel) == 1


def test_without_an_embedder_entries_of_another_model_are_kept_apart():
    m = memory()
    before = snapshot(m)
    result = m.import_entries([good_entry("semantic", model="fixed-model-v1")], "agent-x")
    assert result.added == () and "embedded by model fixed-model-v1" in str(result.rejected[0].error)
    assert snapshot(m) == before


def test_a_store_of_another_model_is_reembedded_on_open_and_rewritten(tmp_path):
    path = tmp_path / "m.db"
    old = VectorMemory("agent-a", 4, 10, kernel=NumpyKernel(4), store=SqliteMemoryStore(path))
    old.store_memory("first", [1, 0, 0, 0])
    old.store_memory("second", [0, 1, 0, 0])
    old.close()
    reopened = VectorMemory("agent-a", 4, 10, kernel=NumpyKernel(4), store=SqliteMemoryStore(path), embedder=FixedEmbedder())
    assert [(e.content, e.model, e.seq) for e in reopened._entries.values()] == [
        ("first", "fixed-model-v1", 1), ("second", "fixed-model-v1", 2)]
    assert {e.model for e in SqliteMemoryStore(path).load(4)} == {"fixed-model-v1"}
    hit = reopened.search_memory([1.0, 6.0, 0.0, 1.0], 1)[0]
    assert hit.content == "second"
    reopened.close()
    with pytest.raises(ValueError, match="holds memories of model fixed-model-v1"):
        VectorMemory("agent-a", 4, 10, kernel=NumpyKernel(4), store=SqliteMemoryStore(path))
    assert {e.model for e in SqliteMemoryStore(path).load(4)} == {"fixed-model-v1"}


def test_a_store_written_before_models_were_recorded_opens_as_the_hashing_embedders(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE memory_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO memory_meta VALUES ('dim', '4');"
        "CREATE TABLE memories (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, owner TEXT NOT NULL,"
        " content TEXT NOT NULL, metadata TEXT, embedding BLOB NOT NULL);"
    )
    db.execute("INSERT INTO memories VALUES (?, 1, 'agent-a', 'old', NULL, ?)",
               (memory_id("old"), pack_unit_vector([1, 0, 0, 0], 4)))
    db.commit()
    db.close()
    m = VectorMemory("agent-a", 4, 10, kernel=NumpyKernel(4), store=SqliteMemoryStore(path))
    assert m.get(memory_id("old")).model == HASHING_MODEL
