"""The seven tabular control algorithms (the two bandits live in `bandits.py`).

Each one only says how a validated transition changes its tables; validation,
visits, patterns and the epsilon-greedy behaviour policy come from `Learner`.
References are to Sutton & Barto, *Reinforcement Learning: An Introduction*
(2nd ed.), whose cliff-walking example the tests reproduce.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

from .base import Learner
from ..errors import EpisodeTooLong


class QLearning(Learner):
    """Off-policy TD control (S&B 6.5): bootstraps from the best next action,
    so it learns the optimal policy even while exploring (on the cliff: the
    edge path, which an exploring agent sometimes falls off)."""

    name: ClassVar[str] = "q_learning"

    def _update(self, state, action, reward, next_state, next_actions, done, next_action) -> None:
        target = reward if done else reward + self.config.gamma * self._max_value(next_state, next_actions)
        old = self._value(state, action)
        self._set(state, action, old + self.config.alpha * (target - old))


class Sarsa(Learner):
    """On-policy TD control (S&B 6.4): bootstraps from the action actually taken
    next, so it values the exploring policy it follows (on the cliff: the safe
    path away from the edge)."""

    name: ClassVar[str] = "sarsa"
    needs_next_action: ClassVar[bool] = True

    def _update(self, state, action, reward, next_state, next_actions, done, next_action) -> None:
        target = reward if done else reward + self.config.gamma * self._value(next_state, next_action)
        old = self._value(state, action)
        self._set(state, action, old + self.config.alpha * (target - old))


class ExpectedSarsa(Learner):
    """SARSA with the expectation over the epsilon-greedy policy instead of one
    sampled next action (S&B 6.6): same fixed point, less variance."""

    name: ClassVar[str] = "expected_sarsa"

    def _expected(self, state: str, actions: Sequence[str]) -> float:
        values = [self._value(state, a) for a in actions]
        top = max(values)
        greedy = sum(1 for v in values if v == top)
        eps = self._epsilon
        explore = eps / len(values)
        exploit = (1.0 - eps) / greedy
        return sum(v * (explore + (exploit if v == top else 0.0)) for v in values)

    def _update(self, state, action, reward, next_state, next_actions, done, next_action) -> None:
        target = reward if done else reward + self.config.gamma * self._expected(next_state, next_actions)
        old = self._value(state, action)
        self._set(state, action, old + self.config.alpha * (target - old))


class DoubleQLearning(Learner):
    """Two tables, each evaluated with the other's argmax (van Hasselt 2010,
    S&B 6.7), removing Q-learning's maximisation bias. The acting value
    `q()` is the mean of both tables; the coin deciding which table learns
    comes from the learner's own `rng`."""

    name: ClassVar[str] = "double_q_learning"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tables: tuple[dict[tuple[str, str], float], dict[tuple[str, str], float]] = ({}, {})

    def _update(self, state, action, reward, next_state, next_actions, done, next_action) -> None:
        which = 0 if self._rng.random() < 0.5 else 1
        learn, other = self._tables[which], self._tables[1 - which]
        q0 = self.config.initial_q
        if done:
            target = reward
        else:
            best = max(next_actions, key=lambda a: learn.get((next_state, a), q0))
            target = reward + self.config.gamma * other.get((next_state, best), q0)
        key = (state, action)
        old = learn.get(key, q0)
        learn[key] = old + self.config.alpha * (target - old)
        self._set(state, action, 0.5 * (self._tables[0].get(key, q0) + self._tables[1].get(key, q0)))


