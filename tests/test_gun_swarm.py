"""GunSwarm: swarm state in GUN, signed (and encrypted), read and written by native agents through a real
relay's /gun, with a raw GUN.js client (npm `gun` in Node) writing forgeries into the same graph."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruvector_edge.errors import MalformedMessage, OversizedMessage
from ruvector_edge.gun import GunSwarmBuilder
from ruvector_edge.gun.native import NativeGunGraph
from ruvector_edge.gun.sealed import GunStateRecord, StateSealer
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.relay.server import RelayServer
from test_gun import NodeGun, Official, gun_js, until  # noqa: F401 - gun_js is a fixture

pytestmark = pytest.mark.timeout(60)


async def members(*names: str, key: bytes | None = None) -> list[P2PSwarm]:
    key = key or os.urandom(32)
    swarms = [await P2PSwarm.create(name, key) for name in names]
    for s in swarms:
        for t in swarms:
            if s is not t:
                await s.register_member(t.registration)
    return swarms


class Relay:
    def __init__(self, store=None) -> None:
        self.server = RelayServer("127.0.0.1", 0, None, gun_store=store)

    async def __aenter__(self) -> "Relay":
        await self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}/gun"
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.stop()


async def gun_swarm(p2p: P2PSwarm, url: str, encrypted: bool, **kw):
    swarm = GunSwarmBuilder("edge").with_relays([url]).encrypted(encrypted).build(p2p.agent_id, p2p, **kw)
    await swarm.connect(timeout=5)
    return swarm


def pattern_map(patterns):
    return {(p.state, p.action): (round(p.q_value, 6), p.visits) for p in patterns}


@pytest.mark.parametrize("encrypted", [False, True])
async def test_two_native_agents_sync_patterns_and_presence_through_the_relay(encrypted):
    a_id, b_id = await members("agent-a", "agent-b")
    async with Relay() as relay:
        a, b = await gun_swarm(a_id, relay.url, encrypted), await gun_swarm(b_id, relay.url, encrypted)
        try:
            await a.publish_pattern("edit_ts", "coder", 0.9, 3)
            await b.publish_pattern("edit_ts", "reviewer", 0.4, 2)
            await a.announce_peer(["wasm"])
            seen = pattern_map(await b.get_patterns())
            assert seen == {("edit_ts", "coder"): (0.9, 3), ("edit_ts", "reviewer"): (0.4, 2)}
            assert pattern_map(await a.get_patterns()) == seen
            assert (await b.get_peers())["agent-a"]["capabilities"] == ["wasm"]
            # a later write replaces the earlier one (the same GUN key), the CRDT joins it
            await a.publish_pattern("edit_ts", "coder", 0.5, 4)
            assert pattern_map(await b.get_patterns())[("edit_ts", "coder")] == (0.5, 4)
            assert b.stats["accepted"] >= 2 and sum(v for k, v in b.stats.items() if k != "accepted") == 0
            # the relay's graph holds both agents' values under the swarm's soul
            assert set(relay.server.gun.get(a.soul("learning"))) == {"_", "agent-a", "agent-b"}
        finally:
            await a.close()
            await b.close()


async def test_an_embedded_agent_shares_the_relays_own_engine_with_a_remote_one():
    a_id, b_id = await members("agent-a", "agent-b")
    async with Relay() as relay:
        embedded = GunSwarmBuilder("edge").encrypted(True).build("agent-a", a_id,
                                                              graph=NativeGunGraph(engine=relay.server.gun))
        remote = await gun_swarm(b_id, relay.url, True)
        await embedded.connect()
        try:
            await embedded.publish_pattern("s", "a", 1.0, 1)
            assert pattern_map(await remote.get_patterns()) == {("s", "a"): (1.0, 1)}
            await remote.publish_pattern("s", "b", -1.0, 5)
            # the remote write reached the relay's engine, which is the embedded agent's graph
            await until(lambda: "agent-b" in (relay.server.gun.get(embedded.soul("learning")) or {}))
            assert pattern_map(await embedded.get_patterns())[("s", "b")] == (-1.0, 5)
        finally:
            await remote.close()
            await embedded.close()


async def test_native_agents_sync_through_the_official_node_gun_relay(gun_js, tmp_path):
    """Our GUN client side speaks plain GUN: the same GunSwarm works with the official relay in between."""
    a_id, b_id = await members("agent-a", "agent-b")
    async with Official(gun_js, tmp_path / "radata") as official:
        a, b = await gun_swarm(a_id, official.url, True), await gun_swarm(b_id, official.url, True)
        try:
            await a.publish_pattern("s", "x", 0.6, 4)
            await a.announce_peer(["gpu"])
            await until_async(lambda: b.get_patterns(), lambda got: pattern_map(got) == {("s", "x"): (0.6, 4)})
            assert (await b.get_peers())["agent-a"]["capabilities"] == ["gpu"]
        finally:
            await a.close()
            await b.close()


async def until_async(make, ok, timeout: float = 10.0):
    """Call `make()` until `ok(result)`, bounded in time."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await make()
        if ok(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met in {timeout} s: {result!r:.200}")
        await asyncio.sleep(0.1)


async def test_sync_interval_spreads_patterns_without_explicit_calls():
    a_id, b_id = await members("agent-a", "agent-b")
    async with Relay() as relay:
        builder = GunSwarmBuilder("edge").with_relays([relay.url]).encrypted(True).sync_interval(100)
        a, b = builder.build("agent-a", a_id), builder.build("agent-b", b_id)
        await a.connect(5)
        await b.connect(5)
        try:
            a.learning.set_pattern("s", "x", 0.25, 7)  # learnt locally, never published by hand
            await until(lambda: pattern_map(b.learning.patterns()).get(("s", "x")) == (0.25, 7), timeout=10)

            async def rounds(n: int) -> None:  # n more periodic rounds on both agents
                start = (a.sync_rounds, b.sync_rounds)
                await until(lambda: a.sync_rounds >= start[0] + n and b.sync_rounds >= start[1] + n, timeout=20)

            # once both replicas hold the same state (b's changed by the merge), rounds write nothing more
            await rounds(5)
            puts = relay.server.gun.metrics()["puts"]
            await rounds(5)
            assert relay.server.gun.metrics()["puts"] == puts
        finally:
            await a.close()
            await b.close()


async def test_forged_unsigned_oversized_and_stranger_values_from_gun_js_are_ignored_and_counted(gun_js):
    a_id, b_id = await members("agent-a", "agent-b")
    [stranger] = await members("mallory")  # a valid identity, but not a member of this swarm
    async with Relay() as relay:
        a, b = await gun_swarm(a_id, relay.url, False), await gun_swarm(b_id, relay.url, False)
        raw = await NodeGun.start(gun_js, relay.url)
        try:
            await a.publish_pattern("s", "good", 0.5, 2)
            soul = a.soul("learning")
            genuine = relay.server.gun.get(soul, "agent-a")["agent-a"]
            record = json.loads(genuine)
            tampered = dict(record, agent_id="agent-b")  # agent-a's signature, now claiming to be agent-b
            foreign = GunStateRecord(a_id.swarm_id, "mallory", "gun.learning", 1, 1, b"x")
            foreign = dataclasses.replace(foreign, sig=await stranger.identity.sign(foreign.signing_bytes()))
            writes = {
                "agent-b": json.dumps(tampered),          # bad signature, under the key it claims
                "agent-c": genuine,                      # agent-a's genuine value moved to another key
                "mallory": foreign.to_json().decode(),   # signed, but by no member
                "plain": "just text",                    # unsigned
                "json": json.dumps({"payload": "AAAA"}),  # unsigned object
                "number": 42,                            # not even a string
                "huge": "x" * (StateSealer(a_id, encrypted=False).max_value_chars + 1),
            }
            for key, value in writes.items():
                ack = await raw.call("put", [soul], data={key: value})  # gun.get(soul): the node by its whole soul
                assert ack["ok"], ack
            got = pattern_map(await b.get_patterns())
            assert got == {("s", "good"): (0.5, 2)}
            assert b.stats == {"accepted": 1, "unsigned": 2, "malformed": 1, "oversized": 1, "wrong_swarm": 0,
                               "misplaced": 1, "unknown_sender": 1, "bad_signature": 1, "undecryptable": 0,
                               "stale": 0, "bad_state": 0, "bad_pointer": 0}
            # reading again does not recount what was already judged
            await b.get_patterns()
            assert b.stats["unsigned"] == 2 and b.stats["bad_signature"] == 1
        finally:
            await raw.stop()
            await a.close()
            await b.close()


async def test_a_rolled_back_value_is_refused_as_stale(gun_js):
    a_id, b_id = await members("agent-a", "agent-b")
    async with Relay() as relay:
        a, b = await gun_swarm(a_id, relay.url, True), await gun_swarm(b_id, relay.url, True)
        raw = await NodeGun.start(gun_js, relay.url)
        try:
            await a.publish_pattern("s", "x", 0.1, 1)
            old = relay.server.gun.get(a.soul("learning"), "agent-a")["agent-a"]
            assert pattern_map(await b.get_patterns()) == {("s", "x"): (0.1, 1)}
            await a.publish_pattern("s", "x", 0.9, 9)
            assert pattern_map(await b.get_patterns()) == {("s", "x"): (0.9, 9)}
            # someone re-puts the older genuine value with a newer GUN state: GUN takes it, we do not
            assert (await raw.call("put", [a.soul("learning")], data={"agent-a": old}))["ok"]
            await until(lambda: relay.server.gun.get(a.soul("learning"), "agent-a")["agent-a"] == old)
            assert pattern_map(await b.get_patterns()) == {("s", "x"): (0.9, 9)}
            assert b.stats["stale"] == 1
        finally:
            await raw.stop()
            await a.close()
            await b.close()


@pytest.mark.parametrize("encrypted", [False, True])
async def test_encrypted_values_are_unreadable_in_the_raw_graph(gun_js, encrypted):
    a_id, b_id = await members("agent-a", "agent-b")
    [outsider] = await members("agent-a")  # same name, other swarm key: a relay operator or a stranger
    async with Relay() as relay:
        a = await gun_swarm(a_id, relay.url, encrypted)
        raw = await NodeGun.start(gun_js, relay.url)
        try:
            await a.publish_pattern("secret_state", "secret_action", 0.75, 3)
            state = a.learning.serialize_state()
            seen = (await raw.call("once", [a.soul("learning")]))["data"]["agent-a"]
            assert isinstance(seen, str) and seen == relay.server.gun.get(a.soul("learning"), "agent-a")["agent-a"]
            in_clear = base64.b64encode(state).decode() in seen
            assert in_clear is (not encrypted)
            if encrypted:
                assert set(json.loads(seen)) == {"ct", "header", "iv", "sig"}
            # an outsider's GunSwarm learns nothing from it: wrong swarm, nothing merged
            spy = GunSwarmBuilder("edge").encrypted(encrypted).build("agent-a", outsider,
                                                                      graph=NativeGunGraph([relay.url]))
            await spy.connect(5)
            try:
                node = await spy.graph.read(a.soul("learning"))
                assert node["agent-a"] == seen
                assert await spy.sealer.open_node("learning", node) == {}
                assert spy.stats["wrong_swarm"] == 1
            finally:
                await spy.close()
            # a member with the key reads it
            b = await gun_swarm(b_id, relay.url, encrypted)
            try:
                assert pattern_map(await b.get_patterns()) == {("secret_state", "secret_action"): (0.75, 3)}
            finally:
                await b.close()
        finally:
            await raw.stop()
            await a.close()


async def test_builder_refuses_bad_input_with_typed_errors():
    [p2p] = await members("agent-a")
    builder = GunSwarmBuilder("edge")
    for bad in (["ftp://x/gun"], ["not a url"], [None], ["http:///gun"]):
        with pytest.raises(MalformedMessage):
            builder.with_relays(bad)
    assert builder._relays == []
    for bad in ([], "http://127.0.0.1:1/gun"):
        with pytest.raises(MalformedMessage):
            builder.with_public_relays(bad)
    with pytest.raises(MalformedMessage):
        GunSwarmBuilder("bad name/with slash")
    with pytest.raises(MalformedMessage):
        builder.sync_interval(0)
    with pytest.raises(MalformedMessage):
        builder.build("someone-else", p2p)
    # offline first: nothing to connect to unless the user says so
    offline = builder.build("agent-a", p2p)
    assert offline.relays == () and offline.graph.relays == []
    await offline.connect()
    await offline.publish_pattern("s", "a", 0.5, 1)
    assert pattern_map(await offline.get_patterns()) == {("s", "a"): (0.5, 1)}
    await offline.close()
    public = GunSwarmBuilder("edge").with_public_relays(["https://relay.example.org/gun"]).build("agent-a", p2p)
    assert public.relays == ("https://relay.example.org/gun",)


async def test_sealing_refuses_a_value_bigger_than_the_limit():
    [p2p] = await members("agent-a")
    sealer = StateSealer(p2p, encrypted=True, max_value_chars=2_000)
    with pytest.raises(OversizedMessage):
        await sealer.seal("learning", b"\x01" * 4_000)
    assert len(await sealer.seal("learning", b"\x01" * 100)) < 2_000


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**60, 2**60), st.floats(allow_nan=False), st.text(max_size=40))
_json = st.recursive(_json_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                     max_leaves=12)


