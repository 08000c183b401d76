"""Swarm protocol messages: what travels inside the payload of a signed envelope.

The envelope already proves who sent it and when; the payload says what it
is: `{"kind": ..., "body": {...}}` in canonical JSON. Each kind has a decoder
that checks its body, so a handler only ever sees well-formed input.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from .canonical import canonicalize
from .errors import MalformedMessage
from .p2p import wire

MAX_PAYLOAD_JSON = 1024 * 1024


class MessageKind(str, enum.Enum):
    JOIN = "JOIN"
    LEAVE = "LEAVE"
    PING = "PING"
    PONG = "PONG"
    HEARTBEAT = "HEARTBEAT"
    SYNC_PATTERNS = "SYNC_PATTERNS"
    REQUEST_PATTERNS = "REQUEST_PATTERNS"
    SYNC_MEMORIES = "SYNC_MEMORIES"
    BROADCAST_TASK = "BROADCAST_TASK"
    TASK_RESULT = "TASK_RESULT"
    SIGNAL = "SIGNAL"
    # Artifacts and tasks over the swarm (issues 5 and 7): direct block exchange, signed leases,
    # coordinator assignments and spot-check re-runs.
    REQUEST_BLOCK = "REQUEST_BLOCK"
    BLOCK = "BLOCK"
    TASK_CLAIM = "TASK_CLAIM"
    TASK_ASSIGN = "TASK_ASSIGN"
    SPOT_CHECK = "SPOT_CHECK"
    SPOT_RESULT = "SPOT_RESULT"


_KINDS = {kind.value: kind for kind in MessageKind}


@dataclass(frozen=True)
class SwarmMessage:
    kind: MessageKind
    body: dict[str, Any]

    def encode(self) -> bytes:
        return canonicalize({"kind": self.kind.value, "body": self.body})


def encode(kind: MessageKind, **body: Any) -> bytes:
    return SwarmMessage(kind, body).encode()


def decode(payload: bytes) -> SwarmMessage:
    obj = wire.parse_json_object(payload, MAX_PAYLOAD_JSON)
    wire.expect_keys(obj, frozenset({"kind", "body"}), "swarm message")
    kind = _KINDS.get(obj["kind"]) if isinstance(obj["kind"], str) else None
    if kind is None:
        raise MalformedMessage(f"unknown message kind {obj['kind']!r:.40}")
    body = obj["body"]
    if not isinstance(body, dict):
        raise MalformedMessage("message body must be an object")
    return SwarmMessage(kind, body)
