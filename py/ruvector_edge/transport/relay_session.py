"""One agent's side of the relay protocol, without I/O.

Both shells, the native aiohttp client (websocket.py) and the browser's JS
WebSocket bridge, feed received text into `receive()` and send what it returns;
the handshake (challenge → signed hello → welcome), subscriptions, the bounded
queue of frames waiting for a connection, and ping bookkeeping live here once.
"""

from __future__ import annotations

import collections
import logging
from typing import Awaitable, Callable, Iterable

from ..errors import RejectedInput, SendQueueFull
from ..p2p.records import Registration
from ..p2p.swarm import P2PSwarm
from . import relay_admission
from . import relay_wire as rw

log = logging.getLogger(__name__)

FrameHandler = Callable[[str], Awaitable[None]]
MemberHandler = Callable[[Registration], Awaitable[None]]
LeftHandler = Callable[[str], Awaitable[None]]


class RelaySession:
    """State of one logical relay session that survives reconnects (subscriptions, queued frames)."""

    def __init__(
        self,
        swarm: P2PSwarm,
        *,
        on_envelope: FrameHandler,
        on_member: MemberHandler | None = None,
        on_left: LeftHandler | None = None,
        topics: Iterable[str] = (),
        queue_limit: int = 1024,
        max_frame_bytes: int = 2 * 1024 * 1024,
    ) -> None:
        self.swarm = swarm
        self.on_envelope = on_envelope
        self.on_member = on_member
        self.on_left = on_left
        self.topics: set[str] = set(topics)
        self.queue_limit = queue_limit
        self.max_frame_bytes = max_frame_bytes
        self.ready = False  # welcomed on the current connection
        self.pending: collections.deque[str] = collections.deque()
        self.undeliverable: collections.deque[tuple[str, str]] = collections.deque(maxlen=256)
        self.pongs: dict[int, Callable[[], None]] = {}
        # The last stream sequence a federated relay delivered (None from a relay without a stream):
        # sent as `resume` in every hello, so a reconnect, to this relay or another, catches up.
        self.last_seq: int | None = None

    def connection_lost(self) -> None:
        self.ready = False

    def queue(self, text: str) -> None:
        """Hold a frame until the next welcome; refuse loudly when the bound is reached."""
        if len(self.pending) >= self.queue_limit:
            raise SendQueueFull(f"not connected and {self.queue_limit} frames already queued")
        self.pending.append(text)

    def can_send_now(self) -> bool:
        return self.ready and not self.pending

    def subscribe_frame(self, topics: Iterable[str]) -> str | None:
        new = sorted(t for t in topics if t not in self.topics)
        self.topics.update(new)
        return rw.subscribe(new) if new and self.ready else None

    async def receive(self, text: str) -> list[str]:
        """Handle one frame from the relay; return the frames to send back, in order."""
        try:
            frame = rw.decode(text, self.max_frame_bytes)
        except RejectedInput as exc:
            log.warning("%s: malformed frame from relay: %s", self.swarm.agent_id, exc)
            return []
        if isinstance(frame, rw.RoutedEnvelope):
            await self.on_envelope(frame.raw)
            if frame.seq is not None and (self.last_seq is None or frame.seq > self.last_seq):
                self.last_seq = frame.seq
            return []
        op = frame.op
        if op == "challenge":
            self.ready = False
            registration = self.swarm.registration
            proof = await self.swarm.identity.sign(
                rw.auth_bytes(registration.swarm, registration.agent_id, rw.challenge_of(frame))
            )
            return [relay_admission.with_admission(rw.hello(registration, proof, self.last_seq), self.swarm)]
        if op in rw.ADMISSION_OPS:
            return await relay_admission.on_op(self.swarm, frame)
        if op == "welcome":
            members = frame.body.get("members")
            for body in members if isinstance(members, list) else []:
                await self._member(body)
            out = [rw.subscribe(sorted(self.topics))] if self.topics else []
            out.extend(self.pending)  # flushed in order before anything new
            self.pending.clear()
            self.ready = True
            return out
        if op == "member":
            await self._member(frame.body.get("registration"))
        elif op == "left":
            agent = frame.body.get("agent_id")
            if isinstance(agent, str) and self.on_left is not None:
                await self.on_left(agent)
        elif op == "ping":
            return [rw.encode("pong", id=rw.ping_id(frame))]
        elif op == "pong":
            done = self.pongs.pop(frame.body.get("id"), None)  # type: ignore[arg-type]
            if done is not None:
                done()
        elif op == "undeliverable":
            self.undeliverable.append((str(frame.body.get("message_id")), str(frame.body.get("to"))))
        return []

    async def _member(self, body: object) -> None:
        if self.on_member is None or not isinstance(body, dict):
            return
        try:
            registration = Registration.from_dict(body)
        except RejectedInput as exc:
            log.warning("%s: bad registration from relay: %s", self.swarm.agent_id, exc)
            return
        await self.on_member(registration)
