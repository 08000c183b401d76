"""IntelligenceSync: the pattern CRDT, its wire format, delta sync and hostile input.

Every test runs on both kernels (numpy and pure Python), and a property test
checks that the two give byte-identical states and identical swarm values.
"""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruvector_edge.errors import MalformedMessage, OversizedMessage, RejectedInput
from ruvector_edge.intelligence import IntelligenceSync, Limits, NumpyTable, PyTable, confidence, wire
from ruvector_edge.platform.base import FakeClock

KERNELS = {"numpy": lambda: NumpyTable(np), "pure": PyTable}


@pytest.fixture(params=sorted(KERNELS))
def kernel(request):
    return KERNELS[request.param]


def agent(name: str, kernel, clock: FakeClock | None = None, **kw) -> IntelligenceSync:
    return IntelligenceSync(name, clock=clock or FakeClock(), table_factory=kernel, **kw)


def snapshot(sync: IntelligenceSync) -> tuple:
    return sync.serialize_state(), sync.version_vector(), sync.get_swarm_stats(), len(sync)


def clone(sync: IntelligenceSync, kernel, name: str = "observer") -> IntelligenceSync:
    copy = agent(name, kernel)
    copy.merge_peer_state(sync.agent_id, sync.serialize_state())
    return copy


# --------------------------------------------------------------------------- unit


def test_update_pattern_is_an_incremental_mean_and_bumps_one_counter(kernel):
    a = agent("a", kernel, FakeClock(0))
    first = a.update_pattern("s", "x", 1.0)
    a.update_pattern("s", "y", 5.0)
    last = a.update_pattern("s", "x", 0.0, visits_delta=3)
    assert (last.q_value, last.visits) == (0.25, 4)
    assert last.version == first.version + 2
    assert a.version_vector() == {"a": last.version}
    a.set_pattern("s", "y", -2.0, 7)
    assert {(p.action, p.q_value, p.visits) for p in a.patterns()} == {("x", 0.25, 4), ("y", -2.0, 7)}


def test_versions_follow_the_clock_so_a_restarted_agent_still_wins(kernel):
    clock = FakeClock(1_000)
    old = agent("a", kernel, clock)
    old.update_pattern("s", "x", 1.0)
    peer = clone(old, kernel, "peer")
    clock.advance(5)
    reborn = agent("a", kernel, clock)
    reborn.update_pattern("s", "x", 9.0)
    peer.merge_peer_state("a", reborn.serialize_state())
    assert [p.q_value for p in peer.patterns()] == [9.0]


def test_own_counter_is_adopted_back_from_the_swarm(kernel):
    clock = FakeClock(0)
    old = agent("a", kernel, clock)
    for _ in range(5):
        old.update_pattern("s", "x", 1.0)
    reborn = agent("a", kernel, FakeClock(0))
    reborn.merge_peer_state("peer", old.serialize_state())
    assert reborn.update_pattern("s", "x", 3.0).version == old.version_vector()["a"] + 1


def test_remerging_never_double_counts_visits(kernel):
    a, b = agent("a", kernel), agent("b", kernel)
    a.update_pattern("s", "x", 1.0, 2)
    b.update_pattern("s", "x", 3.0, 6)
    old_b = b.serialize_state()
    b.update_pattern("s", "x", 3.0, 2)
    first = a.merge_peer_state("b", b.serialize_state())
    assert (first.merged_patterns, first.new_patterns, first.updated, first.ignored_stale) == (1, 0, 0, 0)
    before = snapshot(a)
    again = a.merge_peer_state("b", b.serialize_state())
    stale = a.merge_peer_state("b", old_b)
    assert again.merged_patterns == stale.merged_patterns == 0
    assert again.ignored_stale == stale.ignored_stale == 1
    assert snapshot(a) == before
    (pattern,) = a.patterns()
    assert pattern.visits == 10
    assert pattern.q_value == (1.0 * 2 + 3.0 * 8) / 10
    assert pattern.confidence == confidence(10)


def test_merge_result_counts(kernel):
    a, b = agent("a", kernel), agent("b", kernel)
    a.update_pattern("s", "x", 1.0)
    b.update_pattern("s", "x", 2.0)
    b.update_pattern("s", "y", 2.0)
    b.update_pattern("t", "y", 2.0)
    r = a.merge_peer_state("b", b.serialize_state())
    assert (r.merged_patterns, r.new_patterns, r.updated, r.conflicts, r.ignored_stale) == (3, 2, 0, 0, 0)
    b.update_pattern("s", "x", 4.0)
    r = a.merge_peer_state("b", b.serialize_state())
    assert (r.merged_patterns, r.new_patterns, r.updated, r.ignored_stale) == (1, 0, 1, 2)


