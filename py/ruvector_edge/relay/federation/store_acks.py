"""Which of a relay's published frames its swarm's stream has stored, and which to publish again.

A frame crosses NATS as one core publish that subscribers and the swarm's stream both take. Asking
the stream to acknowledge each one would cost a reply message per frame at the relay and at the
server; instead the position feed, which every relay reads anyway (stream order: sequence, subject,
message id of each stored frame), is the acknowledgement. A relay's frames reach the stream in the
order it published them (one connection), so when the feed reports one of them, every frame this
relay published to that stream before it and still unreported was not stored: it is published
again at once. When a stream reports nothing at all for `timeout_s` (a replicated stream electing a
leader stores nothing and says nothing), the frames overdue by then are published again. After
`max_attempts` a frame is given up and counted in `unstored`; one no longer tracked because
`max_tracked` frames already await their report (a feed far behind under load: most of them were
stored) is counted in `untracked`. Sans-I/O: nats_bus.py publishes
what these methods return.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

Frame = TypeVar("Frame")


@dataclass
class _Pending(Generic[Frame]):
    frame: Frame
    deadline: float
    attempt: int


class StoreAcks(Generic[Frame]):
    def __init__(self, timeout_s: float, max_attempts: int, max_tracked: int,
                 monotonic: Callable[[], float]) -> None:
        if timeout_s <= 0 or max_attempts < 1 or max_tracked < 1:
            raise ValueError("timeout_s, max_attempts and max_tracked must be positive")
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.max_tracked = max_tracked
        self.monotonic = monotonic
        self.unstored = 0  # frames given up: never reported stored after max_attempts publishes
        self.untracked = 0  # frames dropped from tracking while max_tracked others awaited their report
        self._streams: dict[str, collections.OrderedDict[str, _Pending[Frame]]] = {}  # in publish order
        self._heard: dict[str, float] = {}  # stream -> when its feed last reported one of our frames
        self._tracked = 0

    def follow(self, stream: str) -> None:
        """The stream's position feed is running: frames published to it from now on are tracked."""
        self._streams.setdefault(stream, collections.OrderedDict())
        self._heard.setdefault(stream, self.monotonic())

    def forget(self, stream: str) -> None:
        """The feed is gone (no agent of the swarm left here): nothing more to track or publish again."""
        self._tracked -= len(self._streams.pop(stream, ()))
        self._heard.pop(stream, None)

    def published(self, stream: str, msg_id: str, frame: Frame, attempt: int) -> None:
        """`frame` was just published (its `attempt`th time); untracked for a stream without a feed."""
        pending = self._streams.get(stream)
        if pending is None:
            return
        if msg_id in pending:
            self._tracked -= 1
            del pending[msg_id]
        pending[msg_id] = _Pending(frame, self.monotonic() + self.timeout_s, attempt)
        self._tracked += 1
        if self._tracked > self.max_tracked:  # far behind: stop tracking this stream's oldest
            pending.popitem(last=False)
            self._tracked -= 1
            self.untracked += 1

    def stored(self, stream: str, msg_id: str | None) -> list[tuple[Frame, int]]:
        """The feed reported `msg_id` stored: the frames to publish again (attempt numbers included)."""
        pending = self._streams.get(stream)
        if not pending or msg_id not in pending:
            return []
        self._heard[stream] = self.monotonic()
        lost: list[_Pending[Frame]] = []
        while True:
            key, entry = pending.popitem(last=False)
            self._tracked -= 1
            if key == msg_id:
                break
            lost.append(entry)
        return self._again(lost)

    def due(self) -> list[tuple[Frame, int]]:
        """Frames overdue on streams whose feed has reported nothing of ours for `timeout_s`."""
        now = self.monotonic()
        lost: list[_Pending[Frame]] = []
        for stream, pending in self._streams.items():
            if self._heard[stream] + self.timeout_s > now:
                continue
            while pending:
                key, entry = next(iter(pending.items()))
                if entry.deadline > now:
                    break
                del pending[key]
                self._tracked -= 1
                lost.append(entry)
        return self._again(lost)

    def _again(self, lost: list[_Pending[Frame]]) -> list[tuple[Frame, int]]:
        again = []
        for entry in lost:
            if entry.attempt >= self.max_attempts:
                self.unstored += 1
            else:
                again.append((entry.frame, entry.attempt + 1))
        return again
