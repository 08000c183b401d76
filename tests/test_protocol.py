"""Swarm protocol payloads: every kind round-trips, anything else is refused with a RejectedInput."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruvector_edge.errors import MalformedMessage, OversizedMessage, RejectedInput
from ruvector_edge.protocol import MAX_PAYLOAD_JSON, MessageKind, SwarmMessage, decode, encode


def test_kinds_are_exactly_the_issue_list():
    assert [k.value for k in MessageKind] == [
        "JOIN", "LEAVE", "PING", "PONG", "HEARTBEAT", "SYNC_PATTERNS", "REQUEST_PATTERNS",
        "SYNC_MEMORIES", "BROADCAST_TASK", "TASK_RESULT", "SIGNAL",
        "REQUEST_BLOCK", "BLOCK", "TASK_CLAIM", "TASK_ASSIGN", "SPOT_CHECK", "SPOT_RESULT",
    ]


@pytest.mark.parametrize("kind", list(MessageKind))
def test_every_kind_round_trips(kind):
    body = {"n": 1, "s": "é", "nested": {"b": [True, None, 2.5]}}
    payload = encode(kind, **body)
    assert payload == SwarmMessage(kind, body).encode()
    assert decode(payload) == SwarmMessage(kind, body)


def test_encoding_is_canonical():
    assert encode(MessageKind.SIGNAL, b=1, a=2) == b'{"body":{"a":2,"b":1},"kind":"SIGNAL"}'


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"null",
        b"[]",
        b'{"kind":"SIGNAL"}',
        b'{"body":{}}',
        b'{"kind":"SIGNAL","body":{},"extra":1}',
        b'{"kind":"signal","body":{}}',
        b'{"kind":"NOPE","body":{}}',
        b'{"kind":1,"body":{}}',
        b'{"kind":["SIGNAL"],"body":{}}',
        b'{"kind":"SIGNAL","body":[]}',
        b'{"kind":"SIGNAL","body":"x"}',
        b'{"kind":"SIGNAL","body":null}',
        b'{"kind":"SIGNAL","kind":"JOIN","body":{}}',
        b'{"kind":"SIGNAL","body":{"x":NaN}}',
        b'{"kind":"SIGNAL","body":{"x":Infinity}}',
        b"\xff\xfe\xfd",
        b'{"kind":"SIGNAL","body":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_bad_payloads_are_malformed(payload):
    with pytest.raises(MalformedMessage):
        decode(payload)


def test_oversized_payload_is_refused_before_parsing():
    payload = b'{"kind":"SIGNAL","body":{"x":"' + b"a" * MAX_PAYLOAD_JSON + b'"}}'
    with pytest.raises(OversizedMessage):
        decode(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_raise_rejected_input(data):
    try:
        message = decode(data)
    except RejectedInput:
        return
    assert isinstance(message.kind, MessageKind) and isinstance(message.body, dict)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([k.value for k in MessageKind]) | st.text(max_size=16) | json_values,
    body=json_values,
    extra=st.dictionaries(st.text(max_size=8), json_values, max_size=2),
)
def test_structured_json_is_accepted_only_in_the_exact_shape(kind, body, extra):
    obj = {**extra, "kind": kind, "body": body}
    payload = json.dumps(obj).encode()
    valid = set(obj) == {"kind", "body"} and isinstance(kind, str) and kind in MessageKind.__members__ \
        and isinstance(body, dict)
    try:
        message = decode(payload)
    except RejectedInput:
        assert not valid
        return
    assert valid
    assert message == SwarmMessage(MessageKind(kind), body)
