"""edge-coordinator stopped with SIGTERM and started again keeps its admitted swarm (issue 15): members
reconnect without a new invite, an invite with uses left still admits, a revoked member stays revoked even
though the relay it runs restarted with it and knows nothing."""

from __future__ import annotations

import asyncio
import time

import pytest

from relay_fixtures import free_port, wait_for
from ruvector_edge.agent import SwarmAgent, SwarmConfig
from ruvector_edge.errors import MembershipRefused
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.p2p.admin_file import AdminStateFile, load_or_create_identity
from ruvector_edge.p2p.admin_store import open_admin_swarm
from ruvector_edge.p2p.swarm import P2PSwarm
from ruvector_edge.platform import default_runtime
from test_cli import _read_until, _start, _stop

CAPS = ("coordinator", "executor")


def _config(agent_id: str, **options) -> SwarmConfig:
    return SwarmConfig(agent_id=agent_id, coordinator_url=None, memory_persist=False, artifact_persist=False, **options)


async def _removed_member(admin_dir):
    """What the admin in `admin_dir` gave mallory before removing her: a certificate and an epoch key she keeps."""
    crypto = default_runtime().crypto
    store = AdminStateFile(admin_dir / "state.json")
    identity = await load_or_create_identity(crypto, admin_dir / "identity.json")
    admin = await open_admin_swarm(identity, CAPS, store.load, store.save, agent_id="coord-1")
    authority = admin.admission.authority
    mallory = await IdentityManager.generate(crypto)
    registration = await mallory.create_registration("mallory", ["worker"], swarm=admin.swarm_id)
    cert, delivery = await authority.admit(registration, await authority.create_invite(["worker"]))
    key = await delivery.open(crypto, mallory, admin.swarm_id, "mallory")
    await authority.revoke("mallory")
    return admin.swarm_id, await P2PSwarm.resume_admitted("mallory", cert, delivery.epoch, key, ["worker"],
                                                          identity=mallory)


async def _refused(swarm: P2PSwarm, url: str) -> str:
    """Mallory comes back with what she kept: refused as revoked, at the hello or as soon as the admin is in."""
    agent = await SwarmAgent.new(_config("mallory"), swarm)
    try:
        try:
            await agent.join_swarm(url, timeout=30)
        except MembershipRefused:
            pass
        await wait_for(lambda: agent.refusal is not None, timeout=20, what="mallory to be refused")
        return agent.refusal
    finally:
        await agent.leave()


async def test_a_restarted_coordinator_keeps_its_swarm_members_invites_and_revocations(tmp_path):
    data_dir = tmp_path / "data"
    swarm_id, mallory = await _removed_member(data_dir / "admin")
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    argv = ("edge-coordinator", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir),
            "--status-every", "0.3", "--invite-uses", "2")
    deadline = time.monotonic() + 90

    async def read(proc, pattern, seen):
        return await asyncio.to_thread(_read_until, proc, pattern, deadline, seen)

    agents: list[SwarmAgent] = []
    runs = []
    try:
        first = _start(tmp_path, *argv)
        runs.append(first)
        out: list[str] = []
        joined = await read(first[0], r"coordinator (\S+) joined swarm (adm-[0-9a-f]{32})", out)
        assert joined.groups() == ("coord-1", swarm_id)  # the saved swarm and admin id, not a new one
        link = (await read(first[0], r"invite: (ws://\S+#invite=[A-Za-z0-9_-]+)", out)).group(1)
        invite = link.split("#invite=")[1]
        bob = await SwarmAgent.new(_config("bob", invite=invite))
        agents.append(bob)
        await bob.join_swarm(url, timeout=30)
        assert "RevokedMember" in await _refused(mallory, url)
        await read(first[0], r"\[coord-1\] peers: .*bob\(\w+,active\)", out)

        _, first_err = _stop(*first)
        assert first[0].returncode == 0, first_err[-2000:]
        second = _start(tmp_path, *argv)
        runs.append(second)
        out = []
        assert (await read(second[0], r"coordinator (\S+) joined swarm (adm-[0-9a-f]{32})", out)).groups() == \
            ("coord-1", swarm_id)
        # bob comes back by itself, with the certificate and key it holds: no new invite
        await wait_for(lambda: bob.links["relay"].reconnects >= 1 and bob.links["relay"].connected.is_set(),
                       timeout=30, what="bob to reconnect")
        await read(second[0], r"\[coord-1\] peers: .*bob\(\w+,active\)", out)
        assert bob.refusal is None and bob.swarm.admission.epochs.epoch == 1
        carol = await SwarmAgent.new(_config("carol", invite=invite))  # the first run's link: one use left
        agents.append(carol)
        await carol.join_swarm(url, timeout=30)
        await wait_for(lambda: "bob" in carol.swarm.registry, timeout=20, what="carol to meet bob")
        assert "RevokedMember" in await _refused(mallory, url)
        dave = await SwarmAgent.new(_config("dave", invite=invite))
        agents.append(dave)
        with pytest.raises(MembershipRefused, match="InviteExhausted"):
            await dave.join_swarm(url, timeout=30)
    finally:
        for agent in agents:
            await agent.leave()
        results = [_stop(*run) for run in runs]
    assert runs[-1][0].returncode == 0, results[-1][1][-2000:]
