"""Pattern poisoning (issue 14): colluding members cannot steer the swarm's best action or a pair's value.

f of n origins lie (1 of 8, 2 of 8, 3 of 10, 10 of 31: always f < n/3) with
inflated visits and extreme q, by full states or by deltas, before or after the
honest members learn. Every honest replica must still pick the honest action,
and the swarm q of each attacked pair must stay inside the honest origins' range.
Both kernels; the kernels must also agree bit for bit when trimming and caps apply.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruvector_edge.intelligence import IntelligenceSync, NumpyTable, PyTable
from ruvector_edge.intelligence.wire import MAX_ABS_Q, MAX_VISITS
from ruvector_edge.platform.base import FakeClock

KERNELS = {"numpy": lambda: NumpyTable(np), "pure": PyTable}
STATE = "edit_ts"
GOOD, SECOND, EVIL = "typescript-developer", "javascript-developer", "attacker-choice"
ACTIONS = [GOOD, SECOND, EVIL]
HUGE = MAX_ABS_Q  # the most extreme q a state may carry


@pytest.fixture(params=sorted(KERNELS))
def kernel(request):
    return KERNELS[request.param]


def honest_learning(agent: IntelligenceSync, i: int, rounds: int = 3) -> None:
    """Honest agents agree GOOD is best (q around 0.9) and SECOND worse (around 0.4), with varied evidence."""
    for r in range(rounds):
        agent.update_pattern(STATE, GOOD, 0.85 + 0.01 * ((i + r) % 10), 1 + (i + r) % 4)
        agent.update_pattern(STATE, SECOND, 0.35 + 0.01 * ((i * 3 + r) % 10), 1 + (i * 7 + r) % 3)


def poison(agent: IntelligenceSync) -> None:
    """Every lever one member has: an action only liars report, the honest best pushed down, the runner-up up."""
    agent.set_pattern(STATE, EVIL, HUGE, MAX_VISITS)
    agent.set_pattern(STATE, GOOD, -HUGE, MAX_VISITS)
    agent.set_pattern(STATE, SECOND, HUGE, MAX_VISITS)


def gossip(agents: list[IntelligenceSync], delta: bool) -> None:
    """Everyone pulls from everyone (a delta answers the puller's version vector), twice: a fixed point."""
    for _ in range(2):
        for dst in agents:
            for src in agents:
                if src is not dst:
                    data = src.delta_for(dst.version_vector()) if delta else src.serialize_state()
                    dst.merge_peer_state(src.agent_id, data)


def honest_range(honest: list[IntelligenceSync], action: str) -> tuple[float, float]:
    values = [a._table.get(STATE, action, a.agent_id).q_value for a in honest]
    return min(values), max(values)


@pytest.mark.parametrize("liars, n", [(1, 8), (2, 8), (3, 10), (10, 31)])
@pytest.mark.parametrize("delta", [False, True], ids=["full", "delta"])
@pytest.mark.parametrize("attack_first", [False, True], ids=["after-honest", "before-honest"])
def test_colluding_poisoners_cannot_steer_best_action_or_values(kernel, liars, n, delta, attack_first):
    clock = FakeClock(1_000)
    agents = [IntelligenceSync(f"agent-{i:02d}", clock=clock, table_factory=kernel) for i in range(n)]
    honest, attackers = agents[: n - liars], agents[n - liars :]
    if attack_first:
        for a in attackers:
            poison(a)
        gossip(agents, delta)
    for i, a in enumerate(honest):
        clock.advance(1)
        honest_learning(a, i)
    if not attack_first:
        gossip(honest, delta)
        for a in attackers:
            poison(a)
    gossip(agents, delta)
    clock.advance(1)
    for i, a in enumerate(honest):  # honest updates after the attack change nothing either
        a.update_pattern(STATE, GOOD, 0.9, 1)
    gossip(agents, delta)
    ranges = {action: honest_range(honest, action) for action in (GOOD, SECOND)}
    for a in honest:
        assert a.best_action(STATE, ACTIONS)[0] == GOOD
        values = {p.action: p for p in a.patterns()}
        for action, (low, high) in ranges.items():
            assert low <= values[action].q_value <= high
            assert values[action].visits < MAX_VISITS
        assert a.get_swarm_stats().trimmed_entries >= 2 * liars  # the liars' extremes on both honest pairs, counted


@pytest.mark.parametrize("liars, n", [(1, 8), (3, 10)])
def test_inflated_visits_inside_the_honest_range_weigh_no_more_than_an_honest_origin(kernel, liars, n):
    def swarm(liar_visits: int) -> IntelligenceSync:
        clock = FakeClock(1_000)
        agents = [IntelligenceSync(f"agent-{i:02d}", clock=clock, table_factory=kernel) for i in range(n)]
        for i, a in enumerate(agents[: n - liars]):
            a.set_pattern(STATE, GOOD, 0.5 + 0.01 * i, 10 + i)
        for a in agents[n - liars :]:  # at the top of the honest range, so not dropped for being extreme
            a.set_pattern(STATE, GOOD, 0.5 + 0.01 * (n - liars - 1), liar_visits)
        gossip(agents, delta=False)
        return agents[0]

    honest_median = sorted([10 + i for i in range(n - liars)] + [MAX_VISITS] * liars)[n // 2]
    assert honest_median < 10 + n - liars  # the upper median is an honest count
    inflated, ordinary = swarm(MAX_VISITS), swarm(honest_median)
    assert inflated.patterns() == ordinary.patterns()  # claiming 2**32-1 visits buys an honest median's weight
    assert inflated.get_swarm_stats().capped_entries >= 1


def test_without_liars_small_swarms_read_what_they_read_before(kernel):
    """k <= 3 origins: nothing trimmed, and the cap (upper median) leaves two origins' evidence as it was."""
    a, b, c = (IntelligenceSync(name, clock=FakeClock(), table_factory=kernel) for name in "abc")
    a.update_pattern("s", "x", 1.0, 2)
    b.update_pattern("s", "x", 3.0, 8)
    a.merge_peer_state("b", b.serialize_state())
    (p,) = a.patterns()
    assert (p.q_value, p.visits) == ((1.0 * 2 + 3.0 * 8) / 10, 10)
    c.update_pattern("s", "x", 2.0, 4)
    a.merge_peer_state("c", c.serialize_state())
    (p,) = a.patterns()  # visits 2, 8, 4: cap 4, so 8 weighs 4
    assert (p.q_value, p.visits) == ((1.0 * 2 + 3.0 * 4 + 2.0 * 4) / 10, 10)
    assert a.get_swarm_stats().trimmed_entries == 0 and a.get_swarm_stats().capped_entries == 1


def test_an_action_only_liars_report_loses_to_a_backed_one_but_counts_alone(kernel):
    clock = FakeClock()
    honest = [IntelligenceSync(f"h{i}", clock=clock, table_factory=kernel) for i in range(3)]
    liar = IntelligenceSync("liar", clock=clock, table_factory=kernel)
    for h in honest:
        h.update_pattern(STATE, GOOD, 0.5)
    liar.set_pattern(STATE, EVIL, 10.0, MAX_VISITS)
    gossip([*honest, liar], delta=False)
    assert honest[0].best_action(STATE, ACTIONS)[0] == GOOD  # 4 origins: one may lie; EVIL has one
    assert honest[0].best_action(STATE, [EVIL])[0] == EVIL  # asked about it alone, it is what is known


# --------------------------------------------------------------------------- kernels and CRDT with many origins

ORIGIN_ROWS = st.lists(
    st.tuples(
        st.integers(0, 2),  # state
        st.integers(0, 2),  # action
        st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, -0.0, 1.0, HUGE, -HUGE]),
        st.integers(1, 20) | st.just(MAX_VISITS),
    ),
    min_size=1,
    max_size=6,
)