def test_stats_count_distinct_patterns_and_all_agents(kernel):
    a, b = agent("a", kernel), agent("b", kernel)
    assert a.get_swarm_stats().total_agents == 1
    a.update_pattern("s", "x", 1.0, 10)
    b.update_pattern("s", "x", 1.0, 30)
    b.update_pattern("s", "y", 1.0, 10)
    a.merge_peer_state("b", b.serialize_state())
    stats = a.get_swarm_stats()
    assert (stats.total_agents, stats.total_patterns, stats.total_visits) == (2, 2, 50)
    assert stats.avg_confidence == pytest.approx((confidence(40) + confidence(10)) / 2)


def test_best_action(kernel):
    a, b = agent("a", kernel), agent("b", kernel)
    assert a.best_action("s", ["x"]) is None
    a.update_pattern("s", "x", 1.0, 1)
    a.update_pattern("s", "y", 0.5, 1)
    b.update_pattern("s", "y", 2.0, 9)
    a.merge_peer_state("b", b.serialize_state())
    assert a.best_action("s", ["x", "y", "unknown"]) == ("y", confidence(10))
    assert a.best_action("s", ["x", "unknown"]) == ("x", confidence(1))
    assert a.best_action("other", ["x"]) is None
    a.update_pattern("t", "b", 1.0)
    a.update_pattern("t", "a", 1.0)
    assert a.best_action("t", ["b", "a"]) == ("a", confidence(1))


def test_equal_versions_with_other_content_are_conflicts_resolved_the_same_everywhere(kernel):
    x, y = agent("a", kernel, FakeClock(7)), agent("a", kernel, FakeClock(7))
    x.update_pattern("s", "x", 1.0)
    y.update_pattern("s", "x", 2.0)
    p, q = clone(x, kernel, "p"), clone(y, kernel, "q")
    sp, sq = p.serialize_state(), q.serialize_state()
    into_p, into_q = p.merge_peer_state("q", sq), q.merge_peer_state("p", sp)
    assert into_p.conflicts == into_q.conflicts == 1
    assert into_p.merged_patterns + into_q.merged_patterns == 1
    assert p.serialize_state() == q.serialize_state()
    assert [pat.q_value for pat in p.patterns()] == [2.0]


@pytest.mark.parametrize(
    "args",
    [("", "x", 1.0), ("s", "", 1.0), ("s\x00", "x", 1.0), ("s", "x" * 300, 1.0), ("s", "x", float("nan")), (1, "x", 1.0), ("s", "\ud800", 1.0)],
)
def test_bad_local_writes_are_refused(kernel, args):
    a = agent("a", kernel)
    with pytest.raises(ValueError):
        a.update_pattern(*args)
    with pytest.raises(ValueError):
        a.update_pattern("s", "x", 1.0, visits_delta=0)
    assert len(a) == 0


def test_table_capacity_is_enforced_before_any_change(kernel):
    a = agent("a", kernel, limits=Limits(max_table_entries=3))
    b = agent("b", kernel)
    for i in range(3):
        b.update_pattern("s", f"x{i}", 1.0)
    a.update_pattern("s", "y", 1.0)
    before = snapshot(a)
    with pytest.raises(OversizedMessage):
        a.merge_peer_state("b", b.serialize_state())
    assert snapshot(a) == before


# --------------------------------------------------------------------------- properties

NAMES = st.sampled_from(["s0", "s1", "s2", "s3", "é", "s\u4e2d"])
ACTIONS = st.sampled_from(["left", "right", "up", "down"])
OPS = st.lists(
    st.tuples(NAMES, ACTIONS, st.floats(-1e6, 1e6, allow_nan=False), st.integers(1, 5), st.booleans()),
    max_size=12,
)


def replica(name: str, ops, kernel, start: int = 0) -> IntelligenceSync:
    clock = FakeClock(start)
    sync = agent(name, kernel, clock)
    for state, action, value, visits, learner in ops:
        clock.advance(1)
        if learner:
            sync.set_pattern(state, action, value, visits)
        else:
            sync.update_pattern(state, action, value, visits)
    return sync


def joined(kernel, *states: bytes) -> IntelligenceSync:
    sink = agent("sink", kernel)
    for data in states:
        sink.merge_peer_state("peer", data)
    return sink


