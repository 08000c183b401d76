"""Pattern states too large for one message travel as chunks, each a valid state, in version order."""

from __future__ import annotations

import asyncio
import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruvector_edge import agent as agent_module
from ruvector_edge.agent import SwarmAgent, SwarmConfig
from ruvector_edge.errors import OversizedMessage
from ruvector_edge.intelligence import IntelligenceSync, NumpyTable, PyTable
from ruvector_edge.platform.base import FakeClock
from ruvector_edge.protocol import MessageKind
from ruvector_edge.relay.server import RelayServer

KERNELS = {"numpy": lambda: NumpyTable(np), "pure": PyTable}


@pytest.fixture(params=sorted(KERNELS))
def kernel(request):
    return KERNELS[request.param]


def learner(name: str, kernel, n: int, seed: int, start: int = 0) -> IntelligenceSync:
    clock, rng = FakeClock(start), random.Random(seed)
    sync = IntelligenceSync(name, clock=clock, table_factory=kernel)
    for i in range(n):
        clock.advance(1)
        sync.update_pattern(f"state-{rng.randrange(n)}", f"action-{rng.randrange(7)}", rng.uniform(-1, 1))
    return sync


def gathered(kernel, *sources: IntelligenceSync) -> IntelligenceSync:
    """One replica holding every source's state."""
    hub = IntelligenceSync("hub", clock=FakeClock(), table_factory=kernel)
    for source in sources:
        hub.merge_peer_state(source.agent_id, source.serialize_state())
    return hub


def test_chunks_fit_and_join_to_the_whole_state(kernel):
    hub = gathered(kernel, *(learner(f"agent-{i}", kernel, 3000, seed=i) for i in range(3)))
    whole = hub.serialize_state()
    chunks = hub.serialize_chunks(None, 16 * 1024)
    assert len(whole) > 16 * 1024 and len(chunks) > 1
    assert all(len(chunk) <= 16 * 1024 for chunk in chunks)
    sink = IntelligenceSync("sink", clock=FakeClock(), table_factory=kernel)
    for chunk in chunks:
        sink.merge_peer_state("hub", chunk)
    assert sink.serialize_state() == whole
    assert sink.version_vector() == hub.version_vector()


def test_a_state_that_fits_is_one_unchanged_chunk(kernel):
    sync = learner("a", kernel, 50, seed=1)
    assert sync.serialize_chunks(None, 1 << 20) == [sync.serialize_state()]
    assert sync.serialize_chunks(sync.version_vector(), 1 << 20) == [sync.serialize_state(sync.version_vector())]


def test_any_prefix_of_chunks_claims_only_what_it_holds(kernel):
    """After k chunks the receiver's version vector asks for exactly the rest: nothing is hidden by a lost chunk."""
    hub = gathered(kernel, *(learner(f"agent-{i}", kernel, 2000, seed=10 + i, start=i * 7) for i in range(3)))
    chunks = hub.serialize_chunks(None, 8 * 1024)
    assert len(chunks) >= 4
    for k in (1, len(chunks) // 2, len(chunks) - 1):
        sink = IntelligenceSync("sink", clock=FakeClock(), table_factory=kernel)
        for chunk in chunks[:k]:
            sink.merge_peer_state("hub", chunk)
        for chunk in hub.serialize_chunks(sink.version_vector(), 8 * 1024):  # the REQUEST_PATTERNS answer
            sink.merge_peer_state("hub", chunk)
        assert sink.serialize_state() == hub.serialize_state()


def test_a_delta_is_chunked_too(kernel):
    a = learner("a", kernel, 4000, seed=3)
    seen = a.version_vector()
    receiver = IntelligenceSync("b", clock=FakeClock(10**6), table_factory=kernel)
    a.merge_peer_state("b", learner("b", kernel, 4000, seed=4, start=10**6).serialize_state())
    delta_chunks = a.serialize_chunks(seen, 8 * 1024)
    assert all(len(c) <= 8 * 1024 for c in delta_chunks)
    for chunk in delta_chunks:
        receiver.merge_peer_state("a", chunk)
    assert receiver.serialize_state() == a.serialize_state(seen)


def test_one_pattern_larger_than_a_chunk_is_refused(kernel):
    sync = IntelligenceSync("a", clock=FakeClock(), table_factory=kernel)
    noise = random.Random(9)
    sync.update_pattern("".join(noise.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(200)), "x", 1.0)
    with pytest.raises(OversizedMessage):
        sync.serialize_chunks(None, 64)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(0, 600), min_size=1, max_size=4),
    limit=st.integers(300, 6000),
    seed=st.integers(0, 2**16),
)
def test_chunking_is_lossless_for_any_limit(kernel, sizes, limit, seed):
    hub = gathered(kernel, *(learner(f"o{i}", kernel, n, seed=seed + i, start=seed % 97) for i, n in enumerate(sizes)))
    try:
        chunks = hub.serialize_chunks(None, limit)
    except OversizedMessage:
        return  # a single pattern over a tiny limit: refused, nothing to check
    assert all(len(c) <= limit for c in chunks)
    sink = IntelligenceSync("sink", clock=FakeClock(), table_factory=kernel)
    for chunk in chunks:
        sink.merge_peer_state("hub", chunk)
    assert sink.serialize_state() == hub.serialize_state()


async def test_agents_sync_a_state_larger_than_one_message(monkeypatch):
    """Through a real relay: 20K patterns (several chunks) reach a peer and a late joiner whole."""
    monkeypatch.setattr(agent_module, "PATTERN_CHUNK_BYTES", 64 * 1024)
    server = RelayServer("127.0.0.1", 0, None)
    await server.start()
    key = os.urandom(32)
    agents = []
    try:
        async def make(name: str) -> SwarmAgent:
            agent = await SwarmAgent.new(SwarmConfig(agent_id=name, swarm_key=key, sync_interval_ms=50))
            await agent.join_swarm(f"ws://127.0.0.1:{server.port}")
            agents.append(agent)
            return agent

        a, b = await make("teacher"), await make("student")
        sent_states: list[int] = []
        real_broadcast = a.broadcast

        async def spy(kind, **body):
            if kind is MessageKind.SYNC_PATTERNS:
                sent_states.append(len(body["state"]))
            return await real_broadcast(kind, **body)

        a.broadcast = spy
        rng = random.Random(5)
        for i in range(20_000):
            a.intelligence.update_pattern(f"state-{i}", f"action-{rng.randrange(5)}", rng.uniform(-1, 1))
        assert len(a.intelligence.serialize_state()) > 3 * 64 * 1024
        late = None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while loop.time() < deadline:
            if late is None and len(b.intelligence) == 20_000:
                late = await make("late")
            if late is not None and len(late.intelligence) == 20_000:
                break
            await asyncio.sleep(0.05)
        assert len(b.intelligence) == 20_000
        assert late is not None and len(late.intelligence) == 20_000
        assert b.intelligence.serialize_state() == a.intelligence.serialize_state()
        assert late.intelligence.serialize_state() == a.intelligence.serialize_state()
        assert not b.rejected and not late.rejected
        assert len(sent_states) > 3 and max(sent_states) <= 64 * 1024 * 4 // 3 + 4  # base64 of ≤ 64 KiB chunks
    finally:
        for agent in agents:
            await agent.leave()
        await server.stop()
