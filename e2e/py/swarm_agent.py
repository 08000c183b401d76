"""A native SwarmAgent for e2e/swarm.spec.js: joins the relay, then answers JSON lines on stdin.

    python e2e/py/swarm_agent.py ws://127.0.0.1:PORT/ws KEYHEX AGENT_ID [ROLE]

Prints {"joined": id} once joined, then one answer per request line:
{"cmd": "peers"} | {"cmd": "best_action", "state", "actions"} | {"cmd": "search", "query"}
| {"cmd": "learn", "state", "action", "reward"}. It leaves at end of input (so it
cannot outlive the test) or after MAX_LIFETIME_S at the latest.
"""

import asyncio
import sys

from agent_lines import run_agent
from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig


async def answer(agent: SwarmAgent, req: dict) -> object:
    cmd = req.get("cmd")
    if cmd == "peers":
        return [{"agent_id": r["agent_id"], "role": r["role"], "status": r["status"]} for r in agent.peer_table()]
    if cmd == "best_action":
        best = await agent.get_best_action(req["state"], req["actions"])
        return None if best is None else best[0]
    if cmd == "search":
        return [{"content": h.content, "owner": h.owner} for h in await agent.search_memory(req["query"], 3)]
    if cmd == "learn":
        await agent.learn(req["state"], req["action"], float(req["reward"]))
        return await agent.sync_patterns()
    raise ValueError(f"unknown command {cmd!r}")


async def main(url: str, key_hex: str, agent_id: str, role: str = "worker") -> None:
    config = SwarmConfig(agent_id=agent_id, role=AgentRole(role), swarm_key=bytes.fromhex(key_hex), coordinator_url=None)
    await run_agent(config, url, answer)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
