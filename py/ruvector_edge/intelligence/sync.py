"""IntelligenceSync: an agent's learned patterns, shared with the swarm as a state-based CRDT.

The spec's anchor merged Q-values with weights that did not sum to one and added
a peer's visits again on every re-merge. Here each agent (origin) owns its
entries: for every (state, action) it publishes (q, visits, version,
last_update), where version is the origin's own counter at its latest write.
A merge keeps, per (state, action, origin), the entry with the higher version —
a join, so merging is idempotent, commutative and associative, and a state seen
twice (or an older one) changes nothing. The swarm's value of a pattern is then
read from the kept per-origin entries with bounded influence per origin
(robust.py: visits capped at the origins' median, a trimmed mean over their q),
so one member, or fewer than a third of them colluding, cannot steer it, and
every replica holding the same entries reads the same value.

Versions are a hybrid clock: max(last version + 1, now in ms). They grow by at
least one per write, and an agent that restarts without its counter still
writes above what the swarm holds from its previous life (it also adopts its
own counter back from any state it merges).

Delta sync: an origin's entries held by a replica are always that origin's
state as of some version (whole states and deltas both keep that true), so the
highest version held per origin is a version vector, and "every entry above
the asker's vector" is exactly what the asker lacks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import ForeignOrigin, MalformedMessage, OversizedMessage
from ..learning.pattern import Pattern
from ..platform.base import Clock
from . import wire
from .robust import support_bar
from .tables import Entry, PatternTable, confidence, default_table_factory
from .wire import MAX_ABS_Q, MAX_INT63, MAX_VISITS, Limits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MergeResult:
    """One merge, counted per received entry: merged_patterns + ignored_stale = entries received.

    merged_patterns: entries that changed this replica (inserted or replaced);
    updated: of those, the ones that replaced an older entry of the same origin;
    new_patterns: distinct (state, action) this replica did not know before;
    conflicts: entries with the same version as ours but other content (a
    misbehaving or reset origin), resolved deterministically either way;
    ignored_stale: entries no newer than ours (older, or already known).
    """

    merged_patterns: int
    new_patterns: int
    updated: int
    conflicts: int
    ignored_stale: int


@dataclass(frozen=True)
class SwarmStats:
    """total_agents: origins known plus this agent; total_patterns: distinct (state, action);
    total_visits: the swarm visits (capped, kept) summed over patterns; trimmed_entries /
    capped_entries: origins' entries the robust read left out / weighed below their claimed visits."""

    total_agents: int
    total_patterns: int
    total_visits: int
    avg_confidence: float
    trimmed_entries: int = 0
    capped_entries: int = 0


VERSION_HORIZON_MS = 60 * 60 * 1000


