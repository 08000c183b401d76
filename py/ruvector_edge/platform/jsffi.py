"""What every browser provider needs from the Pyodide FFI: its JS bridge, byte copies, write-behind IndexedDB.

Imported only by browser modules (it needs Pyodide's `js`). Each bridge script in
web/bridges/ sets one global; a provider that finds it missing raises
ProviderUnavailable naming the script, rather than failing on first use.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import Any

import js  # type: ignore[import-not-found]
from pyodide.ffi import JsException, JsProxy  # type: ignore[import-not-found]

from ..errors import ProviderUnavailable

__all__ = ["WriteBehindStore", "js_bridge", "to_u8"]

log = logging.getLogger(__name__)


def js_bridge(global_name: str, script: str) -> JsProxy:
    """The object a bridge script put on globalThis; ProviderUnavailable when it is not loaded."""
    bridge = getattr(js, global_name, None)
    if bridge is None:
        raise ProviderUnavailable(f"globalThis.{global_name} is missing: load {script} in the worker first")
    return bridge


def to_u8(data: bytes | bytearray | memoryview) -> JsProxy:
    """Copy bytes into a fresh Uint8Array (new + assign is ~40x cheaper than to_js for large buffers)."""
    arr = js.Uint8Array.new(len(data))
    if len(data):
        arr.assign(data)
    return arr


class WriteBehindStore(abc.ABC):
    """An IndexedDB database behind a synchronous in-memory mirror.

    Changes are queued per key (`self._pending`: key -> value, or None for a
    delete) and written as one transaction per flush. `flush()` returns once
    everything queued before it is committed; a failed write stays queued (later
    changes win) and raises OSError. With an event loop running, each change also
    starts a background flush, so data reaches the disk unawaited — but only an
    awaited `flush()` is a guarantee.
    """

    def __init__(self, db: JsProxy, name: str) -> None:
        self._db: JsProxy | None = db
        self.name = name
        self._pending: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    # To implement ---------------------------------------------------------------------
    @abc.abstractmethod
    def _start_write(self, batch: Any) -> JsProxy:
        """Create the transaction for `batch` now (synchronously, inside the JS call); returns its promise."""

    @abc.abstractmethod
    def _close_db(self, db: JsProxy) -> None: ...

    # Batches (override when a store queues more than per-key changes) -----------------
    @property
    def unflushed(self) -> int:
        """How many keys have changes not yet confirmed on disk."""
        return len(self._pending)

    def _take_batch(self) -> Any:
        batch, self._pending = self._pending, {}
        return batch

    def _requeue(self, batch: Any) -> None:
        batch.update(self._pending)  # what changed since the failed write wins over it
        self._pending = batch

    # Shared behaviour -------------------------------------------------------------------
    async def flush(self) -> None:
        """Return once every change made before this call is committed to IndexedDB."""
        async with self._lock:
            if not self.unflushed:
                return
            self._check_open()
            batch = self._take_batch()
            try:
                await self._start_write(batch)
            except JsException as error:
                self._requeue(batch)
                raise OSError(f"IndexedDB write to {self.name!r} failed: {error}") from error

    def close(self) -> None:
        """Close the database; unflushed changes are still written, but nobody learns whether they landed."""
        if self._db is None:
            return
        if self.unflushed:
            log.warning("%s closed with %d unflushed changes: writing them unconfirmed", self.name, self.unflushed)
            self._start_write(self._take_batch()).catch(js.console.warn)
        # IndexedDB lets transactions created before close() finish.
        self._close_db(self._db)
        self._db = None

    def _check_open(self) -> None:
        if self._db is None:
            raise ValueError(f"{self.name} is closed")

    def _write_behind(self) -> None:
        if self._background is not None and not self._background.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._background = loop.create_task(self._flush_quietly())

    async def _flush_quietly(self) -> None:
        """Flush until nothing is queued (changes may land while a write is in flight)."""
        while self.unflushed and self._db is not None:
            try:
                await self.flush()
            except Exception as error:  # kept queued; the caller's own flush() retries and raises
                log.warning("background write of %s failed: %s", self.name, error)
                return
