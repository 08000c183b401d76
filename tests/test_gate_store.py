"""A relay restarted on its data directory keeps what its gatekeeper held for admitted swarms (relay/gate_store.py):
a member offline during a rekey still finds its key there, a removed member is still refused, both with the admin
offline. The file is trusted no more than the wire: a tampered, moved or stale record is refused, the rest loads.
Real RelayServers on 127.0.0.1; the state files are real SQLite files in tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
import time

import aiohttp
import pytest

from relay_fixtures import wait_for, ws_url
from ruvector_edge import cli
from ruvector_edge.errors import GateRecordRejected, MalformedMessage
from ruvector_edge.platform.base import Clock
from ruvector_edge.platform.native import NativeCryptoProvider
from ruvector_edge.relay.gate_store import CERTIFICATE, EPOCH_KEY, REVOCATION, GateStore
from ruvector_edge.relay.gatekeeper import Gatekeeper
from ruvector_edge.relay.server import RelayServer
from ruvector_edge.transport import relay_wire as rw
from test_admission_relay import admin_on, joiner, leave_all


@contextlib.asynccontextmanager
async def relay_on(state):
    server = RelayServer("127.0.0.1", 0, None, gate_store=str(state))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def hello_answer(port: int, agent) -> str:
    """What a relay answers to `agent`'s hello with the certificate it holds: "welcome" or the close reason."""
    swarm = agent.swarm
    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url(port)) as ws:
        challenge = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["challenge"]
        proof = await swarm.identity.sign(rw.auth_bytes(swarm.swarm_id, agent.agent_id, challenge))
        await ws.send_str(rw.encode("hello", registration=swarm.registration.to_dict(), proof=proof.hex(),
                                    certificate=swarm.admission.certificate.to_dict()))
        for _ in range(20):
            message = await asyncio.wait_for(ws.receive(), 5)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                return f"closed {ws.close_code}: {message.extra}"
            if json.loads(message.data).get("op") == "welcome":
                return "welcome"
    raise AssertionError("the relay neither welcomed nor closed")


async def test_a_member_offline_during_a_rekey_gets_its_key_from_a_restarted_relay(tmp_path):
    state = tmp_path / "gate.sqlite"
    async with relay_on(state) as relay:
        admin = await admin_on(relay.port)
        bob = await joiner(relay.port, "bob", await admin.create_invite())
        dave = await joiner(relay.port, "dave", await admin.create_invite())
        try:
            await wait_for(lambda: "dave" in bob.swarm.registry, what="bob to know dave")
            await dave.links["relay"].stop(leave=False)  # offline
            assert await admin.rekey() == 2
            await wait_for(lambda: bob.swarm.admission.epochs.epoch == 1, what="bob to take epoch 1")
        finally:
            await leave_all(bob, admin)  # the admin stays offline from here on
    assert dave.swarm.admission.epochs.epoch == 0
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    async with relay_on(state) as relay:
        dave.links.clear()
        try:
            await dave.join_swarm(ws_url(relay.port))
            await wait_for(lambda: dave.swarm.admission.epochs.epoch == 1, what="dave to catch up")
        finally:
            await dave.leave()


async def test_a_revoked_member_is_refused_by_a_restarted_relay_without_its_admin(tmp_path):
    state = tmp_path / "gate.sqlite"
    async with relay_on(state) as relay:
        admin = await admin_on(relay.port)
        bob = await joiner(relay.port, "bob", await admin.create_invite())
        mallory = await joiner(relay.port, "mallory", await admin.create_invite())
        try:
            await wait_for(lambda: "mallory" in admin.swarm.registry, what="the admin to register mallory")
            await admin.remove_member("mallory")
            await wait_for(lambda: mallory.refusal is not None, what="mallory to be dropped")
        finally:
            await leave_all(mallory, bob, admin)
    assert mallory.swarm.admission.certificate.expires_at > time.time() * 1000  # it still holds a valid-looking one
    async with relay_on(state) as relay:
        assert (await hello_answer(relay.port, mallory)).startswith(f"closed {rw.CLOSE_REFUSED}: RevokedMember")
        assert relay.metrics.drops["admission_RevokedMember"] == 1
        assert await hello_answer(relay.port, bob) == "welcome"  # the relay still admits whom the admin kept


