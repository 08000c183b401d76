"""Admission records (certificates, invites, revocations, epoch-key deliveries): strict decoders, signatures
that bind to the admin the swarm id names, and an admission state that refuses what it must (sans-I/O)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import START_MS, make_runtime
from ruvector_edge.errors import (
    BadSignature,
    DecryptionFailed,
    ExpiredCertificate,
    ExpiredInvite,
    InvalidCertificate,
    InvalidInvite,
    InviteExhausted,
    MalformedMessage,
    RejectedInput,
    RevokedMember,
    UnknownEpoch,
    WrongType,
)
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.p2p.admission import Admission, AdminAuthority
from ruvector_edge.p2p.certificates import Certificate, Revocation, admitted_swarm_id, is_admitted
from ruvector_edge.p2p.epochs import EpochKeyDelivery, EpochKeys
from ruvector_edge.p2p.invites import Invite
from ruvector_edge.p2p.keys import swarm_id_for
from ruvector_edge.p2p.wire import MAX_SAFE_INT
from ruvector_edge.platform.base import FakeClock

ids = st.from_regex(r"[A-Za-z0-9._:@-]{1,128}", fullmatch=True)
roles = st.lists(st.from_regex(r"[a-z]{1,12}", fullmatch=True), max_size=16).map(tuple)
key32 = st.binary(min_size=32, max_size=32)
sig = st.binary(min_size=64, max_size=64)
ints = st.integers(0, MAX_SAFE_INT)

RECORDS = {
    Certificate: st.builds(Certificate, swarm=ids, issuer=key32, agent_id=ids, ed25519_pubkey=key32, x25519_pubkey=key32,
                           roles=roles, serial=ints, issued_at=ints, expires_at=ints, sig=sig),
    Invite: st.builds(Invite, swarm=ids, issuer=key32, invite_id=st.binary(min_size=16, max_size=16).map(bytes.hex),
                      roles=roles, max_uses=st.integers(1, 1000), expires_at=ints, sig=sig),
    Revocation: st.builds(Revocation, swarm=ids, issuer=key32, agent_id=ids, ed25519_pubkey=key32, serial=ints,
                          cert_expires_at=ints, revoked_at=ints, sig=sig),
    EpochKeyDelivery: st.builds(EpochKeyDelivery, swarm=ids, issuer=key32, epoch=ints, agent_id=ids, ephemeral=key32,
                                iv=st.binary(min_size=12, max_size=12), ct=st.binary(min_size=48, max_size=48),
                                issued_at=ints, sig=sig),
}


@pytest.mark.parametrize("cls", list(RECORDS), ids=lambda c: c.__name__)
def test_round_trip_is_exact(cls):
    @settings(max_examples=100, deadline=None)
    @given(record=RECORDS[cls])
    def check(record):
        data = record.to_json()
        back = cls.from_json(data)
        assert back == record and back.to_json() == data

    check()


@pytest.mark.parametrize("cls", list(RECORDS), ids=lambda c: c.__name__)
def test_decoders_refuse_arbitrary_json_with_typed_errors(cls):
    """Whatever the bytes, a decoder returns a record or raises a RejectedInput subclass (never anything else)."""
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
        max_leaves=20)

    @settings(max_examples=150, deadline=None)
    @given(record=RECORDS[cls], key=st.sampled_from(sorted({*cls.__dataclass_fields__, "type"})), value=json_values)
    def check(record, key, value):
        obj = record.to_dict()
        obj[key] = value
        try:
            back = cls.from_dict(obj)
        except RejectedInput:
            return
        assert back.to_dict() == obj  # accepted only when the altered field is still a valid value

    check()


def test_a_record_of_one_kind_never_decodes_as_another():
    cert = Certificate(swarm="adm-1", issuer=b"\x01" * 32, agent_id="bob", ed25519_pubkey=b"\x02" * 32,
                       x25519_pubkey=b"\x03" * 32, roles=("worker",), serial=1, issued_at=2, expires_at=3, sig=b"\x04" * 64)
    with pytest.raises((WrongType, MalformedMessage)):
        Revocation.from_dict(cert.to_dict())
    obj = cert.to_dict()
    obj["type"] = "revocation"
    with pytest.raises((WrongType, MalformedMessage)):
        Certificate.from_dict(obj)


def test_admitted_swarm_ids_never_look_like_open_ones():
    assert is_admitted(admitted_swarm_id(b"\x01" * 32))
    assert not is_admitted(swarm_id_for(b"\x01" * 32))
    assert admitted_swarm_id(b"\x01" * 32) != admitted_swarm_id(b"\x02" * 32)


# The admin and one member, sans I/O ------------------------------------------------------------------

class World:
    def __init__(self) -> None:
        self.clock = FakeClock(START_MS)
        self.runtime = make_runtime(self.clock)

    async def admin(self) -> AdminAuthority:
        crypto = self.runtime.crypto
        identity = await IdentityManager.generate(crypto)
        admission = Admission(admitted_swarm_id(identity.ed25519_public), crypto, self.clock)
        authority = AdminAuthority(identity, crypto, self.runtime.random, self.clock, admission)
        admission.authority = authority
        admission.epochs.install(0, b"k" * 32, self.clock.now_ms())
        return authority

    async def joiner(self, authority: AdminAuthority, agent_id: str = "bob", caps=("worker",)):
        identity = await IdentityManager.generate(self.runtime.crypto)
        registration = await identity.create_registration(agent_id, caps, swarm=authority.swarm_id, clock=self.clock)
        return identity, registration


def run(coro):
    return asyncio.run(coro)


def test_an_invite_is_traded_once_for_a_certificate_and_the_sealed_key():
    async def scenario():
        w = World()
        admin = await w.admin()
        invite = await admin.create_invite(["worker"])
        identity, registration = await w.joiner(admin)
        cert, delivery = await admin.admit(registration, Invite.from_token(invite.to_token()))
        member = Admission(admin.swarm_id, w.runtime.crypto, w.clock, invite=invite)
        await member.accept_certificate(cert, identity, registration)
        assert await member.accept_epoch(delivery, identity, "bob")
        assert member.epochs.key == b"k" * 32 and member.admitted
        # Replayed: the one use is spent, whoever presents it.
        other, other_reg = await w.joiner(admin, "carol")
        with pytest.raises(InviteExhausted):
            await admin.admit(other_reg, invite)
        assert "carol" not in admin.members

    run(scenario())


def test_invites_refuse_forgery_expiry_and_roles_they_do_not_allow_without_spending_a_use():
    async def scenario():
        w = World()
        admin, stranger = await w.admin(), await w.admin()
        invite = await admin.create_invite(["worker"], max_uses=2, ttl_ms=60_000)
        _, reg = await w.joiner(admin)
        forged = dataclasses.replace(invite, max_uses=1000)
        with pytest.raises(InvalidInvite):
            await admin.admit(reg, forged)
        foreign = await stranger.create_invite(["worker"])
        with pytest.raises(RejectedInput):  # another swarm's invite
            await admin.admit(reg, foreign)
        _, coordinator_reg = await w.joiner(admin, "eve", ("coordinator",))
        with pytest.raises(InvalidInvite):
            await admin.admit(coordinator_reg, invite)
        assert admin.ledger.uses_left(invite.invite_id) == 2
        w.clock.advance(60_000)
        with pytest.raises(ExpiredInvite):
            await admin.admit(reg, invite)
        assert admin.ledger.uses_left(invite.invite_id) == 2

    run(scenario())


def test_the_book_refuses_forged_expired_and_revoked_certificates():
    async def scenario():
        w = World()
        admin, stranger = await w.admin(), await w.admin()
        _, reg = await w.joiner(admin)
        cert = await admin.certify("bob", reg.ed25519_pubkey, reg.x25519_pubkey, ["worker"])
        book = Admission(admin.swarm_id, w.runtime.crypto, w.clock).book
        with pytest.raises(InvalidCertificate):  # a field changed after signing
            await book.add(dataclasses.replace(cert, roles=("worker", "coordinator")))
        alien = await stranger.certify("bob", reg.ed25519_pubkey, reg.x25519_pubkey, ["worker"])
        with pytest.raises(RejectedInput):  # signed by an admin of another swarm
            await book.add(dataclasses.replace(alien, swarm=admin.swarm_id))
        await book.add(cert)
        assert book.require("bob", reg.ed25519_pubkey).serial == cert.serial
        with pytest.raises(InvalidCertificate):
            book.require("bob", b"\x09" * 32)
        revocation, deliveries = await admin.revoke("bob")
        assert deliveries == []  # nobody else to rekey
        forged = dataclasses.replace(revocation, agent_id="alice")
        with pytest.raises(BadSignature):
            await book.revoke(forged)
        assert await book.revoke(revocation)
        with pytest.raises(RevokedMember):
            book.require("bob", reg.ed25519_pubkey)
        with pytest.raises(RevokedMember):  # the same key cannot come back under a new certificate
            await book.add(cert)
        with pytest.raises(RevokedMember):
            await admin.certify("bob2", reg.ed25519_pubkey, reg.x25519_pubkey, ["worker"])
        w.clock.advance(cert.expires_at - w.clock.now_ms())
        _, later = await w.joiner(admin, "dave")
        dave = await admin.certify("dave", later.ed25519_pubkey, later.x25519_pubkey, ["worker"])
        await book.add(dave)
        w.clock.advance(dave.expires_at - w.clock.now_ms())
        with pytest.raises(ExpiredCertificate):
            book.require("dave", later.ed25519_pubkey)

    run(scenario())


def test_a_rekey_after_removal_reaches_every_remaining_member_but_not_the_removed_one():
    async def scenario():
        w = World()
        admin = await w.admin()
        members = {}
        for name in ("bob", "carol", "mallory"):
            identity, reg = await w.joiner(admin, name)
            invite = await admin.create_invite(["worker"])
            cert, delivery = await admin.admit(reg, invite)
            state = Admission(admin.swarm_id, w.runtime.crypto, w.clock)
            await state.accept_certificate(cert, identity, reg)
            await state.accept_epoch(delivery, identity, name)
            members[name] = (identity, state)
        _, deliveries = await admin.revoke("mallory")
        assert sorted(d.agent_id for d in deliveries) == ["bob", "carol"]
        new_key = admin.admission.epochs.key
        assert new_key != b"k" * 32 and admin.admission.epochs.epoch == 1
        for delivery in deliveries:
            identity, state = members[delivery.agent_id]
            assert await state.accept_epoch(delivery, identity, delivery.agent_id)
            assert state.epochs.key == new_key
            assert not await state.accept_epoch(delivery, identity, delivery.agent_id)  # a repeat changes nothing
        mallory_identity, mallory = members["mallory"]
        for delivery in deliveries:  # a delivery captured off the wire opens for its recipient only
            with pytest.raises(DecryptionFailed):
                await delivery.open(w.runtime.crypto, mallory_identity, admin.swarm_id, delivery.agent_id)
            with pytest.raises(BadSignature):  # re-addressed: the admin's signature no longer covers it
                await dataclasses.replace(delivery, agent_id="mallory").open(
                    w.runtime.crypto, mallory_identity, admin.swarm_id, "mallory")
        assert mallory.epochs.key == b"k" * 32

    run(scenario())


def test_the_previous_epoch_opens_only_within_its_grace_window():
    keys = EpochKeys(grace_ms=1000)
    keys.install(0, b"a" * 32, 0)
    keys.install(1, b"b" * 32, 10_000)
    assert keys.key_for(1, 10_500) == b"b" * 32
    assert keys.key_for(0, 10_999) == b"a" * 32
    with pytest.raises(UnknownEpoch):
        keys.key_for(0, 11_000)
    with pytest.raises(UnknownEpoch):
        keys.key_for(2, 10_000)
    assert not keys.install(1, b"c" * 32, 12_000)
    assert keys.key == b"b" * 32
