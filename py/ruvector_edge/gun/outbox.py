"""What one GUN connection has still to send: replies before forwards, each under its own bound (no I/O).

Replies (acks, GET answers, handshakes, answers routed back from other peers) are what this peer asked for:
its writer waits on them, so they are never dropped. When a peer lets more than `reply_limit` characters of
them pile up it is a slow consumer and is disconnected (`push_reply` returns False), so memory stays bounded.
Forwards (puts and GETs relayed from other peers) are lossy as in GUN: beyond `forward_limit` waiting,
new ones are dropped and counted. A shared queue let a burst of forwards crowd out the acks: 10 writers
x 1,000 puts saw 136 to 1,000 of their 1,000 acks.
"""

from __future__ import annotations

from collections import deque


class Outbox:
    __slots__ = ("replies", "forwards", "reply_limit", "forward_limit", "reply_chars", "dropped")

    def __init__(self, reply_limit: int, forward_limit: int) -> None:
        """`reply_limit`: characters of replies waiting (an ack is ~60, a GET answer page up to 8 KiB);
        `forward_limit`: forwards waiting."""
        self.replies: deque[str] = deque()
        self.forwards: deque[str] = deque()
        self.reply_limit = reply_limit
        self.forward_limit = forward_limit
        self.reply_chars = 0
        self.dropped = 0

    def push_reply(self, text: str) -> bool:
        """Queue a reply; False (nothing queued) when it would take the replies past `reply_limit` characters:
        disconnect this peer."""
        if self.reply_chars + len(text) > self.reply_limit:
            return False
        self.replies.append(text)
        self.reply_chars += len(text)
        return True

    def push_forward(self, text: str) -> bool:
        """Queue a forward; False (dropped, counted) once `forward_limit` are waiting."""
        if len(self.forwards) >= self.forward_limit:
            self.dropped += 1
            return False
        self.forwards.append(text)
        return True

    def pop(self) -> str | None:
        """The next frame to write, replies first; None when both queues are empty."""
        if self.replies:
            text = self.replies.popleft()
            self.reply_chars -= len(text)
            return text
        if self.forwards:
            return self.forwards.popleft()
        return None

    def clear(self) -> None:
        self.replies.clear()
        self.forwards.clear()
        self.reply_chars = 0

    def __len__(self) -> int:
        return len(self.replies) + len(self.forwards)