def merged(kernel, *states: bytes) -> bytes:
    return joined(kernel, *states).serialize_state()


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(a=OPS, b=OPS, c=OPS)
def test_merge_is_a_join(kernel, a, b, c):
    # origins a and b and c, plus a second, diverged replica of origin a
    sa, sb, sc = (replica(n, ops, kernel).serialize_state() for n, ops in (("a", a), ("b", b), ("c", c)))
    sa2 = replica("a", b, kernel, start=3).serialize_state()
    ab = merged(kernel, sa, sb)
    # a merge that does nothing would pass every equality below with empty states: the join must hold both sides
    assert merged(kernel, sa) == sa and merged(kernel, sb) == sb
    assert joined(kernel, ab).version_vector() == {**joined(kernel, sa).version_vector(), **joined(kernel, sb).version_vector()}
    assert len(joined(kernel, ab)) == len(joined(kernel, sa)) + len(joined(kernel, sb))
    assert merged(kernel, sa, sa) == merged(kernel, sa)
    assert merged(kernel, ab, sa, sb) == ab
    assert ab == merged(kernel, sb, sa)
    assert merged(kernel, sa, sa2) == merged(kernel, sa2, sa)
    assert merged(kernel, merged(kernel, sa, sb), sc) == merged(kernel, sa, merged(kernel, sb, sc))
    assert merged(kernel, merged(kernel, sa2, sb), sa) == merged(kernel, sa2, merged(kernel, sb, sa))


@SETTINGS
@given(a=OPS, b=OPS)
def test_kernels_agree_bit_for_bit(a, b):
    views = []
    for kernel in KERNELS.values():
        x, y = replica("a", a, kernel), replica("b", b, kernel)
        r = x.merge_peer_state("b", y.serialize_state())
        views.append(
            (
                x.serialize_state(),
                x.serialize_state(since=y.version_vector()),
                x.patterns(),
                x.get_swarm_stats(),
                x.version_vector(),
                r,
                [x.best_action(s, ["left", "right", "up", "down"]) for s in ["s0", "s1", "s2", "s3", "é", "s\u4e2d"]],
            )
        )
    assert views[0] == views[1]


@SETTINGS
@given(ops=OPS)
def test_round_trip(kernel, ops):
    a = replica("a", ops, kernel)
    b = clone(a, kernel)
    assert b.serialize_state() == a.serialize_state()
    assert b.patterns() == a.patterns()
    assert b.version_vector() == a.version_vector()


@SETTINGS
@given(a=OPS, b=OPS, more=OPS)
def test_delta_holds_only_what_is_missing_and_equals_a_full_merge(kernel, a, b, more):
    x, y = replica("a", a, kernel), replica("b", b, kernel)
    y.merge_peer_state("a", x.serialize_state())
    clock = x._clock
    for state, action, value, visits, _ in more:
        clock.advance(1)
        x.update_pattern(state, action, value, visits)
    x.merge_peer_state("b", y.serialize_state())
    vv = y.version_vector()
    delta = x.delta_for(vv)
    full = clone(y, kernel, "full")
    full.merge_peer_state("a", x.serialize_state())
    r = y.merge_peer_state("a", delta)
    assert y.serialize_state() == full.serialize_state()
    assert r.ignored_stale == 0
    expected = {(s, act) for s, act, *_ in more}
    probe = agent("probe", kernel)
    probe.merge_peer_state("a", delta)
    assert {(p.state, p.action) for p in probe.patterns()} == expected
    assert all(v > vv.get(o, 0) for o, v in probe.version_vector().items())
    assert x.delta_for(x.version_vector()) == agent("empty", kernel).serialize_state()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 8), use_delta=st.booleans())
def test_random_gossip_converges(kernel, seed, n, use_delta):
    rng = random.Random(seed)
    clocks = [FakeClock(rng.randrange(1000)) for _ in range(n)]
    agents = [agent(f"agent-{i}", kernel, clocks[i]) for i in range(n)]
    states = [f"s{i}" for i in range(4)]
    actions = ["a", "b", "c"]

    def gossip(src, dst):
        data = src.delta_for(dst.version_vector()) if use_delta else src.serialize_state()
        dst.merge_peer_state(src.agent_id, data)

    for _ in range(60):
        i = rng.randrange(n)
        if rng.random() < 0.5:
            clocks[i].advance(rng.randrange(3))
            agents[i].update_pattern(rng.choice(states), rng.choice(actions), rng.uniform(-1, 1), rng.randint(1, 3))
        else:
            gossip(agents[i], agents[rng.randrange(n)])
    for _ in range(3 * n):  # random gossip without writes, then a final ring pass
        gossip(agents[rng.randrange(n)], agents[rng.randrange(n)])
    for _ in range(2):
        for i in range(n):
            gossip(agents[i], agents[(i + 1) % n])
    reference = agents[0]
    for other in agents[1:]:
        assert other.serialize_state() == reference.serialize_state()
        assert other.patterns() == reference.patterns()
        for s in states:
            assert other.best_action(s, actions) == reference.best_action(s, actions)