async def _swarm_with_history(state):
    """A swarm whose relay saved: certificates of admin, bob, carol, dave; mallory's revocation; epoch-2 keys for
    bob, carol and dave. Returns dave's epoch-1 delivery (a genuine record, now stale) and the admin."""
    async with relay_on(state) as relay:
        admin = await admin_on(relay.port)
        members = [await joiner(relay.port, name, await admin.create_invite()) for name in ("bob", "carol", "dave")]
        mallory = await joiner(relay.port, "mallory", await admin.create_invite())
        try:
            await wait_for(lambda: "mallory" in admin.swarm.registry, what="the admin to register mallory")
            await admin.remove_member("mallory")  # a revocation and epoch 1
            await wait_for(lambda: members[0].swarm.admission.epochs.epoch == 1, what="bob to take epoch 1")
            stale = relay.router.gatekeeper.swarms[admin.swarm.swarm_id].epoch_keys["dave"]
            await admin.rekey()
            await wait_for(lambda: members[0].swarm.admission.epochs.epoch == 2, what="bob to take epoch 2")
        finally:
            await leave_all(mallory, *members, admin)
    return stale, admin


async def test_tampered_moved_and_stale_records_are_refused_and_the_rest_loads(tmp_path):
    state = tmp_path / "gate.sqlite"
    stale, admin = await _swarm_with_history(state)
    swarm_id = admin.swarm.swarm_id
    store = GateStore(state, max_swarms=10)
    rows = {(r.kind, r.agent): r for r in store.rows()}
    assert set(rows) == {(CERTIFICATE, a) for a in ("admin", "bob", "carol", "dave")} | {
        (REVOCATION, "mallory")} | {(EPOCH_KEY, a) for a in ("bob", "carol", "dave")}
    bob_key = json.loads(rows[EPOCH_KEY, "bob"].body)
    bob_key["ct"] = ("0" if bob_key["ct"][0] != "0" else "1") + bob_key["ct"][1:]  # altered: the signature fails
    carol_cert = rows[CERTIFICATE, "carol"]
    store.write(swarm_id, 0, put=[
        (EPOCH_KEY, "bob", rows[EPOCH_KEY, "bob"].moot_after, json.dumps(bob_key)),
        (EPOCH_KEY, "dave", rows[EPOCH_KEY, "dave"].moot_after, stale),  # genuine, but older than epoch 2
        (CERTIFICATE, "eve", carol_cert.moot_after, carol_cert.body),  # carol's certificate filed as eve's
        (REVOCATION, "zed", carol_cert.moot_after, "{not json"),
    ])
    store.close()

    gatekeeper = Gatekeeper(NativeCryptoProvider(), Clock(), max_members=100)
    store = GateStore(state, max_swarms=10)
    try:
        refused = await gatekeeper.restore(store)
    finally:
        store.close()
    assert all(isinstance(error, GateRecordRejected) for error in refused)
    reasons = {" ".join(str(error).split()[:3]): str(error) for error in refused}
    assert sorted(reasons) == ["certificate of 'eve'", "epoch-key of 'bob'", "epoch-key of 'dave'",
                               "revocation of 'zed'"], reasons
    assert "BadSignature" in reasons["epoch-key of 'bob'"]
    assert "older than 2" in reasons["epoch-key of 'dave'"]
    assert "filed elsewhere" in reasons["certificate of 'eve'"]
    assert "MalformedMessage" in reasons["revocation of 'zed'"]
    gate = gatekeeper.swarms[swarm_id]
    assert sorted(c.agent_id for c in gate.book.certificates()) == ["admin", "bob", "carol", "dave"]
    assert list(gate.book.revocations) == ["mallory"]
    assert sorted(gate.epoch_keys) == ["carol"] and gate.epoch == 2  # the refused ones left nothing behind

    async with relay_on(state) as relay:  # the relay counts what it refused, and still serves what loaded
        assert relay.metrics.drops["gate_record_rejected"] == 4
        assert sorted(relay.router.gatekeeper.swarms[swarm_id].epoch_keys) == ["carol"]


async def test_memory_only_keeps_nothing_on_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relay = cli._open_relay("127.0.0.1", 0, None, None, None)  # what --memory-only opens
    await relay.start()
    try:
        admin = await admin_on(relay.port)
        bob = await joiner(relay.port, "bob", await admin.create_invite())
        mallory = await joiner(relay.port, "mallory", await admin.create_invite())
        try:
            await wait_for(lambda: "mallory" in admin.swarm.registry, what="the admin to register mallory")
            await admin.remove_member("mallory")
            await wait_for(lambda: bob.swarm.admission.epochs.epoch == 1, what="bob to take epoch 1")
        finally:
            await leave_all(mallory, bob, admin)
        assert relay.router.gatekeeper.store is None
        assert relay.router.gatekeeper.swarms[admin.swarm.swarm_id].book.revocations  # held, in memory only
    finally:
        await relay.stop()
    assert list(tmp_path.iterdir()) == []


