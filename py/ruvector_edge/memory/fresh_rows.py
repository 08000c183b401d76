"""Rows the HNSW graph has not taken yet: searched exactly, handed to the graph in blocks.

A full memory importing a 32-entry SYNC_MEMORIES page inserted those 32 rows
into the graph at once, and hnswlib spreads so few over its threads poorly:
holding them here until a few hundred have come and inserting them as one
block took a 100K-row memory from ~5.4K to ~6.4K imports/s (bench/semantic_memory.py,
2 threads). Meanwhile a search scores these rows exactly and merges them with
the graph's candidates, so an entry is found the moment it is stored, and one
removed before the graph took it is simply dropped from here.

The vectors are kept contiguous, apart from the kernel's column matrix: scoring
256 rows gathered from that matrix cost ~120 µs a query, a contiguous block ~3 µs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FreshRows"]


class FreshRows:
    """Graph labels with their float32 unit vectors, in no particular order."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._labels = np.empty(256, dtype=np.int64)
        self._vectors = np.empty((256, dim), dtype=np.float32)
        self._slot: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._slot)

    def add(self, labels: np.ndarray, block: np.ndarray) -> None:
        """Hold `block`'s rows (labels new to this buffer)."""
        start, stop = len(self._slot), len(self._slot) + len(labels)
        if stop > len(self._labels):
            size = max(stop, 2 * len(self._labels))
            self._labels = np.resize(self._labels, size)
            self._vectors = np.resize(self._vectors, (size, self.dim))
        self._labels[start:stop] = labels
        self._vectors[start:stop] = block
        self._slot.update(zip(labels.tolist(), range(start, stop)))

    def discard(self, label: int) -> bool:
        """Drop `label` if held here (the last row fills its slot); whether it was."""
        slot = self._slot.pop(label, None)
        if slot is None:
            return False
        last = len(self._slot)
        if slot != last:
            moved = int(self._labels[last])
            self._labels[slot] = moved
            self._vectors[slot] = self._vectors[last]
            self._slot[moved] = slot
        return True

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """Every row held, as (labels, C-contiguous vectors), leaving the buffer empty."""
        n = len(self._slot)
        self._slot.clear()
        return self._labels[:n].copy(), self._vectors[:n].copy()

    def clear(self) -> None:
        self._slot.clear()

    def scores(self, queries: np.ndarray) -> tuple[list[int], np.ndarray]:
        """(labels held, their exact cosines with each query as a (queries, labels) matrix)."""
        n = len(self._slot)
        return self._labels[:n].tolist(), queries @ self._vectors[:n].T
