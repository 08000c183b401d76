"""Swarm state as GUN values: one signed (and optionally encrypted) record per (kind, agent).

GUN gives anyone who can reach a relay write access to the graph, so a value is
trusted only for what its signature says. A value under key K of the `kind`
node must be signed by member K (registry key), for this swarm and this kind;
anything else is ignored and counted by reason.

- `encrypted=True`: the value is a p2p Envelope sealed under the swarm key by
  `P2PSwarm.publish` (topic ``gun.<kind>``): a relay sees only ciphertext.
- `encrypted=False`: a `GunStateRecord` (a SignedRecord) with the payload in clear.

GUN values are state, not messages: the same value is read again on every sync
and may be years old, so P2PSwarm's replay and timestamp windows do not apply.
Instead a reader keeps the highest counter accepted per (kind, sender); an older
value (a relay rolling state back) is refused as stale.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ..errors import (
    BadSignature,
    DecryptionFailed,
    MalformedMessage,
    OversizedMessage,
    PayloadHashMismatch,
    RejectedInput,
    ReplayDetected,
    UnknownSender,
    UnsignedValue,
    WrongSwarm,
    WrongType,
)
from ..p2p import envelope as env
from ..p2p import wire
from ..p2p.envelope import Envelope, EnvelopeHeader
from ..p2p.keys import payload_hash
from ..p2p.records import SignedRecord
from ..p2p.swarm import P2PSwarm

DEFAULT_MAX_VALUE_CHARS = 512 * 1024

# Why a value was ignored; the keys of `StateSealer.stats` besides "accepted".
REASONS = ("unsigned", "malformed", "oversized", "wrong_swarm", "misplaced", "unknown_sender",
           "bad_signature", "undecryptable", "stale")


@dataclass(frozen=True)
class GunStateRecord(SignedRecord):
    """A member's signed, unencrypted state value (the `encrypted=False` form)."""

    TYPE: ClassVar[str] = "gun-state"

    swarm: str
    agent_id: str
    kind: str
    counter: int
    timestamp: int
    payload: bytes
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {"type": self.TYPE, "swarm": self.swarm, "agent_id": self.agent_id, "kind": self.kind,
                "counter": self.counter, "timestamp": self.timestamp, "payload": wire.b64(self.payload)}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "GunStateRecord":
        cls._expect(obj)
        return cls(swarm=wire.get_id(obj, "swarm"), agent_id=wire.get_id(obj, "agent_id"),
                   kind=wire.get_id(obj, "kind"), counter=wire.get_int(obj, "counter"),
                   timestamp=wire.get_int(obj, "timestamp"),
                   payload=wire.get_b64(obj, "payload", DEFAULT_MAX_VALUE_CHARS),
                   sig=wire.get_hex(obj, "sig", 64))


@dataclass(frozen=True)
class OpenedState:
    sender_id: str
    counter: int
    timestamp: int
    payload: bytes


def _reason(exc: RejectedInput) -> str:
    if isinstance(exc, UnsignedValue):
        return "unsigned"
    if isinstance(exc, OversizedMessage):
        return "oversized"
    if isinstance(exc, WrongSwarm):
        return "wrong_swarm"
    if isinstance(exc, UnknownSender):
        return "unknown_sender"
    if isinstance(exc, BadSignature):
        return "bad_signature"
    if isinstance(exc, (DecryptionFailed, PayloadHashMismatch)):
        return "undecryptable"
    if isinstance(exc, ReplayDetected):
        return "stale"
    if isinstance(exc, WrongType):
        return "misplaced"
    return "malformed"


