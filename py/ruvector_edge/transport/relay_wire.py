"""The relay protocol: JSON text frames between agents and an edge-relay.

Two kinds of frames share one WebSocket:
- control frames, objects with an `op` field (hello, sub, unsub, ping, pong,
  welcome, member, left, error, undeliverable);
- on a federated relay (relay/federation), envelopes wrapped as
  `{"envelope":<the envelope, byte for byte>,"op":"deliver","seq":N}` with N the
  swarm stream's sequence: an agent keeps the last N it saw and passes it as
  `resume` in its next hello to catch up on what it missed. A relay without a
  stream sends bare envelopes, as before;
- envelopes (objects with a `header`, see p2p/envelope.py), which the relay
  routes by the header's swarm and topic and forwards byte for byte. A topic
  `@agent` is a direct frame for that agent; any other topic goes to its
  subscribers.

The relay never holds a swarm key: it sees registrations (public keys) and
headers, never payloads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..canonical import canonicalize
from ..errors import MalformedMessage, OversizedMessage
from ..p2p import wire
from ..p2p.envelope import EnvelopeHeader
from ..p2p.records import Registration

CLIENT_OPS = frozenset({"hello", "sub", "unsub", "ping", "pong", "leave"})
RELAY_OPS = frozenset({"challenge", "welcome", "member", "left", "ping", "pong", "error", "undeliverable", "deliver"})
# Admitted swarms (p2p/admission.py, relay/gatekeeper.py): what only an admin sends, and what the relay passes on.
ADMIN_OPS = frozenset({"admit", "refuse", "revoke", "rekey"})
ADMISSION_OPS = frozenset({"admit-request", "admitted", "certificates", "revoked", "epoch"})
MAX_TOPICS_PER_FRAME = 64
DIRECT_PREFIX = "@"

# WebSocket close codes used by the relay (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_DATA = 1007  # not JSON / not a frame
CLOSE_POLICY = 1008  # protocol misuse: no hello, spoofed sender, key conflict
CLOSE_TOO_BIG = 1009
CLOSE_TRY_LATER = 1013  # slow consumer or overload
CLOSE_REFUSED = 4403  # admitted swarm: hello refused or membership revoked; the same hello would be refused again


@dataclass(frozen=True)
class Control:
    op: str
    body: dict[str, Any]


@dataclass(frozen=True)
class RoutedEnvelope:
    """An envelope as the relay sees it: the header (validated) and the raw bytes to forward;
    `seq` is the stream sequence a federated relay delivered it with."""

    header: EnvelopeHeader
    raw: str
    seq: int | None = None


_DELIVER_HEAD = '{"envelope":'


def decode(data: str | bytes, max_bytes: int) -> Control | RoutedEnvelope:
    """Classify and validate one frame; raise a RejectedInput subclass on anything malformed."""
    if isinstance(data, (bytes, bytearray)):
        if len(data) > max_bytes:
            raise OversizedMessage(f"{len(data)} bytes exceeds the {max_bytes}-byte limit")
        try:  # JSON text on the wire is UTF-8 (RFC 8259 §8.1); json.loads would also take UTF-16/32
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedMessage("frame is not UTF-8") from None
    obj = wire.parse_json_object(data, max_bytes)
    if "op" in obj:
        op = obj["op"]
        if type(op) is not str or op not in CLIENT_OPS | RELAY_OPS | ADMIN_OPS | ADMISSION_OPS:
            raise MalformedMessage(f"unknown op {op!r:.40}")
        if op == "deliver":
            return _delivered(data, obj)
        return Control(op, obj)
    if "header" in obj:
        header = EnvelopeHeader.from_dict(obj["header"])
        return RoutedEnvelope(header, data)
    raise MalformedMessage("frame is neither a control frame nor an envelope")


def _delivered(text: str, obj: dict[str, Any]) -> RoutedEnvelope:
    """Unwrap a deliver frame to the envelope's own text, which the agent verifies byte for byte."""
    seq = wire.get_int(obj, "seq", minimum=1)
    tail = f',"op":"deliver","seq":{seq}}}'
    if not (text.startswith(_DELIVER_HEAD) and text.endswith(tail) and isinstance(obj.get("envelope"), dict)):
        raise MalformedMessage("deliver frame is not an envelope and a sequence")
    inner = text[len(_DELIVER_HEAD):-len(tail)]
    header = EnvelopeHeader.from_dict(obj["envelope"].get("header"))
    return RoutedEnvelope(header, inner, seq)


