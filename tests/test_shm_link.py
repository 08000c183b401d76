"""Agents reaching a relay over shared memory share one swarm with WebSocket agents."""

from __future__ import annotations

import asyncio
import os

from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig
from ruvector_edge.protocol import MessageKind
from ruvector_edge.relay.server import RelayServer


async def test_shm_and_websocket_agents_meet_in_one_swarm():
    hub = f"test-{os.getpid()}-{os.urandom(3).hex()}"
    server = RelayServer("127.0.0.1", 0, None, shm_hub=hub)
    await server.start()
    key = os.urandom(32)
    remote = await SwarmAgent.new(SwarmConfig(agent_id="ws-agent", swarm_key=key))
    local = await SwarmAgent.new(SwarmConfig(agent_id="shm-agent", swarm_key=key, role=AgentRole.SCOUT))
    try:
        await remote.join_swarm(f"ws://127.0.0.1:{server.port}")
        await local.join_swarm(f"shm://{hub}")
        tasks: asyncio.Queue = asyncio.Queue()

        async def on_task(sender, message):
            await tasks.put((sender, message.body))

        remote.on(MessageKind.BROADCAST_TASK, on_task)
        await local.broadcast(MessageKind.BROADCAST_TASK, task_id="t-1")
        sender, body = await asyncio.wait_for(tasks.get(), 5)
        assert (sender, body) == ("shm-agent", {"task_id": "t-1"})
        assert await local.ping("ws-agent") < 5
        roles = {row["agent_id"]: row["role"] for row in remote.peer_table()}
        assert roles == {"shm-agent": "scout"}
    finally:
        await local.leave()
        await remote.leave()
        await server.stop()


async def test_joining_a_missing_shm_hub_times_out():
    agent = await SwarmAgent.new(SwarmConfig(agent_id="lonely", swarm_key=os.urandom(32)))
    try:
        await agent.join_swarm(f"shm://no-such-hub-{os.urandom(3).hex()}", timeout=0.5)
    except asyncio.TimeoutError:
        pass
    else:
        raise AssertionError("joined a hub that does not exist")
    finally:
        await agent.leave()
