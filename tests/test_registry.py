"""MemberRegistry: who may join, under which key, and how heartbeats drive liveness.

Every rejection checks the concrete error and that the registry (members, keys,
liveness, heartbeat state) is exactly as before.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os

import pytest

from conftest import START_MS, make_members
from ruvector_edge.errors import (
    BadSignature,
    FutureTimestamp,
    KeyConflict,
    MalformedMessage,
    RegistrationRejected,
    RejectedInput,
    ReplayDetected,
    StaleTimestamp,
    UnknownSender,
    WrongSwarm,
)
from ruvector_edge.p2p import Heartbeat, IdentityManager, MemberRegistry, MemberStatus, P2PSwarm, Registration, SecurityConfig
from ruvector_edge.p2p.keys import swarm_id_for
from ruvector_edge.p2p.registry import EARLIEST_JOINED_AT
from ruvector_edge.platform.base import FakeClock

SWARM = swarm_id_for(b"k" * 32)


def state(registry: MemberRegistry):
    return len(registry), {
        m.agent_id: (m.registration, m.last_seen, m.last_heartbeat, m.heartbeat_seq, m.load, m.queue_depth)
        for m in copy.deepcopy(registry.members())
    }


@pytest.fixture
def registry(crypto, clock) -> MemberRegistry:
    return MemberRegistry(SWARM, crypto, clock, suspect_after_ms=1_000, gone_after_ms=3_000,
                          past_window_ms=10_000, future_skew_ms=2_000)


@pytest.fixture
async def alice(crypto) -> IdentityManager:
    return await IdentityManager.generate(crypto)


async def signed_registration(identity: IdentityManager, agent_id="alice", caps=("worker",), *, swarm=SWARM,
                              joined_at=START_MS, **changes) -> Registration:
    """A registration signed by `identity` over exactly the given fields."""
    unsigned = Registration(swarm=swarm, agent_id=agent_id, ed25519_pubkey=identity.ed25519_public,
                            x25519_pubkey=identity.x25519_public, capabilities=tuple(caps), joined_at=joined_at)
    unsigned = dataclasses.replace(unsigned, **changes)
    return dataclasses.replace(unsigned, sig=await identity.sign(unsigned.signing_bytes()))


async def heartbeat(identity, agent_id="alice", *, seq=1, timestamp=START_MS, load=0.25, queue_depth=3, swarm=SWARM):
    return await identity.create_heartbeat(agent_id, swarm=swarm, seq=seq, timestamp=timestamp, load=load,
                                           queue_depth=queue_depth)


# Registration -------------------------------------------------------------------------------
async def test_valid_registration(registry, alice, clock):
    reg = await alice.create_registration("alice", ["worker", "gpu"], swarm=SWARM, clock=clock)
    member = await registry.register(reg)
    assert "alice" in registry and len(registry) == 1
    assert member.ed25519_pubkey == alice.ed25519_public and member.x25519_pubkey == alice.x25519_public
    assert member.registration.capabilities == ("worker", "gpu")
    assert member.last_seen == clock.now_ms() and member.heartbeat_seq == -1
    assert registry.public_key("alice") == alice.ed25519_public
    assert registry.status("alice") is MemberStatus.ACTIVE


async def test_registration_json_round_trip_is_accepted(registry, alice, clock):
    reg = await alice.create_registration("alice", ["worker"], swarm=SWARM, clock=clock)
    await registry.register(Registration.from_json(reg.to_json()))
    assert "alice" in registry


async def _rejected(registry, reg, error):
    before = state(registry)
    with pytest.raises(error):
        await registry.register(reg)
    assert state(registry) == before


async def test_bad_signature(registry, alice):
    reg = await signed_registration(alice)
    sig = bytearray(reg.sig)
    sig[0] ^= 1
    await _rejected(registry, dataclasses.replace(reg, sig=bytes(sig)), BadSignature)
    await _rejected(registry, dataclasses.replace(reg, sig=bytes(64)), BadSignature)
    assert "alice" not in registry


async def test_signed_by_a_different_key_than_it_names(registry, alice, crypto):
    other = await IdentityManager.generate(crypto)
    reg = await signed_registration(alice)
    forged = dataclasses.replace(reg, sig=await other.sign(reg.signing_bytes()))
    await _rejected(registry, forged, BadSignature)


@pytest.mark.parametrize(
    "change",
    [
        {"capabilities": ("worker", "admin")},
        {"capabilities": ("admin",)},
        {"agent_id": "alice2"},
        {"joined_at": START_MS - 1},
        {"x25519_pubkey": os.urandom(32)},
    ],
    ids=["caps-added", "caps-replaced", "agent_id", "joined_at", "x25519"],
)
async def test_tampered_after_signing(registry, alice, change):
    reg = await signed_registration(alice)
    await _rejected(registry, dataclasses.replace(reg, **change), BadSignature)
    assert len(registry) == 0


async def test_all_zero_x25519_key(registry, alice):
    await _rejected(registry, await signed_registration(alice, x25519_pubkey=bytes(32)), RegistrationRejected)


async def test_short_keys_are_rejected(registry, alice):
    await _rejected(registry, await signed_registration(alice, x25519_pubkey=os.urandom(31)), RegistrationRejected)
    await _rejected(registry, dataclasses.replace(await signed_registration(alice), ed25519_pubkey=bytes(31)),
                    RegistrationRejected)


async def test_empty_capabilities(registry, alice, clock):
    await _rejected(registry, await alice.create_registration("alice", [], swarm=SWARM, clock=clock),
                    RegistrationRejected)


async def test_joined_at_far_future(registry, alice, clock):
    await _rejected(registry, await signed_registration(alice, joined_at=clock.now_ms() + 2_001), RegistrationRejected)
    await _rejected(registry, await signed_registration(alice, joined_at=clock.now_ms() + 10**12),
                    RegistrationRejected)
    # within the future skew is fine
    await registry.register(await signed_registration(alice, joined_at=clock.now_ms() + 2_000))


async def test_joined_at_before_2020(registry, alice):
    await _rejected(registry, await signed_registration(alice, joined_at=EARLIEST_JOINED_AT - 1), RegistrationRejected)
    await _rejected(registry, await signed_registration(alice, joined_at=0), RegistrationRejected)
    await registry.register(await signed_registration(alice, joined_at=EARLIEST_JOINED_AT))


async def test_wrong_swarm(registry, alice):
    await _rejected(registry, await signed_registration(alice, swarm=swarm_id_for(b"o" * 32)), WrongSwarm)


async def test_reregistration_under_different_key_is_key_conflict(registry, alice, crypto, clock):
    original = await signed_registration(alice, caps=("worker",))
    await registry.register(original)
    mallory = await IdentityManager.generate(crypto)
    clock.advance(5)
    takeover = await signed_registration(mallory, caps=("coordinator",), joined_at=clock.now_ms())
    await _rejected(registry, takeover, KeyConflict)
    assert registry.public_key("alice") == alice.ed25519_public
    assert registry.get("alice").registration == original


async def test_removed_member_id_can_register_again(registry, alice, crypto):
    await registry.register(await signed_registration(alice))
    registry.remove("alice")
    assert "alice" not in registry
    other = await IdentityManager.generate(crypto)
    await registry.register(await signed_registration(other))
    assert registry.public_key("alice") == other.ed25519_public


async def test_reregistration_same_key_newer_joined_at_updates_capabilities(registry, alice, clock):
    await registry.register(await alice.create_registration("alice", ["worker"], swarm=SWARM, clock=clock))
    clock.advance(500)
    newer = await alice.create_registration("alice", ["worker", "gpu"], swarm=SWARM, clock=clock)
    member = await registry.register(newer)
    assert member.registration.capabilities == ("worker", "gpu")
    assert len(registry) == 1


async def test_reregistration_same_key_older_joined_at_does_not_revert(registry, alice, clock):
    old = await alice.create_registration("alice", ["worker"], swarm=SWARM, clock=clock)
    clock.advance(500)
    new = await alice.create_registration("alice", ["worker", "gpu"], swarm=SWARM, clock=clock)
    await registry.register(new)
    await registry.register(old)
    assert registry.get("alice").registration == new


async def test_replayed_registration_does_not_revive_a_silent_member(registry, alice, clock):
    """Anyone (e.g. a relay) can resend a captured registration; that is no evidence the member is alive."""
    reg = await signed_registration(alice)
    await registry.register(reg)
    clock.advance(5_000)
    assert registry.status("alice") is MemberStatus.GONE
    await registry.register(reg)
    assert registry.status("alice") is MemberStatus.GONE


async def test_registry_capacity(crypto, clock):
    registry = MemberRegistry(SWARM, crypto, clock, max_members=2)
    ids = [await IdentityManager.generate(crypto) for _ in range(3)]
    await registry.register(await signed_registration(ids[0], "a"))
    await registry.register(await signed_registration(ids[1], "b"))
    await _rejected(registry, await signed_registration(ids[2], "c"), RegistrationRejected)
    await registry.register(await signed_registration(ids[0], "a"))  # known members may still refresh


async def test_concurrent_registrations_for_same_id_bind_one_key(registry, crypto):
    one, two = await IdentityManager.generate(crypto), await IdentityManager.generate(crypto)
    r1, r2 = await signed_registration(one), await signed_registration(two)
    results = await asyncio.gather(registry.register(r1), registry.register(r2), return_exceptions=True)
    assert sum(isinstance(r, KeyConflict) for r in results) == 1
    assert registry.public_key("alice") in (one.ed25519_public, two.ed25519_public)


# Domain separation between registrations and heartbeats --------------------------------------
async def test_registration_signature_replayed_as_heartbeat(registry, alice, clock):
    reg = await signed_registration(alice)
    await registry.register(reg)
    fake = {"type": "heartbeat", "swarm": SWARM, "agent_id": "alice", "seq": 1, "timestamp": clock.now_ms(),
            "load": 0.0, "queue_depth": 0, "sig": reg.sig.hex()}
    before = state(registry)
    with pytest.raises(BadSignature):
        await registry.heartbeat(Heartbeat.from_dict(fake))
    assert state(registry) == before
    # the registration object itself offered as a heartbeat is not even a heartbeat
    with pytest.raises((MalformedMessage,)):
        Heartbeat.from_json(reg.to_json())
    relabelled = {**reg.to_dict(), "type": "heartbeat"}
    with pytest.raises(MalformedMessage):
        Heartbeat.from_dict(relabelled)
    assert state(registry) == before


async def test_registration_signature_replayed_as_heartbeat_through_swarm(runtime, swarm_key):
    m = await make_members(("alice", "bob"), swarm_key, runtime)
    alice, bob = m["alice"], m["bob"]
    reg = alice.registration
    fake = Heartbeat(swarm=alice.swarm_id, agent_id="alice", seq=10**15, timestamp=runtime.clock.now_ms(),
                     load=0.0, queue_depth=0, sig=reg.sig)
    before = state(bob.registry)
    for attempt in (fake, fake.to_json(), reg.to_json()):
        with pytest.raises((BadSignature, MalformedMessage)):
            await bob.receive_heartbeat(attempt)
    assert state(bob.registry) == before


async def test_heartbeat_signature_reused_in_registration(registry, alice, clock):
    await registry.register(await signed_registration(alice, caps=("worker",)))
    hb = await heartbeat(alice, timestamp=clock.now_ms())
    forged = dataclasses.replace(await signed_registration(alice, caps=("admin",), joined_at=START_MS + 1), sig=hb.sig)
    await _rejected(registry, forged, BadSignature)
    with pytest.raises(MalformedMessage):
        Registration.from_json(hb.to_json())
    assert registry.get("alice").registration.capabilities == ("worker",)


async def test_heartbeat_json_offered_as_registration_through_swarm(runtime, swarm_key):
    m = await make_members(("alice", "bob"), swarm_key, runtime)
    hb = await m["alice"].create_heartbeat()
    before = state(m["bob"].registry)
    with pytest.raises(MalformedMessage):
        await m["bob"].register_member(hb.to_json())
    assert state(m["bob"].registry) == before


# Heartbeats ---------------------------------------------------------------------------------------
@pytest.fixture
async def joined(registry, alice):
    await registry.register(await signed_registration(alice))
    return registry


async def _hb_rejected(registry, hb, error):
    before = state(registry)
    with pytest.raises(error):
        await registry.heartbeat(hb)
    assert state(registry) == before


async def test_valid_heartbeat_updates_load_and_queue(joined, alice, clock):
    clock.advance(100)
    member = await joined.heartbeat(await heartbeat(alice, seq=7, timestamp=clock.now_ms(), load=0.75, queue_depth=12))
    assert member.load == 0.75 and member.queue_depth == 12
    assert member.heartbeat_seq == 7 and member.last_heartbeat == clock.now_ms()
    assert member.last_seen == clock.now_ms()
    m2 = await joined.heartbeat(await heartbeat(alice, seq=8, timestamp=clock.now_ms(), load=0.1, queue_depth=0))
    assert (m2.load, m2.queue_depth, m2.heartbeat_seq) == (0.1, 0, 8)


async def test_heartbeat_unknown_sender(joined, crypto, clock):
    stranger = await IdentityManager.generate(crypto)
    await _hb_rejected(joined, await heartbeat(stranger, "stranger", timestamp=clock.now_ms()), UnknownSender)


async def test_heartbeat_wrong_swarm(joined, alice, clock):
    await _hb_rejected(joined, await heartbeat(alice, timestamp=clock.now_ms(), swarm=swarm_id_for(b"z" * 32)),
                       WrongSwarm)


async def test_heartbeat_stale(joined, alice, clock):
    await _hb_rejected(joined, await heartbeat(alice, timestamp=clock.now_ms() - 10_001), StaleTimestamp)
    await joined.heartbeat(await heartbeat(alice, timestamp=clock.now_ms() - 10_000))


async def test_heartbeat_future(joined, alice, clock):
    await _hb_rejected(joined, await heartbeat(alice, timestamp=clock.now_ms() + 2_001), FutureTimestamp)
    await joined.heartbeat(await heartbeat(alice, timestamp=clock.now_ms() + 2_000))


async def test_heartbeat_replayed_seq(joined, alice, clock):
    hb = await heartbeat(alice, seq=5, timestamp=clock.now_ms())
    await joined.heartbeat(hb)
    await _hb_rejected(joined, hb, ReplayDetected)
    await _hb_rejected(joined, await heartbeat(alice, seq=4, timestamp=clock.now_ms(), load=0.9), ReplayDetected)
    await _hb_rejected(joined, await heartbeat(alice, seq=5, timestamp=clock.now_ms(), load=0.9), ReplayDetected)
    assert joined.get("alice").heartbeat_seq == 5


async def test_heartbeat_signed_by_different_key(joined, crypto, clock):
    mallory = await IdentityManager.generate(crypto)
    await _hb_rejected(joined, await heartbeat(mallory, "alice", seq=99, timestamp=clock.now_ms(), load=1.0),
                       BadSignature)


async def test_forged_heartbeat_does_not_burn_seq(joined, alice, crypto, clock):
    mallory = await IdentityManager.generate(crypto)
    await _hb_rejected(joined, await heartbeat(mallory, "alice", seq=50, timestamp=clock.now_ms()), BadSignature)
    member = await joined.heartbeat(await heartbeat(alice, seq=50, timestamp=clock.now_ms()))
    assert member.heartbeat_seq == 50


async def test_tampered_heartbeat_fields(joined, alice, clock):
    hb = await heartbeat(alice, seq=3, timestamp=clock.now_ms(), load=0.2, queue_depth=1)
    for change in ({"load": 0.9}, {"queue_depth": 0}, {"seq": 4}, {"timestamp": clock.now_ms() - 1}):
        await _hb_rejected(joined, dataclasses.replace(hb, **change), BadSignature)
    await joined.heartbeat(hb)


# Liveness --------------------------------------------------------------------------------------------
async def test_liveness_active_suspect_gone(joined, alice, clock):
    assert joined.status("alice") is MemberStatus.ACTIVE
    clock.advance(999)
    assert joined.status("alice") is MemberStatus.ACTIVE
    clock.advance(1)
    assert joined.status("alice") is MemberStatus.SUSPECT
    assert joined.active_members() == []
    clock.advance(1_999)
    assert joined.status("alice") is MemberStatus.SUSPECT
    clock.advance(1)
    assert joined.status("alice") is MemberStatus.GONE
    await joined.heartbeat(await heartbeat(alice, timestamp=clock.now_ms()))
    assert joined.status("alice") is MemberStatus.ACTIVE
    assert [m.agent_id for m in joined.active_members()] == ["alice"]


async def test_rejected_heartbeat_does_not_revive(joined, alice, crypto, clock):
    clock.advance(5_000)
    mallory = await IdentityManager.generate(crypto)
    with pytest.raises(BadSignature):
        await joined.heartbeat(await heartbeat(mallory, "alice", timestamp=clock.now_ms()))
    with pytest.raises(StaleTimestamp):
        await joined.heartbeat(await heartbeat(alice, timestamp=clock.now_ms() - 20_000))
    assert joined.status("alice") is MemberStatus.GONE


async def test_liveness_timeouts_configurable_through_security_config(runtime, swarm_key, clock):
    cfg = SecurityConfig(suspect_after_ms=100, gone_after_ms=200)
    m = await make_members(("alice", "bob"), swarm_key, runtime, cfg)
    bob = m["bob"]
    clock.advance(100)
    assert bob.registry.status("alice") is MemberStatus.SUSPECT
    clock.advance(100)
    assert bob.registry.status("alice") is MemberStatus.GONE
    await bob.receive_heartbeat((await m["alice"].create_heartbeat()).to_json())
    assert bob.registry.status("alice") is MemberStatus.ACTIVE


def test_invalid_timeouts_refused(crypto):
    with pytest.raises(ValueError):
        MemberRegistry(SWARM, crypto, FakeClock(), suspect_after_ms=10, gone_after_ms=10)
    with pytest.raises(ValueError):
        MemberRegistry(SWARM, crypto, FakeClock(), suspect_after_ms=0, gone_after_ms=10)


def test_status_of_unknown_member(registry):
    with pytest.raises(UnknownSender):
        registry.status("nobody")


# Heartbeats from P2PSwarm -----------------------------------------------------------------------------
async def test_swarm_heartbeat_round_trip_and_replay(runtime, swarm_key):
    m = await make_members(("alice", "bob"), swarm_key, runtime)
    alice, bob = m["alice"], m["bob"]
    hb1 = await alice.create_heartbeat(queue_depth=4)
    hb2 = await alice.create_heartbeat(queue_depth=5)
    assert hb2.seq > hb1.seq
    member = await bob.receive_heartbeat(hb1.to_json())
    assert member.queue_depth == 4 and member.heartbeat_seq == hb1.seq
    await bob.receive_heartbeat(hb2)
    before = state(bob.registry)
    for old in (hb1, hb2):
        with pytest.raises(ReplayDetected):
            await bob.receive_heartbeat(old.to_json())
    assert state(bob.registry) == before


async def test_malformed_heartbeat_json(runtime, swarm_key):
    m = await make_members(("alice", "bob"), swarm_key, runtime)
    hb = (await m["alice"].create_heartbeat()).to_dict()
    before = state(m["bob"].registry)
    for bad in (
        {**hb, "load": 1.5}, {**hb, "load": -0.1}, {**hb, "load": "0.5"}, {**hb, "load": True},
        {**hb, "seq": True}, {**hb, "seq": 1.0}, {**hb, "seq": -1}, {**hb, "queue_depth": -1},
        {**hb, "queue_depth": 10**10}, {**hb, "sig": hb["sig"].upper()}, {**hb, "extra": 1},
        {k: v for k, v in hb.items() if k != "load"},
    ):
        import json

        with pytest.raises(MalformedMessage):
            await m["bob"].receive_heartbeat(json.dumps(bad))
    assert state(m["bob"].registry) == before


async def _measure_idle_load(swarm: P2PSwarm) -> float:
    await swarm.create_heartbeat()  # start a fresh measuring window
    await asyncio.sleep(0.05)
    return (await swarm.create_heartbeat()).load


async def test_reported_load_is_measured_not_constant(runtime, swarm_key):
    m = await make_members(("alice", "bob"), swarm_key, runtime)
    alice, bob = m["alice"], m["bob"]
    frames = [p.frame for p in await alice.publish_many("t", [os.urandom(256) for _ in range(300)])]
    idle = await _measure_idle_load(bob)
    await bob.create_heartbeat()  # new window: only the receive below should count as busy
    results = await bob.receive_many(frames)
    assert not any(isinstance(r, RejectedInput) for r in results)
    busy = (await bob.create_heartbeat()).load
    assert idle == 0.0
    assert 0.0 < busy <= 1.0
    assert busy != idle
    # and the peer sees exactly what was reported
    hb = await bob.create_heartbeat()
    assert (await alice.receive_heartbeat(hb.to_json())).load == hb.load
