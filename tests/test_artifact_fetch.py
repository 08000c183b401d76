"""Fetching artifacts over the swarm: the sans-I/O BlockFetch, then real agents over a real relay.

Includes a lying peer that serves a corrupt chunk (refused, fetched from another
member) and hostile BLOCK / REQUEST_BLOCK messages (typed error, nothing changes).
"""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_fixtures import running_relay, wait_for, ws_url
from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig
from ruvector_edge.artifacts import CHUNK_SIZE, ArtifactStore
from ruvector_edge.artifacts.exchange import MAX_WIRE_BLOCK
from ruvector_edge.artifacts.fetch import BlockFetch
from ruvector_edge.errors import (
    ArtifactUnavailable,
    ChunkHashMismatch,
    InvalidCid,
    UnsolicitedReply,
)
from ruvector_edge.p2p.wire import b64
from ruvector_edge.protocol import MessageKind

pytestmark = pytest.mark.timeout(60)

KEY = bytes(range(32))
BIG = os.urandom(2 * CHUNK_SIZE + 1000)  # a manifest and three chunks


def source_store() -> tuple[ArtifactStore, str]:
    store = ArtifactStore()
    return store, store.store_artifact(BIG)


# --- BlockFetch, sans-I/O -------------------------------------------------------------------


def test_manifest_first_then_chunks_spread_over_peers():
    source, cid = source_store()
    target = ArtifactStore()
    fetch = BlockFetch(target, cid, ["a", "b"], parallel=4)
    [first] = fetch.next_requests(0.0)
    assert first.cid == cid and first.peer == "a"
    assert fetch.next_requests(0.0) == []  # the manifest is in flight; nothing else is known yet
    fetch.on_block("a", cid, source.get_chunk(cid))
    requests = fetch.next_requests(0.0)
    assert len(requests) == 3 and {r.peer for r in requests} == {"a", "b"}
    for r in requests:
        fetch.on_block(r.peer, r.cid, source.get_chunk(r.cid))
    assert fetch.done and target.get_artifact(cid) == BIG


def test_bad_chunk_is_refused_and_asked_of_another_peer():
    source, cid = source_store()
    target = ArtifactStore()
    fetch = BlockFetch(target, cid, ["liar", "honest"], parallel=1)
    [r] = fetch.next_requests(0.0)
    assert r.peer == "liar"
    with pytest.raises(ChunkHashMismatch):
        fetch.on_block("liar", cid, b"not the manifest")
    assert not target.has(cid) and fetch.liars == {"liar"}
    [r] = fetch.next_requests(0.0)
    assert r.peer == "honest" and r.cid == cid


def test_absent_and_timeout_move_on_then_unavailable():
    source, cid = source_store()
    fetch = BlockFetch(ArtifactStore(), cid, ["a", "b"], parallel=2, request_timeout=1.0)
    [r] = fetch.next_requests(0.0)
    fetch.on_absent(r.peer, cid)
    [r2] = fetch.next_requests(0.5)
    assert r2.peer != r.peer
    assert fetch.expire(1.0) == 0 and fetch.expire(1.5) == 1 and fetch.timeouts == 1
    [r3] = fetch.next_requests(2.0)  # a silent peer gets a second chance (its reply may have been dropped)...
    assert r3.peer == r2.peer
    fetch.expire(3.0)
    with pytest.raises(ArtifactUnavailable):  # ...but not a third, and one that said "absent" none
        fetch.next_requests(3.0)


def test_unsolicited_reply_changes_nothing():
    source, cid = source_store()
    target = ArtifactStore()
    fetch = BlockFetch(target, cid, ["a"])
    with pytest.raises(UnsolicitedReply):
        fetch.on_block("a", cid, source.get_chunk(cid))
    assert not target.has(cid) and fetch.liars == set()
    [r] = fetch.next_requests(0.0)
    with pytest.raises(UnsolicitedReply):
        fetch.on_block("mallory", cid, source.get_chunk(cid))
    assert fetch.expects("a", cid) and not target.has(cid)


