"""RelayClient leaves a relay that has gone silent (transport/websocket.py `liveness_s`): a relay host
cut off sends no close and no reset, so only the silence tells. On loopback, a proxy in front of
relay A stops passing bytes without closing anything; the agent must move on to relay B.
(tests/test_federation_netns.py cuts a real link, where the tests run as root.)"""

from __future__ import annotations

import asyncio

import pytest

from relay_fixtures import TEST_SWARM_KEY, running_relay, wait_for, ws_url
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.transport.websocket import RelayClient

pytestmark = pytest.mark.timeout(60)


class SilentProxy:
    """Passes TCP bytes to `port` until `cut()`, then swallows them, both ways, keeping the sockets open."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.cut_off = False
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self.cut_off = True

    async def _serve(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True)

    async def _pipe(self, reader, writer) -> None:
        while data := await reader.read(65536):
            if not self.cut_off:
                writer.write(data)
                await writer.drain()

    async def stop(self) -> None:
        for writer in self.writers:
            writer.close()
        self.server.close()
        await self.server.wait_closed()


async def test_an_agent_leaves_a_relay_gone_silent_for_the_next_one():
    async with running_relay() as a, running_relay() as b:
        proxy = SilentProxy(a.port)
        port = await proxy.start()
        swarm = await P2PSwarm.create("alice", TEST_SWARM_KEY)
        link = RelayClient(f"{ws_url(port)},{ws_url(b.port)}", swarm, on_envelope=lambda raw: asyncio.sleep(0),
                           backoff_initial_s=0.05, liveness_s=1.0)
        await link.start()
        try:
            await link.wait_connected(10)
            assert link.target == ws_url(port)
            proxy.cut()
            await wait_for(lambda: link.target == ws_url(b.port) and link.connected.is_set(), timeout=15,
                           what="the agent to leave the silent relay for relay B")
            assert len(b._connections) == 1
        finally:
            await link.stop(leave=False)
            await proxy.stop()
