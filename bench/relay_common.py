"""Harness shared by bench/relay_*.py: server processes, agent links, percentiles.

Every benchmark runs the relay (RelayServer, the real thing) and a bare aiohttp
WebSocket server of the same library side by side, each in its own process,
with the clients in further processes. The bare server parses nothing: it
forwards each text message to every other connection ("bare"), or, for the
load benchmark, to the connections that subscribed to the topic it finds by
substring in the frame ("bare-topic"). By default servers are pinned to the
first CPU and clients to the others, so the two never fight for one core.
"""

from __future__ import annotations

import asyncio
import base64
import cProfile
import io
import json
import math
import multiprocessing as mp
import os
import pstats
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

_PY = Path(__file__).resolve().parents[1] / "py"
if str(_PY) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(_PY))

import aiohttp  # noqa: E402
from aiohttp import WSMsgType, web  # noqa: E402

from ruvector_edge.p2p import P2PSwarm  # noqa: E402
from ruvector_edge.p2p.records import Registration  # noqa: E402
from ruvector_edge.relay.router import RelayLimits  # noqa: E402
from ruvector_edge.relay.server import RelayServer  # noqa: E402
from ruvector_edge.transport import relay_wire as rw  # noqa: E402

HOST = "127.0.0.1"
MAX_FRAME = 2 * 1024 * 1024
ENVELOPE_PREFIX = '{"ct":'  # canonical envelopes start here (sorted keys); control frames never do
CTX = mp.get_context("spawn")


