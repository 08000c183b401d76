"""Native WebSocket link to an edge-relay (aiohttp), reconnecting without silent loss.

The protocol state lives in `RelaySession`; this shell connects, feeds it
text, sends what it answers, and reconnects with exponential backoff and full
jitter so a restarted relay is not stampeded by every agent at once. While
disconnected, frames wait in the session's bounded queue (`SendQueueFull`
when it is full, never a quiet drop) and are flushed in order after the next
welcome.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Iterable

import aiohttp

from ..errors import RejectedInput, TransportClosed
from ..p2p.swarm import P2PSwarm
from . import relay_wire as rw
from .relay_session import FrameHandler, LeftHandler, MemberHandler, RelaySession

log = logging.getLogger(__name__)


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
        self.session = RelaySession(
            swarm, on_envelope=on_envelope, on_member=on_member, on_left=on_left, topics=topics,
            queue_limit=queue_limit, max_frame_bytes=max_frame_bytes,
        )
        self.agent_id = swarm.agent_id
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_frame_bytes = max_frame_bytes
        self.connected = asyncio.Event()
        self.reconnects = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None
        self._stopped = False
        self._ping_id = 0

    @property
    def undeliverable(self):
        return self.session.undeliverable

    # Lifecycle -----------------------------------------------------------------
    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name=f"relay-client-{self.agent_id}")

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
        if self._http is not None:
            await self._http.close()
        self.connected.clear()

    # Sending -------------------------------------------------------------------
    async def send(self, frame: bytes | str) -> None:
        """Send now if connected, else queue (bounded). Order is preserved across reconnects."""
        if self._stopped:
            raise TransportClosed("relay client stopped")
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        ws = self._ws
        if ws is not None and self.session.can_send_now():
            try:
                await ws.send_str(text)
                return
            except (ConnectionError, RuntimeError):
                pass  # fell over mid-send: keep it for after the reconnect
        self.session.queue(text)

    def reaches(self, peer_id: str) -> bool:
        """A relay reaches every member (frames wait in the queue while reconnecting)."""
        return True

    async def subscribe(self, *topics: str) -> None:
        frame = self.session.subscribe_frame(topics)
        if frame is not None and self._ws is not None:
            await self._ws.send_str(frame)

    async def ping(self, timeout: float = 5.0) -> float:
        """Round trip to the relay in seconds."""
        loop = asyncio.get_running_loop()
        if self._ws is None:
            raise TransportClosed("not connected")
        self._ping_id += 1
        future = loop.create_future()
        self.session.pongs[self._ping_id] = lambda: future.done() or future.set_result(None)
        start = loop.time()
        await self._ws.send_str(rw.encode("ping", id=self._ping_id))
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self.session.pongs.pop(self._ping_id, None)
        return loop.time() - start

    # Connection loop -------------------------------------------------------------
    async def _run(self) -> None:
        delay = self.backoff_initial_s
        while not self._stopped:
            welcomed = False
            try:
                welcomed = await self._connect_once()
            except (aiohttp.ClientError, ConnectionError, OSError, asyncio.TimeoutError, RejectedInput) as exc:
                log.info("%s: relay %s unavailable (%s)", self.agent_id, self.url, exc)
            finally:
                self.session.connection_lost()
                self.connected.clear()
                self._ws = None
            if self._stopped:
                break
            if welcomed:
                delay = self.backoff_initial_s  # a session that got going resets the backoff
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(self.backoff_max_s, delay * 2)
            self.reconnects += 1

    async def _connect_once(self) -> bool:
        assert self._http is not None
        welcomed = False
        async with self._http.ws_connect(self.url, max_msg_size=self.max_frame_bytes, heartbeat=None) as ws:
            self._ws = ws
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                for reply in await self.session.receive(message.data):
                    await ws.send_str(reply)
                if self.session.ready and not self.connected.is_set():
                    welcomed = True
                    self.connected.set()
            log.info("%s: relay closed the connection (code %s)", self.agent_id, ws.close_code)
        return welcomed
