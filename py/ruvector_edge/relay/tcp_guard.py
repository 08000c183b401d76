"""The relay's accepted sockets before HTTP: caps at accept (tcp_gate.py) and a deadline on the first request head.

aiohttp's own bounds start once a request head is complete. Until then a socket
that sends nothing, or trickles a header a byte at a time (slowloris), holds a
descriptor and a task for aiohttp's keep-alive timeout, an hour in 3.14, so a few
thousand of them take every descriptor the relay has. Here each accepted socket
is first counted by a TcpGate (past a cap it is aborted at once, no response),
then given `request_head_timeout_s` from accept to complete its first head:
bytes arriving do not extend it, so trickling does not help.

Only public hooks are used: the asyncio protocol the loop's server makes for each
socket (this one stands in front of aiohttp's, passing every call on), and an
aiohttp middleware, the first code to see a parsed request, which ends the
deadline. Between requests aiohttp's keepalive_timeout bounds the wait for the
next head the same way (its timer is not reset by bytes either; the tests in
tests/test_relay_tcp_guard.py pin that).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Callable

from aiohttp import web

from .metrics import RelayMetrics
from .router import RelayLimits
from .tcp_gate import TcpGate

log = logging.getLogger(__name__)

FD_RESERVE = 64  # descriptors kept for what is not a client: listening socket, stores, NATS, shared memory, logs


def descriptor_budget() -> int:
    """How many client sockets the process's descriptor limit leaves room for."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    return max(1, soft - FD_RESERVE)


class TcpGuard:
    def __init__(self, limits: RelayLimits, metrics: RelayMetrics) -> None:
        total = min(limits.max_tcp_connections, descriptor_budget())
        if total < limits.max_tcp_connections:
            log.info("open connections capped at %d by the descriptor limit (ulimit -n)", total)
        self.gate = TcpGate(limits.max_tcp_per_address, total)
        self.head_timeout_s = limits.request_head_timeout_s
        self.metrics = metrics
        self._awaiting_head: dict[asyncio.BaseTransport, _GuardedProtocol] = {}

    def protocol_factory(self, make_handler: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """What to give `loop.create_server` instead of aiohttp's `runner.server`."""
        return lambda: _GuardedProtocol(self, make_handler)

    @web.middleware
    async def head_arrived(self, request: web.Request, handler):
        """Must be the app's first middleware: a parsed request ends its connection's head deadline."""
        guarded = self._awaiting_head.pop(request.transport, None)  # type: ignore[arg-type]
        if guarded is not None:
            guarded.end_deadline()
        return await handler(request)


class _GuardedProtocol(asyncio.Protocol):
    """Stands between the loop and aiohttp's RequestHandler: decides at accept, then passes every call on.
    A refused socket never gets a handler (no task, no parser), only an abort."""

    def __init__(self, guard: TcpGuard, make_handler: Callable[[], asyncio.Protocol]) -> None:
        self._guard, self._make_handler = guard, make_handler
        self._handler: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._address = "unknown"
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        guard = self._guard
        peer = transport.get_extra_info("peername")
        if peer:
            self._address = str(peer[0])
        refusal = guard.gate.open(self._address)
        if refusal is not None:
            guard.metrics.refuse(refusal)
            transport.abort()  # type: ignore[attr-defined]
            return
        self._transport = transport  # type: ignore[assignment]
        self._deadline = asyncio.get_running_loop().call_later(guard.head_timeout_s, self._expire)
        guard._awaiting_head[transport] = self
        self._handler = self._make_handler()
        self._handler.connection_made(transport)

    def end_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        self._guard._awaiting_head.pop(self._transport, None)  # type: ignore[arg-type]
        self._guard.metrics.head_timeouts += 1
        self._transport.abort()  # type: ignore[union-attr]  # not close(): nothing to flush, the descriptor goes now

    def data_received(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._handler is None else self._handler.eof_received()

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handler is None:
            return  # refused: never counted as open
        self.end_deadline()
        self._guard._awaiting_head.pop(self._transport, None)  # type: ignore[arg-type]
        self._guard.gate.close(self._address)
        self._handler.connection_lost(exc)
