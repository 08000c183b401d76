"""Membership in an admitted swarm: the admin-bound swarm id, certificates and revocations.

An admitted swarm's id is a hash of its admin's Ed25519 public key, so anyone (a
member, a relay) can check that a certificate was issued by *the* admin from the
swarm id alone, with no secret and no directory: recompute the id from the
certificate's `issuer`, compare, verify the signature. Open swarms keep ids
derived from their key (16 hex digits); an admitted id starts with `adm-`, so a
relay tells the two apart from the id and a client cannot opt out of the checks.

`CertificateBook` is a member's (or relay's) view: the certificates it has seen,
the revocations it must honour. Sans-I/O; the clock is injected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import (
    BadSignature,
    ExpiredCertificate,
    InvalidCertificate,
    MissingCertificate,
    RevokedMember,
    WrongSwarm,
)
from ..platform.base import Clock, CryptoProvider
from . import wire
from .records import SignedRecord

ADMITTED_PREFIX = "adm-"
_SWARM_ID_LABEL = b"ruvector-edge/admitted-swarm/v1"
MAX_ROLES = 16


def admitted_swarm_id(admin_public: bytes) -> str:
    """`adm-` + 16 bytes of SHA-256(label || admin Ed25519 public key), hex: the swarm is its admin's."""
    return ADMITTED_PREFIX + hashlib.sha256(_SWARM_ID_LABEL + admin_public).digest()[:16].hex()


def is_admitted(swarm_id: str) -> bool:
    return swarm_id.startswith(ADMITTED_PREFIX)


def check_issuer(swarm: str, issuer: bytes, what: str) -> None:
    """Raise unless `issuer` is the key the admitted swarm id `swarm` was derived from."""
    if not is_admitted(swarm) or admitted_swarm_id(issuer) != swarm:
        raise InvalidCertificate(f"{what} is not issued by the admin of swarm {swarm!r}")


def _roles(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    roles = wire.get_str_list(obj, key, max_items=MAX_ROLES)
    for role in roles:
        wire.check_id(role, key)
    return tuple(roles)


@dataclass(frozen=True)
class Certificate(SignedRecord):
    """The admin's statement: this agent id owns these two keys and may act in these roles until `expires_at`."""

    TYPE: ClassVar[str] = "membership-certificate"

    swarm: str
    issuer: bytes  # the admin's Ed25519 public key; admitted_swarm_id(issuer) == swarm
    agent_id: str
    ed25519_pubkey: bytes
    x25519_pubkey: bytes
    roles: tuple[str, ...]
    serial: int
    issued_at: int
    expires_at: int
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "issuer": self.issuer.hex(),
            "agent_id": self.agent_id,
            "ed25519_pubkey": self.ed25519_pubkey.hex(),
            "x25519_pubkey": self.x25519_pubkey.hex(),
            "roles": list(self.roles),
            "serial": self.serial,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "Certificate":
        cls._expect(obj)
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            issuer=wire.get_hex(obj, "issuer", 32),
            agent_id=wire.get_id(obj, "agent_id"),
            ed25519_pubkey=wire.get_hex(obj, "ed25519_pubkey", 32),
            x25519_pubkey=wire.get_hex(obj, "x25519_pubkey", 32),
            roles=_roles(obj, "roles"),
            serial=wire.get_int(obj, "serial"),
            issued_at=wire.get_int(obj, "issued_at"),
            expires_at=wire.get_int(obj, "expires_at"),
            sig=wire.get_hex(obj, "sig", 64),
        )

    @property
    def is_admin(self) -> bool:
        return self.ed25519_pubkey == self.issuer

    async def verify(self, crypto: CryptoProvider, swarm_id: str, now: int) -> None:
        """Raise unless this is the admin's unexpired certificate for `swarm_id` (revocation is the book's job)."""
        if self.swarm != swarm_id:
            raise WrongSwarm(f"certificate is for swarm {self.swarm!r}")
        check_issuer(self.swarm, self.issuer, "certificate")
        if not self.issued_at <= now < self.expires_at:
            raise ExpiredCertificate(f"certificate of {self.agent_id!r} is valid [{self.issued_at}, {self.expires_at}), now {now}")
        if not await crypto.verify(self.issuer, self.signing_bytes(), self.sig):
            raise InvalidCertificate(f"certificate of {self.agent_id!r} is not signed by the admin")

    def covers(self, agent_id: str, ed25519_pubkey: bytes, x25519_pubkey: bytes | None = None,
               capabilities: tuple[str, ...] = ()) -> None:
        """Raise unless this certificate is for exactly this identity and allows every claimed capability."""
        if agent_id != self.agent_id or ed25519_pubkey != self.ed25519_pubkey:
            raise InvalidCertificate(f"certificate of {self.agent_id!r} does not name {agent_id!r} with this key")
        if x25519_pubkey is not None and x25519_pubkey != self.x25519_pubkey:
            raise InvalidCertificate(f"certificate of {agent_id!r} names another X25519 key")
        extra = set(capabilities) - set(self.roles)
        if extra:
            raise InvalidCertificate(f"{agent_id!r} claims capabilities its certificate does not allow: {sorted(extra)[:4]}")


