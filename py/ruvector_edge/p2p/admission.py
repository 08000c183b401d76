"""A member's admission state in an admitted swarm, and the admin's authority over it (sans-I/O).

`Admission` is what every member of an admitted swarm holds: the certificates it
has checked and the revocations it honours (`CertificateBook`), its swarm-key ring
(`EpochKeys`), its own certificate once admitted, or the invite it came with until
then. `AdminAuthority` is what only the founder holds: it signs invites,
trades a valid unspent invite for a certificate and the current key sealed to the
joiner, revokes members and starts new key epochs. Both are driven by the relay
protocol in transport/relay_admission.py and never touch a socket.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from ..errors import AdminStateError, EdgeError, InvalidCertificate, InvalidInvite, NotAdmitted, RevokedMember
from ..platform.base import Clock, CryptoProvider, RandomSource
from .certificates import Certificate, CertificateBook, Revocation, admitted_swarm_id
from . import wire
from .epochs import DEFAULT_GRACE_MS, KEY_BYTES, EpochKeyDelivery, EpochKeys, seal_epoch_key
from .identity import IdentityManager
from .invites import MAX_INVITE_USES, Invite, InviteLedger
from .records import Registration

DAY_MS = 24 * 3600 * 1000
DEFAULT_CERT_TTL_MS = 7 * DAY_MS
DEFAULT_INVITE_TTL_MS = 3600 * 1000


class Admission:
    """One member's view of who belongs to the swarm and which key each epoch uses."""

    def __init__(self, swarm_id: str, crypto: CryptoProvider, clock: Clock, *, grace_ms: int = DEFAULT_GRACE_MS,
                 invite: Invite | None = None) -> None:
        self.swarm_id = swarm_id
        self.crypto = crypto
        self.clock = clock
        self.book = CertificateBook(swarm_id, crypto, clock)
        self.epochs = EpochKeys(grace_ms)
        self.invite = invite
        self.certificate: Certificate | None = None
        self.authority: AdminAuthority | None = None

    @property
    def admitted(self) -> bool:
        return self.certificate is not None and self.epochs.key is not None

    def hello_fields(self) -> dict[str, Any]:
        """What a hello must carry besides the registration: our certificate, or the invite to trade."""
        if self.certificate is not None:
            return {"certificate": self.certificate.to_dict()}
        if self.invite is not None:
            return {"invite": self.invite.to_dict()}
        raise NotAdmitted("neither a certificate nor an invite to present")

    def require_key(self) -> tuple[int, bytes]:
        if self.epochs.epoch is None or self.epochs.key is None:
            raise NotAdmitted("no swarm key yet: the invite has not been traded for a certificate")
        return self.epochs.epoch, self.epochs.key

    async def accept_certificate(self, cert: Certificate, identity: IdentityManager, registration: Registration) -> None:
        """Take our own certificate: it must be valid and name exactly our keys and capabilities."""
        cert.covers(registration.agent_id, identity.ed25519_public, identity.x25519_public, registration.capabilities)
        await self.book.add(cert)
        self.certificate = cert

    async def accept_epoch(self, delivery: EpochKeyDelivery, identity: IdentityManager, agent_id: str) -> bool:
        """Open and install a delivered epoch key; False for one not newer than what we hold."""
        if self.epochs.epoch is not None and delivery.epoch <= self.epochs.epoch:
            return False
        key = await delivery.open(self.crypto, identity, self.swarm_id, agent_id)
        return self.epochs.install(delivery.epoch, key, self.clock.now_ms())


