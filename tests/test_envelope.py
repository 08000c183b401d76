"""Sealed envelopes end to end: round trips and every way a frame can be bad.

Each rejection test checks the concrete error class *and* that the receiver's
registry and replay state did not move; the forgery tests also check that the
genuine frame is still accepted afterwards (a forgery must not burn a nonce).
"""

from __future__ import annotations

import base64
import json
import os

import pytest

from conftest import edit_frame, make_members, seal_custom, snapshot
from ruvector_edge.errors import (
    BadSignature,
    DecryptionFailed,
    FutureTimestamp,
    MalformedMessage,
    Misaddressed,
    OversizedMessage,
    PayloadHashMismatch,
    RejectedInput,
    ReplayDetected,
    StaleTimestamp,
    UnknownSender,
    WrongSwarm,
    WrongType,
)
from ruvector_edge.p2p import Envelope, IdentityManager, P2PSwarm, SecurityConfig
from ruvector_edge.p2p.envelope import DIRECT, max_frame_bytes


# Round trips ---------------------------------------------------------------------------
async def test_broadcast_round_trip(trio):
    alice, bob, carol = trio
    published = await alice.publish("news", b"hello swarm")
    for receiver in (bob, carol):
        msg = await receiver.receive(published.frame)
        assert msg.payload == b"hello swarm"
        assert msg.sender_id == "alice" and msg.topic == "news" and msg.direct is False
        assert msg.message_id == published.message_id
        assert msg.timestamp == alice.runtime.clock.now_ms()
        assert receiver.replay.highest_counter("alice") == Envelope.from_json(published.frame).header.counter
        assert receiver.replay.nonce_count() == 1


async def test_broadcast_round_trip_str_frame_and_empty_payload(trio):
    alice, bob, _ = trio
    published = await alice.publish("news", b"")
    assert (await bob.receive(published.frame.decode())).payload == b""


async def test_publish_many_round_trip_in_order(trio):
    alice, bob, _ = trio
    payloads = [os.urandom(n) for n in (0, 1, 100, 4096)]
    published = await alice.publish_many("bulk", payloads)
    results = await bob.receive_many([p.frame for p in published])
    assert [r.payload for r in results] == payloads
    counters = [Envelope.from_json(p.frame).header.counter for p in published]
    assert counters == sorted(counters) and len(set(counters)) == len(counters)


async def test_direct_round_trip(trio):
    alice, bob, _ = trio
    published = await alice.send_direct("bob", b"just for bob")
    header = Envelope.from_json(published.frame).header
    assert header.type == DIRECT and header.topic == "@bob"
    msg = await bob.receive(published.frame)
    assert msg.payload == b"just for bob" and msg.direct is True and msg.sender_id == "alice"


async def test_direct_payload_is_not_encrypted_under_the_swarm_key(trio):
    alice, bob, _ = trio
    published = await alice.send_direct("bob", b"secret")
    envelope = Envelope.from_json(published.frame)
    opened = await alice.runtime.crypto.aes_gcm_open(
        alice.swarm_key.key, envelope.iv, envelope.ciphertext, envelope.header.aad_of(envelope.header.canonical())
    )
    assert opened is None


async def test_frame_is_canonical_json(trio):
    alice, _, _ = trio
    frame = (await alice.publish("news", b"x")).frame
    obj = json.loads(frame)
    assert json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() == frame
    assert set(obj) == {"ct", "header", "iv", "sig"}
    assert set(obj["header"]) == {
        "counter", "message_id", "nonce", "payload_hash", "sender_id", "swarm", "timestamp", "topic", "type"
    }


# Replay --------------------------------------------------------------------------------
async def test_replayed_frame_is_rejected(trio):
    alice, bob, _ = trio
    frame = (await alice.publish("news", b"once")).frame
    await bob.receive(frame)
    before = snapshot(bob)
    with pytest.raises(ReplayDetected):
        await bob.receive(frame)
    assert snapshot(bob) == before


