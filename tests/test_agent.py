"""SwarmAgent over a real relay: every message kind end to end, liveness, refused senders, separate processes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from relay_fixtures import PYTHON, ROOT, child_env, running_relay, wait_for, ws_url, TEST_SWARM_KEY, agent_config as config, joined_agents as joined
from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig, Transport
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.protocol import MessageKind

pytestmark = pytest.mark.timeout(45)

KEY = TEST_SWARM_KEY
# Kinds the agent does not consume itself (patterns and memories have their own handlers).
APPLICATION_KINDS = [
    MessageKind.BROADCAST_TASK,
    MessageKind.TASK_RESULT,
    MessageKind.SIGNAL,
]


async def leave_all(*agents: SwarmAgent) -> None:
    for agent in agents:
        await agent.leave()


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, MessageKind, dict]] = []

    def handler(self, kind: MessageKind):
        async def record(sender, message):
            assert message.kind is kind
            self.seen.append((sender, kind, message.body))
        return record

    def of(self, kind: MessageKind) -> list[tuple[str, dict]]:
        return [(sender, body) for sender, k, body in self.seen if k is kind]


@pytest.fixture
async def relay():
    async with running_relay() as server:
        yield server


# --- configuration ------------------------------------------------------------------------


def test_config_builders_and_environment(monkeypatch):
    monkeypatch.setenv("SWARM_COORDINATOR", "ws://example.invalid:9/ws")
    monkeypatch.setenv("SWARM_SYNC_INTERVAL", "250")
    cfg = SwarmConfig().with_agent_id("a-1").with_role(AgentRole.SCOUT).with_transport(Transport.WEBSOCKET)
    assert cfg.coordinator_url == "ws://example.invalid:9/ws" and cfg.sync_interval_ms == 250
    assert cfg.agent_id == "a-1" and cfg.role is AgentRole.SCOUT
    assert cfg.effective_capabilities() == ("scout",)
    assert cfg.with_capabilities("gpu", "vision").effective_capabilities() == ("gpu", "vision")
    assert {r.value for r in AgentRole} == {"coordinator", "worker", "scout", "specialist"}
    monkeypatch.setenv("SWARM_SYNC_INTERVAL", "soon")
    with pytest.raises(ValueError, match="SWARM_SYNC_INTERVAL"):
        SwarmConfig()
    monkeypatch.setenv("SWARM_SYNC_INTERVAL", "0")
    with pytest.raises(ValueError):
        SwarmConfig()


async def test_join_without_a_url_needs_swarm_coordinator(monkeypatch, relay):
    agent = await SwarmAgent.new(config("lonely"))
    with pytest.raises(ValueError, match="SWARM_COORDINATOR"):
        await agent.join_swarm()
    with pytest.raises(RuntimeError):
        await agent.broadcast(MessageKind.SIGNAL, x=1)
    monkeypatch.setenv("SWARM_COORDINATOR", f"ws://127.0.0.1:{relay.port}")  # /ws is appended
    agent = await SwarmAgent.new(SwarmConfig(agent_id="env-agent", swarm_key=KEY))
    await agent.join_swarm(timeout=5)
    try:
        assert relay.router.peer_count() == 1
    finally:
        await agent.leave()


# --- every message kind -------------------------------------------------------------------


async def test_join_roles_and_peer_table(relay):
    coordinator, worker, scout = await joined(
        ws_url(relay.port), config("coord", AgentRole.COORDINATOR), config("w1"), config("s1", AgentRole.SCOUT))
    try:
        table = {row["agent_id"]: row for row in coordinator.peer_table()}
        assert {k: v["role"] for k, v in table.items()} == {"s1": "scout", "w1": "worker"}
        assert all(row["status"] == "active" and row["transport"] == "relay" for row in table.values())
        assert worker.peers["coord"].role == "coordinator" and scout.peers["w1"].role == "worker"
        assert worker.peers["s1"].capabilities == ("scout",)
    finally:
        await leave_all(coordinator, worker, scout)


async def test_application_kinds_round_trip_to_on_handlers_broadcast_and_direct(relay):
    alice, bob, carol = await joined(ws_url(relay.port), config("alice"), config("bob"), config("carol"))
    recorders = {}
    try:
        for agent in (bob, carol):
            recorder = recorders[agent.agent_id] = Recorder()
            for kind in APPLICATION_KINDS:
                agent.on(kind, recorder.handler(kind))
        for index, kind in enumerate(APPLICATION_KINDS):
            await alice.broadcast(kind, n=index, kind_name=kind.value, nested={"list": [1, 2.5, "x"]})
        for index, kind in enumerate(APPLICATION_KINDS):
            await alice.send_to("bob", kind, n=index, direct=True)
        await wait_for(lambda: len(recorders["bob"].seen) == 2 * len(APPLICATION_KINDS)
                       and len(recorders["carol"].seen) == len(APPLICATION_KINDS),
                       what="all application messages")
        for index, kind in enumerate(APPLICATION_KINDS):
            assert recorders["carol"].of(kind) == [
                ("alice", {"n": index, "kind_name": kind.value, "nested": {"list": [1, 2.5, "x"]}})]
            assert [body for _, body in recorders["bob"].of(kind)] == [
                {"n": index, "kind_name": kind.value, "nested": {"list": [1, 2.5, "x"]}},
                {"n": index, "direct": True}]
        assert not bob.rejected and not carol.rejected
        assert not bob.inbox  # everything had a subscriber
    finally:
        await leave_all(alice, bob, carol)


async def test_unsubscribed_application_kinds_wait_in_the_bounded_inbox(relay):
    alice, bob = await joined(ws_url(relay.port), config("alice"), config("bob", inbox_limit=3))
    try:
        for i in range(5):
            await alice.broadcast(MessageKind.TASK_RESULT, i=i)
        await wait_for(lambda: len(bob.inbox) == 3 and bob.inbox[-1][1].body == {"i": 4}, what="inbox")
        assert [m.body["i"] for _, m in bob.inbox] == [2, 3, 4]
        assert all(sender == "alice" and m.kind is MessageKind.TASK_RESULT for sender, m in bob.inbox)
    finally:
        await leave_all(alice, bob)


async def test_protocol_kinds_reach_own_handlers_and_on_subscribers(relay):
    alice, bob = await joined(ws_url(relay.port), config("alice"), config("bob"))
    seen_bob, seen_alice = Recorder(), Recorder()
    for kind in (MessageKind.JOIN, MessageKind.LEAVE, MessageKind.PING, MessageKind.HEARTBEAT):
        bob.on(kind, seen_bob.handler(kind))
    alice.on(MessageKind.PONG, seen_alice.handler(MessageKind.PONG))
    try:
        rtt = await alice.ping("bob", timeout=5)
        assert 0 < rtt < 2
        assert seen_bob.of(MessageKind.PING)[0][0] == "alice"
        token = seen_bob.of(MessageKind.PING)[0][1]["token"]
        await wait_for(lambda: seen_alice.of(MessageKind.PONG) == [("bob", {"token": token})], what="pong")

        await alice.broadcast(MessageKind.JOIN, role="specialist", capabilities=["specialist"])
        await wait_for(lambda: bob.peers["alice"].role == "specialist", what="role update")
        assert seen_bob.of(MessageKind.JOIN)[-1] == ("alice", {"role": "specialist", "capabilities": ["specialist"]})

        heartbeat = await alice.swarm.create_heartbeat(queue_depth=7)
        await alice.broadcast(MessageKind.HEARTBEAT, heartbeat=heartbeat.to_dict())
        await wait_for(lambda: seen_bob.of(MessageKind.HEARTBEAT), what="heartbeat")
        member = bob.swarm.registry.get("alice")
        assert member.last_heartbeat == heartbeat.timestamp and member.queue_depth == 7
        assert member.load == heartbeat.load

        await alice.leave()
        await wait_for(lambda: seen_bob.of(MessageKind.LEAVE), what="leave")
        assert seen_bob.of(MessageKind.LEAVE) == [("alice", {"reason": "shutdown"})]
        assert bob.peers["alice"].left
        assert {row["agent_id"]: row["status"] for row in bob.peer_table()} == {"alice": "gone"}
    finally:
        await leave_all(alice, bob)


async def test_ping_to_an_absent_peer_times_out_and_is_reported_undeliverable(relay):
    alice, bob = await joined(ws_url(relay.port), config("alice"), config("bob"))
    try:
        await bob.leave()
        await wait_for(lambda: alice.peers["bob"].left, what="bob gone")
        with pytest.raises(asyncio.TimeoutError):
            await alice.ping("bob", timeout=0.3)
        await wait_for(lambda: any(to == "bob" for _, to in alice.links["relay"].undeliverable), what="undeliverable")
    finally:
        await leave_all(alice)


async def test_heartbeat_loop_updates_load_and_last_heartbeat(relay):
    fast = dict(heartbeat_interval_ms=100)
    alice, bob = await joined(ws_url(relay.port), config("alice", **fast), config("bob", **fast))
    try:
        await wait_for(lambda: all(row["last_heartbeat"] is not None for row in bob.peer_table()),
                       what="a heartbeat from alice")
        first = bob.swarm.registry.get("alice").heartbeat_seq
        await wait_for(lambda: bob.swarm.registry.get("alice").heartbeat_seq > first, what="a second heartbeat")
        row = bob.peer_table()[0]
        assert row["agent_id"] == "alice" and 0.0 <= row["load"] <= 1.0
        assert abs(row["last_heartbeat"] - time.time() * 1000) < 5000
        assert not bob.rejected
    finally:
        await leave_all(alice, bob)


async def test_forged_heartbeat_for_another_agent_is_refused(relay):
    alice, bob, carol = await joined(ws_url(relay.port), config("alice"), config("bob"), config("carol"))
    try:
        carols = await carol.swarm.create_heartbeat()
        await alice.broadcast(MessageKind.HEARTBEAT, heartbeat=carols.to_dict())  # alice relays carol's heartbeat
        await alice.broadcast(MessageKind.JOIN, role="emperor")  # not a role
        await alice.broadcast(MessageKind.PING, token=123)
        await wait_for(lambda: sum(bob.rejected.values()) == 3, what="three refusals")
        assert bob.rejected == {"MalformedMessage": 3}
        assert bob.swarm.registry.get("carol").last_heartbeat is None
        assert bob.peers["alice"].role == "worker"
    finally:
        await leave_all(alice, bob, carol)


async def test_garbage_payload_inside_a_valid_envelope_is_counted(relay):
    alice, bob = await joined(ws_url(relay.port), config("alice"), config("bob"))
    try:
        for payload in (b"not json", b'{"kind":"TELEPORT","body":{}}', b'{"kind":"SIGNAL","body":[]}'):
            await alice.links["relay"].send((await alice.swarm.publish("swarm", payload)).frame)
        await wait_for(lambda: sum(bob.rejected.values()) == 3, what="refusals")
        assert bob.rejected == {"MalformedMessage": 3}
    finally:
        await leave_all(alice, bob)


# --- refused senders ------------------------------------------------------------------------


async def test_sender_whose_registration_was_refused_is_dropped_as_unknown(relay):
    coordinator, guard = await joined(ws_url(relay.port), config("coord", AgentRole.COORDINATOR), config("guard"))
    seen = Recorder()
    guard.on(MessageKind.SIGNAL, seen.handler(MessageKind.SIGNAL))
    coordinator.on(MessageKind.SIGNAL, seen.handler(MessageKind.SIGNAL))
    guard.swarm.registry.max_members = len(guard.swarm.registry)  # the guard admits nobody new
    mallory = await SwarmAgent.new(config("mallory"))
    try:
        await mallory.join_swarm(ws_url(relay.port), timeout=5)
        await wait_for(lambda: guard.rejected.get("RegistrationRejected") == 1, what="registration refused")
        await mallory.broadcast(MessageKind.SIGNAL, text="let me in")
        await mallory.send_to("guard", MessageKind.SIGNAL, text="psst")
        await wait_for(lambda: guard.rejected.get("UnknownSender", 0) >= 3, what="frames dropped")
        await wait_for(lambda: ("mallory", {"text": "let me in"}) in seen.of(MessageKind.SIGNAL),
                       what="the coordinator, who admitted mallory, hears her")
        assert "mallory" not in guard.peers and "mallory" not in guard.swarm.registry
        assert [s for s, _ in seen.of(MessageKind.SIGNAL)].count("mallory") == 1  # only the coordinator's copy
    finally:
        await leave_all(mallory, coordinator, guard)


async def test_impostor_with_a_conflicting_key_is_refused_and_its_frames_fail_verification(relay):
    """bob knew 'mallory' under one key; a 'mallory' with another key joins a relay that never saw the first."""
    alice, bob = await joined(ws_url(relay.port), config("alice"), config("bob"))
    original = await P2PSwarm.create("mallory", KEY)
    await bob.swarm.register_member(original.registration)
    seen = Recorder()
    bob.on(MessageKind.SIGNAL, seen.handler(MessageKind.SIGNAL))
    impostor = await SwarmAgent.new(config("mallory"))
    try:
        await impostor.join_swarm(ws_url(relay.port), timeout=5)
        await wait_for(lambda: bob.rejected.get("KeyConflict") == 1, what="key conflict")
        await impostor.broadcast(MessageKind.SIGNAL, text="trust me")
        await wait_for(lambda: bob.rejected.get("BadSignature", 0) >= 2, what="bad signatures (JOIN and SIGNAL)")
        assert seen.seen == []
        assert bob.swarm.registry.get("mallory").registration == original.registration
    finally:
        await leave_all(impostor, alice, bob)


# --- separate processes ---------------------------------------------------------------------


async def test_three_agents_in_separate_processes_exchange_through_a_real_relay(relay):
    url = ws_url(relay.port)
    names = {"p-coord": "coordinator", "p-worker": "worker", "p-scout": "scout"}
    procs = []
    for name, role in names.items():
        others = ",".join(n for n in names if n != name)
        procs.append(await asyncio.create_subprocess_exec(
            PYTHON, str(ROOT / "tests" / "relay_fixtures.py"), "agent", url, KEY.hex(), name, role, others, "20",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=child_env(LINGER_S="2")))
    try:
        results = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 35)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    events: dict[str, list[dict]] = {}
    for (name, _), proc, (out, err) in zip(names.items(), procs, results):
        assert proc.returncode == 0, f"{name} exited {proc.returncode}: {out.decode()[-1500:]} {err.decode()[-1500:]}"
        events[name] = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    for name, role in names.items():
        others = set(names) - {name}
        mine = events[name]
        assert next(e for e in mine if e["event"] == "peers")["peers"] == {o: names[o] for o in others}
        assert {e["sender"] for e in mine if e["event"] == "signal"} == others
        assert all(e["body"] == {"text": f"hello from {e['sender']}"} for e in mine if e["event"] == "signal")
        direct = [e for e in mine if e["event"] == "direct"]
        assert {e["sender"] for e in direct} == others
        assert all(e["body"] == {"task": "t1", "by": e["sender"], "to": name} for e in direct)
        assert next(e for e in mine if e["event"] == "done")["rejected"] == {}
    assert relay.metrics.connections_total >= 3
    assert relay.metrics.drops.get("malformed", 0) == 0
