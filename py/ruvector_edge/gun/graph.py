"""The GUN graph: souls -> keys -> (state, value), merged by HAM, with deferral.

Deferral (decided here, GUN keeps a `setTimeout` per future update with no bound):
an update whose state is ahead of our clock (plus `drift_ms`) waits in a bounded
heap (`max_deferred` entries) and is merged by `tick()` once due; a state more than
`max_future_ms` ahead (default 2**31-1 ms, GUN's own single-timer cap, ~24.8 days)
is refused outright, as is any update once the heap is full. Deferred updates are
persisted and survive a restart.

Memory bound: the graph refuses a new key or a larger value once the stored
souls, keys and values would exceed `max_bytes` (default 256 MiB, measured as
characters of soul + key + JSON value, plus 64 bytes a key for the tuple and dict
slot: CPython's real use is within ~3x of that), and a node holds at most
`max_node_keys` keys. Deferred updates are bounded by count (`max_deferred`), each
by the wire's message size.
"""

from __future__ import annotations

import heapq
import time
from dataclasses import dataclass

from .ham import APPLY, DEFER, MAX_DEFER_WAIT_MS, ham
from .store import SqliteGraphStore

NEG_INF = float("-inf")


def wall_ms() -> float:
    return time.time() * 1000.0


@dataclass
class GraphLimits:
    max_node_keys: int = 10_000       # keys stored on one node
    max_deferred: int = 10_000        # future-state updates waiting
    max_future_ms: float = MAX_DEFER_WAIT_MS
    drift_ms: float = 0.0             # GUN's State.drift
    max_bytes: int = 256 << 20        # souls + keys + values held (see the module docstring)


KEY_OVERHEAD = 64


def entry_size(soul: str, key: str, value) -> int:
    """What one stored (soul, key, value) counts against `max_bytes`."""
    if isinstance(value, str):
        size = len(value)
    elif isinstance(value, dict):
        size = len(value.get("#", "")) + 8
    else:
        size = 8
    return len(soul) + len(key) + size + KEY_OVERHEAD


class Graph:
    def __init__(self, store: SqliteGraphStore | None = None, limits: GraphLimits | None = None,
                 clock=wall_ms) -> None:
        self.nodes: dict[str, dict[str, tuple[float, object]]] = {}
        self.limits = limits or GraphLimits()
        self.clock = clock
        self.store = store
        self._deferred: list[tuple[float, int, str, str, object]] = []
        self._seq = 0
        self.counts = {"applied": 0, "dropped": 0, "deferred": 0, "refused_future": 0,
                       "refused_deferred_full": 0, "refused_node_full": 0, "refused_graph_full": 0}
        self.bytes = 0
        if store is not None:
            for soul, key, state, value in store.load():
                self.nodes.setdefault(soul, {})[key] = (state, value)
                self.bytes += entry_size(soul, key, value)
            for soul, key, state, value in store.load_deferred():
                self._push_deferred(state, soul, key, value)

    def now(self) -> float:
        return self.clock() + self.limits.drift_ms

    def too_far(self, state: float) -> bool:
        return state - self.now() > self.limits.max_future_ms

    def _push_deferred(self, state, soul, key, value) -> None:
        self._seq += 1
        heapq.heappush(self._deferred, (state, self._seq, soul, key, value))

    def merge(self, soul: str, key: str, state: float, value) -> str:
        """HAM-merge one key; returns "apply", "drop", "defer" or "refuse"."""
        node = self.nodes.get(soul)
        current = node.get(key) if node else None
        now = self.now()
        if current is None:
            decision = ham(state, value, NEG_INF, None, now, known_present=False)
        else:
            decision = ham(state, value, current[0], current[1], now)
        if decision == DEFER:
            if state - now > self.limits.max_future_ms:
                self.counts["refused_future"] += 1
                return "refuse"
            if len(self._deferred) >= self.limits.max_deferred:
                self.counts["refused_deferred_full"] += 1
                return "refuse"
            self._push_deferred(state, soul, key, value)
            if self.store is not None:
                self.store.add_deferred(soul, key, state, value)
            self.counts["deferred"] += 1
            return DEFER
        if decision != APPLY:
            self.counts["dropped"] += 1
            return decision
        if node is None:
            node = self.nodes[soul] = {}
        elif current is None and len(node) >= self.limits.max_node_keys:
            self.counts["refused_node_full"] += 1
            return "refuse"
        grown = entry_size(soul, key, value) - (entry_size(soul, key, current[1]) if current else 0)
        if grown > 0 and self.bytes + grown > self.limits.max_bytes:
            self.counts["refused_graph_full"] += 1
            if not node:
                del self.nodes[soul]
            return "refuse"
        self.bytes += grown
        node[key] = (state, value)
        if self.store is not None:
            self.store.write([(soul, key, state, value)])
        self.counts["applied"] += 1
        return APPLY

    def next_due(self) -> float | None:
        return self._deferred[0][0] if self._deferred else None

    def tick(self) -> list[tuple[str, str]]:
        """Merge every deferred update now due; returns the (soul, key) applied."""
        applied = []
        now = self.now()
        while self._deferred and self._deferred[0][0] <= now:
            state, _, soul, key, value = heapq.heappop(self._deferred)
            if self.store is not None:
                self.store.remove_deferred(soul, key, state, value)
            if self.merge(soul, key, state, value) == APPLY:
                applied.append((soul, key))
        if self.store is not None:
            self.store.commit()
        return applied

    def deferred_count(self) -> int:
        return len(self._deferred)

    def node(self, soul: str, key: str | None = None) -> dict | None:
        """The node in GUN wire form ({"_": {"#", ">"}, key: value}), or one key of it."""
        data = self.nodes.get(soul)
        if not data:
            return None
        if key is not None:
            if key not in data:
                return None
            items = [(key, data[key])]
        else:
            items = sorted(data.items())
        states, out = {}, {}
        for k, (state, value) in items:
            states[k] = int(state) if float(state).is_integer() and abs(state) < 2 ** 53 else state
            out[k] = value
        return {"_": {"#": soul, ">": states}, **out}

    def commit(self) -> None:
        if self.store is not None:
            self.store.commit()
