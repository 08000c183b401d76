"""An agent's member registry under churn, through a real relay.

Agents come and go (browser tabs reload under new ids); every agent that stays hears each one
join (`member`) and leave (`left`). It must forget the ones that left, keeping only their id -> key
binding for the replay window, or its registry grows with every agent ever seen until it refuses
newcomers (`registry is full`) while few are present.
"""

from __future__ import annotations

import json
import time

import aiohttp
import pytest

from conftest import make_runtime
from relay_fixtures import agent_config, raw_join, receive_close, running_relay, wait_for, ws_url
from ruvector_edge.agent import SwarmAgent
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.platform.base import FakeClock
from ruvector_edge.protocol import MessageKind
from ruvector_edge.protocol import encode as encode_message
from ruvector_edge.transport import relay_wire as rw

pytestmark = pytest.mark.timeout(150)

KEY = bytes(range(32))
MAX_MEMBERS = 20
HELLO = encode_message(MessageKind.JOIN, role="worker", capabilities=["worker"])


async def observer_on(port: int, agent_id: str = "observer", **options) -> SwarmAgent:
    """An agent with a small registry (MAX_MEMBERS), so that churn past it is cheap to produce."""
    agent = await SwarmAgent.new(agent_config(agent_id, swarm_key=KEY), **options)
    agent.swarm.registry.max_members = MAX_MEMBERS
    await agent.join_swarm(ws_url(port))
    return agent


async def come_and_go(http: aiohttp.ClientSession, port: int, swarm: P2PSwarm, say: bytes | None = None) -> None:
    """Join as `swarm`'s agent over a WebSocket, optionally broadcast one frame, leave; return once the relay
    closed the connection (it has then sent `left` to the others)."""
    ws, _ = await raw_join(http, port, swarm)
    if say is not None:
        await ws.send_str((await swarm.publish("swarm", say)).frame.decode())
    await ws.send_str(rw.encode("leave"))
    assert await receive_close(ws) == rw.CLOSE_NORMAL


async def settled(agent: SwarmAgent) -> None:
    """Every frame the relay sent `agent` before now has been handled (the pong comes after them, in order)."""
    await agent.links["relay"].ping()


async def test_an_agent_that_saw_200_agents_come_and_go_admits_a_newcomer_and_a_returning_agent():
    """Before departed members were forgotten, the 20th distinct agent filled the observer's registry for good."""
    churn = 200
    async with running_relay() as server, aiohttp.ClientSession() as http:
        observer = await observer_on(server.port)
        newcomer = None
        try:
            registry = observer.swarm.registry
            comers = [await P2PSwarm.create(f"churn-{i}", KEY) for i in range(churn)]
            present = []
            for swarm in comers:
                await come_and_go(http, server.port, swarm)
                present.append(len(registry))  # itself, and at most the one whose `left` is still on its way
            await settled(observer)
            newcomer = await SwarmAgent.new(agent_config("newcomer", swarm_key=KEY))
            await newcomer.join_swarm(ws_url(server.port))
            await wait_for(lambda: "newcomer" in registry or observer.rejected, timeout=10, what="the newcomer")
            assert "newcomer" in registry, observer.rejected
            assert await observer.ping("newcomer", timeout=5) > 0

            assert max(present) <= 2 and len(registry) == 2, present  # itself and the newcomer
            assert registry.bindings() == 2 + churn <= registry.max_members + registry.max_departed
            assert sum(observer.rejected.values()) == 0, observer.rejected
            rows = {row["agent_id"]: row["status"] for row in observer.peer_table()}
            assert rows == {"newcomer": "active", **{swarm.agent_id: "gone" for swarm in comers}}

            returning = comers[-1]  # the same id and key, within the hold: welcome back
            ws, _ = await raw_join(http, server.port, returning)
            await settled(observer)
            assert registry.get(returning.agent_id).ed25519_pubkey == returning.identity.ed25519_public
            assert {row["agent_id"]: row["status"] for row in observer.peer_table()}[returning.agent_id] == "active"
            await ws.close()

            # The same id under another key is refused while the binding is held (the relay refuses it too,
            # so it is offered to the agent directly, as a peer-to-peer path would).
            impostor = await P2PSwarm.create(comers[0].agent_id, KEY)
            await observer.add_member(impostor.registration)
            assert observer.rejected == {"KeyConflict": 1}
            assert comers[0].agent_id not in registry
            assert registry.public_key(comers[0].agent_id) == comers[0].identity.ed25519_public
        finally:
            await observer.leave()
            if newcomer is not None:
                await newcomer.leave()


