"""What every relay link does whatever carries its bytes: connect, reconnect, queue, send.

Subclasses supply one connection attempt (`_connect_once`, which feeds the
session and returns once the connection ends) and how to put text on the
current connection (`_send_text`). The loop reconnects with exponential
backoff and full jitter so a restarted relay is not stampeded by every agent
at once; frames sent while disconnected wait in the session's bounded queue
(`SendQueueFull` when it is full, never a quiet drop) and are flushed in order
after the next welcome.

A link may know several relays of one federation (`targets`): each attempt goes
to the next one, so an agent whose relay dies is on another after one short
backoff, and its hello's `resume` catches it up there.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
from typing import Iterable

from ..errors import MembershipRefused, RejectedInput, TransportClosed, TransportError
from ..p2p.swarm import P2PSwarm
from . import relay_wire as rw
from .relay_session import FrameHandler, LeftHandler, MemberHandler, RelaySession

log = logging.getLogger(__name__)

# Failures after which a link simply tries again later.
RETRYABLE: tuple[type[BaseException], ...] = (ConnectionError, OSError, asyncio.TimeoutError, TransportError, RejectedInput)


class ReconnectingRelayLink(abc.ABC):
    retryable: tuple[type[BaseException], ...] = RETRYABLE

    def __init__(
        self,
        target: str | list[str],
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
        self.targets = [target] if isinstance(target, str) else list(target)
        if not self.targets:
            raise ValueError("a relay link needs at least one relay URL")
        self.target = self.targets[0]
        self.session = RelaySession(
            swarm, on_envelope=on_envelope, on_member=on_member, on_left=on_left, topics=topics,
            queue_limit=queue_limit, max_frame_bytes=max_frame_bytes,
        )
        self.agent_id = swarm.agent_id
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.max_frame_bytes = max_frame_bytes
        self.connected = asyncio.Event()
        self.refused = asyncio.Event()  # set, with `refusal`, when the relay refused us for good
        self.refusal: str | None = None
        self.reconnects = 0
        self._task: asyncio.Task | None = None
        self._stopped = False
        self._ping_id = 0

    # To implement -----------------------------------------------------------------
    @abc.abstractmethod
    async def _connect_once(self) -> None:
        """Open a connection, pass every received text to `self._received`, return when it ends."""

    @abc.abstractmethod
    async def _send_text(self, text: str) -> None:
        """Send on the current connection; raise TransportClosed (or a retryable error) if there is none."""

    async def _open(self) -> None:
        """Acquire what every connection attempt shares (e.g. an HTTP session)."""

    async def _close(self, leave: bool) -> None:
        """Close the current connection, after a `leave` frame if asked, and release `_open`'s resources."""

    # Lifecycle -----------------------------------------------------------------------
    @property
    def undeliverable(self):
        return self.session.undeliverable

    async def start(self) -> None:
        await self._open()
        self._task = asyncio.create_task(self._run(), name=f"{type(self).__name__}-{self.agent_id}")

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until welcomed; MembershipRefused at once when the relay refuses us (no point waiting out `timeout`)."""
        waits = [asyncio.ensure_future(self.connected.wait()), asyncio.ensure_future(self.refused.wait())]
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self.refusal is not None:
            raise MembershipRefused(self.refusal)
        if not done:
            raise asyncio.TimeoutError(f"not welcomed by {self.target} within {timeout:g} s")

    def _closed_by_relay(self, code: int | None, reason: str) -> None:
        """Subclasses report how the relay closed; a refusal (CLOSE_REFUSED) is final, so the link stops."""
        if code == rw.CLOSE_REFUSED:
            self.refusal = reason or "refused by the relay"
            self.refused.set()

    async def stop(self, leave: bool = True) -> None:
        self._stopped = True
        if leave and self.connected.is_set():
            try:
                await self._send_text(rw.encode("leave"))
            except self.retryable:
                pass
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._close(leave)
        self.connected.clear()

    # Sending -------------------------------------------------------------------------
    async def send(self, frame: bytes | str) -> None:
        """Send now if connected, else queue (bounded). Order is preserved across reconnects."""
        if self._stopped:
            raise TransportClosed(f"link to {self.target} stopped")
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        if self.session.can_send_now():
            try:
                await self._send_text(text)
                return
            except self.retryable:
                pass  # fell over mid-send: keep it for after the reconnect
        self.session.queue(text)

    def reaches(self, peer_id: str) -> bool:
        """A relay reaches every member (frames wait in the queue while reconnecting)."""
        return True

    async def subscribe(self, *topics: str) -> None:
        frame = self.session.subscribe_frame(topics)
        if frame is not None:
            await self._send_text(frame)

    async def ping(self, timeout: float = 5.0) -> float:
        """Round trip to the relay in seconds."""
        loop = asyncio.get_running_loop()
        if not self.connected.is_set():
            raise TransportClosed("not connected")
        self._ping_id += 1
        ping_id = self._ping_id
        future = loop.create_future()
        self.session.pongs[ping_id] = lambda: future.done() or future.set_result(None)
        start = loop.time()
        try:
            await self._send_text(rw.encode("ping", id=ping_id))
            await asyncio.wait_for(future, timeout)
        finally:
            self.session.pongs.pop(ping_id, None)
        return loop.time() - start

    # Connection loop -----------------------------------------------------------------
    async def _received(self, text: str) -> None:
        queued = {id(frame) for frame in self.session.pending} if self.session.pending else ()
        replies = await self.session.receive(text)
        for index, reply in enumerate(replies):
            try:
                await self._send_text(reply)
            except self.retryable:
                # The connection went away mid-flush: queued frames go back to the front of the
                # queue for the next welcome; control frames are re-made by the next handshake.
                unsent = [r for r in replies[index:] if id(r) in queued]
                self.session.pending.extendleft(reversed(unsent))
                raise
        if self.session.ready and not self.connected.is_set():
            self._welcomed = True
            self.connected.set()

    async def _run(self) -> None:
        delay = self.backoff_initial_s
        while not self._stopped:
            self._welcomed = False
            try:
                await self._connect_once()
            except self.retryable as exc:
                log.info("%s: %s unavailable (%s)", self.agent_id, self.target, exc)
            finally:
                self.session.connection_lost()
                self.connected.clear()
            if self._stopped or self.refusal is not None:
                break
            if self._welcomed:
                delay = self.backoff_initial_s  # a session that got going resets the backoff
            self.target = self.targets[(self.targets.index(self.target) + 1) % len(self.targets)]
            await asyncio.sleep(random.uniform(0, delay))
            if self.target == self.targets[0]:  # the backoff grows once per round of every relay
                delay = min(self.backoff_max_s, delay * 2)
            self.reconnects += 1
