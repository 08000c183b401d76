"""P2PSwarm as a whole: creation, counters across restarts, and byte-flipped frames (hypothesis)."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_members, make_runtime, snapshot
from ruvector_edge.errors import MalformedMessage, RejectedInput, ReplayDetected, UnknownSender
from ruvector_edge.p2p import Envelope, IdentityManager, P2PSwarm, ReceivedMessage, swarm_id_for
from ruvector_edge.platform.base import FakeClock


async def test_create_registers_self(runtime, swarm_key):
    alice = await P2PSwarm.create("alice", swarm_key, ["worker", "gpu"], runtime=runtime)
    assert alice.swarm_id == swarm_id_for(swarm_key)
    assert "alice" in alice.registry and len(alice.registry) == 1
    assert alice.registry.public_key("alice") == alice.identity.ed25519_public
    assert alice.registration.capabilities == ("worker", "gpu")
    await alice.registration.verify(runtime.crypto, alice.swarm_id)


async def test_create_without_key_founds_a_new_swarm(runtime):
    a = await P2PSwarm.create("a", runtime=runtime)
    b = await P2PSwarm.create("b", runtime=runtime)
    assert a.swarm_id != b.swarm_id and len(a.swarm_key.key) == 32


@pytest.mark.parametrize("agent_id", ["", "has space", "x" * 129, "a/b", 5])
async def test_create_rejects_bad_agent_id(runtime, swarm_key, agent_id):
    with pytest.raises(MalformedMessage):
        await P2PSwarm.create(agent_id, swarm_key, runtime=runtime)


@pytest.mark.parametrize("topic", ["", "a b", "x" * 129, "t\n"])
async def test_publish_rejects_bad_topic(trio, topic):
    alice, _, _ = trio
    with pytest.raises(MalformedMessage):
        await alice.publish(topic, b"x")


async def test_counters_strictly_increase_across_kinds(trio):
    alice, _, _ = trio
    frames = [
        (await alice.publish("t", b"1")).frame,
        (await alice.send_direct("bob", b"2")).frame,
        *[p.frame for p in await alice.publish_many("t", [b"3", b"4"])],
        (await alice.send_direct("carol", b"5")).frame,
    ]
    counters = [Envelope.from_json(f).header.counter for f in frames]
    assert counters == sorted(set(counters))
    assert counters[0] > alice.runtime.clock.now_ms() * 1024
    nonces = {Envelope.from_json(f).header.nonce for f in frames}
    ids = {Envelope.from_json(f).header.message_id for f in frames}
    assert len(nonces) == len(ids) == len(frames)


async def test_restarted_sender_is_ahead_of_what_peers_remember(clock, swarm_key):
    runtime = make_runtime(clock)
    m = await make_members(("alice", "bob"), swarm_key, runtime)
    alice, bob = m["alice"], m["bob"]
    for p in await alice.publish_many("t", [b"x"] * 50):
        await bob.receive(p.frame)
    clock.advance(1)
    restarted = await P2PSwarm.create("alice", swarm_key, runtime=runtime, identity=alice.identity)
    await bob.register_member(restarted.registration)
    assert (await bob.receive((await restarted.publish("t", b"after restart")).frame)).payload == b"after restart"
    hb = await restarted.create_heartbeat()
    await bob.receive_heartbeat(await alice.create_heartbeat())
    await bob.receive_heartbeat(hb)


async def test_unknown_sender_frame_accepted_after_registration(runtime, swarm_key):
    m = await make_members(("bob",), swarm_key, runtime)
    bob = m["bob"]
    mallory = await P2PSwarm.create("mallory", swarm_key, runtime=runtime)
    frame = (await mallory.publish("t", b"hello")).frame
    with pytest.raises(UnknownSender):
        await bob.receive(frame)
    await bob.register_member(mallory.registration.to_json())
    assert (await bob.receive(frame)).payload == b"hello"


async def test_concurrent_receives_of_same_frame_accept_once(trio):
    alice, bob, _ = trio
    frame = (await alice.publish("t", b"race")).frame
    results = await asyncio.gather(*(bob.receive(frame) for _ in range(5)), return_exceptions=True)
    assert sum(isinstance(r, ReceivedMessage) for r in results) == 1
    assert all(isinstance(r, ReplayDetected) for r in results if not isinstance(r, ReceivedMessage))


async def test_own_identity_reused_in_same_swarm_key_under_new_name_conflicts_nothing(runtime, swarm_key):
    """One identity may hold two agent ids; each binding stands on its own."""
    identity = await IdentityManager.generate(runtime.crypto)
    a = await P2PSwarm.create("a", swarm_key, runtime=runtime, identity=identity)
    b = await P2PSwarm.create("b", swarm_key, runtime=runtime, identity=identity)
    await a.register_member(b.registration)
    assert (await a.receive((await b.publish("t", b"x")).frame)).sender_id == "b"


# Byte flips on real frames (hypothesis) ------------------------------------------------------------

class _World:
    """One swarm pair shared across hypothesis examples (each example publishes fresh frames)."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.runtime = make_runtime(self.clock)
        members = asyncio.run(make_members(("alice", "bob"), os.urandom(32), self.runtime))
        self.alice, self.bob = members["alice"], members["bob"]


_WORLD: _World | None = None


def world() -> _World:
    global _WORLD
    if _WORLD is None:
        _WORLD = _World()
    return _WORLD


async def _flip_scenario(w: _World, direct: bool, flips: list[tuple[int, int]]) -> None:
    payload = os.urandom(48)
    published = await (w.alice.send_direct("bob", payload) if direct else w.alice.publish("news", payload))
    genuine = published.frame
    mutated = bytearray(genuine)
    for position, value in flips:
        index = position % len(mutated)
        mutated[index] = value if value != mutated[index] else value ^ 0x20
    before = snapshot(w.bob)
    try:
        result = await w.bob.receive(bytes(mutated))
    except RejectedInput:
        assert snapshot(w.bob) == before
        # nothing was burned: the genuine frame still goes through
        assert (await w.bob.receive(genuine)).payload == payload
        return
    # accepted: only possible if the flip did not change what the frame means
    assert result.payload == payload and result.sender_id == "alice" and result.direct is direct
    with pytest.raises(ReplayDetected):
        await w.bob.receive(genuine)


@settings(max_examples=200, deadline=None)
@given(
    direct=st.booleans(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=3),
)
def test_byte_flipped_frames_rejected_without_state_change(direct, flips):
    w = world()
    asyncio.run(_flip_scenario(w, direct, flips))


@settings(max_examples=100, deadline=None)
@given(cut=st.integers(0, 10_000), extra=st.binary(max_size=8))
def test_truncated_or_extended_frames_rejected(cut, extra):
    w = world()

    async def scenario():
        payload = os.urandom(16)
        genuine = (await w.alice.publish("news", payload)).frame
        broken = genuine[: cut % len(genuine)] + extra
        before = snapshot(w.bob)
        try:
            result = await w.bob.receive(broken)
        except RejectedInput:
            assert snapshot(w.bob) == before
            assert (await w.bob.receive(genuine)).payload == payload
            return
        # only a cut that the extra bytes restore (e.g. '}' plus trailing whitespace) may pass
        assert broken.rstrip(b" \t\r\n") == genuine and result.payload == payload

    asyncio.run(scenario())