class StateSealer:
    """Seals this agent's state values and opens the swarm's, counting what it refuses.

    Each distinct (kind, key, value) is judged once: re-reading the same graph does
    not recount, and a refused value costs no second signature check.
    """

    def __init__(self, p2p: P2PSwarm, *, encrypted: bool, max_value_chars: int = DEFAULT_MAX_VALUE_CHARS,
                 memo: int = 4096) -> None:
        self.p2p = p2p
        self.encrypted = encrypted
        self.max_value_chars = max_value_chars
        self.stats: dict[str, int] = {"accepted": 0, **{r: 0 for r in REASONS}}
        self._newest: dict[tuple[str, str], int] = {}
        self._judged: OrderedDict[tuple[str, str, bytes], OpenedState | None] = OrderedDict()  # by value digest
        self._memo = memo
        self._counter = p2p.runtime.clock.now_ms() * 1024

    @staticmethod
    def topic(kind: str) -> str:
        return wire.check_id(f"gun.{kind}", "kind")

    async def seal(self, kind: str, payload: bytes) -> str:
        if self.encrypted:
            published = await self.p2p.publish(self.topic(kind), payload)
            text = published.frame.decode("ascii")
        else:
            self._counter += 1
            record = GunStateRecord(self.p2p.swarm_id, self.p2p.agent_id, self.topic(kind), self._counter,
                                    self.p2p.runtime.clock.now_ms(), bytes(payload))
            sig = await self.p2p.identity.sign(record.signing_bytes())
            text = replace(record, sig=sig).to_json().decode("ascii")
        if len(text) > self.max_value_chars:
            raise OversizedMessage(f"sealed {kind} value of {len(text)} characters exceeds {self.max_value_chars}")
        return text

    async def open_node(self, kind: str, node: dict[str, object]) -> dict[str, OpenedState]:
        """The verified newest state per member from one GUN node {agent_id: value}."""
        out: dict[str, OpenedState] = {}
        for key, value in node.items():
            text = value if isinstance(value, str) else repr(value)
            memo_key = (kind, key, hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
            if memo_key in self._judged:
                self._judged.move_to_end(memo_key)
                opened = self._judged[memo_key]
                if opened is not None and opened.counter < self._newest.get((kind, opened.sender_id), 0):
                    self.stats["stale"] += 1  # an authentic value superseded, then put back (rolled back)
                    opened = self._judged[memo_key] = None
            else:
                try:
                    opened = await self._open(kind, key, value)
                    self._take(kind, opened)
                    self.stats["accepted"] += 1
                except RejectedInput as exc:
                    self.stats[_reason(exc)] += 1
                    opened = None
                self._judged[memo_key] = opened
                while len(self._judged) > self._memo:
                    self._judged.popitem(last=False)
            if opened is not None and self._newest.get((kind, key)) == opened.counter:
                out[key] = opened
        return out

    def _take(self, kind: str, opened: OpenedState) -> None:
        newest = self._newest.get((kind, opened.sender_id))
        if newest is not None and opened.counter < newest:
            raise ReplayDetected(f"{kind} of {opened.sender_id!r} is older than one already accepted")
        self._newest[(kind, opened.sender_id)] = opened.counter

    async def _open(self, kind: str, key: str, value: object) -> OpenedState:
        if not isinstance(value, str):
            raise MalformedMessage(f"{kind} value under {key!r:.40} is not a string")
        if len(value) > self.max_value_chars:
            raise OversizedMessage(f"{kind} value under {key!r:.40} has {len(value)} characters")
        try:
            obj = wire.parse_json_object(value, self.max_value_chars)
        except MalformedMessage:
            raise UnsignedValue(f"{kind} value under {key!r:.40} is not a signed record") from None
        if "sig" not in obj:
            raise UnsignedValue(f"{kind} value under {key!r:.40} carries no signature")
        topic = self.topic(kind)
        if self.encrypted:
            return await self._open_envelope(topic, key, obj)
        return await self._open_record(topic, key, obj)

    async def _open_record(self, topic: str, key: str, obj: dict) -> OpenedState:
        record = GunStateRecord.from_dict(obj)
        self._check_place(record.swarm, record.agent_id, record.kind, topic, key)
        member = self.p2p.registry.require(record.agent_id)
        if not await self.p2p.runtime.crypto.verify(member.ed25519_pubkey, record.signing_bytes(), record.sig):
            raise BadSignature(f"{topic} value of {record.agent_id!r} does not verify")
        return OpenedState(record.agent_id, record.counter, record.timestamp, record.payload)

    async def _open_envelope(self, topic: str, key: str, obj: dict) -> OpenedState:
        envelope = Envelope.from_dict(obj, self.max_value_chars)
        header = envelope.header
        if header.type != env.BROADCAST:
            raise WrongType("a GUN state value is a broadcast envelope")
        self._check_place(header.swarm, header.sender_id, header.topic, topic, key)
        member = self.p2p.registry.require(header.sender_id)
        canonical = header.canonical()
        crypto = self.p2p.runtime.crypto
        if not await crypto.verify(member.ed25519_pubkey, canonical, envelope.sig):
            raise BadSignature(f"{topic} value of {header.sender_id!r} does not verify")
        swarm_key = self.p2p.swarm_key.key
        [plaintext] = await crypto.aes_gcm_open_many(
            swarm_key, [(envelope.iv, envelope.ciphertext, EnvelopeHeader.aad_of(canonical))])
        if plaintext is None:
            raise DecryptionFailed(f"{topic} value of {header.sender_id!r} failed authentication")
        if not hmac.compare_digest(payload_hash(swarm_key, plaintext), header.payload_hash):
            raise PayloadHashMismatch(f"{topic} value of {header.sender_id!r} does not match its signed hash")
        return OpenedState(header.sender_id, header.counter, header.timestamp, plaintext)

    def _check_place(self, swarm: str, sender: str, topic_signed: str, topic: str, key: str) -> None:
        """Bind the value to where it sits: this swarm, this kind's node, the signer's own key."""
        if swarm != self.p2p.swarm_id:
            raise WrongSwarm(f"value is for swarm {swarm!r}")
        if topic_signed != topic or sender != key:
            raise WrongType(f"value signed as {topic_signed!r} by {sender!r} sits under {topic!r}/{key!r:.40}")

