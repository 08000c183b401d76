"""Learning engine: nine tabular RL algorithms and bandits behind one `Learner` interface.

Pure Python, no numpy, no I/O and no global randomness, so the same code runs
in CPython and in Pyodide and replays identically from the same seeds. The
distributed-sync layer exchanges `Pattern`s produced by `Learner.patterns()`.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from ..platform.base import Clock
from .algorithms import DoubleQLearning, DynaQ, ExpectedSarsa, MonteCarloControl, QLambda, QLearning, Sarsa
from .bandits import ThompsonBandit, UCB1Bandit
from .base import Learner, LearnerConfig
from ..errors import (
    EpisodeTooLong,
    InvalidActionList,
    InvalidLearnerConfig,
    InvalidLearningInput,
    InvalidPattern,
    InvalidReward,
    MissingNextAction,
    UnknownAction,
)
from .pattern import Pattern, confidence_for

ALGORITHMS: dict[str, type[Learner]] = {
    cls.name: cls
    for cls in (
        QLearning,
        Sarsa,
        ExpectedSarsa,
        DoubleQLearning,
        QLambda,
        MonteCarloControl,
        DynaQ,
        UCB1Bandit,
        ThompsonBandit,
    )
}


def make_learner(
    name: str,
    *,
    actions: Sequence[str] | None = None,
    rng: random.Random | None = None,
    clock: Clock | None = None,
    **config: Any,
) -> Learner:
    """Build a registered learner by name, hyper-parameters as keywords (`lambda` or `lam`)."""
    cls = ALGORITHMS.get(name)
    if cls is None:
        raise InvalidLearnerConfig(f"unknown algorithm {name!r}; known: {sorted(ALGORITHMS)}")
    return cls(LearnerConfig.from_kwargs(**config), actions=actions, rng=rng, clock=clock)


__all__ = [
    "ALGORITHMS",
    "DoubleQLearning",
    "DynaQ",
    "EpisodeTooLong",
    "ExpectedSarsa",
    "InvalidActionList",
    "InvalidLearnerConfig",
    "InvalidLearningInput",
    "InvalidPattern",
    "InvalidReward",
    "Learner",
    "LearnerConfig",
    "MissingNextAction",
    "MonteCarloControl",
    "Pattern",
    "QLambda",
    "QLearning",
    "Sarsa",
    "ThompsonBandit",
    "UCB1Bandit",
    "UnknownAction",
    "confidence_for",
    "make_learner",
]
