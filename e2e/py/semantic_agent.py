"""A native SwarmAgent for e2e/semantic.spec.js: MiniLM embeddings and the agent's text API, over JSON lines.

    python e2e/py/semantic_agent.py ws://127.0.0.1:PORT/ws KEYHEX AGENT_ID

Prints {"joined": id, "model": model_id} once joined, then one answer per request line:
{"cmd": "store_text", "text"} | {"cmd": "search_text", "query", "k"} | {"cmd": "embed", "texts"}
| {"cmd": "ids", "texts"}. It leaves at end of input or after MAX_LIFETIME_S at the latest.
"""

import asyncio
import json
import sys

from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig

MAX_LIFETIME_S = 300.0


async def answer(agent: SwarmAgent, req: dict) -> object:
    cmd = req.get("cmd")
    if cmd == "store_text":
        memory_id = await agent.store_text(req["text"], {"source": "native"})
        await agent.sync_memories()
        return memory_id
    if cmd == "search_text":
        return [{"content": h.content, "owner": h.owner, "score": h.score} for h in await agent.search_text(req["query"], req.get("k", 3))]
    if cmd == "embed":
        return [[float(x) for x in row] for row in agent.embedder.embed_many(req["texts"])]
    if cmd == "ids":
        return [agent.embedder.tokenizer.encode(text).ids for text in req["texts"]]
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


async def main(url: str, key_hex: str, agent_id: str) -> None:
    config = SwarmConfig(agent_id=agent_id, role=AgentRole("worker"), swarm_key=bytes.fromhex(key_hex), coordinator_url=None)
    agent = await SwarmAgent.new(config)
    await agent.join_swarm(url, timeout=20)
    print(json.dumps({"joined": agent_id, "model": agent.embedder.model_id}), flush=True)
    try:
        await asyncio.wait_for(serve(agent), MAX_LIFETIME_S)
    except asyncio.TimeoutError:
        pass
    finally:
        await agent.leave()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
