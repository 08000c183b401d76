"""The relay node's I/O shell: aiohttp on one port for the web app, /healthz, /metrics and /ws.

All routing decisions live in router.py and admission decisions in admission.py;
this file only moves bytes, keeps a bounded outbound queue and a writer task per
connection (so one slow reader never blocks the others), and shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

from aiohttp import WSMsgType, web

from ..gun import GunEngine, add_gun_routes
from ..platform.base import Clock
from ..platform.native import NativeCryptoProvider
from ..transport import relay_wire as rw
from .admission import ConnectionGate, Ticket
from .federation.backplane import FederationConfig
from .federation.gun_bridge import GunBridge
from .federation.nats_bus import NatsBus, NatsOptions
from .gate_store import GateStore
from .http import add_http_routes
from .metrics import RelayMetrics
from .queued_peer import QueuedPeer
from .router import RelayLimits, RelayRouter
from .tcp_guard import TcpGuard

log = logging.getLogger(__name__)

PING_INTERVAL_S = 5.0
PING_SLICES = 50  # each agent is pinged once per interval, a fiftieth of them at a time (hello deadlines checked as often)
CLOSE_GRACE_S = 1.0
_TICKET = web.RequestKey("ticket", Ticket)


class _Connection(QueuedPeer):
    """A WebSocket peer: frames go out with `send_str`; a consumer too slow to take even the
    close frame has its TCP connection cut after CLOSE_GRACE_S."""

    write_errors = (ConnectionError, RuntimeError, asyncio.CancelledError)

    def __init__(self, conn_id: int, ws: web.WebSocketResponse, queue_length: int, transport=None) -> None:
        super().__init__(conn_id, queue_length)
        self.ws = ws
        self.transport = transport
        self.writer_task: asyncio.Task | None = None

    async def _write(self, text: str) -> None:
        await self.ws.send_str(text)

    def _on_close(self) -> None:
        asyncio.get_running_loop().call_later(CLOSE_GRACE_S, self._abort_if_stuck)

    def _abort_if_stuck(self) -> None:
        if self.writer_task is not None and not self.writer_task.done() and self.transport is not None:
            self.transport.abort()

    async def _finish(self) -> None:
        if not self.ws.closed:
            await self.ws.close(code=self.close_code or rw.CLOSE_GOING_AWAY, message=self.close_reason.encode()[:120])


class RelayServer:
    def __init__(self, host: str, port: int, web_root: Path | None, limits: RelayLimits | None = None,
                 shm_hub: str | None = None, gun_store: str | None = None, clock: Clock | None = None,
                 federation: tuple[NatsOptions, FederationConfig] | None = None, gate_store: str | None = None) -> None:
        """`gun_store`: SQLite file of the GUN graph served on /gun (None keeps it in memory).
        `gate_store`: SQLite file of what the gatekeeper holds for admitted swarms (revocations, certificates,
        held epoch keys), so a restart keeps them (None keeps them in memory).
        `clock`: the wall clock registrations and held bindings are judged by (a fake one in tests).
        `federation`: join a NATS system and carry swarm traffic across relays (relay/federation)."""
        self.host, self.port, self.web_root = host, port, web_root
        self.shm_hub_name = shm_hub
        self._shm_hub = None
        self.limits = limits or RelayLimits()
        self.metrics = RelayMetrics()
        self.router = RelayRouter(NativeCryptoProvider(), self.limits, metrics=self.metrics, clock=clock)
        self.gate = ConnectionGate(self.limits, self.metrics)
        self.guard = TcpGuard(self.limits, self.metrics)
        self.metrics.tcp_open = lambda: self.guard.gate.open_count
        self._ids = itertools.count(1)
        self._connections: dict[int, _Connection] = {}
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._pinger: asyncio.Task | None = None
        self.metrics.queue_depths = self._queue_depths
        self.gun = GunEngine(gun_store)
        self.gate_store = None if gate_store is None else GateStore(gate_store, self.limits.max_swarms)
        self.metrics.gun_counts = self.gun.metrics
        self.bus: NatsBus | None = None
        self.gun_bridge: GunBridge | None = None
        if federation is not None:
            self.bus = NatsBus(*federation, self.router)
            self.gun_bridge = GunBridge(self.gun)
            self.metrics.federation_dropped = lambda: self.bus.backplane.dropped
            self.metrics.gun_bridge_counts = lambda: (self.gun_bridge.counts, self.gun_bridge.dropped)

    def _queue_depths(self) -> tuple[int, int]:
        depths = [c.queue.qsize() for c in self._connections.values()]
        return sum(depths), max(depths, default=0)

    def _health(self) -> dict:
        return {"connections": len(self._connections)}

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard.head_arrived])  # first: it sees every parsed request
        app.router.add_get("/ws", self._websocket)
        add_gun_routes(app, self.gun)
        add_http_routes(app, self.web_root, self.metrics, self._health)
        app.middlewares.append(self._admit)  # inside the request counter, so refusals show as 503s too
        return app

    @web.middleware
    async def _admit(self, request: web.Request, handler):
        """Hold a connection slot of the caller's address for as long as a /ws or /gun connection lasts."""
        if request.path not in ("/ws", "/gun"):
            return await handler(request)
        ticket = self.gate.admit(request.remote or "unknown", handshake=request.path == "/ws")
        if ticket is None:
            retry = max(1, round(self.limits.hello_timeout_s))
            refusal = web.Response(status=503, text="too many connections, try later\n", headers={"Retry-After": str(retry)})
            refusal.force_close()  # not kept alive: an idle keep-alive socket would hold the descriptor we refused
            return refusal
        request[_TICKET] = ticket
        try:
            return await handler(request)
        finally:
            ticket.release()

    async def start(self) -> None:
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False, shutdown_timeout=2.0,
                                     keepalive_timeout=self.limits.keepalive_timeout_s)
        if self.bus is not None:  # before listening: an agent must never be welcomed by a relay that can't federate
            await self.bus.start()
            self.router.attach_federation(self.bus.backplane)
            await self.gun_bridge.start(self.bus.nc)
        if self.gate_store is not None:  # before listening: no hello is judged by a gatekeeper that forgot
            for _ in await self.router.gatekeeper.restore(self.gate_store):
                self.metrics.drop("gate_record_rejected")
        await self._runner.setup()
        # Not web.TCPSite: every accepted socket goes through the guard before aiohttp sees a byte of it.
        self._listener = await asyncio.get_running_loop().create_server(
            self.guard.protocol_factory(self._runner.server), self.host, self.port, reuse_address=True, backlog=128)
        self.port = self._listener.sockets[0].getsockname()[1]  # the port the OS chose, when asked for 0
        self._pinger = asyncio.create_task(self._ping_loop())
        if self.shm_hub_name:
            from ..transport.shm_link import ShmHub

            self._shm_hub = ShmHub(self.shm_hub_name, self.router, self.limits.queue_length)
            await self._shm_hub.start()

    async def stop(self) -> None:
        """Close every agent with 1001 (going away) so clients reconnect elsewhere or later."""
        if self._pinger is not None:
            self._pinger.cancel()
        if self._shm_hub is not None:
            await self._shm_hub.stop()
            self._shm_hub = None
        connections = list(self._connections.values())
        for connection in connections:
            connection.close(rw.CLOSE_GOING_AWAY, "relay shutting down")
        writers = [c.writer_task for c in connections if c.writer_task is not None]
        if writers:  # let the 1001 close frames go out before the sockets are torn down
            await asyncio.wait(writers, timeout=CLOSE_GRACE_S + 0.5)
        if self._listener is not None:
            self._listener.close()  # no new sockets; open ones are closed by the runner's cleanup
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.gun_bridge is not None:
            await self.gun_bridge.stop()
        if self.bus is not None:
            await self.bus.stop()
        self.gun.close_store()
        if self.gate_store is not None:
            self.gate_store.close()

    async def _ping_loop(self) -> None:
        slices = PING_SLICES
        index = 0
        while True:
            await asyncio.sleep(PING_INTERVAL_S / slices)
            self.router.ping_slice(index, slices)
            self.router.expire_handshakes()
            index = (index + 1) % slices

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=self.limits.max_frame_bytes, compress=False, autoping=True)
        await ws.prepare(request)
        connection = _Connection(next(self._ids), ws, self.limits.queue_length, request.transport)
        self._connections[connection.conn_id] = connection
        writer = connection.writer_task = asyncio.create_task(connection.writer())
        self.router.open(connection)
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self.router.receive(connection, message.data)
                    if connection.close_code is not None:
                        break
                    if self.router.joined(connection.conn_id):
                        request[_TICKET].handshake_done()
                elif message.type == WSMsgType.ERROR:
                    # aiohttp reports an oversized frame here (and closes with 1009); the close code
                    # itself is later overwritten by the one the client echoes.
                    if getattr(message.data, "code", None) == rw.CLOSE_TOO_BIG:
                        self.metrics.drop("too_big")
                    else:
                        self.metrics.drop("protocol_error")
                    break
        finally:
            self.router.closed(connection)
            self._connections.pop(connection.conn_id, None)
            connection.close(rw.CLOSE_NORMAL, "")
            try:
                await asyncio.wait_for(writer, timeout=2.0)
            except asyncio.TimeoutError:
                writer.cancel()
        return ws
