"""relay/tcp_guard.py through a RelayServer on real sockets: what a socket that never sends a request costs.

The clients are bare asyncio streams, so a test controls every byte (none at all,
a header trickled a byte at a time). A socket closed by the relay reads EOF or a
reset. The honest agents that must still get in while one address floods connect
from 127.0.0.2, another loopback address, because the caps are per source address.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from relay_fixtures import raw_join, running_relay, wait_for
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.relay import tcp_guard
from ruvector_edge.relay.metrics import RelayMetrics
from ruvector_edge.relay.router import RelayLimits

pytestmark = pytest.mark.timeout(60)

KEY = bytes(range(32))
OTHER_HOST = "127.0.0.2"
TRICKLE_S = 0.5  # one header byte this often: far below any deadline an idle timer would need to stay armed
HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


async def silent(port: int, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def closed_by_relay(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True once the relay has closed the socket (EOF or reset) within `timeout`; False if still open then."""
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except ConnectionResetError:
        return True
    except asyncio.TimeoutError:
        return False


async def trickle_until_closed(reader, writer, max_bytes: int) -> int:
    """Send one byte every TRICKLE_S until the relay closes the socket; the bytes sent, or -1 if it never did."""
    for sent in range(max_bytes):
        if await closed_by_relay(reader, TRICKLE_S):
            return sent
        try:
            writer.write(b"a")
            await writer.drain()
        except ConnectionError:
            return sent
    return -1


async def get_healthz(reader, writer) -> None:
    """One complete keep-alive request and its whole response."""
    writer.write(HEAD + b"\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200"), head
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    await asyncio.wait_for(reader.readexactly(length), 5)


async def metrics_text(port: int) -> str:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(OTHER_HOST, 0))) as http:
        async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
            return await response.text()


def handlers(server) -> int:
    """aiohttp's request handlers alive in the relay: one per socket it accepted (a task and a parser each)."""
    return len(server._runner.server.connections)


def sample(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} "):
            return float(line.split()[-1])
    raise AssertionError(f"{name}{labels} missing from /metrics")


@pytest.fixture
async def members():
    return [await P2PSwarm.create(name, KEY) for name in ("alice", "bob")]


async def test_silent_connections_are_closed_at_the_head_deadline_and_counted():
    deadline, flood_size = 1.0, 300
    async with running_relay(RelayLimits(request_head_timeout_s=deadline)) as server:
        started = time.monotonic()
        flood = [await silent(server.port) for _ in range(flood_size)]
        await wait_for(lambda: handlers(server) == flood_size, what="the flood accepted")
        closed = await asyncio.gather(*(closed_by_relay(reader, deadline + 15) for reader, _ in flood))
        assert all(closed), f"{closed.count(False)} silent connections still open"
        assert time.monotonic() - started >= deadline, "closed before the deadline"
        await wait_for(lambda: server.guard.gate.open_count == 0, what="the slots released")
        await wait_for(lambda: handlers(server) == 0, what="aiohttp's handlers and their tasks gone")
        text = await metrics_text(server.port)
        assert sample(text, "edge_relay_request_head_timeouts_total") == flood_size
        assert sample(text, "edge_relay_tcp_connections") == 1  # the /metrics request itself
        for _, writer in flood:
            writer.close()


async def test_a_header_trickled_a_byte_at_a_time_is_closed_at_the_same_deadline():
    deadline = 2.0
    async with running_relay(RelayLimits(request_head_timeout_s=deadline)) as server:
        reader, writer = await silent(server.port)
        started = time.monotonic()
        writer.write(HEAD + b"X-Slow: ")
        sent = await trickle_until_closed(reader, writer, max_bytes=int(8 * deadline / TRICKLE_S))
        assert sent >= 0, "a trickled header kept the connection open"
        assert time.monotonic() - started >= deadline
        assert sent >= 2, "closed before bytes had trickled in, so trickling was not tested"
        assert server.metrics.head_timeouts == 1
        writer.close()


async def test_a_request_ends_the_head_deadline(members):
    """A socket that sent its head is not cut at the head deadline: an agent stays joined past it, and a plain
    request is answered however long its handler runs after the head arrived."""
    deadline = 1.0
    async with running_relay(RelayLimits(request_head_timeout_s=deadline)) as server, aiohttp.ClientSession() as http:
        ws, _ = await raw_join(http, server.port, members[0])
        reader, writer = await silent(server.port)  # opened after the agent: its deadline passes later
        assert await closed_by_relay(reader, deadline + 15)
        assert server.metrics.head_timeouts == 1
        server.router.ping_all()
        assert json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["op"] == "ping"
        assert not ws.closed and server.metrics.connections == 1
        await ws.close()
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed():
    async with running_relay(RelayLimits(keepalive_timeout_s=1.0, request_head_timeout_s=60.0)) as server:
        reader, writer = await silent(server.port)
        await get_healthz(reader, writer)
        assert await closed_by_relay(reader, 15), "an idle keep-alive connection stayed open"
        writer.close()