def test_bad_cid_is_refused():
    with pytest.raises(InvalidCid):
        BlockFetch(ArtifactStore(), "bnotacid", ["a"])


# Each step: which in-flight request (by index) gets which outcome.
OUTCOMES = st.sampled_from(["good", "corrupt", "absent", "timeout"])


@settings(max_examples=80, deadline=None)
@given(peers=st.integers(1, 4), outcomes=st.lists(st.tuples(st.integers(0, 7), OUTCOMES), max_size=60))
def test_any_sequence_of_replies_ends_and_never_stores_a_bad_block(peers, outcomes):
    source, cid = source_store()
    target = ArtifactStore()
    fetch = BlockFetch(target, cid, [f"p{i}" for i in range(peers)], parallel=3, request_timeout=1.0)
    now, inflight, steps = 0.0, [], iter(outcomes)
    for _ in range(200):  # every block is asked of every peer at most twice: 2 × 4 blocks × 4 peers bounds it
        try:
            inflight += fetch.next_requests(now)
        except ArtifactUnavailable:
            break
        if fetch.done or not inflight:
            break
        index, outcome = next(steps, (0, "good"))
        r = inflight.pop(index % len(inflight))
        if outcome == "good":
            fetch.on_block(r.peer, r.cid, source.get_chunk(r.cid))
        elif outcome == "corrupt":
            with pytest.raises(ChunkHashMismatch):
                fetch.on_block(r.peer, r.cid, b"x" + source.get_chunk(r.cid)[1:])
        elif outcome == "absent":
            fetch.on_absent(r.peer, r.cid)
        else:
            now = r.deadline
            fetch.expire(now)
            inflight = [q for q in inflight if fetch.expects(q.peer, q.cid)]
    else:
        pytest.fail("fetch did not end")
    if fetch.done:
        assert target.get_artifact(cid) == BIG
    for block in [cid, *target.missing_chunks(cid)]:
        data = target.get_chunk(block) if target.has(block) else None
        assert data is None or source.get_chunk(block) == data


# --- over a real relay --------------------------------------------------------------------


def config(agent_id: str, role: AgentRole = AgentRole.SCOUT) -> SwarmConfig:
    return SwarmConfig(agent_id=agent_id, role=role, swarm_key=KEY, coordinator_url=None)


async def joined(url: str, *ids: str) -> list[SwarmAgent]:
    agents = []
    for agent_id in ids:
        agent = await SwarmAgent.new(config(agent_id))
        await agent.join_swarm(url, timeout=10)
        agents.append(agent)
    for agent in agents:
        await wait_for(lambda: all(agent.peers.get(p) is not None and agent.peers[p].joined
                                   for p in set(ids) - {agent.agent_id}), what=f"{agent.agent_id} to see every JOIN")
    for agent in agents:
        await agent.links["relay"].ping()
    return agents


@pytest.fixture
async def relay():
    async with running_relay() as server:
        yield server


async def test_fetch_a_chunked_artifact_from_the_member_that_has_it(relay):
    owner, fetcher, bystander = await joined(ws_url(relay.port), "owner", "fetcher", "bystander")
    try:
        cid = owner.store_artifact(BIG)
        small = owner.store_artifact(b"tiny artifact")
        assert await fetcher.fetch_artifact(cid, timeout=10) == BIG
        assert await fetcher.fetch_artifact(small, timeout=10) == b"tiny artifact"
        assert fetcher.get_artifact(cid) == BIG  # now local
        assert owner.exchange.served == 5 and fetcher.exchange.outstanding() == 0
        assert sum(fetcher.rejected.values()) == 0
    finally:
        for agent in (owner, fetcher, bystander):
            await agent.leave()


