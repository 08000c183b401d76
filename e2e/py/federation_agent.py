"""A native SwarmAgent for e2e/federation.spec.js: joins one relay of a federation, then answers JSON lines.

    python e2e/py/federation_agent.py ws://127.0.0.1:PORT/ws KEYHEX AGENT_ID

Prints {"joined": id} once joined, then one answer per request line:
{"cmd": "send", "notes": [..]} broadcasts one plain BROADCAST_TASK per note, in order (native agents
have no WebRTC, so what a page gets of them came through the relays: the frames a page misses while its
relay is down can only reach it by the stream's catch-up) | {"cmd": "peers"}. It leaves at end of
input (so it cannot outlive the test) or after MAX_LIFETIME_S at the latest.
"""

import asyncio
import sys

from agent_lines import run_agent
from ruvector_edge.agent import SwarmAgent, SwarmConfig
from ruvector_edge.protocol import MessageKind


async def answer(agent: SwarmAgent, req: dict) -> object:
    cmd = req.get("cmd")
    if cmd == "send":
        for note in req["notes"][:1000]:
            await agent.broadcast(MessageKind.BROADCAST_TASK, note=str(note))
        return len(req["notes"])
    if cmd == "peers":
        return sorted(r["agent_id"] for r in agent.peer_table() if r["status"] == "active")
    raise ValueError(f"unknown command {cmd!r}")


async def main(url: str, key_hex: str, agent_id: str) -> None:
    config = SwarmConfig(agent_id=agent_id, swarm_key=bytes.fromhex(key_hex), coordinator_url=None)
    await run_agent(config, url, answer)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
