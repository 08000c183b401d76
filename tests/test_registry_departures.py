"""A member's view of departures, without I/O: P2PSwarm.member_departed and what it releases.

The relay tells each agent who left; the agent forgets that member but for its id -> key binding, held
for the replay window, and releases what it kept per member (session key, replay window) with the
binding. A frame the departed member signs after it left brings it back; none from before does.
Checked against a plain model over any sequence of joins under either of two keys per id, departures,
frames, replays and clock moves.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import START_MS, make_members, make_runtime, seal_custom
from ruvector_edge.errors import (BadSignature, KeyConflict, RegistrationRejected, ReplayDetected, SessionKeyError,
                                  StaleTimestamp, UnknownSender)
from ruvector_edge.p2p import IdentityManager, P2PSwarm
from ruvector_edge.platform.base import FakeClock

KEY = os.urandom(32)
IDS = ("a", "b")
MAX_MEMBERS, MAX_DEPARTED = 1, 1  # members besides "me"


async def _world(clock: FakeClock) -> tuple[IdentityManager, dict[tuple[str, int], P2PSwarm]]:
    """Our identity (the same in every run) and two identities per id, each its own sender on the shared
    clock that knows us (for direct frames)."""
    mine = await IdentityManager.generate(make_runtime(clock).crypto)
    me = await P2PSwarm.create("me", KEY, runtime=make_runtime(clock), identity=mine)
    senders = {}
    for agent_id in IDS:
        for k in (0, 1):
            sender = senders[agent_id, k] = await P2PSwarm.create(agent_id, KEY, runtime=make_runtime(clock))
            await sender.register_member(me.registration)
    return mine, senders


@pytest.fixture(scope="module")
def world():
    clock = FakeClock(START_MS)
    return (clock, *asyncio.run(_world(clock)))


class Model:
    """What the registry should hold: members (id -> key index) and held bindings (id -> key, departed at)."""

    def __init__(self, hold: int) -> None:
        self.hold = hold
        self.members: dict[str, int] = {}
        self.held: OrderedDict[str, tuple[int, int]] = OrderedDict()

    def release(self, now: int) -> None:
        for agent_id, (_, at) in list(self.held.items()):
            if at + self.hold <= now:
                del self.held[agent_id]

    def register(self, agent_id: str, k: int, now: int) -> type[Exception] | None:
        self.release(now)
        bound = self.members[agent_id] if agent_id in self.members else \
            self.held[agent_id][0] if agent_id in self.held else None
        if bound is not None and bound != k:
            return KeyConflict
        if agent_id in self.members:
            return None
        if len(self.members) >= MAX_MEMBERS:
            return RegistrationRejected
        if agent_id not in self.held and len(self.members) + len(self.held) >= MAX_MEMBERS + MAX_DEPARTED:
            return RegistrationRejected
        self.held.pop(agent_id, None)
        self.members[agent_id] = k
        return None

    def frame(self, agent_id: str, k: int, now: int) -> type[Exception] | None:
        """What a frame `agent_id`'s key `k` signs now meets (None: accepted)."""
        if agent_id in self.members:
            return None if self.members[agent_id] == k else BadSignature
        if agent_id not in self.held or now <= self.held[agent_id][1]:
            return UnknownSender  # unknown, or departed after it signed this
        if self.held[agent_id][0] != k:
            return BadSignature
        if len(self.members) >= MAX_MEMBERS:
            return RegistrationRejected
        self.members[agent_id] = self.held.pop(agent_id)[0]
        return None

    def depart(self, agent_id: str, now: int) -> None:
        if agent_id in self.members:
            self.held[agent_id] = (self.members.pop(agent_id), now)
            self.held.move_to_end(agent_id)
        self.release(now)


steps = st.lists(st.one_of(
    st.tuples(st.just("join"), st.sampled_from(IDS), st.sampled_from((0, 1))),
    st.tuples(st.just("left"), st.sampled_from(IDS + ("me",))),
    st.tuples(st.sampled_from(("frame", "direct")), st.sampled_from(IDS), st.booleans()),  # by the bound key?
    st.tuples(st.just("replay"), st.integers(0, 40)),
    st.tuples(st.just("advance"), st.sampled_from((1_000, 359_999, 360_000, 400_000))),
), min_size=4, max_size=30)


@settings(max_examples=500, deadline=None)
@given(steps=steps)
def test_departures_keep_the_registry_to_present_members_and_their_held_bindings(world, steps):
    asyncio.run(_run(*world, steps))