@pytest.mark.parametrize("encrypted", [False, True])
async def test_hostile_graph_values_are_refused_with_a_reason_and_change_nothing(encrypted):
    a_id, b_id = await members("agent-a", "agent-b")
    genuine = await StateSealer(a_id, encrypted=encrypted).seal("learning", b"state")
    fields = json.loads(genuine)

    values = st.one_of(
        _json,                                                              # any GUN value, not even a string
        _json.map(json.dumps),                                              # any JSON text
        st.dictionaries(st.sampled_from(sorted(fields)), _json).map(lambda d: json.dumps({**fields, **d})),
        st.integers(0, len(genuine) - 1).flatmap(                           # one character of a genuine value changed
            lambda i: st.characters(codec="ascii").map(lambda c: genuine[:i] + c + genuine[i + 1:])),
    )

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(node=st.dictionaries(st.sampled_from(["agent-a", "agent-b", "x", ""]), values, max_size=4))
    def check(node):
        sealer = StateSealer(b_id, encrypted=encrypted)
        opened = asyncio.run_coroutine_threadsafe(sealer.open_node("learning", node), loop).result(5)
        for key, state in opened.items():  # only the genuine value (any JSON spacing) opens, under its own key
            assert key == "agent-a" and json.loads(node[key]) == fields and state.payload == b"state"
        assert sum(sealer.stats.values()) == len(node)
        assert b_id.registry.get("agent-a") is not None and len(b_id.registry) == 2

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(check)


