"""Who gives up room when a full memory takes a peer's entries: per-owner queues kept as entries come and go.

The policy (issue 14): a full memory takes room from the owner holding the
most entries (ties: the sender, then the greater name), oldest first, the
sender's own new entries last. So a member flooding SYNC_MEMORIES displaces
only its own entries once it holds the most, and never pushes another owner
below its count: every owner keeps min(what it stored, its fair share).

Why a structure of its own: deciding this by walking every held entry made
each import at capacity cost O(memory size) — at 100K memories that walk
was half the sync path's time. Here each owner's ids are kept in store
order as they are added, refreshed and removed, and a heap of (count, owner)
finds the largest owner in O(log owners) per eviction. The heap is lazy: an
entry whose count is no longer the owner's is skipped when it surfaces, and
the heap is rebuilt from the counts once stale entries outnumber owners.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["EvictionPlan", "OwnerQueues"]

T = TypeVar("T")


class _Desc:
    """An owner name that sorts in reverse, so the min-heap surfaces the greater name first."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __lt__(self, other: _Desc) -> bool:
        return self.name > other.name


@dataclass(frozen=True)
class EvictionPlan(Generic[T]):
    """Held ids to evict, the incoming items kept (in order), and how many of either were the sender's."""

    evict: list[str]
    kept: list[T]
    over_share: int


class OwnerQueues:
    """Each owner's held ids, oldest store first, and a lazy max-heap of owners by count."""

    def __init__(self) -> None:
        self._queues: dict[str, OrderedDict[str, None]] = {}
        self._heap: list[tuple[int, _Desc]] = []

    def add(self, owner: str, ids: Sequence[str]) -> None:
        """`ids` of `owner` stored (newest last)."""
        queue = self._queues.setdefault(owner, OrderedDict())
        queue.update(dict.fromkeys(ids))
        self._push(owner, len(queue))

    def refresh(self, owner: str, id_: str) -> None:
        """`id_` stored again: it becomes its owner's newest."""
        self._queues[owner].move_to_end(id_)

    def remove(self, owner: str, id_: str) -> None:
        queue = self._queues[owner]
        del queue[id_]
        if queue:
            self._push(owner, len(queue))
        else:
            del self._queues[owner]
        self._compact()

    def plan(self, overflow: int, sender: str, incoming: Sequence[T]) -> EvictionPlan[T]:
        """Which held ids and which of `incoming` (all the sender's, not yet held) go so that `overflow`
        fewer remain. Changes nothing but stale heap entries (so a write that then fails leaves the
        queues as they were)."""
        if overflow <= 0:
            return EvictionPlan([], list(incoming), 0)
        held = {owner: len(queue) for owner, queue in self._queues.items()}
        count = dict(held)
        count[sender] = count.get(sender, 0) + len(incoming)
        oldest = {}
        heapq.heappush(self._heap, (-count[sender], _Desc(sender)))
        evict: list[str] = []
        dropped = 0
        over_share = 0
        for _ in range(overflow):
            owner = self._largest(count)
            if count[sender] == count[owner]:
                owner = sender
            taken = held.get(owner, 0) - count[owner] + (len(incoming) if owner == sender else 0)
            count[owner] -= 1
            heapq.heappush(self._heap, (-count[owner], _Desc(owner)))
            over_share += owner == sender
            if taken < held.get(owner, 0):
                if owner not in oldest:
                    oldest[owner] = iter(self._queues[owner])
                evict.append(next(oldest[owner]))
            else:
                dropped += 1
        self._compact()
        return EvictionPlan(evict, list(incoming)[dropped:], over_share)

    def _largest(self, count: dict[str, int]) -> str:
        """The owner with the most entries by `count` (ties: the greater name); drops stale heap tops."""
        while True:
            negative, name = self._heap[0]
            if count.get(name.name, 0) == -negative and negative < 0:
                return name.name
            heapq.heappop(self._heap)

    def _push(self, owner: str, size: int) -> None:
        heapq.heappush(self._heap, (-size, _Desc(owner)))

    def _compact(self) -> None:
        if len(self._heap) > 2 * len(self._queues) + 64:
            self._heap = [(-len(queue), _Desc(owner)) for owner, queue in self._queues.items()]
            heapq.heapify(self._heap)
