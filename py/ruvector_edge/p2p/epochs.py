"""Swarm-key epochs: a new key after every removal (and periodically), sealed to each remaining member.

Why pairwise sealing and not MLS: an O(n) rekey (one X25519 + HKDF + AES-GCM +
Ed25519 signature per member) is small enough at edge-swarm sizes (bench/rekey.py:
1,000 members well under a second natively) and uses only primitives both
runtimes already have; see the README's "Admission" section for the trade-off.

Sealing: one ephemeral X25519 key per rekey; per member, the wrapping key is
HKDF(X25519(ephemeral, member), salt = SHA-256(sorted public keys), info =
`p2p-swarm-v2:{swarm}/epoch-key/{epoch}/{agent_id}`) — the direct-channel
derivation of keys.py with an info no swarm id can spell (it contains '/'), so
a wrapping key is never a session key. AAD binds the ciphertext to swarm, epoch
and recipient; the admin's signature over the whole record says who chose the key.

`EpochKeys` is a member's key ring: the current epoch, and the previous one for a
short grace window after a switch (frames already in flight when the rekey landed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from ..canonical import canonicalize
from ..errors import BadSignature, DecryptionFailed, UnknownEpoch, WrongSwarm
from ..platform.base import CryptoProvider, RandomSource
from . import wire
from .certificates import check_issuer
from .identity import IdentityManager
from .keys import derive_session_key
from .records import SignedRecord

DEFAULT_GRACE_MS = 10_000  # how long frames of the previous epoch are still opened after a switch
KEY_BYTES = 32


def _wrap_info(swarm: str, epoch: int, agent_id: str) -> str:
    return f"{swarm}/epoch-key/{epoch}/{agent_id}"


@dataclass(frozen=True)
class EpochKeyDelivery(SignedRecord):
    """The swarm key of `epoch`, sealed to one member's X25519 key and signed by the admin."""

    TYPE: ClassVar[str] = "epoch-key"

    swarm: str
    issuer: bytes
    epoch: int
    agent_id: str
    ephemeral: bytes
    iv: bytes
    ct: bytes
    issued_at: int
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "issuer": self.issuer.hex(),
            "epoch": self.epoch,
            "agent_id": self.agent_id,
            "ephemeral": self.ephemeral.hex(),
            "iv": self.iv.hex(),
            "ct": self.ct.hex(),
            "issued_at": self.issued_at,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "EpochKeyDelivery":
        cls._expect(obj)
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            issuer=wire.get_hex(obj, "issuer", 32),
            epoch=wire.get_int(obj, "epoch"),
            agent_id=wire.get_id(obj, "agent_id"),
            ephemeral=wire.get_hex(obj, "ephemeral", 32),
            iv=wire.get_hex(obj, "iv", 12),
            ct=wire.get_hex(obj, "ct", KEY_BYTES + 16),
            issued_at=wire.get_int(obj, "issued_at"),
            sig=wire.get_hex(obj, "sig", 64),
        )

    def aad(self) -> bytes:
        return hashlib.sha256(canonicalize({"type": self.TYPE, "swarm": self.swarm, "epoch": self.epoch,
                                            "agent_id": self.agent_id, "ephemeral": self.ephemeral.hex()})).digest()

    async def open(self, crypto: CryptoProvider, identity: IdentityManager, swarm_id: str, agent_id: str) -> bytes:
        """The epoch key, if this delivery is the admin's, for us, and unaltered; else a typed error."""
        if self.swarm != swarm_id:
            raise WrongSwarm(f"epoch key is for swarm {self.swarm!r}")
        if self.agent_id != agent_id:
            raise DecryptionFailed(f"epoch key sealed to {self.agent_id!r}, not to us")
        check_issuer(self.swarm, self.issuer, "epoch key")
        if not await crypto.verify(self.issuer, self.signing_bytes(), self.sig):
            raise BadSignature(f"epoch {self.epoch} key is not signed by the admin")
        wrap = await identity.session_key(self.ephemeral, _wrap_info(self.swarm, self.epoch, self.agent_id))
        key = await crypto.aes_gcm_open(wrap, self.iv, self.ct, self.aad())
        if key is None or len(key) != KEY_BYTES:
            raise DecryptionFailed(f"epoch {self.epoch} key does not open with our X25519 key")
        return key


async def seal_epoch_key(
    crypto: CryptoProvider, random: RandomSource, admin: IdentityManager, swarm: str, epoch: int, key: bytes,
    recipients: Sequence[tuple[str, bytes]], issued_at: int,
) -> list[EpochKeyDelivery]:
    """Seal `key` to each (agent id, X25519 public key); one ephemeral key, one signing batch."""
    eph_private, eph_public = await crypto.x25519_generate()
    unsigned = []
    for agent_id, x25519_public in recipients:
        wrap = await derive_session_key(crypto, eph_private, eph_public, x25519_public, _wrap_info(swarm, epoch, agent_id))
        draft = EpochKeyDelivery(swarm=swarm, issuer=admin.ed25519_public, epoch=epoch, agent_id=agent_id,
                                 ephemeral=eph_public, iv=random.token_bytes(12), ct=b"", issued_at=issued_at)
        ct = await crypto.aes_gcm_seal(wrap, draft.iv, key, draft.aad())
        unsigned.append(EpochKeyDelivery(**{**draft.__dict__, "ct": ct}))
    signatures = await admin.sign_many([d.signing_bytes() for d in unsigned])
    return [EpochKeyDelivery(**{**d.__dict__, "sig": sig}) for d, sig in zip(unsigned, signatures)]


class EpochKeys:
    """Current epoch key, and the previous one until `grace_ms` after the switch."""

    def __init__(self, grace_ms: int = DEFAULT_GRACE_MS) -> None:
        self.grace_ms = grace_ms
        self.epoch: int | None = None
        self._current: bytes | None = None
        self._previous: tuple[int, bytes, int] | None = None  # (epoch, key, usable until)

    @property
    def key(self) -> bytes | None:
        return self._current

    def install(self, epoch: int, key: bytes, now: int) -> bool:
        """Move to `epoch` if it is newer; False (nothing changes) for a stale or repeated delivery."""
        if len(key) != KEY_BYTES:
            raise ValueError("an epoch key is 32 bytes")
        if self.epoch is not None and epoch <= self.epoch:
            return False
        if self.epoch is not None and self._current is not None:
            self._previous = (self.epoch, self._current, now + self.grace_ms)
        self.epoch, self._current = epoch, key
        return True

    def key_for(self, epoch: int, now: int) -> bytes:
        if epoch == self.epoch and self._current is not None:
            return self._current
        previous = self._previous
        if previous is not None and epoch == previous[0] and now < previous[2]:
            return previous[1]
        raise UnknownEpoch(f"epoch {epoch} is not open here (current {self.epoch})")
