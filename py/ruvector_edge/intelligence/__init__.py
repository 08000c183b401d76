"""Shared learned patterns: a state-based CRDT over (state, action, origin), its wire format and kernels."""

from .sync import IntelligenceSync, MergeResult, Pattern, SwarmStats
from .tables import Entry, NumpyTable, PatternTable, PyTable, confidence, default_table_factory
from .wire import Limits

__all__ = [
    "Entry",
    "IntelligenceSync",
    "Limits",
    "MergeResult",
    "NumpyTable",
    "Pattern",
    "PatternTable",
    "PyTable",
    "SwarmStats",
    "confidence",
    "default_table_factory",
]
