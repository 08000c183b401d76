"""Shared fixtures and helpers for the secure-core tests.

Everything runs on the real native provider (PyNaCl + cryptography) and a
FakeClock, so timestamps, windows and liveness are deterministic. The helpers
build frames from the lower-level pieces (EnvelopeHeader, sign, AES-GCM) when a
test needs something `P2PSwarm` would never produce on its own.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import pytest

from ruvector_edge.p2p import IdentityManager, P2PSwarm, SecurityConfig
from ruvector_edge.p2p.envelope import BROADCAST, Envelope, EnvelopeHeader
from ruvector_edge.p2p.keys import payload_hash
from ruvector_edge.platform.base import FakeClock, RandomSource, Runtime
from ruvector_edge.platform.native import NativeCryptoProvider

START_MS = 1_800_000_000_000


def make_runtime(clock: FakeClock | None = None) -> Runtime:
    return Runtime(name="test", crypto=NativeCryptoProvider(), clock=clock or FakeClock(START_MS), random=RandomSource())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START_MS)


@pytest.fixture
def runtime(clock: FakeClock) -> Runtime:
    return make_runtime(clock)


@pytest.fixture
def crypto(runtime: Runtime) -> NativeCryptoProvider:
    return runtime.crypto


@pytest.fixture
def swarm_key() -> bytes:
    return os.urandom(32)


async def make_members(
    names: tuple[str, ...],
    key: bytes,
    runtime: Runtime,
    config: SecurityConfig | None = None,
    configs: dict[str, SecurityConfig] | None = None,
) -> dict[str, P2PSwarm]:
    """Create one P2PSwarm per name on the same swarm key and register everybody with everybody."""
    swarms = {}
    for name in names:
        cfg = (configs or {}).get(name, config)
        swarms[name] = await P2PSwarm.create(name, key, runtime=runtime, config=cfg)
    for a in swarms.values():
        for b in swarms.values():
            if a is not b:
                await a.register_member(b.registration)
    return swarms


@pytest.fixture
async def trio(runtime: Runtime, swarm_key: bytes) -> tuple[P2PSwarm, P2PSwarm, P2PSwarm]:
    members = await make_members(("alice", "bob", "carol"), swarm_key, runtime)
    return members["alice"], members["bob"], members["carol"]


def snapshot(swarm: P2PSwarm) -> dict[str, Any]:
    """Everything a rejected input must leave untouched: registry contents and liveness, replay state."""
    members = {
        m.agent_id: (m.registration, m.last_seen, m.last_heartbeat, m.heartbeat_seq, m.load, m.queue_depth)
        for m in swarm.registry.members()
    }
    return {
        "len": len(swarm.registry),
        "members": members,
        "counters": {agent: swarm.replay.highest_counter(agent) for agent in [*members, "mallory", "eve"]},
        "nonces": swarm.replay.nonce_count(),
    }


def edit_frame(frame: bytes, change: Callable[[dict[str, Any]], Any]) -> bytes:
    """Decode a frame, let `change` mutate the dict, re-encode (compact)."""
    obj = json.loads(frame)
    change(obj)
    return json.dumps(obj, separators=(",", ":")).encode()


async def seal_custom(
    sender: P2PSwarm,
    payload: bytes = b"crafted",
    *,
    kind: str = BROADCAST,
    topic: str = "news",
    key: bytes | None = None,
    signer: IdentityManager | None = None,
    hashed_payload: bytes | None = None,
    hash_key: bytes | None = None,
    **overrides: Any,
) -> tuple[bytes, EnvelopeHeader]:
    """A frame built from the parts, as `sender` (or an impostor `signer`) could build it by hand.

    `hashed_payload` signs the hash of a different payload than the one encrypted;
    `overrides` replace header fields (counter, nonce, timestamp, sender_id...).
    """
    key = sender.swarm_key.key if key is None else key
    sender._counter += 1  # stay ahead of what the sender itself will use next
    fields: dict[str, Any] = dict(
        type=kind,
        swarm=sender.swarm_id,
        sender_id=sender.agent_id,
        topic=topic,
        counter=sender._counter,
        message_id=os.urandom(16).hex(),
        nonce=os.urandom(16).hex(),
        timestamp=sender.runtime.clock.now_ms(),
        payload_hash=payload_hash(hash_key or key, payload if hashed_payload is None else hashed_payload),
    )
    fields.update(overrides)
    header = EnvelopeHeader(**fields)
    canonical = header.canonical()
    sig = await (signer or sender.identity).sign(canonical)
    iv = os.urandom(12)
    ct = await sender.runtime.crypto.aes_gcm_seal(key, iv, payload, EnvelopeHeader.aad_of(canonical))
    return Envelope(header, sig, iv, ct).to_json(), header


@pytest.fixture
async def swarm_of():
    """make(agent_id) → a SwarmAgent joined to a fresh in-process relay (one random swarm key, 50 ms syncs)."""
    from ruvector_edge.agent import SwarmAgent, SwarmConfig
    from ruvector_edge.relay.server import RelayServer

    server = RelayServer("127.0.0.1", 0, None)
    await server.start()
    key = os.urandom(32)
    agents: list[SwarmAgent] = []

    async def make(agent_id: str) -> SwarmAgent:
        agent = await SwarmAgent.new(SwarmConfig(agent_id=agent_id, swarm_key=key, sync_interval_ms=50))
        await agent.join_swarm(f"ws://127.0.0.1:{server.port}")
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.leave()
    await server.stop()
