"""Frames the relay assembles by hand must be exactly the canonical JSON of what they mean."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ruvector_edge.canonical import canonicalize
from ruvector_edge.errors import MalformedMessage, OversizedMessage
from ruvector_edge.transport import relay_wire as rw

ids = st.from_regex(r"[A-Za-z0-9._:@-]{1,20}", fullmatch=True)
objects = st.dictionaries(st.text(max_size=5), st.integers(-1000, 1000), max_size=3)


@given(ids, ids, st.lists(objects, max_size=4))
def test_welcome_is_canonical(agent_id, swarm, members):
    member_json = [canonicalize(m).decode() for m in members]
    text = rw.welcome(agent_id, swarm, member_json)
    assert json.loads(text) == {"op": "welcome", "agent_id": agent_id, "swarm": swarm, "members": members}
    assert canonicalize(json.loads(text)).decode() == text


@given(objects)
def test_member_is_canonical(registration):
    text = rw.member(canonicalize(registration).decode())
    assert canonicalize(json.loads(text)).decode() == text


@given(st.integers(0, 2**53))
def test_ping_is_canonical(ping_id):
    assert rw.ping(ping_id) == rw.encode("ping", id=ping_id)


def test_non_utf8_frames_are_malformed():
    with pytest.raises(MalformedMessage):
        rw.decode('{"op":"ping","id":1}'.encode("utf-16"), 1024)


def test_oversized_bytes_refused_before_decoding():
    with pytest.raises(OversizedMessage):
        rw.decode(b" " * 2000, 1024)
