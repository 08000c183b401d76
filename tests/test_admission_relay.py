"""Admission through a real relay (127.0.0.1): invites traded for certificates with the online admin, and the
attacks an edge swarm meets — sybils without a certificate, forged/expired/revoked certificates, replayed and
expired invites, a removed member in every role, a removed member reading frames captured after the rekey.
Every attack is refused with a counted reason; honest members keep talking."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import aiohttp
import pytest

from relay_fixtures import running_relay, wait_for, ws_url
from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig
from ruvector_edge.errors import ExpiredInvite, MembershipRefused, UnknownEpoch
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.p2p.envelope import Envelope
from ruvector_edge.platform.native import NativeCryptoProvider
from ruvector_edge.protocol import MessageKind
from ruvector_edge.protocol import encode as encode_message
from ruvector_edge.transport import relay_wire as rw


@pytest.fixture
async def relay():
    async with running_relay() as server:
        yield server


async def admin_on(port: int) -> SwarmAgent:
    agent = await SwarmAgent.new(SwarmConfig(agent_id="admin", role=AgentRole.COORDINATOR, found_admitted=True,
                                             coordinator_url=None, memory_persist=False, artifact_persist=False))
    await agent.join_swarm(ws_url(port))
    return agent


async def joiner(port: int, agent_id: str, invite: str, timeout: float = 10) -> SwarmAgent:
    agent = await SwarmAgent.new(SwarmConfig(agent_id=agent_id, invite=invite, coordinator_url=None,
                                             memory_persist=False, artifact_persist=False))
    await agent.join_swarm(ws_url(port), timeout=timeout)
    return agent


async def refused_join(port: int, agent_id: str, invite: str, reason: str) -> SwarmAgent:
    """A join the relay refuses: MembershipRefused naming `reason` well before the (long) join timeout, and the
    link stops trying (the same hello would be refused again)."""
    agent = await SwarmAgent.new(SwarmConfig(agent_id=agent_id, invite=invite, coordinator_url=None,
                                             memory_persist=False, artifact_persist=False))
    with pytest.raises(MembershipRefused, match=reason):
        await agent.join_swarm(ws_url(port), timeout=60)
    assert agent.refusal is not None and reason in agent.refusal
    return agent


async def raw_hello(port: int, swarm_id: str, agent_id: str, identity: IdentityManager, **admission) -> int:
    """A hand-made client: answer the challenge with a hello carrying `admission`; the close code it gets."""
    registration = await identity.create_registration(agent_id, ["worker"], swarm=swarm_id)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(ws_url(port))
        challenge = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
        proof = await identity.sign(rw.auth_bytes(swarm_id, agent_id, challenge["challenge"]))
        await ws.send_str(rw.encode("hello", registration=registration.to_dict(), proof=proof.hex(), **admission))
        for _ in range(20):
            message = await asyncio.wait_for(ws.receive(), 5)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return ws.close_code
            assert json.loads(message.data).get("op") in ("ping",), message.data  # no welcome, no member list
        raise AssertionError("the relay neither closed nor answered")


async def leave_all(*agents):
    for agent in agents:
        await agent.leave()


def drops(relay) -> dict:
    return relay.metrics.drops


async def test_joiners_trade_one_use_invites_and_talk_under_the_swarm_key(relay):
    admin = await admin_on(relay.port)
    bob = await joiner(relay.port, "bob", await admin.create_invite())
    carol = await joiner(relay.port, "carol", await admin.create_invite())
    try:
        assert bob.swarm.swarm_id == admin.swarm.swarm_id and bob.swarm.admission.admitted
        await wait_for(lambda: {"bob", "admin"} <= set(carol.peers), what="carol to see bob and admin")
        seen = []
        carol.on(MessageKind.SIGNAL, lambda s, m: asyncio.sleep(0, seen.append((s, m.body))))
        await bob.broadcast(MessageKind.SIGNAL, text="hi")
        await wait_for(lambda: seen, what="carol to read bob's broadcast")
        assert seen == [("bob", {"text": "hi"})]
        assert [m["agent_id"] for m in admin.member_list()] == ["admin", "bob", "carol"]
    finally:
        await leave_all(bob, carol, admin)


async def test_sybils_forged_and_expired_certificates_are_refused_at_the_relay(relay):
    admin = await admin_on(relay.port)
    swarm_id = admin.swarm.swarm_id
    crypto = NativeCryptoProvider()
    try:
        sybil = await IdentityManager.generate(crypto)
        assert await raw_hello(relay.port, swarm_id, "sybil", sybil) == rw.CLOSE_REFUSED
        assert drops(relay)["admission_MissingCertificate"] == 1
        authority = admin.swarm.admission.authority
        real = await authority.certify("forger", sybil.ed25519_public, sybil.x25519_public, ["worker"])
        forged = dataclasses.replace(real, roles=("worker", "coordinator"))
        assert await raw_hello(relay.port, swarm_id, "forger", sybil, certificate=forged.to_dict()) == rw.CLOSE_REFUSED
        assert drops(relay)["admission_InvalidCertificate"] == 1
        stolen = await IdentityManager.generate(crypto)  # someone else's certificate, not its keys
        assert await raw_hello(relay.port, swarm_id, "forger", stolen, certificate=real.to_dict()) == rw.CLOSE_REFUSED
        assert drops(relay)["admission_InvalidCertificate"] == 2
        authority.cert_ttl_ms = 0
        expired = await authority.certify("late", sybil.ed25519_public, sybil.x25519_public, ["worker"])
        assert await raw_hello(relay.port, swarm_id, "late", sybil, certificate=expired.to_dict()) == rw.CLOSE_REFUSED
        assert drops(relay)["admission_ExpiredCertificate"] == 1
        assert set(admin.peers) == set()  # nobody got in
    finally:
        await admin.leave()


async def test_replayed_expired_and_foreign_invites_are_refused(relay):
    admin = await admin_on(relay.port)
    try:
        invite = await admin.create_invite()
        bob = await joiner(relay.port, "bob", invite)
        copycat = await refused_join(relay.port, "copycat", invite, "InviteExhausted")  # the link, replayed
        assert admin.swarm.admission_rejected["InviteExhausted"] >= 1
        assert drops(relay)["admission_refused_by_admin"] >= 1
        assert not copycat.swarm.admission.admitted
        expired = await admin.swarm.admission.authority.create_invite(["worker"], ttl_ms=0)
        with pytest.raises(ExpiredInvite):  # a joiner's own runtime says so at once
            await SwarmAgent.new(SwarmConfig(agent_id="late", invite=expired.to_token(), coordinator_url=None))
        late = await IdentityManager.generate(NativeCryptoProvider())
        assert await raw_hello(relay.port, expired.swarm, "late", late, invite=expired.to_dict()) == rw.CLOSE_REFUSED
        assert drops(relay)["admission_ExpiredInvite"] == 1
        other = await SwarmAgent.new(SwarmConfig(agent_id="other-admin", found_admitted=True, coordinator_url=None,
                                                 memory_persist=False, artifact_persist=False))
        token = await other.create_invite()  # an invite to a swarm with no admin online
        await refused_join(relay.port, "lost", token, "NoAdminOnline")
        assert drops(relay)["admission_NoAdminOnline"] >= 1
        assert sorted(m["agent_id"] for m in admin.member_list()) == ["admin", "bob"]
        await leave_all(copycat)
    finally:
        await leave_all(bob, admin)


async def test_a_removed_member_is_cut_off_in_every_role_and_cannot_read_what_follows(relay):
    admin = await admin_on(relay.port)
    bob = await joiner(relay.port, "bob", await admin.create_invite())
    carol = await joiner(relay.port, "carol", await admin.create_invite())
    mallory = await joiner(relay.port, "mallory", await admin.create_invite())
    captured: list[str] = []
    original = carol.handle_frame

    async def tap(frame, via="relay"):
        captured.append(frame if isinstance(frame, str) else frame.decode())
        await original(frame, via)

    carol.links["relay"].session.on_envelope = tap
    try:
        await wait_for(lambda: "mallory" in bob.swarm.registry and "mallory" in carol.swarm.registry,
                       what="everyone to know mallory")
        old_key = mallory.swarm.swarm_key.key
        await admin.remove_member("mallory")
        for member in (bob, carol):
            await wait_for(lambda: member.swarm.admission.epochs.epoch == 1 and "mallory" not in member.swarm.registry,
                           what=f"{member.agent_id} to honour the revocation and take epoch 1")
        await wait_for(lambda: mallory.refusal is not None, what="mallory to be told why it was dropped")
        assert "RevokedMember" in mallory.refusal  # and its link stops: a reconnect would be refused again
        assert drops(relay)["admission_revoked_connection"] == 1

        # Every role it could play is a frame in an envelope: all refused before any handler sees them.
        attempts = [
            encode_message(MessageKind.HEARTBEAT, heartbeat=(await mallory.swarm.create_heartbeat()).to_dict()),
            encode_message(MessageKind.SYNC_MEMORIES, entries=[]),
            encode_message(MessageKind.BROADCAST_TASK, task={"id": "t"}),
            encode_message(MessageKind.SYNC_PATTERNS, state=""),
            encode_message(MessageKind.JOIN, role="coordinator", capabilities=["coordinator"]),
        ]
        for payload in attempts:
            await bob.handle_frame((await mallory.swarm.publish("swarm", payload)).frame)
        await bob.handle_frame((await mallory.swarm.send_direct("bob", encode_message(MessageKind.PING, token="x"))).frame)
        assert bob.rejected["RevokedMember"] == len(attempts) + 1
        assert "mallory" not in [row["agent_id"] for row in bob.peer_table()]

        # Honest traffic after the rekey, captured off the relay, is unreadable to mallory.
        seen = []
        carol.on(MessageKind.SIGNAL, lambda s, m: asyncio.sleep(0, seen.append(m.body)))
        captured.clear()
        await bob.broadcast(MessageKind.SIGNAL, text="after removal")
        await wait_for(lambda: seen, what="carol to read bob's post-rekey broadcast")
        frame = next(f for f in captured if json.loads(f)["header"]["sender_id"] == "bob")
        assert json.loads(frame)["header"]["epoch"] == 1
        with pytest.raises(UnknownEpoch):
            await mallory.swarm.receive(frame)
        envelope = Envelope.from_json(frame)
        assert await mallory.swarm.runtime.crypto.aes_gcm_open(
            old_key, envelope.iv, envelope.ciphertext, envelope.header.aad_of(envelope.header.canonical())) is None
    finally:
        await leave_all(mallory, bob, carol, admin)


async def test_the_admin_forgets_a_member_it_removes(relay):
    admin = await admin_on(relay.port)
    mallory = await joiner(relay.port, "mallory", await admin.create_invite())
    try:
        await wait_for(lambda: "mallory" in admin.swarm.registry, what="the admin to register mallory")
        await admin.remove_member("mallory")
        assert "mallory" not in admin.swarm.registry  # as every other member forgets it on the revocation
        assert "mallory" not in [row["agent_id"] for row in admin.peer_table()]
    finally:
        await leave_all(mallory, admin)


async def test_a_removed_member_cannot_rejoin_with_its_identity_or_a_fresh_one(relay):
    admin = await admin_on(relay.port)
    shared = await admin.create_invite(max_uses=3)  # a link good for a few tabs
    mallory = await joiner(relay.port, "mallory", shared)
    try:
        await admin.remove_member("mallory")
        await mallory.leave()
        again = await SwarmAgent.new(SwarmConfig(agent_id="mallory", invite=await admin.create_invite(),
                                                 coordinator_url=None, memory_persist=False, artifact_persist=False))
        again.swarm.identity = mallory.swarm.identity  # same keys, new invite: the admin refuses the revoked key
        again.swarm.registration = mallory.swarm.registration
        with pytest.raises(MembershipRefused, match="RevokedMember"):
            await again.join_swarm(ws_url(relay.port), timeout=60)
        fresh = await refused_join(relay.port, "mallory-2", shared, "InviteExhausted")  # fresh identity, the link it came with
        assert admin.swarm.admission_rejected["InviteExhausted"] >= 1
        assert sorted(m["agent_id"] for m in admin.member_list()) == ["admin"]
        await leave_all(again, fresh)
    finally:
        await admin.leave()


async def test_a_member_offline_during_the_rekey_catches_up_when_it_returns(relay):
    admin = await admin_on(relay.port)
    bob = await joiner(relay.port, "bob", await admin.create_invite())
    dave = await joiner(relay.port, "dave", await admin.create_invite())
    try:
        await wait_for(lambda: "dave" in bob.swarm.registry, what="bob to know dave")
        await dave.links["relay"].stop(leave=False)  # offline
        assert await admin.rekey() == 2
        await wait_for(lambda: bob.swarm.admission.epochs.epoch == 1, what="bob to take epoch 1")
        assert dave.swarm.admission.epochs.epoch == 0
        await admin.leave()  # the admin need not be there when dave returns: the relay holds dave's key
        dave.links.clear()
        await dave.join_swarm(ws_url(relay.port))
        await wait_for(lambda: dave.swarm.admission.epochs.epoch == 1, what="dave to catch up")
        seen = []
        bob.on(MessageKind.SIGNAL, lambda s, m: asyncio.sleep(0, seen.append(s)))
        await wait_for(lambda: "dave" in bob.swarm.registry, what="bob to see dave back")
        await dave.broadcast(MessageKind.SIGNAL, text="back")
        await wait_for(lambda: "dave" in seen, what="bob to read dave's new-epoch frame")
    finally:
        await leave_all(bob, dave)
