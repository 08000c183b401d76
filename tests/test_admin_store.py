"""The admin's state survives a restart (p2p/admin_store.py, admin_file.py): same swarm, key, members,
revocations and invite uses; a state that was altered, is another admin's or is readable by others is refused."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ruvector_edge.errors import AdminStateError, InviteExhausted, RevokedMember
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.p2p.admin_file import AdminStateFile, load_or_create_identity
from ruvector_edge.p2p.admin_store import open_admin_swarm
from ruvector_edge.platform import default_runtime

CAPS = ("coordinator", "executor")


class Kept:
    """An in-memory store: what the admin last saved."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.saves = 0

    async def load(self) -> str | None:
        return self.text

    async def save(self, text: str) -> None:
        self.text, self.saves = text, self.saves + 1


async def member(swarm_id: str, agent_id: str):
    identity = await IdentityManager.generate(default_runtime().crypto)
    return identity, await identity.create_registration(agent_id, ["worker"], swarm=swarm_id)


async def test_a_restarted_admin_keeps_its_swarm_key_members_revocations_and_invite_uses():
    crypto = default_runtime().crypto
    admin = await IdentityManager.generate(crypto)
    kept = Kept()
    swarm = await open_admin_swarm(admin, CAPS, kept.load, kept.save, new_agent_id="coord")
    authority = swarm.admission.authority
    invite = await authority.create_invite(["worker"], max_uses=3)
    _, bob = await member(swarm.swarm_id, "bob")
    mallory_id, mallory = await member(swarm.swarm_id, "mallory")
    await authority.admit(bob, invite)
    await authority.admit(mallory, await authority.create_invite(["worker"]))
    await authority.revoke("mallory")
    epoch, key = swarm.admission.require_key()
    assert kept.text is not None and key.hex() in kept.text  # saved with every change, before it went out

    again = await open_admin_swarm(admin, CAPS, kept.load, kept.save)
    restored = again.admission.authority
    assert (again.swarm_id, again.agent_id) == (swarm.swarm_id, "coord")
    assert again.admission.require_key() == (epoch, key) == (1, key)
    assert sorted(restored.members) == ["bob", "coord"] and again.admission.book.get("bob") is not None
    assert again.admission.book.is_revoked("mallory", mallory_id.ed25519_public)
    assert restored.ledger.uses_left(invite.invite_id) == 2
    with pytest.raises(RevokedMember):
        await restored.admit(mallory, invite)  # not even with a good invite, which keeps its uses
    assert restored.ledger.uses_left(invite.invite_id) == 2
    _, carol = await member(swarm.swarm_id, "carol")
    await restored.admit(carol, invite)
    _, dave = await member(swarm.swarm_id, "dave")
    await restored.admit(dave, invite)
    _, erin = await member(swarm.swarm_id, "erin")
    with pytest.raises(InviteExhausted):
        await restored.admit(erin, invite)
    assert restored.ledger.uses_left(invite.invite_id) == 0 and '"uses_left":0' in kept.text


async def test_an_altered_or_foreign_state_is_refused_and_nothing_is_founded_over_it():
    crypto = default_runtime().crypto
    admin = await IdentityManager.generate(crypto)
    kept = Kept()
    swarm = await open_admin_swarm(admin, CAPS, kept.load, kept.save, new_agent_id="coord")
    invite = await swarm.admission.authority.create_invite(["worker"], max_uses=1)
    good = kept.text
    saves = kept.saves
    doc = json.loads(good)
    doc["state"]["invites"][0]["uses_left"] = 1000  # a thousand free joins
    for bad, reason in [(json.dumps(doc), "not signed by this admin"), (good[:-9], "malformed"),
                        (good.replace('"version":1', '"version":2'), "version"), ("[]", "malformed")]:
        kept.text = bad
        with pytest.raises(AdminStateError, match=reason):
            await open_admin_swarm(admin, CAPS, kept.load, kept.save)
    kept.text = good
    with pytest.raises(AdminStateError, match="another swarm"):
        await open_admin_swarm(await IdentityManager.generate(crypto), CAPS, kept.load, kept.save)
    assert kept.saves == saves and kept.text == good  # refused: nothing written over it
    assert invite.invite_id in good


async def test_the_state_file_is_private_and_an_exposed_one_is_refused(tmp_path):
    crypto = default_runtime().crypto
    identity = await load_or_create_identity(crypto, tmp_path / "admin" / "identity.json")
    assert (await load_or_create_identity(crypto, tmp_path / "admin" / "identity.json")).ed25519_public == \
        identity.ed25519_public
    store = AdminStateFile(tmp_path / "admin" / "state.json")
    assert await store.load() is None
    swarm = await open_admin_swarm(identity, CAPS, store.load, store.save, new_agent_id="coord")
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    again = await open_admin_swarm(identity, CAPS, store.load, store.save)
    assert again.admission.require_key() == swarm.admission.require_key()
    os.chmod(store.path, 0o644)
    with pytest.raises(AdminStateError, match="group/others"):
        await open_admin_swarm(identity, CAPS, store.load, store.save)
