"""The local swarm demo: a coordinator and three workers exchanging real signed, encrypted frames.

Every frame printed here was sealed by one agent and opened by another through
the same receive path a network frame takes; the workers learn a corridor each
and merge their patterns from such frames; the last act shows the guards
refusing a replay, a tampered frame and an outsider.
"""

from __future__ import annotations

import json
import random
from typing import Callable

from .errors import RejectedInput
from .intelligence import IntelligenceSync
from .learning import make_learner
from .learning.environments import ChainEnv
from .learning.episodes import train
from .p2p import P2PSwarm


async def run_demo(say: Callable[[str], None] = print) -> dict[str, int]:
    say("🚀 RuVector Edge Swarm Demo")
    coordinator = await P2PSwarm.create("coordinator-001", capabilities=["coordinator", "executor"])
    say(f"🔐 Swarm {coordinator.swarm_id} founded (swarm key stays with members; relays never see it)")
    say(f"✅ Coordinator created: coordinator-001  fingerprint {coordinator.identity.fingerprint}")
    workers = []
    for index in range(1, 4):
        worker = await P2PSwarm.create(f"worker-{index:03d}", coordinator.swarm_key.key, capabilities=["worker"])
        workers.append(worker)
        say(f"✅ Worker created: {worker.agent_id}  fingerprint {worker.identity.fingerprint}")
    agents = [coordinator, *workers]

    for agent in agents:
        for other in agents:
            if other is not agent:
                await agent.register_member(other.registration.to_json())
    say(f"🪪 Signed registrations exchanged: every agent verified {len(agents) - 1} peers")

    task = json.dumps({"task": "summarise", "input": "edit_ts"}).encode()
    frame = (await coordinator.publish("tasks", task)).frame
    for worker in workers:
        message = await worker.receive(frame)
        say(f"📨 {worker.agent_id} opened {len(frame)}-byte frame from {message.sender_id} on '{message.topic}': {message.payload.decode()}")

    for worker in workers:
        heartbeat = await worker.create_heartbeat(queue_depth=1)
        member = await coordinator.receive_heartbeat(heartbeat.to_json())
        say(f"💓 Heartbeat from {worker.agent_id}: seq ok, measured load {member.load:.4f}, status {coordinator.registry.status(worker.agent_id).value}")

    agree = await learn_and_sync(workers, say)

    a, b = workers[0], workers[1]
    same = await a.derive_session_key(b.agent_id) == await b.derive_session_key(a.agent_id)
    direct = await a.send_direct(b.agent_id, b"only for worker-002")
    opened = await b.receive(direct.frame)
    say(f"🔑 X25519+HKDF session key {a.agent_id}<->{b.agent_id} agrees: {same}; direct message: {opened.payload.decode()!r}")
    try:
        await workers[2].receive(direct.frame)
    except RejectedInput as exc:
        say(f"🙈 {workers[2].agent_id} cannot open it: {type(exc).__name__}")

    rejected = 0
    outsider = await P2PSwarm.create("mallory", coordinator.swarm_key.key, capabilities=["worker"])
    attempts = {
        "replayed frame": frame,
        "tampered frame": (await coordinator.publish("tasks", task)).frame.replace(b'"topic":"tasks"', b'"topic":"taskz"'),
        "unregistered sender": (await outsider.publish("tasks", b"let me in")).frame,
    }
    for label, bad in attempts.items():
        try:
            await workers[0].receive(bad)
            say(f"❌ {label} was accepted (this is a bug)")
        except RejectedInput as exc:
            rejected += 1
            say(f"🛡️  {label} rejected: {type(exc).__name__}")
    say(f"🏁 Done: {len(agents)} agents, {rejected}/{len(attempts)} attacks refused")
    return {"agents": len(agents), "rejected": rejected, "attacks": len(attempts), "workers_agree": agree}


async def learn_and_sync(workers: list[P2PSwarm], say: Callable[[str], None], episodes: int = 8) -> bool:
    """Each worker learns a corridor alone (Q-learning, a few episodes, its own seed), publishes its
    Q-table as patterns in a sealed frame, and merges the others' frames: afterwards every worker
    holds the same swarm view and they agree on the best action in every state. Returns that agreement."""
    env = ChainEnv(length=6)
    minds = {}
    for index, worker in enumerate(workers):
        learner = make_learner("q_learning", actions=env.ACTIONS, rng=random.Random(index))
        returns = train(env, learner, random.Random(100 + index), episodes, max_steps=50)
        mind = IntelligenceSync(worker.agent_id)
        for p in learner.patterns():
            mind.set_pattern(p.state, p.action, p.q_value, p.visits)
        minds[worker.agent_id] = mind
        say(f"🧠 {worker.agent_id} learned alone: {len(learner.patterns())} patterns, returns {[round(r) for r in returns]}")
    for sender in workers:
        frame = (await sender.publish("patterns", minds[sender.agent_id].serialize_state())).frame
        for receiver in workers:
            if receiver is not sender:
                message = await receiver.receive(frame)
                minds[receiver.agent_id].merge_peer_state(message.sender_id, message.payload)
    views = [[minds[w.agent_id].best_action(s, env.ACTIONS) for s in env.states()] for w in workers]
    agree = all(view == views[0] for view in views)
    best = " ".join(f"{s}→{b[0]}" for s, b in zip(env.states(), views[0]) if b)
    say(f"🔄 Patterns exchanged as sealed frames and merged: workers agree on every best action: {agree} ({best})")
    return agree
