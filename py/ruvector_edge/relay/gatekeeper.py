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

With a GateStore (relay/gate_store.py) every change to what it holds (certificates,
revocations, held epoch keys) is written before the method returns, so before the
relay acknowledges it; `restore` reads the records back after a restart through the
same checks they passed on the wire (signatures, swarm binding, epoch order).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import (
    BadSignature,
    ExpiredCertificate,
    GateRecordRejected,
    InvalidCertificate,
    MalformedMessage,
    MissingCertificate,
    RejectedInput,
    RevokedMember,
)
from ..p2p import wire
from ..p2p.certificates import Certificate, CertificateBook, Revocation, check_issuer, is_admitted
from ..p2p.epochs import EpochKeyDelivery
from ..p2p.invites import Invite
from ..p2p.records import Registration
from ..platform.base import Clock, CryptoProvider
from ..transport import relay_wire as rw
from .gate_store import CERTIFICATE, EPOCH_KEY, REVOCATION, GateStore, Row

log = logging.getLogger(__name__)

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
    epoch: int = -1  # the newest epoch held: an older delivery is stale (a member would not install it either)


class Gatekeeper:
    def __init__(self, crypto: CryptoProvider, clock: Clock, max_members: int) -> None:
        self.crypto = crypto
        self.clock = clock
        self.max_members = max_members
        self.swarms: dict[str, SwarmGate] = {}
        self.candidates: dict[int, Candidate] = {}
        self.store: GateStore | None = None  # set by restore(): then every change is saved before it is answered

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
            if self.store is not None and not self.store.holds(registration.swarm):
                await cert.verify(self.crypto, registration.swarm, self.clock.now_ms())  # a stranger costs no purge
                self.store.check_room(registration.swarm, self.clock.now_ms())
            await self._add_certificate(gate, cert)  # verifies issuer, signature, expiry, revocation
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
        self._check_room(gate)
        await self._add_certificate(gate, cert)
        del self.candidates[conn_id]
        return conn_id, [rw.encode("admitted", certificate=cert.to_dict(), delivery=delivery.to_dict())]

    def refuse(self, body: dict[str, Any]) -> tuple[int, str]:
        conn_id = wire.get_int(body, "conn")
        if self.candidates.pop(conn_id, None) is None:
            raise MalformedMessage("no candidate on that connection")
        return conn_id, str(body.get("reason", "refused"))[:100]

    async def revoke(self, gate: SwarmGate, body: dict[str, Any]) -> Revocation:
        revocation = Revocation.from_dict(_object(body, "revocation"))
        self._check_room(gate)
        news = await gate.book.revoke(revocation)
        gate.epoch_keys.pop(revocation.agent_id, None)
        gone = [(EPOCH_KEY, revocation.agent_id)]
        if gate.book.get(revocation.agent_id) is None:
            gone.append((CERTIFICATE, revocation.agent_id))
        self._save(gate, put=[_revocation_row(revocation)] if news else [], delete=gone)
        return revocation

    def rekey(self, gate: SwarmGate, body: dict[str, Any]) -> dict[str, str]:
        """Keep each member's newest delivery (for members offline now); the frames to send, by agent id.
        The whole list is parsed before anything is kept, so a bad item changes nothing."""
        items = body.get("deliveries")
        if not isinstance(items, list) or len(items) > MAX_DELIVERIES_PER_REKEY:
            raise MalformedMessage(f"deliveries must be a list of at most {MAX_DELIVERIES_PER_REKEY}")
        deliveries = [EpochKeyDelivery.from_dict(item) for item in items]
        self._check_room(gate)
        kept = [d for d in deliveries if self._holdable(gate, d)]  # not for a member the relay knows: not held
        rows, out = [], {}
        for delivery in kept:
            text = delivery.to_json().decode("utf-8")
            rows.append(_delivery_row(gate, delivery, text))
            self._hold(gate, delivery, text)
            out[delivery.agent_id] = f'{{"delivery":{text},"op":"epoch"}}'
        self._save(gate, put=rows)
        return out

    async def restore(self, store: GateStore) -> list[GateRecordRejected]:
        """Take back what `store` holds (a restarted relay), then save every later change to it. Each record
        goes through the checks it passed when it arrived; one that fails is refused, logged and returned, and
        changes nothing. Moot records (an expired certificate, a revocation of one) are skipped quietly. At most
        the store's `max_swarms` swarms are read; each swarm's book bounds what it takes, as in memory."""
        refused: list[GateRecordRejected] = []
        now = self.clock.now_ms()
        for count, (swarm_id, rows) in enumerate(itertools.groupby(store.rows(), key=lambda r: r.swarm)):
            if count >= store.max_swarms:
                log.warning("gate state: more than %d swarms in %s; the rest is not read", store.max_swarms, store.path)
                break
            if not is_admitted(swarm_id):
                refused += [_refuse(row, MalformedMessage("not an admitted swarm id")) for row in rows]
                continue
            gate = self.gate(swarm_id)
            deliveries: list[tuple[Row, EpochKeyDelivery]] = []
            for row in rows:
                try:
                    if row.kind == EPOCH_KEY:
                        if len(deliveries) >= self.max_members:
                            raise MalformedMessage(f"more than {self.max_members} epoch keys in one swarm")
                        deliveries.append((row, _record(EpochKeyDelivery, row)))
                    else:
                        await self._restore_record(gate, row, now)
                except RejectedInput as exc:
                    refused.append(_refuse(row, exc))
            refused += await self._restore_deliveries(gate, deliveries)
        self.store = store
        return refused

    async def _restore_record(self, gate: SwarmGate, row: Row, now: int) -> None:
        if row.kind == CERTIFICATE:
            try:
                await gate.book.add(_record(Certificate, row))
            except ExpiredCertificate:
                log.debug("gate state: certificate of %r in %s has expired", row.agent, row.swarm)
        elif row.kind == REVOCATION:
            revocation = _record(Revocation, row)
            if revocation.cert_expires_at > now:
                await gate.book.revoke(revocation)
        else:
            raise MalformedMessage(f"unknown record kind {row.kind!r:.40}")

    async def _restore_deliveries(self, gate: SwarmGate, deliveries: list[tuple[Row, EpochKeyDelivery]]) -> list:
        """Held epoch keys: the admin's signature (on the wire its own connection vouched for them; a file
        does not), a member the relay knows, and only the swarm's newest epoch (an older key is stale)."""
        refused, valid = [], []
        checks = await self.crypto.verify_many([(d.issuer, d.signing_bytes(), d.sig) for _, d in deliveries])
        for (row, delivery), signed in zip(deliveries, checks):
            try:
                check_issuer(delivery.swarm, delivery.issuer, "epoch key")
                if not signed:
                    raise BadSignature(f"epoch {delivery.epoch} key is not signed by the admin")
                if not self._holdable(gate, delivery):
                    raise MissingCertificate(f"{delivery.agent_id!r} holds no certificate here")
                valid.append((row, delivery))
            except RejectedInput as exc:
                refused.append(_refuse(row, exc))
        newest = max((d.epoch for _, d in valid), default=-1)
        for row, delivery in valid:
            if delivery.epoch < newest:
                refused.append(_refuse(row, MalformedMessage(f"epoch {delivery.epoch} is older than {newest}")))
            else:
                self._hold(gate, delivery, row.body)
        return refused

    def _holdable(self, gate: SwarmGate, delivery: EpochKeyDelivery) -> bool:
        return (delivery.swarm == gate.book.swarm_id and gate.book.get(delivery.agent_id) is not None
                and delivery.epoch >= gate.epoch)

    @staticmethod
    def _hold(gate: SwarmGate, delivery: EpochKeyDelivery, text: str) -> None:
        gate.epoch_keys[delivery.agent_id] = text
        gate.epoch = max(gate.epoch, delivery.epoch)

    async def _add_certificate(self, gate: SwarmGate, cert: Certificate) -> None:
        held = gate.book.get(cert.agent_id)
        kept = await gate.book.add(cert)
        if kept != held:
            self._save(gate, put=[_certificate_row(kept)])

    def _check_room(self, gate: SwarmGate) -> None:
        if self.store is not None:
            self.store.check_room(gate.book.swarm_id, self.clock.now_ms())

    def _save(self, gate: SwarmGate, put: Iterable[tuple[str, str, int, str]] = (),
              delete: Iterable[tuple[str, str]] = ()) -> None:
        if self.store is not None:
            self.store.write(gate.book.swarm_id, self.clock.now_ms(), put, delete)


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise MalformedMessage(f"{key} must be an object")
    return value


