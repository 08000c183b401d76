"""Signed pointers to artifacts: what a member announces instead of the artifact itself.

Same rules as registrations and heartbeats (p2p/records.py): `type` and `swarm`
for domain separation, the Ed25519 signature over the RFC 8785 canonical JSON
of every field but `sig`, strict decoding of exactly these keys. The key to
verify with comes from the member registry, never from the pointer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ..errors import BadSignature, MalformedMessage, WrongSwarm
from ..p2p import wire
from ..p2p.records import SignedRecord
from ..platform.base import CryptoProvider
from .cid import parse_cid

__all__ = ["ArtifactPointer", "ArtifactType"]

MAX_DIMENSIONS = 8


class ArtifactType(str, enum.Enum):
    QTABLE = "QTable"
    MEMORY_VECTORS = "MemoryVectors"
    MODEL_WEIGHTS = "ModelWeights"
    TRAJECTORY = "Trajectory"


@dataclass(frozen=True)
class ArtifactPointer(SignedRecord):
    """`checksum` is the SHA-256 of the artifact's decoded bytes; `schema_hash` the SHA-256 of its schema."""

    TYPE: ClassVar[str] = "artifact_pointer"

    swarm: str
    publisher: str
    artifact_type: ArtifactType
    cid: str
    dimensions: tuple[int, ...]
    schema_hash: bytes
    checksum: bytes
    version: int
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "publisher": self.publisher,
            "artifact_type": ArtifactType(self.artifact_type).value,
            "cid": self.cid,
            "dimensions": list(self.dimensions),
            "schema_hash": self.schema_hash.hex(),
            "checksum": self.checksum.hex(),
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "ArtifactPointer":
        cls._expect(obj)
        try:
            artifact_type = ArtifactType(obj["artifact_type"])
        except ValueError:
            raise MalformedMessage(f"unknown artifact type {obj['artifact_type']!r:.40}") from None
        dims = obj["dimensions"]
        if not isinstance(dims, list) or len(dims) > MAX_DIMENSIONS:
            raise MalformedMessage(f"dimensions must be a list of at most {MAX_DIMENSIONS} integers")
        parse_cid(obj["cid"])
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            publisher=wire.get_id(obj, "publisher"),
            artifact_type=artifact_type,
            cid=obj["cid"],
            dimensions=tuple(wire.get_int({"d": d}, "d") for d in dims),
            schema_hash=wire.get_hex(obj, "schema_hash", 32),
            checksum=wire.get_hex(obj, "checksum", 32),
            version=wire.get_int(obj, "version"),
            sig=wire.get_hex(obj, "sig", 64),
        )

    async def sign(self, identity: Any) -> "ArtifactPointer":
        """A copy signed by `identity` (an IdentityManager or anything with `async sign(bytes)`)."""
        return replace(self, sig=await identity.sign(self.signing_bytes()))

    async def verify(self, crypto: CryptoProvider, public_key: bytes, *, swarm_id: str | None = None) -> None:
        """Raise unless signed by `public_key` (from the registry) and, if given, made for `swarm_id`."""
        if swarm_id is not None and self.swarm != swarm_id:
            raise WrongSwarm(f"artifact pointer is for swarm {self.swarm!r}")
        if len(self.sig) != 64 or not await crypto.verify(public_key, self.signing_bytes(), self.sig):
            raise BadSignature(f"artifact pointer {self.cid} is not signed by this key")

