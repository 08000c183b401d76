"""Measured load: the fraction of wall time an agent spent handling messages.

Heartbeats report this instead of a constant so a coordinator can route work
by what agents are actually doing.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class LoadMeter:
    def __init__(self) -> None:
        self._busy_ns = 0
        self._window_start = time.perf_counter_ns()
        self._depth = 0

    @contextmanager
    def busy(self) -> Iterator[None]:
        """Count the time inside this block as busy (nested blocks count once)."""
        self._depth += 1
        start = time.perf_counter_ns()
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._busy_ns += time.perf_counter_ns() - start

    def sample(self) -> float:
        """Busy fraction since the previous sample, in [0, 1]; starts a new window."""
        now = time.perf_counter_ns()
        elapsed = now - self._window_start
        fraction = self._busy_ns / elapsed if elapsed > 0 else 0.0
        self._busy_ns = 0
        self._window_start = now
        return round(min(1.0, max(0.0, fraction)), 4)
