"""Registration and Heartbeat records: exact wire shape, round trips, signatures over every field."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvector_edge.canonical import canonicalize
from ruvector_edge.errors import BadSignature, MalformedMessage, OversizedMessage, RejectedInput, WrongSwarm, WrongType
from ruvector_edge.p2p import Heartbeat, IdentityManager, Registration
from ruvector_edge.p2p.keys import swarm_id_for
from ruvector_edge.p2p.wire import MAX_SAFE_INT
from ruvector_edge.platform.native import NativeCryptoProvider

SWARM = swarm_id_for(b"r" * 32)
CRYPTO = NativeCryptoProvider()

ids = st.from_regex(r"[A-Za-z0-9._:@-]{1,128}", fullmatch=True)
capability = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=64
)
registrations = st.builds(
    Registration,
    swarm=ids,
    agent_id=ids,
    ed25519_pubkey=st.binary(min_size=32, max_size=32),
    x25519_pubkey=st.binary(min_size=32, max_size=32),
    capabilities=st.lists(capability, min_size=0, max_size=64).map(tuple),
    joined_at=st.integers(0, MAX_SAFE_INT),
    sig=st.binary(min_size=64, max_size=64),
)
heartbeats = st.builds(
    Heartbeat,
    swarm=ids,
    agent_id=ids,
    seq=st.integers(0, MAX_SAFE_INT),
    timestamp=st.integers(0, MAX_SAFE_INT),
    load=st.floats(0.0, 1.0, allow_nan=False),
    queue_depth=st.integers(0, 1_000_000_000),
    sig=st.binary(min_size=64, max_size=64),
)


@settings(max_examples=300, deadline=None)
@given(reg=registrations)
def test_registration_round_trip(reg):
    data = reg.to_json()
    if len(data) > 8 * 1024:  # many long multi-byte capabilities: bigger than a record may be
        with pytest.raises(OversizedMessage):
            Registration.from_json(data)
        return
    back = Registration.from_json(data)
    assert back == reg
    assert back.to_json() == data
    assert back.signing_bytes() == reg.signing_bytes()


@settings(max_examples=300, deadline=None)
@given(hb=heartbeats)
def test_heartbeat_round_trip(hb):
    data = hb.to_json()
    back = Heartbeat.from_json(data)
    assert back == hb
    assert back.to_json() == data
    assert back.signing_bytes() == hb.signing_bytes()


@settings(max_examples=100, deadline=None)
@given(agent_id=ids, caps=st.lists(capability, min_size=1, max_size=5), load=st.floats(0.0, 1.0),
       seq=st.integers(0, MAX_SAFE_INT), queue=st.integers(0, 1000))
def test_signed_records_verify_after_round_trip(agent_id, caps, load, seq, queue):
    async def scenario():
        identity = await IdentityManager.generate(CRYPTO)
        reg = await identity.create_registration(agent_id, caps, swarm=SWARM)
        await Registration.from_json(reg.to_json()).verify(CRYPTO, SWARM)
        hb = await identity.create_heartbeat(agent_id, swarm=SWARM, seq=seq, timestamp=1, load=load, queue_depth=queue)
        back = Heartbeat.from_json(hb.to_json())
        assert await CRYPTO.verify(identity.ed25519_public, back.signing_bytes(), back.sig)

    asyncio.run(scenario())


def test_registration_wire_shape():
    reg = Registration(swarm=SWARM, agent_id="a", ed25519_pubkey=bytes(32), x25519_pubkey=b"\x01" * 32,
                       capabilities=("w",), joined_at=5, sig=b"\x02" * 64)
    obj = json.loads(reg.to_json())
    assert obj == {"type": "registration", "swarm": SWARM, "agent_id": "a", "ed25519_pubkey": "00" * 32,
                   "x25519_pubkey": "01" * 32, "capabilities": ["w"], "joined_at": 5, "sig": "02" * 64}
    assert reg.to_json() == canonicalize(obj)
    assert b'"sig"' not in reg.signing_bytes() and b'"type":"registration"' in reg.signing_bytes()
    assert b'"swarm"' in reg.signing_bytes()


def test_heartbeat_wire_shape():
    hb = Heartbeat(swarm=SWARM, agent_id="a", seq=1, timestamp=2, load=0.5, queue_depth=3, sig=bytes(64))
    obj = json.loads(hb.to_json())
    assert set(obj) == {"type", "swarm", "agent_id", "seq", "timestamp", "load", "queue_depth", "sig"}
    assert obj["type"] == "heartbeat"
    assert b'"sig"' not in hb.signing_bytes() and b'"type":"heartbeat"' in hb.signing_bytes()


def test_registration_and_heartbeat_signing_bytes_never_collide():
    reg = Registration(swarm=SWARM, agent_id="a", ed25519_pubkey=bytes(32), x25519_pubkey=bytes(32),
                       capabilities=("w",), joined_at=1)
    hb = Heartbeat(swarm=SWARM, agent_id="a", seq=1, timestamp=1, load=0.0, queue_depth=0)
    assert reg.signing_bytes() != hb.signing_bytes()


@pytest.mark.parametrize("kind, other", [(Registration, "heartbeat"), (Heartbeat, "registration"),
                                          (Registration, "envelope"), (Heartbeat, "REGISTRATION")])
def test_wrong_type_field(kind, other):
    base = (Registration(swarm=SWARM, agent_id="a", ed25519_pubkey=bytes(32), x25519_pubkey=bytes(32),
                         capabilities=("w",), joined_at=1, sig=bytes(64))
            if kind is Registration else
            Heartbeat(swarm=SWARM, agent_id="a", seq=1, timestamp=1, load=0.0, queue_depth=0, sig=bytes(64)))
    obj = {**base.to_dict(), "type": other}
    with pytest.raises(WrongType):
        kind.from_dict(obj)
    with pytest.raises(WrongType):
        kind.from_json(json.dumps(obj))


REG_BAD = {
    "swarm": [1, "", None, "a b"],
    "agent_id": [1, "", "x" * 129, "a/b", None],
    "ed25519_pubkey": ["00" * 31, "AA" * 32, 0, None, "00" * 33],
    "x25519_pubkey": ["00" * 31, "GG" * 32, [], None],
    "capabilities": ["worker", [""], [1], ["a" * 65], ["w"] * 65, None, {"w": 1}],
    "joined_at": [True, 1.5, "1", -1, 2**53, None],
    "sig": ["00" * 63, "AB" * 64, 1, None],
}


@pytest.mark.parametrize("field, value", [(f, v) for f, vs in REG_BAD.items() for v in vs])
def test_registration_field_types(field, value):
    good = Registration(swarm=SWARM, agent_id="a", ed25519_pubkey=bytes(32), x25519_pubkey=bytes(32),
                        capabilities=("w",), joined_at=1, sig=bytes(64)).to_dict()
    Registration.from_dict(good)
    with pytest.raises(MalformedMessage):
        Registration.from_json(json.dumps({**good, field: value}))


HB_BAD = {
    "seq": [True, 1.0, "1", -1, 2**53],
    "timestamp": [False, 0.5, "5", -1],
    "load": [True, "0.5", -0.5, 1.5, None, 2],
    "queue_depth": [True, 1.0, -1, 10**9 + 1, "3"],
    "agent_id": [1, "", None],
    "swarm": [None, 7],
    "sig": ["", "zz" * 64],
}


@pytest.mark.parametrize("field, value", [(f, v) for f, vs in HB_BAD.items() for v in vs])
def test_heartbeat_field_types(field, value):
    good = Heartbeat(swarm=SWARM, agent_id="a", seq=1, timestamp=1, load=0.5, queue_depth=0, sig=bytes(64)).to_dict()
    Heartbeat.from_dict(good)
    with pytest.raises(MalformedMessage):
        Heartbeat.from_json(json.dumps({**good, field: value}))


@pytest.mark.parametrize("kind", [Registration, Heartbeat])
def test_missing_and_extra_fields(kind):
    good = (Registration(swarm=SWARM, agent_id="a", ed25519_pubkey=bytes(32), x25519_pubkey=bytes(32),
                         capabilities=("w",), joined_at=1, sig=bytes(64))
            if kind is Registration else
            Heartbeat(swarm=SWARM, agent_id="a", seq=1, timestamp=1, load=0.5, queue_depth=0, sig=bytes(64))).to_dict()
    for key in good:
        with pytest.raises(MalformedMessage):
            kind.from_json(json.dumps({k: v for k, v in good.items() if k != key}))
    for extra in ("pubkey", "ed25519_pubkey", "nonce", ""):
        if extra in good:
            continue
        with pytest.raises(MalformedMessage):
            kind.from_json(json.dumps({**good, extra: "x"}))


@pytest.mark.parametrize("kind", [Registration, Heartbeat])
def test_oversized_record(kind):
    with pytest.raises(OversizedMessage):
        kind.from_json(b"{" + b" " * 9000 + b"}")


def test_duplicate_key_in_record():
    good = Heartbeat(swarm=SWARM, agent_id="a", seq=1, timestamp=1, load=0.5, queue_depth=0, sig=bytes(64)).to_json()
    with pytest.raises(MalformedMessage):
        Heartbeat.from_json(good[:-1] + b',"seq":2}')


async def test_registration_verify_wrong_swarm_and_tamper(crypto):
    identity = await IdentityManager.generate(crypto)
    reg = await identity.create_registration("a", ["w"], swarm=SWARM)
    await reg.verify(crypto, SWARM)
    with pytest.raises(WrongSwarm):
        await reg.verify(crypto, swarm_id_for(b"x" * 32))
    with pytest.raises(BadSignature):
        await dataclasses.replace(reg, capabilities=("w", "admin")).verify(crypto, SWARM)
    # a registration signed for another swarm, relabelled, fails its signature
    with pytest.raises(BadSignature):
        await dataclasses.replace(reg, swarm=swarm_id_for(b"x" * 32)).verify(crypto, swarm_id_for(b"x" * 32))


async def test_lone_surrogate_capability_is_rejected_input(crypto):
    """json.loads accepts "\\ud800" in a str; it has no canonical form, so it must be refused as input."""
    identity = await IdentityManager.generate(crypto)
    reg = await identity.create_registration("a", ["w"], swarm=SWARM)
    text = json.dumps({**reg.to_dict(), "capabilities": ["\ud800"]})
    with pytest.raises(RejectedInput):
        parsed = Registration.from_json(text)
        await parsed.verify(crypto, SWARM)
