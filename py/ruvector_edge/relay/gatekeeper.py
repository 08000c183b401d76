"""The relay's side of admission, without sockets and without any secret.

For an admitted swarm (its id says so, see p2p/certificates.py) a hello must carry
either the agent's membership certificate, checked here against the admin key the
swarm id is derived from, or an invite, which is checked the same way and then
handed to an admin online in the swarm, whose answer (a certificate and the swarm
key sealed to the joiner) the relay passes back. The relay also keeps, per swarm,
the revocations it has seen (it refuses and drops revoked members) and the newest
epoch-key delivery for each member, so a member offline during a rekey catches up
when it returns, even if the admin is gone by then. Every refusal is counted by
reason in the relay's drop metrics (`admission_<Reason>`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidCertificate, MalformedMessage, MissingCertificate, RevokedMember
from ..p2p import wire
from ..p2p.certificates import Certificate, CertificateBook, Revocation
from ..p2p.epochs import EpochKeyDelivery
from ..p2p.invites import Invite
from ..p2p.records import Registration
from ..platform.base import Clock, CryptoProvider
from ..transport import relay_wire as rw

MAX_DELIVERIES_PER_REKEY = 10_000


@dataclass
class Candidate:
    """A connection that presented an invite and waits for an admin's answer."""

    swarm: str
    registration: Registration
    invite: Invite


@dataclass
class SwarmGate:
    book: CertificateBook
    admins: set[int] = field(default_factory=set)  # connections of the admin
    epoch_keys: dict[str, str] = field(default_factory=dict)  # agent id -> newest delivery (canonical JSON)


class Gatekeeper:
    def __init__(self, crypto: CryptoProvider, clock: Clock, max_members: int) -> None:
        self.crypto = crypto
        self.clock = clock
        self.max_members = max_members
        self.swarms: dict[str, SwarmGate] = {}
        self.candidates: dict[int, Candidate] = {}

    def gate(self, swarm_id: str) -> SwarmGate:
        gate = self.swarms.get(swarm_id)
        if gate is None:
            gate = self.swarms[swarm_id] = SwarmGate(
                CertificateBook(swarm_id, self.crypto, self.clock, max_certificates=self.max_members))
        return gate

    async def check_hello(self, conn_id: int, registration: Registration, body: dict[str, Any]) -> Certificate | None:
        """The certificate that admits this hello, or None when it is an invite to pass to an admin
        (then it is recorded as a candidate). Raise an AdmissionRefused subclass otherwise."""
        gate = self.gate(registration.swarm)
        if "certificate" in body:
            cert = Certificate.from_dict(_object(body, "certificate"))
            cert.covers(registration.agent_id, registration.ed25519_pubkey, registration.x25519_pubkey,
                        registration.capabilities)
            await gate.book.add(cert)  # verifies issuer, signature, expiry, revocation
            return cert
        if "invite" in body:
            if conn_id in self.candidates:
                raise MalformedMessage("a second invite on one connection")
            invite = Invite.from_dict(_object(body, "invite"))
            await invite.verify(self.crypto, registration.swarm, self.clock.now_ms())
            if gate.book.is_revoked(registration.agent_id, registration.ed25519_pubkey):
                raise RevokedMember(f"{registration.agent_id!r} or its key was revoked")
            self.candidates[conn_id] = Candidate(registration.swarm, registration, invite)
            return None
        raise MissingCertificate(f"{registration.agent_id!r} presents neither a certificate nor an invite")

    def joined(self, conn_id: int, cert: Certificate) -> list[str]:
        """After a certified hello: note an admin's connection; what to send before the welcome (the swarm's
        revocations, so a returning member honours what it missed, and its newest epoch key)."""
        gate = self.gate(cert.swarm)
        self.candidates.pop(conn_id, None)
        if cert.is_admin:
            gate.admins.add(conn_id)
        out = []
        revocations = [r.to_dict() for r in gate.book.revocations.values()]
        if revocations:
            out.append(rw.encode("revoked", revocations=revocations))
        certificates = [c.to_dict() for c in gate.book.certificates()]
        out.append(rw.encode("certificates", certificates=certificates))
        delivery = gate.epoch_keys.get(cert.agent_id)
        if delivery is not None:
            out.append(f'{{"delivery":{delivery},"op":"epoch"}}')
        return out

    def certificate_frame(self, swarm_id: str, agent_id: str) -> str | None:
        cert = self.gate(swarm_id).book.get(agent_id)
        return None if cert is None else rw.encode("certificates", certificates=[cert.to_dict()])

    def closed(self, conn_id: int, swarm_id: str | None) -> None:
        self.candidates.pop(conn_id, None)
        if swarm_id is not None and swarm_id in self.swarms:
            self.swarms[swarm_id].admins.discard(conn_id)

    def admin_of(self, conn_id: int, swarm_id: str | None) -> SwarmGate:
        gate = self.swarms.get(swarm_id) if swarm_id is not None else None
        if gate is None or conn_id not in gate.admins:
            raise InvalidCertificate("only the swarm's admin may do that")
        return gate

    async def admit(self, gate: SwarmGate, body: dict[str, Any]) -> tuple[int, list[str]]:
        """An admin's answer to a candidate: check that the certificate covers the candidate's registration,
        then the frames for the candidate (its certificate, its key, a fresh challenge is the router's)."""
        conn_id = wire.get_int(body, "conn")
        candidate = self.candidates.get(conn_id)
        if candidate is None:
            raise MalformedMessage("no candidate on that connection")
        cert = Certificate.from_dict(_object(body, "certificate"))
        delivery = EpochKeyDelivery.from_dict(_object(body, "delivery"))
        reg = candidate.registration
        cert.covers(reg.agent_id, reg.ed25519_pubkey, reg.x25519_pubkey, reg.capabilities)
        if delivery.agent_id != reg.agent_id:
            raise MalformedMessage("the epoch key is sealed to someone else")
        await gate.book.add(cert)
        del self.candidates[conn_id]
        return conn_id, [rw.encode("admitted", certificate=cert.to_dict(), delivery=delivery.to_dict())]

    def refuse(self, body: dict[str, Any]) -> tuple[int, str]:
        conn_id = wire.get_int(body, "conn")
        if self.candidates.pop(conn_id, None) is None:
            raise MalformedMessage("no candidate on that connection")
        return conn_id, str(body.get("reason", "refused"))[:100]

    async def revoke(self, gate: SwarmGate, body: dict[str, Any]) -> Revocation:
        revocation = Revocation.from_dict(_object(body, "revocation"))
        await gate.book.revoke(revocation)
        gate.epoch_keys.pop(revocation.agent_id, None)
        return revocation

    def rekey(self, gate: SwarmGate, body: dict[str, Any]) -> dict[str, str]:
        """Keep each member's newest delivery (for members offline now); the frames to send, by agent id."""
        items = body.get("deliveries")
        if not isinstance(items, list) or len(items) > MAX_DELIVERIES_PER_REKEY:
            raise MalformedMessage(f"deliveries must be a list of at most {MAX_DELIVERIES_PER_REKEY}")
        out = {}
        for item in items:
            delivery = EpochKeyDelivery.from_dict(item)
            if delivery.swarm != gate.book.swarm_id or gate.book.get(delivery.agent_id) is None:
                continue  # not a member the relay knows: nothing to hold it for
            text = delivery.to_json().decode("utf-8")
            gate.epoch_keys[delivery.agent_id] = text
            out[delivery.agent_id] = f'{{"delivery":{text},"op":"epoch"}}'
        return out


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise MalformedMessage(f"{key} must be an object")
    return value