def _record(cls, row: Row):
    """The row's record, if it parses and is filed under its own swarm and agent (not moved from another)."""
    record = cls.from_json(row.body)
    if record.swarm != row.swarm or record.agent_id != row.agent:
        raise MalformedMessage(f"a record of {record.agent_id!r:.40} in {record.swarm!r:.60} is filed elsewhere")
    return record


def _refuse(row: Row, exc: Exception) -> GateRecordRejected:
    error = GateRecordRejected(f"{row.kind:.20} of {row.agent!r:.40} in swarm {row.swarm!r:.60}: "
                               f"{type(exc).__name__}: {exc}")
    log.warning("gate state: refused %s", error)
    return error


def _certificate_row(cert: Certificate) -> tuple[str, str, int, str]:
    return CERTIFICATE, cert.agent_id, cert.expires_at, cert.to_json().decode("utf-8")


def _revocation_row(revocation: Revocation) -> tuple[str, str, int, str]:
    return REVOCATION, revocation.agent_id, revocation.cert_expires_at, revocation.to_json().decode("utf-8")


def _delivery_row(gate: SwarmGate, delivery: EpochKeyDelivery, text: str) -> tuple[str, str, int, str]:
    """Moot with the certificate of the member it is sealed to."""
    return EPOCH_KEY, delivery.agent_id, gate.book.get(delivery.agent_id).expires_at, text
