"""aiohttp shell for GunEngine: the `/gun` WebSocket route and the deferral timer."""

from __future__ import annotations

import asyncio
import itertools
import logging

from aiohttp import WSMsgType, web

from .peer import GunEngine

log = logging.getLogger(__name__)

QUEUE_LENGTH = 1_024
TICK_MAX_S = 1.0
_ENGINE_KEY = web.AppKey("gun_engine", GunEngine)
_STATE_KEY = web.AppKey("gun_state", dict)


class _Conn:
    __slots__ = ("conn_id", "ws", "queue", "dropped")

    def __init__(self, conn_id: int, ws: web.WebSocketResponse) -> None:
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


def add_gun_routes(app: web.Application, engine: GunEngine) -> None:
    """Serve GUN peers on /gun of `app` and run the engine's deferral timer with the app."""
    app[_ENGINE_KEY] = engine
    app[_STATE_KEY] = {"ids": itertools.count(1), "task": None}

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=engine.limits.wire.max_message_bytes, heartbeat=30)
        await ws.prepare(request)
        conn = _Conn(next(app[_STATE_KEY]["ids"]), ws)
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
            except (asyncio.TimeoutError, asyncio.CancelledError):
                writer.cancel()
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