@dataclass(frozen=True)
class Revocation(SignedRecord):
    """The admin withdraws a certificate (every serial up to `serial`) and its key. Kept until the
    withdrawn certificate would have expired (`cert_expires_at`), after which it is moot."""

    TYPE: ClassVar[str] = "revocation"

    swarm: str
    issuer: bytes
    agent_id: str
    ed25519_pubkey: bytes
    serial: int
    cert_expires_at: int
    revoked_at: int
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "issuer": self.issuer.hex(),
            "agent_id": self.agent_id,
            "ed25519_pubkey": self.ed25519_pubkey.hex(),
            "serial": self.serial,
            "cert_expires_at": self.cert_expires_at,
            "revoked_at": self.revoked_at,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "Revocation":
        cls._expect(obj)
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            issuer=wire.get_hex(obj, "issuer", 32),
            agent_id=wire.get_id(obj, "agent_id"),
            ed25519_pubkey=wire.get_hex(obj, "ed25519_pubkey", 32),
            serial=wire.get_int(obj, "serial"),
            cert_expires_at=wire.get_int(obj, "cert_expires_at"),
            revoked_at=wire.get_int(obj, "revoked_at"),
            sig=wire.get_hex(obj, "sig", 64),
        )

    async def verify(self, crypto: CryptoProvider, swarm_id: str) -> None:
        if self.swarm != swarm_id:
            raise WrongSwarm(f"revocation is for swarm {self.swarm!r}")
        check_issuer(self.swarm, self.issuer, "revocation")
        if not await crypto.verify(self.issuer, self.signing_bytes(), self.sig):
            raise BadSignature(f"revocation of {self.agent_id!r} is not signed by the admin")


