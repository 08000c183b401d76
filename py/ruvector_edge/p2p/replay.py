"""Replay protection: timestamp window, per-sender sliding counter window, nonce cache.

The counter window works like IPsec/DTLS anti-replay: messages may arrive out
of order within `window` counters of the highest seen and are accepted once;
anything older, or seen before, is refused. Nonces are remembered only as long
as their timestamp could still be accepted, which bounds the cache by the
window rather than by uptime.

`check` never changes state; `record` re-checks and then commits, with no
await in between, so only a fully verified message can burn a nonce.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ..errors import FutureTimestamp, ReplayDetected, StaleTimestamp


@dataclass
class _SenderWindow:
    top: int = -1
    seen: int = 0  # bit i set = counter (top - i) already accepted


@dataclass
class ReplayGuard:
    window: int = 1024
    past_ms: int = 5 * 60 * 1000
    future_ms: int = 60 * 1000
    max_nonces: int = 500_000
    _senders: dict[str, _SenderWindow] = field(default_factory=dict)
    _nonces: dict[tuple[str, str], int] = field(default_factory=dict)
    _expiry: list[tuple[int, tuple[str, str]]] = field(default_factory=list)
    evicted_nonces: int = 0

    def check_time(self, timestamp: int, now: int) -> None:
        if timestamp < now - self.past_ms:
            raise StaleTimestamp(f"timestamp {timestamp} is {now - timestamp} ms old (limit {self.past_ms})")
        if timestamp > now + self.future_ms:
            raise FutureTimestamp(f"timestamp {timestamp} is {timestamp - now} ms ahead (limit {self.future_ms})")

    def check(self, sender: str, counter: int, nonce: str, timestamp: int, now: int) -> None:
        """Raise if the message is stale, from the future, or a replay. Changes nothing."""
        self.check_time(timestamp, now)
        state = self._senders.get(sender)
        if state is not None and counter <= state.top:
            behind = state.top - counter
            if behind >= self.window:
                raise ReplayDetected(f"counter {counter} is {behind} behind {state.top}, outside the window")
            if state.seen >> behind & 1:
                raise ReplayDetected(f"counter {counter} from {sender!r} already seen")
        if (sender, nonce) in self._nonces:
            raise ReplayDetected(f"nonce from {sender!r} already seen")

    def record(self, sender: str, counter: int, nonce: str, timestamp: int, now: int) -> None:
        """Check again, then remember the message as seen."""
        self.check(sender, counter, nonce, timestamp, now)
        state = self._senders.setdefault(sender, _SenderWindow())
        if counter > state.top:
            shift = counter - state.top
            state.seen = ((state.seen << shift) | 1) & ((1 << self.window) - 1) if shift < self.window else 1
            state.top = counter
        else:
            state.seen |= 1 << (state.top - counter)
        self._forget_expired(now)
        key = (sender, nonce)
        self._nonces[key] = timestamp
        heapq.heappush(self._expiry, (timestamp, key))
        while len(self._nonces) > self.max_nonces:
            self._pop_oldest()
            self.evicted_nonces += 1

    def _forget_expired(self, now: int) -> None:
        horizon = now - self.past_ms
        while self._expiry and self._expiry[0][0] < horizon:
            self._pop_oldest()

    def _pop_oldest(self) -> None:
        _, key = heapq.heappop(self._expiry)
        self._nonces.pop(key, None)

    def highest_counter(self, sender: str) -> int | None:
        state = self._senders.get(sender)
        return None if state is None else state.top

    def nonce_count(self) -> int:
        return len(self._nonces)

    def forget_sender(self, sender: str) -> None:
        self._senders.pop(sender, None)