class AdminAuthority:
    """The founder's powers: invites, certificates, revocations, key epochs. One admin per swarm
    (the swarm id is its key's hash). What it must remember to carry on after a restart is `state()`;
    `on_change` is awaited after every change and before its result leaves (admin_store.py saves
    there), so nothing a member holds (a certificate, a key, a spent use) is unknown to a restarted admin."""

    def __init__(self, identity: IdentityManager, crypto: CryptoProvider, random: RandomSource, clock: Clock,
                 admission: Admission, *, cert_ttl_ms: int = DEFAULT_CERT_TTL_MS) -> None:
        self.identity = identity
        self.crypto = crypto
        self.random = random
        self.clock = clock
        self.admission = admission
        self.swarm_id = admitted_swarm_id(identity.ed25519_public)
        if admission.swarm_id != self.swarm_id:
            raise ValueError("the admission state is for another swarm")
        self.cert_ttl_ms = cert_ttl_ms
        self.ledger = InviteLedger()
        self.members: dict[str, Certificate] = {}  # certificates issued and not revoked, by agent id
        self._came_with: dict[str, str] = {}  # agent id -> invite id it traded
        self._serial = clock.now_ms()  # increasing across restarts without persisting a counter
        self.removed: list[str] = []
        self.on_change: Callable[[], Awaitable[None]] | None = None

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()

    async def _sign(self, record: Any) -> Any:
        return type(record)(**{**record.__dict__, "sig": await self.identity.sign(record.signing_bytes())})

    async def certify(self, agent_id: str, ed25519_pubkey: bytes, x25519_pubkey: bytes, roles: Sequence[str]) -> Certificate:
        if self.admission.book.is_revoked(agent_id, ed25519_pubkey):
            raise RevokedMember(f"{agent_id!r} or its key was revoked")
        self._serial += 1
        now = self.clock.now_ms()
        cert = await self._sign(Certificate(
            swarm=self.swarm_id, issuer=self.identity.ed25519_public, agent_id=agent_id, ed25519_pubkey=ed25519_pubkey,
            x25519_pubkey=x25519_pubkey, roles=tuple(roles), serial=self._serial, issued_at=now,
            expires_at=now + self.cert_ttl_ms))
        self.members[agent_id] = cert
        return cert

    async def create_invite(self, roles: Sequence[str], *, max_uses: int = 1, ttl_ms: int = DEFAULT_INVITE_TTL_MS) -> Invite:
        self.ledger.prune(self.clock.now_ms())
        invite = await self._sign(Invite(
            swarm=self.swarm_id, issuer=self.identity.ed25519_public, invite_id=self.random.token_bytes(16).hex(),
            roles=tuple(roles), max_uses=max_uses, expires_at=self.clock.now_ms() + ttl_ms))
        self.ledger.issued(invite)
        await self._changed()
        return invite

    async def admit(self, registration: Registration, invite: Invite) -> tuple[Certificate, EpochKeyDelivery]:
        """Trade an invite for a certificate and the current key sealed to the joiner; spends one use.

        Everything is checked before the use is spent, so a refused request costs the invite nothing."""
        now = self.clock.now_ms()
        await invite.verify(self.crypto, self.swarm_id, now)
        if invite.issuer != self.identity.ed25519_public:
            raise InvalidInvite("invite of another admin")
        self.ledger.check(invite, now)
        await registration.verify(self.crypto, self.swarm_id)
        extra = set(registration.capabilities) - set(invite.roles)
        if extra:
            raise InvalidInvite(f"the invite does not allow {sorted(extra)[:4]}")
        held = self.members.get(registration.agent_id)
        if held is not None and held.ed25519_pubkey != registration.ed25519_pubkey:
            raise InvalidCertificate(f"{registration.agent_id!r} is a member under another key")
        if self.admission.book.is_revoked(registration.agent_id, registration.ed25519_pubkey):
            raise RevokedMember(f"{registration.agent_id!r} or its key was revoked")
        epoch, key = self.admission.require_key()
        self.ledger.consume(invite, now)
        cert = await self.certify(registration.agent_id, registration.ed25519_pubkey, registration.x25519_pubkey,
                                  registration.capabilities)
        self._came_with[registration.agent_id] = invite.invite_id
        delivery = (await seal_epoch_key(self.crypto, self.random, self.identity, self.swarm_id, epoch, key,
                                         [(cert.agent_id, cert.x25519_pubkey)], now))[0]
        await self._changed()
        return cert, delivery

    async def revoke(self, agent_id: str) -> tuple[Revocation, list[EpochKeyDelivery]]:
        """Withdraw a member's certificate and key, spend what is left of the invite it came with, and start
        a new epoch whose key is sealed to every remaining member."""
        cert = self.members.get(agent_id)
        if cert is None:
            raise InvalidCertificate(f"{agent_id!r} is not a member this admin certified")
        if cert.is_admin:
            raise InvalidCertificate("the admin cannot remove itself")
        revocation = await self._sign(Revocation(
            swarm=self.swarm_id, issuer=self.identity.ed25519_public, agent_id=agent_id,
            ed25519_pubkey=cert.ed25519_pubkey, serial=cert.serial, cert_expires_at=cert.expires_at,
            revoked_at=self.clock.now_ms()))
        await self.admission.book.revoke(revocation)
        del self.members[agent_id]
        invite_id = self._came_with.pop(agent_id, None)
        if invite_id is not None:
            self.ledger.withdraw(invite_id)
        self.removed.append(agent_id)
        deliveries = await self._next_epoch()
        await self._changed()
        return revocation, deliveries

    async def rekey(self) -> list[EpochKeyDelivery]:
        """A fresh key for the next epoch, installed here and sealed to every other member still certified."""
        deliveries = await self._next_epoch()
        await self._changed()
        return deliveries

    async def _next_epoch(self) -> list[EpochKeyDelivery]:
        now = self.clock.now_ms()
        for agent_id in [a for a, c in self.members.items() if c.expires_at <= now]:
            del self.members[agent_id]
        epoch = (self.admission.epochs.epoch or 0) + 1
        key = self.random.token_bytes(32)
        recipients = [(c.agent_id, c.x25519_pubkey) for c in self.members.values() if not c.is_admin]
        deliveries = await seal_epoch_key(self.crypto, self.random, self.identity, self.swarm_id, epoch, key,
                                          recipients, now)
        self.admission.epochs.install(epoch, key, now)
        return deliveries

    # Across restarts ------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything a restarted admin needs to carry on as the same admin of the same swarm: the current
        epoch and key, the serial counter, the certificates issued and not revoked, the revocations, every
        invite's uses left and which invite each member came with. Secret (the key): admin_store.py keeps it."""
        epoch, key = self.admission.require_key()
        return {
            "epoch": epoch,
            "key": key.hex(),
            "serial": self._serial,
            "members": [c.to_dict() for c in self.members.values()],
            "revocations": [r.to_dict() for r in self.admission.book.revocations.values()],
            "invites": [{"invite_id": i, "uses_left": u, "expires_at": e} for i, u, e in self.ledger.entries()],
            "came_with": dict(self._came_with),
            "removed": list(self.removed),
        }

    async def restore(self, state: dict[str, Any]) -> None:
        """Take back a `state()` on a fresh authority, checking every record as if it came from outside:
        AdminStateError (and nothing restored) for anything that is not this admin's. Certificates that
        expired meanwhile are dropped, not refused; our own is re-issued by the caller."""
        if self.admission.epochs.epoch is not None or self.members or self.ledger.entries():
            raise AdminStateError("restore() takes a fresh authority")
        try:
            epoch = wire.get_int(state, "epoch")
            key = wire.get_hex(state, "key", KEY_BYTES)
            serial = wire.get_int(state, "serial")
            members = [Certificate.from_dict(c) for c in _items(state, "members")]
            revocations = [Revocation.from_dict(r) for r in _items(state, "revocations")]
            invites = [(wire.get_hex(i, "invite_id", 16).hex(), wire.get_int(i, "uses_left", 0, MAX_INVITE_USES),
                        wire.get_int(i, "expires_at")) for i in _items(state, "invites")]
            came_with = state.get("came_with")
            if not isinstance(came_with, dict) or len(came_with) > self.admission.book.max_certificates:
                raise AdminStateError("came_with must be an object of agent id -> invite id")
            for agent_id, invite_id in came_with.items():
                wire.check_id(agent_id, "came_with")
                wire.get_hex({"invite_id": invite_id}, "invite_id", 16)
            removed = [wire.check_id(a, "removed") for a in _items(state, "removed", of=str)]
            book = CertificateBook(self.swarm_id, self.crypto, self.clock,
                                   max_certificates=self.admission.book.max_certificates,
                                   max_revocations=self.admission.book.max_revocations)
            for revocation in revocations:
                await book.revoke(revocation)
            now = self.clock.now_ms()
            kept = {}
            for cert in members:
                if cert.is_admin or cert.expires_at <= now:
                    continue
                await book.add(cert)
                kept[cert.agent_id] = cert
            ledger = InviteLedger(self.ledger.max_invites)
            for invite_id, uses_left, expires_at in invites:
                ledger.restore(invite_id, uses_left, expires_at)
        except AdminStateError:
            raise
        except (EdgeError, ValueError) as exc:
            raise AdminStateError(f"saved admin state refused: {type(exc).__name__}: {exc}") from None
        self.admission.book = book
        self.admission.epochs.install(epoch, key, self.clock.now_ms())
        self.members = kept
        self.ledger = ledger
        self._came_with = {a: i for a, i in came_with.items() if a in kept}
        self._serial = max(self._serial, serial)
        self.removed = removed


def _items(state: dict[str, Any], key: str, of: type = dict, limit: int = 100_000) -> list[Any]:
    value = state.get(key)
    if not isinstance(value, list) or len(value) > limit or not all(isinstance(v, of) for v in value):
        raise AdminStateError(f"{key} must be a list of at most {limit} {of.__name__} items")
    return value