async def test_lying_peer_chunk_is_refused_and_fetched_elsewhere(relay):
    honest, liar, fetcher = await joined(ws_url(relay.port), "honest", "liar", "fetcher")
    try:
        cid = honest.store_artifact(BIG)
        liar.store_artifact(BIG)

        async def serve_corrupt(sender, message):
            block = liar.artifacts.get_chunk(message.body["cid"])
            await liar.send_to(sender, MessageKind.BLOCK, cid=message.body["cid"], req=message.body["req"],
                               data=b64(bytes([block[0] ^ 1]) + block[1:]))

        liar._handlers[MessageKind.REQUEST_BLOCK] = serve_corrupt
        assert await fetcher.fetch_artifact(cid, timeout=10, prefer=["liar", "honest"]) == BIG
        assert fetcher.rejected["ChunkHashMismatch"] == 1  # one lie, then the liar is not asked again
        assert honest.exchange.served == 4
    finally:
        for agent in (honest, liar, fetcher):
            await agent.leave()


async def test_nobody_has_it_or_nobody_answers_is_artifact_unavailable(relay):
    a, b = await joined(ws_url(relay.port), "a", "b")
    try:
        unknown = ArtifactStore().store_artifact(b"held by nobody")
        with pytest.raises(ArtifactUnavailable):
            await a.fetch_artifact(unknown, timeout=5)
        b._handlers[MessageKind.REQUEST_BLOCK] = lambda sender, message: asyncio.sleep(0)  # silent
        b.store_artifact(b"held by a silent peer")
        with pytest.raises(ArtifactUnavailable):
            await a.fetch_artifact(ArtifactStore().store_artifact(b"held by a silent peer"), timeout=0.5)
        assert a.exchange.outstanding() == 0 and not a.artifacts.has(unknown)
    finally:
        await a.leave()
        await b.leave()


async def test_hostile_block_messages_are_refused_without_changing_anything(relay):
    fetcher, silent = await joined(ws_url(relay.port), "fetcher", "silent")
    try:
        cid = silent.store_artifact(b"the real bytes")
        silent._handlers[MessageKind.REQUEST_BLOCK] = lambda sender, message: asyncio.sleep(0)
        fetcher.exchange.request_timeout = 20.0  # the silence must outlast the hostile messages below
        fetching = asyncio.create_task(fetcher.fetch_artifact(cid, timeout=20))
        await wait_for(lambda: fetcher.exchange.outstanding() == 1, what="the request to go out")
        [token] = list(fetcher.exchange._pending)
        hostile = [
            ({"cid": cid, "req": token, "data": "!!!!"}, "MalformedMessage"),
            ({"cid": cid, "req": token, "data": "A" * (MAX_WIRE_BLOCK // 3 * 4 + 8)}, "OversizedMessage"),
            ({"cid": cid, "req": token, "data": 7}, "MalformedMessage"),
            ({"cid": cid, "req": token}, "MalformedMessage"),
            ({"cid": cid, "req": "0" * 24, "data": b64(b"the real bytes")}, "UnsolicitedReply"),
            ({"cid": ArtifactStore().store_artifact(b"other"), "req": token, "data": b64(b"other")}, "UnsolicitedReply"),
        ]
        for body, error in hostile:
            before = fetcher.rejected[error]
            await silent.send_to("fetcher", MessageKind.BLOCK, **body)
            await wait_for(lambda: fetcher.rejected[error] == before + 1, what=f"{error} for {str(body)[:60]}")
            assert fetcher.exchange.outstanding() == 1 and not fetcher.artifacts.has(cid)
        for body, error in [({"cid": "bnotacid", "req": "x"}, "InvalidCid"),
                            ({"cid": cid, "req": "x" * 33}, "MalformedMessage"),
                            ({"cid": cid}, "MalformedMessage")]:
            before = fetcher.rejected[error]
            await silent.send_to("fetcher", MessageKind.REQUEST_BLOCK, **body)
            await wait_for(lambda: fetcher.rejected[error] == before + 1, what=f"{error} at the server")
        await silent.send_to("fetcher", MessageKind.BLOCK, cid=cid, req=token, data=b64(b"the real bytes"))
        assert await asyncio.wait_for(fetching, 10) == b"the real bytes"
    finally:
        await fetcher.leave()
        await silent.leave()