def delivered(raw: str, seq: int) -> str:
    """An envelope with its stream sequence (keys in canonical order, the envelope untouched)."""
    return f'{_DELIVER_HEAD}{raw},"op":"deliver","seq":{int(seq)}}}'


def topics_of(control: Control) -> list[str]:
    topics = control.body.get("topics")
    if not isinstance(topics, list) or len(topics) > MAX_TOPICS_PER_FRAME:
        raise MalformedMessage(f"topics must be a list of at most {MAX_TOPICS_PER_FRAME} ids")
    for topic in topics:
        wire.check_id(topic, "topic")
        if topic.startswith(DIRECT_PREFIX):
            raise MalformedMessage("direct topics are delivered without subscribing")
    return topics


def registration_of(control: Control) -> Registration:
    body = control.body.get("registration")
    if not isinstance(body, dict):
        raise MalformedMessage("registration must be an object")
    return Registration.from_dict(body)


def ping_id(control: Control) -> int:
    return wire.get_int(control.body, "id")


def encode(op: str, **fields: Any) -> str:
    """A control frame as text (canonical JSON, so both runtimes emit the same bytes)."""
    return canonicalize({"op": op, **fields}).decode("utf-8")


AUTH_TYPE = "relay-auth"


def auth_bytes(swarm: str, agent_id: str, challenge: str) -> bytes:
    """What an agent signs to prove it holds the key of the registration it presents.

    Without it anyone could replay a public registration and take over that
    agent's slot on the relay (and its direct frames)."""
    return canonicalize({"type": AUTH_TYPE, "swarm": swarm, "agent_id": agent_id, "challenge": challenge})


def hello(registration: Registration, proof: bytes, resume: int | None = None) -> str:
    """`resume`: the last stream sequence this agent saw (federated relays replay what followed)."""
    if resume is None:
        return encode("hello", registration=registration.to_dict(), proof=proof.hex())
    return encode("hello", registration=registration.to_dict(), proof=proof.hex(), resume=resume)


def resume_of(control: Control) -> int | None:
    return None if control.body.get("resume") is None else wire.get_int(control.body, "resume")


def proof_of(control: Control) -> bytes:
    return wire.get_hex(control.body, "proof", 64)


def challenge_of(control: Control) -> str:
    return wire.get_hex(control.body, "challenge", 16).hex()


def subscribe(topics: list[str]) -> str:
    return encode("sub", topics=topics)


def unsubscribe(topics: list[str]) -> str:
    return encode("unsub", topics=topics)


def welcome(agent_id: str, swarm: str, member_json: list[str]) -> str:
    """The welcome frame built from registrations already in canonical text (keys in sorted order)."""
    return (f'{{"agent_id":{json.dumps(agent_id)},"members":[{",".join(member_json)}],'
            f'"op":"welcome","swarm":{json.dumps(swarm)}}}')


def member(registration_json: str) -> str:
    return f'{{"op":"member","registration":{registration_json}}}'


def ping(ping_id: int) -> str:
    return f'{{"id":{int(ping_id)},"op":"ping"}}'


def is_direct(topic: str) -> bool:
    return topic.startswith(DIRECT_PREFIX)


def direct_topic(agent_id: str) -> str:
    return DIRECT_PREFIX + agent_id


__all__ = [
    "Control",
    "RoutedEnvelope",
    "decode",
    "encode",
    "hello",
    "resume_of",
    "delivered",
    "auth_bytes",
    "proof_of",
    "challenge_of",
    "subscribe",
    "unsubscribe",
    "topics_of",
    "registration_of",
    "ping_id",
    "is_direct",
    "direct_topic",
]
