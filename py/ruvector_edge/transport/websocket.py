"""Native WebSocket link to an edge-relay, with reconnection that loses nothing silently.

While disconnected, frames wait in a bounded queue (a full queue raises
`SendQueueFull` at the caller, never drops quietly); after each reconnect the
client proves its identity again (challenge → signed hello), re-subscribes,
and flushes the queue in order. Backoff is exponential with full jitter so a
restarted relay is not stampeded by every agent at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from typing import Awaitable, Callable, Iterable

import aiohttp

from ..errors import RejectedInput, SendQueueFull, TransportClosed
from ..p2p.records import Registration
from ..p2p.swarm import P2PSwarm
from . import relay_wire as rw

log = logging.getLogger(__name__)

FrameHandler = Callable[[str], Awaitable[None]]
MemberHandler = Callable[[Registration], Awaitable[None]]
LeftHandler = Callable[[str], Awaitable[None]]


class RelayClient:
    def __init__(
        self,
        url: str,
        swarm: P2PSwarm,
        *,
        on_envelope: FrameHandler,
        on_member: MemberHandler | None = None,
        on_left: LeftHandler | None = None,
        topics: Iterable[str] = (),
        queue_limit: int = 1024,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        max_frame_bytes: int = 2 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.swarm = swarm
        self.on_envelope = on_envelope
        self.on_member = on_member
        self.on_left = on_left
        self.topics: set[str] = set(topics)
        self.queue_limit = queue_limit
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_frame_bytes = max_frame_bytes
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.undeliverable: collections.deque[tuple[str, str]] = collections.deque(maxlen=256)
        self._pending: collections.deque[str] = collections.deque()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None
        self._stopped = False
        self._wake = asyncio.Event()
        self._pings: dict[int, float] = {}
        self._ping_id = 0
        self.rtts: collections.deque[float] = collections.deque(maxlen=1024)

    # Lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name=f"relay-client-{self.swarm.agent_id}")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.connected.wait(), timeout)

    async def stop(self, leave: bool = True) -> None:
        self._stopped = True
        ws = self._ws
        if ws is not None and not ws.closed:
            try:
                if leave:
                    await ws.send_str(rw.encode("leave"))
                await ws.close()
            except (ConnectionError, RuntimeError):
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._session is not None:
            await self._session.close()
        self.connected.clear()

    # Sending -------------------------------------------------------------------
    async def send(self, frame: bytes | str) -> None:
        """Send now if connected, else queue (bounded). Order is preserved across reconnects."""
        if self._stopped:
            raise TransportClosed("relay client stopped")
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        ws = self._ws
        if ws is not None and self.connected.is_set() and not self._pending:
            try:
                await ws.send_str(text)
                return
            except (ConnectionError, RuntimeError):
                pass  # fell over mid-send: keep it for after the reconnect
        if len(self._pending) >= self.queue_limit:
            raise SendQueueFull(f"disconnected from {self.url} and {self.queue_limit} frames already queued")
        self._pending.append(text)

    async def subscribe(self, *topics: str) -> None:
        new = [t for t in topics if t not in self.topics]
        self.topics.update(new)
        if new and self.connected.is_set() and self._ws is not None:
            await self._ws.send_str(rw.subscribe(new))

    async def ping(self, timeout: float = 5.0) -> float:
        """Round trip to the relay in seconds."""
        loop = asyncio.get_running_loop()
        self._ping_id += 1
        future = loop.create_future()
        self._pings[self._ping_id] = future  # type: ignore[assignment]
        start = loop.time()
        assert self._ws is not None
        await self._ws.send_str(rw.encode("ping", id=self._ping_id))
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self._pings.pop(self._ping_id, None)
        rtt = loop.time() - start
        self.rtts.append(rtt)
        return rtt

    # Connection loop -------------------------------------------------------------
    async def _run(self) -> None:
        delay = self.backoff_initial_s
        while not self._stopped:
            try:
                await self._session_once()  # type: ignore[arg-type]
                delay = self.backoff_initial_s  # a session that got going resets the backoff
            except (aiohttp.ClientError, ConnectionError, OSError, asyncio.TimeoutError, RejectedInput) as exc:
                log.info("%s: relay %s unavailable (%s)", self.swarm.agent_id, self.url, exc)
            finally:
                self.connected.clear()
                self._ws = None
            if self._stopped:
                break
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(self.backoff_max_s, delay * 2)
            self.reconnects += 1

    async def _session_once(self) -> None:
        assert self._session is not None
        async with self._session.ws_connect(self.url, max_msg_size=self.max_frame_bytes, heartbeat=None, autoping=True) as ws:
            first = await ws.receive(timeout=10)
            if first.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"expected a challenge, got {first.type}")
            challenge = rw.decode(first.data, self.max_frame_bytes)
            if not isinstance(challenge, rw.Control) or challenge.op != "challenge":
                raise ConnectionError("relay did not send a challenge")
            registration = self.swarm.registration
            proof = await self.swarm.identity.sign(
                rw.auth_bytes(registration.swarm, registration.agent_id, rw.challenge_of(challenge))
            )
            await ws.send_str(rw.hello(registration, proof))
            self._ws = ws
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                await self._dispatch(ws, message.data)
            log.info("%s: relay closed the connection (%s)", self.swarm.agent_id, ws.close_code)

    async def _dispatch(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
        try:
            frame = rw.decode(text, self.max_frame_bytes)
        except RejectedInput as exc:
            log.warning("%s: malformed frame from relay: %s", self.swarm.agent_id, exc)
            return
        if isinstance(frame, rw.RoutedEnvelope):
            await self.on_envelope(frame.raw)
            return
        op = frame.op
        if op == "welcome":
            for body in frame.body.get("members", []) if isinstance(frame.body.get("members"), list) else []:
                await self._member(body)
            if self.topics:
                await ws.send_str(rw.subscribe(sorted(self.topics)))
            while self._pending:  # flush in order before anything new goes out
                await ws.send_str(self._pending[0])
                self._pending.popleft()
            self.connected.set()
        elif op == "member":
            await self._member(frame.body.get("registration"))
        elif op == "left":
            agent = frame.body.get("agent_id")
            if isinstance(agent, str) and self.on_left is not None:
                await self.on_left(agent)
        elif op == "ping":
            await ws.send_str(rw.encode("pong", id=rw.ping_id(frame)))
        elif op == "pong":
            future = self._pings.get(frame.body.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(None)
        elif op == "undeliverable":
            self.undeliverable.append((str(frame.body.get("message_id")), str(frame.body.get("to"))))

    async def _member(self, body: object) -> None:
        if self.on_member is None or not isinstance(body, dict):
            return
        try:
            registration = Registration.from_dict(body)
        except RejectedInput as exc:
            log.warning("%s: bad registration from relay: %s", self.swarm.agent_id, exc)
            return
        await self.on_member(registration)
