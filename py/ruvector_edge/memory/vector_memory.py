"""An agent's vector memory: content-addressed entries, cosine search, bounded, durable, syncable.

Search is exact, or approximate (HNSW, memory/hnsw_index.py) when the kernel
has a graph and the memory is large; a kernel's index is a cache beside the
store, saved on `close` and checked against the store on open.

Eviction is by *store order*: when full, the entry stored longest ago goes
(re-storing the same content counts as storing it again). Searches never move
anything, for three reasons: a read that changes what is kept makes the set of
memories depend on query traffic, so two replicas holding the same entries
drift apart just by being asked different things; a peer asking questions
(collaborative RAG) could otherwise pin entries of its choosing, its own
planted ones included; and a search stays a pure read that needs no disk write.

An import never refreshes an entry already held: peers resend what they have,
and counting that as a store would keep the oldest gossip alive forever.

Sync (SYNC_MEMORIES) carries only the sender's *own* entries
(`export_entries`), and `import_entries` accepts an entry only when its owner
is the authenticated sender: the envelope signature proves who sent a batch,
not who wrote an entry relayed on behalf of someone else.

A memory holds the vectors of one embedding model (`model`, the embedder's
id), so vectors of different models are never compared. A peer's entry made by
another model, and a stored entry from before the model changed, is
*re-embedded from its content* with this memory's embedder rather than kept
apart: a tab that fell back to hashing and a native agent running MiniLM still
share what they know, each searching it in its own space. Without an embedder
such entries are refused.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import MalformedMessage, OversizedMessage, RejectedInput
from ..p2p import wire
from .embedder import HASHING_MODEL, Embedder
from .entry import MemoryEntry, check_content, check_metadata, entries_from_wire, memory_id
from ..platform import default_vector_kernel
from .kernels import VectorKernel, pack_unit_vector
from .owner_queues import OwnerQueues
from .persistence import MemoryStore

__all__ = ["MAX_IMPORT_BATCH", "ImportResult", "MemoryHit", "Rejection", "VectorMemory"]

MAX_IMPORT_BATCH = 256


@dataclass(frozen=True)
class MemoryHit:
    id: str
    content: str
    score: float
    owner: str
    metadata: dict[str, Any] | None


@dataclass(frozen=True)
class Rejection:
    """Entry `index` of an import batch was refused for `error`; nothing of it was kept."""

    index: int
    error: RejectedInput


@dataclass(frozen=True)
class ImportResult:
    """over_share: the sender's entries (held or new) that went because it held the most (a flood)."""

    added: tuple[str, ...]
    duplicates: int
    rejected: tuple[Rejection, ...]
    evicted: int
    over_share: int = 0


def _check_k(k: object) -> int:
    if type(k) is not int or k < 1:
        raise MalformedMessage(f"k must be a positive integer, not {k!r:.40}")
    return k


