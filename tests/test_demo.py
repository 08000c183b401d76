"""edge-demo's acts, in process: the workers' separately learned patterns, merged from sealed frames, agree."""

import pytest

from ruvector_edge.demo import learn_and_sync, run_demo
from ruvector_edge.errors import UnknownSender
from ruvector_edge.p2p import P2PSwarm


async def test_demo_workers_learn_alone_and_agree_after_merging_sealed_pattern_frames():
    lines: list[str] = []
    summary = await run_demo(lines.append)
    assert summary == {"agents": 4, "rejected": 3, "attacks": 3, "workers_agree": True}
    learned = [line for line in lines if "learned alone" in line]
    assert len(learned) == 3
    assert any("c0→right" in line and "agree on every best action: True" in line for line in lines)


async def test_pattern_frames_from_an_outsider_are_refused_before_any_merge():
    a = await P2PSwarm.create("w-a", bytes(32), capabilities=["worker"])
    b = await P2PSwarm.create("w-b", bytes(32), capabilities=["worker"])
    # b never registered a: a's pattern frame is refused at receive, so nothing can be merged
    await a.register_member(b.registration.to_json())
    with pytest.raises(UnknownSender):
        await learn_and_sync([a, b], lambda _: None, episodes=1)
