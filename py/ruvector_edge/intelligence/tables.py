"""Where the pattern entries live: one interface, a numpy kernel and a pure-Python kernel.

The choice is made once (`default_table_factory`) like any other provider: numpy
when it imports (CPython, or a Pyodide distribution that ships it), plain Python
otherwise. Both read a pair's swarm value by the rule in `robust.py` (capped
weights, trimmed mean) and give bit-identical results, because every
floating-point sum is done in the same order: for each (state, action), the kept
origins' ``q * weight`` are added one after another in sorted-origin order
starting from 0.0 (`numpy.bincount` adds sequentially in input order, so the
numpy kernel feeds it the entries grouped by origin rank, with weight 0 for
trimmed ones), and ties in q are broken by origin name in both. Integers are
summed exactly and averages of confidences use `math.fsum`.

The numpy kernel keeps entries as parallel arrays sorted by one int64 key,
``state_id << 42 | action_id << 21 | origin_id`` over an interned string table,
so a merge is a vectorised sorted join: map the peer's (small) string table to
local ids, pack, sort, `searchsorted`, compare versions, `insert`. Python-level
work is proportional to the number of distinct names, not of entries.
"""

from __future__ import annotations

import abc
import math
import sys
from array import array
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from ..errors import MalformedMessage, OversizedMessage
from . import wire
from .robust import Value, robust_value, trim_count
from .wire import ID_BITS, MAX_ABS_Q, MAX_INT63, Layout, Limits

from ..learning.pattern import confidence_for as confidence  # one rule for learners and the swarm view


class Entry(NamedTuple):
    """One origin's contribution to one (state, action)."""

    q_value: float
    visits: int
    version: int
    last_update: int


def wins(incoming: Entry, current: Entry) -> bool:
    """The join: higher version wins; an equal version with other content is a conflict, broken by (visits, last_update, q)."""
    if incoming.version != current.version:
        return incoming.version > current.version
    return (incoming.visits, incoming.last_update, incoming.q_value) > (
        current.visits,
        current.last_update,
        current.q_value,
    )


@dataclass(frozen=True)
class MergeCounts:
    """What one merge did, entry by entry (inserted + updated + unchanged = entries received)."""

    inserted: int
    updated: int
    unchanged: int
    conflicts: int
    new_keys: int
    received: int


@dataclass(frozen=True)
class Aggregate:
    """The swarm view, one row per distinct (state, action), sorted by (state, action)."""

    states: list[str]
    actions: list[str]
    q_values: list[float]
    visits: list[int]
    last_updates: list[int]


class Choice(NamedTuple):
    """One action of a state as best_action weighs it: swarm q and visits, and how many origins report it."""

    q_value: float
    visits: int
    support: int


class Totals(NamedTuple):
    """Over every distinct (state, action): counts, swarm visits, the sum of confidences, the origins,
    and how many entries the robust read dropped (trimmed) or weighed below their claim (capped)."""

    keys: int
    visits: int
    confidence_sum: float
    origins: set[str]
    trimmed: int
    capped: int


class PatternTable(abc.ABC):
    """A CRDT map (state, action, origin) -> Entry that merges by `wins`."""

    @abc.abstractmethod
    def get(self, state: str, action: str, origin: str) -> Entry | None: ...

    @abc.abstractmethod
    def put(self, state: str, action: str, origin: str, entry: Entry, limits: Limits) -> None:
        """A local write: replaces whatever the origin had for that key."""

    @abc.abstractmethod
    def decode(self, raw: bytes, lay: Layout, strings: list[str]) -> Any:
        """Read and validate the columns of a raw state; changes nothing."""

    @abc.abstractmethod
    def merge(self, batch: Any, limits: Limits) -> MergeCounts:
        """Join a decoded batch in; raises OversizedMessage before any change if the table would overflow."""

    @abc.abstractmethod
    def encode(self, since: dict[str, int] | None, until: dict[str, int] | None = None) -> bytes:
        """The canonical frame of every entry with since[origin] < version <= until[origin]
        (0 and unbounded when absent)."""

    @abc.abstractmethod
    def versions_above(self, since: dict[str, int] | None) -> dict[str, list[int]]:
        """origin -> ascending versions of the entries `encode(since)` would hold."""

    @abc.abstractmethod
    def version_vector(self) -> dict[str, int]: ...

    @abc.abstractmethod
    def state_view(self, state: str) -> tuple[dict[str, Choice], int]:
        """For one state: action -> its swarm value, and how many distinct origins report anything there."""

    @abc.abstractmethod
    def aggregate(self) -> Aggregate: ...

    @abc.abstractmethod
    def totals(self) -> Totals: ...

    @abc.abstractmethod
    def __len__(self) -> int: ...


