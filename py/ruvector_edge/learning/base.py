"""The `Learner` interface shared by all nine algorithms, and their hyper-parameters.

Every public method validates its whole input before touching any table, so a
bad state, action or reward raises a typed error (see `errors.py`) and leaves
the learner exactly as it was. Randomness is never global: `select_action`
takes the caller's `random.Random`, and the few algorithms that also need
randomness inside `update` (Double Q-learning's coin, Dyna-Q's planning
samples) own a `random.Random` given at construction. Same seeds, same tables.
"""

from __future__ import annotations

import abc
import math
import random
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Sequence

from ..platform.base import Clock
from ..errors import (
    InvalidActionList,
    InvalidLearnerConfig,
    InvalidLearningInput,
    InvalidReward,
    MissingNextAction,
    UnknownAction,
)
from .pattern import Pattern, confidence_for


@dataclass(frozen=True)
class LearnerConfig:
    """Hyper-parameters; each algorithm reads only the ones it needs.

    alpha: step size. gamma: discount. epsilon: exploration rate of the
    epsilon-greedy behaviour policy, multiplied by `epsilon_decay` at each
    `end_episode()` and never below `epsilon_min`. lam: trace decay of Q(lambda).
    planning_steps: Dyna-Q model updates per real step. initial_q: value of an
    unseen pair (optimistic values make greedy learners explore). ucb_c: UCB1
    exploration coefficient (sqrt(2) is the textbook UCB1). prior_alpha,
    prior_beta: Thompson sampling's Beta prior. max_episode_steps: bound on
    the Monte Carlo episode buffer.
    """

    alpha: float = 0.1
    gamma: float = 0.95
    epsilon: float = 0.1
    epsilon_decay: float = 1.0
    epsilon_min: float = 0.0
    lam: float = 0.9
    planning_steps: int = 10
    initial_q: float = 0.0
    ucb_c: float = math.sqrt(2.0)
    prior_alpha: float = 1.0
    prior_beta: float = 1.0
    max_episode_steps: int = 100_000

    def __post_init__(self) -> None:
        def number(name: str, lo: float, hi: float, lo_open: bool = False) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidLearnerConfig(f"{name} must be a finite number, got {v!r}")
            if v > hi or v < lo or (lo_open and v == lo):
                raise InvalidLearnerConfig(f"{name} must be in {'(' if lo_open else '['}{lo}, {hi}], got {v!r}")

        def count(name: str, lo: int, hi: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise InvalidLearnerConfig(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")

        number("alpha", 0.0, 1.0, lo_open=True)
        number("gamma", 0.0, 1.0)
        number("epsilon", 0.0, 1.0)
        number("epsilon_decay", 0.0, 1.0, lo_open=True)
        number("epsilon_min", 0.0, self.epsilon if isinstance(self.epsilon, (int, float)) else 1.0)
        number("lam", 0.0, 1.0)
        count("planning_steps", 0, 10_000)
        number("initial_q", -1e12, 1e12)
        number("ucb_c", 0.0, 1e6)
        number("prior_alpha", 0.0, 1e12, lo_open=True)
        number("prior_beta", 0.0, 1e12, lo_open=True)
        count("max_episode_steps", 1, 10_000_000)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> "LearnerConfig":
        """Build from keyword arguments; `lambda` is accepted as an alias of `lam`."""
        if "lambda" in kwargs:
            if "lam" in kwargs:
                raise InvalidLearnerConfig("give either lambda or lam, not both")
            kwargs["lam"] = kwargs.pop("lambda")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InvalidLearnerConfig(f"unknown hyper-parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**kwargs)


def check_name(kind: str, value: Any) -> None:
    if not isinstance(value, str) or not value:
        if kind == "action":
            raise UnknownAction(f"an action must be a non-empty string, got {value!r}")
        raise InvalidLearningInput(f"a {kind} must be a non-empty string, got {value!r}")


def check_reward(reward: Any) -> float:
    if isinstance(reward, bool) or not isinstance(reward, (int, float)):
        raise InvalidReward(f"reward must be a real number, got {type(reward).__name__}")
    if not math.isfinite(reward):
        raise InvalidReward(f"reward must be finite, got {reward!r}")
    return float(reward)


class Learner(abc.ABC):
    """One interface over tabular RL algorithms and bandits.

    Episodic loop (see `episodes.run_episode`): pick `a = select_action(s, A,
    rng)`, step the environment, pick the next action `a2` *before* calling
    `update(s, a, r, s2, A2, done, next_action=a2)`, and call `end_episode()`
    at the end. On-policy algorithms (SARSA, Watkins' Q(lambda)) need
    `next_action`; the others ignore it. `learn(s, a, r)` is the one-step,
    bandit-style update the agent API uses when there is no next state.
    """

    name: ClassVar[str]
    #: whether `update` needs `next_action` when the transition is not terminal
    needs_next_action: ClassVar[bool] = False
    #: bandits ignore next states; episodic learners validate them
    episodic: ClassVar[bool] = True

    def __init__(
        self,
        config: LearnerConfig | None = None,
        *,
        actions: Sequence[str] | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`actions` fixes the action set (anything else is `UnknownAction`);
        `rng` drives randomness inside `update` (default `Random(0)`, so still
        deterministic); `clock` (the runtime's `Clock` provider) stamps
        `Pattern.last_update` in milliseconds; without one the stamp is the
        learner's own update counter, which keeps replays free of wall time."""
        self.config = config or LearnerConfig()
        self._fixed_actions: frozenset[str] | None = None
        if actions is not None:
            self._fixed_actions = frozenset(self._check_actions(actions, allow_empty=False))
        self._rng = rng if rng is not None else random.Random(0)
        self._clock = clock
        self._epsilon = float(self.config.epsilon)
        self._q: dict[str, dict[str, float]] = {}
        self._visits: dict[str, dict[str, int]] = {}
        self._stamp: dict[str, dict[str, int]] = {}
        self._ticks = 0

    # ---- validation -----------------------------------------------------

    def _check_action(self, action: Any) -> None:
        check_name("action", action)
        if self._fixed_actions is not None and action not in self._fixed_actions:
            raise UnknownAction(f"action {action!r} is not one of this learner's actions")

    def _check_actions(self, actions: Any, allow_empty: bool) -> tuple[str, ...]:
        if isinstance(actions, (str, bytes)) or not isinstance(actions, Sequence):
            raise InvalidActionList(f"actions must be a sequence of action names, got {type(actions).__name__}")
        actions = tuple(actions)
        if not actions and not allow_empty:
            raise InvalidActionList("the action list is empty")
        for a in actions:
            self._check_action(a)
        if len(set(actions)) != len(actions):
            raise InvalidActionList("the action list has duplicates")
        return actions

    def _check_transition(
        self, state: Any, action: Any, reward: Any, next_state: Any, next_actions: Any, done: Any, next_action: Any
    ) -> tuple[float, tuple[str, ...]]:
        check_name("state", state)
        self._check_action(action)
        r = self._check_reward(reward)
        if not isinstance(done, bool):
            raise InvalidLearningInput(f"done must be a bool, got {done!r}")
        if not self.episodic:
            return r, ()
        if done:
            if next_state is not None:
                check_name("state", next_state)
            nexts = self._check_actions(next_actions if next_actions is not None else (), allow_empty=True)
            return r, nexts
        check_name("state", next_state)
        nexts = self._check_actions(next_actions, allow_empty=False)
        if next_action is not None:
            self._check_action(next_action)
            if next_action not in nexts:
                raise UnknownAction(f"next_action {next_action!r} is not among next_actions")
        elif self.needs_next_action:
            raise MissingNextAction(f"{self.name} is on-policy: pass next_action for a non-terminal transition")
        return r, nexts

    def _check_reward(self, reward: Any) -> float:
        return check_reward(reward)

    # ---- public interface -----------------------------------------------

    @property
    def epsilon(self) -> float:
        """The current exploration rate (after decay)."""
        return self._epsilon

    def select_action(self, state: str, actions: Sequence[str], rng: random.Random) -> str:
        """Behaviour policy: epsilon-greedy over `q`, ties broken at random by `rng`."""
        check_name("state", state)
        actions = self._check_actions(actions, allow_empty=False)
        if self._epsilon > 0.0 and rng.random() < self._epsilon:
            return rng.choice(actions)
        return self._greedy(state, actions, rng)

    def update(
        self,
        state: str,
        action: str,
        reward: float,
        next_state: str | None,
        next_actions: Sequence[str],
        done: bool,
        *,
        next_action: str | None = None,
    ) -> None:
        """Learn from one real transition (s, a, r, s', A', done)."""
        r, nexts = self._check_transition(state, action, reward, next_state, next_actions, done, next_action)
        stamp = self._now()
        self._update(state, action, r, next_state, nexts, done, next_action)
        self._touch(state, action, stamp)

    def learn(self, state: str, action: str, reward: float) -> None:
        """One-step update with no next state: the agent API's `learn(state, action, reward)`."""
        check_name("state", state)
        self._check_action(action)
        r = self._check_reward(reward)
        stamp = self._now()
        self._learn(state, action, r)
        self._touch(state, action, stamp)

    def end_episode(self) -> None:
        """Close an episode: decay epsilon (and flush traces/buffers where the algorithm has them)."""
        self._epsilon = max(self.config.epsilon_min, self._epsilon * self.config.epsilon_decay)

    def q(self, state: str, action: str) -> float:
        check_name("state", state)
        self._check_action(action)
        return self._value(state, action)

    def visits(self, state: str, action: str) -> int:
        check_name("state", state)
        self._check_action(action)
        return self._visits.get(state, {}).get(action, 0)

    def best_action(self, state: str, actions: Sequence[str]) -> tuple[str, float]:
        """The greedy action (first listed wins a tie) and its confidence from visits."""
        check_name("state", state)
        actions = self._check_actions(actions, allow_empty=False)
        best = self._greedy(state, actions, None)
        return best, confidence_for(self._visits.get(state, {}).get(best, 0))

    def patterns(self) -> list[Pattern]:
        """Every pair updated at least once, sorted by (state, action)."""
        out = []
        for state in sorted(self._visits):
            row = self._visits[state]
            stamps = self._stamp[state]
            for action in sorted(row):
                out.append(Pattern.of(state, action, self._value(state, action), row[action], stamps[action]))
        return out

    # ---- for subclasses -------------------------------------------------

    @abc.abstractmethod
    def _update(
        self,
        state: str,
        action: str,
        reward: float,
        next_state: str | None,
        next_actions: tuple[str, ...],
        done: bool,
        next_action: str | None,
    ) -> None:
        """Apply a validated transition to the tables."""

    def _learn(self, state: str, action: str, reward: float) -> None:
        self._update(state, action, reward, None, (), True, None)

    def _value(self, state: str, action: str) -> float:
        row = self._q.get(state)
        if row is None:
            return self.config.initial_q
        return row.get(action, self.config.initial_q)

    def _set(self, state: str, action: str, value: float) -> None:
        row = self._q.get(state)
        if row is None:
            row = self._q[state] = {}
        row[action] = value

    def _max_value(self, state: str, actions: Sequence[str]) -> float:
        return max(self._value(state, a) for a in actions)

    def _greedy(self, state: str, actions: Sequence[str], rng: random.Random | None) -> str:
        values = [self._value(state, a) for a in actions]
        top = max(values)
        if rng is None:
            return actions[values.index(top)]
        ties = [a for a, v in zip(actions, values) if v == top]
        return ties[0] if len(ties) == 1 else rng.choice(ties)

    def _now(self) -> int:
        """Read the clock before any table changes, so a failing clock leaves no half-update."""
        if self._clock is None:
            return self._ticks + 1
        stamp = self._clock.now_ms()
        if isinstance(stamp, bool) or not isinstance(stamp, int) or stamp < 0:
            raise InvalidLearnerConfig(f"the learner's clock must return a non-negative int, got {stamp!r}")
        return stamp

    def _touch(self, state: str, action: str, stamp: int) -> None:
        self._ticks += 1
        self._visits.setdefault(state, {})[action] = self._visits.get(state, {}).get(action, 0) + 1
        self._stamp.setdefault(state, {})[action] = stamp
