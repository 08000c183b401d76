"""Signed membership records: registrations and heartbeats.

Both carry `type` and `swarm` so that a signature made for one kind of record,
or for another swarm, never verifies as something else; the signature covers
the canonical JSON of every field except `sig` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ..canonical import canonicalize
from ..errors import BadSignature, WrongSwarm, WrongType
from ..platform.base import CryptoProvider
from . import wire

MAX_RECORD_BYTES = 8 * 1024


class SignedRecord:
    """What every signed record shares: `type` in its fields, the signature over the canonical rest.

    Subclasses are frozen dataclasses with a `sig: bytes` field, a TYPE, `unsigned_fields()` and
    `from_dict()` (which must call `_expect(obj)` first).
    """

    TYPE: ClassVar[str]
    sig: bytes

    def unsigned_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def signing_bytes(self) -> bytes:
        return canonicalize(self.unsigned_fields())

    def to_dict(self) -> dict[str, Any]:
        return {**self.unsigned_fields(), "sig": self.sig.hex()}

    def to_json(self) -> bytes:
        return canonicalize(self.to_dict())

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Any:
        raise NotImplementedError

    @classmethod
    def from_json(cls, data: bytes | str) -> Any:
        return cls.from_dict(wire.parse_json_object(data, MAX_RECORD_BYTES))

    @classmethod
    def _expect(cls, obj: Any) -> None:
        """Exactly this record's keys and its `type` (domain separation), or a typed error."""
        wire.expect_keys(obj, frozenset(["type", *(f.name for f in fields(cls))]), cls.TYPE)
        if obj["type"] != cls.TYPE:
            raise WrongType(f"expected type {cls.TYPE!r}, got {obj['type']!r:.40}")


@dataclass(frozen=True)
class Registration(SignedRecord):
    """A member's self-signed claim: this agent id owns these keys and offers these capabilities."""

    TYPE: ClassVar[str] = "registration"

    swarm: str
    agent_id: str
    ed25519_pubkey: bytes
    x25519_pubkey: bytes
    capabilities: tuple[str, ...]
    joined_at: int
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "agent_id": self.agent_id,
            "ed25519_pubkey": self.ed25519_pubkey.hex(),
            "x25519_pubkey": self.x25519_pubkey.hex(),
            "capabilities": list(self.capabilities),
            "joined_at": self.joined_at,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "Registration":
        cls._expect(obj)
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            agent_id=wire.get_id(obj, "agent_id"),
            ed25519_pubkey=wire.get_hex(obj, "ed25519_pubkey", 32),
            x25519_pubkey=wire.get_hex(obj, "x25519_pubkey", 32),
            capabilities=tuple(wire.get_str_list(obj, "capabilities")),
            joined_at=wire.get_int(obj, "joined_at"),
            sig=wire.get_hex(obj, "sig", 64),
        )

    async def verify(self, crypto: CryptoProvider, swarm_id: str) -> None:
        """Raise unless this registration is for `swarm_id` and signed by the key it names."""
        if self.swarm != swarm_id:
            raise WrongSwarm(f"registration is for swarm {self.swarm!r}")
        if not await crypto.verify(self.ed25519_pubkey, self.signing_bytes(), self.sig):
            raise BadSignature(f"registration of {self.agent_id!r} is not signed by its key")


@dataclass(frozen=True)
class Heartbeat(SignedRecord):
    """A member's signed liveness report with the load it actually measured."""

    TYPE: ClassVar[str] = "heartbeat"

    swarm: str
    agent_id: str
    seq: int
    timestamp: int
    load: float
    queue_depth: int
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "agent_id": self.agent_id,
            "seq": self.seq,
            "timestamp": self.timestamp,
            "load": self.load,
            "queue_depth": self.queue_depth,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "Heartbeat":
        cls._expect(obj)
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            agent_id=wire.get_id(obj, "agent_id"),
            seq=wire.get_int(obj, "seq"),
            timestamp=wire.get_int(obj, "timestamp"),
            load=wire.get_number(obj, "load", 0.0, 1.0),
            queue_depth=wire.get_int(obj, "queue_depth", 0, 1_000_000_000),
            sig=wire.get_hex(obj, "sig", 64),
        )
