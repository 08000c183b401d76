"""IdentityManager persistence and fingerprints."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat

import pytest

from ruvector_edge.errors import IdentityFileError
from ruvector_edge.p2p import IdentityManager, fingerprint
from ruvector_edge.p2p.keys import swarm_id_for

FINGERPRINT = re.compile(r"[0-9a-f]{4}(:[0-9a-f]{4}){7}")
SWARM = swarm_id_for(b"s" * 32)


@pytest.fixture
async def identity(crypto) -> IdentityManager:
    return await IdentityManager.generate(crypto)


def write_secret(path, content: bytes | str, mode: int = 0o600) -> None:
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


async def test_save_load_round_trip_keeps_keys_and_fingerprint(identity, crypto, tmp_path):
    path = tmp_path / "agent.id"
    identity.save(path)
    loaded = await IdentityManager.load(crypto, path)
    assert loaded.ed25519_public == identity.ed25519_public
    assert loaded.x25519_public == identity.x25519_public
    assert loaded.fingerprint == identity.fingerprint
    message = b"signed before and after"
    assert await crypto.verify(identity.ed25519_public, message, await loaded.sign(message))
    assert await loaded.sign(message) == await identity.sign(message)  # Ed25519 is deterministic
    peer = await IdentityManager.generate(crypto)
    assert await loaded.session_key(peer.x25519_public, SWARM) == await identity.session_key(peer.x25519_public, SWARM)


async def test_saved_file_mode_is_0600(identity, tmp_path):
    path = tmp_path / "agent.id"
    old = os.umask(0)
    try:
        identity.save(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name != "agent.id"]  # no temp file left behind


async def test_save_over_world_readable_file_makes_it_0600(identity, crypto, tmp_path):
    path = tmp_path / "agent.id"
    path.write_text("old")
    os.chmod(path, 0o644)
    identity.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (await IdentityManager.load(crypto, path)).fingerprint == identity.fingerprint


async def test_saved_file_format(identity, tmp_path):
    path = tmp_path / "agent.id"
    identity.save(path)
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert len(base64.b64decode(doc["ed25519_seed"])) == 32 and len(base64.b64decode(doc["x25519_private"])) == 32


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o610, 0o601])
async def test_load_refuses_group_or_world_accessible_file(identity, crypto, tmp_path, mode):
    path = tmp_path / "agent.id"
    identity.save(path)
    os.chmod(path, mode)
    with pytest.raises(IdentityFileError):
        await IdentityManager.load(crypto, path)


async def test_load_accepts_0400(identity, crypto, tmp_path):
    path = tmp_path / "agent.id"
    identity.save(path)
    os.chmod(path, 0o400)
    assert (await IdentityManager.load(crypto, path)).fingerprint == identity.fingerprint


async def test_missing_file(crypto, tmp_path):
    with pytest.raises(IdentityFileError):
        await IdentityManager.load(crypto, tmp_path / "nope.id")


async def test_directory_instead_of_file(crypto, tmp_path):
    target = tmp_path / "dir.id"
    target.mkdir(mode=0o700)
    with pytest.raises(IdentityFileError):
        await IdentityManager.load(crypto, target)


SEED = base64.b64encode(bytes(range(32))).decode()
MALFORMED = {
    "empty": "",
    "not-json": "not json at all",
    "list": "[]",
    "string": '"identity"',
    "null": "null",
    "empty-object": "{}",
    "version-2": json.dumps({"version": 2, "ed25519_seed": SEED, "x25519_private": SEED}),
    "version-str": json.dumps({"version": "1", "ed25519_seed": SEED, "x25519_private": SEED}),
    "no-version": json.dumps({"ed25519_seed": SEED, "x25519_private": SEED}),
    "missing-seed": json.dumps({"version": 1, "x25519_private": SEED}),
    "missing-x25519": json.dumps({"version": 1, "ed25519_seed": SEED}),
    "non-base64": json.dumps({"version": 1, "ed25519_seed": "!!not base64!!", "x25519_private": SEED}),
    "short-seed": json.dumps({"version": 1, "ed25519_seed": base64.b64encode(bytes(31)).decode(), "x25519_private": SEED}),
    "long-x25519": json.dumps({"version": 1, "ed25519_seed": SEED, "x25519_private": base64.b64encode(bytes(33)).decode()}),
    "seed-int": json.dumps({"version": 1, "ed25519_seed": 5, "x25519_private": SEED}),
    "seed-null": json.dumps({"version": 1, "ed25519_seed": None, "x25519_private": SEED}),
}


@pytest.mark.parametrize("content", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_file(crypto, tmp_path, content):
    path = tmp_path / "agent.id"
    write_secret(path, content)
    with pytest.raises(IdentityFileError):
        await IdentityManager.load(crypto, path)


@pytest.mark.parametrize(
    "content", [b"\xff\xfe\xfd garbage", b'{"version": 1, "ed25519_seed": "\xc3"}', b"[" * 100_000],
    ids=["not-utf8", "bad-utf8-in-json", "deep-nesting"],
)
async def test_binary_or_pathological_file_is_identity_file_error(crypto, tmp_path, content):
    path = tmp_path / "agent.id"
    write_secret(path, content)
    with pytest.raises(IdentityFileError):
        await IdentityManager.load(crypto, path)


async def test_from_secrets_checks_lengths(crypto):
    with pytest.raises(IdentityFileError):
        await IdentityManager.from_secrets(crypto, bytes(31), bytes(32))
    with pytest.raises(IdentityFileError):
        await IdentityManager.from_secrets(crypto, bytes(32), b"")


async def test_from_secrets_is_deterministic(crypto):
    a = await IdentityManager.from_secrets(crypto, bytes(range(32)), bytes(range(32, 64)))
    b = await IdentityManager.from_secrets(crypto, bytes(range(32)), bytes(range(32, 64)))
    assert (a.ed25519_public, a.x25519_public) == (b.ed25519_public, b.x25519_public)


async def test_rfc8032_test_1_public_key(crypto):
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    identity = await IdentityManager.from_secrets(crypto, seed, bytes(range(32)))
    assert identity.ed25519_public.hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def test_fingerprint_format():
    key = bytes(range(32))
    fp = fingerprint(key)
    assert FINGERPRINT.fullmatch(fp)
    assert fp.replace(":", "") == hashlib.sha256(key).hexdigest()[:32]
    assert fingerprint(bytes(32)) != fingerprint(b"\x01" + bytes(31))


async def test_identity_fingerprint_is_of_ed25519_key(identity):
    assert FINGERPRINT.fullmatch(identity.fingerprint)
    assert identity.fingerprint == fingerprint(identity.ed25519_public)
    assert identity.fingerprint in repr(identity)


async def test_repr_does_not_leak_the_seed(identity):
    text = repr(identity)
    assert identity._seed.hex() not in text and base64.b64encode(identity._seed).decode() not in text


async def test_two_identities_differ(crypto):
    a, b = await IdentityManager.generate(crypto), await IdentityManager.generate(crypto)
    assert a.ed25519_public != b.ed25519_public and a.x25519_public != b.x25519_public
    assert a.fingerprint != b.fingerprint


async def test_create_registration_verifies(identity, crypto, clock):
    reg = await identity.create_registration("agent-1", ["worker"], swarm=SWARM, clock=clock)
    assert reg.joined_at == clock.now_ms()
    assert reg.ed25519_pubkey == identity.ed25519_public and reg.x25519_pubkey == identity.x25519_public
    await reg.verify(crypto, SWARM)
