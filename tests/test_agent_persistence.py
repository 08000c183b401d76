"""A native agent given a memory path and an artifact directory finds its memories and artifacts after a restart."""

from __future__ import annotations

import os

import pytest

from ruvector_edge.agent import SwarmAgent, SwarmConfig
from ruvector_edge.errors import MissingChunks


async def test_memories_and_artifacts_survive_a_restart(tmp_path):
    config = SwarmConfig(agent_id="keeper", swarm_key=os.urandom(32), memory_dim=32,
                         memory_path=str(tmp_path / "memories.db"), artifact_dir=str(tmp_path / "blocks"))
    first = await SwarmAgent.new(config)
    big = os.urandom(700_000)  # several blocks plus a manifest
    cids = [first.store_artifact(b"small"), first.store_artifact(big)]
    memory_id = await first.store_memory("the relay restarts at midnight")
    await first.leave()

    second = await SwarmAgent.new(config)
    try:
        assert [second.get_artifact(c) for c in cids] == [b"small", big]
        hits = await second.search_memory("relay restarts", 1)
        assert hits[0].id == memory_id and hits[0].owner == "keeper"
    finally:
        await second.leave()


async def test_without_a_directory_artifacts_live_in_memory_only(tmp_path):
    config = SwarmConfig(agent_id="forgetful", swarm_key=os.urandom(32), memory_dim=32)
    first = await SwarmAgent.new(config)
    cid = first.store_artifact(b"gone after a restart")
    assert first.artifacts.backend is None
    await first.leave()
    second = await SwarmAgent.new(config)
    try:
        with pytest.raises(MissingChunks):
            second.get_artifact(cid)
    finally:
        await second.leave()
