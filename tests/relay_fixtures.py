"""Shared helpers for the relay, relay-client, agent and CLI tests.

Imported by the tests (pytest puts tests/ on sys.path) and also run as a
script: `python tests/relay_fixtures.py agent ...` is a native agent in its own
process that joins a relay, does one scripted exchange and prints JSON lines
the parent test reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable


def script(name: str) -> str:
    return str(VENV_BIN / name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("EDGE_LOG", "RUST_LOG", "SWARM_COORDINATOR", "SWARM_KEY")}
    env.update(extra)
    return env


# --- router side: fake peers ----------------------------------------------------


@dataclass
class FakePeer:
    """A connection as the router sees it, recording what the router did to it."""

    conn_id: int
    accept: bool = True  # what send() answers: False means "outbound queue full"
    sent: list[str] = field(default_factory=list)
    closes: list[tuple[int, str]] = field(default_factory=list)

    def send(self, text: str) -> bool:
        if not self.accept:
            return False
        self.sent.append(text)
        return True

    def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))

    @property
    def frames(self) -> list[dict]:
        return [json.loads(text) for text in self.sent]

    def ops(self) -> list[str]:
        return [frame.get("op", "envelope") for frame in self.frames]

    def last(self, op: str) -> dict:
        matching = [frame for frame in self.frames if frame.get("op") == op]
        assert matching, f"conn {self.conn_id} got no {op!r} frame; got {self.ops()}"
        return matching[-1]

    def envelopes(self) -> list[dict]:
        return [frame for frame in self.frames if "header" in frame]

    @property
    def close_code(self) -> int | None:
        return self.closes[0][0] if self.closes else None


class FakeMonotonic:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def hello_for(swarm, challenge: str, *, signer=None, registration=None) -> str:
    """The hello frame `swarm`'s agent sends for `challenge` (optionally signed by someone else)."""
    from ruvector_edge.transport import relay_wire as rw

    registration = registration or swarm.registration
    signer = signer or swarm.identity
    proof = await signer.sign(rw.auth_bytes(registration.swarm, registration.agent_id, challenge))
    return rw.hello(registration, proof)


# --- server side ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_relay(limits=None, web_root=None, port: int = 0, clock=None):
    from ruvector_edge.relay.server import RelayServer

    server = RelayServer("127.0.0.1", port, web_root, limits, clock=clock)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


