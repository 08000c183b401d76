"""The sync path at capacity: imports decide evictions without walking the memory, and keep the same policy.

The policy (largest owner's oldest first, ties to the sender then the greater
name, the sender's new entries last) is checked against a brute-force
reference that walks every entry, as the memory once did, on random
workloads of stores, re-stores and imports from several peers.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque

from ruvector_edge.memory import SqliteMemoryStore, VectorMemory
from ruvector_edge.memory.numpy_kernel import NumpyKernel

from test_memory import good_entry, one_hot


class WalkCounter(OrderedDict):
    """The memory's entry table, counting every walk over it."""

    walks = 0

    def __iter__(self):
        WalkCounter.walks += 1
        return super().__iter__()

    def items(self):
        WalkCounter.walks += 1
        return super().items()

    def values(self):
        WalkCounter.walks += 1
        return super().values()

    def keys(self):
        WalkCounter.walks += 1
        return super().keys()


def test_an_import_into_a_full_memory_does_not_walk_the_held_entries():
    m = VectorMemory("agent-a", 4, 300, kernel=NumpyKernel(4))
    for i in range(200):
        m.store_memory(f"local {i}", one_hot(4, i % 4))
    m.import_entries([good_entry(f"peer {i}", owner="agent-x") for i in range(100)], "agent-x")
    m._entries = WalkCounter(m._entries)
    WalkCounter.walks = 0
    result = m.import_entries([good_entry(f"more {i}", owner="agent-y") for i in range(50)], "agent-y")
    assert result.evicted == 50 and len(m) == 300
    assert WalkCounter.walks == 0


def reference_make_room(entries: OrderedDict, incoming: list, sender: str, capacity: int):
    """The policy as a walk over every held entry (owner, id), oldest first."""
    overflow = len(entries) + len(incoming) - capacity
    if overflow <= 0:
        return [e["id"] for e in incoming], [], 0
    queues: dict[str, deque] = {}
    for id_, owner in entries.items():
        queues.setdefault(owner, deque()).append(id_)
    queues.setdefault(sender, deque()).extend(("new", e["id"]) for e in incoming)
    evict, dropped, over_share = [], set(), 0
    for _ in range(overflow):
        owner = max(queues, key=lambda o: (len(queues[o]), o == sender, o))
        victim = queues[owner].popleft()
        over_share += owner == sender
        if isinstance(victim, tuple):
            dropped.add(victim[1])
        else:
            evict.append(victim)
    return [e["id"] for e in incoming if e["id"] not in dropped], evict, over_share


def test_evictions_match_the_walking_reference_on_random_workloads():
    rng = random.Random(13)
    for trial in range(30):
        capacity = rng.randint(3, 40)
        m = VectorMemory("agent-a", 4, capacity, kernel=NumpyKernel(4))
        held: OrderedDict[str, str] = OrderedDict()  # id -> owner, store order
        peers = ["agent-b", "agent-c", "agent-d", "agent-e"][: rng.randint(1, 4)]
        for step in range(60):
            if rng.random() < 0.3:
                content = f"local {rng.randint(0, 60)}"
                id_ = m.store_memory(content, one_hot(4, step % 4))
                if id_ in held:
                    held.move_to_end(id_)
                else:
                    if len(held) >= capacity:
                        held.popitem(last=False)
                    held[id_] = "agent-a"
                continue
            sender = rng.choice(peers)
            batch = [good_entry(f"{sender} {trial} {step} {i}", owner=sender) for i in range(rng.randint(1, 12))]
            kept, evict, over_share = reference_make_room(held, batch, sender, capacity)
            result = m.import_entries(batch, sender)
            assert (list(result.added), result.evicted, result.over_share) == (kept, len(evict), over_share)
            for id_ in evict:
                del held[id_]
            held.update((id_, sender) for id_ in kept)
            assert list(m._entries) == list(held)


def commits_by_sync_mode(store: SqliteMemoryStore) -> list[str]:
    """The synchronous mode each COMMIT on the store's connection ran under (the store opens with FULL)."""
    modes, current = [], ["FULL"]

    def trace(statement: str) -> None:
        if statement.upper().startswith("PRAGMA SYNCHRONOUS="):
            current[0] = statement.split("=", 1)[1].strip().upper()
        elif statement.upper() == "COMMIT":
            modes.append(current[0])

    store._db.set_trace_callback(trace)
    return modes


def test_imports_commit_without_fsync_and_own_memories_with_it(tmp_path):
    path = tmp_path / "m.db"
    store = SqliteMemoryStore(path)
    m = VectorMemory("agent-a", 4, 3, kernel=NumpyKernel(4), store=store)
    modes = commits_by_sync_mode(store)
    m.store_memory("mine", one_hot(4, 0))
    m.import_entries([good_entry(f"peer {i}") for i in range(3)], "agent-x")
    m.store_memory("mine again", one_hot(4, 1))
    assert modes == ["FULL", "NORMAL", "FULL"]
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again for what follows
    held = list(m._entries.values())
    assert [e.content for e in held] == ["peer 1", "peer 2", "mine again"]
    m.close()
    reopened = VectorMemory("agent-a", 4, 3, kernel=NumpyKernel(4), store=SqliteMemoryStore(path))
    assert list(reopened._entries.values()) == held
    reopened.close()
