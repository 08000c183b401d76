"""Browser links for a SwarmAgent in the Pyodide worker: relay, BroadcastChannel, WebRTC.

Imported only under Pyodide (``import js`` fails elsewhere); the JS side is
``globalThis.edgeTransport`` from web/bridges/transport.js.

- `BrowserRelayLink`: the same `RelaySession` the native aiohttp shell drives,
  over the browser's WebSocket; reconnects with jittered exponential backoff,
  bounded queue while disconnected (`SendQueueFull`, never a quiet drop).
- `BroadcastChannelLink`: tabs of one origin, on a channel named after the
  swarm id; it carries envelope frames and each tab's signed registration, so
  tabs find each other without a relay.
- `WebRtcLink`: one data channel per peer, signalled with SIGNAL messages sent
  through the agent (signed, encrypted end to end, by whichever path reaches
  the peer). The lexicographically smaller agent id always makes the offer, so
  two peers never offer to each other at once (no glare).

Each JS link calls one Python callback per event (one FFI crossing); the
callback only appends to a queue, and one task per link handles events in
arrival order. An exception in a callback would vanish inside JS, so both
sides count and log it instead (`callback_errors` here, `edgeTransport.stats`
there).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable

import js  # type: ignore[import-not-found]
from pyodide.ffi import create_proxy, to_js  # type: ignore[import-not-found]

from ..agent import PATH_PREFERENCE, SWARM_TOPIC, SwarmAgent
from ..errors import MalformedMessage, RejectedInput, TransportClosed
from ..platform.jsffi import js_bridge
from ..p2p.records import Registration
from ..p2p.swarm import P2PSwarm
from ..protocol import MessageKind, SwarmMessage
from . import relay_wire as rw
from .relay_link import ReconnectingRelayLink
from .relay_urls import websocket_relay_urls

log = logging.getLogger(__name__)

__all__ = ["BrowserRelayLink", "BroadcastChannelLink", "WebRtcLink", "join_swarm_browser"]

MAX_SIGNAL_CHARS = 64 * 1024
RegistrationHandler = Callable[[Registration], Awaitable[None]]


def _bridge() -> Any:
    return js_bridge("edgeTransport", "web/bridges/transport.js")


def _text(frame: bytes | str) -> str:
    return frame.decode("utf-8") if isinstance(frame, (bytes, bytearray)) else frame


class _Events:
    """A JS callback's events, handled one at a time, in arrival order.

    `proxy` is what JS holds. When nothing is being handled, an event starts an
    eager task inside the callback itself, so handling begins without a trip
    through the event loop (~0.1 ms a hop in a worker); events that arrive
    while one is being handled wait in a bounded queue and that same task
    drains them. Overflow is counted and logged: the handler cannot keep up."""

    def __init__(self, name: str, handler: Callable[..., Awaitable[None]], limit: int = 4096) -> None:
        self.name = name
        self.handler = handler
        self.limit = limit
        self.queue: collections.deque[tuple[Any, Any, Any]] = collections.deque()
        self.callback_errors = 0
        self.handler_errors = 0
        self.overflow = 0
        self.proxy = create_proxy(self._callback)
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task | None = None
        self._busy = False  # set before the eager task starts, so a re-entrant event queues
        self._closed = False

    def _callback(self, kind: str, a: Any = None, b: Any = None) -> None:
        try:
            if self._closed:
                return
            if self._busy:
                if len(self.queue) >= self.limit:
                    self.overflow += 1
                    log.warning("%s: event queue full, %s event dropped", self.name, kind)
                    return
                self.queue.append((kind, a, b))
                return
            self._busy = True
            try:
                task = asyncio.Task(self._drain(kind, a, b), loop=self._loop, eager_start=True,
                                    name=f"{self.name}-events")
            except BaseException:
                self._busy = False
                raise
            self._task = None if task.done() else task
        except Exception:  # never let it escape into JS, where it would vanish
            self.callback_errors += 1
            log.exception("%s: event callback failed", self.name)

    async def _drain(self, kind: str, a: Any, b: Any) -> None:
        try:
            while True:
                try:
                    await self.handler(kind, a, b)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.handler_errors += 1
                    log.exception("%s: %s event handler failed", self.name, kind)
                if not self.queue:
                    return
                kind, a, b = self.queue.popleft()
        finally:
            self._busy = False
            self._task = None

    async def close(self) -> None:
        """Stop handling; call only after JS has detached the callback (its close())."""
        self._closed = True
        self.queue.clear()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        self.proxy.destroy()


# Relay ------------------------------------------------------------------------------------
class BrowserRelayLink(ReconnectingRelayLink):
    """Link to an edge-relay over the browser's WebSocket; same behaviour as the native RelayClient.

    `urls` may list several relays of one federation (comma-separated or a list): each attempt goes to
    the base class's rotating `target`, so a page whose relay dies moves to the next and resumes there."""

    def __init__(self, urls: str | Iterable[str], swarm: P2PSwarm, **options: Any) -> None:
        super().__init__(websocket_relay_urls(urls), swarm, **options)
        self.close_codes: list[int] = []  # the relay's close codes, most recent last (bounded)
        self._events: _Events | None = None
        self._closed: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        self._sock: Any = None
        self._sock_send: Callable[[str], bool] | None = None

    async def _open(self) -> None:
        self._events = _Events(f"relay-{self.agent_id}", self._on_event)

    async def _close(self, leave: bool) -> None:
        if self._sock is not None:
            self._sock.close(rw.CLOSE_NORMAL, "bye")  # detaches our callback in JS first
        if self._events is not None:
            await self._events.close()

    async def _send_text(self, text: str) -> None:
        send = self._sock_send
        if send is None or not send(text):
            raise TransportClosed("relay WebSocket is not open")

    async def _connect_once(self) -> None:
        assert self._events is not None
        sock = self._sock = _bridge().webSocket(self.target, self._events.proxy)
        self._sock_send = sock.send
        try:
            code, reason = await self._closed.get()
        except asyncio.CancelledError:
            # stop() cancels us before _close runs: close the socket here (detaching our callback
            # in JS), or it stays open and later calls a proxy that _close has destroyed.
            sock.close(rw.CLOSE_NORMAL, "bye")
            raise
        finally:
            self._sock = self._sock_send = None
        self.close_codes = (self.close_codes + [code])[-16:]
        log.info("%s: relay connection closed (code %s)", self.agent_id, code)
        self._closed_by_relay(code, reason)

    async def _on_event(self, kind: str, data: Any, reason: Any) -> None:
        if kind == "message":
            try:
                await self._received(data)
            except self.retryable as exc:  # the socket is closing; its close event ends _connect_once
                log.debug("%s: reply not sent: %s", self.agent_id, exc)
        elif kind == "close":
            self._closed.put_nowait((int(data) if data is not None else 1006, str(reason or "")))
        # "open": nothing to do, the relay speaks first (challenge)


