"""What every native SwarmAgent helper of the e2e specs does around its own commands.

Join the relay, print one ready line ({"joined": id, ...}), then answer each JSON request
line on stdin with {"ok": result} or {"error": "Type: message"} (the test decides what is
fatal), and leave at end of input (so a helper cannot outlive its test) or after
MAX_LIFETIME_S at the latest.
"""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

from ruvector_edge.agent import SwarmAgent, SwarmConfig

MAX_LIFETIME_S = 300.0

Answer = Callable[[SwarmAgent, dict], Awaitable[object]]


async def _serve(agent: SwarmAgent, answer: Answer) -> None:
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


async def run_agent(config: SwarmConfig, url: str, answer: Answer,
                    ready: Callable[[SwarmAgent], dict] = lambda agent: {}) -> None:
    agent = await SwarmAgent.new(config)
    await agent.join_swarm(url, timeout=20)
    print(json.dumps({"joined": config.agent_id, **ready(agent)}), flush=True)
    try:
        await asyncio.wait_for(_serve(agent, answer), MAX_LIFETIME_S)
    except asyncio.TimeoutError:
        pass
    finally:
        await agent.leave()
