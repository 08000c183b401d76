"""RelayServer over real sockets on 127.0.0.1: HTTP endpoints, close codes, the slow-consumer drop, restart.

Clients here are bare aiohttp WebSockets speaking the relay protocol by hand,
so each test controls exactly what goes over the wire (and what is not read).
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
import pytest

from relay_fixtures import raw_join, receive_close, running_relay, wait_for, ws_url
from ruvector_edge import __version__
from ruvector_edge.p2p import IdentityManager, P2PSwarm
from ruvector_edge.platform.base import FakeClock
from ruvector_edge.platform.native import NativeCryptoProvider
from ruvector_edge.relay.router import RelayLimits
from ruvector_edge.relay.server import RelayServer
from ruvector_edge.transport import relay_wire as rw
from ruvector_edge.transport.websocket import RelayClient

pytestmark = pytest.mark.timeout(30)

KEY = bytes(range(32))


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def members():
    return [await P2PSwarm.create(name, KEY) for name in ("alice", "bob", "carol")]


def base(server: RelayServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def is_envelope(message: aiohttp.WSMessage) -> bool:
    return message.type == aiohttp.WSMsgType.TEXT and message.data.startswith('{"ct"')


# --- HTTP ---------------------------------------------------------------------------


async def test_healthz_reports_status_version_and_connections(http, members):
    async with running_relay() as server:
        async with http.get(base(server) + "/healthz") as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            assert await response.json() == {"status": "ok", "version": __version__, "web_app": False, "connections": 0}
        ws, _ = await raw_join(http, server.port, members[0])
        async with http.get(base(server) + "/healthz") as response:
            assert (await response.json())["connections"] == 1
        await ws.close()


def sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert match, f"{name}{labels} missing from /metrics"
    return float(match.group(1))


async def test_metrics_expose_the_documented_series(http, members):
    alice, bob, _ = members
    await bob.register_member(alice.registration)
    async with running_relay(RelayLimits(max_frame_bytes=64 * 1024)) as server:
        received = []

        async def on_envelope(text: str) -> None:
            received.append(text)

        client = RelayClient(ws_url(server.port), bob, on_envelope=on_envelope, topics=["t"])
        await client.start()
        try:
            await client.wait_connected(5)
            ws, _ = await raw_join(http, server.port, alice)
            await wait_for(lambda: server.router.peer_count() == 2, what="two peers")
            await ws.send_str((await alice.publish("t", b"metered")).frame.decode())
            await wait_for(lambda: received, what="bob's envelope")
            server.router.ping_all()  # the RelayClient answers; pongs land in the histogram
            await wait_for(lambda: sum(server.metrics.rtt_counts) >= 1, what="a pong")
            await ws.send_str("garbage")
            assert await receive_close(ws) == rw.CLOSE_INVALID_DATA
            async with http.get(base(server) + "/metrics") as response:
                assert response.status == 200
                assert response.content_type == "text/plain"
                text = await response.text()
        finally:
            await client.stop()
    for name, kind in [
        ("edge_relay_connections", "gauge"),
        ("edge_relay_connections_total", "counter"),
        ("edge_relay_frames_total", "counter"),
        ("edge_relay_bytes_total", "counter"),
        ("edge_relay_drops_total", "counter"),
        ("edge_relay_queue_depth", "gauge"),
        ("edge_relay_rtt_seconds", "histogram"),
    ]:
        assert f"# TYPE {name} {kind}" in text, name
    assert sample(text, "edge_relay_connections_total") == 2
    assert sample(text, "edge_relay_frames_total", '{direction="in"}') >= 5
    assert sample(text, "edge_relay_frames_total", '{direction="out"}') >= 5
    assert sample(text, "edge_relay_bytes_total", '{direction="in"}') > 500
    assert sample(text, "edge_relay_drops_total", '{reason="malformed"}') == 1
    assert sample(text, "edge_relay_queue_depth", '{stat="total"}') >= 0
    assert sample(text, "edge_relay_queue_depth", '{stat="max"}') >= 0
    assert sample(text, "edge_relay_rtt_seconds_count") >= 1
    assert sample(text, "edge_relay_rtt_seconds_bucket", '{le="+Inf"}') == sample(text, "edge_relay_rtt_seconds_count")
    buckets = [float(v) for v in re.findall(r'^edge_relay_rtt_seconds_bucket\{le="[^"]+"\} (\S+)$', text, re.M)]
    assert buckets == sorted(buckets), "histogram buckets must be cumulative"
    assert text.endswith("\n")


async def test_static_files_with_wasm_and_module_mime_types(http, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>edge</title>")
    (tmp_path / "pyodide.asm.wasm").write_bytes(b"\x00asm\x01\x00\x00\x00")
    (tmp_path / "worker.mjs").write_text("export {};")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.json").write_text("{}")
    async with running_relay(web_root=tmp_path) as server:
        async with http.get(base(server) + "/") as response:
            assert response.status == 200 and response.content_type == "text/html"
            assert "<title>edge</title>" in await response.text()
        async with http.get(base(server) + "/pyodide.asm.wasm") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/wasm"
            assert await response.read() == b"\x00asm\x01\x00\x00\x00"
        async with http.get(base(server) + "/worker.mjs") as response:
            assert response.content_type in ("text/javascript", "application/javascript")
        async with http.get(base(server) + "/sub/data.json") as response:
            assert response.content_type == "application/json"
        async with http.get(base(server) + "/missing.js") as response:
            assert response.status == 404
        async with http.get(base(server) + "/healthz") as response:
            assert (await response.json())["web_app"] is True


TRAVERSALS = [
    "/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/.%2e/secret.txt", "/..%2fsecret.txt",
    "/%2e%2e%2fsecret.txt", "/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt", "/..%5csecret.txt",
    "/%252e%252e/secret.txt", "//../secret.txt", "/./../secret.txt",
]


async def raw_get(port: int, target: str) -> bytes:
    """One HTTP/1.1 request written byte for byte: an HTTP client library would normalise `..` away first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5)  # until the server closes
    finally:
        writer.close()


