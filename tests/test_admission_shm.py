"""An agent refused over shared memory hears why at once and stops, as over WebSocket (issue 15)."""

from __future__ import annotations

import os

import pytest

from relay_fixtures import ws_url
from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig
from ruvector_edge.errors import MembershipRefused
from ruvector_edge.relay.server import RelayServer


def _config(agent_id: str, **options) -> SwarmConfig:
    return SwarmConfig(agent_id=agent_id, coordinator_url=None, memory_persist=False, artifact_persist=False, **options)


async def test_a_join_refused_over_shm_fails_with_the_relays_reason_not_a_timeout():
    hub = f"test-adm-{os.getpid()}-{os.urandom(3).hex()}"
    server = RelayServer("127.0.0.1", 0, None, shm_hub=hub)
    await server.start()
    agents = []
    try:
        admin = await SwarmAgent.new(_config("admin", role=AgentRole.COORDINATOR, found_admitted=True))
        agents.append(admin)
        await admin.join_swarm(ws_url(server.port))
        invite = await admin.create_invite(max_uses=1)
        first = await SwarmAgent.new(_config("w-1", invite=invite))
        agents.append(first)
        await first.join_swarm(f"shm://{hub}")
        second = await SwarmAgent.new(_config("w-2", invite=invite))
        agents.append(second)
        # Without the hub's close frame the link retries the spent invite until this (long) timeout.
        with pytest.raises(MembershipRefused, match="InviteExhausted"):
            await second.join_swarm(f"shm://{hub}", timeout=30)
        assert second.refusal.startswith("InviteExhausted")
        assert second.links["relay"].reconnects == 0  # final: the same hello is not tried again
    finally:
        for agent in reversed(agents):
            await agent.leave()
        await server.stop()
