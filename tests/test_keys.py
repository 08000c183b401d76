"""Swarm id, payload hash and the X25519 + HKDF session-key derivation (checked independently)."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from conftest import make_members
from ruvector_edge.errors import SessionKeyError
from ruvector_edge.p2p import IdentityManager, P2PSwarm, Registration, SwarmKey, derive_session_key, swarm_id_for
from ruvector_edge.p2p.keys import payload_hash

LOW_ORDER_POINTS = [
    bytes(32),  # u = 0
    b"\x01" + bytes(31),  # u = 1
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),  # order 8
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),  # order 8
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # p - 1
]


def raw_pair() -> tuple[bytes, bytes]:
    private = X25519PrivateKey.generate()
    return private.private_bytes_raw(), private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def expected_session_key(our_private: bytes, our_public: bytes, peer_public: bytes, swarm_id: str) -> bytes:
    """The spec's derivation, written out with `cryptography` alone."""
    shared = X25519PrivateKey.from_private_bytes(our_private).exchange(X25519PublicKey.from_public_bytes(peer_public))
    salt = hashlib.sha256(min(our_public, peer_public) + max(our_public, peer_public)).digest()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=f"p2p-swarm-v2:{swarm_id}".encode()).derive(shared)


def test_swarm_id_is_first_8_bytes_of_sha256():
    key = bytes(range(32))
    assert swarm_id_for(key) == hashlib.sha256(key).hexdigest()[:16]
    assert SwarmKey(key).swarm_id == swarm_id_for(key)
    assert swarm_id_for(key) != swarm_id_for(bytes(32))


def test_swarm_key_length_and_repr():
    with pytest.raises(ValueError):
        SwarmKey(bytes(31))
    key = os.urandom(32)
    assert key.hex() not in repr(SwarmKey(key))


def test_payload_hash_is_keyed():
    k1, k2 = os.urandom(32), os.urandom(32)
    assert payload_hash(k1, b"x") != payload_hash(k2, b"x")
    assert payload_hash(k1, b"x") != payload_hash(k1, b"y")
    assert payload_hash(k1, b"x") != hashlib.sha256(b"x").digest()
    label_key = hashlib.sha256(b"ruvector-edge/payload-hash/v1" + k1).digest()
    assert payload_hash(k1, b"x") == hmac.new(label_key, b"x", hashlib.sha256).digest()


async def test_session_key_matches_independent_hkdf_x25519(crypto):
    a_priv, a_pub = raw_pair()
    b_priv, b_pub = raw_pair()
    swarm = "0123456789abcdef"
    ours = await derive_session_key(crypto, a_priv, a_pub, b_pub, swarm)
    theirs = await derive_session_key(crypto, b_priv, b_pub, a_pub, swarm)
    assert ours == theirs == expected_session_key(a_priv, a_pub, b_pub, swarm)
    assert len(ours) == 32


async def test_salt_uses_sorted_public_keys_not_argument_order(crypto):
    a_priv, a_pub = raw_pair()
    b_priv, b_pub = raw_pair()
    swarm = "feedfacefeedface"
    shared = X25519PrivateKey.from_private_bytes(a_priv).exchange(X25519PublicKey.from_public_bytes(b_pub))
    info = f"p2p-swarm-v2:{swarm}".encode()

    def hkdf(salt):
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(shared)

    sorted_salt = hashlib.sha256(min(a_pub, b_pub) + max(a_pub, b_pub)).digest()
    unsorted_salt = hashlib.sha256(max(a_pub, b_pub) + min(a_pub, b_pub)).digest()
    got = await derive_session_key(crypto, a_priv, a_pub, b_pub, swarm)
    assert got == hkdf(sorted_salt)
    assert got != hkdf(unsorted_salt)
    assert got != hkdf(None) and got != hkdf(hashlib.sha256(b"").digest())