async def test_reordering_within_window_accepted_once_each(runtime, swarm_key):
    m = await make_members(("alice", "bob"), swarm_key, runtime, SecurityConfig(replay_window=4))
    alice, bob = m["alice"], m["bob"]
    frames = [p.frame for p in await alice.publish_many("t", [bytes([i]) for i in range(4)])]
    for i in (3, 1, 0, 2):  # all within 4 of the highest
        assert (await bob.receive(frames[i])).payload == bytes([i])
    for i in range(4):
        before = snapshot(bob)
        with pytest.raises(ReplayDetected):
            await bob.receive(frames[i])
        assert snapshot(bob) == before


async def test_counter_older_than_window_is_rejected(runtime, swarm_key):
    m = await make_members(("alice", "bob"), swarm_key, runtime, SecurityConfig(replay_window=4))
    alice, bob = m["alice"], m["bob"]
    frames = [p.frame for p in await alice.publish_many("t", [bytes([i]) for i in range(6)])]
    await bob.receive(frames[5])
    await bob.receive(frames[2])  # 3 behind: last slot inside the window
    before = snapshot(bob)
    with pytest.raises(ReplayDetected):
        await bob.receive(frames[1])  # 4 behind: outside
    with pytest.raises(ReplayDetected):
        await bob.receive(frames[0])
    assert snapshot(bob) == before
    assert bob.replay.highest_counter("alice") == Envelope.from_json(frames[5]).header.counter


async def test_same_nonce_with_different_counter_is_rejected(trio):
    alice, bob, _ = trio
    first, header = await seal_custom(alice, b"one")
    await bob.receive(first)
    second, _ = await seal_custom(alice, b"two", nonce=header.nonce)  # fresh, higher counter; same nonce
    before = snapshot(bob)
    with pytest.raises(ReplayDetected):
        await bob.receive(second)
    assert snapshot(bob) == before


async def test_same_counter_with_different_nonce_is_rejected(trio):
    alice, bob, _ = trio
    first, header = await seal_custom(alice, b"one")
    await bob.receive(first)
    second, _ = await seal_custom(alice, b"two", counter=header.counter)
    before = snapshot(bob)
    with pytest.raises(ReplayDetected):
        await bob.receive(second)
    assert snapshot(bob) == before


async def test_replay_state_is_per_sender(trio):
    alice, bob, carol = trio
    frame_a, header = await seal_custom(alice, b"a")
    frame_c, _ = await seal_custom(carol, b"c", counter=header.counter, nonce=header.nonce)
    await bob.receive(frame_a)
    assert (await bob.receive(frame_c)).payload == b"c"


# Tampering ----------------------------------------------------------------------------------
def _set_header(field, value):
    return lambda obj: obj["header"].__setitem__(field, value)


@pytest.mark.parametrize(
    "field, new_value",
    [
        ("topic", "other-topic"),
        ("timestamp", lambda h: h["timestamp"] - 1),
        ("counter", lambda h: h["counter"] + 1),
        ("sender_id", "carol"),  # another registered member: verified under carol's key, fails
        ("payload_hash", lambda h: ("0" if h["payload_hash"][0] != "0" else "1") + h["payload_hash"][1:]),
        ("message_id", lambda h: os.urandom(16).hex()),
        ("nonce", lambda h: os.urandom(16).hex()),
    ],
)
async def test_tampered_header_field_fails_signature(trio, field, new_value):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"payload")).frame

    def change(obj):
        header = obj["header"]
        header[field] = new_value(header) if callable(new_value) else new_value

    forged = edit_frame(genuine, change)
    before = snapshot(bob)
    with pytest.raises(BadSignature):
        await bob.receive(forged)
    assert snapshot(bob) == before
    assert (await bob.receive(genuine)).payload == b"payload"


async def test_type_flip_broadcast_to_direct_fails_signature(trio):
    alice, bob, _ = trio
    genuine = (await alice.publish("@bob", b"p")).frame  # a broadcast whose topic looks like an address
    forged = edit_frame(genuine, _set_header("type", "direct"))
    before = snapshot(bob)
    with pytest.raises(BadSignature):
        await bob.receive(forged)
    assert snapshot(bob) == before
    assert (await bob.receive(genuine)).direct is False