# --------------------------------------------------------------------------- hostile input


def frame_raw(raw: bytes, declared: int | None = None) -> bytes:
    return wire.OUTER.pack(wire.MAGIC, wire.FORMAT, 0, len(raw) if declared is None else declared) + zlib.compress(raw)


def raw_state(strings, rows, *, n_strings=None, n_entries=None, reserved=0) -> bytes:
    """A raw state from rows (s, a, o, q, visits, version, last), packed without any checks."""
    blob = "\x00".join(strings).encode("utf-8", "surrogatepass")
    cols = [
        struct.pack(f"<{len(rows)}d", *[r[3] for r in rows]),
        struct.pack(f"<{len(rows)}Q", *[r[5] for r in rows]),
        struct.pack(f"<{len(rows)}Q", *[r[6] for r in rows]),
        *(struct.pack(f"<{len(rows)}I", *[r[i] for r in rows]) for i in (0, 1, 2, 4)),
    ]
    header = wire.HEADER.pack(len(strings) if n_strings is None else n_strings, len(blob), len(rows) if n_entries is None else n_entries, reserved)
    return header + b"".join(cols) + blob


GOOD = (["a", "s", "x"], [(1, 2, 0, 0.5, 1, 1, 1)])


@pytest.fixture
def victim(kernel):
    v = agent("a", kernel)
    v.update_pattern("s", "x", 1.0)
    v.update_pattern("t", "x", 2.0)
    return v


def rejected(victim, data, error=RejectedInput):
    before = snapshot(victim)
    with pytest.raises(error):
        victim.merge_peer_state("evil", data)
    assert snapshot(victim) == before


def test_a_hand_built_state_is_accepted(victim):
    assert victim.merge_peer_state("b", frame_raw(raw_state(*GOOD))).merged_patterns == 0
    assert victim.merge_peer_state("b", frame_raw(raw_state(["b", "s", "x"], [(1, 2, 0, 0.5, 1, 1, 1)]))).merged_patterns == 1


@pytest.mark.parametrize(
    "strings, rows, kw, error",
    [
        (["s", "a", "x"], [(0, 2, 1, 0.5, 1, 1, 1)], {}, MalformedMessage),  # unsorted strings
        (["a", "a", "x"], [(1, 2, 0, 0.5, 1, 1, 1)], {}, MalformedMessage),  # duplicate string
        (["", "s", "x"], [(1, 2, 0, 0.5, 1, 1, 1)], {}, MalformedMessage),  # empty name
        (["a", "s", "x", "z"], [(1, 2, 0, 0.5, 1, 1, 1)], {}, MalformedMessage),  # unused string
        (["a", "s", "x"], [(1, 3, 0, 0.5, 1, 1, 1)], {}, MalformedMessage),  # index past the table
        (["a", "s", "x"], [(1, 2, 0, float("nan"), 1, 1, 1)], {}, MalformedMessage),
        (["a", "s", "x"], [(1, 2, 0, float("inf"), 1, 1, 1)], {}, MalformedMessage),
        (["a", "s", "x"], [(1, 2, 0, 0.5, 0, 1, 1)], {}, MalformedMessage),  # no visits
        (["a", "s", "x"], [(1, 2, 0, 0.5, 1, 0, 1)], {}, MalformedMessage),  # version 0
        (["a", "s", "x"], [(1, 2, 0, 0.5, 1, 2**63, 1)], {}, MalformedMessage),
        (["a", "s", "x"], [(1, 2, 0, 0.5, 1, 1, 2**64 - 1)], {}, MalformedMessage),
        (["a", "s", "x"], [(1, 2, 0, 0.5, 1, 1, 1)] * 2, {}, MalformedMessage),  # duplicate entry
        (["a", "b", "s", "x"], [(2, 3, 1, 0.5, 1, 1, 1), (2, 3, 0, 0.5, 1, 1, 1)], {}, MalformedMessage),  # unsorted
        (["a", "s", "x"], [(1, 2, 0, 0.5, 1, 1, 1)], {"reserved": 1}, MalformedMessage),
        (["a", "s", "x"], [(1, 2, 0, 0.5, 1, 1, 1)], {"n_strings": 2}, MalformedMessage),
        (["a", "s", "x"], [(1, 2, 0, 0.5, 1, 1, 1)], {"n_entries": 2}, MalformedMessage),
        (["a", "s", "x"], [(1, 2, 0, 0.5, 1, 1, 1)], {"n_entries": 2**32 - 1}, OversizedMessage),
        (["a", "s", "x" * 300], [(1, 2, 0, 0.5, 1, 1, 1)], {}, OversizedMessage),
        (["a", "s", "\ud800"], [(1, 2, 0, 0.5, 1, 1, 1)], {}, MalformedMessage),  # not UTF-8
    ],
)
def test_crafted_states_are_rejected_whole(victim, strings, rows, kw, error):
    rejected(victim, frame_raw(raw_state(strings, rows, **kw)), error)


