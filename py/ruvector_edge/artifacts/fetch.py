"""Fetching one artifact from peers block by block, sans-I/O: whom to ask for which block next, what a reply means.

The I/O shell (artifacts/exchange.py) sends what `next_requests` returns, feeds
replies to `on_block` / `on_absent` and calls `expire` when a request's time is
up. Blocks go through `ArtifactStore.put_chunk`, so one that does not hash to
its CID is refused; the peer that sent it is not asked again in this fetch and
the block is asked of another member. A peer that says it lacks a block is not
asked for it again; one that stays silent (its reply may have been dropped) is
asked at most `rounds` times. So a fetch always ends: complete, or
ArtifactUnavailable as soon as a missing block has nobody left to ask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ArtifactUnavailable, RejectedInput, UnsolicitedReply
from .cid import parse_cid
from .store import ArtifactStore

__all__ = ["BlockFetch", "BlockRequest"]


@dataclass(frozen=True)
class BlockRequest:
    peer: str
    cid: str
    deadline: float


class BlockFetch:
    """The state of fetching `cid` into `store` from `peers` (asked in the order given, least busy first)."""

    def __init__(
        self, store: ArtifactStore, cid: str, peers: Sequence[str], *, parallel: int = 4, request_timeout: float = 2.0,
        rounds: int = 2,
    ) -> None:
        parse_cid(cid)
        if parallel < 1 or request_timeout <= 0 or rounds < 1:
            raise ValueError("parallel and rounds must be >= 1 and request_timeout positive")
        self.rounds = rounds
        self.store = store
        self.cid = cid
        self.peers = list(dict.fromkeys(peers))
        self.parallel = parallel
        self.request_timeout = request_timeout
        self.liars: set[str] = set()
        self.timeouts = 0
        self._asked: dict[str, dict[str, int]] = {}  # block -> peer -> times asked
        self._absent: dict[str, set[str]] = {}
        self._inflight: dict[tuple[str, str], float] = {}

    @property
    def done(self) -> bool:
        return not self.store.missing_chunks(self.cid)

    def next_deadline(self) -> float | None:
        return min(self._inflight.values(), default=None)

    def next_requests(self, now: float) -> list[BlockRequest]:
        """Requests to send now; raises ArtifactUnavailable when a missing block has nobody left to ask."""
        missing = self.store.missing_chunks(self.cid)
        pending = {block for _, block in self._inflight}
        load: dict[str, int] = {}
        for peer, _ in self._inflight:
            load[peer] = load.get(peer, 0) + 1
        requests = []
        for block in missing:
            if len(self._inflight) >= self.parallel:
                break
            if block in pending:
                continue
            asked = self._asked.setdefault(block, {})
            absent = self._absent.get(block, ())
            candidates = [p for p in self.peers
                          if asked.get(p, 0) < self.rounds and p not in absent and p not in self.liars]
            if not candidates:
                raise ArtifactUnavailable(f"block {block} of {self.cid}: every member asked ({len(asked)}) failed")
            peer = min(candidates, key=lambda p: (asked.get(p, 0), load.get(p, 0)))
            asked[peer] = asked.get(peer, 0) + 1
            load[peer] = load.get(peer, 0) + 1
            deadline = now + self.request_timeout
            self._inflight[(peer, block)] = deadline
            requests.append(BlockRequest(peer, block, deadline))
        return requests

    def on_block(self, peer: str, cid: str, data: bytes) -> None:
        """A block from `peer`: stored if it is what `cid` names; otherwise refused and the peer marked a liar."""
        self._take(peer, cid)
        try:
            self.store.put_chunk(cid, data, peer)
        except RejectedInput:
            self.liars.add(peer)
            raise

    def on_absent(self, peer: str, cid: str) -> None:
        """`peer` says it does not have `cid`: ask someone else."""
        self._take(peer, cid)
        self._absent.setdefault(cid, set()).add(peer)

    def expire(self, now: float) -> int:
        """Give up on requests past their deadline (their blocks go to other peers); how many expired."""
        late = [key for key, deadline in self._inflight.items() if deadline <= now]
        for key in late:
            del self._inflight[key]
        self.timeouts += len(late)
        return len(late)

    def expects(self, peer: str, cid: str) -> bool:
        return (peer, cid) in self._inflight

    def _take(self, peer: str, cid: str) -> None:
        if self._inflight.pop((peer, cid), None) is None:
            raise UnsolicitedReply(f"no request for {cid:.80} is outstanding to {peer!r}")