async def test_a_stale_or_partly_malformed_rekey_changes_nothing_held_or_saved(tmp_path):
    """The rules a restored record meets are the rules a rekey meets on the wire: an older epoch than the
    swarm's newest is not held (nor forwarded), and one bad item leaves every other item unheld and unsaved."""
    state = tmp_path / "gate.sqlite"
    stale, admin = await _swarm_with_history(state)
    swarm_id = admin.swarm.swarm_id
    store = GateStore(state, max_swarms=10)
    bob_key = next(r.body for r in store.rows() if r.kind == EPOCH_KEY and r.agent == "bob")
    store.write(swarm_id, 0, delete=[(EPOCH_KEY, "bob")])  # as if bob had been offline when the admin sent it
    gatekeeper = Gatekeeper(NativeCryptoProvider(), Clock(), max_members=100)
    try:
        assert await gatekeeper.restore(store) == []
        gate = gatekeeper.swarms[swarm_id]
        held = dict(gate.epoch_keys)
        saved = sorted(store.rows())
        assert sorted(held) == ["carol", "dave"]
        assert gatekeeper.rekey(gate, {"deliveries": [json.loads(stale)]}) == {}
        with pytest.raises(MalformedMessage):
            gatekeeper.rekey(gate, {"deliveries": [json.loads(bob_key), {"type": "epoch-key"}]})
        assert gate.epoch_keys == held and sorted(store.rows()) == saved
        assert set(gatekeeper.rekey(gate, {"deliveries": [json.loads(bob_key)]})) == {"bob"}  # a current one is
        assert sorted(r.agent for r in store.rows() if r.kind == EPOCH_KEY) == ["bob", "carol", "dave"]
    finally:
        store.close()


async def test_the_file_holds_at_most_max_swarms_swarms_and_reads_no_more(tmp_path):
    state = tmp_path / "gate.sqlite"
    _, admin = await _swarm_with_history(state)
    swarm_id, other = admin.swarm.swarm_id, "adm-" + "0" * 32
    store = GateStore(state, max_swarms=1)
    try:
        rows = list(store.rows())
        store.check_room(swarm_id, now=0)  # a swarm already held always has room
        assert list(store.rows()) == rows
        later = max(r.moot_after for r in rows)
        store.check_room(other, now=later)  # every row of the held swarm is moot by then: forgotten, room made
        assert list(store.rows()) == []
        # Two swarms where one is allowed, as a file written by something else could hold: only one is read.
        store.write("adm-" + "f" * 32, 0, put=[(CERTIFICATE, "x", later, "{}")])
        store.write(swarm_id, 0, put=[(r.kind, r.agent, r.moot_after, r.body) for r in rows])
        gatekeeper = Gatekeeper(NativeCryptoProvider(), Clock(), max_members=100)
        assert await gatekeeper.restore(store) == []
        assert list(gatekeeper.swarms) == [swarm_id]  # the first swarm in the file's order only
    finally:
        store.close()


def test_a_full_file_drops_its_least_recently_written_swarm_rather_than_refuse_a_new_one(tmp_path):
    """Anyone can found swarms: refusing newcomers at the limit would let a stranger's self-made swarms shut
    every later admitted swarm out of the relay, across restarts."""
    store = GateStore(tmp_path / "gate.sqlite", max_swarms=2)
    try:
        far = 10**15
        store.write("adm-" + "1" * 32, 1, put=[(CERTIFICATE, "a", far, "{}")])
        store.write("adm-" + "2" * 32, 2, put=[(CERTIFICATE, "b", far, "{}")])
        store.write("adm-" + "1" * 32, 3, put=[(REVOCATION, "c", far, "{}")])  # swarm 1 written again: 2 is oldest
        store.check_room("adm-" + "3" * 32, now=4)
        store.write("adm-" + "3" * 32, 4, put=[(CERTIFICATE, "d", far, "{}")])
        assert sorted({r.swarm for r in store.rows()}) == ["adm-" + "1" * 32, "adm-" + "3" * 32]
        assert store.holds("adm-" + "3" * 32) and not store.holds("adm-" + "2" * 32)
    finally:
        store.close()