class IntelligenceSync:
    """One agent's replica of the swarm's pattern state. Sans-I/O: bytes in, bytes out."""

    def __init__(
        self,
        agent_id: str,
        *,
        clock: Clock | None = None,
        limits: Limits | None = None,
        table_factory: Callable[[], PatternTable] | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.agent_id = wire.check_name(agent_id, "agent_id", self.limits)
        self._clock = clock or Clock()
        self._table = (table_factory or default_table_factory())()
        self._counter = 0

    # local writes -----------------------------------------------------------
    def _next_version(self) -> int:
        self._counter = max(self._counter + 1, self._clock.now_ms())
        if self._counter > MAX_INT63:
            raise OverflowError("version counter exhausted")
        return self._counter

    def update_pattern(self, state: str, action: str, value: float, visits_delta: int = 1) -> Entry:
        """Fold a sample (a reward or a return) into this agent's entry as an incremental mean.

        The entry's q is the visit-weighted mean of every sample given, so it
        means the same thing as a peer's: an estimate backed by `visits`.
        A learner that keeps its own Q-table publishes it with `set_pattern`.
        """
        state, action = self._names(state, action)
        value = self._finite(value)
        if not isinstance(visits_delta, int) or isinstance(visits_delta, bool) or visits_delta < 1:
            raise ValueError("visits_delta must be a positive int")
        current = self._table.get(state, action, self.agent_id)
        visits = visits_delta + (current.visits if current else 0)
        if visits > MAX_VISITS:
            raise ValueError(f"visits would exceed {MAX_VISITS}")
        q = value if current is None else current.q_value + (value - current.q_value) * (visits_delta / visits)
        return self._write(state, action, q, visits)

    def set_pattern(self, state: str, action: str, q_value: float, visits: int) -> Entry:
        """Publish a learner's own estimate for (state, action) as this agent's entry."""
        state, action = self._names(state, action)
        q_value = self._finite(q_value)
        if not isinstance(visits, int) or isinstance(visits, bool) or not 1 <= visits <= MAX_VISITS:
            raise ValueError(f"visits must be an int in [1, {MAX_VISITS}]")
        return self._write(state, action, q_value, visits)

    def _write(self, state: str, action: str, q: float, visits: int) -> Entry:
        entry = Entry(q + 0.0, visits, self._next_version(), self._clock.now_ms())
        self._table.put(state, action, self.agent_id, entry, self.limits)
        return entry

    def _names(self, state: str, action: str) -> tuple[str, str]:
        return wire.check_name(state, "state", self.limits), wire.check_name(action, "action", self.limits)

    @staticmethod
    def _finite(value: float) -> float:
        value = float(value)
        if not -MAX_ABS_Q <= value <= MAX_ABS_Q:  # NaN fails both comparisons
            raise ValueError(f"q-values must be finite and within ±{MAX_ABS_Q}")
        return value

    # sync ------------------------------------------------------------------
    def serialize_state(self, since: dict[str, int] | None = None) -> bytes:
        """The canonical compressed state; with `since`, only entries above that version vector."""
        return self._table.encode(since)

    def serialize_chunks(self, since: dict[str, int] | None, max_bytes: int) -> list[bytes]:
        """`serialize_state(since)` cut into frames of at most `max_bytes`, each a valid state on its own.

        Every chunk holds, per origin, a contiguous version range, and chunks come in
        ascending version order, so a receiver that got the first k chunks holds
        everything up to the version its version vector then claims: a lost chunk is
        found again by the next REQUEST_PATTERNS instead of hidden behind a higher
        version. One pattern that alone exceeds `max_bytes` raises OversizedMessage.
        """
        whole = self.serialize_state(since)
        if len(whole) <= max_bytes:
            return [whole]
        base = dict(since or {})
        versions = self._table.versions_above(base)
        chunks: list[bytes] = []
        pending = [(base, versions)]  # a stack, so ranges are emitted in ascending order
        while pending:
            floor, ranges = pending.pop()
            until = {origin: (v[-1] if v else floor.get(origin, 0)) for origin, v in ranges.items()}
            data = self._table.encode(floor, until)
            if len(data) <= max_bytes:
                chunks.append(data)
                continue
            if sum(map(len, ranges.values())) <= 1:
                raise OversizedMessage(f"one pattern encodes to {len(data)} bytes, over the {max_bytes}-byte chunk limit")
            left, right = _halve(ranges)
            middle = dict(floor)
            middle.update({origin: v[-1] for origin, v in left.items() if v})
            pending.append((middle, right))
            pending.append((floor, left))
        return chunks

    def version_vector(self) -> dict[str, int]:
        """origin -> highest version held: what to send in a REQUEST_PATTERNS."""
        return self._table.version_vector()

    def delta_for(self, version_vector: dict[str, int]) -> bytes:
        """The answer to a REQUEST_PATTERNS: every entry the asker's version vector lacks."""
        if not isinstance(version_vector, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in version_vector.items()
        ):
            raise ValueError("a version vector maps origin names to ints")
        return self.serialize_state(since=version_vector)

    def _own_since(self, since_version: int) -> dict[str, int]:
        since = {origin: version for origin, version in self.version_vector().items() if origin != self.agent_id}
        since[self.agent_id] = since_version
        return since

    def own_state(self) -> bytes:
        """This agent's own entries only: what a peer that believes each origin only about itself
        (`merge_peer_state(..., own_only=True)`) accepts from us."""
        return self.serialize_state(self._own_since(0))

    def own_chunks(self, since_version: int, max_bytes: int) -> list[bytes]:
        """This agent's own entries above `since_version`, cut as `serialize_chunks` cuts."""
        return self.serialize_chunks(self._own_since(since_version), max_bytes)

    def merge_peer_state(self, peer_id: str, data: bytes, *, own_only: bool = False) -> MergeResult:
        """Join a peer's (full or delta) state in; bad data raises a RejectedInput and changes nothing.

        `own_only`: the state must hold only `peer_id`'s own entries (ForeignOrigin otherwise).
        Entries carry no signature of their origin, so a member forwarding entries "of" other
        origins could invent as many origins as it likes, or speak for honest ones, and outweigh
        any per-origin bound (robust.py). A network peer, authenticated by its envelope against
        the registry, is therefore believed only about itself; in-process replicas and benches
        still gossip transitively.
        """
        raw = wire.inflate(data, self.limits)
        lay = wire.parse_layout(raw, self.limits)
        strings = wire.parse_strings(raw, lay, self.limits)
        if own_only:
            self._refuse_foreign_origins(raw, lay, strings, peer_id)
        self._refuse_future_versions(raw, lay)
        batch = self._table.decode(raw, lay, strings)
        counts = self._table.merge(batch, self.limits)
        self._counter = max(self._counter, self._table.version_vector().get(self.agent_id, 0))
        result = MergeResult(
            merged_patterns=counts.inserted + counts.updated,
            new_patterns=counts.new_keys,
            updated=counts.updated,
            conflicts=counts.conflicts,
            ignored_stale=counts.unchanged,
        )
        if counts.conflicts:
            log.warning("merge from %s: %d conflicting entries (same version, other content)", peer_id, counts.conflicts)
        log.debug("merge from %s: %s", peer_id, result)
        return result

    @staticmethod
    def _refuse_foreign_origins(raw: bytes, lay: wire.Layout, strings: list[str], origin: str) -> None:
        if not lay.n_entries:
            return
        column = memoryview(raw)[lay.origin : lay.origin + 4 * lay.n_entries].cast("B").cast("I")
        low, high = min(column), max(column)
        if low != high or low >= len(strings) or strings[low] != origin:
            raise ForeignOrigin(f"a state from {origin} holds entries of other origins")

    def _refuse_future_versions(self, raw: bytes, lay: wire.Layout) -> None:
        """Versions are max(previous + 1, wall-clock ms), so one far ahead of our clock is forged.

        Without this a member relaying a forged entry for another origin with a huge version would
        freeze that key for ever; with it, a forgery can win for at most VERSION_HORIZON_MS, until
        the real origin writes again. The horizon is generous because an origin writing faster
        than one entry per millisecond runs its counter ahead of the clock.
        """
        if not lay.n_entries:
            return
        column = memoryview(raw)[lay.version : lay.version + 8 * lay.n_entries].cast("B").cast("Q")
        newest = max(column)
        if newest > self._clock.now_ms() + VERSION_HORIZON_MS:
            raise MalformedMessage(f"an entry's version {newest} is far ahead of this clock")

    # reading ---------------------------------------------------------------
    def patterns(self) -> list[Pattern]:
        """The swarm view, sorted by (state, action)."""
        agg = self._table.aggregate()
        return [
            Pattern(s, a, q, v, last, confidence(v))
            for s, a, q, v, last in zip(agg.states, agg.actions, agg.q_values, agg.visits, agg.last_updates)
        ]

    def best_action(self, state: str, actions: Sequence[str]) -> tuple[str, float] | None:
        """The known action with the highest swarm q, and its confidence.

        Only actions with enough support (reported by enough origins, robust.py's
        `support_bar`) compete, so colluding members cannot win with an action only they
        report where the swarm agrees on something. Ties: more visits, then the smaller name.
        """
        known, origins = self._table.state_view(state)
        choices = {action: known[action] for action in set(actions) if action in known}
        if not choices:
            return None
        bar = support_bar(origins, max(choice.support for choice in choices.values()))
        action = max(sorted(choices), key=lambda a: (choices[a].support >= bar, choices[a].q_value, choices[a].visits))
        return action, confidence(choices[action].visits)

    def get_swarm_stats(self) -> SwarmStats:
        totals = self._table.totals()
        return SwarmStats(
            total_agents=len(totals.origins | {self.agent_id}),
            total_patterns=totals.keys,
            total_visits=totals.visits,
            avg_confidence=totals.confidence_sum / totals.keys if totals.keys else 0.0,
            trimmed_entries=totals.trimmed,
            capped_entries=totals.capped,
        )

    def __len__(self) -> int:
        """Entries held (one per (state, action, origin))."""
        return len(self._table)


def _halve(ranges: dict[str, list[int]]) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Split each origin's ascending versions at its middle (or the origins themselves, when each has one)."""
    cuts = {origin: len(v) // 2 for origin, v in ranges.items()}
    if not any(cuts.values()):
        holders = sorted(origin for origin, v in ranges.items() if v)
        cuts = {origin: len(ranges[origin]) if origin in holders[: len(holders) // 2] else 0 for origin in ranges}
    left = {origin: v[: cuts[origin]] for origin, v in ranges.items()}
    right = {origin: v[cuts[origin] :] for origin, v in ranges.items()}
    return left, right