def test_framing_errors(victim):
    good = frame_raw(raw_state(*GOOD))
    rejected(victim, b"", MalformedMessage)
    rejected(victim, "text", MalformedMessage)
    rejected(victim, b"XXXX" + good[4:], MalformedMessage)
    rejected(victim, good[:4] + b"\x02" + good[5:], MalformedMessage)
    rejected(victim, good[:5] + b"\x01" + good[6:], MalformedMessage)
    rejected(victim, good + b"trailing", MalformedMessage)
    rejected(victim, frame_raw(raw_state(*GOOD), declared=10), MalformedMessage)
    rejected(victim, frame_raw(raw_state(*GOOD), declared=1000), MalformedMessage)
    rejected(victim, frame_raw(raw_state(*GOOD), declared=2**32 - 1), OversizedMessage)
    rejected(victim, good[:10] + b"not zlib at all", MalformedMessage)
    small = agent("a", KERNELS["pure"], limits=Limits(max_message_bytes=20))
    with pytest.raises(OversizedMessage):
        small.merge_peer_state("evil", good)


def test_zlib_bomb_stops_at_the_declared_limit(victim):
    limit = victim.limits.max_decompressed_bytes
    bomb_raw = b"\x00" * (limit + 1024)
    bomb = zlib.compress(bomb_raw, 9)
    assert len(bomb) < 100_000
    rejected(victim, wire.OUTER.pack(wire.MAGIC, wire.FORMAT, 0, limit) + bomb, MalformedMessage)
    rejected(victim, wire.OUTER.pack(wire.MAGIC, wire.FORMAT, 0, limit + 1024) + bomb, OversizedMessage)
    # a bomb that inflates exactly to an allowed size still fails on its counts
    rejected(victim, wire.OUTER.pack(wire.MAGIC, wire.FORMAT, 0, limit) + zlib.compress(b"\x00" * limit, 9), MalformedMessage)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_bytes_are_rejected(victim, data):
    rejected(victim, data)
    rejected(victim, wire.OUTER.pack(wire.MAGIC, wire.FORMAT, 0, len(data)) + data)
    if len(data) < wire.HEADER.size:
        rejected(victim, frame_raw(data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, 10_000), bit=st.integers(0, 80_000), raw=st.booleans())
def test_truncations_and_bit_flips(victim, kernel, cut, bit, raw):
    source = agent("b", kernel)
    for i in range(20):
        source.update_pattern(f"s{i % 7}", f"a{i % 3}", i / 7, 1 + i % 4)
    data = source.serialize_state()
    if raw:  # damage the inflated bytes and re-frame them, past zlib's checksum
        inner = bytearray(wire.inflate(data, Limits()))
        inner[bit % len(inner)] ^= 1 << (bit % 8)
        damaged = frame_raw(bytes(inner))
    else:
        flipped = bytearray(data)
        flipped[bit % len(flipped)] ^= 1 << (bit % 8)
        damaged = bytes(flipped)
    truncated = data[: cut % len(data)]
    rejected(victim, truncated)
    before = snapshot(victim)
    try:
        victim.merge_peer_state("evil", damaged)
    except RejectedInput:
        assert snapshot(victim) == before


def test_a_version_far_ahead_of_our_clock_is_refused_whole(kernel):
    """A relayed forgery with a huge version would otherwise freeze that key for ever."""
    from ruvector_edge.intelligence.sync import VERSION_HORIZON_MS

    now = 1_800_000_000_000
    forger = agent("mallory-as-bob", kernel, FakeClock(now + VERSION_HORIZON_MS + 1))
    forger.update_pattern("s", "a", 1.0)
    honest = agent("alice", kernel, FakeClock(now))
    honest.update_pattern("s", "b", 0.5)
    before = honest.serialize_state()
    with pytest.raises(MalformedMessage):
        honest.merge_peer_state("mallory", forger.serialize_state())
    assert honest.serialize_state() == before
    near = agent("carol", kernel, FakeClock(now + VERSION_HORIZON_MS - 1))
    near.update_pattern("s", "c", 0.1)
    assert honest.merge_peer_state("carol", near.serialize_state()).merged_patterns == 1