async def test_tampered_swarm_field_is_wrong_swarm(trio):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame
    forged = edit_frame(genuine, _set_header("swarm", "00" * 8))
    before = snapshot(bob)
    with pytest.raises(WrongSwarm):
        await bob.receive(forged)
    assert snapshot(bob) == before


def _flip_b64(value: str, index: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    "what, change",
    [
        ("ciphertext", lambda o: o.__setitem__("ct", _flip_b64(o["ct"], 0))),
        ("tag", lambda o: o.__setitem__("ct", _flip_b64(o["ct"], -1))),
        ("tag-first-byte", lambda o: o.__setitem__("ct", _flip_b64(o["ct"], -16))),
        ("iv", lambda o: o.__setitem__("iv", _flip_b64(o["iv"], 5))),
        ("truncated", lambda o: o.__setitem__("ct", base64.b64encode(base64.b64decode(o["ct"])[:-1]).decode())),
        ("extended", lambda o: o.__setitem__("ct", base64.b64encode(base64.b64decode(o["ct"]) + b"\0").decode())),
    ],
)
async def test_tampered_ciphertext_fails_decryption_and_burns_no_nonce(trio, what, change):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"some payload bytes")).frame
    forged = edit_frame(genuine, change)
    before = snapshot(bob)
    with pytest.raises(DecryptionFailed):
        await bob.receive(forged)
    assert snapshot(bob) == before
    assert (await bob.receive(genuine)).payload == b"some payload bytes"


async def test_tampered_signature_fails_and_burns_no_nonce(trio):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame

    def change(obj):
        sig = bytearray(bytes.fromhex(obj["sig"]))
        sig[10] ^= 0x80
        obj["sig"] = sig.hex()

    before = snapshot(bob)
    with pytest.raises(BadSignature):
        await bob.receive(edit_frame(genuine, change))
    assert snapshot(bob) == before
    assert (await bob.receive(genuine)).payload == b"p"


async def test_ciphertext_moved_under_another_valid_header_fails(trio):
    alice, bob, _ = trio
    one, two = [p.frame for p in await alice.publish_many("news", [b"first payload", b"other payload"])]
    o1, o2 = json.loads(one), json.loads(two)
    for moved in (
        json.dumps({**o2, "ct": o1["ct"], "iv": o1["iv"]}).encode(),  # ct + iv of 1 under header/sig of 2
        json.dumps({**o2, "ct": o1["ct"]}).encode(),  # ct only
    ):
        before = snapshot(bob)
        with pytest.raises(DecryptionFailed):
            await bob.receive(moved)
        assert snapshot(bob) == before
    assert (await bob.receive(one)).payload == b"first payload"
    assert (await bob.receive(two)).payload == b"other payload"


async def test_ciphertext_of_same_length_moved_fails(trio):
    alice, bob, _ = trio
    one, two = [p.frame for p in await alice.publish_many("news", [b"AAAA", b"BBBB"])]
    o1, o2 = json.loads(one), json.loads(two)
    with pytest.raises(DecryptionFailed):
        await bob.receive(json.dumps({**o1, "ct": o2["ct"], "iv": o2["iv"]}))
    assert (await bob.receive(two)).payload == b"BBBB"


async def test_payload_hash_mismatch(trio):
    alice, bob, _ = trio
    forged, header = await seal_custom(alice, b"what was encrypted", hashed_payload=b"what was signed")
    before = snapshot(bob)
    with pytest.raises(PayloadHashMismatch):
        await bob.receive(forged)
    assert snapshot(bob) == before
    # same counter and nonce, honest hash: still accepted, so the mismatch burned nothing
    honest, _ = await seal_custom(alice, b"what was encrypted", counter=header.counter, nonce=header.nonce)
    assert (await bob.receive(honest)).payload == b"what was encrypted"


async def test_unkeyed_payload_hash_is_rejected(trio):
    """payload_hash is keyed by the encryption key; a plain hash must not pass."""
    alice, bob, _ = trio
    import hashlib

    forged, _ = await seal_custom(alice, b"x", payload_hash=hashlib.sha256(b"x").digest())
    with pytest.raises(PayloadHashMismatch):
        await bob.receive(forged)


