"""Signed, encrypted envelopes: the unit every swarm message travels in.

Header (all signed, in clear so relays can route on swarm and topic):
`{counter, [epoch,] message_id, nonce, payload_hash, sender_id, swarm, timestamp, topic, type}`.
`epoch` (admitted swarms only) names the swarm-key epoch a broadcast is sealed
under; open swarms have one key forever and leave it out, so their frames are
byte for byte what they were before epochs existed.
The Ed25519 signature covers the canonical header; the payload is AES-256-GCM
with AAD = SHA-256(canonical header), so a ciphertext cannot be moved under
another header, and `payload_hash` (keyed, see keys.py) binds the signer to
the plaintext, which GCM alone cannot do when every member holds the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from ..canonical import canonical_flat
from ..errors import MalformedMessage, WrongType
from . import wire

BROADCAST = "envelope"  # encrypted under the swarm key, for every member
DIRECT = "direct"  # encrypted under a pairwise X25519 session key
ENVELOPE_TYPES = frozenset({BROADCAST, DIRECT})

DEFAULT_MAX_PAYLOAD = 1024 * 1024
IV_BYTES = 12
TAG_BYTES = 16


@dataclass(frozen=True)
class EnvelopeHeader:
    type: str
    swarm: str
    sender_id: str
    topic: str
    counter: int
    message_id: str
    nonce: str
    timestamp: int
    payload_hash: bytes
    epoch: int | None = None

    def to_dict(self) -> dict[str, Any]:
        fields = {
            "counter": self.counter,
            "message_id": self.message_id,
            "nonce": self.nonce,
            "payload_hash": self.payload_hash.hex(),
            "sender_id": self.sender_id,
            "swarm": self.swarm,
            "timestamp": self.timestamp,
            "topic": self.topic,
            "type": self.type,
        }
        if self.epoch is not None:
            fields["epoch"] = self.epoch
        return fields

    def canonical(self) -> bytes:
        """RFC 8785 bytes of the header. Every field is an ASCII id, hex or a safe integer (validated on
        construction by `from_dict` or `_checked`), the case where json's sorted output is already JCS."""
        return canonical_flat(self.to_dict())

    @staticmethod
    def aad_of(canonical_header: bytes) -> bytes:
        return hashlib.sha256(canonical_header).digest()

    @classmethod
    def from_dict(cls, obj: Any) -> "EnvelopeHeader":
        if not isinstance(obj, dict):
            raise MalformedMessage("header must be an object")
        wire.expect_keys(obj, _HEADER_KEYS_EPOCH if "epoch" in obj else _HEADER_KEYS, "envelope header")
        kind = obj["type"]
        if type(kind) is not str or kind not in ENVELOPE_TYPES:
            raise WrongType(f"{kind!r} is not an envelope type")
        return cls(
            type=kind,
            swarm=wire.get_id(obj, "swarm"),
            sender_id=wire.get_id(obj, "sender_id"),
            topic=wire.get_id(obj, "topic"),
            counter=wire.get_int(obj, "counter"),
            message_id=wire.get_hex(obj, "message_id", 16).hex(),
            nonce=wire.get_hex(obj, "nonce", 16).hex(),
            timestamp=wire.get_int(obj, "timestamp"),
            payload_hash=wire.get_hex(obj, "payload_hash", 32),
            epoch=wire.get_int(obj, "epoch") if "epoch" in obj else None,
        )


_HEADER_KEYS_EPOCH = frozenset(EnvelopeHeader.__dataclass_fields__)
_HEADER_KEYS = _HEADER_KEYS_EPOCH - {"epoch"}
_ENVELOPE_KEYS = frozenset({"header", "sig", "iv", "ct"})


@dataclass(frozen=True)
class Envelope:
    """A sealed message as it travels: header, signature, IV and ciphertext (tag appended)."""

    KIND: ClassVar[str] = "envelope"

    header: EnvelopeHeader
    sig: bytes
    iv: bytes
    ciphertext: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"header": self.header.to_dict(), "sig": self.sig.hex(), "iv": wire.b64(self.iv), "ct": wire.b64(self.ciphertext)}

    def to_json(self, canonical_header: bytes | None = None) -> bytes:
        """Canonical frame bytes. Assembled by hand: keys are fixed and sorted, values are hex/base64
        (nothing to escape), and the header's canonical form is usually already at hand."""
        header = canonical_header if canonical_header is not None else self.header.canonical()
        return b"".join(
            (b'{"ct":"', wire.b64(self.ciphertext).encode(), b'","header":', header,
             b',"iv":"', wire.b64(self.iv).encode(), b'","sig":"', self.sig.hex().encode(), b'"}')
        )

    @classmethod
    def from_dict(cls, obj: dict[str, Any], max_payload: int = DEFAULT_MAX_PAYLOAD) -> "Envelope":
        wire.expect_keys(obj, _ENVELOPE_KEYS, "envelope")
        header = EnvelopeHeader.from_dict(obj["header"])
        iv = wire.get_b64(obj, "iv", IV_BYTES)
        if len(iv) != IV_BYTES:
            raise MalformedMessage(f"iv must be {IV_BYTES} bytes")
        ciphertext = wire.get_b64(obj, "ct", max_payload + TAG_BYTES)
        if len(ciphertext) < TAG_BYTES:
            raise MalformedMessage("ciphertext shorter than the GCM tag")
        return cls(header=header, sig=wire.get_hex(obj, "sig", 64), iv=iv, ciphertext=ciphertext)

    @classmethod
    def from_json(cls, data: bytes | str, max_payload: int = DEFAULT_MAX_PAYLOAD) -> "Envelope":
        return cls.from_dict(wire.parse_json_object(data, max_frame_bytes(max_payload)), max_payload)


def max_frame_bytes(max_payload: int) -> int:
    """Largest JSON frame that can carry `max_payload` bytes: base64 growth plus a generous header allowance."""
    return (max_payload + TAG_BYTES) * 4 // 3 + 4096
