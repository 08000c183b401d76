"""Open TCP connections per source address and in all, decided at accept (sans-I/O: addresses in, verdicts out).

admission.py's caps start once an HTTP request has arrived; a client that opens
sockets and never sends a byte never reaches them, yet each socket costs the
relay a descriptor. This gate is asked first, before any byte is parsed: past a
cap the socket is closed at once, so one host cannot take the descriptors honest
hosts need, and all hosts together cannot take the relay's last ones.
"""

from __future__ import annotations

PER_ADDRESS = "tcp_per_address"
TOTAL = "tcp_total"


class TcpGate:
    def __init__(self, per_address: int, total: int) -> None:
        self.per_address, self.total = per_address, total
        self.open_count = 0
        self._open: dict[str, int] = {}

    def open(self, address: str) -> str | None:
        """Count a new connection from `address`, or the cap (PER_ADDRESS or TOTAL) that refuses it, uncounted."""
        if self._open.get(address, 0) >= self.per_address:
            return PER_ADDRESS
        if self.open_count >= self.total:
            return TOTAL
        self._open[address] = self._open.get(address, 0) + 1
        self.open_count += 1
        return None

    def close(self, address: str) -> None:
        """A connection `open` admitted has ended."""
        self.open_count -= 1
        self._open[address] -= 1
        if not self._open[address]:
            del self._open[address]  # an address that went away costs nothing