# Senders and keys ------------------------------------------------------------------------------
async def test_unknown_sender(runtime, swarm_key):
    m = await make_members(("alice", "bob"), swarm_key, runtime)
    mallory = await P2PSwarm.create("mallory", swarm_key, runtime=runtime)  # has the swarm key, never registered with bob
    frame = (await mallory.publish("news", b"hi")).frame
    before = snapshot(m["bob"])
    with pytest.raises(UnknownSender):
        await m["bob"].receive(frame)
    assert snapshot(m["bob"]) == before
    assert "mallory" not in m["bob"].registry


async def test_key_substitution_attacker_key_claiming_registered_sender(trio):
    alice, bob, _ = trio
    attacker = await IdentityManager.generate(alice.runtime.crypto)
    forged, header = await seal_custom(alice, b"from 'alice'", signer=attacker)
    before = snapshot(bob)
    with pytest.raises(BadSignature):
        await bob.receive(forged)
    assert snapshot(bob) == before
    genuine, _ = await seal_custom(alice, b"real", counter=header.counter, nonce=header.nonce)
    assert (await bob.receive(genuine)).payload == b"real"


async def test_key_carried_in_the_message_is_refused(trio):
    alice, bob, _ = trio
    attacker = await IdentityManager.generate(alice.runtime.crypto)
    forged, _ = await seal_custom(alice, b"x", signer=attacker)
    for place in ("top", "header"):
        def change(obj, place=place):
            target = obj if place == "top" else obj["header"]
            target["ed25519_pubkey"] = attacker.ed25519_public.hex()

        before = snapshot(bob)
        with pytest.raises(MalformedMessage):
            await bob.receive(edit_frame(forged, change))
        assert snapshot(bob) == before


async def test_frame_for_another_swarm(runtime, swarm_key):
    ours = await make_members(("alice", "bob"), swarm_key, runtime)
    theirs = await make_members(("alice", "bob"), os.urandom(32), runtime)
    frame = (await theirs["alice"].publish("news", b"x")).frame
    before = snapshot(ours["bob"])
    with pytest.raises(WrongSwarm):
        await ours["bob"].receive(frame)
    assert snapshot(ours["bob"]) == before


# Timestamps ----------------------------------------------------------------------------------
async def test_stale_timestamp(runtime, swarm_key, clock):
    cfg = SecurityConfig(past_window_ms=10_000, future_skew_ms=2_000)
    m = await make_members(("alice", "bob"), swarm_key, runtime, cfg)
    on_edge, late = [p.frame for p in await m["alice"].publish_many("t", [b"edge", b"late"])]
    clock.advance(10_000)
    assert (await m["bob"].receive(on_edge)).payload == b"edge"  # exactly the window: still fine
    clock.advance(1)
    before = snapshot(m["bob"])
    with pytest.raises(StaleTimestamp):
        await m["bob"].receive(late)
    assert snapshot(m["bob"]) == before


async def test_future_timestamp(runtime, swarm_key, clock):
    cfg = SecurityConfig(past_window_ms=10_000, future_skew_ms=2_000)
    m = await make_members(("alice", "bob"), swarm_key, runtime, cfg)
    on_edge, ahead = [p.frame for p in await m["alice"].publish_many("t", [b"edge", b"ahead"])]
    clock.advance(-2_000)
    assert (await m["bob"].receive(on_edge)).payload == b"edge"
    clock.advance(-1)
    before = snapshot(m["bob"])
    with pytest.raises(FutureTimestamp):
        await m["bob"].receive(ahead)
    assert snapshot(m["bob"]) == before