async def test_session_key_through_swarm_matches_independent_derivation(runtime, swarm_key):
    a_priv, a_pub = raw_pair()
    b_priv, b_pub = raw_pair()
    crypto = runtime.crypto
    alice_id = await IdentityManager.from_secrets(crypto, os.urandom(32), a_priv)
    bob_id = await IdentityManager.from_secrets(crypto, os.urandom(32), b_priv)
    alice = await P2PSwarm.create("alice", swarm_key, runtime=runtime, identity=alice_id)
    bob = await P2PSwarm.create("bob", swarm_key, runtime=runtime, identity=bob_id)
    await alice.register_member(bob.registration)
    await bob.register_member(alice.registration)
    k_ab = await alice.derive_session_key("bob")
    assert k_ab == await bob.derive_session_key("alice")
    assert k_ab == expected_session_key(a_priv, a_pub, b_pub, swarm_id_for(swarm_key))
    assert k_ab != swarm_key


async def test_session_key_differs_per_peer(trio):
    alice, bob, carol = trio
    ab, ac = await alice.derive_session_key("bob"), await alice.derive_session_key("carol")
    assert ab != ac
    assert ac == await carol.derive_session_key("alice")
    assert await bob.derive_session_key("carol") not in (ab, ac)


async def test_session_key_differs_per_swarm_id(crypto):
    a_priv, a_pub = raw_pair()
    _, b_pub = raw_pair()
    k1 = await derive_session_key(crypto, a_priv, a_pub, b_pub, "aaaaaaaaaaaaaaaa")
    k2 = await derive_session_key(crypto, a_priv, a_pub, b_pub, "aaaaaaaaaaaaaaab")
    assert k1 != k2


async def test_same_identities_in_two_swarms_get_different_session_keys(runtime):
    crypto = runtime.crypto
    a, b = await IdentityManager.generate(crypto), await IdentityManager.generate(crypto)
    keys = []
    for swarm_key in (os.urandom(32), os.urandom(32)):
        alice = await P2PSwarm.create("alice", swarm_key, runtime=runtime, identity=a)
        bob = await P2PSwarm.create("bob", swarm_key, runtime=runtime, identity=b)
        await alice.register_member(bob.registration)
        keys.append(await alice.derive_session_key("bob"))
    assert keys[0] != keys[1]


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8])
async def test_low_order_peer_key_raises(crypto, point):
    a_priv, a_pub = raw_pair()
    with pytest.raises(SessionKeyError):
        await derive_session_key(crypto, a_priv, a_pub, point, "0123456789abcdef")


async def test_registered_low_order_peer_key_gives_session_key_error(runtime, swarm_key):
    m = await make_members(("alice",), swarm_key, runtime)
    alice = m["alice"]
    evil = await IdentityManager.generate(runtime.crypto)
    unsigned = Registration(swarm=alice.swarm_id, agent_id="evil", ed25519_pubkey=evil.ed25519_public,
                            x25519_pubkey=LOW_ORDER_POINTS[1], capabilities=("worker",),
                            joined_at=runtime.clock.now_ms())
    reg = Registration(**{**unsigned.__dict__, "sig": await evil.sign(unsigned.signing_bytes())})
    await alice.register_member(reg)  # not all-zero, so the registry admits it
    with pytest.raises(SessionKeyError):
        await alice.derive_session_key("evil")
    with pytest.raises(SessionKeyError):
        await alice.send_direct("evil", b"x")


async def test_session_key_for_unknown_peer(trio):
    alice, _, _ = trio
    with pytest.raises(SessionKeyError):
        await alice.derive_session_key("nobody")


async def test_reregistration_clears_cached_session_key(runtime, swarm_key, clock):
    m = await make_members(("alice", "bob"), swarm_key, runtime)
    alice, bob = m["alice"], m["bob"]
    before = await alice.derive_session_key("bob")
    assert "bob" in alice._session_keys
    clock.advance(1)
    newer = await bob.identity.create_registration("bob", ["worker", "gpu"], swarm=bob.swarm_id, clock=clock)
    await alice.register_member(newer)
    assert "bob" not in alice._session_keys
    assert await alice.derive_session_key("bob") == before  # same keys, same session key
