"""Relays federated over real nats-server processes on loopback (issue 16): one swarm across relays,
catch-up after failover, frames injected on NATS refused by agents, NATS refusing bad credentials."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess

import pytest

from nats_fixtures import make_tls_files, running_nats
from relay_fixtures import (TEST_SWARM_KEY, agent_config, child_env, free_port, joined_agents, script,
                            wait_for, ws_url)
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.relay.federation import subjects as sj
from ruvector_edge.relay.federation.backplane import FederationConfig
from ruvector_edge.relay.federation.nats_bus import NatsOptions
from ruvector_edge.relay.server import RelayServer
from ruvector_edge.transport.websocket import RelayClient

pytestmark = pytest.mark.timeout(180)
_ids = itertools.count(1)


@contextlib.asynccontextmanager
async def relays(servers: str, count: int, **options):
    started = []
    try:
        for _ in range(count):
            federation = (NatsOptions(tuple(servers.split(",")), **options),
                          FederationConfig(f"r{next(_ids)}", heartbeat_s=0.5, relay_timeout_s=2.0))
            server = RelayServer("127.0.0.1", 0, None, federation=federation)
            await server.start()
            started.append(server)
        yield started
    finally:
        for server in started:
            await server.stop()


class Collector:
    """A bare relay client that records the message ids of the envelopes it gets, in order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.payloads: list[bytes] = []

    async def __call__(self, raw: str) -> None:
        self.ids.append(json.loads(raw)["header"]["message_id"])


async def client(url: str, swarm: P2PSwarm, topics=("t",)) -> tuple[RelayClient, Collector]:
    got = Collector()
    link = RelayClient(url, swarm, on_envelope=got, topics=topics, backoff_initial_s=0.05, backoff_max_s=0.5)
    await link.start()
    await link.wait_connected(10)
    await link.ping()
    return link, got


async def test_agents_on_three_relays_of_a_three_node_cluster_are_one_swarm(tmp_path):
    async with running_nats(tmp_path, 3) as cluster, relays(cluster.urls, 3) as (ra, rb, rc):
        configs = [agent_config(name) for name in ("alice", "bob", "carol")]
        from ruvector_edge.agent import SwarmAgent

        agents = []
        try:
            for cfg, relay in zip(configs, (ra, rb, rc)):
                agent = await SwarmAgent.new(cfg)
                await agent.join_swarm(ws_url(relay.port), timeout=10)
                agents.append(agent)
            for agent in agents:
                others = {a.agent_id for a in agents} - {agent.agent_id}
                await wait_for(lambda: all(agent.peers.get(p) is not None and agent.peers[p].joined for p in others),
                               timeout=20, what=f"{agent.agent_id} to see every JOIN across relays")
            # A memory stored on relay A's agent reaches the agent on relay C.
            await agents[0].store_text("federated relays share one swarm")
            await wait_for(lambda: len(agents[2].memory) >= 1, timeout=20, what="the memory to reach carol")
            # Each relay holds one NATS subscription per topic in use, not one per agent.
            assert [len([k for k in r.bus._subs if k[0] == "t"]) for r in (ra, rb, rc)] == [1, 1, 1]
        finally:
            for agent in agents:
                await agent.leave()


async def test_broadcasts_and_direct_frames_cross_relays_and_swarms_stay_apart(tmp_path):
    async with running_nats(tmp_path, 1) as nats_, relays(nats_.urls, 2) as (ra, rb):
        a, b = await P2PSwarm.create("alice", TEST_SWARM_KEY), await P2PSwarm.create("bob", TEST_SWARM_KEY)
        x = await P2PSwarm.create("xavier", bytes(range(1, 33)))
        (la, ga), (lb, gb), (lx, gx) = await client(ws_url(ra.port), a), await client(ws_url(rb.port), b), \
            await client(ws_url(rb.port), x)
        try:
            await wait_for(lambda: rb.bus.backplane.relay_of(a.swarm_id, "alice") == ra.bus.config.relay_id,
                           what="presence of alice on relay B")
            await a.register_member(b.registration)
            sent = [await a.publish("t", b"%d" % i) for i in range(20)]
            direct = await a.send_direct("bob", b"just bob")
            for p in [*sent, direct]:
                await la.send(p.frame)
            await wait_for(lambda: len(gb.ids) == 21, timeout=10, what="bob to get everything")
            # In order per topic (one consumer each); a direct frame may pass broadcasts sent before it.
            assert [i for i in gb.ids if i != direct.message_id] == [p.message_id for p in sent]
            assert direct.message_id in gb.ids
            assert ga.ids == [] and gx.ids == []
        finally:
            for link in (la, lb, lx):
                await link.stop()