async def test_closing_the_native_graph_ends_its_relay_links_for_good():
    async with Relay() as relay:
        graphs = [NativeGunGraph([relay.url]) for _ in range(5)]
        for graph in graphs:
            await graph.connect(5)
        await until(lambda: relay.server.gun.metrics()["peers"] == 5)
        tasks = [task for graph in graphs for task, _ in graph._links]
        for graph in graphs:
            await graph.close()
        assert all(task.done() for task in tasks)  # the links' tasks are what reconnects: none is left to do it
        await until(lambda: relay.server.gun.metrics()["peers"] == 0)


async def test_a_native_client_keeps_only_the_souls_it_uses():
    """Our relay forwards a put only to the peers that asked for its soul, so other souls never reach a native
    agent; one that a relay still sends (the official one without AXE sends every put to every peer) is not
    stored either: a native agent's engine keeps only its swarm's souls."""
    a_id, b_id = await members("agent-a", "agent-b")
    async with Relay() as relay:
        a, b = await gun_swarm(a_id, relay.url, True), await gun_swarm(b_id, relay.url, True)
        other = NativeGunGraph([relay.url])
        await other.connect(5)
        try:
            await b.get_patterns()  # b now reads the learning soul
            for i in range(20):
                await other.put(f"unrelated/{i}", {"k": i})
            await a.publish_pattern("s", "x", 0.5, 1)
            await until(lambda: "agent-a" in (b.graph.engine.get(b.soul("learning")) or {}))
            assert set(b.graph.engine.graph.nodes) == {b.soul("learning")}
            assert b.graph.engine.metrics()["uninterested"] == 0  # not sent to b at all
            link = next(iter(b.graph.engine.peers))  # as if b's relay sent it anyway
            b.graph.engine.receive(link, json.dumps({"#": "u", "put": {"unrelated/x": {"_": {"#": "unrelated/x",
                                                                                          ">": {"k": 1}}, "k": 1}}}))
            assert set(b.graph.engine.graph.nodes) == {b.soul("learning")}
            assert b.graph.engine.metrics()["uninterested"] == 1
            assert len(relay.server.gun.graph.nodes) == 21  # the relay itself keeps everything
        finally:
            await other.close()
            await a.close()
            await b.close()