async def test_default_windows_are_five_minutes_and_sixty_seconds(runtime, swarm_key, clock):
    m = await make_members(("alice", "bob"), swarm_key, runtime)
    alice, bob = m["alice"], m["bob"]
    stale, _ = await seal_custom(alice, timestamp=clock.now_ms() - 5 * 60_000 - 1)
    future, _ = await seal_custom(alice, timestamp=clock.now_ms() + 60_001)
    ok_old, _ = await seal_custom(alice, b"old", timestamp=clock.now_ms() - 5 * 60_000 + 1)
    ok_new, _ = await seal_custom(alice, b"new", timestamp=clock.now_ms() + 59_999)
    with pytest.raises(StaleTimestamp):
        await bob.receive(stale)
    with pytest.raises(FutureTimestamp):
        await bob.receive(future)
    assert (await bob.receive(ok_old)).payload == b"old"
    assert (await bob.receive(ok_new)).payload == b"new"


# Size -------------------------------------------------------------------------------------------
async def test_oversized_frame(runtime, swarm_key):
    cfg = SecurityConfig(max_payload_bytes=1000)
    m = await make_members(("alice", "bob"), swarm_key, runtime, cfg)
    bob = m["bob"]
    before = snapshot(bob)
    with pytest.raises(OversizedMessage):
        await bob.receive(b" " * (max_frame_bytes(1000) + 1))
    genuine = (await m["alice"].publish("t", b"x")).frame
    padded = genuine[:-1] + b" " * (max_frame_bytes(1000) + 1 - len(genuine)) + b"}"
    with pytest.raises(OversizedMessage):
        await bob.receive(padded)
    assert snapshot(bob) == before


async def test_oversized_ciphertext_field(runtime, swarm_key):
    cfg = SecurityConfig(max_payload_bytes=1000)
    m = await make_members(("alice", "bob"), swarm_key, runtime, cfg)
    genuine = (await m["alice"].publish("t", b"x")).frame
    forged = edit_frame(genuine, lambda o: o.__setitem__("ct", base64.b64encode(bytes(1000 + 16 + 3)).decode()))
    before = snapshot(m["bob"])
    with pytest.raises(OversizedMessage):
        await m["bob"].receive(forged)
    assert snapshot(m["bob"]) == before


async def test_publish_refuses_payload_over_limit(runtime, swarm_key):
    m = await make_members(("alice",), swarm_key, runtime, SecurityConfig(max_payload_bytes=10))
    with pytest.raises(ValueError):
        await m["alice"].publish("t", bytes(11))
    await m["alice"].publish("t", bytes(10))


@pytest.mark.parametrize("extra", [1, 2, 3])
async def test_payload_just_over_receiver_limit_is_rejected(runtime, swarm_key, extra):
    """A peer allowed bigger payloads sends max+extra bytes; the receiver's bound must hold exactly."""
    m = await make_members(
        ("alice", "bob"), swarm_key, runtime,
        configs={"alice": SecurityConfig(max_payload_bytes=1000), "bob": SecurityConfig(max_payload_bytes=100)},
    )
    assert (await m["bob"].receive((await m["alice"].publish("t", bytes(100))).frame)).payload == bytes(100)
    frame = (await m["alice"].publish("t", bytes(100 + extra))).frame
    before = snapshot(m["bob"])
    with pytest.raises(OversizedMessage):
        await m["bob"].receive(frame)
    assert snapshot(m["bob"]) == before


# Direct messages ------------------------------------------------------------------------------
async def test_direct_message_not_addressed_to_us(trio):
    alice, bob, carol = trio
    frame = (await alice.send_direct("bob", b"for bob")).frame
    before = snapshot(carol)
    with pytest.raises(Misaddressed):
        await carol.receive(frame)
    assert snapshot(carol) == before
    assert (await bob.receive(frame)).payload == b"for bob"


async def test_direct_message_readdressed_to_third_member_fails(trio):
    """Alice signs a direct frame topic '@carol' but encrypts under the alice-bob key: carol cannot open it."""
    alice, bob, carol = trio
    ab_key = await alice.derive_session_key("bob")
    frame, header = await seal_custom(alice, b"meant for bob", kind=DIRECT, topic="@carol", key=ab_key)
    before = snapshot(carol)
    with pytest.raises(DecryptionFailed):
        await carol.receive(frame)
    assert snapshot(carol) == before
    ac_key = await alice.derive_session_key("carol")
    honest, _ = await seal_custom(alice, b"for carol", kind=DIRECT, topic="@carol", key=ac_key,
                                  counter=header.counter, nonce=header.nonce)
    assert (await carol.receive(honest)).payload == b"for carol"


