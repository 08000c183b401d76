"""`Pattern`: one learned (state, action) value as the rest of the swarm sees it.

It is the unit the distributed-sync layer exchanges and merges, so it is a
frozen, validated value object and carries the evidence behind the value
(`visits`) as well as the value itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidPattern

_KEYS = frozenset({"state", "action", "q_value", "visits", "last_update", "confidence"})


def confidence_for(visits: int) -> float:
    """Confidence from evidence: visits / (visits + 1), i.e. 1 - 1/(1 + visits).

    0 for an unseen pair, 0.5 after one visit, 0.9 after nine, approaching 1.
    Chosen because it depends on visits alone (so replicas that agree on the
    visits agree on the confidence) and is monotone and bounded in [0, 1).
    """
    return visits / (visits + 1.0)  # this exact expression everywhere (the swarm sync's numpy path too)


@dataclass(frozen=True)
class Pattern:
    """A learned value Q(state, action) with its visit count and confidence.

    `last_update` is the learner's clock at the last real update: the injected
    clock's milliseconds if the learner has one, else its own update counter.
    """

    state: str
    action: str
    q_value: float
    visits: int
    last_update: int
    confidence: float

    def __post_init__(self) -> None:
        for name in ("state", "action"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidPattern(f"pattern {name} must be a non-empty string, got {value!r}")
        if isinstance(self.q_value, bool) or not isinstance(self.q_value, (int, float)) or not math.isfinite(self.q_value):
            raise InvalidPattern(f"pattern q_value must be a finite number, got {self.q_value!r}")
        for name in ("visits", "last_update"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidPattern(f"pattern {name} must be a non-negative integer, got {value!r}")
        c = self.confidence
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0.0 <= c <= 1.0:
            raise InvalidPattern(f"pattern confidence must be in [0, 1], got {c!r}")

    @classmethod
    def of(cls, state: str, action: str, q_value: float, visits: int, last_update: int) -> "Pattern":
        """A pattern whose confidence follows `confidence_for(visits)`."""
        return cls(state, action, float(q_value), visits, last_update, confidence_for(visits))

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "action": self.action,
            "q_value": self.q_value,
            "visits": self.visits,
            "last_update": self.last_update,
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, obj: Any) -> "Pattern":
        if not isinstance(obj, dict) or set(obj) != _KEYS:
            raise InvalidPattern(f"a pattern is an object with exactly the keys {sorted(_KEYS)}")
        return cls(**obj)
