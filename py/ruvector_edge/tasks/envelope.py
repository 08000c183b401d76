"""The signed task envelope: which module to run, on which input, under which budgets, for whom.

Same rules as every signed object (p2p/records.py): `type` and `swarm` for
domain separation, Ed25519 over the RFC 8785 canonical JSON of every field but
`sig`, strict decoding of exactly these keys. The requester's key comes from the
member registry, never from the envelope.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ..errors import BadSignature, MalformedMessage, WrongSwarm
from ..artifacts.cid import parse_cid
from ..p2p import wire
from ..p2p.records import SignedRecord
from ..platform.base import CryptoProvider

__all__ = ["Budgets", "TaskEnvelope", "TaskRecord", "MAX_FUEL", "MAX_MEMORY_MB", "MAX_TIMEOUT_MS"]

MAX_FUEL = 10**15
MAX_MEMORY_MB = 4096
MAX_TIMEOUT_MS = 3_600_000
MAX_PRIORITY = 255
_ENTRYPOINT_LEN = 64


class TaskRecord(SignedRecord):
    """A signed task object: signing by an identity and verifying by a registry key, with the swarm checked."""

    swarm: str

    async def sign(self, identity: Any) -> Any:
        """A copy signed by `identity` (an IdentityManager or anything with `async sign(bytes)`)."""
        return replace(self, sig=await identity.sign(self.signing_bytes()))  # type: ignore[type-var]

    async def verify(self, crypto: CryptoProvider, public_key: bytes, *, swarm_id: str | None = None) -> None:
        """Raise unless signed by `public_key` (from the registry) and, if given, made for `swarm_id`."""
        if swarm_id is not None and self.swarm != swarm_id:
            raise WrongSwarm(f"{self.TYPE} is for swarm {self.swarm!r}")
        if len(self.sig) != 64 or not await crypto.verify(public_key, self.signing_bytes(), self.sig):
            raise BadSignature(f"{self.TYPE} is not signed by this key")

    def record_hash(self) -> bytes:
        """SHA-256 of the canonical JSON *including* the signature: names this exact signed object."""
        return hashlib.sha256(self.to_json()).digest()


@dataclass(frozen=True)
class Budgets:
    """What a run may consume: wasm fuel (≈ instructions), linear memory, wall-clock time."""

    fuel_limit: int
    memory_mb: int
    timeout_ms: int

    def __post_init__(self) -> None:
        for name, value, top in (
            ("fuel_limit", self.fuel_limit, MAX_FUEL),
            ("memory_mb", self.memory_mb, MAX_MEMORY_MB),
            ("timeout_ms", self.timeout_ms, MAX_TIMEOUT_MS),
        ):
            if type(value) is not int or not 1 <= value <= top:
                raise MalformedMessage(f"budget {name} must be an integer in [1, {top}]")

    def to_dict(self) -> dict[str, int]:
        return {"fuel_limit": self.fuel_limit, "memory_mb": self.memory_mb, "timeout_ms": self.timeout_ms}

    @classmethod
    def from_dict(cls, obj: Any) -> "Budgets":
        wire.expect_keys(obj, frozenset(["fuel_limit", "memory_mb", "timeout_ms"]), "budgets")
        return cls(
            fuel_limit=wire.get_int(obj, "fuel_limit", 1, MAX_FUEL),
            memory_mb=wire.get_int(obj, "memory_mb", 1, MAX_MEMORY_MB),
            timeout_ms=wire.get_int(obj, "timeout_ms", 1, MAX_TIMEOUT_MS),
        )


def check_entrypoint(value: object) -> str:
    """An export name: 1-64 characters of [A-Za-z0-9_]."""
    if type(value) is not str or not 1 <= len(value) <= _ENTRYPOINT_LEN or not value.isascii() or not value.replace("_", "a").isalnum():
        raise MalformedMessage(f"entrypoint must be 1-{_ENTRYPOINT_LEN} ASCII letters, digits or '_'")
    return value


@dataclass(frozen=True)
class TaskEnvelope(TaskRecord):
    """`output_schema_hash` is the SHA-256 of the schema the output must follow; `deadline` is epoch ms."""

    TYPE: ClassVar[str] = "task_envelope"

    swarm: str
    task_id: str
    module_cid: str
    entrypoint: str
    input_cid: str
    output_schema_hash: bytes
    budgets: Budgets
    requester: str
    deadline: int
    priority: int
    sig: bytes = b""

    def __post_init__(self) -> None:
        wire.check_id(self.swarm, "swarm")
        wire.check_id(self.task_id, "task_id")
        wire.check_id(self.requester, "requester")
        parse_cid(self.module_cid)
        parse_cid(self.input_cid)
        check_entrypoint(self.entrypoint)
        if len(self.output_schema_hash) != 32:
            raise MalformedMessage("output_schema_hash must be 32 bytes")
        if type(self.priority) is not int or not 0 <= self.priority <= MAX_PRIORITY:
            raise MalformedMessage(f"priority must be an integer in [0, {MAX_PRIORITY}]")
        if type(self.deadline) is not int or not 0 <= self.deadline <= wire.MAX_SAFE_INT:
            raise MalformedMessage("deadline must be a non-negative integer (epoch ms)")

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "task_id": self.task_id,
            "module_cid": self.module_cid,
            "entrypoint": self.entrypoint,
            "input_cid": self.input_cid,
            "output_schema_hash": self.output_schema_hash.hex(),
            "budgets": self.budgets.to_dict(),
            "requester": self.requester,
            "deadline": self.deadline,
            "priority": self.priority,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "TaskEnvelope":
        cls._expect(obj)
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            task_id=wire.get_id(obj, "task_id"),
            module_cid=wire.get_str(obj, "module_cid", 128),
            entrypoint=check_entrypoint(obj["entrypoint"]),
            input_cid=wire.get_str(obj, "input_cid", 128),
            output_schema_hash=wire.get_hex(obj, "output_schema_hash", 32),
            budgets=Budgets.from_dict(obj["budgets"]),
            requester=wire.get_id(obj, "requester"),
            deadline=wire.get_int(obj, "deadline"),
            priority=wire.get_int(obj, "priority", 0, MAX_PRIORITY),
            sig=wire.get_hex(obj, "sig", 64),
        )

    def envelope_hash(self) -> bytes:
        """What receipts and claims bind to: SHA-256 of this envelope's canonical JSON, signature included."""
        return self.record_hash()
