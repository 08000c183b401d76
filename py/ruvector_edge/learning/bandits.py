"""UCB1 and Thompson-sampling bandits behind the same `Learner` interface.

Each state is an independent bandit over the actions offered there, which is
what the agent API needs ("which specialist for an `edit_ts` task?"): a
contextual table with no transitions. Rewards must lie in [0, 1], the range
both algorithms' guarantees assume; anything else is `InvalidReward`.
"""

from __future__ import annotations

import math
import random
from typing import Any, ClassVar, Sequence

from .base import Learner, check_name, check_reward
from ..errors import InvalidReward


class _Bandit(Learner):
    episodic: ClassVar[bool] = False

    def _check_reward(self, reward: Any) -> float:
        r = check_reward(reward)
        if not 0.0 <= r <= 1.0:
            raise InvalidReward(f"bandit rewards must be in [0, 1], got {r!r}")
        return r

    def _pulls(self, state: str, action: str) -> int:
        return self._visits.get(state, {}).get(action, 0)


class UCB1Bandit(_Bandit):
    """UCB1 (Auer, Cesa-Bianchi & Fischer 2002): play each arm once, then the
    arm maximising mean + c*sqrt(ln t / n). Optimism in the face of
    uncertainty gives logarithmic regret with no tuning; `q()` is the sample
    mean and `rng` only breaks exact ties."""

    name: ClassVar[str] = "ucb1"

    def select_action(self, state: str, actions: Sequence[str], rng: random.Random) -> str:
        check_name("state", state)
        actions = self._check_actions(actions, allow_empty=False)
        counts = [self._pulls(state, a) for a in actions]
        for a, n in zip(actions, counts):
            if n == 0:
                return a
        log_t = math.log(sum(counts))
        c = self.config.ucb_c
        scores = [self._value(state, a) + c * math.sqrt(log_t / n) for a, n in zip(actions, counts)]
        top = max(scores)
        ties = [a for a, s in zip(actions, scores) if s == top]
        return ties[0] if len(ties) == 1 else rng.choice(ties)

    def _update(self, state, action, reward, next_state, next_actions, done, next_action) -> None:
        n = self._pulls(state, action) + 1
        old = self._value(state, action) if n > 1 else 0.0
        self._set(state, action, old + (reward - old) / n)


class ThompsonBandit(_Bandit):
    """Beta-Bernoulli Thompson sampling (Thompson 1933; Agrawal & Goyal 2012):
    sample each arm's mean from its Beta posterior and play the best sample.
    A reward r in [0, 1] adds r successes and 1 - r failures (exact for 0/1
    rewards). `q()` is the posterior mean."""

    name: ClassVar[str] = "thompson"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._successes: dict[tuple[str, str], float] = {}

    def _posterior(self, state: str, action: str) -> tuple[float, float]:
        s = self._successes.get((state, action), 0.0)
        n = self._pulls(state, action)
        return self.config.prior_alpha + s, self.config.prior_beta + (n - s)

    def _value(self, state: str, action: str) -> float:
        a, b = self._posterior(state, action)
        return a / (a + b)

    def select_action(self, state: str, actions: Sequence[str], rng: random.Random) -> str:
        check_name("state", state)
        actions = self._check_actions(actions, allow_empty=False)
        samples = [rng.betavariate(*self._posterior(state, a)) for a in actions]
        return actions[samples.index(max(samples))]

    def _update(self, state, action, reward, next_state, next_actions, done, next_action) -> None:
        key = (state, action)
        self._successes[key] = self._successes.get(key, 0.0) + reward