class CertificateBook:
    """Certificates seen and revocations to honour, for one admitted swarm.

    Bounded: at most `max_certificates` certificates (one per agent id, the highest serial) and
    `max_revocations` revocations, each forgotten once the certificate it withdrew has expired.
    """

    def __init__(self, swarm_id: str, crypto: CryptoProvider, clock: Clock | None = None, *,
                 max_certificates: int = 10_000, max_revocations: int = 100_000) -> None:
        if not is_admitted(swarm_id):
            raise ValueError(f"{swarm_id!r} is not an admitted swarm id")
        self.swarm_id = swarm_id
        self.crypto = crypto
        self.clock = clock or Clock()
        self.max_certificates = max_certificates
        self.max_revocations = max_revocations
        self._certs: dict[str, Certificate] = {}
        self._revoked_serials: dict[str, tuple[int, int]] = {}  # agent id -> (highest revoked serial, moot after)
        self._revoked_keys: dict[bytes, int] = {}  # ed25519 key -> moot after
        self.revocations: dict[str, Revocation] = {}  # agent id -> newest, to pass on to returning members

    async def add(self, cert: Certificate) -> Certificate:
        """Keep a verified, unrevoked certificate (the higher serial wins); raise and change nothing otherwise."""
        now = self.clock.now_ms()
        await cert.verify(self.crypto, self.swarm_id, now)
        self._check_revoked(cert.agent_id, cert.ed25519_pubkey, cert.serial, now)
        held = self._certs.get(cert.agent_id)
        if held is not None and held.serial > cert.serial:
            return held
        if held is None and len(self._certs) >= self.max_certificates:
            self._drop_expired(now)
            if len(self._certs) >= self.max_certificates:
                raise MissingCertificate(f"certificate book is full ({self.max_certificates})")
        self._certs[cert.agent_id] = cert
        return cert

    async def revoke(self, revocation: Revocation) -> bool:
        """Honour a verified revocation; True when it is news (False: already known)."""
        await revocation.verify(self.crypto, self.swarm_id)
        now = self.clock.now_ms()
        known = self._revoked_serials.get(revocation.agent_id)
        if known is not None and known[0] >= revocation.serial and revocation.ed25519_pubkey in self._revoked_keys:
            return False
        self._prune(now)
        if len(self.revocations) >= self.max_revocations:
            raise RevokedMember(f"revocation list is full ({self.max_revocations}); certificates must expire first")
        serial = max(revocation.serial, known[0] if known else -1)
        self._revoked_serials[revocation.agent_id] = (serial, revocation.cert_expires_at)
        self._revoked_keys[revocation.ed25519_pubkey] = revocation.cert_expires_at
        self.revocations[revocation.agent_id] = revocation
        cert = self._certs.get(revocation.agent_id)
        if cert is not None and (cert.serial <= serial or cert.ed25519_pubkey == revocation.ed25519_pubkey):
            del self._certs[revocation.agent_id]
        return True

    def require(self, agent_id: str, ed25519_pubkey: bytes, x25519_pubkey: bytes | None = None,
                capabilities: tuple[str, ...] = ()) -> Certificate:
        """The valid certificate covering this identity right now, or the reason there is none."""
        now = self.clock.now_ms()
        self._check_revoked(agent_id, ed25519_pubkey, None, now)
        cert = self._certs.get(agent_id)
        if cert is None:
            raise MissingCertificate(f"{agent_id!r} holds no certificate of swarm {self.swarm_id}")
        if now >= cert.expires_at:
            raise ExpiredCertificate(f"certificate of {agent_id!r} expired at {cert.expires_at}")
        cert.covers(agent_id, ed25519_pubkey, x25519_pubkey, capabilities)
        return cert

    def get(self, agent_id: str) -> Certificate | None:
        return self._certs.get(agent_id)

    def certificates(self) -> list[Certificate]:
        return list(self._certs.values())

    def check_not_revoked(self, agent_id: str) -> None:
        """RevokedMember when `agent_id` was revoked and holds no newer certificate (a removed member is no
        longer in the registry, so its frames are named for what they are, not as from a stranger)."""
        self._check_revoked(agent_id, b"", None, self.clock.now_ms())

    def is_revoked(self, agent_id: str, ed25519_pubkey: bytes) -> bool:
        try:
            self._check_revoked(agent_id, ed25519_pubkey, None, self.clock.now_ms())
        except RevokedMember:
            return True
        return False

    def _check_revoked(self, agent_id: str, key: bytes, serial: int | None, now: int) -> None:
        if self._revoked_keys.get(key, -1) > now:
            raise RevokedMember(f"the key of {agent_id!r} was revoked")
        revoked = self._revoked_serials.get(agent_id)
        if revoked is not None and revoked[1] > now:
            held = self._certs.get(agent_id)
            current = serial if serial is not None else (held.serial if held is not None else revoked[0])
            if current <= revoked[0]:
                raise RevokedMember(f"certificate {current} of {agent_id!r} was revoked")

    def _prune(self, now: int) -> None:
        for agent_id in [a for a, (_, moot) in self._revoked_serials.items() if moot <= now]:
            del self._revoked_serials[agent_id]
            self.revocations.pop(agent_id, None)
        for key in [k for k, moot in self._revoked_keys.items() if moot <= now]:
            del self._revoked_keys[key]

    def _drop_expired(self, now: int) -> None:
        for agent_id in [a for a, c in self._certs.items() if c.expires_at <= now]:
            del self._certs[agent_id]
