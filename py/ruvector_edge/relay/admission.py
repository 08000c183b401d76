"""Connection caps per remote address, decided before a WebSocket upgrade (sans-I/O: addresses in, verdicts out).

A connection costs the relay a file descriptor and buffers from the moment it is
accepted, and one that has not answered the challenge costs that without being
anyone. So the relay caps, per remote address, the connections it keeps on /ws
and /gun, and caps the connections still in the handshake both in total and per
address. Refusing before the upgrade costs one HTTP response; the hello deadline
(router.expire_handshakes) frees the handshake slots a silent client holds. The
per-address caps are what keep one host from taking the slots honest hosts need.
"""

from __future__ import annotations

from .metrics import RelayMetrics
from .router import RelayLimits


class Ticket:
    """One admitted connection; `handshake_done` and `release` are idempotent, so error paths may call them freely."""

    def __init__(self, gate: "ConnectionGate", address: str, pending: bool) -> None:
        self._gate, self.address, self.pending, self.released = gate, address, pending, False

    def handshake_done(self) -> None:
        if self.pending and not self.released:
            self.pending = False
            self._gate._end_pending(self.address)

    def release(self) -> None:
        if self.released:
            return
        self.handshake_done()
        self.released = True
        self._gate._close(self.address)


class ConnectionGate:
    def __init__(self, limits: RelayLimits, metrics: RelayMetrics) -> None:
        self.limits, self.metrics = limits, metrics
        self._open: dict[str, int] = {}
        self._pending: dict[str, int] = {}

    def admit(self, address: str, *, handshake: bool) -> Ticket | None:
        """A ticket for a new connection from `address`, or None (counted by reason) when a cap is reached.

        `handshake`: the connection must still prove who it is (/ws), so it also takes a handshake slot."""
        limits = self.limits
        reason = None
        if self._open.get(address, 0) >= limits.max_connections_per_address:
            reason = "per_address"
        elif handshake and self.metrics.connections_pending >= limits.max_pending:
            reason = "pending"
        elif handshake and self._pending.get(address, 0) >= limits.max_pending_per_address:
            reason = "pending_per_address"
        if reason is not None:
            self.metrics.refuse(reason)
            return None
        self._open[address] = self._open.get(address, 0) + 1
        if handshake:
            self._pending[address] = self._pending.get(address, 0) + 1
            self.metrics.connections_pending += 1
        return Ticket(self, address, handshake)

    def _end_pending(self, address: str) -> None:
        self.metrics.connections_pending -= 1
        self._pending[address] -= 1
        if not self._pending[address]:
            del self._pending[address]  # an address that went quiet costs nothing

    def _close(self, address: str) -> None:
        self._open[address] -= 1
        if not self._open[address]:
            del self._open[address]
