"""The router's view of one client: a bounded outbound queue drained by the connection's own writer task.

The WebSocket server and the shared-memory hub both hand the router such a peer;
only how a frame is written (and what ends a connection) differs.
"""

from __future__ import annotations

import abc
import asyncio
import logging

log = logging.getLogger(__name__)

__all__ = ["QueuedPeer"]


class QueuedPeer(abc.ABC):
    """`send` never blocks: False when the queue is full, which the router treats as a slow consumer.
    `close` is idempotent and drops what is still queued, so the close goes out next."""

    #: errors that end the writer quietly: the connection went away under it
    write_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, conn_id: int, queue_length: int) -> None:
        self.conn_id = conn_id
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(queue_length)
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def send(self, text: str) -> bool:
        if self.closed:
            return True  # closing: nothing more goes out, and that is not a slow consumer
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            return False

    def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.close_code, self.close_reason = code, reason
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)
        self._on_close()

    async def writer(self) -> None:
        """Write queued frames in order until the close marker; then `_finish`."""
        try:
            while (text := await self.queue.get()) is not None:
                await self._write(text)
        except self.write_errors as exc:
            log.debug("peer %d writer stopped: %r", self.conn_id, exc)
        finally:
            await self._finish()

    @abc.abstractmethod
    async def _write(self, text: str) -> None: ...

    def _on_close(self) -> None:
        """Called once, when the peer starts closing."""

    async def _finish(self) -> None:
        """Called once, when the writer ends (for whatever reason)."""
