"""Learning-engine throughput: real updates per second for each of the nine algorithms.

Prints one JSON line per algorithm. Tabular learners train on cliff walking
(Q-learning's and SARSA's test environment), bandits pull a 5-arm Bernoulli
bandit. The same file runs under Pyodide (pure Python, no numpy), so the two
runtimes can be compared side by side. Each line also says what was learned
(the greedy return beside the optimal -13, which only the off-policy
learners are expected to reach; the bandit's regret and whether the best arm
was found), so a fast but broken learner does not look good.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time

from ruvector_edge.learning import ALGORITHMS, make_learner
from ruvector_edge.learning.environments import BernoulliBandit, CliffWalkEnv
from ruvector_edge.learning.episodes import greedy_rollout, run_bandit, run_episode

CLIFF = dict(alpha=0.2, gamma=1.0, epsilon=0.1)
BANDITS = {"ucb1", "thompson"}


def bench(name: str, episodes: int, pulls: int, seed: int) -> dict:
    rng = random.Random(seed)
    start = time.perf_counter()
    if name in BANDITS:
        bandit = BernoulliBandit()
        learner = make_learner(name)
        chosen = run_bandit(bandit, learner, rng, pulls)
        steps = pulls
        found = learner.best_action("bandit", bandit.arms)[0] == bandit.best_arm
        extra = {"regret": round(bandit.regret(chosen), 1), "best_arm_found": found}
    else:
        env = CliffWalkEnv()
        learner = make_learner(name, rng=random.Random(seed + 1), **CLIFF)
        steps = sum(run_episode(env, learner, rng, 10_000)[1] for _ in range(episodes))
        rollout = greedy_rollout(env, learner)
        extra = {"greedy_return": rollout.ret if rollout.done else None, "optimal_return": env.OPTIMAL_RETURN}
    seconds = time.perf_counter() - start
    return {
        "bench": "learning_updates",
        "algorithm": name,
        "runtime": platform.python_implementation() + " " + platform.python_version(),
        "updates": steps,
        "seconds": round(seconds, 4),
        "updates_per_s": round(steps / seconds),
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300, help="cliff-walking episodes per tabular learner")
    parser.add_argument("--pulls", type=int, default=20_000, help="bandit pulls")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=sorted(ALGORITHMS), action="append", help="run only these algorithms")
    args = parser.parse_args()
    for name in args.only or ALGORITHMS:
        print(json.dumps(bench(name, args.episodes, args.pulls, args.seed)), flush=True)


if __name__ == "__main__":
    main()
