"""ReplayGuard on its own: the sliding counter window, the nonce cache and the time window."""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvector_edge.errors import FutureTimestamp, ReplayDetected, StaleTimestamp

from ruvector_edge.p2p import ReplayGuard

NOW = 1_800_000_000_000


def nonce(i: int) -> str:
    return f"{i:032x}"


def guard(**kw) -> ReplayGuard:
    return ReplayGuard(**{"window": 8, "past_ms": 10_000, "future_ms": 1_000, **kw})


def frozen(g: ReplayGuard):
    return copy.deepcopy((g._senders, g._nonces, g._expiry, g.evicted_nonces))


def test_first_message_accepted_and_recorded():
    g = guard()
    assert g.highest_counter("a") is None
    g.record("a", 100, nonce(1), NOW, NOW)
    assert g.highest_counter("a") == 100 and g.nonce_count() == 1


def test_check_never_changes_state():
    g = guard()
    g.record("a", 10, nonce(1), NOW, NOW)
    before = frozen(g)
    g.check("a", 11, nonce(2), NOW, NOW)
    g.check("b", 0, nonce(3), NOW, NOW)
    assert frozen(g) == before


@pytest.mark.parametrize(
    "counter, nonce_id, ts, error",
    [
        (10, 2, NOW, ReplayDetected),  # same counter
        (11, 1, NOW, ReplayDetected),  # same nonce
        (2, 2, NOW, ReplayDetected),  # 8 behind: outside window
        (11, 2, NOW - 10_001, StaleTimestamp),
        (11, 2, NOW + 1_001, FutureTimestamp),
    ],
)
def test_rejections_change_nothing(counter, nonce_id, ts, error):
    g = guard()
    g.record("a", 10, nonce(1), NOW, NOW)
    before = frozen(g)
    with pytest.raises(error):
        g.record("a", counter, nonce(nonce_id), ts, NOW)
    with pytest.raises(error):
        g.check("a", counter, nonce(nonce_id), ts, NOW)
    assert frozen(g) == before


def test_window_edges():
    g = guard(window=8)
    g.record("a", 100, nonce(0), NOW, NOW)
    g.record("a", 93, nonce(1), NOW, NOW)  # 7 behind: last slot
    with pytest.raises(ReplayDetected):
        g.record("a", 92, nonce(2), NOW, NOW)  # 8 behind
    with pytest.raises(ReplayDetected):
        g.record("a", 93, nonce(3), NOW, NOW)  # already seen
    assert g.highest_counter("a") == 100


def test_big_jump_forgets_old_bits_but_keeps_order():
    g = guard(window=8)
    g.record("a", 1, nonce(0), NOW, NOW)
    g.record("a", 1_000, nonce(1), NOW, NOW)
    g.record("a", 999, nonce(2), NOW, NOW)
    with pytest.raises(ReplayDetected):
        g.record("a", 1_000, nonce(3), NOW, NOW)
    with pytest.raises(ReplayDetected):
        g.record("a", 2, nonce(4), NOW, NOW)


def test_counter_zero_accepted_once():
    g = guard()
    g.record("a", 0, nonce(0), NOW, NOW)
    with pytest.raises(ReplayDetected):
        g.record("a", 0, nonce(1), NOW, NOW)


def test_senders_are_independent():
    g = guard()
    g.record("a", 5, nonce(1), NOW, NOW)
    g.record("b", 5, nonce(1), NOW, NOW)  # same counter and nonce, other sender
    assert g.nonce_count() == 2


def test_time_window_edges():
    g = guard()
    g.check_time(NOW - 10_000, NOW)
    g.check_time(NOW + 1_000, NOW)
    with pytest.raises(StaleTimestamp):
        g.check_time(NOW - 10_001, NOW)
    with pytest.raises(FutureTimestamp):
        g.check_time(NOW + 1_001, NOW)


def test_nonce_cache_bounded_by_time_window():
    g = guard(window=10_000)
    for i in range(100):
        g.record("a", i, nonce(i), NOW, NOW)
    assert g.nonce_count() == 100
    later = NOW + 10_001
    g.record("a", 100, nonce(100), later, later)
    assert g.nonce_count() == 1  # everything older than the window is gone
    # a forgotten nonce still cannot be replayed: its timestamp is stale now
    with pytest.raises(StaleTimestamp):
        g.record("a", 5_000, nonce(3), NOW, later)


def test_nonce_cache_bounded_by_size():
    g = guard(window=10_000, max_nonces=10)
    for i in range(25):
        g.record("a", i, nonce(i), NOW + i, NOW + i)
    assert g.nonce_count() == 10 and g.evicted_nonces == 15


def test_forget_sender():
    g = guard()
    g.record("a", 5, nonce(1), NOW, NOW)
    g.forget_sender("a")
    assert g.highest_counter("a") is None


@settings(max_examples=200, deadline=None)
@given(
    window=st.integers(1, 70),
    ops=st.lists(st.integers(0, 150), min_size=1, max_size=80),
)
def test_window_matches_reference_model(window, ops):
    """Against a set-based model: accept iff not seen and within `window` of the highest seen."""
    g = guard(window=window)
    seen: set[int] = set()
    top = -1
    for i, counter in enumerate(ops):
        expect_ok = counter not in seen and (counter > top or top - counter < window)
        before = frozen(g)
        try:
            g.record("a", counter, nonce(i), NOW, NOW)
            ok = True
        except ReplayDetected:
            ok = False
            assert frozen(g) == before
        assert ok == expect_ok, (counter, top, sorted(seen))
        if ok:
            seen.add(counter)
            top = max(top, counter)
        assert g.highest_counter("a") == (None if top < 0 else top)


def test_random_permutation_within_window_all_accepted():
    rng = random.Random(7)
    counters = list(range(64))
    rng.shuffle(counters)
    g = guard(window=64)
    for i, c in enumerate(counters):
        g.record("a", c, nonce(i), NOW, NOW)
    assert g.highest_counter("a") == 63
