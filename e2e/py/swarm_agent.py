"""A native SwarmAgent for e2e/swarm.spec.js: joins the relay, then answers JSON lines on stdin.

    python e2e/py/swarm_agent.py ws://127.0.0.1:PORT/ws KEYHEX AGENT_ID [ROLE]

Prints {"joined": id} once joined, then one answer per request line:
{"cmd": "peers"} | {"cmd": "best_action", "state", "actions"} | {"cmd": "search", "query"}
| {"cmd": "learn", "state", "action", "reward"}. It leaves at end of input (so it
cannot outlive the test) or after MAX_LIFETIME_S at the latest.
"""

import asyncio
import json
import sys

from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig

MAX_LIFETIME_S = 300.0


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


async def serve(agent: SwarmAgent) -> None:
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        try:
            out = {"ok": await answer(agent, json.loads(line))}
        except Exception as exc:  # report, keep serving: the test decides what is fatal
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)


async def main(url: str, key_hex: str, agent_id: str, role: str = "worker") -> None:
    config = SwarmConfig(agent_id=agent_id, role=AgentRole(role), swarm_key=bytes.fromhex(key_hex), coordinator_url=None)
    agent = await SwarmAgent.new(config)
    await agent.join_swarm(url, timeout=20)
    print(json.dumps({"joined": agent_id}), flush=True)
    try:
        await asyncio.wait_for(serve(agent), MAX_LIFETIME_S)
    except asyncio.TimeoutError:
        pass
    finally:
        await agent.leave()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