async def _pointer(p2p: P2PSwarm, cid_data: bytes, version: int = 1, publisher: str | None = None):
    from ruvector_edge.artifacts import ArtifactPointer, ArtifactType, cid_for
    import hashlib

    unsigned = ArtifactPointer(
        swarm=p2p.swarm_id, publisher=publisher or p2p.agent_id, artifact_type=ArtifactType.QTABLE,
        cid=str(cid_for(cid_data)), dimensions=(4, 2), schema_hash=hashlib.sha256(b"qtable-v1").digest(),
        checksum=hashlib.sha256(cid_data).digest(), version=version)
    return await unsigned.sign(p2p.identity)


@pytest.mark.parametrize("encrypted", [False, True])
async def test_artifact_pointers_are_found_by_other_members_and_forged_ones_are_counted(encrypted):
    a_id, b_id, c_id = await members("agent-a", "agent-b", "agent-c")
    async with Relay() as relay:
        a, b, c = [await gun_swarm(p, relay.url, encrypted) for p in (a_id, b_id, c_id)]
        try:
            first, second = await _pointer(a_id, b"q-table one"), await _pointer(a_id, b"q-table two")
            await a.publish_pointer(first)
            await a.publish_pointer(second)
            await a.publish_pointer(await _pointer(a_id, b"q-table one", version=2))  # replaces the first
            seen = await b.get_pointers()
            assert [(p.cid, p.version) for p in seen] == [(second.cid, 1), (first.cid, 2)]
            assert b.stats["bad_pointer"] == 0

            # someone else's pointer cannot be published as one's own ...
            with pytest.raises(ValueError):
                await c.publish_pointer(first)
            # ... nor smuggled into one's own signed list, nor tampered with: counted and dropped,
            # c's genuine pointer kept
            genuine = await _pointer(c_id, b"c's weights")
            tampered = dataclasses.replace(genuine, version=99)
            for smuggled in (first, tampered):
                await c._write("pointers", json.dumps([json.loads(p.to_json()) for p in (smuggled, genuine)]).encode())
                before = b.stats["bad_pointer"]
                by_publisher = {}
                for p in await b.get_pointers():
                    by_publisher.setdefault(p.publisher, []).append(p.version)
                assert by_publisher == {"agent-a": [1, 2], "agent-c": [1]}
                assert b.stats["bad_pointer"] == before + 1
            # not a list at all: one bad value, nothing from it
            await c._write("pointers", b'{"not": "a list"}')
            before = b.stats["bad_pointer"]
            assert {p.publisher for p in await b.get_pointers()} == {"agent-a"}
            assert b.stats["bad_pointer"] == before + 1
        finally:
            for s in (a, b, c):
                await s.close()
