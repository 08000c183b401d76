"""CIDv1, the chunked artifact store (memory and disk), peer chunk exchange, signed artifact pointers."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvector_edge.artifacts import (
    CHUNK_SIZE,
    JSON,
    RAW,
    ArtifactPointer,
    ArtifactStore,
    ArtifactType,
    DiskBlockStore,
    LruBlockCache,
    StoreLimits,
    cid_for,
    content_checksum,
    parse_cid,
)
from ruvector_edge.errors import (
    BadSignature,
    ChunkHashMismatch,
    InvalidCid,
    MalformedMessage,
    MissingChunks,
    OversizedMessage,
    WrongSwarm,
    WrongType,
)
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.platform.native import NativeCryptoProvider

CRYPTO = NativeCryptoProvider()


# CIDs --------------------------------------------------------------------------------------

def test_known_cid_vectors():
    # sha2-256 raw CIDv1 values as printed by `ipfs add --cid-version 1 --raw-leaves`
    assert cid_for(b"hello world") == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert cid_for(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_cid_built_by_hand_from_the_multiformats_spec():
    digest = hashlib.sha256(b"hello world").digest()
    assert digest.hex() == "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + digest  # version, raw, sha2-256, 32 bytes
    assert cid_for(b"hello world") == "b" + base64.b32encode(binary).decode().rstrip("=").lower()
    json_binary = bytes([0x01, 0x80, 0x04, 0x12, 0x20]) + hashlib.sha256(b"{}").digest()  # 0x0200 as a varint
    assert cid_for(b"{}", JSON) == "b" + base64.b32encode(json_binary).decode().rstrip("=").lower()


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=300), codec=st.sampled_from([RAW, JSON]))
def test_cid_round_trip(data, codec):
    text = cid_for(data, codec)
    parsed = parse_cid(text)
    assert (parsed.codec, parsed.digest) == (codec, hashlib.sha256(data).digest())
    assert parsed.matches(data)


HELLO = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


@pytest.mark.parametrize(
    "bad",
    [
        HELLO.upper(),
        HELLO[:-1],
        HELLO + "a",
        "z" + HELLO[1:],
        "QmaozNR7DZHQK1ZcU9p7QdrshMvXqWK6gpu5rmrkPdT3L4",  # CIDv0
        "b" + base64.b32encode(bytes([1, 0x70, 0x12, 0x20]) + bytes(32)).decode().rstrip("=").lower(),  # dag-pb
        "b" + base64.b32encode(bytes([1, 0x55, 0x13, 0x20]) + bytes(32)).decode().rstrip("=").lower(),  # sha2-512 code
        "b" + base64.b32encode(bytes([2, 0x55, 0x12, 0x20]) + bytes(32)).decode().rstrip("=").lower(),  # version 2
        "b" + base64.b32encode(bytes([1, 0xD5, 0x00, 0x12, 0x20]) + bytes(32)).decode().rstrip("=").lower(),  # overlong varint
        "",
        None,
        b"bafk",
        "../../../etc/passwd",
    ],
)
def test_bad_cids_are_refused(bad):
    with pytest.raises(InvalidCid):
        parse_cid(bad)


# Store -------------------------------------------------------------------------------------

def test_small_artifact_is_one_raw_block_named_by_its_own_cid():
    store = ArtifactStore()
    assert store.store_artifact(b"hello world") == HELLO
    assert store.get_artifact(HELLO) == b"hello world"
    assert store.missing_chunks(HELLO) == []


@pytest.mark.parametrize("size", [CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 3 * CHUNK_SIZE + 17])
def test_large_artifact_is_chunked_with_a_json_manifest(size):
    store = ArtifactStore()
    data = os.urandom(size)
    cid = store.store_artifact(data)
    assert parse_cid(cid).codec == JSON
    manifest = json.loads(store.get_chunk(cid))
    assert manifest["size"] == size and len(manifest["chunks"]) == -(-size // CHUNK_SIZE)
    assert all(parse_cid(c).codec == RAW for c in manifest["chunks"])
    assert store.get_artifact(cid) == data


@pytest.mark.parametrize("data", [b"", b"abc" * 10, bytes(3 * CHUNK_SIZE)])
def test_compressed_artifacts_round_trip(data):
    store = ArtifactStore()
    cid = store.store_artifact(data, compressed=True)
    assert json.loads(store.get_chunk(cid))["encoding"] == "rvtc"
    assert store.get_artifact(cid) == data


def test_peer_fetches_missing_chunks_and_refuses_bad_ones():
    alice, bob = ArtifactStore(), ArtifactStore()
    data = os.urandom(2 * CHUNK_SIZE + 5)
    cid = alice.store_artifact(data)
    with pytest.raises(MissingChunks) as exc:
        bob.get_artifact(cid)
    assert exc.value.missing == [cid]
    assert bob.missing_chunks(cid) == [cid]
    bob.put_chunk(cid, alice.get_chunk(cid))
    missing = bob.missing_chunks(cid)
    assert len(missing) == 3
    first = missing[0]
    with pytest.raises(ChunkHashMismatch):
        bob.put_chunk(first, alice.get_chunk(missing[1]))  # a peer sends the wrong block
    assert bob.missing_chunks(cid) == missing  # refused, nothing stored
    with pytest.raises(MissingChunks) as exc:
        bob.get_artifact(cid)
    assert exc.value.missing == missing
    for c in missing:
        bob.put_chunk(c, alice.get_chunk(c))
    assert bob.missing_chunks(cid) == []
    assert bob.get_artifact(cid) == data


def test_put_chunk_checks_manifests_and_size():
    store = ArtifactStore(limits=StoreLimits(max_block_bytes=1 << 20))
    bogus = b'{"not":"a manifest"}'
    with pytest.raises(MalformedMessage):
        store.put_chunk(cid_for(bogus, JSON), bogus)
    big = bytes((1 << 20) + 1)
    with pytest.raises(OversizedMessage):
        store.put_chunk(cid_for(big), big)
    with pytest.raises(InvalidCid):
        store.put_chunk("bafk-not-a-cid", b"x")


def test_manifest_with_a_lying_chunk_size_is_rejected():
    store = ArtifactStore()
    chunk = b"x" * 10
    manifest = json.dumps(
        {"format": "ruvector-edge/artifact@1", "size": 20, "chunk_size": 20, "encoding": "identity", "chunks": [cid_for(chunk)]},
        separators=(",", ":"),
    ).encode()
    mcid = cid_for(manifest, JSON)
    store.put_chunk(mcid, manifest)
    store.put_chunk(cid_for(chunk), chunk)
    with pytest.raises(MalformedMessage):
        store.get_artifact(mcid)


def test_disk_store_persists_and_catches_rot(tmp_path):
    data = os.urandom(CHUNK_SIZE + 100)
    cid = ArtifactStore(DiskBlockStore(tmp_path)).store_artifact(data)
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    reopened = ArtifactStore(DiskBlockStore(tmp_path))
    assert reopened.get_artifact(cid) == data
    chunk = json.loads(reopened.get_chunk(cid))["chunks"][1]
    path = tmp_path / chunk[-2:] / chunk
    path.write_bytes(b"rotten" + path.read_bytes()[6:])
    fresh = ArtifactStore(DiskBlockStore(tmp_path))
    with pytest.raises(ChunkHashMismatch):
        fresh.get_artifact(cid)
    assert fresh.missing_chunks(cid) == [chunk]  # dropped, so it is fetched again
    fresh.put_chunk(chunk, data[CHUNK_SIZE:])
    assert fresh.get_artifact(cid) == data


def test_cache_corruption_is_caught_on_read():
    store = ArtifactStore()
    cid = store.store_artifact(b"precious")
    store.cache._blocks[cid] = (b"tampered", "")
    with pytest.raises(ChunkHashMismatch):
        store.get_artifact(cid)
    assert store.missing_chunks(cid) == [cid]


def test_lru_cache_is_bounded_by_bytes():
    cache = LruBlockCache(100)
    for i in range(10):
        cache.put(f"k{i}", bytes(30))
        assert cache.nbytes <= 100
    assert len(cache) == 3
    assert cache.get("k7") is not None
    cache.put("k10", bytes(30))
    assert cache.has("k7") and not cache.has("k8")
    cache.put("huge", bytes(101))
    assert not cache.has("huge")


def test_memory_only_store_evicts_to_missing():
    store = ArtifactStore(cache_bytes=1 << 20)
    data = os.urandom(6 * CHUNK_SIZE)
    cid = store.store_artifact(data)
    assert store.missing_chunks(cid)  # 1.5 MiB cannot stay in a 1 MiB cache


def test_oversized_artifact_is_refused():
    with pytest.raises(OversizedMessage):
        ArtifactStore(limits=StoreLimits(max_artifact_bytes=10)).store_artifact(bytes(11))


# Pointers ----------------------------------------------------------------------------------

async def make_pointer() -> tuple[ArtifactPointer, IdentityManager]:
    identity = await IdentityManager.generate(CRYPTO)
    data = b"q-table bytes"
    unsigned = ArtifactPointer(
        swarm="swarm-1",
        publisher="alice",
        artifact_type=ArtifactType.QTABLE,
        cid=cid_for(data),
        dimensions=(10_000, 32),
        schema_hash=hashlib.sha256(b"qtable/v1").digest(),
        checksum=bytes.fromhex(content_checksum(data)),
        version=3,
    )
    return await unsigned.sign(identity), identity


async def test_pointer_signs_verifies_and_round_trips():
    pointer, identity = await make_pointer()
    await pointer.verify(CRYPTO, identity.ed25519_public, swarm_id="swarm-1")
    back = ArtifactPointer.from_json(pointer.to_json())
    assert back == pointer
    await back.verify(CRYPTO, identity.ed25519_public)
    assert json.loads(pointer.to_json())["type"] == "artifact_pointer"


async def test_every_field_is_signed():
    pointer, identity = await make_pointer()
    changes = dict(
        swarm="swarm-2",
        publisher="mallory",
        artifact_type=ArtifactType.MODEL_WEIGHTS,
        cid=cid_for(b"other"),
        dimensions=(10_000, 33),
        schema_hash=bytes(32),
        checksum=bytes(32),
        version=4,
    )
    for name, value in changes.items():
        with pytest.raises(BadSignature):
            await dataclasses.replace(pointer, **{name: value}).verify(CRYPTO, identity.ed25519_public)
    other = await IdentityManager.generate(CRYPTO)
    with pytest.raises(BadSignature):
        await pointer.verify(CRYPTO, other.ed25519_public)
    with pytest.raises(WrongSwarm):
        await pointer.verify(CRYPTO, identity.ed25519_public, swarm_id="swarm-2")


async def test_pointer_decoding_is_strict():
    pointer, _ = await make_pointer()
    good = json.loads(pointer.to_json())

    def edited(**kw):
        return json.dumps({**good, **kw}).encode()

    with pytest.raises(WrongType):
        ArtifactPointer.from_json(edited(type="registration"))
    for bad in (
        edited(artifact_type="Secrets"),
        edited(cid="Qm123"),
        edited(dimensions=[1, -2]),
        edited(dimensions=[True]),
        edited(dimensions=list(range(9))),
        edited(version=1.5),
        edited(checksum="AB" * 32),
        edited(extra=1),
        json.dumps({k: v for k, v in good.items() if k != "sig"}).encode(),
    ):
        with pytest.raises(MalformedMessage):
            ArtifactPointer.from_json(bad)
    with pytest.raises(OversizedMessage):
        ArtifactPointer.from_json(b" " * 9000)