# BroadcastChannel -------------------------------------------------------------------------
class BroadcastChannelLink:
    """Tabs of one origin on a BroadcastChannel named after the swarm id.

    A tab posts its signed registration when it starts and answers a newcomer's
    with its own, so both register each other (the registry verifies them) and
    can talk with no relay at all. `reaches(peer)` is true for a peer heard on
    the channel within `recent_s` (its heartbeats keep that fresh). Direct frames
    for other tabs are filtered in JS before they cost an FFI crossing.
    """

    def __init__(
        self,
        swarm: P2PSwarm,
        *,
        on_frame: Callable[..., Awaitable[None]],
        on_member: RegistrationHandler | None = None,
        recent_s: float = 15.0,
    ) -> None:
        self.swarm = swarm
        self.agent_id = swarm.agent_id
        self.channel_name = f"ruvector-edge/{swarm.swarm_id}"
        self.on_frame = on_frame
        self.on_member = on_member
        self.recent_s = recent_s
        self.heard: dict[str, float] = {}
        self.known: set[str] = set()  # peers whose registration we took from the channel
        self.rejected = 0
        self._events: _Events | None = None
        self._channel: Any = None
        self._post: Callable[[str, str], None] | None = None
        self._stopped = False

    async def start(self) -> None:
        self._events = _Events(f"broadcast-channel-{self.agent_id}", self._on_event)
        self._channel = _bridge().broadcastChannel(self.channel_name, self.agent_id, self._events.proxy)
        self._post = self._channel.post
        self._announce()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._channel is not None:
            self._channel.post("bye", "")
            self._channel.close()
        self._post = None
        if self._events is not None:
            await self._events.close()

    async def send(self, frame: bytes | str) -> None:
        if self._post is None:
            raise TransportClosed("broadcast channel closed")
        self._post("frame", _text(frame))

    def reaches(self, peer_id: str) -> bool:
        heard = self.heard.get(peer_id)
        return heard is not None and time.monotonic() - heard <= self.recent_s

    def _announce(self) -> None:
        if self._post is not None:
            self._post("registration", self.swarm.registration.to_json().decode("utf-8"))

    async def _on_event(self, kind: str, sender: Any, text: Any) -> None:
        if kind == "frame":
            if sender:
                self.heard[sender] = time.monotonic()
            await self.on_frame(text, via="broadcast-channel")
        elif kind == "registration":
            await self._on_registration(sender, text)
        elif kind == "bye":
            self.heard.pop(sender, None)
            self.known.discard(sender)

    async def _on_registration(self, sender: str, text: str) -> None:
        try:
            registration = Registration.from_json(text)
        except RejectedInput as exc:
            self.rejected += 1
            log.warning("%s: bad registration on the broadcast channel: %s", self.agent_id, exc)
            return
        if registration.agent_id != sender or sender == self.agent_id:
            self.rejected += 1
            return
        self.heard[sender] = time.monotonic()
        if sender not in self.known:
            self.known.add(sender)
            self._announce()  # before anything else we send, so the newcomer can verify it
            if self.on_member is not None:
                await self.on_member(registration)


