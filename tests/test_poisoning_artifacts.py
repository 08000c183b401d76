"""Block flooding (issue 14): one member delivering more blocks than the store holds displaces only its own."""

from __future__ import annotations

import os

from ruvector_edge.artifacts import ArtifactStore, DiskBlockStore, LruBlockCache
from ruvector_edge.artifacts.cid import RAW, cid_for
from ruvector_edge.artifacts.fetch import BlockFetch
from ruvector_edge.artifacts.store import StoreLimits

KIB = 1024


def blocks(count: int, size: int = 100 * KIB) -> list[tuple[str, bytes]]:
    out = []
    for _ in range(count):
        data = os.urandom(size)
        out.append((cid_for(data, RAW), data))
    return out


def test_a_block_flood_from_one_member_evicts_no_one_elses_blocks_and_is_counted():
    store = ArtifactStore(cache_bytes=2 << 20)
    mine = [store.store_artifact(os.urandom(200 * KIB)) for _ in range(3)]
    honest = blocks(5)
    for cid, data in honest:
        store.put_chunk(cid, data, "alice")
    flood = blocks(200)  # 20 MB into a 2 MiB cache
    for cid, data in flood:
        store.put_chunk(cid, data, "mallory")
    assert all(store.has(cid) for cid in mine) and all(store.has(cid) for cid, _ in honest)
    assert store.cache.nbytes <= 2 << 20
    kept = sum(store.has(cid) for cid, _ in flood)
    assert 0 < kept < len(flood)
    assert store.over_share == len(flood) - kept  # every flood block gone, counted


def test_a_full_cache_takes_room_from_the_largest_owner_oldest_first():
    cache = LruBlockCache(100)
    for i in range(6):
        cache.put(f"a{i}", bytes(10), "alice")
    cache.put("b0", bytes(10), "bob")
    for i in range(5):
        cache.put(f"c{i}", bytes(10), "carol")  # alice holds the most: her oldest go, carol's own never
    assert [cache.has(f"a{i}") for i in range(6)] == [False, False] + [True] * 4
    assert cache.has("b0") and all(cache.has(f"c{i}") for i in range(5))
    assert (cache.held_by("alice"), cache.held_by("bob"), cache.held_by("carol"), cache.over_share) == (40, 10, 50, 0)
    cache.put("c5", bytes(10), "carol")  # carol now ties alice and is putting: her own oldest goes
    assert not cache.has("c0") and cache.over_share == 1


def test_a_member_persists_at_most_its_disk_quota(tmp_path):
    store = ArtifactStore(DiskBlockStore(tmp_path), cache_bytes=1 << 20,
                          limits=StoreLimits(max_member_disk_bytes=1 << 20))
    honest, flood = blocks(3), blocks(30)
    for cid, data in honest:
        store.put_chunk(cid, data, "alice")
    for cid, data in flood:
        store.put_chunk(cid, data, "mallory")
    on_disk = DiskBlockStore(tmp_path)
    assert all(on_disk.has(cid) for cid, _ in honest)
    persisted = sum(on_disk.has(cid) for cid, _ in flood)
    assert persisted == (1 << 20) // (100 * KIB)
    assert store.over_disk_quota == len(flood) - persisted


def test_fetched_blocks_are_held_for_the_member_that_delivered_them():
    store = ArtifactStore(cache_bytes=1 << 20)
    ((cid, data),) = blocks(1)
    fetch = BlockFetch(store, cid, ["alice"], parallel=1, request_timeout=5.0)
    (request,) = fetch.next_requests(0.0)
    fetch.on_block(request.peer, request.cid, data)
    assert store.cache.held_by("alice") == len(data) and store.cache.held_by("") == 0
