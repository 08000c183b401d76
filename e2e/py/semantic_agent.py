"""A native SwarmAgent for e2e/semantic.spec.js: MiniLM embeddings and the agent's text API, over JSON lines.

    python e2e/py/semantic_agent.py ws://127.0.0.1:PORT/ws KEYHEX AGENT_ID

Prints {"joined": id, "model": model_id} once joined, then one answer per request line:
{"cmd": "store_text", "text"} | {"cmd": "search_text", "query", "k"} | {"cmd": "embed", "texts"}
| {"cmd": "ids", "texts"}. It leaves at end of input or after MAX_LIFETIME_S at the latest.
"""

import asyncio
import sys

from agent_lines import run_agent
from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig


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


async def main(url: str, key_hex: str, agent_id: str) -> None:
    config = SwarmConfig(agent_id=agent_id, role=AgentRole("worker"), swarm_key=bytes.fromhex(key_hex), coordinator_url=None)
    await run_agent(config, url, answer, ready=lambda agent: {"model": agent.embedder.model_id})


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