# WebRTC ------------------------------------------------------------------------------------
@dataclass
class _RtcSession:
    sid: str
    initiator: bool
    open: bool = False
    timer: asyncio.TimerHandle | None = None


Fallback = Callable[[str, bytes | str], Awaitable[None]]


class WebRtcLink:
    """Data channels to peers, signalled with SIGNAL messages through the agent.

    The smaller agent id offers (deterministic, so never both at once); the other
    side answers offers only from smaller ids. A session that does not open within
    `connect_timeout_s`, or closes, is retried by the offerer with jittered
    exponential backoff while the peer is still a member, at most `max_attempts`
    times in a row (a new JOIN from the peer starts over). `reaches(peer)` is true
    while that peer's channel is open. A direct frame whose channel closed between
    `reaches` and `send` goes to `fallback` (the next path) rather than being lost.
    """

    def __init__(
        self,
        agent: SwarmAgent,
        *,
        ice_servers: Iterable[dict[str, Any]] = (),
        connect_timeout_s: float = 10.0,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        max_attempts: int = 6,
        fallback: Fallback | None = None,
    ) -> None:
        self.agent = agent
        self.agent_id = agent.agent_id
        self.ice_servers = [dict(s) for s in ice_servers]
        self.connect_timeout_s = connect_timeout_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.max_attempts = max_attempts
        self.fallback = fallback
        self.sessions: dict[str, _RtcSession] = {}
        self.attempts: dict[str, int] = {}
        self.opened = 0
        self.timeouts = 0
        self.refused_signals = 0
        self.signal_errors = 0
        self._early: dict[str, list[str]] = {}  # candidates that overtook their offer
        self._events: _Events | None = None
        self._js: Any = None
        self._send: Callable[[str], int] | None = None
        self._stopped = False

    @property
    def available(self) -> bool:
        return self._js is not None and bool(self._js.available)

    async def start(self) -> None:
        bridge = _bridge()
        self._events = _Events(f"webrtc-{self.agent_id}", self._on_event)
        config = to_js({"iceServers": self.ice_servers}, dict_converter=js.Object.fromEntries)
        self._js = bridge.webRtc(self.agent_id, config, self._events.proxy)
        self._send = self._js.send
        if not self.available:
            log.warning("%s: no page-side WebRTC host; WebRTC is off", self.agent_id)
        self.agent.on(MessageKind.SIGNAL, self._on_signal)
        self.agent.on(MessageKind.JOIN, self._on_join)
        self.agent.on(MessageKind.LEAVE, self._on_leave)
        self.agent.swarm.registry.on_released.append(self._forget)
        for member in self.agent.swarm.registry.members():
            self.peer_known(member.agent_id)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for session in self.sessions.values():
            if session.timer is not None:
                session.timer.cancel()
        self.sessions.clear()
        if self._js is not None:
            self._js.close()
        self._send = None
        if self._events is not None:
            await self._events.close()

    def reaches(self, peer_id: str) -> bool:
        session = self.sessions.get(peer_id)
        return session is not None and session.open

    async def send(self, frame: bytes | str) -> None:
        if self._send is None:
            raise TransportClosed("webrtc link stopped")
        if self._send(_text(frame)) >= 0:
            return
        # A direct frame whose channel is not open (it closed after path_to chose us).
        peer = json.loads(frame)["header"]["topic"][1:]
        if self.fallback is None:
            raise TransportClosed(f"no open data channel to {peer!r}")
        await self.fallback(peer, frame)

    # Connecting ------------------------------------------------------------------
    def peer_known(self, peer_id: str) -> None:
        """A member we may connect to; we offer if our id is the smaller one."""
        if self._stopped or not self.available or peer_id == self.agent_id or self.agent_id > peer_id:
            return
        if peer_id in self.sessions or self.agent.swarm.registry.get(peer_id) is None:
            return
        info = self.agent.peers.get(peer_id)
        if info is not None and info.left:
            return
        self._begin(peer_id, os.urandom(8).hex(), initiator=True)

    def _begin(self, peer_id: str, sid: str, initiator: bool) -> None:
        old = self.sessions.pop(peer_id, None)
        if old is not None:
            self._drop(peer_id, old)
        session = _RtcSession(sid, initiator)
        session.timer = asyncio.get_running_loop().call_later(self.connect_timeout_s, self._timed_out, peer_id, sid)
        self.sessions[peer_id] = session
        self._js.connect(peer_id, sid, initiator)

    def _drop(self, peer_id: str, session: _RtcSession) -> None:
        if session.timer is not None:
            session.timer.cancel()
        self._js.closePeer(peer_id)

    def _timed_out(self, peer_id: str, sid: str) -> None:
        session = self.sessions.get(peer_id)
        if session is None or session.sid != sid or session.open:
            return
        self.timeouts += 1
        log.info("%s: webrtc to %s did not open within %.0f s", self.agent_id, peer_id, self.connect_timeout_s)
        self._ended(peer_id, session)

    def _ended(self, peer_id: str, session: _RtcSession) -> None:
        """A session closed or failed: forget it; the offerer tries again later."""
        del self.sessions[peer_id]
        self._drop(peer_id, session)
        if not session.initiator or self._stopped:
            return
        attempts = self.attempts.get(peer_id, 0) + 1
        self.attempts[peer_id] = attempts
        if attempts > self.max_attempts:
            log.info("%s: giving up webrtc to %s after %d attempts", self.agent_id, peer_id, attempts - 1)
            return
        delay = min(self.retry_max_s, self.retry_initial_s * 2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
        asyncio.get_running_loop().call_later(delay, self.peer_known, peer_id)

    # Events from JS ----------------------------------------------------------------
    async def _on_event(self, kind: str, peer: str, data: Any) -> None:
        if kind == "message":
            await self.agent.handle_frame(data, via="webrtc")
        elif kind == "signal":
            try:
                await self.agent.send_to(peer, MessageKind.SIGNAL, webrtc=data)
            except Exception as exc:  # no path right now: the session times out and is retried
                self.signal_errors += 1
                log.info("%s: webrtc signal to %s not sent: %s", self.agent_id, peer, exc)
        elif kind == "open":
            session = self.sessions.get(peer)
            if session is not None and session.sid == data:
                session.open = True
                if session.timer is not None:
                    session.timer.cancel()
                self.attempts.pop(peer, None)
                self.opened += 1
                info = self.agent.peers.get(peer)
                if info is not None:
                    info.transport = "webrtc"
        elif kind == "close":
            session = self.sessions.get(peer)
            if session is not None and session.sid == data:
                self._ended(peer, session)

    # Signals from peers ------------------------------------------------------------
    async def _on_signal(self, sender: str, message: SwarmMessage) -> None:
        if self._stopped:
            return
        raw = message.body.get("webrtc")
        if not isinstance(raw, str) or len(raw) > MAX_SIGNAL_CHARS:
            raise MalformedMessage("SIGNAL needs a webrtc string of at most 64 KiB")
        try:
            signal = json.loads(raw)
            sid, kind = signal["sid"], signal["type"]
        except (ValueError, KeyError, TypeError):
            raise MalformedMessage("SIGNAL webrtc is not a {sid, type, ...} object") from None
        if not isinstance(sid, str) or kind not in ("offer", "answer", "candidate"):
            raise MalformedMessage("SIGNAL webrtc has a bad sid or type")
        if not self.available:
            return
        session = self.sessions.get(sender)
        if kind == "offer":
            if not sender < self.agent_id:  # the glare rule: only the smaller id offers
                self.refused_signals += 1
                return
            if session is None or session.sid != sid:
                self._begin(sender, sid, initiator=False)
            self._js.signal(sender, raw)
            for early in self._early.pop(sender, []):
                if json.loads(early)["sid"] == sid:
                    self._js.signal(sender, early)
        elif session is not None and session.sid == sid:
            self._js.signal(sender, raw)
        elif kind == "candidate" and sender < self.agent_id:
            early = self._early.setdefault(sender, [])
            if len(early) < 32:
                early.append(raw)
        else:
            self.refused_signals += 1

    async def _on_join(self, sender: str, message: SwarmMessage) -> None:
        self.attempts.pop(sender, None)
        self.peer_known(sender)

    async def _on_leave(self, sender: str, message: SwarmMessage) -> None:
        self._forget(sender)

    def _forget(self, peer_id: str) -> None:
        """A peer that said LEAVE, or whose binding the registry released (it left and was not heard from for
        the replay window): close its channel and drop what we kept to reach it, or each id that came and went
        would leave its retry count and early candidates behind."""
        session = self.sessions.pop(peer_id, None)
        if session is not None:
            self._drop(peer_id, session)
        self.attempts.pop(peer_id, None)
        self._early.pop(peer_id, None)


# Joining ------------------------------------------------------------------------------------
async def join_swarm_browser(
    agent: SwarmAgent,
    relay_url: str | Iterable[str] | None = None,
    *,
    timeout: float = 10.0,
    broadcast_channel: bool = True,
    webrtc: bool = True,
    ice_servers: Iterable[dict[str, Any]] = (),
) -> None:
    """What `SwarmAgent.join_swarm` does, with the browser's links.

    Attaches BroadcastChannel and WebRTC links (each optional) and, given
    `ws://` URLs (one, or several relays of a federation to fail over between,
    comma-separated or a list), the relay link; then announces the agent (JOIN),
    starts its heartbeat and sync loops and asks for patterns, as join_swarm does.
    With no relay URL, tabs of one origin still form a swarm over the
    BroadcastChannel. A bad URL is refused (InvalidRelayUrl) before any link starts."""
    if relay_url is None and not broadcast_channel:
        raise ValueError("no path: give a relay URL or enable the broadcast channel")
    relays = None if relay_url is None else websocket_relay_urls(relay_url)
    rtc: WebRtcLink | None = None

    async def on_member(registration: Registration) -> None:
        await agent.add_member(registration)
        if rtc is not None:
            rtc.peer_known(registration.agent_id)

    async def fallback(peer: str, frame: bytes | str) -> None:
        for name in PATH_PREFERENCE:
            link = agent.links.get(name)
            if name != "webrtc" and link is not None and link.reaches(peer):
                await link.send(frame)
                return
        raise TransportClosed(f"no path to {peer!r}")

    if webrtc:
        rtc = WebRtcLink(agent, ice_servers=ice_servers, fallback=fallback)
        agent.attach_link("webrtc", rtc)
        await rtc.start()
    if broadcast_channel:
        bc = BroadcastChannelLink(agent.swarm, on_frame=agent.handle_frame, on_member=on_member)
        agent.attach_link("broadcast-channel", bc)
        await bc.start()
    if relays is not None:
        relay = BrowserRelayLink(
            relays, agent.swarm, on_envelope=agent.handle_frame, on_member=on_member,
            on_left=agent.on_relay_left, topics=[SWARM_TOPIC],
        )
        agent.attach_link("relay", relay)
        await relay.start()
        await relay.wait_connected(timeout)
    await agent.announce()