def origins_from(rows_per_origin, kernel) -> list[bytes]:
    states = []
    for i, rows in enumerate(rows_per_origin):
        sync = IntelligenceSync(f"o{i:02d}", clock=FakeClock(), table_factory=kernel)
        for s, a, q, v in rows:
            sync.set_pattern(f"s{s}", f"a{a}", q, v)
        states.append(sync.serialize_state())
    return states


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(per_origin=st.lists(ORIGIN_ROWS, min_size=1, max_size=11), order=st.randoms(use_true_random=False))
def test_kernels_agree_and_merge_order_does_not_change_the_robust_read(per_origin, order):
    views = []
    for kernel in KERNELS.values():
        states = origins_from(per_origin, kernel)
        for shuffle in (False, True):
            if shuffle:
                states = states[:]
                order.shuffle(states)
            sink = IntelligenceSync("sink", clock=FakeClock(), table_factory=kernel)
            for data in [*states, *states[: len(states) // 2]]:  # re-merges change nothing
                sink.merge_peer_state("peer", data)
            views.append(
                (
                    sink.serialize_state(),
                    sink.patterns(),
                    sink.get_swarm_stats(),
                    [sink.best_action(f"s{s}", ["a0", "a1", "a2"]) for s in range(3)],
                )
            )
    assert all(view == views[0] for view in views)


def test_a_lone_explorers_action_competes_in_a_sparse_state(kernel):
    """No action reported by more than 2t origins: support within t of the best lets honest discoveries count."""
    clock = FakeClock()
    agents = [IntelligenceSync(f"a{i}", clock=clock, table_factory=kernel) for i in range(7)]  # t = 2
    for a in agents[:3]:
        a.update_pattern(STATE, SECOND, 0.4)
    agents[3].update_pattern(STATE, GOOD, 0.9)  # found by one explorer
    for a in agents[4:]:
        a.update_pattern("elsewhere", SECOND, 0.1)
    agents[4].update_pattern(STATE, "third", 0.1)
    agents[5].update_pattern(STATE, "fourth", 0.2)
    agents[6].update_pattern(STATE, "fifth", 0.3)
    gossip(agents, delta=False)
    assert agents[0].best_action(STATE, [GOOD, SECOND, "third", "fourth", "fifth"])[0] == GOOD


def test_where_the_swarm_agrees_an_action_with_at_most_t_reporters_cannot_win(kernel):
    """5 of 7 origins agree on SECOND (> 2t = 4): GOOD, reported by 2 (= t), does not compete however high."""
    clock = FakeClock()
    agents = [IntelligenceSync(f"a{i}", clock=clock, table_factory=kernel) for i in range(7)]
    for a in agents[:5]:
        a.update_pattern(STATE, SECOND, 0.4)
    for a in agents[5:]:
        a.set_pattern(STATE, EVIL, HUGE, MAX_VISITS)
    gossip(agents, delta=False)
    assert agents[0].best_action(STATE, ACTIONS)[0] == SECOND


@settings(max_examples=40, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.integers(0, 2), st.floats(-10, 10), st.integers(1, 9)),
        min_size=1,
        max_size=40,
    ),
    read_every=st.integers(1, 5),
)
def test_reads_between_merges_match_a_replica_that_computed_everything_at_once(steps, read_every):
    """The numpy kernel recomputes only the pairs a change touched; reading after every few changes must
    give what one read over the same entries gives, and what the pure kernel gives."""
    clock = FakeClock()
    origins = [IntelligenceSync(f"o{i}", clock=clock, table_factory=KERNELS["numpy"]) for i in range(6)]
    sink = IntelligenceSync("sink", clock=clock, table_factory=KERNELS["numpy"])
    for n, (o, s, a, q, v) in enumerate(steps):
        clock.advance(1)
        origins[o].set_pattern(f"s{s}", f"a{a}", q, v)
        if n % 3:
            sink.merge_peer_state(f"o{o}", origins[o].delta_for(sink.version_vector()))
        else:
            sink.set_pattern(f"s{s}", f"a{a}", -q, v)
        if n % read_every == 0:
            sink.patterns()
    views = []
    for kernel in KERNELS.values():
        fresh = IntelligenceSync("sink", clock=clock, table_factory=kernel)
        fresh.merge_peer_state("sink", sink.serialize_state())
        views.append((fresh.patterns(), fresh.get_swarm_stats(), [fresh.best_action(f"s{s}", ["a0", "a1", "a2"]) for s in range(4)]))
    mine = (sink.patterns(), sink.get_swarm_stats(), [sink.best_action(f"s{s}", ["a0", "a1", "a2"]) for s in range(4)])
    assert views[0] == views[1] == mine
