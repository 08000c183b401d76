"""edge-agent --data-dir DIR (issue 15 follow-up): an agent stopped with SIGTERM and started again comes back as
the member it was, with the certificate and epoch key it kept, spending no invite; a revoked agent's restart is
refused with one line; a saved membership that was altered, or is another agent's, is refused, never trusted."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from test_cli import _read_until, _start, _stop
from relay_fixtures import free_port
from ruvector_edge.errors import MemberStateError
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.p2p.admin_file import AdminStateFile, load_or_create_identity
from ruvector_edge.p2p.admin_store import open_admin_swarm
from ruvector_edge.p2p.member_store import resume_membership, sign_membership
from ruvector_edge.p2p.swarm import P2PSwarm
from ruvector_edge.platform import default_runtime


def _coordinator(tmp_path, port, data_dir):
    """An admin that keeps its swarm in data_dir, printing an invite good for exactly one join."""
    return _start(tmp_path, "edge-coordinator", "--id", "coord-1", "--listen", f"127.0.0.1:{port}",
                  "--data-dir", str(data_dir), "--status-every", "0.3", "--invite-uses", "1")


def _agent(tmp_path, link, agent_dir, name="w-1"):
    return _start(tmp_path, "edge-agent", "--id", name, "--coordinator", link, "--data-dir", str(agent_dir),
                  "--status-every", "0.3", "--duration", "60")


def _first_admission(tmp_path, coordinator, agent_dir, deadline, seen):
    """w-1 trades the one-use invite, saves its membership, and is stopped with SIGTERM."""
    link = _read_until(coordinator, r"invite: (ws://\S+#invite=[A-Za-z0-9_-]+)", deadline, seen).group(1)
    agent = _agent(tmp_path, link, agent_dir)
    try:
        _read_until(agent[0], r"worker w-1 joined swarm adm-", deadline, [])
        _read_until(coordinator, r"\[coord-1\] peers: .*w-1\(worker,active\)", deadline, seen)
    finally:
        _, err = _stop(*agent)
    assert agent[0].returncode == 0, err[-2000:]
    return link


def _last_line(err: str) -> str:
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]  # (any lines before it are the INFO log)


def test_a_restarted_agent_rejoins_with_its_saved_membership_and_spends_no_invite(tmp_path):
    port, deadline, seen = free_port(), time.monotonic() + 90, []
    agent_dir = tmp_path / "agent"
    coordinator = _coordinator(tmp_path, port, tmp_path / "relay")
    runs = []
    try:
        link = _first_admission(tmp_path, coordinator[0], agent_dir, deadline, seen)
        for name in ("identity.json", "membership.json"):
            assert stat.S_IMODE(os.stat(agent_dir / name).st_mode) == 0o600
        runs.append(_agent(tmp_path, link, agent_dir))  # the same link: its only use is spent
        _read_until(runs[-1][0], r"worker w-1 rejoined swarm adm-", deadline, [])
        _read_until(coordinator[0], r"\[coord-1\] peers: .*w-1\(worker,active\)", deadline, seen)
        runs.append(_agent(tmp_path, link, tmp_path / "other", "w-2"))  # proof the invite had no use left
        assert runs[-1][0].wait(timeout=max(1.0, deadline - time.monotonic())) == 3
    finally:
        results = [_stop(*run) for run in runs]
        _stop(*coordinator)
    assert _last_line(results[1][1]).startswith("edge-agent: w-2 refused by the relay: InviteExhausted")
    assert runs[0][0].returncode == 0, results[0][1][-2000:]


async def _revoke(admin_dir, agent_id):
    """The admin removes `agent_id` while the coordinator is down (it saves the revocation in its state)."""
    store = AdminStateFile(admin_dir / "state.json")
    identity = await load_or_create_identity(default_runtime().crypto, admin_dir / "identity.json")
    admin = await open_admin_swarm(identity, ("coordinator", "executor"), store.load, store.save)
    await admin.admission.authority.revoke(agent_id)


async def test_a_revoked_agents_restart_is_refused_with_one_line(tmp_path):
    port, deadline, seen = free_port(), time.monotonic() + 90, []
    coordinator = _coordinator(tmp_path, port, tmp_path / "relay")
    try:
        link = _first_admission(tmp_path, coordinator[0], tmp_path / "agent", deadline, seen)
    finally:
        _stop(*coordinator)
    await _revoke(tmp_path / "relay" / "admin", "w-1")
    coordinator = _coordinator(tmp_path, port, tmp_path / "relay")
    try:
        _read_until(coordinator[0], r"invite: ", deadline, seen)
        agent = _agent(tmp_path, link, tmp_path / "agent")
        assert agent[0].wait(timeout=max(1.0, deadline - time.monotonic())) == 3
        _, err = _stop(*agent)
    finally:
        _stop(*coordinator)
    assert "RevokedMember" in _last_line(err), err


def _tamper(path):
    doc = json.loads(path.read_text())
    doc["epoch"] += 1
    path.write_text(json.dumps(doc))


def test_an_altered_saved_membership_is_refused_with_one_line(tmp_path):
    port, deadline, seen = free_port(), time.monotonic() + 90, []
    agent_dir = tmp_path / "agent"
    coordinator = _coordinator(tmp_path, port, tmp_path / "relay")
    try:
        link = _first_admission(tmp_path, coordinator[0], agent_dir, deadline, seen)
        _tamper(agent_dir / "membership.json")
        agent = _agent(tmp_path, link, agent_dir)
        assert agent[0].wait(timeout=max(1.0, deadline - time.monotonic())) == 2
        _, err = _stop(*agent)
    finally:
        _stop(*coordinator)
    assert _last_line(err).startswith("edge-agent: MemberStateError: the saved membership is not signed by this "
                                      "agent's key"), err


async def test_another_agents_saved_membership_is_refused():
    crypto = default_runtime().crypto
    admin = await P2PSwarm.found_admitted("coord-1")
    authority = admin.admission.authority
    mallory, alice = await IdentityManager.generate(crypto), await IdentityManager.generate(crypto)
    registration = await alice.create_registration("alice", ["worker"], swarm=admin.swarm_id)
    cert, delivery = await authority.admit(registration, await authority.create_invite(["worker"]))
    key = await delivery.open(crypto, alice, admin.swarm_id, "alice")
    text = await sign_membership(await P2PSwarm.resume_admitted("alice", cert, delivery.epoch, key, ["worker"],
                                                                identity=alice))
    assert (await resume_membership(alice, text, ["worker"])).agent_id == "alice"
    with pytest.raises(MemberStateError, match="not signed by this agent's key"):
        await resume_membership(mallory, text, ["worker"])
