"""aiohttp shell for GunEngine: the `/gun` WebSocket route and the deferral timer."""

from __future__ import annotations

import asyncio
import itertools
import logging

import aiohttp
from aiohttp import WSMsgType, web

from .peer import GunEngine

log = logging.getLogger(__name__)

QUEUE_LENGTH = 1_024
TICK_MAX_S = 1.0
_ENGINE_KEY = web.AppKey("gun_engine", GunEngine)
_STATE_KEY = web.AppKey("gun_state", dict)


class _Conn:
    __slots__ = ("conn_id", "ws", "queue", "dropped")

    def __init__(self, conn_id: int, ws) -> None:
        self.conn_id = conn_id
        self.ws = ws
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LENGTH)
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<gun conn {self.conn_id}>"

    async def writer(self) -> None:
        try:
            while (text := await self.queue.get()) is not None:
                await self.ws.send_str(text)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass


def _dispatch(engine: GunEngine, out) -> None:
    for conn, text in out:
        if isinstance(conn, _Conn):
            try:
                conn.queue.put_nowait(text)
            except asyncio.QueueFull:  # a slow reader loses messages (GUN is lossy too)
                conn.dropped += 1
                engine.counts["dropped_slow"] = engine.counts.get("dropped_slow", 0) + 1


async def _pump(engine: GunEngine, conn: _Conn, ws) -> None:
    writer = asyncio.create_task(conn.writer())
    _dispatch(engine, engine.open(conn))
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                _dispatch(engine, engine.receive(conn, message.data))
            elif message.type == WSMsgType.BINARY:
                try:
                    text = message.data.decode("utf-8")
                except UnicodeDecodeError:
                    engine.counts["malformed"] += 1
                    continue
                _dispatch(engine, engine.receive(conn, text))
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        engine.close(conn)
        try:
            conn.queue.put_nowait(None)
        except asyncio.QueueFull:
            writer.cancel()
        try:
            await asyncio.wait_for(writer, 1.0)
        except asyncio.TimeoutError:
            writer.cancel()
        except asyncio.CancelledError:  # our own cancellation: pass it on (peer_with would otherwise reconnect)
            writer.cancel()
            raise


async def peer_with(engine: GunEngine, url: str, *, retry_s: float = 2.0,
                    connected: asyncio.Event | None = None) -> None:
    """Keep an outbound connection to another GUN relay (e.g. the official Node one) at `url`
    (http(s)://host/gun or ws(s)://…); it is one more peer to the engine. Runs until cancelled."""
    ws_url = url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    ids = itertools.count(1)
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.ws_connect(ws_url, max_msg_size=engine.limits.wire.max_message_bytes,
                                              heartbeat=30) as ws:
                    conn = _Conn(-next(ids), ws)
                    if connected is not None:
                        connected.set()
                    await _pump(engine, conn, ws)
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                log.info("gun: peer %s unreachable: %s", url, exc)
            if connected is not None:
                connected.clear()
            await asyncio.sleep(retry_s)


def add_gun_routes(app: web.Application, engine: GunEngine) -> None:
    """Serve GUN peers on /gun of `app` and run the engine's deferral timer with the app."""
    app[_ENGINE_KEY] = engine
    app[_STATE_KEY] = {"ids": itertools.count(1), "task": None}

    async def handler(request: web.Request) -> web.StreamResponse:
        # no permessage-deflate (as GUN's Node relay, whose `ws` server leaves it off): deflating every
        # small GUN message cost the relay about a fifth of its CPU
        ws = web.WebSocketResponse(max_msg_size=engine.limits.wire.max_message_bytes, heartbeat=30, compress=False)
        await ws.prepare(request)
        conn = _Conn(next(app[_STATE_KEY]["ids"]), ws)
        await _pump(engine, conn, ws)
        return ws

    async def ticker() -> None:
        while True:
            due = engine.next_due()
            delay = TICK_MAX_S
            if due is not None:
                delay = min(TICK_MAX_S, max(0.0, (due - engine.graph.now()) / 1000.0))
            await asyncio.sleep(delay)
            try:
                engine.tick()
            except Exception:
                log.exception("gun: deferred tick failed")

    async def on_startup(app: web.Application) -> None:
        app[_STATE_KEY]["task"] = asyncio.create_task(ticker())

    async def on_cleanup(app: web.Application) -> None:
        task = app[_STATE_KEY]["task"]
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        engine.graph.commit()

    app.router.add_get("/gun", handler)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
