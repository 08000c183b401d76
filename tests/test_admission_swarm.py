"""The receive path of an admitted swarm (P2PSwarm, sans I/O): certificates checked on every registration,
heartbeat and frame; broadcasts sealed under the epoch their header names; open swarms unchanged."""

from __future__ import annotations

import json

import pytest

from conftest import make_runtime, snapshot
from ruvector_edge.errors import (
    BadSignature,
    MissingCertificate,
    NotAdmitted,
    RevokedMember,
    UnknownEpoch,
)
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.p2p.envelope import Envelope
from ruvector_edge.platform.base import FakeClock


async def admitted_swarm(clock: FakeClock, *names: str):
    """An admin and members admitted through invites, everybody knowing everybody's certificate."""
    runtime = make_runtime(clock)
    admin = await P2PSwarm.found_admitted("admin", ["coordinator"], runtime=runtime)
    authority = admin.admission.authority
    members = {"admin": admin}
    for name in names:
        invite = await authority.create_invite(["worker"])
        member = await P2PSwarm.join_admitted(name, invite.to_token(), ["worker"], runtime=runtime)
        cert, delivery = await authority.admit(member.registration, invite)
        await member.accept_admission(cert, delivery)
        members[name] = member
    for swarm in members.values():
        for other in members.values():
            if other is not swarm:
                await swarm.accept_certificate(other.admission.certificate)
                await swarm.register_member(other.registration)
    return members


async def test_admitted_members_exchange_broadcasts_heartbeats_and_direct_frames(clock):
    m = await admitted_swarm(clock, "bob", "carol")
    assert m["bob"].swarm_id == m["admin"].swarm_id and m["bob"].swarm_id.startswith("adm-")
    frame = (await m["bob"].publish("swarm", b"hello")).frame
    assert json.loads(frame)["header"]["epoch"] == 0
    assert (await m["carol"].receive(frame)).payload == b"hello"
    assert (await m["admin"].receive(frame)).payload == b"hello"
    await m["carol"].receive_heartbeat(await m["bob"].create_heartbeat())
    direct = await m["bob"].send_direct("carol", b"psst")
    assert (await m["carol"].receive(direct.frame)).payload == b"psst"


async def test_a_joiner_without_a_certificate_can_neither_publish_nor_be_registered(clock):
    m = await admitted_swarm(clock, "bob")
    invite = await m["admin"].admission.authority.create_invite(["worker"])
    sybil = await P2PSwarm.join_admitted("sybil", invite.to_token(), ["worker"], runtime=make_runtime(clock))
    with pytest.raises(NotAdmitted):
        await sybil.publish("swarm", b"x")
    before = snapshot(m["bob"])
    with pytest.raises(MissingCertificate):
        await m["bob"].register_member(sybil.registration)
    assert snapshot(m["bob"]) == before


async def test_an_uncertified_sender_holding_the_key_is_refused_on_every_path(clock):
    """A sybil that somehow holds the swarm key and sits in the registry (e.g. an old registration) without a
    certificate: its frames and heartbeats are refused with MissingCertificate before any crypto."""
    m = await admitted_swarm(clock, "bob")
    invite = await m["admin"].admission.authority.create_invite(["worker"])
    sybil = await P2PSwarm.join_admitted("sybil", invite.to_token(), ["worker"], runtime=make_runtime(clock))
    sybil.admission.epochs.install(0, m["bob"].admission.epochs.key, clock.now_ms())
    await m["bob"].registry.register(sybil.registration)  # bypassing register_member's check
    await sybil.registry.register(m["bob"].registration)
    before = snapshot(m["bob"])
    for frame in ((await sybil.publish("swarm", b"x")).frame, (await sybil.send_direct("bob", b"x")).frame):
        with pytest.raises(MissingCertificate):
            await m["bob"].receive(frame)
    with pytest.raises(MissingCertificate):
        await m["bob"].receive_heartbeat(await sybil.create_heartbeat())
    assert snapshot(m["bob"]) == before


async def test_a_revoked_member_is_refused_and_cannot_read_frames_sent_after_the_rekey(clock):
    m = await admitted_swarm(clock, "bob", "carol", "mallory")
    mallory = m["mallory"]
    old_key = mallory.admission.epochs.key
    revocation, deliveries = await m["admin"].admission.authority.revoke("mallory")
    for name in ("bob", "carol"):
        assert await m[name].accept_revocation(revocation)
        assert await m[name].accept_epoch(next(d for d in deliveries if d.agent_id == name))
    # Its frames (still sealed under the old key, within the grace window) are refused for who sent them.
    stale = (await mallory.publish("swarm", b"still here")).frame
    with pytest.raises(RevokedMember):
        await m["bob"].receive(stale)
    # A frame sent after the rekey, captured off the wire: mallory has no key for its epoch, and the old
    # key does not open it either.
    captured = (await m["carol"].publish("swarm", b"after")).frame
    assert json.loads(captured)["header"]["epoch"] == 1
    await mallory.accept_certificate(m["carol"].admission.certificate)
    await mallory.register_member(m["carol"].registration)
    with pytest.raises(UnknownEpoch):
        await mallory.receive(captured)
    envelope = Envelope.from_json(captured)
    opened = await mallory.runtime.crypto.aes_gcm_open(old_key, envelope.iv, envelope.ciphertext,
                                                       envelope.header.aad_of(envelope.header.canonical()))
    assert opened is None
    assert (await m["bob"].receive(captured)).payload == b"after"


async def test_a_frame_of_the_previous_epoch_is_opened_only_during_the_grace_window(clock):
    m = await admitted_swarm(clock, "bob", "carol")
    in_flight = (await m["bob"].publish("swarm", b"sent before the rekey")).frame
    late = (await m["bob"].publish("swarm", b"arrives too late")).frame
    deliveries = await m["admin"].admission.authority.rekey()
    await m["carol"].accept_epoch(next(d for d in deliveries if d.agent_id == "carol"))
    assert (await m["carol"].receive(in_flight)).payload == b"sent before the rekey"
    clock.advance(m["carol"].admission.epochs.grace_ms)
    with pytest.raises(UnknownEpoch):
        await m["carol"].receive(late)


async def test_open_swarm_frames_carry_no_epoch_and_are_unchanged(clock):
    runtime = make_runtime(clock)
    alice = await P2PSwarm.create("alice", runtime=runtime)
    bob = await P2PSwarm.create("bob", alice.swarm_key.key, runtime=runtime)
    await bob.register_member(alice.registration)
    frame = (await alice.publish("t", b"x")).frame
    assert "epoch" not in json.loads(frame)["header"]
    with_epoch = json.loads(frame)
    with_epoch["header"]["epoch"] = 0  # not what alice signed
    with pytest.raises(BadSignature):
        await bob.receive(json.dumps(with_epoch))
    assert (await bob.receive(frame)).payload == b"x"