async def test_direct_message_under_swarm_key_fails(trio):
    alice, bob, _ = trio
    frame, _ = await seal_custom(alice, b"x", kind=DIRECT, topic="@bob", key=alice.swarm_key.key)
    with pytest.raises(DecryptionFailed):
        await bob.receive(frame)


async def test_broadcast_under_session_key_fails(trio):
    alice, bob, _ = trio
    frame, _ = await seal_custom(alice, b"x", key=await alice.derive_session_key("bob"))
    with pytest.raises(DecryptionFailed):
        await bob.receive(frame)


async def test_direct_message_topic_names_the_recipient(trio):
    """A direct frame's topic is always '@recipient' (relays route on it, the recipient checks it)."""
    alice, bob, carol = trio
    frame = (await alice.send_direct("bob", b"hi")).frame
    assert json.loads(frame)["header"]["topic"] == "@bob"
    with pytest.raises(RejectedInput):
        await carol.receive(frame)
    msg = await bob.receive(frame)
    assert msg.payload == b"hi" and msg.direct is True and msg.topic == "@bob"


# Malformed -----------------------------------------------------------------------------------------
MALFORMED_FRAMES = [
    b"",
    b"{",
    b"not json",
    b"\xff\xfe\x00",
    b"[]",
    b'"envelope"',
    b"42",
    b"null",
    b"true",
    b"{}",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
]


@pytest.mark.parametrize("frame", MALFORMED_FRAMES, ids=range(len(MALFORMED_FRAMES)))
async def test_malformed_or_non_object_json(trio, frame):
    _, bob, _ = trio
    before = snapshot(bob)
    with pytest.raises(MalformedMessage):
        await bob.receive(frame)
    assert snapshot(bob) == before


async def test_duplicate_keys_top_level_and_header(trio):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame
    text = genuine.decode()
    dup_top = text[:-1] + ',"sig":"' + "00" * 64 + '"}'
    dup_header = text.replace('"header":{', '"header":{"topic":"evil",', 1)
    for forged in (dup_top, dup_header):
        before = snapshot(bob)
        with pytest.raises(MalformedMessage):
            await bob.receive(forged)
        assert snapshot(bob) == before
    assert (await bob.receive(genuine)).payload == b"p"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_malformed(trio, constant):
    alice, bob, _ = trio
    genuine = json.loads((await alice.publish("news", b"p")).frame)
    header = json.dumps(genuine["header"]).replace(str(genuine["header"]["counter"]), constant)
    forged = json.dumps({**genuine, "header": "H"}).replace('"H"', header)
    assert constant in forged
    with pytest.raises(MalformedMessage):
        await bob.receive(forged)


@pytest.mark.parametrize("field", ["ct", "header", "iv", "sig"])
async def test_missing_top_level_field(trio, field):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame
    before = snapshot(bob)
    with pytest.raises(MalformedMessage):
        await bob.receive(edit_frame(genuine, lambda o: o.pop(field)))
    assert snapshot(bob) == before


@pytest.mark.parametrize(
    "field", ["counter", "message_id", "nonce", "payload_hash", "sender_id", "swarm", "timestamp", "topic", "type"]
)
async def test_missing_header_field(trio, field):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame
    before = snapshot(bob)
    with pytest.raises(MalformedMessage):
        await bob.receive(edit_frame(genuine, lambda o: o["header"].pop(field)))
    assert snapshot(bob) == before


@pytest.mark.parametrize("where", ["top", "header"])
async def test_extra_field(trio, where):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame

    def change(obj):
        (obj if where == "top" else obj["header"])["extra"] = 1

    before = snapshot(bob)
    with pytest.raises(MalformedMessage):
        await bob.receive(edit_frame(genuine, change))
    assert snapshot(bob) == before


