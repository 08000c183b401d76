"""Native WebSocket link to an edge-relay (aiohttp); the protocol and reconnect policy are shared.

`url` may list several relays of one federation, comma-separated (`ws://a:8080/ws,ws://b:8080`):
the link fails over between them in order.

A relay that goes silent is given up on after `liveness_s` (aiohttp's heartbeat: a WebSocket ping
after that long without a frame, the connection dropped if its pong is not back within half as long).
A relay host whose link is cut sends no close and no reset, so without it the agent would wait on a
dead connection until TCP gives up (~15 min) instead of failing over."""

from __future__ import annotations

import logging

import aiohttp

from ..errors import TransportClosed
from .relay_link import RETRYABLE, ReconnectingRelayLink
from .relay_urls import relay_urls

log = logging.getLogger(__name__)


class RelayClient(ReconnectingRelayLink):
    retryable = RETRYABLE + (aiohttp.ClientError, RuntimeError)

    def __init__(self, url: str, swarm, *, liveness_s: float = 10.0, **options) -> None:
        super().__init__(relay_urls(url), swarm, **options)
        self.liveness_s = liveness_s
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None

    async def _open(self) -> None:
        self._http = aiohttp.ClientSession()

    async def _close(self, leave: bool) -> None:
        ws = self._ws
        if ws is not None and not ws.closed:
            try:
                await ws.close()
            except self.retryable:
                pass
        if self._http is not None:
            await self._http.close()

    async def _send_text(self, text: str) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise TransportClosed("not connected")
        await ws.send_str(text)

    async def _connect_once(self) -> None:
        assert self._http is not None
        try:
            async with self._http.ws_connect(self.target, max_msg_size=self.max_frame_bytes,
                                          heartbeat=self.liveness_s) as ws:
                self._ws = ws
                while (message := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                    await self._received(message.data)
                log.info("%s: relay closed the connection (code %s)", self.agent_id, ws.close_code)
                if message.type == aiohttp.WSMsgType.CLOSE:
                    self._closed_by_relay(message.data, message.extra or "")
        finally:
            self._ws = None