def start_relay(port: int, nats_url: str, relay_id: str) -> subprocess.Popen:
    proc = subprocess.Popen([script("edge-relay"), "--listen", f"127.0.0.1:{port}", "--memory-only", "--nats", nats_url,
                             "--relay-id", relay_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(EDGE_LOG="warning"), cwd="/")
    line = proc.stdout.readline()
    assert "listening" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


async def test_relay_killed_with_sigkill_its_agent_fails_over_and_loses_nothing(tmp_path):
    """Alice's relay A dies; bob keeps sending; only once carol has all of it does relay C (alice's
    next URL) come up, so alice can only have what she missed by catching up from the stream."""
    async with running_nats(tmp_path, 1) as nats_:
        pa, pb, pc = free_port(), free_port(), free_port()
        procs = [start_relay(pa, nats_.urls, "ra"), start_relay(pb, nats_.urls, "rb")]
        links = []
        try:
            a, b, c = [await P2PSwarm.create(n, TEST_SWARM_KEY) for n in ("alice", "bob", "carol")]
            la, ga = await client(f"{ws_url(pa)},{ws_url(pc)}", a)
            lb, gb = await client(ws_url(pb), b)
            lc, gc = await client(ws_url(pb), c)
            links = [la, lb, lc]
            before = [await b.publish("t", b"before %d" % i) for i in range(5)]
            for p in before:
                await lb.send(p.frame)
            await wait_for(lambda: len(ga.ids) == 5, timeout=10, what="alice to get the first frames")
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            during = [await b.publish("t", b"during %d" % i) for i in range(50)]
            for p in during:  # sent while alice has no relay
                await lb.send(p.frame)
            await wait_for(lambda: len(gc.ids) == 55, timeout=10, what="carol to get everything bob sent")
            assert len(ga.ids) == 5
            procs.append(start_relay(pc, nats_.urls, "rc"))
            await wait_for(lambda: len(set(ga.ids)) >= 55, timeout=15, what="alice to catch up on relay C")
            assert la.target == ws_url(pc) and la.reconnects >= 1
            # In order and none lost. Her resume point is the relay's confirmed stream position, which
            # may lag the live frames she had: only those come again (her replay guard skips them).
            assert list(dict.fromkeys(ga.ids)) == [p.message_id for p in [*before, *during]]
            repeated = [i for n, i in enumerate(ga.ids) if i in ga.ids[:n]]
            assert set(repeated) <= {p.message_id for p in before} and len(ga.ids) - len(repeated) == 55
            # Relay A restarted rejoins the federation: an agent on it reaches bob.
            procs.append(start_relay(pa, nats_.urls, "ra2"))
            d = await P2PSwarm.create("dave", TEST_SWARM_KEY)
            ld, _ = await client(ws_url(pa), d)
            links.append(ld)
            after = await d.publish("t", b"after")
            await ld.send(after.frame)
            await wait_for(lambda: after.message_id in gb.ids, timeout=10, what="bob to hear dave on the restarted relay")
        finally:
            for link in links:
                await link.stop()
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(10)


async def test_frames_injected_onto_nats_are_refused_by_agents_as_on_one_relay(tmp_path):
    import nats

    from ruvector_edge.agent import SwarmAgent

    async with running_nats(tmp_path, 1) as nats_, relays(nats_.urls, 1) as (relay,):
        agents = await joined_agents(ws_url(relay.port), agent_config("alice"), agent_config("bob"))
        alice, bob = agents
        swarm_id = alice.swarm.swarm_id
        nc = await nats.connect(nats_.urls)
        try:
            topic = next(t for (kind, s, *rest) in relay.bus._subs if kind == "t" for t in rest)
            subject = sj.topic_subject(swarm_id, topic)
            # A real frame of bob's, recorded and published again (under two bus ids): delivered once,
            # the copies dropped by the relay's de-duplication by message id, no refusal counted.
            real = await bob.swarm.publish(topic, b"\x00")
            mallory = await SwarmAgent.new(agent_config("mallory", swarm_key=bytes(range(2, 34))))
            foreign = await mallory.swarm.publish(topic, b"\x00")
            forged = json.loads((await bob.swarm.publish(topic, b"\x01")).frame)
            forged["sig"] = "00" * 64  # never delivered before: refused for its signature, not as a replay
            for data, msg_id in ((real.frame, "r1"), (real.frame, "r2"), (json.dumps(forged).encode(), "f"),
                                 (b"garbage", "g"), (foreign.frame, "w")):
                await nc.publish(subject, data, headers={"Nats-Msg-Id": msg_id})
            await nc.flush()
            await wait_for(lambda: alice.rejected.get("BadSignature", 0) >= 1, timeout=10, what="the forged frame refused")
            dropped = relay.bus.backplane.dropped
            await wait_for(lambda: dropped["malformed"] >= 1 and dropped["wrong_swarm"] >= 1 and dropped["duplicate"] >= 1,
                           what="relay drops")
            assert "ReplayDetected" not in alice.rejected
            await mallory.leave()
        finally:
            await nc.close()
            for agent in agents:
                await agent.leave()


async def test_nats_refuses_a_relay_with_wrong_credentials(tmp_path):
    async with running_nats(tmp_path, 1, ["--user", "edge", "--pass", "s3cret"], user="edge", password="s3cret") as nats_:
        with pytest.raises(Exception) as refused:
            async with relays(nats_.urls, 1, user="edge", password="wrong"):
                pass
        assert "authorization" in str(refused.value).lower() or "auth" in type(refused.value).__name__.lower() \
            or "NoServers" in type(refused.value).__name__, repr(refused.value)
        async with relays(nats_.urls, 1, user="edge", password="s3cret") as (relay,):
            assert relay.bus.nc.is_connected


async def test_relay_joins_nats_over_tls_with_a_ca_the_test_made(tmp_path):
    tls = make_tls_files(tmp_path)
    extra = ["--tls", "--tlscert", tls["cert"], "--tlskey", tls["key"]]
    import ssl

    context = ssl.create_default_context(cafile=tls["ca"])
    async with running_nats(tmp_path, 1, extra, tls=context) as nats_:
        url = f"tls://127.0.0.1:{nats_.nodes[0].port}"
        async with relays(url, 2, tls_ca=tls["ca"]) as (ra, rb):
            a, b = await P2PSwarm.create("alice", TEST_SWARM_KEY), await P2PSwarm.create("bob", TEST_SWARM_KEY)
            (la, _), (lb, gb) = await client(ws_url(ra.port), a), await client(ws_url(rb.port), b)
            try:
                await wait_for(lambda: rb.bus.backplane.relay_of(a.swarm_id, "alice") is not None, what="presence")
                p = await a.publish("t", b"over tls")
                await la.send(p.frame)
                await wait_for(lambda: gb.ids == [p.message_id], what="the frame over TLS")
            finally:
                await la.stop()
                await lb.stop()
        with pytest.raises(Exception):  # without the CA the server's certificate is not trusted
            async with relays(url, 1):
                pass


async def test_a_relay_whose_nats_went_silent_stops_promptly(tmp_path):
    """A cut link (no close, no reset): draining would wait nats-py's 30 s drain timeout for a PONG."""
    from test_relay_client_liveness import SilentProxy

    async with running_nats(tmp_path, 1) as nats_:
        proxy = SilentProxy(int(nats_.urls.rsplit(":", 1)[1]))
        port = await proxy.start()
        federation = (NatsOptions((f"nats://127.0.0.1:{port}",)), FederationConfig("cut", heartbeat_s=0.5, relay_timeout_s=2.0))
        server = RelayServer("127.0.0.1", 0, None, federation=federation)
        await server.start()
        try:
            proxy.cut()
        finally:
            await asyncio.wait_for(server.stop(), 8)  # drained at most 2 s, then closed (10 s and more before)
            await proxy.stop()


async def test_a_relay_still_setting_up_a_swarm_takes_its_frames_live_meanwhile(tmp_path):
    """Relay B's first agent joins while B's stream and presence watch wait on JetStream (held here past the
    unknown-sender wait): B subscribes at once, and a frame sent meanwhile reaches its agent once B knows the
    sender, instead of being missed (B was not subscribed yet) and never fetched (it predates B's feed)."""
    async with running_nats(tmp_path, 1) as nats_, relays(nats_.urls, 2) as (ra, rb):
        a, b = await P2PSwarm.create("alice", TEST_SWARM_KEY), await P2PSwarm.create("bob", TEST_SWARM_KEY)
        la, ga = await client(ws_url(ra.port), a)
        gate = asyncio.Event()
        ensure = rb.bus._ensure_swarm

        async def held_ensure(command):
            if command.swarm == a.swarm_id:
                await gate.wait()
            await ensure(command)

        rb.bus._ensure_swarm = held_ensure
        lb, gb = await client(ws_url(rb.port), b)
        x1, x2 = await P2PSwarm.create("x1", bytes(range(1, 33))), await P2PSwarm.create("x2", bytes(range(1, 33)))
        (lx1, _), (lx2, gx2) = await client(ws_url(ra.port), x1), await client(ws_url(rb.port), x2)
        try:
            # Another swarm on B is not held up by this one's setup.
            await wait_for(lambda: rb.bus.backplane.relay_of(x1.swarm_id, "x1") is not None, timeout=10,
                           what="presence of x1 on relay B")
            other = await x1.publish("t", b"other swarm")
            await lx1.send(other.frame)
            await wait_for(lambda: other.message_id in gx2.ids, timeout=10, what="x2 to get its swarm's frame")
            await wait_for(lambda: ("t", a.swarm_id, "t") in rb.bus._subs, timeout=5, what="B's subscription")
            sent = await a.publish("t", b"while B sets up")
            await la.send(sent.frame)
            await asyncio.sleep(rb.bus.config.relay_timeout_s + 0.5)  # past the wait an unknown sender's frame gets
            gate.set()
            await wait_for(lambda: sent.message_id in gb.ids, timeout=10, what="bob to get the frame")
        finally:
            gate.set()
            for link in (la, lb, lx1, lx2):
                await link.stop()