class QLambda(Learner):
    """Watkins' Q(lambda) with replacing eligibility traces (S&B 12.10): one
    TD error updates every recently visited pair, so a reward at the end of a
    corridor reaches its start in one episode. Traces are cut after an
    exploratory (non-greedy) next action, which keeps it off-policy."""

    name: ClassVar[str] = "q_lambda"
    needs_next_action: ClassVar[bool] = True
    _TRACE_FLOOR: ClassVar[float] = 1e-6

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._traces: dict[tuple[str, str], float] = {}

    def _update(self, state, action, reward, next_state, next_actions, done, next_action) -> None:
        gamma = self.config.gamma
        if done:
            target, keep = reward, False
        else:
            best = self._max_value(next_state, next_actions)
            target = reward + gamma * best
            keep = self._value(next_state, next_action) == best
        delta = target - self._value(state, action)
        traces = self._traces
        for other in list(traces):
            if other[0] == state and other[1] != action:
                del traces[other]
        traces[(state, action)] = 1.0
        step = self.config.alpha * delta
        for (s, a), e in traces.items():
            self._set(s, a, self._value(s, a) + step * e)
        if not keep:
            traces.clear()
            return
        decay = gamma * self.config.lam
        floor = self._TRACE_FLOOR
        self._traces = {k: e * decay for k, e in traces.items() if e * decay >= floor}

    def _learn(self, state: str, action: str, reward: float) -> None:
        """A one-step update that leaves the current episode's traces alone."""
        old = self._value(state, action)
        self._set(state, action, old + self.config.alpha * (reward - old))

    def end_episode(self) -> None:
        self._traces.clear()
        super().end_episode()


class MonteCarloControl(Learner):
    """First-visit, epsilon-soft on-policy Monte Carlo control (S&B 5.4): no
    bootstrapping, Q is the sample mean of complete returns. Steps are buffered
    until a terminal `update` or `end_episode()` (a truncated episode is
    treated as ending there)."""

    name: ClassVar[str] = "monte_carlo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._episode: list[tuple[str, str, float]] = []
        self._returns: dict[tuple[str, str], int] = {}

    def _check_transition(self, state, action, reward, next_state, next_actions, done, next_action):
        checked = super()._check_transition(state, action, reward, next_state, next_actions, done, next_action)
        if len(self._episode) >= self.config.max_episode_steps:
            raise EpisodeTooLong(f"episode buffer holds {len(self._episode)} steps; call end_episode()")
        return checked

    def _update(self, state, action, reward, next_state, next_actions, done, next_action) -> None:
        self._episode.append((state, action, reward))
        if done:
            self._flush()

    def _learn(self, state: str, action: str, reward: float) -> None:
        """A one-step episode of its own, kept apart from the one in progress."""
        self._average(state, action, reward)

    def _average(self, state: str, action: str, ret: float) -> None:
        n = self._returns.get((state, action), 0) + 1
        self._returns[(state, action)] = n
        old = self._value(state, action)
        self._set(state, action, old + (ret - old) / n)

    def _flush(self) -> None:
        episode, self._episode = self._episode, []
        first: dict[tuple[str, str], int] = {}
        for t, (s, a, _) in enumerate(episode):
            first.setdefault((s, a), t)
        ret = 0.0
        gamma = self.config.gamma
        for t in range(len(episode) - 1, -1, -1):
            s, a, r = episode[t]
            ret = gamma * ret + r
            if first[(s, a)] == t:
                self._average(s, a, ret)

    def end_episode(self) -> None:
        if self._episode:
            self._flush()
        super().end_episode()


class DynaQ(Learner):
    """Dyna-Q (S&B 8.2): Q-learning plus a learned deterministic model that is
    replayed `planning_steps` times per real step, trading computation for
    real experience. Planning samples come from the learner's own `rng`;
    planning updates do not count as visits."""

    name: ClassVar[str] = "dyna_q"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model: dict[tuple[str, str], tuple[float, str | None, tuple[str, ...], bool]] = {}
        self._seen: list[tuple[str, str]] = []

    def _backup(self, state, action, reward, next_state, next_actions, done) -> None:
        target = reward if done else reward + self.config.gamma * self._max_value(next_state, next_actions)
        old = self._value(state, action)
        self._set(state, action, old + self.config.alpha * (target - old))

    def _update(self, state, action, reward, next_state, next_actions, done, next_action) -> None:
        self._backup(state, action, reward, next_state, next_actions, done)
        key = (state, action)
        if key not in self._model:
            self._seen.append(key)
        self._model[key] = (reward, next_state, next_actions, done)
        seen, model, rng = self._seen, self._model, self._rng
        for _ in range(self.config.planning_steps):
            s, a = seen[rng.randrange(len(seen))]
            r, s2, nexts, d = model[(s, a)]
            self._backup(s, a, r, s2, nexts, d)
