"""Pattern origins are authenticated (issue 14): a member is believed only about its own entries.

Entries carry no signature of their origin, so if a member could forward entries "of" any origin it
could invent 50 origins (or speak for honest members) and outweigh every per-origin bound. A peer
accepts a SYNC_PATTERNS only when every entry's origin is the envelope's sender (a registered member);
each member answers REQUEST_PATTERNS with its own entries, so a late joiner still hears from everyone.
"""

from __future__ import annotations

import asyncio

import pytest

from ruvector_edge.errors import ForeignOrigin
from ruvector_edge.intelligence import IntelligenceSync
from ruvector_edge.p2p.wire import b64
from ruvector_edge.platform.base import FakeClock
from ruvector_edge.protocol import MessageKind

STATE, GOOD, EVIL = "edit_ts", "typescript-developer", "attacker-choice"


async def until(predicate, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def invented_origins(count: int) -> bytes:
    """One state holding `count` made-up origins that all push EVIL (what a forwarding member could send)."""
    sink = IntelligenceSync("sink", clock=FakeClock())
    for i in range(count):
        fake = IntelligenceSync(f"sybil-{i:02d}", clock=FakeClock())
        fake.set_pattern(STATE, EVIL, 1e6, 1000)
        sink.merge_peer_state(fake.agent_id, fake.serialize_state())
    return sink.serialize_state()


def test_own_only_refuses_a_state_with_other_origins_and_changes_nothing():
    me = IntelligenceSync("me", clock=FakeClock())
    me.update_pattern(STATE, GOOD, 0.9)
    before = me.serialize_state()
    with pytest.raises(ForeignOrigin):
        me.merge_peer_state("sybil-00", invented_origins(2), own_only=True)
    peer = IntelligenceSync("peer", clock=FakeClock())
    peer.update_pattern(STATE, GOOD, 0.8)
    me.merge_peer_state("peer", me.serialize_state(), own_only=False)  # our own state back: holds "me"
    with pytest.raises(ForeignOrigin):
        me.merge_peer_state("peer", me.serialize_state(), own_only=True)
    assert me.serialize_state() == before
    assert me.merge_peer_state("peer", peer.own_state(), own_only=True).merged_patterns == 1


async def test_a_member_inventing_50_origins_weighs_as_one_member(swarm_of):
    honest = [await swarm_of(f"honest-{i}") for i in range(4)]
    mallory = await swarm_of("mallory")
    for i, agent in enumerate(honest):
        await agent.learn(STATE, GOOD, 0.8 + 0.01 * i)
    await mallory.learn(STATE, EVIL, 1.0)  # its own entry: one origin, like anyone's

    async def everyone_heard_everyone():
        return all(len(a.intelligence.version_vector()) == 5 for a in honest)

    await until(everyone_heard_everyone)
    await mallory.broadcast(MessageKind.SYNC_PATTERNS, state=b64(invented_origins(50)))

    async def refused_everywhere():
        return all(a.rejected["ForeignOrigin"] >= 1 for a in honest)

    await until(refused_everywhere)
    members = {a.agent_id for a in honest} | {mallory.agent_id}
    for agent in honest:
        assert set(agent.intelligence.version_vector()) == members
        assert (await agent.get_best_action(STATE, [GOOD, EVIL]))[0] == GOOD


async def test_a_late_joiner_hears_every_member_from_that_member(swarm_of):
    early = [await swarm_of(f"early-{i}") for i in range(3)]
    for i, agent in enumerate(early):
        await agent.learn(STATE, f"action-{i}", 0.5)
        await agent.sync_patterns()
    late = await swarm_of("late")

    async def caught_up():
        return set(late.intelligence.version_vector()) == {a.agent_id for a in early}

    await until(caught_up)
    assert sum(late.rejected.values()) == 0