HEX16, HEX32 = "ab" * 16, "cd" * 32
BAD_HEADER_VALUES = {
    "counter": [True, False, 1.0, 1.5, "1", -1, 2**53, None, [], {}],
    "timestamp": [True, 1.0, 1800000000000.0, "1800000000000", -1, 2**53, None, [1]],
    "message_id": [1, True, None, HEX16.upper(), "AB" + HEX16[2:], HEX16[:-2], HEX16 + "ab", "zz" * 16,
                   " " + HEX16[1:], HEX16[:-1] + "\n", [HEX16]],
    "nonce": [1, None, HEX16.upper(), HEX16[:-2], HEX16 + "00", "gg" * 16, "+1" + HEX16[2:]],
    "payload_hash": [1, None, HEX32.upper(), HEX32[:-2], HEX32 + "00", "xy" * 32, 0.5],
    "sender_id": [1, True, None, "", "a b", "x" * 129, "caf\u00e9", "a/b", "a\nb", ["alice"], {"id": "alice"}],
    "swarm": [1, None, "", "a b", "x" * 129, ["s"], False],
    "topic": [1, None, "", "with space", "\u00fc", "x" * 129, ["t"], {}],
}
BAD_HEADER_CASES = [(f, v) for f, vs in BAD_HEADER_VALUES.items() for v in vs]


@pytest.mark.parametrize("field, value", BAD_HEADER_CASES, ids=[f"{f}={v!r:.20}" for f, v in BAD_HEADER_CASES])
async def test_wrong_type_or_form_in_header_field(trio, field, value):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame
    before = snapshot(bob)
    with pytest.raises(MalformedMessage):
        await bob.receive(edit_frame(genuine, _set_header(field, value)))
    assert snapshot(bob) == before
    assert (await bob.receive(genuine)).payload == b"p"


BAD_TYPE_VALUES = ["registration", "heartbeat", "ENVELOPE", "Direct", "", 1, True, None, [], {}, ["envelope"]]


@pytest.mark.parametrize("value", BAD_TYPE_VALUES, ids=[repr(v) for v in BAD_TYPE_VALUES])
async def test_wrong_header_type_value(trio, value):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame
    before = snapshot(bob)
    with pytest.raises((WrongType, MalformedMessage)) as info:
        await bob.receive(edit_frame(genuine, _set_header("type", value)))
    if isinstance(value, str):
        assert isinstance(info.value, WrongType)
    assert snapshot(bob) == before


BAD_TOP_VALUES = {
    "sig": [1, None, "00" * 63, "00" * 65, "AB" * 64, "zz" * 64, ["00" * 64]],
    "iv": [1, None, "", "AAAA", base64.b64encode(bytes(11)).decode(),
           "AAAAAAAAAAAAAAA", "AAAAAAAA AAAAAAA", "AAAAAAAAAAAAAAA!", "-_-_AAAAAAAAAAAA"],
    "ct": [1, None, "", base64.b64encode(bytes(15)).decode(), "AAAAA", "AAAA\nAAAAAAAAAAAAAAAAAAAAAAA",
           "!!!!" * 8, "AAA=AAAAAAAAAAAAAAAAAAAAAAAA", ["AAAA"]],
    "header": [None, [], "header", 1, True],
}
BAD_TOP_CASES = [(f, v) for f, vs in BAD_TOP_VALUES.items() for v in vs]


@pytest.mark.parametrize("field, value", BAD_TOP_CASES, ids=[f"{f}={v!r:.20}" for f, v in BAD_TOP_CASES])
async def test_wrong_type_or_form_in_frame_field(trio, field, value):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame
    before = snapshot(bob)
    with pytest.raises(MalformedMessage):
        await bob.receive(edit_frame(genuine, lambda o: o.__setitem__(field, value)))
    assert snapshot(bob) == before
    assert (await bob.receive(genuine)).payload == b"p"


async def test_iv_longer_than_twelve_bytes_is_refused(trio):
    alice, bob, _ = trio
    genuine = (await alice.publish("news", b"p")).frame
    before = snapshot(bob)
    for n in (13, 16):
        forged = edit_frame(genuine, lambda o: o.__setitem__("iv", base64.b64encode(bytes(n)).decode()))
        with pytest.raises((MalformedMessage, OversizedMessage)):
            await bob.receive(forged)
    assert snapshot(bob) == before


