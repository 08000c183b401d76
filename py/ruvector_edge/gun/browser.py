"""GunSwarm's graph in the browser: GUN.js in the worker (web/bridges/gun.js), driven through the FFI.

Imported only under Pyodide (``import js`` fails elsewhere); chosen by
`platform.default_gun_graph`. Values cross as JSON text, one crossing per call.
"""

from __future__ import annotations

import json
from typing import Sequence

from pyodide.ffi import to_js  # type: ignore[import-not-found]

from ..errors import TransportError
from ..platform.jsffi import js_bridge


class BrowserGunGraph:
    def __init__(self, relays: Sequence[str] = ()) -> None:
        self.relays = list(relays)
        self._handle = None

    @staticmethod
    def _bridge():
        return js_bridge("edgeGun", "web/bridges/gun.js")

    async def connect(self, timeout: float = 10.0) -> None:
        """Start GUN.js with the relays; GUN connects (and reconnects) to them on its own."""
        if self._handle is None:
            self._handle = await self._bridge().open(to_js(self.relays))

    async def put(self, soul: str, values: dict[str, object], timeout: float = 2.0) -> None:
        """Write and wait for the first ack; with no relay answering in `timeout` the write stays local
        (GUN syncs it when a relay comes back)."""
        await self.connect()
        err = str(await self._bridge().put(self._handle, soul, json.dumps(values), int(timeout * 1000)))
        if err and err != "timeout":
            raise TransportError(f"GUN refused the put on {soul!r}: {err}")

    async def read(self, soul: str, timeout: float = 2.0) -> dict[str, object]:
        await self.connect()
        text = await self._bridge().read(self._handle, soul, int(timeout * 1000))
        data = json.loads(str(text))
        return data if isinstance(data, dict) else {}

    async def close(self) -> None:
        if self._handle is not None:
            self._bridge().close(self._handle)
            self._handle = None