# Process set-up ---------------------------------------------------------------
def raise_nofile(want: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(want, hard) if hard != resource.RLIM_INFINITY else want
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_plan(pin: bool) -> tuple[list[int] | None, list[int] | None]:
    """(server cpus, client cpus): the first CPU for servers, the rest for clients, when there are ≥ 2."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return cpus[:1], cpus[1:]


def pin(cpus: list[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)


def rss_kib(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def emit(**fields) -> None:
    print(json.dumps(fields, separators=(", ", ": ")), flush=True)


# Servers -------------------------------------------------------------------------
async def _bare_app(kind: str) -> web.Application:
    peers: set[web.WebSocketResponse] = set()
    topics: dict[str, set[web.WebSocketResponse]] = {}

    async def broadcast(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, compress=False, autoping=True)
        await ws.prepare(request)
        peers.add(ws)
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    data = message.data
                    for other in tuple(peers):
                        if other is not ws:
                            await other.send_str(data)
        finally:
            peers.discard(ws)
        return ws

    async def topic_forward(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, compress=False, autoping=True)
        await ws.prepare(request)
        mine: list[str] = []
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                data = message.data
                if data.startswith('{"op":"sub"'):  # the only frame it parses: a subscription
                    for topic in json.loads(data)["topics"]:
                        topics.setdefault(topic, set()).add(ws)
                        mine.append(topic)
                    continue
                start = data.find('"topic":"') + 9
                topic = data[start:data.index('"', start)]
                for other in tuple(topics.get(topic, ())):
                    if other is not ws:
                        await other.send_str(data)
        finally:
            for topic in mine:
                topics.get(topic, set()).discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", broadcast if kind == "bare" else topic_forward)
    return app


async def _spread_ping_loop(server: RelayServer, slices: int = 50) -> None:
    """Diagnostic prototype of a fix (not the relay's code): the same pings, one peer in `slices` per tick,
    so the 1000 pings and 1000 pongs of ping_all() are spread over the interval instead of landing at once."""
    import ruvector_edge.relay.server as relay_server
    router = server.router
    tick = 0
    while True:
        await asyncio.sleep(relay_server.PING_INTERVAL_S / slices)
        now = router.monotonic()
        for conn_id, state in tuple(router._peers.items()):
            if conn_id % slices == tick % slices:
                router._next_ping += 1
                if len(state.pings) > 8:
                    state.pings.clear()
                state.pings[router._next_ping] = now
                router._send(state, rw.encode("ping", id=router._next_ping))
        tick += 1


async def _serve(kind: str, limits: dict, conn, ping_interval: float | None, spread_pings: bool = False) -> None:
    raise_nofile()
    if ping_interval is not None:  # diagnostic: the relay's application-level ping period
        import ruvector_edge.relay.server as relay_server
        relay_server.PING_INTERVAL_S = ping_interval
    if kind == "relay":
        server = RelayServer(HOST, 0, None, RelayLimits(**limits))
        if spread_pings:
            server._ping_loop = lambda: _spread_ping_loop(server)  # type: ignore[method-assign]
        await server.start()
        port, stop = server.port, server.stop
        metrics = server.metrics
    else:
        runner = web.AppRunner(await _bare_app(kind), access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, reuse_address=True, backlog=1024)
        await site.start()
        port, stop = site._server.sockets[0].getsockname()[1], runner.cleanup  # type: ignore[union-attr]
        metrics = None
    conn.send(("ready", port, os.getpid()))
    loop = asyncio.get_running_loop()
    lag = LoopLag()
    commands: asyncio.Queue = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    profiler: cProfile.Profile | None = None
    try:
        while True:
            command, *args = await commands.get()
            if command == "stop":
                break
            if command == "profile_on":
                profiler = cProfile.Profile()
                profiler.enable()
                conn.send(("ok",))
            elif command == "profile_off":
                top = []
                if profiler is not None:
                    profiler.disable()
                    top = _top_functions(profiler, args[0] if args else 15)
                    profiler = None
                conn.send(("profile", top))
            elif command == "stats":
                conn.send(("stats", _relay_stats(metrics) if metrics is not None else {}))
            elif command == "lag":
                conn.send(("lag", lag.take()))
    finally:
        loop.remove_reader(conn.fileno())
        await stop()


class LoopLag:
    """Event-loop stalls in this process: a 5 ms ticker records how late it wakes (max and ≥ 50 ms count)."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.worst = 0.0
        self.stalls = 0
        self.task = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.period)
            late = loop.time() - before - self.period
            self.worst = max(self.worst, late)
            self.stalls += late >= 0.05

    def take(self) -> dict:
        out = {"max_loop_lag_ms": round(self.worst * 1000, 1), "stalls_over_50ms": self.stalls}
        self.worst, self.stalls = 0.0, 0
        return out


def _relay_stats(metrics) -> dict:
    queued, worst = metrics.queue_depths()
    return {"connections": metrics.connections, "frames_in": metrics.frames_in, "frames_out": metrics.frames_out,
            "drops": dict(metrics.drops), "queued_total": queued, "queued_max": worst}


def _top_functions(profiler: cProfile.Profile, limit: int) -> list[dict]:
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = stats.total_tt or 1e-9
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        short = "/".join(Path(filename).parts[-2:]) if filename.startswith("/") else filename
        rows.append({"fn": f"{short}:{line}({name})", "calls": calls, "tottime_s": round(tottime, 4),
                     "tottime_pct": round(100 * tottime / total, 1), "cumtime_s": round(cumtime, 4)})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows[:limit]


def _server_main(kind: str, limits: dict, conn, cpus, ping_interval, spread_pings) -> None:
    pin(cpus)
    asyncio.run(_serve(kind, limits, conn, ping_interval, spread_pings))


class ServerProcess:
    """One server in its own process, driven over a pipe (profile on/off, stats, stop)."""

    def __init__(self, kind: str, limits: RelayLimits | None = None, cpus: list[int] | None = None,
                 ping_interval: float | None = None, spread_pings: bool = False) -> None:
        self.kind = kind
        self.limits = limits or RelayLimits()
        parent, child = CTX.Pipe()
        self.conn = parent
        self.process = CTX.Process(target=_server_main, args=(kind, asdict(self.limits), child, cpus, ping_interval, spread_pings),
                                   daemon=True)
        self.process.start()
        if not parent.poll(30):
            raise SystemExit(f"{kind} server did not start")
        _, self.port, self.pid = parent.recv()
        self.url = f"ws://{HOST}:{self.port}/ws"

    def call(self, *command, timeout: float = 30.0):
        self.conn.send(command)
        if not self.conn.poll(timeout):
            raise SystemExit(f"{self.kind} server did not answer {command[0]}")
        reply = self.conn.recv()
        return reply[1] if len(reply) > 1 else None

    def settle(self, max_s: float = 120.0) -> float:
        """Wait until the relay's outbound queues are empty twice in a row (after a join storm); seconds waited."""
        start = time.monotonic()
        quiet = 0
        while quiet < 2 and time.monotonic() - start < max_s:
            time.sleep(0.2)
            quiet = quiet + 1 if self.call("stats").get("queued_total", 0) == 0 else 0
        return time.monotonic() - start

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


# Client processes ------------------------------------------------------------------
class Worker:
    """A client process running `target(conn, *args)`; the parent talks to it over a pipe."""

    def __init__(self, target, *args, cpus: list[int] | None = None) -> None:
        parent, child = CTX.Pipe()
        self.conn = parent
        self.process = CTX.Process(target=_worker_main, args=(target, child, cpus, args), daemon=True)
        self.process.start()

    def send(self, *message) -> None:
        self.conn.send(message)

    def recv(self, timeout: float = 60.0):
        if not self.conn.poll(timeout):
            raise SystemExit(f"a client process did not answer within {timeout} s")
        reply = self.conn.recv()
        if reply[0] == "error":
            raise SystemExit(f"client process failed: {reply[1]}")
        return reply

    def join(self) -> None:
        self.process.join(15)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _worker_main(target, conn, cpus, args) -> None:
    pin(cpus)
    raise_nofile()
    try:
        asyncio.run(target(conn, *args))
    except BaseException as exc:  # report instead of leaving the parent waiting
        conn.send(("error", repr(exc)))
        raise


class Commands:
    """Pipe commands from the parent as an asyncio queue (the pipe is read when readable, never blocking the loop)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.queue: asyncio.Queue = asyncio.Queue()
        asyncio.get_running_loop().add_reader(conn.fileno(), self._readable)

    def _readable(self) -> None:
        while self.conn.poll():
            self.queue.put_nowait(self.conn.recv())

    async def get(self, timeout: float = 300.0):
        return await asyncio.wait_for(self.queue.get(), timeout)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.conn.fileno())


def shutdown(workers: list, *servers) -> None:
    """Stop every client worker (even those whose pipe already broke), then the servers."""
    for worker in workers:
        try:
            worker.send("stop")
        except (BrokenPipeError, OSError):
            pass
    for worker in workers:
        worker.join()
    for server in servers:
        server.stop()


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


# Agents ------------------------------------------------------------------------------
async def make_agents(names: list[str], swarm_key: bytes) -> list[P2PSwarm]:
    return [await P2PSwarm.create(name, swarm_key, capabilities=["bench"]) for name in names]


async def relay_handshake(ws: aiohttp.ClientWebSocketResponse, swarm: P2PSwarm,
                          registrations: dict[str, Registration], timeout: float = 30.0) -> None:
    """challenge → signed hello → welcome, as RelaySession does; members seen on the way are kept."""
    deadline = time.monotonic() + timeout
    while True:
        message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
        if message.type != WSMsgType.TEXT:
            raise ConnectionError(f"relay closed during the handshake: {message.type} {message.data!r}")
        frame = rw.decode(message.data, MAX_FRAME)
        if isinstance(frame, rw.RoutedEnvelope):
            continue
        if frame.op == "challenge":
            reg = swarm.registration
            proof = await swarm.identity.sign(rw.auth_bytes(reg.swarm, reg.agent_id, rw.challenge_of(frame)))
            await ws.send_str(rw.hello(reg, proof))
        elif frame.op == "welcome":
            for body in frame.body.get("members", []):
                registrations.setdefault(body["agent_id"], Registration.from_dict(body))
            return
        elif frame.op == "member":
            body = frame.body["registration"]
            registrations.setdefault(body["agent_id"], Registration.from_dict(body))


async def open_link(http: aiohttp.ClientSession, url: str, swarm: P2PSwarm | None, topics: list[str],
                    registrations: dict[str, Registration]) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket to `url`; with a swarm it is the relay (handshake first). Subscriptions go out either way."""
    ws = await http.ws_connect(url, max_msg_size=MAX_FRAME, heartbeat=None, compress=0, autoping=True)
    if swarm is not None:
        await relay_handshake(ws, swarm, registrations)
    if topics:
        await ws.send_str(rw.subscribe(topics))
    return ws


def control_reply(text: str, registrations: dict[str, Registration] | None = None,
                  want: frozenset[str] | None = None) -> str | None:
    """Handle a relay control frame cheaply: answer pings, remember members (only `want`ed ones when given)."""
    if '"op":"ping"' in text:
        return rw.encode("pong", id=json.loads(text)["id"])
    if registrations is not None and '"op":"member"' in text:
        if want is not None and not any(f'"agent_id":"{agent}"' in text for agent in want):
            return None  # a join storm brings N member frames per link: parse only what is needed
        body = json.loads(text)["registration"]
        registrations.setdefault(body["agent_id"], Registration.from_dict(body))
    return None


class LiteLink(asyncio.Protocol):
    """A minimal WebSocket client (RFC 6455 framing over an asyncio Protocol), used by receivers.

    Receiving through aiohttp's client costs a message object, a queue hop and a
    task wake-up per frame, several times the server's cost of sending it, so two
    cores of clients could not saturate one core of server. This client parses
    frame headers in `data_received` and hands envelopes to a callback as a slice
    of its buffer; it is the same code for the relay and the bare server.
    """

    def __init__(self, on_envelope, registrations: dict[str, Registration] | None = None,
                 want: frozenset[str] | None = None) -> None:
        self.on_envelope = on_envelope  # called as on_envelope(buffer, start, end), synchronously
        self.registrations = registrations
        self.want = want
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.controls: asyncio.Queue[str] | None = asyncio.Queue()  # control frames until the handshake is done

    @classmethod
    async def connect(cls, url: str, on_envelope, registrations=None, want=None) -> "LiteLink":
        hostport, _, path = url.removeprefix("ws://").partition("/")
        host, _, port = hostport.partition(":")
        loop = asyncio.get_running_loop()
        _, link = await loop.create_connection(lambda: cls(on_envelope, registrations, want), host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        link.transport.write(  # type: ignore[union-attr]
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        await asyncio.wait_for(link.upgraded, 30)
        return link

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed before the upgrade"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, data: bytes) -> None:
        n = len(data)
        if n < 126:
            header = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        masked = (int.from_bytes(data, "little") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "little")).to_bytes(n, "little")
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(header + mask + masked)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._send(0x8, (1000).to_bytes(2, "big"))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.upgraded.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(bytes(buffer[:80]).decode(errors="replace")))
                return
            del buffer[:end + 4]
            self.upgraded.set_result(None)
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            b0, length = buffer[pos], buffer[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buffer[pos + 2:pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buffer[pos + 2:pos + 10], "big"), 10
            start = pos + head
            end = start + length
            if end > size:
                break
            opcode = b0 & 0x0F
            if opcode == 0x1:
                if buffer.startswith(b'{"ct":', start):
                    self.on_envelope(buffer, start, end)
                else:
                    self._control(bytes(buffer[start:end]).decode())
            elif opcode == 0x9:
                self._send(0xA, bytes(buffer[start:end]))
            elif opcode == 0x8:
                self.close()
            pos = end
        if pos:
            del buffer[:pos]

    def _control(self, text: str) -> None:
        if self.controls is not None:
            self.controls.put_nowait(text)
            return
        reply = control_reply(text, self.registrations, self.want)
        if reply is not None:
            self.send_text(reply)

    async def relay_handshake(self, swarm: P2PSwarm, timeout: float = 60.0) -> None:
        """challenge → signed hello → welcome over this link; members in the welcome are kept if wanted."""
        assert self.controls is not None
        try:
            deadline = time.monotonic() + timeout
            while True:
                text = await asyncio.wait_for(self.controls.get(), max(0.1, deadline - time.monotonic()))
                frame = rw.decode(text, MAX_FRAME)
                if isinstance(frame, rw.RoutedEnvelope):
                    continue
                if frame.op == "challenge":
                    reg = swarm.registration
                    proof = await swarm.identity.sign(rw.auth_bytes(reg.swarm, reg.agent_id, rw.challenge_of(frame)))
                    self.send_text(rw.hello(reg, proof))
                elif frame.op == "welcome":
                    if self.registrations is not None:
                        for body in frame.body.get("members", []):
                            if self.want is None or body["agent_id"] in self.want:
                                self.registrations.setdefault(body["agent_id"], Registration.from_dict(body))
                    break
                elif frame.op == "member":
                    control_reply(text, self.registrations, self.want)
        finally:
            self.release_controls()

    def release_controls(self) -> None:
        """From now on control frames are handled on arrival (pings answered, wanted members kept)."""
        queued, self.controls = self.controls, None
        while queued is not None and not queued.empty():
            self._control(queued.get_nowait())


async def open_lite(url: str, swarm: P2PSwarm | None, topics: list[str], on_envelope,
                    registrations: dict[str, Registration] | None = None, want: frozenset[str] | None = None) -> LiteLink:
    """A LiteLink to `url`; with a swarm it is the relay (handshake first). Subscriptions go out either way."""
    link = await LiteLink.connect(url, on_envelope, registrations, want)
    if swarm is not None:
        await link.relay_handshake(swarm)
    else:
        link.release_controls()
    if topics:
        link.send_text(rw.subscribe(topics))
    return link


async def connect_many(factories, concurrency: int):
    """Run connection coroutines with bounded concurrency (a SYN storm overflows the accept backlog)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(factory):
        async with gate:
            return await factory()

    return await asyncio.gather(*(one(f) for f in factories))


def payload_for_frame(target_frame_bytes: int) -> int:
    """Payload size that makes a broadcast envelope about `target_frame_bytes` long (base64 grows 4/3; ~560 B fixed)."""
    return max(16, int((target_frame_bytes - 560) * 3 / 4))