async def _run(clock: FakeClock, mine: IdentityManager, senders: dict, steps: list) -> None:
    me = await P2PSwarm.create("me", KEY, runtime=make_runtime(clock), identity=mine)
    registry = me.registry
    registry.max_members, registry.max_departed = MAX_MEMBERS + 1, MAX_DEPARTED
    model = Model(registry.hold_departed_ms)
    accepted: list[bytes] = []
    for step in steps:
        now = clock.now_ms()
        if step[0] == "join":
            _, agent_id, k = step
            expected = model.register(agent_id, k, now)
            try:
                await me.register_member(senders[agent_id, k].registration)
                outcome = None
            except RegistrationRejected as exc:
                outcome = type(exc)
            assert outcome is expected, step
        elif step[0] == "left":
            me.member_departed(step[1])
            model.depart(step[1], now)
        elif step[0] in ("frame", "direct"):
            kind, agent_id, genuine = step
            bound = model.members.get(agent_id, model.held.get(agent_id, (0,))[0])
            k = bound if genuine else 1 - bound
            sender = senders[agent_id, k]
            frame = (await (sender.publish("swarm", b"x") if kind == "frame" else sender.send_direct("me", b"x"))).frame
            result = (await me.receive_many([frame]))[0]
            expected = model.frame(agent_id, k, now)
            if expected is None:
                assert not isinstance(result, Exception), (step, result)
                accepted.append(frame)
            elif expected is BadSignature:  # another key's: refused for its signature, or its counter first
                assert isinstance(result, (BadSignature, ReplayDetected)), (step, result)
            else:
                assert isinstance(result, expected), (step, result)
        elif step[0] == "replay" and accepted:
            result = (await me.receive_many([accepted[step[1] % len(accepted)]]))[0]
            assert isinstance(result, (ReplayDetected, StaleTimestamp, UnknownSender)), (step, result)
        elif step[0] == "advance":
            clock.advance(step[1])
        model.release(clock.now_ms())
        assert {m.agent_id for m in registry.members()} == {"me", *model.members}, step
        assert registry.departed() == list(model.held), step
        assert registry.bindings() <= registry.max_members + registry.max_departed
        bound = {**{a: k for a, (k, _) in model.held.items()}, **model.members}
        for agent_id in IDS:
            windowed = me.replay.highest_counter(agent_id) is not None
            assert not windowed or agent_id in bound, f"{agent_id}'s replay window outlived its binding"
            if agent_id in bound:
                assert registry.public_key(agent_id) == senders[agent_id, bound[agent_id]].identity.ed25519_public
            else:
                with pytest.raises(UnknownSender):
                    registry.public_key(agent_id)
            assert (agent_id in me._session_keys) <= (agent_id in bound)


async def test_a_departed_member_is_back_on_a_frame_it_signed_after_it_left_not_on_one_from_before(runtime, clock):
    """It left the relay but talks on another path (or the relay dropped it for a moment): what it says after
    its departure brings it back. What it said before cannot, even delivered late (a captured frame of it)."""
    me, peer = (await make_members(("me", "peer"), KEY, runtime)).values()
    before = (await peer.publish("swarm", b"said before leaving")).frame
    clock.advance(1)
    me.member_departed("peer")
    with pytest.raises(UnknownSender):
        await me.receive(before)
    assert "peer" not in me.registry and me.registry.departed() == ["peer"]
    clock.advance(1)
    forged = await seal_custom(peer, signer=await IdentityManager.generate(runtime.crypto), topic="swarm")
    with pytest.raises(BadSignature):
        await me.receive(forged[0])
    assert "peer" not in me.registry
    assert (await me.receive((await peer.send_direct("me", b"still here")).frame)).payload == b"still here"
    assert "peer" in me.registry and me.registry.departed() == []
    assert (await me.receive(before)).payload == b"said before leaving"  # a member again: heard late, once
    with pytest.raises(ReplayDetected):
        await me.receive(before)


async def test_what_is_kept_for_a_departed_member_goes_with_its_binding_and_a_left_naming_ourselves_is_ignored(
        runtime, clock):
    me, peer = (await make_members(("me", "peer"), KEY, runtime)).values()
    await me.receive((await peer.send_direct("me", b"hi")).frame)
    me.member_departed("peer")
    me.member_departed("me")
    assert "me" in me.registry and "peer" not in me.registry and me.registry.departed() == ["peer"]
    assert "peer" in me._session_keys and me.replay.highest_counter("peer") is not None
    await me.send_direct("peer", b"sealed to it while held: the relay reports it undeliverable")
    clock.advance(me.registry.hold_departed_ms)
    assert me.registry.departed() == []
    assert "peer" not in me._session_keys and me.replay.highest_counter("peer") is None
    with pytest.raises(SessionKeyError):
        await me.send_direct("peer", b"gone")


async def test_a_member_revoked_after_it_left_keeps_nothing(runtime):
    """A revocation that arrives after the relay's `left`: the held binding goes too, so the revoked member is
    neither listed as a departed peer nor has a key that verifies, nor a replay window."""
    me, peer = (await make_members(("me", "peer"), KEY, runtime)).values()
    await me.receive((await peer.publish("swarm", b"x")).frame)
    me.member_departed("peer")
    assert me.registry.departed() == ["peer"] and me.replay.highest_counter("peer") is not None
    me.registry.remove("peer")
    assert me.registry.departed() == [] and me.replay.highest_counter("peer") is None
    with pytest.raises(UnknownSender):
        me.registry.public_key("peer")