class VectorMemory:
    """Memories of one agent (and those its peers shared), searchable by cosine similarity."""

    def __init__(
        self,
        owner_agent_id: str,
        dim: int,
        capacity: int,
        kernel: VectorKernel | None = None,
        store: MemoryStore | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        """`embedder` names the model of the vectors held (the hashing embedder's without one)
        and re-embeds entries of other models; store_memory's vectors must come from it."""
        if type(dim) is not int or dim < 1:
            raise ValueError(f"dimension must be a positive integer, not {dim!r}")
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, not {capacity!r}")
        kernel = default_vector_kernel(dim) if kernel is None else kernel
        if kernel.dim != dim or len(kernel):
            raise ValueError(f"the kernel must be empty and {dim}-dimensional")
        if embedder is not None and embedder.dim != dim:
            raise ValueError(f"the embedder makes {embedder.dim}-dimensional vectors, this memory holds {dim}")
        self.owner_agent_id = wire.check_id(owner_agent_id, "owner agent id")
        self.dim = dim
        self.capacity = capacity
        self.kernel = kernel
        self.embedder = embedder
        self.model = HASHING_MODEL if embedder is None else embedder.model_id
        self._store = store
        self._entries: OrderedDict[str, MemoryEntry] = OrderedDict()  # oldest store first
        self._owners = OwnerQueues()
        self._row_of: dict[str, int] = {}
        self._id_at: list[str] = []
        self._next_seq = 1
        self._index_file = None
        if store is not None:
            self._load(store)

    @property
    def store(self) -> MemoryStore | None:
        """Where entries persist (None: this process only)."""
        return self._store

    def _load(self, store: MemoryStore) -> None:
        entries = store.load(self.dim)
        foreign = [entry for entry in entries if entry.model != self.model]
        if foreign:
            if self.embedder is None:
                raise ValueError(f"the store holds memories of model {foreign[0].model}, not {self.model}")
            adopted, _ = self._adopt(foreign)
            store.apply(adopted, [])
            by_id = {entry.id: entry for entry in adopted}
            entries = [by_id.get(entry.id, entry) for entry in entries]
        excess = len(entries) - self.capacity
        if excess > 0:  # reopened with a smaller capacity: the oldest go, on disk too
            store.apply([], [entry.id for entry in entries[:excess]])
            entries = entries[excess:]
        self._index_file = store.index_file()
        if self._index_file is None:
            self._append(entries)
        else:  # the kernel's saved index, if any, is checked against these rows (the store is the truth)
            self.kernel.restore([e.vector for e in entries], [e.id for e in entries], self._index_file, self.model)
            self._map(entries)
        if entries:
            self._next_seq = entries[-1].seq + 1

    # Reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, memory_id_: object) -> bool:
        return memory_id_ in self._entries

    def get(self, memory_id_: str) -> MemoryEntry | None:
        return self._entries.get(memory_id_)

    def search_memory(self, query: object, k: int) -> list[MemoryHit]:
        """The k entries most cosine-similar to `query`, best first; equal scores in id order."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Sequence[object], k: int) -> list[list[MemoryHit]]:
        """`search_memory` for several queries in one kernel call (one FFI crossing in the browser)."""
        k = _check_k(k)
        packed = [pack_unit_vector(query, self.dim) for query in queries]
        if not self._entries:
            return [[] for _ in packed]
        results = []
        for found in self.kernel.search(packed, min(k, len(self._entries))):
            ranked = sorted(((-score, self._id_at[row]) for row, score in found))[:k]
            results.append([self._hit(id_, -neg) for neg, id_ in ranked])
        return results

    def _hit(self, id_: str, score: float) -> MemoryHit:
        entry = self._entries[id_]
        return MemoryHit(id_, entry.content, score, entry.owner, entry.metadata)

    # Writing -------------------------------------------------------------------------

    def store_memory(self, content: str, embedding: object, metadata: dict[str, Any] | None = None) -> str:
        """Store (or re-store) a memory owned by this agent; durable before it returns. Returns its id.

        Content already held keeps its first embedding, metadata and owner (the
        id names the content, and provenance names who stored it first); storing
        it again only makes it the newest for eviction.
        """
        check_content(content)
        vector = pack_unit_vector(embedding, self.dim)
        metadata_json = check_metadata(metadata)
        id_ = memory_id(content)
        existing = self._entries.get(id_)
        if existing is not None:
            refreshed = replace(existing, seq=self._next_seq)
            self._write([refreshed], [])
            self._next_seq += 1
            self._entries[id_] = refreshed
            self._entries.move_to_end(id_)
            self._owners.refresh(existing.owner, id_)
            return id_
        entry = MemoryEntry(id_, content, self.owner_agent_id, vector, metadata_json, self._next_seq, self.model)
        evict = [next(iter(self._entries))] if len(self._entries) >= self.capacity else []
        self._write([entry], evict)
        self._next_seq += 1
        self._drop(evict)
        self._append([entry])
        return id_

    def export_entries(self, since: int | None = None, limit: int = MAX_IMPORT_BATCH) -> list[dict[str, Any]]:
        """This agent's own entries stored after `since` (a `seq` from an earlier export), oldest first.

        At most `limit`; pass the last entry's `seq` as `since` for the next page.
        """
        if since is not None and (type(since) is not int or since < 0):
            raise MalformedMessage(f"since must be a non-negative integer, not {since!r:.40}")
        floor = 0 if since is None else since
        out = []
        for entry in self._entries.values():
            if len(out) >= limit:
                break
            if entry.seq > floor and entry.owner == self.owner_agent_id:
                out.append(entry.to_wire())
        return out

    def import_entries(self, entries: object, sender: str) -> ImportResult:
        """Take a peer's entries: each is validated alone; a refused one is counted and changes nothing.

        The batch as a whole is refused (typed error, no state change) when it is
        not a list or holds more than MAX_IMPORT_BATCH entries.
        """
        sender = wire.check_id(sender, "sender")
        if not isinstance(entries, (list, tuple)):
            raise MalformedMessage("memory entries must be a list")
        if len(entries) > MAX_IMPORT_BATCH:
            raise OversizedMessage(f"{len(entries)} memory entries exceed the batch limit of {MAX_IMPORT_BATCH}")
        accepted: dict[str, MemoryEntry] = {}
        foreign: dict[str, int] = {}  # id -> index in the batch, for entries of another model
        rejected = []
        duplicates = 0
        for index, entry in enumerate(entries_from_wire(entries, self.dim, sender)):
            if isinstance(entry, RejectedInput):
                rejected.append(Rejection(index, entry))
            elif entry.id in self._entries or entry.id in accepted:
                duplicates += 1
            else:
                entry = replace(entry, seq=self._next_seq + len(accepted))
                accepted[entry.id] = entry
                if entry.model != self.model:
                    foreign[entry.id] = index
        if foreign:
            adopted, refused = self._adopt([accepted[id_] for id_ in foreign])
            for entry in adopted:
                accepted[entry.id] = entry
            for id_, error in refused:
                del accepted[id_]
                rejected.append(Rejection(foreign[id_], error))
            rejected.sort(key=lambda rejection: rejection.index)
            accepted = {id_: replace(e, seq=self._next_seq + i) for i, (id_, e) in enumerate(accepted.items())}
        new, evict, over_share = self._make_room(list(accepted.values()), sender)
        if len(new) < len(accepted):  # renumber so seqs stay dense for what is kept
            new = [replace(entry, seq=self._next_seq + i) for i, entry in enumerate(new)]
        if new or evict:
            if self._store is not None:
                self._store.apply_synced(new, evict)
            self._next_seq += len(new)
            self._drop(evict)
            self._append(new)
        return ImportResult(tuple(e.id for e in new), duplicates, tuple(rejected), len(evict), over_share)

    def close(self) -> None:
        """Save the kernel's index beside the store (a cache for the next open), then close the store."""
        if self._index_file is not None:
            self.kernel.persist(self._index_file, self._id_at, self.model)
        if self._store is not None:
            self._store.close()

    # Internals -----------------------------------------------------------------------

    def _make_room(self, incoming: list[MemoryEntry], sender: str) -> tuple[list[MemoryEntry], list[str], int]:
        """Which of `incoming` (all the sender's) to keep and which held entries to evict so all fits
        (the fairness policy in memory/owner_queues.py). Returns (kept new, evicted ids, how many of the
        sender's entries, held or new, went for being over its share)."""
        plan = self._owners.plan(len(self._entries) + len(incoming) - self.capacity, sender, incoming)
        return plan.kept, plan.evict, plan.over_share

    def _write(self, put: list[MemoryEntry], delete: list[str]) -> None:
        if self._store is not None:
            self._store.apply(put, delete)

    def _adopt(self, entries: list[MemoryEntry]) -> tuple[list[MemoryEntry], list[tuple[str, RejectedInput]]]:
        """Re-embed entries of another model from their content with this memory's embedder.

        Returns the re-embedded entries, and (id, error) for those this embedder
        refuses (a text with no words for the hashing embedder, say) or all of
        them when there is no embedder. Changes no state."""
        if self.embedder is None:
            return [], [(e.id, MalformedMessage(f"embedded by model {e.model}, this memory holds {self.model}")) for e in entries]
        try:
            vectors = self.embedder.embed_many([entry.content for entry in entries])
        except RejectedInput:  # one bad text fails the batch: find which, one by one
            vectors = None
        adopted, refused = [], []
        for i, entry in enumerate(entries):
            try:
                vector = self.embedder.embed(entry.content) if vectors is None else vectors[i]
                adopted.append(replace(entry, vector=pack_unit_vector(vector, self.dim), model=self.model))
            except RejectedInput as error:
                refused.append((entry.id, error))
        return adopted, refused

    def _append(self, entries: list[MemoryEntry]) -> None:
        self.kernel.add_many([entry.vector for entry in entries])
        self._map(entries)

    def _map(self, entries: list[MemoryEntry]) -> None:
        """Index the entries just added to the kernel as its next rows."""
        for entry in entries:
            self._row_of[entry.id] = len(self._id_at)
            self._id_at.append(entry.id)
            self._entries[entry.id] = entry
        by_owner: dict[str, list[str]] = {}
        for entry in entries:
            by_owner.setdefault(entry.owner, []).append(entry.id)
        for owner, ids in by_owner.items():
            self._owners.add(owner, ids)

    def _drop(self, ids: list[str]) -> None:
        for id_ in ids:
            self._owners.remove(self._entries.pop(id_).owner, id_)
            row = self._row_of.pop(id_)
            self.kernel.remove(row)
            last_id = self._id_at.pop()
            if last_id != id_:
                self._id_at[row] = last_id
                self._row_of[last_id] = row
