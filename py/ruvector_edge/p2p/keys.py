"""Swarm key material and the X25519 session-key derivation.

One 32-byte swarm key is shared by members (carried in an invite, never sent to
a relay). From it we derive the public swarm id and the key of the payload
hash, so none of these can drift apart between runtimes.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from functools import lru_cache

from ..errors import SessionKeyError
from ..platform.base import CryptoProvider

SESSION_INFO_PREFIX = "p2p-swarm-v2:"
_PAYLOAD_HASH_LABEL = b"ruvector-edge/payload-hash/v1"


def swarm_id_for(key: bytes) -> str:
    """The public name of a swarm: first 8 bytes of SHA-256(key), hex (SHA-256 reveals nothing of the key)."""
    return hashlib.sha256(key).digest()[:8].hex()


@dataclass(frozen=True)
class SwarmKey:
    """The shared AES-256-GCM key of a swarm and what is derived from it."""

    key: bytes
    swarm_id: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise ValueError("a swarm key is 32 bytes")
        object.__setattr__(self, "swarm_id", swarm_id_for(self.key))

    def __repr__(self) -> str:  # never print key material
        return f"SwarmKey(swarm_id={self.swarm_id!r})"


@lru_cache(maxsize=1024)
def _payload_hash_key(encryption_key: bytes) -> bytes:
    return hashlib.sha256(_PAYLOAD_HASH_LABEL + encryption_key).digest()


def payload_hash(encryption_key: bytes, payload: bytes) -> bytes:
    """Keyed hash of a plaintext payload, keyed from the key that encrypts it.

    The signed header commits to the plaintext (so the signer, not just any
    key holder, vouches for it); keying the hash stops anyone without the
    encryption key, who sees headers, from confirming guesses of low-entropy
    payloads (for direct messages: other swarm members too).
    """
    return hmac.new(_payload_hash_key(encryption_key), payload, hashlib.sha256).digest()


async def derive_session_key(
    crypto: CryptoProvider, our_private: bytes, our_public: bytes, peer_public: bytes, swarm_id: str
) -> bytes:
    """HKDF-SHA256(IKM = X25519(ours, theirs), salt = SHA-256(sorted publics), info = p2p-swarm-v2:{swarm_id}).

    Sorting the two public keys makes the salt, and so the key, the same on both sides.
    """
    shared = await crypto.x25519_shared(our_private, peer_public)
    if not any(shared):
        raise SessionKeyError("peer X25519 key is a low-order point (all-zero shared secret)")
    first, second = sorted((bytes(our_public), bytes(peer_public)))
    salt = hashlib.sha256(first + second).digest()
    return await crypto.hkdf_sha256(shared, salt, (SESSION_INFO_PREFIX + swarm_id).encode("utf-8"), 32)


__all__ = ["SwarmKey", "swarm_id_for", "derive_session_key", "payload_hash"]