async def test_held_bindings_and_replay_windows_of_departed_agents_are_released_after_the_hold():
    """Relay, observer and agents on one fake wall clock: rounds of agents that each say one thing and leave,
    the clock moved a hold's length after each round. Bindings and per-sender replay windows are those of the
    last round only; an id whose hold ended may be taken by a new key; one still held may not."""
    clock = FakeClock(int(time.time() * 1000))
    rounds, per_round = 4, 25
    async with running_relay(clock=clock) as server, aiohttp.ClientSession() as http:
        observer = await observer_on(server.port, runtime=make_runtime(clock))
        try:
            registry, replay = observer.swarm.registry, observer.swarm.replay
            said: list[str] = []
            for r in range(rounds):
                comers = [await P2PSwarm.create(f"r{r}-{i}", KEY, runtime=make_runtime(clock)) for i in range(per_round)]
                for swarm in comers:
                    await come_and_go(http, server.port, swarm, say=HELLO)
                await settled(observer)
                said.extend(swarm.agent_id for swarm in comers)
                heard = [agent_id for agent_id in said if replay.highest_counter(agent_id) is not None]
                assert heard == [swarm.agent_id for swarm in comers], f"round {r}: replay windows kept for {heard}"
                assert len(registry) == 1 and registry.bindings() == 1 + per_round
                assert registry.departed() == [swarm.agent_id for swarm in comers]
                if r == rounds - 1:
                    break
                clock.advance(registry.hold_departed_ms)
            assert observer.rejected == {}, observer.rejected

            # r0-0's hold has ended everywhere: a new key may take the id (through the relay, which agrees).
            taker = await P2PSwarm.create("r0-0", KEY, runtime=make_runtime(clock))
            ws, _ = await raw_join(http, server.port, taker)
            await settled(observer)
            assert registry.get("r0-0").ed25519_pubkey == taker.identity.ed25519_public
            await ws.close()
            # r3-0 is still held: its old key, not a new one.
            impostor = await P2PSwarm.create("r3-0", KEY, runtime=make_runtime(clock))
            await observer.add_member(impostor.registration)
            assert observer.rejected == {"KeyConflict": 1} and "r3-0" not in registry
        finally:
            await observer.leave()


async def test_only_the_relays_left_makes_an_agent_forget_a_member_and_a_member_cannot_forge_one():
    """`left` is a relay control frame; the relay refuses every `op` an agent sends but its own few (hello, sub,
    unsub, ping, pong, leave and the admin's), and forwards only envelopes, which have no `op`. So a member that
    sends `left` naming another, bare or inside an envelope, is cut off and nobody forgets anyone."""
    async with running_relay() as server, aiohttp.ClientSession() as http:
        observer = await observer_on(server.port)
        alice = await SwarmAgent.new(agent_config("alice", swarm_key=KEY))
        bob = await SwarmAgent.new(agent_config("bob", swarm_key=KEY))
        try:
            for agent in (alice, bob):
                await agent.join_swarm(ws_url(server.port))
            await wait_for(lambda: {"alice", "bob"} <= set(observer.peers), what="alice and bob")

            mallory = await P2PSwarm.create("mallory", KEY)
            ws, _ = await raw_join(http, server.port, mallory)
            await ws.send_str(rw.encode("left", agent_id="alice"))
            assert await receive_close(ws) == rw.CLOSE_POLICY
            ws, _ = await raw_join(http, server.port, mallory)
            framed = json.loads((await mallory.publish("swarm", b"x")).frame)
            framed.update(op="left", agent_id="alice")
            await ws.send_str(json.dumps(framed))
            assert await receive_close(ws) == rw.CLOSE_POLICY

            await bob.leave()  # the genuine article
            registry = observer.swarm.registry
            await wait_for(lambda: "bob" not in registry and "mallory" not in registry, what="bob and mallory gone")
            assert "alice" in registry
            assert {row["agent_id"]: row["status"] for row in observer.peer_table()} == {
                "alice": "active", "bob": "gone", "mallory": "gone"}
            before = dict(observer.rejected)
            assert await alice.ping("observer", timeout=5) > 0  # alice's frames are still accepted
            assert observer.rejected == before
        finally:
            for agent in (observer, alice, bob):
                await agent.leave()
