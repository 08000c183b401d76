"""Admission and rekey costs (issue 15), natively. Prints JSON lines.

- rekey: the admin starts a new swarm-key epoch sealed to each of N members (one X25519 + HKDF + AES-GCM
  per member, one Ed25519 signing batch): time on the admin, bytes of the deliveries as they travel
  (the relay frame(s) the admin sends), and time for one member to open its delivery. Goal: 1,000 members ≤ 1 s.
- admission: invite → certificate → sealed key → certified hello → welcome, through an in-process relay on
  127.0.0.1 (the joiner's SwarmAgent.join_swarm, end to end), median and p95 over --joins joiners.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig
from ruvector_edge.p2p import IdentityManager, P2PSwarm
from ruvector_edge.relay.server import RelayServer
from ruvector_edge.transport import relay_wire as rw


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


async def rekey(members: int, rounds: int) -> None:
    admin = await P2PSwarm.found_admitted("admin")
    authority = admin.admission.authority
    crypto = admin.runtime.crypto
    identities = []
    for index in range(members):
        identity = await IdentityManager.generate(crypto)
        await authority.certify(f"m-{index}", identity.ed25519_public, identity.x25519_public, ["worker"])
        identities.append(identity)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        deliveries = await authority.rekey()
        times.append(time.perf_counter() - start)
    frames = [rw.encode("rekey", deliveries=[d.to_dict() for d in deliveries[i:i + 1000]])
              for i in range(0, len(deliveries), 1000)]
    start = time.perf_counter()
    key = await deliveries[0].open(crypto, identities[0], admin.swarm_id, "m-0")
    open_s = time.perf_counter() - start
    assert key == admin.admission.epochs.key
    emit(bench="rekey", runtime="native", members=members, rounds=rounds, median_s=round(statistics.median(times), 4),
         max_s=round(max(times), 4), bytes_total=sum(len(f) for f in frames), frames=len(frames),
         bytes_per_member=round(sum(len(f) for f in frames) / members), member_open_s=round(open_s, 6))


async def admission(joins: int) -> None:
    server = RelayServer("127.0.0.1", 0, None)
    await server.start()
    url = f"ws://127.0.0.1:{server.port}/ws"
    options = dict(coordinator_url=None, memory_persist=False, artifact_persist=False)
    admin = await SwarmAgent.new(SwarmConfig(agent_id="admin", role=AgentRole.COORDINATOR, found_admitted=True, **options))
    await admin.join_swarm(url)
    agents, times = [], []
    try:
        for index in range(joins):
            agent = await SwarmAgent.new(SwarmConfig(agent_id=f"j-{index}", invite=await admin.create_invite(), **options))
            start = time.perf_counter()
            await agent.join_swarm(url)
            times.append(time.perf_counter() - start)
            agents.append(agent)
        times.sort()
        emit(bench="admission_round_trip", runtime="native", transport="relay 127.0.0.1", joins=joins,
             median_ms=round(statistics.median(times) * 1000, 2), p95_ms=round(times[int(0.95 * (len(times) - 1))] * 1000, 2))
    finally:
        for agent in (*agents, admin):
            await agent.leave()
        await server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--joins", type=int, default=20)
    args = parser.parse_args()
    for members in args.members:
        await rekey(members, args.rounds)
    await admission(args.joins)


if __name__ == "__main__":
    asyncio.run(main())