async def test_static_files_never_escape_the_web_root(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html>")
    (root / "sub" / "inside.txt").write_text("inside")
    secret = f"outside the web root {time.monotonic_ns()}".encode()
    (tmp_path / "secret.txt").write_bytes(secret)
    async with running_relay(web_root=root) as server:
        assert (await raw_get(server.port, "/sub/inside.txt")).endswith(b"\r\n\r\ninside")  # the raw client works
        for target in TRAVERSALS:
            response = await raw_get(server.port, target)
            assert response.startswith(b"HTTP/1.1 "), (target, response[:80])
            assert secret not in response, f"{target} served a file outside the web root"


async def test_without_a_web_app_the_root_explains_how_to_build_it(http):
    async with running_relay() as server:
        async with http.get(base(server) + "/") as response:
            assert response.status == 503
            assert "build-web.sh" in await response.text()


# --- connections that never authenticate ----------------------------------------------


async def _connect_idle(session: aiohttp.ClientSession, port: int):
    """A WebSocket that reads its challenge and never answers; (ws, time it started connecting) or (None, None)
    if refused. The relay's deadline runs from a moment after that start, so it bounds the deadline from below."""
    started = time.monotonic()
    try:
        ws = await session.ws_connect(ws_url(port))
    except aiohttp.WSServerHandshakeError as exc:
        assert exc.status == 503, exc
        return None, None
    assert json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["op"] == "challenge"
    return ws, started


async def _join_retrying(http, port: int, swarm, timeout: float = 15.0):
    """raw_join, retried while the relay answers 503 (its handshake slots are full), bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return (await raw_join(http, port, swarm))[0]
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 503 and time.monotonic() < deadline, exc
            await asyncio.sleep(0.05)


async def test_a_flood_of_silent_connections_is_capped_closed_on_time_and_honest_agents_still_join(http, members):
    hello_timeout, cap, flood_size = 1.0, 150, 200
    limits = RelayLimits(hello_timeout_s=hello_timeout, max_pending=cap, max_pending_per_address=cap)
    async with running_relay(limits) as server, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as flood_session:
        flood = asyncio.gather(*(_connect_idle(flood_session, server.port) for _ in range(flood_size)))
        honest = asyncio.gather(*(_join_retrying(http, server.port, member) for member in members))
        idle = await flood
        accepted = [(ws, at) for ws, at in idle if ws is not None]
        # the honest agents may have taken handshake slots while the flood was arriving
        assert cap - len(members) <= len(accepted) <= cap
        honest_sockets = await honest
        for ws, started in accepted:
            code = await receive_close(ws, timeout=10)
            assert code == rw.CLOSE_POLICY, code
            assert time.monotonic() - started >= hello_timeout, "closed before its deadline"
        await wait_for(lambda: server.metrics.connections == len(members), what="the silent connections released")
        assert server.metrics.handshake_timeouts == len(accepted)
        assert server.metrics.connections_pending == 0
        assert sorted(server.router._swarms[members[0].swarm_id].agents) == ["alice", "bob", "carol"]
        async with http.get(base(server) + "/metrics") as response:
            text = await response.text()
        assert sample(text, "edge_relay_connections") == len(members)
        assert sample(text, "edge_relay_connections_pending") == 0
        assert sample(text, "edge_relay_handshake_timeouts_total") == len(accepted)
        refused = sample(text, "edge_relay_connections_refused_total", '{reason="pending"}')
        assert refused >= flood_size - len(accepted)  # plus the honest agents' refused attempts, if any
        for ws in honest_sockets:
            assert not ws.closed
            await ws.close()


async def test_connections_per_address_are_capped_on_ws_and_gun(http, members):
    async with running_relay(RelayLimits(max_connections_per_address=3)) as server:
        first, _ = await raw_join(http, server.port, members[0])
        second, _ = await raw_join(http, server.port, members[1])
        gun = await http.ws_connect(f"ws://127.0.0.1:{server.port}/gun")
        for path in ("/ws", "/gun"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"ws://127.0.0.1:{server.port}{path}")
            assert refused.value.status == 503
            assert refused.value.headers["Connection"] == "close"  # a refused socket is not kept alive either
        assert server.metrics.refused == {"per_address": 2}
        await gun.close()
        third = await _join_retrying(http, server.port, members[2], timeout=5)  # the slot is free once /gun ends
        assert server.metrics.connections == 3
        for ws in (first, second, third):
            await ws.close()


async def test_churn_of_distinct_agents_through_real_sockets_keeps_the_registry_flat(http):
    """1,000 distinct agents join and leave over real WebSockets, 50 at once, 50 a minute (fake wall clock).

    The member limit is one batch: before departed agents were forgotten the 51st was refused. The 20,000-agent
    version of this drives the router directly (test_relay_router), since 20,000 real handshakes take minutes here."""
    clock = FakeClock()
    identity = await IdentityManager.generate(NativeCryptoProvider())
    swarm_id = (await P2PSwarm.create("probe", KEY)).swarm_id
    batch, total = 50, 1_000
    held: list[int] = []
    async with running_relay(RelayLimits(max_members_per_swarm=batch), clock=clock) as server, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def join(index: int):
            registration = await identity.create_registration(f"churn{index}", ["worker"], swarm=swarm_id, clock=clock)
            ws = await session.ws_connect(ws_url(server.port))
            challenge = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)["challenge"]
            proof = await identity.sign(rw.auth_bytes(swarm_id, registration.agent_id, challenge))
            await ws.send_str(rw.hello(registration, proof))
            for _ in range(10):  # the relay's pings may come first
                frame = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
                if frame["op"] == "welcome":
                    return ws
            raise AssertionError(f"no welcome for churn{index}")

        for start in range(0, total, batch):
            sockets = await asyncio.gather(*(join(index) for index in range(start, start + batch)))
            registry = server.router._swarms[swarm_id].registry
            assert len(registry) == batch
            await asyncio.gather(*(ws.close() for ws in sockets))
            await wait_for(lambda: server.router.peer_count() == 0, timeout=10, what="the batch to leave")
            state = server.router._swarms[swarm_id]
            assert (len(state.registry), len(state.agents), len(state.registration_json)) == (0, 0, 0)
            held.append(len(state.registry._departed))
            clock.advance(60_000)
        hold_batches = registry.hold_departed_ms // 60_000 + 1
        assert max(held) <= hold_batches * batch and held[-1] == held[hold_batches], held
        assert server.gate._open == {} and server.metrics.connections_pending == 0


# --- bad frames ---------------------------------------------------------------------


async def test_oversized_frame_closes_1009_and_is_counted(http, members):
    alice, bob, _ = members
    async with running_relay(RelayLimits(max_frame_bytes=8 * 1024)) as server:
        ws_bob, _ = await raw_join(http, server.port, bob, ["t"])
        ws, _ = await raw_join(http, server.port, alice)
        await ws.send_str((await alice.publish("t", b"x" * 20_000)).frame.decode())
        assert await receive_close(ws) == rw.CLOSE_TOO_BIG
        # bob is still connected and hears that alice is gone (after hearing that she came)
        message = json.loads((await asyncio.wait_for(ws_bob.receive(), 5)).data)
        if message.get("op") == "member":
            assert message["registration"]["agent_id"] == "alice"
            message = json.loads((await asyncio.wait_for(ws_bob.receive(), 5)).data)
        assert message == {"op": "left", "agent_id": "alice"}
        await ws_bob.close()
        # The relay closed with 1009; whatever code the client echoes in its close reply, it is counted.
        await wait_for(lambda: server.metrics.drops.get("too_big") == 1, timeout=2, what="too_big counted")


async def test_garbage_frame_closes_1007(http, members):
    async with running_relay() as server:
        ws, _ = await raw_join(http, server.port, members[0])
        await ws.send_bytes(b"\xde\xad\xbe\xef not a frame")
        assert await receive_close(ws) == rw.CLOSE_INVALID_DATA
        assert server.metrics.drops == {"malformed": 1}
        await wait_for(lambda: server.router.peer_count() == 0, what="connection released")


async def test_garbage_before_hello_closes_1007(http):
    async with running_relay() as server:
        ws = await http.ws_connect(ws_url(server.port))
        assert json.loads((await ws.receive()).data)["op"] == "challenge"
        await ws.send_str("{{{{")
        assert await receive_close(ws) == rw.CLOSE_INVALID_DATA


async def test_utf16_binary_envelope_closes_1007(http, members):
    """A binary frame with a valid envelope encoded as UTF-16 is malformed input: close 1007, counted."""
    alice, bob, _ = members
    async with running_relay() as server:
        ws_bob, _ = await raw_join(http, server.port, bob, ["t"])
        ws, _ = await raw_join(http, server.port, alice)
        await ws.send_bytes((await alice.publish("t", b"x")).frame.decode().encode("utf-16"))
        assert await receive_close(ws) == rw.CLOSE_INVALID_DATA
        assert server.metrics.drops.get("malformed") == 1
        await ws_bob.close()


async def test_spoofed_sender_closes_1008(http, members):
    alice, bob, _ = members
    async with running_relay() as server:
        ws, _ = await raw_join(http, server.port, bob)
        await ws.send_str((await alice.publish("t", b"x")).frame.decode())
        assert await receive_close(ws) == rw.CLOSE_POLICY


# --- slow consumer --------------------------------------------------------------------


async def _flood_with_a_slow_reader(http, members, server, max_frames: int = 300):
    """alice publishes 200 kB frames on topic t in lock step with carol, who reads; bob subscribed and never reads.

    Lock step means bob's queue only grows once his socket buffers are full, i.e.
    once the relay's writer to bob is really blocked. Stops as soon as bob
    is dropped. Returns the three sockets and carol's per-frame latencies."""
    alice, bob, carol = members
    ws_bob, _ = await raw_join(http, server.port, bob, ["t"])
    ws_carol, _ = await raw_join(http, server.port, carol, ["t"])
    ws_alice, _ = await raw_join(http, server.port, alice)
    await wait_for(lambda: sum(len(s.subscribers.get("t", ())) for s in server.router._swarms.values()) == 2,
                   what="both subscriptions")
    latencies: list[float] = []
    payload = bytes(200_000)
    for _ in range(max_frames):
        frame = (await alice.publish("t", payload)).frame.decode()
        start = time.monotonic()
        await ws_alice.send_str(frame)
        while True:
            message = await asyncio.wait_for(ws_carol.receive(), 5)
            if is_envelope(message):
                break
            assert message.type == aiohttp.WSMsgType.TEXT, f"carol's connection ended: {message}"
        latencies.append(time.monotonic() - start)
        if server.metrics.drops.get("slow_consumer"):
            break
    return ws_bob, ws_carol, ws_alice, latencies


def _abort(*sockets) -> None:
    for ws in sockets:
        connection = ws._response.connection
        if connection is not None and connection.transport is not None:
            connection.transport.abort()


async def test_slow_consumer_is_dropped_and_counted_while_others_keep_receiving(http, members):
    limits = RelayLimits(queue_length=4, rate_per_s=100_000, burst=100_000)
    async with running_relay(limits) as server:
        sockets = await _flood_with_a_slow_reader(http, members, server)
        latencies = sockets[3]
        try:
            assert server.metrics.drops.get("slow_consumer") == 1, f"bob never dropped after {len(latencies)} frames"
            assert "bob" not in server.router._swarms[members[0].swarm_id].agents
            assert max(latencies) < 1.0, "carol was stalled by bob"
            # After the drop carol keeps getting frames promptly (one at a time: the queue holds only 4).
            alice_ws, carol_ws = sockets[2], sockets[1]
            for _ in range(5):
                start = time.monotonic()
                await alice_ws.send_str((await members[0].publish("t", b"after")).frame.decode())
                while True:
                    message = await asyncio.wait_for(carol_ws.receive(), 2)
                    if is_envelope(message):
                        break
                    assert message.type == aiohttp.WSMsgType.TEXT, (message, server.metrics.drops)
                assert time.monotonic() - start < 1.0
            assert server.metrics.drops == {"slow_consumer": 1}
        finally:
            _abort(*sockets[:3])


async def test_slow_consumer_connection_is_actually_closed(http, members):
    """Dropping a slow consumer must release its socket, not leave it open with a writer stuck in drain.

    alice bursts 100 frames of 200 kB: far more than bob's socket buffers hold, so the
    relay's writer to bob is blocked mid-send when bob is dropped."""
    alice, bob, carol = members
    limits = RelayLimits(queue_length=4, rate_per_s=100_000, burst=100_000)
    async with running_relay(limits) as server:
        ws_alice, _ = await raw_join(http, server.port, alice)
        ws_bob, _ = await raw_join(http, server.port, bob, ["t"])
        ws_carol, _ = await raw_join(http, server.port, carol, ["t"])
        await wait_for(lambda: len(server.router._swarms[alice.swarm_id].subscribers.get("t", ())) == 2,
                       what="both subscriptions")
        frames = [(await alice.publish("t", bytes(200_000))).frame.decode() for _ in range(100)]
        got = 0

        async def carol_reads():
            nonlocal got
            while got < len(frames):
                message = await ws_carol.receive()
                assert message.type == aiohttp.WSMsgType.TEXT, message
                got += is_envelope(message)

        reader = asyncio.create_task(carol_reads())
        try:
            for frame in frames:
                await ws_alice.send_str(frame)
            await asyncio.wait_for(reader, 10)
            assert server.metrics.drops == {"slow_consumer": 1}
            await wait_for(lambda: len(server._connections) == 2, timeout=2,
                           what="the slow consumer's connection to be closed")
            assert server.metrics.connections == 2
        finally:
            reader.cancel()
            _abort(ws_bob, ws_carol, ws_alice)


# --- lifecycle --------------------------------------------------------------------------


async def test_stop_closes_agents_with_going_away(http, members):
    """stop() promises 1001 so clients know to reconnect; the close frame must go out before the sockets are torn down."""
    server = RelayServer("127.0.0.1", 0, None)
    await server.start()
    ws, _ = await raw_join(http, server.port, members[0])
    await server.stop()
    assert await receive_close(ws) == rw.CLOSE_GOING_AWAY


async def test_graceful_stop_then_restart_on_the_same_port(http, members):
    server = RelayServer("127.0.0.1", 0, None)
    await server.start()
    port = server.port
    ws, _ = await raw_join(http, port, members[0])
    await server.stop()
    await receive_close(ws)
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(f"http://127.0.0.1:{port}/healthz")
    again = RelayServer("127.0.0.1", port, None)
    await again.start()
    try:
        assert again.port == port
        ws2, welcome = await raw_join(http, port, members[0])
        assert welcome["members"] == []  # a fresh relay: nothing carried over
        async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
            assert (await response.json())["connections"] == 1
        await ws2.close()
    finally:
        await again.stop()


async def test_stop_while_a_consumer_is_stuck_is_bounded(http, members):
    """Shutdown must not hang on a connection whose reader stopped reading."""
    limits = RelayLimits(queue_length=4, rate_per_s=100_000, burst=100_000)
    server = RelayServer("127.0.0.1", 0, None, limits)
    await server.start()
    port = server.port
    sockets = await _flood_with_a_slow_reader(http, members, server)
    start = time.monotonic()
    await asyncio.wait_for(server.stop(), 10)
    assert time.monotonic() - start < 5
    again = RelayServer("127.0.0.1", port, None)
    await again.start()
    await again.stop()
    _abort(*sockets[:3])
