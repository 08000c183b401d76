"""Drivers that run a `Learner` against an environment: training and greedy evaluation.

They fix the order of calls every learner relies on (choose the next action
before the update, so on-policy learners see the action really taken), so
tests, benchmarks and the demo all exercise the algorithms the same way.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from .base import Learner
from .environments import BernoulliBandit, Environment


class Rollout(NamedTuple):
    states: tuple[str, ...]
    actions: tuple[str, ...]
    ret: float
    done: bool


def run_episode(env: Environment, learner: Learner, rng: random.Random, max_steps: int = 1_000) -> tuple[float, int]:
    """Play and learn one episode; returns (undiscounted return, steps)."""
    state = env.start
    action = learner.select_action(state, env.actions(state), rng)
    total = 0.0
    steps = 0
    while steps < max_steps:
        nxt, reward, done = env.step(state, action)
        total += reward
        steps += 1
        if done:
            learner.update(state, action, reward, nxt, (), True)
            break
        nexts = env.actions(nxt)
        nxt_action = learner.select_action(nxt, nexts, rng)
        learner.update(state, action, reward, nxt, nexts, False, next_action=nxt_action)
        state, action = nxt, nxt_action
    learner.end_episode()
    return total, steps


def train(env: Environment, learner: Learner, rng: random.Random, episodes: int, max_steps: int = 1_000) -> list[float]:
    """Run `episodes` episodes; returns each one's undiscounted return."""
    return [run_episode(env, learner, rng, max_steps)[0] for _ in range(episodes)]


def greedy_rollout(env: Environment, learner: Learner, max_steps: int = 100) -> Rollout:
    """Follow the learner's greedy policy (no exploration, no learning)."""
    state = env.start
    states, actions, total = [state], [], 0.0
    for _ in range(max_steps):
        action, _ = learner.best_action(state, env.actions(state))
        state, reward, done = env.step(state, action)
        actions.append(action)
        states.append(state)
        total += reward
        if done:
            return Rollout(tuple(states), tuple(actions), total, True)
    return Rollout(tuple(states), tuple(actions), total, False)


def run_bandit(
    bandit: BernoulliBandit, learner: Learner, rng: random.Random, pulls: int, state: str = "bandit"
) -> list[str]:
    """Pull `pulls` times, learning from each reward; returns the arms played in order."""
    arms = bandit.arms
    chosen = []
    for _ in range(pulls):
        arm = learner.select_action(state, arms, rng)
        learner.learn(state, arm, bandit.pull(arm, rng))
        chosen.append(arm)
    return chosen
