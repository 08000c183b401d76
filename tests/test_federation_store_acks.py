"""StoreAcks: a relay learns from its position feed which of its frames the stream stored (issue 16)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvector_edge.relay.federation.store_acks import StoreAcks


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(timeout_s: float = 3.0, max_attempts: int = 5, max_tracked: int = 1000) -> tuple[StoreAcks[str], Clock]:
    clock = Clock()
    acks: StoreAcks[str] = StoreAcks(timeout_s, max_attempts, max_tracked, clock)
    acks.follow("S")
    return acks, clock


def test_frames_reported_in_order_are_never_published_again():
    acks, clock = make()
    for k in range(5):
        acks.published("S", f"m{k}", f"frame{k}", 1)
    assert all(acks.stored("S", f"m{k}") == [] for k in range(5))
    clock.now += 60
    assert acks.due() == [] and acks.unstored == 0


def test_a_frame_published_before_a_stored_one_and_not_reported_goes_again_at_once():
    acks, _ = make()
    for k in range(4):
        acks.published("S", f"m{k}", f"frame{k}", 1)
    assert acks.stored("S", "m0") == []
    assert acks.stored("S", "m2") == [("frame1", 2)]  # m1 went before m2 and the stream skipped it
    acks.published("S", "m1", "frame1", 2)  # now after m3 in publish order
    assert acks.stored("S", "m3") == []  # so m3's report says nothing about it
    assert acks.stored("S", "m1") == []
    assert acks.stored("S", "m2") == []  # a report of something no longer tracked changes nothing


def test_a_silent_stream_gets_its_overdue_frames_again_and_a_progressing_one_does_not():
    acks, clock = make(timeout_s=3.0)
    acks.published("S", "a", "A", 1)
    acks.published("S", "b", "B", 1)
    clock.now += 2.9
    assert acks.due() == []
    clock.now += 0.2
    assert acks.due() == [("A", 2), ("B", 2)]  # nothing of ours reported for 3 s: the stream is not storing
    acks.published("S", "a", "A", 2)
    acks.published("S", "b", "B", 2)
    acks.published("S", "c", "C", 1)
    clock.now += 3.1
    assert acks.stored("S", "a") == []  # a lagging feed still reporting ours: overdue frames wait for it
    assert acks.due() == []


def test_reports_of_other_relays_frames_and_unfollowed_streams_are_ignored():
    acks, clock = make()
    acks.published("S", "mine", "M", 1)
    assert acks.stored("S", "theirs") == [] and acks.stored("S", None) == []
    acks.published("T", "x", "X", 1)  # no feed for T: not tracked
    clock.now += 10
    assert acks.due() == [("M", 2)]
    assert acks.stored("T", "x") == []


def test_attempts_are_bounded_and_given_up_frames_counted():
    acks, clock = make(max_attempts=2)
    acks.published("S", "a", "A", 1)
    clock.now += 4
    assert acks.due() == [("A", 2)]
    acks.published("S", "a", "A", 2)
    clock.now += 4
    assert acks.due() == [] and acks.unstored == 1


def test_tracking_is_bounded():
    acks, _ = make(max_tracked=3)
    for k in range(5):
        acks.published("S", f"m{k}", k, 1)
    assert acks.untracked == 2 and acks.unstored == 0
    assert acks.stored("S", "m4") == [(2, 2), (3, 2)]  # m0 and m1 are no longer tracked


def test_forget_drops_a_stream():
    acks, clock = make()
    acks.published("S", "a", "A", 1)
    acks.forget("S")
    clock.now += 10
    assert acks.due() == [] and acks.stored("S", "a") == []


def test_bad_bounds_are_refused():
    for args in ((0, 1, 1), (1, 0, 1), (1, 1, 0)):
        with pytest.raises(ValueError):
            StoreAcks(*args, monotonic=lambda: 0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=40))
def test_exactly_the_skipped_frames_before_the_last_stored_one_go_again(stored_flags):
    """The stream stores a subset of the frames in publish order; the feed reports those in order."""
    acks, _ = make(max_attempts=10)
    for k in range(len(stored_flags)):
        acks.published("S", f"m{k}", k, 1)
    again = []
    for k, stored in enumerate(stored_flags):
        if stored:
            again += acks.stored("S", f"m{k}")
    last = max((k for k, stored in enumerate(stored_flags) if stored), default=-1)
    assert again == [(k, 2) for k in range(last) if not stored_flags[k]]
