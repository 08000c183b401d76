"""Outbox: a GUN connection's replies go first and are never dropped; forwards are bounded and lossy."""

from ruvector_edge.gun.outbox import Outbox


def test_replies_go_first_forwards_are_dropped_past_their_bound_and_replies_refused_past_theirs():
    box = Outbox(reply_limit=10, forward_limit=2)
    assert [box.push_forward(f) for f in ("f1", "f2", "f3")] == [True, True, False]
    assert box.dropped == 1
    assert box.push_reply("ack1") and box.push_reply("ack2")
    assert box.reply_chars == 8
    assert not box.push_reply("ack")          # 11 characters would pass the bound: refused, nothing queued
    assert box.reply_chars == 8 and len(box) == 4
    assert [box.pop() for _ in range(5)] == ["ack1", "ack2", "f1", "f2", None]
    assert box.reply_chars == 0 and box.push_reply("0123456789")  # room again once written
    box.clear()
    assert len(box) == 0 and box.reply_chars == 0 and box.pop() is None
