"""GunSwarm's graph for native agents: our own GunEngine, the one the relay serves on /gun.

Embedded in a relay process it is that relay's engine (no network). Otherwise it is
a local engine peered over WebSocket with each relay (`peer_with`): writes are HAM-
merged locally and relayed, reads ask the relays (`get`) and merge their answers,
so a native agent reads and writes the graph through the same rules a relay applies.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Sequence

from ..errors import ProviderUnavailable
from .endpoint import _dispatch, peer_with
from .peer import GunEngine


class NativeGunGraph:
    def __init__(self, relays: Sequence[str] = (), engine: GunEngine | None = None) -> None:
        self.relays = list(relays)
        if engine is None:  # our own client engine: keep only the souls this agent uses
            engine = GunEngine()
            engine.interest = set()
        self.engine = engine
        self._links: list[tuple[asyncio.Task, asyncio.Event]] = []
        self._waiting: dict[str, asyncio.Event] = {}
        self.engine.on_answer = self._answered

    def _answered(self, msg_id: str) -> None:
        event = self._waiting.get(msg_id)
        if event is not None:
            event.set()

    async def connect(self, timeout: float = 10.0) -> None:
        """Start a link to every relay; return once one is up (offline, with no relays, at once)."""
        if not self.relays or self._links:
            return
        for url in self.relays:
            up = asyncio.Event()
            self._links.append((asyncio.create_task(peer_with(self.engine, url, retry_s=0.5, connected=up)), up))
        waits = [asyncio.create_task(up.wait()) for _, up in self._links]
        done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if not done:
            await self.close()
            raise ProviderUnavailable(f"no GUN relay reachable in {timeout} s: {self.relays}")

    async def put(self, soul: str, values: dict[str, object], timeout: float = 2.0) -> None:
        """Write locally and to the relays; returns once one relay acked it (or `timeout`: GUN retries nothing,
        the next write of the same key carries the state again)."""
        await self._exchange(*self.engine.put_tracked(soul, values), timeout)

    async def read(self, soul: str, timeout: float = 2.0) -> dict[str, object]:
        """The node's keys and values after the first relay answers (or `timeout`): ours merged with theirs."""
        await self._exchange(*self.engine.request(soul), timeout)
        node = self.engine.get(soul) or {}
        return {k: v for k, v in node.items() if k != "_"}

    async def _exchange(self, msg_id: str, out, timeout: float) -> None:
        if out:
            answered = self._waiting[msg_id] = asyncio.Event()
            try:
                _dispatch(self.engine, out)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(answered.wait(), timeout)
            finally:
                self._waiting.pop(msg_id, None)

    async def close(self, timeout: float = 5.0) -> None:
        links, self._links = self._links, []
        for task, _ in links:
            task.cancel()
        if links:
            await asyncio.wait([task for task, _ in links], timeout=timeout)