async def test_a_second_request_trickled_a_byte_at_a_time_is_closed_at_the_keep_alive_deadline():
    """aiohttp's keep-alive timer runs from the end of a response and is not reset by bytes (pinned here:
    the relay relies on it for every head after the first)."""
    keepalive = 2.0
    async with running_relay(RelayLimits(keepalive_timeout_s=keepalive, request_head_timeout_s=60.0)) as server:
        reader, writer = await silent(server.port)
        await get_healthz(reader, writer)
        started = time.monotonic()
        writer.write(HEAD + b"X-Slow: ")
        sent = await trickle_until_closed(reader, writer, max_bytes=int(8 * keepalive / TRICKLE_S))
        assert sent >= 0, "a trickled second request kept the connection open"
        assert time.monotonic() - started >= keepalive - TRICKLE_S
        writer.close()


async def test_one_address_is_capped_at_accept_while_agents_from_elsewhere_join(members):
    cap, excess = 20, 10
    limits = RelayLimits(max_tcp_per_address=cap, request_head_timeout_s=60.0)  # only the cap may close anything
    async with running_relay(limits) as server, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(OTHER_HOST, 0))) as elsewhere, \
            aiohttp.ClientSession() as same_address:
        flood = [await silent(server.port) for _ in range(cap)]
        await wait_for(lambda: handlers(server) == cap, what="the flood accepted")
        refused = [await silent(server.port) for _ in range(excess)]
        assert all(await asyncio.gather(*(closed_by_relay(reader, 10) for reader, _ in refused)))
        assert server.metrics.refused == {"tcp_per_address": excess}
        agent, _ = await raw_join(elsewhere, server.port, members[0])
        with pytest.raises(aiohttp.ClientError):
            await raw_join(same_address, server.port, members[1])
        still_open = await asyncio.gather(*(closed_by_relay(reader, 0.01) for reader, _ in flood))
        assert not any(still_open), "the cap closed connections it had admitted"
        text = await metrics_text(server.port)
        assert sample(text, "edge_relay_connections_refused_total", '{reason="tcp_per_address"}') > excess  # aiohttp may retry once
        assert sample(text, "edge_relay_tcp_connections") == cap + 2  # the flood, the agent, /metrics
        for _, writer in flood + refused:
            writer.close()
        await wait_for(lambda: server.guard.gate.open_count == 1, what="the flood's slots released")
        late, _ = await raw_join(same_address, server.port, members[1])
        assert server.metrics.connections == 2
        await late.close()
        await agent.close()


async def test_all_addresses_together_are_capped_at_accept():
    limits = RelayLimits(max_tcp_per_address=8, max_tcp_connections=12, request_head_timeout_s=60.0)
    async with running_relay(limits) as server:
        held = [await silent(server.port) for _ in range(8)] + [await silent(server.port, OTHER_HOST) for _ in range(4)]
        await wait_for(lambda: handlers(server) == 12, what="twelve accepted")
        reader, writer = await silent(server.port, "127.0.0.3")
        assert await closed_by_relay(reader, 10)
        assert server.metrics.refused == {"tcp_total": 1}
        held[0][1].close()
        await wait_for(lambda: server.guard.gate.open_count == 11, what="a slot released")
        reader, late = await silent(server.port, "127.0.0.3")
        await wait_for(lambda: server.guard.gate.open_count == 12, what="the next one accepted")
        assert not await closed_by_relay(reader, 0.01)
        for stream in [w for _, w in held] + [writer, late]:
            stream.close()


@pytest.mark.parametrize("nofile, expected", [(1024, 1024 - tcp_guard.FD_RESERVE), (20_000, 8192), (10, 1)])
def test_the_total_cap_is_lowered_to_what_the_descriptor_limit_allows(monkeypatch, nofile, expected):
    monkeypatch.setattr(tcp_guard.resource, "getrlimit", lambda _: (nofile, tcp_guard.resource.RLIM_INFINITY))
    assert tcp_guard.TcpGuard(RelayLimits(), RelayMetrics()).gate.total == expected


def test_an_unlimited_descriptor_limit_keeps_the_configured_cap(monkeypatch):
    unlimited = tcp_guard.resource.RLIM_INFINITY
    monkeypatch.setattr(tcp_guard.resource, "getrlimit", lambda _: (unlimited, unlimited))
    assert tcp_guard.TcpGuard(RelayLimits(max_tcp_connections=50_000), RelayMetrics()).gate.total == 50_000
