"""The swarm side of artifacts: serve blocks to peers that ask, fetch missing ones with `BlockFetch`.

Blocks travel as direct messages: REQUEST_BLOCK {cid, req} and BLOCK {cid, req,
data} where `data` is base64 or null for "I don't have it". A block is at most
`MAX_WIRE_BLOCK` bytes so its base64 fits a swarm payload (protocol.MAX_PAYLOAD_JSON);
the store's own chunks are 256 KiB.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Awaitable, Callable, Iterable

from ..errors import ArtifactUnavailable, UnsolicitedReply
from ..p2p import wire
from ..p2p.wire import b64
from ..protocol import MessageKind, SwarmMessage
from .cid import parse_cid
from .fetch import BlockFetch
from .store import ArtifactStore

__all__ = ["ArtifactExchange", "MAX_WIRE_BLOCK"]

MAX_WIRE_BLOCK = 512 * 1024
_REQ_LEN = 32

Send = Callable[..., Awaitable[Any]]


class ArtifactExchange:
    """`send(peer, kind, **body)` sends a direct message; `peers()` lists members worth asking."""

    def __init__(self, store: ArtifactStore, send: Send, peers: Callable[[], Iterable[str]], *,
                 parallel: int = 4, request_timeout: float = 2.0) -> None:
        self.store = store
        self._send = send
        self._peers = peers
        self.parallel = parallel
        self.request_timeout = request_timeout
        self._pending: dict[str, tuple[BlockFetch, str, str, asyncio.Event]] = {}
        self.served = 0

    async def fetch(self, cid: str, timeout: float = 10.0, prefer: Iterable[str] = ()) -> bytes:
        """The artifact's bytes: local if held, else fetched block by block from peers (`prefer` asked first)."""
        parse_cid(cid)
        if not self.store.missing_chunks(cid):
            return self.store.get_artifact(cid)
        fetch = BlockFetch(self.store, cid, [*prefer, *self._peers()], parallel=self.parallel,
                           request_timeout=min(self.request_timeout, timeout))
        wake = asyncio.Event()
        mine: set[str] = set()
        end = time.monotonic() + timeout
        try:
            while not fetch.done:
                now = time.monotonic()
                if now >= end:
                    raise ArtifactUnavailable(f"fetching {cid} took longer than {timeout} s")
                fetch.expire(now)
                for request in fetch.next_requests(now):
                    token = os.urandom(12).hex()
                    mine.add(token)
                    self._pending[token] = (fetch, request.peer, request.cid, wake)
                    try:
                        await self._send(request.peer, MessageKind.REQUEST_BLOCK, cid=request.cid, req=token)
                    except Exception:  # no path to that peer: treat as no answer
                        self._pending.pop(token, None)
                        fetch.on_absent(request.peer, request.cid)
                wake.clear()
                if fetch.done:
                    break
                until = min(fetch.next_deadline() or end, end)
                try:
                    await asyncio.wait_for(wake.wait(), max(0.0, until - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
        finally:
            for token in mine:
                self._pending.pop(token, None)
        return self.store.get_artifact(cid)

    async def on_request(self, sender: str, message: SwarmMessage) -> None:
        body = message.body
        wire.expect_keys(body, frozenset({"cid", "req"}), "REQUEST_BLOCK")
        cid, token = body["cid"], wire.get_str(body, "req", _REQ_LEN)
        parse_cid(cid)
        data = self.store.get_chunk(cid) if self.store.has(cid) else None
        if data is not None and len(data) > MAX_WIRE_BLOCK:
            data = None
        if data is not None:
            self.served += 1
        await self._send(sender, MessageKind.BLOCK, cid=cid, req=token, data=None if data is None else b64(data))

    async def on_block(self, sender: str, message: SwarmMessage) -> None:
        body = message.body
        wire.expect_keys(body, frozenset({"cid", "req", "data"}), "BLOCK")
        token = wire.get_str(body, "req", _REQ_LEN)
        pending = self._pending.get(token)
        if pending is None or pending[1] != sender or pending[2] != body["cid"]:
            raise UnsolicitedReply(f"BLOCK from {sender!r} answers no outstanding request")
        fetch, _, cid, wake = pending
        data = None if body["data"] is None else wire.get_b64(body, "data", MAX_WIRE_BLOCK)
        del self._pending[token]
        wake.set()
        if data is None:
            fetch.on_absent(sender, cid)
        else:
            fetch.on_block(sender, cid, data)

    def outstanding(self) -> int:
        return len(self._pending)
