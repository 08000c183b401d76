"""Patterns and memories stored by one agent reach the others through the relay; hostile sync data changes nothing."""

from __future__ import annotations

import asyncio

import pytest

from ruvector_edge.agent import SwarmAgent
from ruvector_edge.protocol import MessageKind

ACTIONS = ["coder", "reviewer", "typescript-developer"]


async def until(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def test_a_pattern_learned_in_one_agent_reaches_the_others(swarm_of):
    a, b, c = await swarm_of("a"), await swarm_of("b"), await swarm_of("c")
    await a.learn("edit_ts", "typescript-developer", 0.9)
    await b.learn("edit_ts", "coder", 0.2)

    async def everyone_has_both():
        return all(agent.intelligence.get_swarm_stats().total_visits == 2 for agent in (a, b, c))

    await until(everyone_has_both)
    for agent in (a, b, c):
        assert (await agent.get_best_action("edit_ts", ACTIONS))[0] == "typescript-developer"
        assert agent.intelligence.get_swarm_stats().total_patterns == 2


async def test_visits_are_weighted_across_agents(swarm_of):
    a, b = await swarm_of("a"), await swarm_of("b")
    await a.learn("s", "x", 0.9)
    for _ in range(3):
        await b.learn("s", "y", 0.5)
        await b.learn("s", "x", 0.1)

    async def merged():
        return all(agent.intelligence.get_swarm_stats().total_visits == 7 for agent in (a, b))

    await until(merged)
    # x: (0.9*1 + 0.1*3) / 4 = 0.3 < y: 0.5, on both sides
    assert (await a.get_best_action("s", ["x", "y"]))[0] == "y"
    assert (await b.get_best_action("s", ["x", "y"]))[0] == "y"


async def test_a_late_joiner_catches_up_by_requesting_patterns(swarm_of):
    a = await swarm_of("a")
    await a.learn("deploy", "specialist", 0.8)
    await a.sync_patterns()
    late = await swarm_of("late")

    async def caught_up():
        return await late.get_best_action("deploy", ["specialist", "coder"]) is not None

    await until(caught_up)


async def test_malformed_sync_from_a_member_is_rejected_and_changes_nothing(swarm_of):
    a, b = await swarm_of("a"), await swarm_of("b")
    await b.learn("s", "x", 0.5)
    before = b.intelligence.serialize_state()
    for body in ({"state": "not base64!"}, {"state": "AAAA"}, {"nope": 1}):
        await a.broadcast(MessageKind.SYNC_PATTERNS, **body)
    await a.broadcast(MessageKind.REQUEST_PATTERNS, vv={"a": -1})

    async def all_refused():
        return sum(b.rejected.values()) >= 4

    await until(all_refused)
    assert b.intelligence.serialize_state() == before
    assert set(b.rejected) <= {"MalformedMessage", "OversizedMessage"}


async def test_a_memory_stored_by_one_agent_is_found_by_another(swarm_of):
    a, b = await swarm_of("a"), await swarm_of("b")
    stored = await a.store_memory("API authentication flow uses signed JWT tokens", metadata={"source": "docs"})
    await a.store_memory("the cafeteria serves soup on fridays")

    async def found():
        hits = await b.search_memory("how does API authentication work", k=1)
        return bool(hits) and hits[0].id == stored

    await until(found)
    hit = (await b.search_memory("how does API authentication work", k=1))[0]
    assert hit.owner == "a" and hit.metadata == {"source": "docs"}


async def test_a_late_joiner_receives_the_memories_of_agents_present(swarm_of):
    a = await swarm_of("a")
    await a.store_memory("deploy with blue-green switches")
    await a.sync_memories()
    late = await swarm_of("late")

    async def received():
        return len(late.memory) == 1

    await until(received)


async def test_hostile_memory_entries_are_counted_and_not_stored(swarm_of):
    a, b = await swarm_of("a"), await swarm_of("b")
    await a.store_memory("a real memory")
    entry = a.memory.export_entries()[0]
    forged = [
        {**entry, "content": "swapped content under the old id"},
        {**entry, "owner": "b"},
        {**entry, "embedding": "AAAA"},
    ]
    await a.broadcast(MessageKind.SYNC_MEMORIES, entries=forged)

    async def refused():
        return b.rejected["memory_entry"] >= 3

    await until(refused)

    async def genuine_arrived():  # the real entry comes with a's next periodic sync
        return entry["id"] in b.memory

    await until(genuine_arrived)
    assert len(b.memory) == 1
    assert b.memory.get(entry["id"]).content == "a real memory"


async def _drop_link_and_learn_while_away(a: SwarmAgent, b: SwarmAgent) -> None:
    """Cut a's relay link (held down until b's pattern has gone out to nobody), then let it reconnect."""
    link = a.links["relay"]
    gate = asyncio.Event()
    connect = link._connect_once

    async def held_back():
        await gate.wait()
        await connect()

    link._connect_once = held_back
    await link._ws.close()

    async def a_is_away():
        return not link.connected.is_set()

    await until(a_is_away)
    await b.learn("outage", "wait", 0.7)
    assert await b.sync_patterns()  # broadcast while a is not connected: the relay keeps nothing for it
    await asyncio.sleep(0.3)
    gate.set()

    async def a_is_back():
        return link.connected.is_set()

    await until(a_is_back)


async def test_an_agent_whose_link_dropped_asks_again_for_what_it_missed(swarm_of):
    a, b = await swarm_of("a"), await swarm_of("b")
    await _drop_link_and_learn_while_away(a, b)

    async def caught_up():
        return await a.get_best_action("outage", ["wait", "go"]) is not None

    await until(caught_up)


async def test_without_the_catch_up_the_missed_pattern_stays_missing(swarm_of, monkeypatch):
    """The control for the test above: the pattern reaches a only because it asked again."""
    a, b = await swarm_of("a"), await swarm_of("b")

    async def no_catch_up():
        return False

    monkeypatch.setattr(a, "catch_up_after_reconnect", no_catch_up)
    await _drop_link_and_learn_while_away(a, b)
    await asyncio.sleep(1.0)  # 20 sync intervals
    assert await a.get_best_action("outage", ["wait", "go"]) is None
