"""Strict decoders: the wire helpers, and property tests that decoders only ever raise RejectedInput."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruvector_edge.errors import MalformedMessage, OversizedMessage, RejectedInput
from ruvector_edge.p2p import Envelope, EnvelopeHeader, Heartbeat, Registration
from ruvector_edge.p2p import wire

# Helpers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ['{"a":1,"a":2}', '{"a":{"b":1,"b":1}}', '[{"x":1,"x":1}]', '{"a":NaN}', '{"a":Infinity}', '{"a":-Infinity}',
     "[]", "1", '"s"', "null", "", "{", "{'a':1}", '{"a":1} x', "\ud800"],
)
def test_parse_json_object_rejects(text):
    with pytest.raises(MalformedMessage):
        wire.parse_json_object(text, 1000)


def test_parse_json_object_rejects_bad_bytes_and_deep_nesting():
    for data in (b"\xff\xff", b"\x80{}", b"[" * 100_000, b'{"a":' * 50_000):
        with pytest.raises(MalformedMessage):
            wire.parse_json_object(data, 10**6)


def test_parse_json_object_size_limit():
    assert wire.parse_json_object(b'{"a":1}', 7) == {"a": 1}
    with pytest.raises(OversizedMessage):
        wire.parse_json_object(b'{"a":1} ', 7)


def test_expect_keys():
    wire.expect_keys({"a": 1, "b": 2}, frozenset("ab"), "x")
    for obj in ({"a": 1}, {"a": 1, "b": 2, "c": 3}, {}, [], "ab"):
        with pytest.raises(MalformedMessage):
            wire.expect_keys(obj, frozenset("ab"), "x")


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None, [1], -1, 2**53])
def test_get_int_rejects(value):
    with pytest.raises(MalformedMessage):
        wire.get_int({"k": value}, "k")


def test_get_int_accepts_range():
    assert wire.get_int({"k": 0}, "k") == 0
    assert wire.get_int({"k": 2**53 - 1}, "k") == 2**53 - 1
    assert wire.get_int({"k": -5}, "k", minimum=-5) == -5
    with pytest.raises(MalformedMessage):
        wire.get_int({}, "k")


@pytest.mark.parametrize("value", [True, "0.5", None, float("nan"), float("inf"), -0.01, 1.01, [0.5]])
def test_get_number_rejects(value):
    with pytest.raises(MalformedMessage):
        wire.get_number({"k": value}, "k", 0.0, 1.0)


def test_get_number_accepts_int_and_float():
    assert wire.get_number({"k": 1}, "k", 0.0, 1.0) == 1.0
    assert type(wire.get_number({"k": 0}, "k", 0.0, 1.0)) is float


@pytest.mark.parametrize(
    "value",
    ["AB" * 4, "ab" * 3, "ab" * 5, "zz" * 4, "ab ab ab ab", " " + "ab" * 3 + "a", "ab" * 3 + "a\n", "0x" + "ab" * 3,
     12345678, None, True, ["ab" * 4], "\u0661" * 8],
)
def test_get_hex_rejects(value):
    with pytest.raises(MalformedMessage):
        wire.get_hex({"k": value}, "k", 4)


def test_get_hex_accepts_lowercase_exact_length():
    assert wire.get_hex({"k": "00ff10ab"}, "k", 4) == bytes.fromhex("00ff10ab")


@pytest.mark.parametrize(
    "value", ["AAAA=", "AAA", "AA==AA==", "AA AA", "AA\nA", "-_AA", "AA_-", "AAA*", "====", "A===", 1, None, ["AAAA"]]
)
def test_get_b64_rejects(value):
    with pytest.raises(MalformedMessage):
        wire.get_b64({"k": value}, "k", 100)


def test_get_b64_size_limit_and_accepts():
    assert wire.get_b64({"k": base64.b64encode(b"hello").decode()}, "k", 5) == b"hello"
    assert wire.get_b64({"k": ""}, "k", 5) == b""
    with pytest.raises(OversizedMessage):
        wire.get_b64({"k": base64.b64encode(bytes(30)).decode()}, "k", 5)


@pytest.mark.parametrize(
    "value", ["", "a b", "x" * 129, "tab\t", "caf\u00e9", "a/b", "a\\b", "a\x00", 1, None, True, ["a"], "\ud800"]
)
def test_check_id_rejects(value):
    with pytest.raises(MalformedMessage):
        wire.check_id(value, "id")


def test_check_id_accepts():
    for value in ("a", "agent-1", "x" * 128, "A.b_c:d@e-f", "@bob", "0123"):
        assert wire.check_id(value, "id") == value


@pytest.mark.parametrize("value", [[""], ["a" * 65], [1], [None], "worker", {"a": 1}, ["a"] * 65, None])
def test_get_str_list_rejects(value):
    with pytest.raises(MalformedMessage):
        wire.get_str_list({"k": value}, "k")


# Property tests on the decoders -----------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["envelope", "direct", "registration", "heartbeat", "ab" * 16, "cd" * 32, "ef" * 64, "AAAA"]),
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=12,
)

HEADER_KEYS = ["counter", "message_id", "nonce", "payload_hash", "sender_id", "swarm", "timestamp", "topic", "type"]
REG_KEYS = ["type", "swarm", "agent_id", "ed25519_pubkey", "x25519_pubkey", "capabilities", "joined_at", "sig"]
HB_KEYS = ["type", "swarm", "agent_id", "seq", "timestamp", "load", "queue_depth", "sig"]


def keyed_dicts(keys):
    """Dicts over (mostly) the expected keys with arbitrary JSON values."""
    return st.dictionaries(st.one_of(st.sampled_from(keys), st.text(max_size=8)), json_values, max_size=len(keys) + 2)


VALID_HEADER = {
    "counter": 5, "message_id": "ab" * 16, "nonce": "cd" * 16, "payload_hash": "ef" * 32, "sender_id": "alice",
    "swarm": "0123456789abcdef", "timestamp": 1_800_000_000_000, "topic": "news", "type": "envelope",
}
VALID_FRAME = {"header": VALID_HEADER, "sig": "00" * 64, "iv": base64.b64encode(bytes(12)).decode(),
               "ct": base64.b64encode(bytes(20)).decode()}
VALID_REG = {
    "type": "registration", "swarm": "0123456789abcdef", "agent_id": "alice", "ed25519_pubkey": "11" * 32,
    "x25519_pubkey": "22" * 32, "capabilities": ["worker"], "joined_at": 1_800_000_000_000, "sig": "33" * 64,
}
VALID_HB = {
    "type": "heartbeat", "swarm": "0123456789abcdef", "agent_id": "alice", "seq": 3, "timestamp": 1_800_000_000_000,
    "load": 0.5, "queue_depth": 2, "sig": "44" * 64,
}


def test_valid_fixtures_decode():
    """The base dicts used for mutation really are valid, so mutations test one change at a time."""
    Envelope.from_dict(json.loads(json.dumps(VALID_FRAME)))
    Registration.from_dict(dict(VALID_REG))
    Heartbeat.from_dict(dict(VALID_HB))


def one_field_changed(base: dict) -> st.SearchStrategy[dict]:
    """The valid dict with one key replaced by an arbitrary value, deleted, or one key added."""
    keys = sorted(base)
    replace = st.tuples(st.sampled_from(keys), json_values).map(lambda kv: {**base, kv[0]: kv[1]})
    delete = st.sampled_from(keys).map(lambda k: {x: v for x, v in base.items() if x != k})
    add = st.tuples(st.text(max_size=8).filter(lambda k: k not in base), json_values).map(lambda kv: {**base, kv[0]: kv[1]})
    return st.one_of(replace, delete, add)


frame_dicts = st.one_of(
    keyed_dicts(["header", "sig", "iv", "ct"]),
    one_field_changed(VALID_FRAME),
    one_field_changed(VALID_HEADER).map(lambda h: {**VALID_FRAME, "header": h}),
)

DECODERS = {"envelope": Envelope, "registration": Registration, "heartbeat": Heartbeat}
DICTS = {
    "envelope": frame_dicts,
    "registration": st.one_of(keyed_dicts(REG_KEYS), one_field_changed(VALID_REG)),
    "heartbeat": st.one_of(keyed_dicts(HB_KEYS), one_field_changed(VALID_HB)),
}

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def only_rejected_input(fn, *args):
    try:
        fn(*args)
    except RejectedInput:
        pass  # anything else propagates and fails the test


@pytest.mark.parametrize("kind", list(DECODERS))
@FAST
@given(data=st.binary(max_size=400))
def test_from_json_arbitrary_bytes_only_rejected_input(kind, data):
    only_rejected_input(DECODERS[kind].from_json, data)


@pytest.mark.parametrize("kind", list(DECODERS))
@FAST
@given(text=st.text(max_size=300))
def test_from_json_arbitrary_text_only_rejected_input(kind, text):
    only_rejected_input(DECODERS[kind].from_json, text)


@pytest.mark.parametrize("kind", list(DECODERS))
@FAST
@given(value=json_values)
def test_from_json_arbitrary_json_values_only_rejected_input(kind, value):
    only_rejected_input(DECODERS[kind].from_json, json.dumps(value))


@pytest.mark.parametrize("kind", list(DECODERS))
@FAST
@given(data=st.data())
def test_from_json_jsonish_dicts_only_rejected_input(kind, data):
    obj = data.draw(DICTS[kind])
    only_rejected_input(DECODERS[kind].from_json, json.dumps(obj))
    only_rejected_input(DECODERS[kind].from_dict, obj)


@FAST
@given(header=one_field_changed(VALID_HEADER))
def test_envelope_header_from_dict_only_rejected_input(header):
    only_rejected_input(EnvelopeHeader.from_dict, header)


@pytest.mark.parametrize("kind", list(DECODERS))
@FAST
@given(data=st.data())
def test_from_json_byte_flips_of_valid_object(kind, data):
    base = {"envelope": VALID_FRAME, "registration": VALID_REG, "heartbeat": VALID_HB}[kind]
    raw = bytearray(json.dumps(base, separators=(",", ":")).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    only_rejected_input(DECODERS[kind].from_json, bytes(raw))


def test_unhashable_envelope_type_is_rejected_input():
    """Deterministic repro of what the property tests find: a list or object as the header `type`."""
    for value in ([], {}, ["envelope"]):
        with pytest.raises(RejectedInput):
            Envelope.from_dict({**VALID_FRAME, "header": {**VALID_HEADER, "type": value}})