# --------------------------------------------------------------------------- pure Python

_LITTLE = sys.byteorder == "little"


def _column(raw: bytes, offset: int, count: int, code: str) -> array:
    values = array(code)
    values.frombytes(raw[offset : offset + count * values.itemsize])
    if not _LITTLE:
        values.byteswap()
    return values


def _packed(values: list, code: str) -> bytes:
    column = array(code, values)
    if not _LITTLE:
        column.byteswap()
    return column.tobytes()


class PyTable(PatternTable):
    """Dicts all the way down; runs anywhere Python does."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], dict[str, Entry]] = {}
        self._by_state: dict[str, set[str]] = {}  # state -> its actions, so a decision reads one state
        self._cache: dict[tuple[str, str], Value] = {}  # robust values of the pairs unchanged since read
        self._names: set[str] = set()
        self._vv: dict[str, int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def get(self, state: str, action: str, origin: str) -> Entry | None:
        return self._keys.get((state, action), {}).get(origin)

    def put(self, state: str, action: str, origin: str, entry: Entry, limits: Limits) -> None:
        origins = self._keys.get((state, action))
        fresh_names = {state, action, origin} - self._names
        if origins is None or origin not in origins:
            if self._count + 1 > limits.max_table_entries or len(self._names) + len(fresh_names) > limits.max_table_strings:
                raise OversizedMessage("the pattern table is full")
            self._count += 1
        self._names |= fresh_names
        self._store(state, action, origin, entry)
        self._vv[origin] = max(self._vv.get(origin, 0), entry.version)

    def _store(self, state: str, action: str, origin: str, entry: Entry) -> None:
        self._keys.setdefault((state, action), {})[origin] = entry
        self._by_state.setdefault(state, set()).add(action)
        self._cache.pop((state, action), None)

    def _value(self, key: tuple[str, str]) -> Value:
        value = self._cache.get(key)
        if value is None:
            origins = self._keys[key]
            value = self._cache[key] = robust_value([origins[o] for o in sorted(origins)])
        return value

    def decode(self, raw: bytes, lay: Layout, strings: list[str]) -> list[tuple[str, str, str, Entry]]:
        n, names = lay.n_entries, lay.n_strings
        q = _column(raw, lay.q, n, "d")
        version = _column(raw, lay.version, n, "Q")
        last = _column(raw, lay.last_update, n, "Q")
        s = _column(raw, lay.state, n, "I")
        a = _column(raw, lay.action, n, "I")
        o = _column(raw, lay.origin, n, "I")
        visits = _column(raw, lay.visits, n, "I")
        if n:
            if max(max(s), max(a), max(o)) >= names:
                raise MalformedMessage("entry refers past the string table")
            if len(set(s).union(a, o)) != names:
                raise MalformedMessage("string table holds unused strings")
            packed = [(si * names + ai) * names + oi for si, ai, oi in zip(s, a, o)]
            if any(x >= y for x, y in zip(packed, packed[1:])):
                raise MalformedMessage("entries are not strictly sorted by (state, action, origin)")
            if not all(-MAX_ABS_Q <= x <= MAX_ABS_Q for x in q):  # NaN fails both comparisons
                raise MalformedMessage(f"a q-value is not finite or beyond ±{MAX_ABS_Q}")
            if min(visits) < 1:
                raise MalformedMessage("an entry has no visits")
            if min(version) < 1 or max(version) > MAX_INT63 or max(last) > MAX_INT63:
                raise MalformedMessage("version or timestamp out of range")
        return [
            (strings[s[i]], strings[a[i]], strings[o[i]], Entry(q[i] + 0.0, visits[i], version[i], last[i]))
            for i in range(n)
        ]

    def merge(self, batch: list[tuple[str, str, str, Entry]], limits: Limits) -> MergeCounts:
        plan = []
        inserted = unchanged = conflicts = 0
        new_keys: set[tuple[str, str]] = set()
        names: set[str] = set()
        for state, action, origin, entry in batch:
            current = self._keys.get((state, action), {}).get(origin)
            if current is None:
                inserted += 1
                plan.append((state, action, origin, entry))
                names.update((state, action, origin))
                if (state, action) not in self._keys:
                    new_keys.add((state, action))
                continue
            if current.version == entry.version and current != entry:
                conflicts += 1
            if wins(entry, current):
                plan.append((state, action, origin, entry))
            else:
                unchanged += 1
        names -= self._names
        if self._count + inserted > limits.max_table_entries or len(self._names) + len(names) > limits.max_table_strings:
            raise OversizedMessage("merging this state would overflow the pattern table")
        for state, action, origin, entry in plan:
            self._store(state, action, origin, entry)
            if entry.version > self._vv.get(origin, 0):
                self._vv[origin] = entry.version
        self._names |= names
        self._count += inserted
        return MergeCounts(inserted, len(plan) - inserted, unchanged, conflicts, len(new_keys), len(batch))

    def encode(self, since: dict[str, int] | None, until: dict[str, int] | None = None) -> bytes:
        since, until = since or {}, until or {}
        rows = [
            (state, action, origin, entry)
            for (state, action), origins in self._keys.items()
            for origin, entry in origins.items()
            if since.get(origin, 0) < entry.version <= until.get(origin, MAX_INT63)
        ]
        strings = sorted({name for row in rows for name in row[:3]})
        index = {name: i for i, name in enumerate(strings)}
        rows.sort(key=lambda row: (index[row[0]], index[row[1]], index[row[2]]))
        columns = b"".join(
            (
                _packed([row[3].q_value for row in rows], "d"),
                _packed([row[3].version for row in rows], "Q"),
                _packed([row[3].last_update for row in rows], "Q"),
                _packed([index[row[0]] for row in rows], "I"),
                _packed([index[row[1]] for row in rows], "I"),
                _packed([index[row[2]] for row in rows], "I"),
                _packed([row[3].visits for row in rows], "I"),
            )
        )
        return wire.frame(strings, columns, len(rows))

    def versions_above(self, since: dict[str, int] | None) -> dict[str, list[int]]:
        since = since or {}
        out: dict[str, list[int]] = {}
        for origins in self._keys.values():
            for origin, entry in origins.items():
                if entry.version > since.get(origin, 0):
                    out.setdefault(origin, []).append(entry.version)
        return {origin: sorted(versions) for origin, versions in out.items()}

    def version_vector(self) -> dict[str, int]:
        return dict(self._vv)

    def state_view(self, state: str) -> tuple[dict[str, Choice], int]:
        view, origins = {}, set()
        for action in self._by_state.get(state, ()):
            value = self._value((state, action))
            reporters = self._keys[(state, action)]
            view[action] = Choice(value.q_value, value.visits, len(reporters))
            origins.update(reporters)
        return view, len(origins)

    def _values(self) -> dict[tuple[str, str], Value]:
        return {key: self._value(key) for key in self._keys}

    def aggregate(self) -> Aggregate:
        out = Aggregate([], [], [], [], [])
        values = self._values()
        for (state, action) in sorted(values):
            value = values[(state, action)]
            out.states.append(state)
            out.actions.append(action)
            out.q_values.append(value.q_value)
            out.visits.append(value.visits)
            out.last_updates.append(value.last_update)
        return out

    def totals(self) -> Totals:
        values = list(self._values().values())
        visits = [v.visits for v in values]
        return Totals(
            len(values), sum(visits), math.fsum(map(confidence, visits)), set(self._vv),
            sum(v.trimmed for v in values), sum(v.capped for v in values),
        )


# --------------------------------------------------------------------------- numpy

_MASK = (1 << ID_BITS) - 1
_STATE_SHIFT = 2 * ID_BITS


class NumpyTable(PatternTable):
    """Parallel numpy arrays sorted by a packed int64 (state, action, origin) key."""

    def __init__(self, np: Any) -> None:
        self._np = np
        self._ids: dict[str, int] = {}
        self._names: list[str] = []
        self._key = np.empty(0, np.int64)
        self._q = np.empty(0, np.float64)
        self._visits = np.empty(0, np.int64)
        self._version = np.empty(0, np.int64)
        self._last = np.empty(0, np.int64)
        self._vv: dict[int, int] = {}
        self._pending: dict[int, Entry] = {}
        # The robust read, kept per row so a change recomputes only the pairs it touched (reads
        # outnumber merges, and re-sorting the whole table after one write cost 8x a plain mean):
        self._weight = np.empty(0, np.int64)  # a row's weight in its pair's value, 0 when trimmed
        self._pair_sum = np.empty(0, np.float64)  # at a pair's first row: its kept q * weight, summed
        self._pair_kept = np.empty(0, np.int64)  # at a pair's first row: its kept weights, summed
        self._dirty: list[Any] = []  # pair keys (key >> ID_BITS) changed since the last read
        self._starts: Any = None  # every pair's first row, until a row is inserted
        self._origin_rank: tuple[int, Any] | None = None  # (origins ranked, id -> rank by name)
        self._read: tuple | None = None  # _per_key's result until the next change

    def __len__(self) -> int:
        self._flush()
        return len(self._key)

    def _pack(self, state: int, action: int, origin: int) -> int:
        return state << _STATE_SHIFT | action << ID_BITS | origin

    def _find(self, key: int) -> int | None:
        i = int(self._np.searchsorted(self._key, key))
        return i if i < len(self._key) and int(self._key[i]) == key else None

    def get(self, state: str, action: str, origin: str) -> Entry | None:
        ids = self._ids
        if state not in ids or action not in ids or origin not in ids:
            return None
        key = self._pack(ids[state], ids[action], ids[origin])
        if key in self._pending:
            return self._pending[key]
        i = self._find(key)
        if i is None:
            return None
        return Entry(float(self._q[i]), int(self._visits[i]), int(self._version[i]), int(self._last[i]))

    def put(self, state: str, action: str, origin: str, entry: Entry, limits: Limits) -> None:
        fresh = [name for name in dict.fromkeys((state, action, origin)) if name not in self._ids]
        known = not fresh and self.get(state, action, origin) is not None
        if not known and (
            len(self._key) + len(self._pending) + 1 > limits.max_table_entries
            or len(self._names) + len(fresh) > limits.max_table_strings
        ):
            raise OversizedMessage("the pattern table is full")
        for name in fresh:
            self._ids[name] = len(self._names)
            self._names.append(name)
        ids = self._ids
        self._pending[self._pack(ids[state], ids[action], ids[origin])] = entry
        o = ids[origin]
        self._vv[o] = max(self._vv.get(o, 0), entry.version)

    def _flush(self) -> None:
        if not self._pending:
            return
        np = self._np
        keys = np.fromiter(self._pending, np.int64, len(self._pending))
        order = np.argsort(keys)
        entries = list(self._pending.values())
        columns = [np.array([e[i] for e in entries])[order] for i in range(4)]
        self._pending = {}
        self._join(keys[order], columns[0].astype(np.float64), *(c.astype(np.int64) for c in columns[1:]), force=True)

    def decode(self, raw: bytes, lay: Layout, strings: list[str]) -> tuple:
        np = self._np
        n, names = lay.n_entries, lay.n_strings
        q = np.frombuffer(raw, "<f8", n, lay.q)
        version = np.frombuffer(raw, "<u8", n, lay.version)
        last = np.frombuffer(raw, "<u8", n, lay.last_update)
        s = np.frombuffer(raw, "<u4", n, lay.state)
        a = np.frombuffer(raw, "<u4", n, lay.action)
        o = np.frombuffer(raw, "<u4", n, lay.origin)
        visits = np.frombuffer(raw, "<u4", n, lay.visits)
        if n:
            if max(int(s.max()), int(a.max()), int(o.max())) >= names:
                raise MalformedMessage("entry refers past the string table")
            used = np.zeros(names, bool)
            used[s] = True
            used[a] = True
            used[o] = True
            if not used.all():
                raise MalformedMessage("string table holds unused strings")
            packed = (s.astype(np.int64) * names + a) * names + o
            if n > 1 and not bool((packed[1:] > packed[:-1]).all()):
                raise MalformedMessage("entries are not strictly sorted by (state, action, origin)")
            if not bool((np.abs(q) <= MAX_ABS_Q).all()):  # NaN compares false
                raise MalformedMessage(f"a q-value is not finite or beyond ±{MAX_ABS_Q}")
            if int(visits.min()) < 1:
                raise MalformedMessage("an entry has no visits")
            if int(version.min()) < 1 or int(version.max()) > MAX_INT63 or int(last.max()) > MAX_INT63:
                raise MalformedMessage("version or timestamp out of range")
        return strings, s, a, o, q + 0.0, visits.astype(np.int64), version.astype(np.int64), last.astype(np.int64)

    def merge(self, batch: tuple, limits: Limits) -> MergeCounts:
        np = self._np
        self._flush()
        strings, s, a, o, q, visits, version, last = batch
        ids = self._ids
        fresh = [name for name in strings if name not in ids]
        if len(self._names) + len(fresh) > limits.max_table_strings:
            raise OversizedMessage("merging this state would overflow the pattern table")
        start = len(self._names)
        provisional = {name: start + i for i, name in enumerate(fresh)}
        lut = np.array([ids.get(name) if name in ids else provisional[name] for name in strings], np.int64)
        keys = lut[s] << _STATE_SHIFT | lut[a] << ID_BITS | lut[o]
        order = np.argsort(keys)
        keys = keys[order]
        plan = self._plan(keys, version[order], visits[order], last[order], q[order], force=False)
        inserted = len(plan[1])
        if len(self._key) + inserted > limits.max_table_entries:
            raise OversizedMessage("merging this state would overflow the pattern table")
        for name in fresh:
            ids[name] = len(self._names)
            self._names.append(name)
        counts = self._apply(plan, keys, q[order], visits[order], version[order], last[order])
        return MergeCounts(counts[0], counts[1], len(keys) - counts[0] - counts[1], counts[2], counts[3], len(keys))

    def _plan(self, keys, version, visits, last, q, force: bool):
        """Which incoming rows update which local rows and which are inserted where; no change yet."""
        np = self._np
        n = len(self._key)
        pos = np.searchsorted(self._key, keys)
        if n:
            found = self._key[np.minimum(pos, n - 1)] == keys
            found &= pos < n
        else:
            found = np.zeros(len(keys), bool)
        hit = np.flatnonzero(found)
        rows = pos[hit]
        if force:
            win = np.ones(len(hit), bool)
            conflicts = 0
        else:
            lv, iv = self._version[rows], version[hit]
            win = iv > lv
            same = iv == lv
            conflicts = 0
            if same.any():
                lvis, ivis = self._visits[rows], visits[hit]
                llast, ilast = self._last[rows], last[hit]
                lq, iq = self._q[rows], q[hit]
                differ = same & ((lvis != ivis) | (llast != ilast) | (lq != iq))
                conflicts = int(differ.sum())
                tie = (ivis > lvis) | ((ivis == lvis) & ((ilast > llast) | ((ilast == llast) & (iq > lq))))
                win |= same & tie
        miss = np.flatnonzero(~found)
        return hit[win], miss, rows[win], pos[miss], conflicts

    def _apply(self, plan, keys, q, visits, version, last) -> tuple[int, int, int, int]:
        np = self._np
        upd, miss, rows, at, conflicts = plan
        if len(upd) or len(miss):
            self._read = None
            self._dirty.append(keys[np.concatenate((upd, miss))] >> ID_BITS)
        self._q[rows] = q[upd]
        self._visits[rows] = visits[upd]
        self._version[rows] = version[upd]
        self._last[rows] = last[upd]
        new_keys = 0
        if len(miss):
            fresh = keys[miss] >> ID_BITS
            local = self._key >> ID_BITS
            where = np.searchsorted(local, fresh)
            known = np.zeros(len(fresh), bool)
            if len(local):
                known = (local[np.minimum(where, len(local) - 1)] == fresh) & (where < len(local))
            unknown = fresh[~known]
            new_keys = int(len(unknown) and 1 + np.count_nonzero(unknown[1:] != unknown[:-1]))
            total = len(self._key) + len(miss)
            placed = at + np.arange(len(miss))
            kept = np.ones(total, bool)
            kept[placed] = False
            kept = np.flatnonzero(kept)
            for name, column in (("_key", keys), ("_q", q), ("_visits", visits), ("_version", version), ("_last", last)):
                grown = np.empty(total, column.dtype)
                grown[kept] = getattr(self, name)
                grown[placed] = column[miss]
                setattr(self, name, grown)
            for name in ("_weight", "_pair_sum", "_pair_kept"):  # the new rows' pairs are dirty: zeros do
                grown = np.zeros(total, getattr(self, name).dtype)
                grown[kept] = getattr(self, name)
                setattr(self, name, grown)
            self._starts = None
        changed = np.concatenate((upd, miss))
        if len(changed):
            origins = keys[changed] & _MASK
            best = np.zeros(len(self._names), np.int64)
            np.maximum.at(best, origins, version[changed])
            for o in np.flatnonzero(best).tolist():
                self._vv[o] = max(self._vv.get(o, 0), int(best[o]))
        return len(miss), len(upd), conflicts, new_keys

    def _join(self, keys, q, visits, version, last, force: bool) -> tuple[int, int, int, int]:
        return self._apply(self._plan(keys, version, visits, last, q, force), keys, q, visits, version, last)

    def _present(self, *columns) -> Any:
        """The sorted distinct ids used in some columns (a bincount: ids are dense, columns long)."""
        np = self._np
        seen = np.zeros(len(self._names), bool)
        for column in columns:
            seen[column] = True
        return np.flatnonzero(seen)

    def _ranks(self, ids) -> Any:
        """A lookup from local string id to the rank of that string among `ids` in sorted order."""
        np = self._np
        names = self._names
        ordered = sorted(ids.tolist(), key=names.__getitem__)
        rank = np.zeros(len(names), np.int64)
        rank[np.array(ordered, np.int64)] = np.arange(len(ordered))
        return rank, [names[i] for i in ordered]

    def _window(self, since: dict[str, int] | None, until: dict[str, int] | None):
        """Row selector for since[origin] < version <= until[origin]."""
        np = self._np
        select = slice(None)
        if since or until:
            floor = np.zeros(len(self._names), np.int64)
            ceiling = np.full(len(self._names), MAX_INT63, np.int64)
            for bound, values in ((floor, since or {}), (ceiling, until or {})):
                for origin, version in values.items():
                    if origin in self._ids:
                        bound[self._ids[origin]] = version
            origin_of = self._key & _MASK
            select = (self._version > floor[origin_of]) & (self._version <= ceiling[origin_of])
        return select

    def versions_above(self, since: dict[str, int] | None) -> dict[str, list[int]]:
        np = self._np
        self._flush()
        select = self._window(since, None)
        origins, versions = self._key[select] & _MASK, self._version[select]
        order = np.lexsort((versions, origins))
        origins, versions = origins[order], versions[order]
        out: dict[str, list[int]] = {}
        for o in np.unique(origins).tolist():
            lo, hi = np.searchsorted(origins, o), np.searchsorted(origins, o, side="right")
            out[self._names[o]] = versions[lo:hi].tolist()
        return out

    def encode(self, since: dict[str, int] | None, until: dict[str, int] | None = None) -> bytes:
        np = self._np
        self._flush()
        key = self._key
        select = self._window(since, until)
        key = key[select]
        s, a, o = key >> _STATE_SHIFT, key >> ID_BITS & _MASK, key & _MASK
        used = self._present(s, a, o)
        rank, strings = self._ranks(used)
        s, a, o = rank[s], rank[a], rank[o]
        order = np.argsort((s * len(strings) + a) * len(strings) + o)
        columns = b"".join(
            (
                self._q[select][order].astype("<f8").tobytes(),
                self._version[select][order].astype("<u8").tobytes(),
                self._last[select][order].astype("<u8").tobytes(),
                s[order].astype("<u4").tobytes(),
                a[order].astype("<u4").tobytes(),
                o[order].astype("<u4").tobytes(),
                self._visits[select][order].astype("<u4").tobytes(),
            )
        )
        return wire.frame(strings, columns, len(key))

    def version_vector(self) -> dict[str, int]:
        return {self._names[o]: v for o, v in self._vv.items()}

    def state_view(self, state: str) -> tuple[dict[str, Choice], int]:
        """Read from the cached per-pair values, so a decision costs a few slices, not a sort."""
        np = self._np
        self._flush()
        sid = self._ids.get(state)
        if sid is None or not len(self._key):
            return {}, 0
        starts, weighted, visits, _ = self._per_key()
        lo, hi = np.searchsorted(self._key, [sid << _STATE_SHIFT, (sid + 1) << _STATE_SHIFT]).tolist()
        first, last = np.searchsorted(starts, [lo, hi]).tolist()
        heads = starts[first:last]
        support = np.diff(np.append(heads, hi)).tolist()
        actions = (self._key[heads] >> ID_BITS & _MASK).tolist()
        q = (weighted[first:last] / visits[first:last]).tolist()
        names = self._names
        view = {names[a]: Choice(qv, v, k) for a, qv, v, k in zip(actions, q, visits[first:last].tolist(), support)}
        return view, len(np.unique(self._key[lo:hi] & _MASK))

    def _per_key(self):
        """Per distinct (state, action): the first row, the kept weighted q sum in origin order, the kept
        weights, and per row the weight (0 when trimmed) (robust.py's rule). Kept until the table changes."""
        if self._read is None:
            self._settle()
            if self._starts is None:
                self._starts = self._heads(self._key)
            starts = self._starts
            self._read = starts, self._pair_sum[starts], self._pair_kept[starts], self._weight
        return self._read

    def _settle(self) -> None:
        """Recompute the robust values of the pairs changed since the last read, and only those:
        a write costs the sort of one pair's origins, a merge touching most pairs one pass over all."""
        np = self._np
        if not self._dirty:
            return
        changed, self._dirty = self._dirty, []
        key = self._key
        if 4 * sum(map(len, changed)) >= len(key):
            self._robust(None)
            return
        pairs = np.unique(np.concatenate(changed))
        lo = np.searchsorted(key, pairs << ID_BITS)
        size = np.searchsorted(key, (pairs + 1) << ID_BITS) - lo
        self._robust(np.repeat(lo - (np.cumsum(size) - size), size) + np.arange(int(size.sum())))

    @staticmethod
    def _heads_mask(np, key):
        head = np.ones(len(key), bool)
        head[1:] = (key[1:] >> ID_BITS) != (key[:-1] >> ID_BITS)
        return head

    def _heads(self, key):
        return self._np.flatnonzero(self._heads_mask(self._np, key))

    def _ranked_origins(self):
        """Origin id -> rank of its name among the origins (ties in q and the order of sums follow names)."""
        np = self._np
        if self._origin_rank is None or self._origin_rank[0] != len(self._vv):
            ordered = sorted(self._vv, key=self._names.__getitem__)
            rank = np.zeros(len(self._names), np.uint16 if len(ordered) <= 1 << 16 else np.int64)
            rank[np.array(ordered, np.int64)] = np.arange(len(ordered))
            self._origin_rank = len(self._vv), rank
        return self._origin_rank[1]

    def _robust(self, rows) -> None:
        """robust.py's rule for the whole pairs at `rows` (ascending; None for the whole table), written back.

        Pairs are contiguous runs of rows, so the pairs of k origins form a (pairs, k) matrix of row
        numbers: caps and trims sort along its short rows, one size at a time, instead of sorting
        the table (three global stable sorts cost 10x the plain mean this read replaced).
        """
        np = self._np
        select = slice(None) if rows is None else rows
        key, q, visits = self._key[select], self._q[select], self._visits[select]
        n = len(key)
        head = self._heads_mask(np, key)
        group = np.cumsum(head) - 1
        starts = np.flatnonzero(head)
        size = np.diff(np.append(starts, n))
        orank = self._ranked_origins()[key & _MASK]
        cap = visits[starts].copy()
        two = size == 2
        cap[two] = np.maximum(visits[starts[two]], visits[starts[two] + 1])
        dropped = []
        for k in np.unique(size[size > 2]).tolist():
            pairs = np.flatnonzero(size == k)
            matrix = starts[pairs, None] + np.arange(k)
            cap[pairs] = np.sort(visits[matrix], axis=1)[:, k // 2]  # the upper median
            t = trim_count(k)
            if t:
                dropped += self._extremes(q, orank, matrix, t)
        weight = np.minimum(visits, cap[group])
        if dropped:
            weight[np.concatenate(dropped)] = 0
        by_origin = np.argsort(orank, kind="stable")
        heads = starts if rows is None else rows[starts]
        self._weight[select] = weight
        self._pair_sum[heads] = np.bincount(group[by_origin], (q * weight)[by_origin], len(starts))
        self._pair_kept[heads] = np.add.reduceat(weight, starts) if n else np.zeros(0, np.int64)
        if rows is None:
            self._starts = starts

    def _extremes(self, q, orank, matrix, t: int) -> list:
        """The rows holding the t lowest and t highest (q, origin name) of each pair (a row of `matrix`).

        Sorting by q alone finds them unless a cut falls between equal q, where the origin name
        decides: only those pairs pay for the two-key sort.
        """
        np = self._np
        k = matrix.shape[1]
        values = q[matrix]
        order = np.argsort(values, axis=1)
        cut = np.take_along_axis(values, order, 1)
        tied = (cut[:, t - 1] == cut[:, t]) | (cut[:, k - t - 1] == cut[:, k - t])
        if tied.any():
            rows = np.flatnonzero(tied)
            order[rows] = np.lexsort((orank[matrix[rows]], values[rows]))
        by_q = np.take_along_axis(matrix, order, 1)
        return [by_q[:, :t].ravel(), by_q[:, k - t :].ravel()]

    def swarm_arrays(self) -> tuple[Any, Any, Any, Any, Any]:
        """(state ids, action ids, swarm q, swarm visits, latest update) per distinct key, in table order."""
        np = self._np
        self._flush()
        starts, weighted, visits, _ = self._per_key()
        last = np.maximum.reduceat(self._last, starts) if len(starts) else np.zeros(0, np.int64)
        key = self._key[starts]
        return key >> _STATE_SHIFT, key >> ID_BITS & _MASK, weighted / visits, visits, last

    def aggregate(self) -> Aggregate:
        np = self._np
        s, a, q, visits, last = self.swarm_arrays()
        if not len(s):
            return Aggregate([], [], [], [], [])
        rank, ordered = self._ranks(self._present(s, a))
        order = np.argsort(rank[s] * len(ordered) + rank[a])
        s, a = rank[s][order].tolist(), rank[a][order].tolist()
        return Aggregate(
            [ordered[i] for i in s],
            [ordered[i] for i in a],
            q[order].tolist(),
            visits[order].tolist(),
            last[order].tolist(),
        )

    def totals(self) -> Totals:
        self._flush()
        origins = {self._names[o] for o in self._vv}
        if not len(self._key):
            return Totals(0, 0, 0.0, origins, 0, 0)
        _, _, visits, weight = self._per_key()
        conf = visits / (visits + 1.0)  # = confidence(), vectorised
        trimmed = int((weight == 0).sum())
        capped = int(((weight > 0) & (weight < self._visits)).sum())
        return Totals(len(visits), int(visits.sum()), math.fsum(conf.tolist()), origins, trimmed, capped)


def default_table_factory() -> Callable[[], PatternTable]:
    """numpy's kernel when numpy imports here, the pure-Python one otherwise; chosen once."""
    try:
        import numpy
    except ImportError:
        return PyTable
    return lambda: NumpyTable(numpy)
