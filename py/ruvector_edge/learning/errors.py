"""Errors raised by the learning engine.

They subclass the package-wide classes in `ruvector_edge.errors` (so a receive
path that catches `RejectedInput` also drops bad learning input) and
`ValueError` (so plain Python callers, e.g. a Pyodide UI, can catch them
without importing anything).
"""

from __future__ import annotations

from ..errors import EdgeError, MalformedMessage, RejectedInput


class InvalidLearningInput(RejectedInput, ValueError):
    """A state, action, reward or transition was refused; the learner is unchanged."""


class InvalidActionList(InvalidLearningInput):
    """An action list is empty, has duplicates, or is not a sequence of action names."""


class UnknownAction(InvalidLearningInput):
    """The action is not a valid action name, or not in the learner's fixed action set."""


class InvalidReward(InvalidLearningInput):
    """The reward is not a finite real number, or is outside the range the algorithm assumes."""


class MissingNextAction(InvalidLearningInput):
    """An on-policy algorithm needs the next action it will actually take, and none was given."""


class EpisodeTooLong(InvalidLearningInput):
    """An episodic learner's buffer hit its bound; the step was not recorded."""


class InvalidPattern(MalformedMessage, ValueError):
    """A pattern's fields are out of range or of the wrong type."""


class InvalidLearnerConfig(EdgeError, ValueError):
    """A hyper-parameter is out of range, unknown, or the algorithm name is not registered."""
