"""aiohttp shell for GunEngine: the `/gun` WebSocket route and the deferral timer."""

from __future__ import annotations

import asyncio
import itertools
import logging

import aiohttp
from aiohttp import WSMsgType, web

from .outbox import Outbox
from .peer import GunEngine, Relayed

log = logging.getLogger(__name__)

FORWARD_QUEUE = 1_024   # relayed puts and GETs waiting for one connection; more are dropped (GUN is lossy there)
REPLY_CHARS = 16 << 20  # acks and answers waiting for one connection; more and it is closed as a slow consumer
# a connection's own frames are not read while this many characters of replies to it wait (a writer that does not
# read its acks is slowed down, not cut off), for at most READ_PAUSE_S: then it is a slow consumer too
READ_PAUSE_CHARS = 1 << 20
READ_PAUSE_S = 30.0
SLOW_CONSUMER = 1008    # WebSocket close code (policy violation), as the relay's router uses for slow consumers
TICK_MAX_S = 1.0
_ENGINE_KEY = web.AppKey("gun_engine", GunEngine)
_STATE_KEY = web.AppKey("gun_state", dict)


class _Conn:
    """One connection's outbox (outbox.py) and the task writing it, replies first."""

    __slots__ = ("conn_id", "ws", "outbox", "ready", "drained", "close_code")

    def __init__(self, conn_id: int, ws) -> None:
        self.conn_id = conn_id
        self.ws = ws
        self.outbox = Outbox(REPLY_CHARS, FORWARD_QUEUE)
        self.ready = asyncio.Event()    # the outbox has something, or we are closing
        self.drained = asyncio.Event()  # replies are under READ_PAUSE_CHARS, or we are closing
        self.drained.set()
        self.close_code: int | None = None

    def __repr__(self) -> str:
        return f"<gun conn {self.conn_id}>"

    def push(self, engine: GunEngine, text: str) -> None:
        if self.close_code is not None:
            return
        if isinstance(text, Relayed):
            if not self.outbox.push_forward(text):
                engine.counts["dropped_slow"] = engine.counts.get("dropped_slow", 0) + 1
        elif not self.outbox.push_reply(text):
            self.slow(engine)
            return
        if self.outbox.reply_chars >= READ_PAUSE_CHARS:
            self.drained.clear()
        self.ready.set()

    def slow(self, engine: GunEngine) -> None:
        engine.counts["closed_slow"] = engine.counts.get("closed_slow", 0) + 1
        self.close(SLOW_CONSUMER)

    def close(self, code: int) -> None:
        """Send nothing more: drop what waits; the writer closes the WebSocket with `code`."""
        if self.close_code is None:
            self.close_code = code
            self.outbox.clear()
            self.ready.set()
            self.drained.set()

    async def writer(self) -> None:
        try:
            while self.close_code is None:
                text = self.outbox.pop()
                if text is None:
                    self.ready.clear()
                    await self.ready.wait()
                    continue
                if self.outbox.reply_chars < READ_PAUSE_CHARS:
                    self.drained.set()
                await self.ws.send_str(text)
            await self.ws.close(code=self.close_code)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass


def _dispatch(engine: GunEngine, out) -> None:
    """Hand each frame to its connection: a WebSocket's `_Conn`, or anything else with `push(engine, text)`
    (the federation's GunBridge, whose other end is the other relays)."""
    for conn, text in out:
        push = getattr(conn, "push", None)
        if push is not None:
            push(engine, text)


async def _pump(engine: GunEngine, conn: _Conn, ws, upstream: bool = False) -> None:
    writer = asyncio.create_task(conn.writer())
    _dispatch(engine, engine.open(conn, upstream))
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
            if not conn.drained.is_set():
                try:
                    await asyncio.wait_for(conn.drained.wait(), READ_PAUSE_S)
                except asyncio.TimeoutError:
                    conn.slow(engine)
            if conn.close_code is not None:
                break
    finally:
        engine.close(conn)
        conn.close(1000)
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
                    await _pump(engine, conn, ws, upstream=True)
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