async def wait_for(predicate, timeout: float = 5.0, interval: float = 0.01, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


TEST_SWARM_KEY = bytes(range(32))


def agent_config(agent_id: str, role=None, *, swarm_key: bytes = TEST_SWARM_KEY, **options):
    """A SwarmConfig for tests: fixed swarm key, no coordinator URL from the environment."""
    from ruvector_edge.agent import AgentRole, SwarmConfig

    return SwarmConfig(agent_id=agent_id, role=role or AgentRole.WORKER, swarm_key=swarm_key,
                       coordinator_url=None, **options)


async def joined_agents(url: str, *configs) -> list:
    """Start one agent per config on the relay at `url` and wait until each has seen every other's JOIN
    and the relay has processed its subscriptions (a relay ping answered)."""
    from ruvector_edge.agent import SwarmAgent

    agents = []
    for cfg in configs:
        agent = await SwarmAgent.new(cfg)
        await agent.join_swarm(url, timeout=10)
        agents.append(agent)
    ids = {a.agent_id for a in agents}
    for agent in agents:
        await wait_for(lambda: all(agent.peers.get(p) is not None and agent.peers[p].joined
                                   for p in ids - {agent.agent_id}), what=f"{agent.agent_id} to see every JOIN")
    for agent in agents:
        await agent.links["relay"].ping()
    return agents


async def raw_join(http, port: int, swarm, topics: list[str] = (), **connect_options):
    """A bare aiohttp WebSocket that completes the handshake as `swarm`'s agent; returns (ws, welcome)."""
    ws = await http.ws_connect(ws_url(port), **connect_options)
    challenge = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert challenge["op"] == "challenge", challenge
    await ws.send_str(await hello_for(swarm, challenge["challenge"]))
    welcome = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    for _ in range(10):  # the relay's pings may come before the welcome
        if welcome["op"] != "ping":
            break
        welcome = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
    assert welcome["op"] == "welcome", welcome
    if topics:
        from ruvector_edge.transport import relay_wire as rw

        await ws.send_str(rw.subscribe(list(topics)))
    return ws, welcome


async def receive_close(ws, timeout: float = 5.0):
    """Read until the server's close arrives; return the close code (frames before it are discarded)."""
    import aiohttp

    async def drain():
        while True:
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.CLOSE:
                return message.data  # the code the server sent; ws.close_code may already say 1006
            if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                return ws.close_code

    return await asyncio.wait_for(drain(), timeout)


def start_relay_process(port: int) -> subprocess.Popen:
    """edge-relay in its own process; returns once it prints that it listens."""
    proc = subprocess.Popen(
        [script("edge-relay"), "--listen", f"127.0.0.1:{port}", "--memory-only"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(EDGE_LOG="warning"), cwd="/",
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if "listening" not in line:
        proc.kill()
        _, err = proc.communicate(timeout=5)
        raise AssertionError(f"edge-relay did not start: {line!r} {err[-2000:]}")
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=5)


# --- an agent in its own process -------------------------------------------------


async def _agent_process(relay: str, key_hex: str, agent_id: str, role: str, expect: list[str], duration: float) -> int:
    """Join, wait for `expect` peers, broadcast a SIGNAL and send each a direct TASK_RESULT; report what arrived."""
    from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig
    from ruvector_edge.protocol import MessageKind

    def emit(event: str, **fields) -> None:
        print(json.dumps({"event": event, "agent": agent_id, **fields}), flush=True)

    config = SwarmConfig(agent_id=agent_id, role=AgentRole(role), swarm_key=bytes.fromhex(key_hex))
    agent = await SwarmAgent.new(config)
    got_signal: set[str] = set()
    got_direct: set[str] = set()

    async def on_signal(sender, message):
        got_signal.add(sender)
        emit("signal", sender=sender, body=message.body)

    async def on_result(sender, message):
        got_direct.add(sender)
        emit("direct", sender=sender, body=message.body)

    agent.on(MessageKind.SIGNAL, on_signal)
    agent.on(MessageKind.TASK_RESULT, on_result)
    await agent.join_swarm(relay, timeout=10)
    emit("joined")
    deadline = time.monotonic() + duration
    while not all(agent.peers.get(p) is not None and agent.peers[p].joined for p in expect):
        if time.monotonic() > deadline:
            emit("timeout", stage="peers", peers=sorted(agent.peers))
            await agent.leave()
            return 3
        await asyncio.sleep(0.02)
    emit("peers", peers={p: agent.peers[p].role for p in expect})
    await agent.broadcast(MessageKind.SIGNAL, text=f"hello from {agent_id}")
    for peer in expect:
        await agent.send_to(peer, MessageKind.TASK_RESULT, task="t1", by=agent_id, to=peer)
    while not (got_signal >= set(expect) and got_direct >= set(expect)):
        if time.monotonic() > deadline:
            emit("timeout", stage="messages", signal=sorted(got_signal), direct=sorted(got_direct))
            await agent.leave()
            return 4
        await asyncio.sleep(0.02)
    emit("done", rejected=dict(agent.rejected))
    # Stay until every other process is done too: leaving early would make their sends undeliverable.
    await asyncio.sleep(float(os.environ.get("LINGER_S", "1.0")))
    await agent.leave()
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["agent"]:
        relay, key_hex, agent_id, role, expect, duration = argv[1:7]
        return asyncio.run(_agent_process(relay, key_hex, agent_id, role, [p for p in expect.split(",") if p],
                                          float(duration)))
    print(f"usage: {sys.argv[0]} agent RELAY KEYHEX ID ROLE PEER,PEER DURATION", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