async def test_registration_or_heartbeat_json_is_not_an_envelope(trio):
    alice, bob, _ = trio
    heartbeat = await alice.create_heartbeat()
    for frame in (alice.registration.to_json(), heartbeat.to_json()):
        with pytest.raises(MalformedMessage):
            await bob.receive(frame)


# Batches ---------------------------------------------------------------------------------------------
async def test_receive_many_mixed_batch_results_in_order(trio):
    alice, bob, carol = trio
    good1, good2 = [p.frame for p in await alice.publish_many("news", [b"one", b"two"])]
    good3 = (await carol.publish("news", b"three")).frame
    tampered = edit_frame((await alice.publish("news", b"t")).frame, _set_header("topic", "nope"))
    bad_ct = edit_frame((await alice.publish("news", b"c")).frame,
                        lambda o: o.__setitem__("ct", _flip_b64(o["ct"], 0)))
    frames = [good1, b"garbage", good1, tampered, good2, bad_ct, b"[]", good3, good2]
    results = await bob.receive_many(frames)
    assert len(results) == len(frames)
    assert results[0].payload == b"one"
    assert isinstance(results[1], MalformedMessage)
    assert isinstance(results[2], ReplayDetected)  # duplicate inside one batch: accepted once
    assert isinstance(results[3], BadSignature)
    assert results[4].payload == b"two"
    assert isinstance(results[5], DecryptionFailed)
    assert isinstance(results[6], MalformedMessage)
    assert results[7].payload == b"three" and results[7].sender_id == "carol"
    assert isinstance(results[8], ReplayDetected)
    assert bob.replay.nonce_count() == 3


async def test_receive_many_duplicate_in_batch_accepted_once(trio):
    alice, bob, _ = trio
    frame = (await alice.publish("news", b"dup")).frame
    results = await bob.receive_many([frame, frame, frame])
    accepted = [r for r in results if not isinstance(r, RejectedInput)]
    assert len(accepted) == 1 and accepted[0].payload == b"dup"
    assert all(isinstance(r, ReplayDetected) for r in results if isinstance(r, RejectedInput))
    assert bob.replay.nonce_count() == 1


async def test_receive_many_batch_with_direct_and_broadcast(trio):
    alice, bob, carol = trio
    frames = [
        (await alice.send_direct("bob", b"d1")).frame,
        (await alice.publish("news", b"b1")).frame,
        (await carol.send_direct("bob", b"d2")).frame,
        (await alice.send_direct("carol", b"not for bob")).frame,
    ]
    results = await bob.receive_many(frames)
    assert [getattr(r, "payload", None) for r in results[:3]] == [b"d1", b"b1", b"d2"]
    assert [r.direct for r in results[:3]] == [True, False, True]
    assert isinstance(results[3], Misaddressed)


async def test_receive_many_empty(trio):
    _, bob, _ = trio
    assert await bob.receive_many([]) == []


async def test_receive_many_bad_type_does_not_abort_batch(trio):
    """One hostile frame must yield its own rejection, not take down the batch."""
    alice, bob, _ = trio
    good = (await alice.publish("news", b"ok")).frame
    hostile = edit_frame((await alice.publish("news", b"x")).frame, _set_header("type", ["envelope"]))
    results = await bob.receive_many([good, hostile])
    assert results[0].payload == b"ok"
    assert isinstance(results[1], RejectedInput)


async def test_verified_message_refreshes_liveness_forged_one_does_not(trio, clock):
    alice, bob, _ = trio
    clock.advance(20_000)
    seen = bob.registry.get("alice").last_seen
    forged, _ = await seal_custom(alice, signer=await IdentityManager.generate(alice.runtime.crypto))
    with pytest.raises(BadSignature):
        await bob.receive(forged)
    assert bob.registry.get("alice").last_seen == seen
    await bob.receive((await alice.publish("news", b"x")).frame)
    assert bob.registry.get("alice").last_seen == clock.now_ms()
