"""Whole agents across federated relays on a real 3-node NATS cluster (issue 16): tasks, artifacts, and
traffic that keeps flowing when a NATS node dies."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os

import pytest

from nats_fixtures import running_nats
from relay_fixtures import TEST_SWARM_KEY, agent_config, wait_for, ws_url
from ruvector_edge.agent import AgentRole, SwarmAgent
from ruvector_edge.artifacts import CHUNK_SIZE
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.relay.federation import subjects as sj
from ruvector_edge.relay.federation.backplane import FederationConfig
from ruvector_edge.relay.federation.nats_bus import NatsOptions
from ruvector_edge.relay.server import RelayServer
from ruvector_edge.tasks import TaskStatus
from ruvector_edge.tasks.samples import sample_module
from test_federation_nats import client

pytestmark = pytest.mark.timeout(180)
_ids = itertools.count(1)


@contextlib.asynccontextmanager
async def relays_on(urls: list[str], replicas: int = 1):
    """One relay per NATS URL given (each knows the others as fallbacks, as a cluster client should)."""
    started = []
    try:
        for index, url in enumerate(urls):
            servers = (url, *[u for u in urls if u != url])
            config = FederationConfig(f"s{next(_ids)}", heartbeat_s=0.5, relay_timeout_s=2.0, replicas=replicas)
            server = RelayServer("127.0.0.1", 0, None, federation=(NatsOptions(servers), config))
            await server.start()
            started.append(server)
        yield started
    finally:
        for server in started:
            await server.stop()


async def joined_across(relays, *configs) -> list[SwarmAgent]:
    agents = []
    for cfg, relay in zip(configs, relays):
        agent = await SwarmAgent.new(cfg)
        await agent.join_swarm(ws_url(relay.port), timeout=10)
        agents.append(agent)
    for agent in agents:
        others = {a.agent_id for a in agents} - {agent.agent_id}
        await wait_for(lambda: all(agent.peers.get(p) is not None and agent.peers[p].joined for p in others),
                       timeout=20, what=f"{agent.agent_id} to see every JOIN across relays")
    return agents


async def test_task_on_relay_a_runs_on_relay_c_and_its_receipt_verifies_on_a(tmp_path):
    async with running_nats(tmp_path, 3) as cluster, relays_on([n.url for n in cluster.nodes]) as (ra, rb, rc):
        agents = await joined_across((ra, rb, rc), agent_config("req", AgentRole.SCOUT),
                                     agent_config("watcher", AgentRole.SCOUT), agent_config("worker"))
        requester, _, worker = agents
        try:
            task_id = await requester.submit_task(sample_module(), b"across three relays", priority=3)
            receipt = await requester.wait_receipt(task_id, timeout=40)
            assert receipt.status is TaskStatus.SUCCESS and receipt.executor == "worker"
            assert worker.swarm_tasks.executed == 1
            # The output is fetched from the worker on relay C, checked against the signed receipt.
            assert requester.get_artifact(receipt.output_cid) == b"ACROSS THREE RELAYS"
            assert receipt.output_hash == hashlib.sha256(b"ACROSS THREE RELAYS").digest()
            [row] = [r for r in requester.task_table() if r["task_id"] == task_id]
            assert row["state"] == "done" and row["verified"] and row["executor"] == "worker"
            assert sum(sum(a.rejected.values()) for a in agents) == 0
        finally:
            for agent in agents:
                await agent.leave()


async def test_a_chunked_artifact_is_fetched_across_relays(tmp_path):
    big = os.urandom(2 * CHUNK_SIZE + 1000)  # a manifest and three chunks, each a direct frame across NATS
    async with running_nats(tmp_path, 3) as cluster, relays_on([n.url for n in cluster.nodes]) as (ra, _, rc):
        owner, fetcher = await joined_across((rc, ra), agent_config("owner"), agent_config("fetcher"))
        try:
            cid = owner.store_artifact(big)
            assert await fetcher.fetch_artifact(cid, timeout=20) == big
            assert fetcher.get_artifact(cid) == big and owner.exchange.served == 4
            assert sum(fetcher.rejected.values()) == 0
        finally:
            await owner.leave()
            await fetcher.leave()


def _diagnosis(expected, got, relays, swarm_id) -> str:
    """Which frames arrived where, and what each relay's backplane knows (for a failure message)."""
    missing = {n: [i for i in ids if i not in got[n].ids] for n, ids in expected.items()}
    parts = [f"missing {missing}"]
    for relay in relays:
        bus = relay.bus
        swarm = bus.backplane._swarms.get(swarm_id)
        state = "no swarm" if swarm is None else (
            f"relays={sorted(swarm.relays)} remote={ {a: sorted(r) for a, r in swarm.remote.items()} } "
            f"head={swarm.head} position={swarm.position} awaited={list(swarm.awaited)} early={ {s: len(f) for s, f in swarm.early.items()} }")
        url = bus.nc.connected_url.port if bus.nc.connected_url else None
        parts.append(f"{bus.config.relay_id}: connected={bus.nc.is_connected} port={url} "
                     f"dropped={dict(bus.backplane.dropped)} {state}")
    return "; ".join(parts)


async def test_a_nats_node_killed_traffic_continues_through_the_other_two(tmp_path):
    """Streams and buckets with 3 replicas; relay A's node dies: A reconnects to another node and its
    agents keep hearing, and being heard by, the agents on B and C."""
    async with running_nats(tmp_path, 3) as cluster, \
            relays_on([n.url for n in cluster.nodes], replicas=3) as (ra, rb, rc):
        a, b, c = [await P2PSwarm.create(n, TEST_SWARM_KEY) for n in ("alice", "bob", "carol")]
        (la, ga), (lb, gb), (lc, gc) = [await client(ws_url(r.port), s) for r, s in ((ra, a), (rb, b), (rc, c))]
        try:
            await wait_for(lambda: all(r.bus.backplane.relay_of(a.swarm_id, n) is not None
                                       for r in (ra, rb, rc) for n in ("alice", "bob", "carol")),
                           timeout=20, what="presence of everyone everywhere")
            first = await b.publish("t", b"before")
            await lb.send(first.frame)
            await wait_for(lambda: first.message_id in ga.ids and first.message_id in gc.ids, timeout=10,
                           what="the first frame everywhere")
            cluster.nodes[0].kill()  # relay A's own node
            sent = []
            for sender, link in ((b, lb), (a, la), (c, lc)):
                published = await sender.publish("t", f"after from {sender.agent_id}".encode())
                await link.send(published.frame)
                sent.append(published.message_id)
            expected = {"alice": (sent[0], sent[2]), "bob": (sent[1],), "carol": (sent[1], sent[0])}
            got = {"alice": ga, "bob": gb, "carol": gc}
            try:
                await wait_for(lambda: all(i in got[n].ids for n, ids in expected.items() for i in ids), timeout=60,
                               what="frames to cross relays after the node died")
            except AssertionError as exc:
                try:
                    stored = (await rb.bus.js.stream_info(sj.stream_name(a.swarm_id))).state.last_seq
                except Exception as info_exc:  # noqa: BLE001 - a diagnosis, not the test
                    stored = repr(info_exc)
                raise AssertionError(f"{exc}; stream last_seq={stored}; "
                                     f"{_diagnosis(expected, got, (ra, rb, rc), a.swarm_id)}") from None
            assert ra.bus.nc.is_connected and ra.bus.nc.connected_url.port != cluster.nodes[0].port
        finally:
            for link in (la, lb, lc):
                await link.stop()
