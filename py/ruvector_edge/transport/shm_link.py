"""The relay protocol over shared memory: agents on one machine reach a relay without sockets.

A relay (or a coordinator running one) opens a *hub*: an abstract-namespace
Unix datagram socket named after the hub where agents announce the name of a
shared-memory channel they created. The hub attaches to it and plugs it into
the same `RelayRouter` as its WebSocket peers, so local and remote agents
share one swarm. The agent side reuses `RelaySession`, exactly like the
WebSocket client: same handshake, same bounded queue, same reconnect policy.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket

from ..errors import RejectedInput, TransportClosed, TransportError
from ..p2p.swarm import P2PSwarm
from ..relay.queued_peer import QueuedPeer
from .relay_link import ReconnectingRelayLink
from .shm import ShmChannel

log = logging.getLogger(__name__)

_HUB_NS = "\0ruvector-edge/shm-hub/"
_conn_ids = itertools.count(1_000_000_000)  # apart from WebSocket connection ids
# A channel has no close handshake of its own, so the hub's last frame carries what a WebSocket close
# frame would: code and reason. A NUL byte never starts a relay frame (UTF-8 JSON), so it cannot be mistaken.
_CLOSE_PREFIX = b"\0close:"


def close_frame(code: int, reason: str) -> bytes:
    return _CLOSE_PREFIX + f"{code} {reason}".encode("utf-8")


def parse_close_frame(data: bytes) -> tuple[int, str] | None:
    """(code, reason) of a hub's close frame; None for any other frame (or a damaged close frame)."""
    if not data.startswith(_CLOSE_PREFIX):
        return None
    code, _, reason = data[len(_CLOSE_PREFIX):].decode("utf-8", "replace").partition(" ")
    return (int(code), reason) if code.isdigit() else None


def hub_address(hub: str) -> str:
    return _HUB_NS + hub


class _ShmPeer(QueuedPeer):
    """A router Peer backed by a shared-memory channel."""

    write_errors = (TransportError, RejectedInput)

    def __init__(self, channel: ShmChannel, queue_length: int) -> None:
        super().__init__(next(_conn_ids), queue_length)
        self.channel = channel

    async def _write(self, text: str) -> None:
        await self.channel.asend(text.encode("utf-8"))

    async def _finish(self) -> None:
        """Tell the agent why the router closed us (a refusal is final for it), as a WebSocket close would."""
        if self.close_code is not None:
            try:
                await self.channel.asend(close_frame(self.close_code, self.close_reason))
            except self.write_errors as exc:
                log.debug("peer %d: close frame not sent: %r", self.conn_id, exc)


class ShmHub:
    """Accepts agents' shared-memory channels into a relay router."""

    def __init__(self, name: str, router, queue_length: int = 1024) -> None:
        self.name = name
        self.router = router
        self.queue_length = queue_length
        self._socket: socket.socket | None = None
        self._tasks: set[asyncio.Task] = set()
        self._peers: set[_ShmPeer] = set()

    async def start(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(hub_address(self.name))
        except OSError as exc:
            sock.close()
            raise TransportError(f"shm hub {self.name!r} is already running ({exc})") from None
        sock.setblocking(False)
        self._socket = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_announce)

    def _on_announce(self) -> None:
        assert self._socket is not None
        try:
            data = self._socket.recv(256)
        except BlockingIOError:
            return
        name = data.decode("ascii", "replace")
        task = asyncio.create_task(self._serve(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, channel_name: str) -> None:
        try:
            channel = await asyncio.to_thread(ShmChannel.attach, channel_name, wait=1.0)
        except (TransportError, RejectedInput, ValueError) as exc:
            self.router.metrics.drop("shm_attach_failed")
            log.warning("shm hub %s: cannot attach %r: %s", self.name, channel_name, exc)
            return
        peer = _ShmPeer(channel, self.queue_length)
        self._peers.add(peer)
        writer = asyncio.create_task(peer.writer())
        self.router.open(peer)
        try:
            while not peer.closed:
                data = await channel.arecv()
                await self.router.receive(peer, data)
        except (TransportError, RejectedInput) as exc:
            log.debug("shm hub %s: channel %s ended: %s", self.name, channel_name, exc)
        finally:
            self.router.closed(peer)
            peer.close(1000, "")
            try:
                await asyncio.wait_for(writer, 1.0)
            except asyncio.TimeoutError:
                writer.cancel()
            channel.close()
            self._peers.discard(peer)

    async def stop(self) -> None:
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
        for peer in list(self._peers):
            peer.channel.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class ShmRelayLink(ReconnectingRelayLink):
    """An agent's link to a relay hub over shared memory; same behaviour as the WebSocket `RelayClient`."""

    def __init__(self, hub: str, swarm: P2PSwarm, **options) -> None:
        options.setdefault("backoff_initial_s", 0.05)
        options.setdefault("backoff_max_s", 2.0)
        super().__init__(f"shm://{hub}", swarm, **options)
        self.hub = hub
        self._channel: ShmChannel | None = None

    async def _send_text(self, text: str) -> None:
        channel = self._channel
        if channel is None:
            raise TransportClosed("not connected")
        await channel.asend(text.encode("utf-8"))

    async def _close(self, leave: bool) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    async def _connect_once(self) -> None:
        name = f"{self.hub}-{os.getpid()}-{os.urandom(4).hex()}"
        channel = ShmChannel.create(name, capacity=4 * 1024 * 1024)
        self._channel = channel
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as announce:
                try:
                    announce.sendto(name.encode("ascii"), hub_address(self.hub))
                except (ConnectionRefusedError, FileNotFoundError):
                    raise TransportError(f"no shm hub named {self.hub!r}") from None
            first = True
            while not self._stopped:
                try:
                    # The hub answers a new channel with a challenge at once; silence means no hub took it.
                    data = await channel.arecv(timeout=5.0 if first else None)
                except TimeoutError:
                    raise TransportError(f"shm hub {self.hub!r} did not attach our channel") from None
                except TransportClosed:
                    break
                first = False
                closing = parse_close_frame(data)
                if closing is not None:
                    self._closed_by_relay(*closing)
                    break
                await self._received(data.decode("utf-8", "replace"))  # bad bytes then fail as malformed JSON
        finally:
            self._channel = None
            channel.close()
