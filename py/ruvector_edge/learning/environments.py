"""Small environments whose optimum is known, so learners can be checked against it.

Both gridworlds are deterministic and enumerable: `solve()` finds their
optimal values and actions by value iteration, an independent check of what
the learners are expected to find. The bandit's arms have known means, so
regret can be computed exactly (pseudo-regret, from the means, not samples).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Sequence


class Step(NamedTuple):
    next_state: str
    reward: float
    done: bool


class Environment(Protocol):
    """A deterministic episodic task: states and actions are strings."""

    start: str

    def states(self) -> tuple[str, ...]:
        """Every non-terminal state."""

    def actions(self, state: str) -> tuple[str, ...]: ...

    def step(self, state: str, action: str) -> Step: ...


@dataclass(frozen=True)
class ChainEnv:
    """A corridor c0 .. c{length-1}: `right` walks toward the goal at the far
    end (reward `goal_reward` on arrival, `step_reward` for every other
    step), `left` walks back (at c0 it bumps the wall and stays). The optimum
    is `right` everywhere, return `optimal_return`.

    With `exit_reward` set, `left` at c0 instead ends the episode with that
    small immediate reward: a trap in which a learner that stops exploring
    too early settles for the exit (the far goal is still optimal for gamma
    close enough to 1; `solve()` says for which).
    """

    length: int = 8
    goal_reward: float = 10.0
    step_reward: float = -1.0
    exit_reward: float | None = None

    ACTIONS = ("left", "right")
    EXIT = "exit"

    def __post_init__(self) -> None:
        if self.length < 2:
            raise ValueError("a chain needs at least a start and a goal")

    @property
    def start(self) -> str:
        return "c0"

    @property
    def goal(self) -> str:
        return f"c{self.length - 1}"

    @property
    def optimal_return(self) -> float:
        """Undiscounted return of the all-`right` walk from c0."""
        return (self.length - 2) * self.step_reward + self.goal_reward

    def states(self) -> tuple[str, ...]:
        return tuple(f"c{i}" for i in range(self.length - 1))

    def actions(self, state: str) -> tuple[str, ...]:
        return self.ACTIONS

    def step(self, state: str, action: str) -> Step:
        i = int(state[1:])
        if action == "right":
            if i + 1 == self.length - 1:
                return Step(self.goal, self.goal_reward, True)
            return Step(f"c{i + 1}", self.step_reward, False)
        if action == "left":
            if i > 0:
                return Step(f"c{i - 1}", self.step_reward, False)
            if self.exit_reward is None:
                return Step(state, self.step_reward, False)
            return Step(self.EXIT, self.exit_reward, True)
        raise ValueError(f"unknown action {action!r}")


@dataclass(frozen=True)
class CliffWalkEnv:
    """Sutton & Barto's cliff walking (Example 6.6): a 4x12 grid, start at the
    bottom-left, goal at the bottom-right, the cells between them are a
    cliff (-100 and back to start). Every step costs -1. The optimal path
    runs along the cliff edge in 13 steps (return -13); an epsilon-greedy
    agent that values its own exploration prefers a path further away."""

    rows: int = 4
    cols: int = 12

    ACTIONS = ("up", "down", "left", "right")
    OPTIMAL_RETURN = -13.0
    _MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}

    @property
    def start(self) -> str:
        return f"{self.rows - 1},0"

    @property
    def goal(self) -> str:
        return f"{self.rows - 1},{self.cols - 1}"

    def cell(self, state: str) -> tuple[int, int]:
        r, c = state.split(",")
        return int(r), int(c)

    def is_cliff(self, row: int, col: int) -> bool:
        return row == self.rows - 1 and 0 < col < self.cols - 1

    def is_edge(self, state: str) -> bool:
        """A cell right above the cliff: one slip away from falling."""
        r, c = self.cell(state)
        return r == self.rows - 2 and 0 < c < self.cols - 1

    def states(self) -> tuple[str, ...]:
        return tuple(
            f"{r},{c}"
            for r in range(self.rows)
            for c in range(self.cols)
            if not self.is_cliff(r, c) and f"{r},{c}" != self.goal
        )

    def actions(self, state: str) -> tuple[str, ...]:
        return self.ACTIONS

    def step(self, state: str, action: str) -> Step:
        r, c = self.cell(state)
        dr, dc = self._MOVES[action]
        r, c = min(max(r + dr, 0), self.rows - 1), min(max(c + dc, 0), self.cols - 1)
        if self.is_cliff(r, c):
            return Step(self.start, -100.0, False)
        nxt = f"{r},{c}"
        return Step(nxt, -1.0, nxt == self.goal)


def solve(env: Environment, gamma: float, tol: float = 1e-10, max_sweeps: int = 100_000) -> tuple[dict[str, float], dict[str, frozenset[str]]]:
    """Value iteration: optimal state values and, per state, the set of optimal actions."""
    values = {s: 0.0 for s in env.states()}

    def backup(s: str, a: str) -> float:
        nxt, reward, done = env.step(s, a)
        return reward if done else reward + gamma * values[nxt]

    for _ in range(max_sweeps):
        change = 0.0
        for s in values:
            best = max(backup(s, a) for a in env.actions(s))
            change = max(change, abs(best - values[s]))
            values[s] = best
        if change < tol:
            break
    policy = {}
    for s in values:
        qs = {a: backup(s, a) for a in env.actions(s)}
        top = max(qs.values())
        policy[s] = frozenset(a for a, q in qs.items() if q >= top - 1e-6)
    return values, policy


@dataclass(frozen=True)
class BernoulliBandit:
    """K arms, arm i pays 1 with probability `probs[i]`, else 0."""

    probs: tuple[float, ...] = (0.1, 0.3, 0.5, 0.6, 0.8)

    def __post_init__(self) -> None:
        if len(self.probs) < 2 or not all(0.0 <= p <= 1.0 for p in self.probs):
            raise ValueError("a bandit needs at least two arms with probabilities in [0, 1]")
        if sorted(self.probs)[-1] == sorted(self.probs)[-2]:
            raise ValueError("the best arm must be unique")

    @property
    def arms(self) -> tuple[str, ...]:
        return tuple(f"arm{i}" for i in range(len(self.probs)))

    @property
    def best_arm(self) -> str:
        return self.arms[self.probs.index(max(self.probs))]

    def gap(self, arm: str) -> float:
        return max(self.probs) - self.probs[self.arms.index(arm)]

    def pull(self, arm: str, rng: random.Random) -> float:
        return 1.0 if rng.random() < self.probs[self.arms.index(arm)] else 0.0

    def regret(self, chosen: Sequence[str]) -> float:
        """Pseudo-regret: sum of gaps of the arms played."""
        return sum(self.gap(a) for a in chosen)

    def ucb1_regret_bound(self, pulls: int) -> float:
        """Auer et al. (2002), Theorem 1: sum over worse arms of 8 ln n / gap + (1 + pi^2/3) gap."""
        gaps = [max(self.probs) - p for p in self.probs if p < max(self.probs)]
        return sum(8.0 * math.log(pulls) / g + (1.0 + math.pi**2 / 3.0) * g for g in gaps)
