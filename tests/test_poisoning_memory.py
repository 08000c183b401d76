"""Memory flooding (issue 14): one member storing more than the capacity evicts only its own entries."""

from __future__ import annotations

from ruvector_edge.memory import VectorMemory

DIM = 8


def vector(i: int) -> list[float]:
    return [1.0 + i % 5, 2.0, float(i % 7), 0.5, 1.0, float(i % 3), 3.0, 1.0 + i]


def source(owner: str, count: int, prefix: str) -> list[dict]:
    """`count` entries owned by `owner`, in SYNC_MEMORIES wire form, oldest first."""
    peer = VectorMemory(owner, DIM, count)
    for i in range(count):
        peer.store_memory(f"{prefix} memory {i}", vector(i))
    entries, since = [], 0
    while page := peer.export_entries(since=since):
        entries += page
        since = page[-1]["seq"]
    return entries


def test_a_flooding_member_displaces_only_its_own_entries_and_is_counted():
    memory = VectorMemory("me", DIM, 30)
    for i in range(5):
        memory.store_memory(f"my note {i}", vector(i))
    honest = {name: source(name, 6, name) for name in ("alice", "bob")}
    results = [memory.import_entries(entries, name) for name, entries in honest.items()]
    kept = {entry.id for entry in memory._entries.values()}
    flood = source("mallory", 1000, "spam")
    results += [memory.import_entries(flood[start : start + 200], "mallory") for start in range(0, len(flood), 200)]
    assert kept <= set(memory._entries)  # nothing honest lost
    assert len(memory) == 30 and not any(result.rejected for result in results)
    owners = [entry.owner for entry in memory._entries.values()]
    assert owners.count("mallory") == 30 - 17
    assert [result.over_share for result in results[:2]] == [0, 0]
    assert sum(result.over_share for result in results[2:]) == 1000 - 13  # every spam entry gone, counted


def test_without_a_flood_the_oldest_of_the_largest_owner_goes():
    memory = VectorMemory("me", DIM, 10)
    memory.import_entries(source("alice", 6, "alice"), "alice")
    memory.import_entries(source("bob", 3, "bob"), "bob")
    result = memory.import_entries(source("carol", 3, "carol"), "carol")
    owners = [entry.owner for entry in memory._entries.values()]
    assert (owners.count("alice"), owners.count("bob"), owners.count("carol")) == (4, 3, 3)
    assert [e.content for e in memory._entries.values() if e.owner == "alice"] == [f"alice memory {i}" for i in range(2, 6)]
    assert (len(result.added), result.evicted, result.over_share) == (3, 2, 0)


async def test_a_member_flooding_sync_memories_is_counted_by_the_agent_and_honest_memories_stay():
    from relay_fixtures import agent_config, joined_agents, running_relay, wait_for, ws_url
    from ruvector_edge.protocol import MessageKind

    async with running_relay() as relay:
        agents = await joined_agents(ws_url(relay.port), agent_config("me", memory_capacity=40, memory_dim=DIM),
                                     agent_config("alice", memory_dim=DIM), agent_config("mallory", memory_dim=DIM))
        me, alice, mallory = agents
        try:
            for i in range(5):
                await alice.store_memory(f"alice note {i}", vector(i))
            await alice.sync_memories()
            await wait_for(lambda: len(me.memory) == 5, what="alice's memories")
            flood = source("mallory", 300, "spam")
            for start in range(0, len(flood), 30):
                await mallory.broadcast(MessageKind.SYNC_MEMORIES, entries=flood[start : start + 30])
            await wait_for(lambda: me.defences()["memory_over_share"] == 300 - 35, timeout=20,
                           what="the flood counted")
            owners = [entry.owner for entry in me.memory._entries.values()]
            assert owners.count("alice") == 5 and owners.count("mallory") == 35
            assert alice.defences()["memory_over_share"] == 0
        finally:
            for agent in agents:
                await agent.leave()
