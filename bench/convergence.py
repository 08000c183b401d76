"""Convergence of 8 in-process replicas under random gossip: full-state push vs delta pull.

Each agent first learns on its own share of a hidden reward table (noisy
samples of a random subset of the (state, action) grid). Then, every round,
each agent picks one random peer:

- full: it pushes its whole serialized state to the peer;
- delta: it sends the peer its version vector (REQUEST_PATTERNS, counted as
  canonical JSON) and the peer answers with `delta_for` (what the asker lacks).

Rounds continue until every replica picks the same best action in every state
(and, reported separately, until their states are byte-identical). Fixed seed;
bounded by `--max-rounds`. Prints JSON lines.

Quality of what the swarm agreed on, against the hidden table: the share of
states whose swarm best action is the truly best one among those anybody
visited, and the mean absolute error of the swarm q of every pattern. The swarm
value is read robustly (intelligence/robust.py), so these are the figures to
compare with the plain visit-weighted mean when nobody lies.
"""

from __future__ import annotations

import argparse
import json
import random

from ruvector_edge.canonical import canonicalize
from ruvector_edge.intelligence import IntelligenceSync
from ruvector_edge.platform.base import FakeClock


def learn(args: argparse.Namespace) -> tuple[list[IntelligenceSync], dict[tuple[str, str], float]]:
    rng = random.Random(args.seed)
    states = [f"state-{i:04d}" for i in range(args.states)]
    actions = [f"action-{j}" for j in range(args.actions)]
    reward = {(s, a): rng.uniform(-1, 1) for s in states for a in actions}
    agents = []
    for i in range(args.agents):
        clock = FakeClock(1_000_000 + i)
        agent = IntelligenceSync(f"agent-{i}", clock=clock)
        for s, a in rng.sample(sorted(reward), int(args.coverage * len(reward))):
            for _ in range(rng.randint(1, 5)):
                clock.advance(1)
                agent.update_pattern(s, a, reward[(s, a)] + rng.gauss(0, args.noise))
        agents.append(agent)
    return agents, reward


def quality(agent: IntelligenceSync, reward: dict[tuple[str, str], float], states: list[str], actions: list[str]) -> dict:
    patterns = agent.patterns()
    known: dict[str, set[str]] = {}
    for p in patterns:
        known.setdefault(p.state, set()).add(p.action)
    right = sum(agent.best_action(s, actions)[0] == max(known[s], key=lambda a: reward[(s, a)]) for s in known)
    return {
        "best_action_accuracy": round(right / len(known), 4),
        "q_mean_abs_error": round(sum(abs(p.q_value - reward[(p.state, p.action)]) for p in patterns) / len(patterns), 4),
    }


def run(mode: str, args: argparse.Namespace) -> dict:
    agents, reward = learn(args)
    rng = random.Random(args.seed + 1)
    states = [f"state-{i:04d}" for i in range(args.states)]
    actions = [f"action-{j}" for j in range(args.actions)]
    sent = messages = 0
    agreed_at = identical_at = None
    agreed_bytes = identical_bytes = None
    for round_no in range(1, args.max_rounds + 1):
        for i, agent in enumerate(agents):
            peer = agents[rng.choice([j for j in range(len(agents)) if j != i])]
            if mode == "full":
                data = agent.serialize_state()
                peer.merge_peer_state(agent.agent_id, data)
                sent += len(data)
                messages += 1
            else:
                request = canonicalize({"type": "REQUEST_PATTERNS", "vv": agent.version_vector()})
                data = peer.delta_for(agent.version_vector())
                agent.merge_peer_state(peer.agent_id, data)
                sent += len(request) + len(data)
                messages += 2
        if agreed_at is None:
            best = [tuple(a.best_action(s, actions) for s in states) for a in agents]
            if all(b == best[0] for b in best):
                agreed_at, agreed_bytes = round_no, sent
        if identical_at is None:
            snapshots = {a.serialize_state() for a in agents}
            if len(snapshots) == 1:
                identical_at, identical_bytes = round_no, sent
        if agreed_at and identical_at:
            break
    stats = agents[0].get_swarm_stats()
    return {
        "bench": "convergence",
        "mode": mode,
        "agents": args.agents,
        "seed": args.seed,
        "grid": f"{args.states}x{args.actions}",
        "rounds_to_same_best_actions": agreed_at,
        "bytes_to_same_best_actions": agreed_bytes,
        "rounds_to_identical_state": identical_at,
        "bytes_to_identical_state": identical_bytes,
        "messages": messages,
        "total_patterns": stats.total_patterns,
        "total_visits": stats.total_visits,
        "state_bytes": len(agents[0].serialize_state()),
        **quality(agents[0], reward, states, actions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--states", type=int, default=500)
    parser.add_argument("--actions", type=int, default=4)
    parser.add_argument("--coverage", type=float, default=0.3, help="share of the grid each agent visits")
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-rounds", type=int, default=50)
    args = parser.parse_args()
    for mode in ("full", "delta"):
        print(json.dumps(run(mode, args)), flush=True)


if __name__ == "__main__":
    main()
