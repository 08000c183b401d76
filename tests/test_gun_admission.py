"""GunSwarm in an admitted swarm: a removed member's GUN values (written before or after its removal, all
still in the graph) are refused by every reader, the admin included, and counted; honest members' stay."""

from __future__ import annotations

import pytest

from ruvector_edge.p2p import P2PSwarm
from test_gun_swarm import Relay, gun_swarm, pattern_map

pytestmark = pytest.mark.timeout(60)


async def admitted_members(*names: str) -> list[P2PSwarm]:
    """An admin and members it certified, each holding the current epoch key and everyone's registration."""
    admin = await P2PSwarm.found_admitted("admin")
    authority = admin.admission.authority
    epoch, key = admin.admission.require_key()
    swarms = [admin]
    for name in names:
        draft = await P2PSwarm.found_admitted(name)  # only for a fresh identity
        cert = await authority.certify(name, draft.identity.ed25519_public, draft.identity.x25519_public, ["worker"])
        swarms.append(await P2PSwarm.resume_admitted(name, cert, epoch, key, ["worker"], identity=draft.identity))
    for s in swarms:
        for t in swarms:
            if s is not t:
                await s.accept_certificate(t.admission.certificate)
                await s.register_member(t.registration)
    return swarms


@pytest.mark.parametrize("encrypted", [False, True])
async def test_a_removed_members_gun_values_are_refused_by_every_reader(encrypted):
    admin_p2p, bob_p2p, mallory_p2p = await admitted_members("bob", "mallory")
    admin = bob = mallory = None
    async with Relay() as relay:
        try:
            admin, bob, mallory = [await gun_swarm(p, relay.url, encrypted) for p in (admin_p2p, bob_p2p, mallory_p2p)]
            await bob.publish_pattern("s", "honest", 1.0, 2)
            await mallory.publish_pattern("s", "poison", 9.0, 1000)
            await mallory.announce_peer(["wasm"])
            assert ("s", "poison") in pattern_map(await admin.get_patterns())  # a member, for now

            revocation, _ = await admin_p2p.admission.authority.revoke("mallory")  # what remove_member does
            await bob_p2p.accept_revocation(revocation)
            await mallory.publish_pattern("s", "poison-2", 9.0, 1000)  # after its removal, under the old key

            for reader in (admin, bob):
                reader.learning = type(reader.learning)(reader.agent_id)  # forget what was merged before
                reader._merged.clear()
                before = dict(reader.stats)
                patterns = pattern_map(await reader.get_patterns())
                assert ("s", "poison") not in patterns and ("s", "poison-2") not in patterns
                if reader is admin:
                    assert patterns[("s", "honest")] == (1.0, 2)
                assert "mallory" not in await reader.get_peers()
                refused = {k: reader.stats[k] - before[k] for k in ("not_member", "unknown_sender", "undecryptable")}
                assert sum(refused.values()) == 2, refused  # its learning state and its presence
            # bob honoured the revocation (mallory left its registry); the admin still has mallory's registration,
            # so without the certificate check it took mallory's values whenever they opened (unencrypted)
            assert "mallory" in admin_p2p.registry and "mallory" not in bob_p2p.registry
            if not encrypted:
                assert admin.stats["not_member"] == 2
        finally:
            for swarm in (admin, bob, mallory):
                if swarm is not None:
                    await swarm.close()
