"""GUN across federated relays (relay/federation/gun_bridge.py), on real nats-server processes:
GUN.js peers on different relays see each other's puts; a frame that reaches a relay twice over
NATS is applied once; garbage on the GUN subject is counted, not fatal, and the counts are in the
relay's /metrics beside the federation backplane's drops."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import nats
import pytest

from nats_fixtures import running_nats
from relay_fixtures import TEST_SWARM_KEY, ws_url
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.relay.federation import subjects as sj
from ruvector_edge.relay.federation.gun_bridge import GUN_SUBJECT
from test_federation_nats import client, relays
from test_gun import NodeGun, gun_js, until  # noqa: F401 - gun_js is a fixture

pytestmark = pytest.mark.timeout(120)


def gun_url(relay) -> str:
    return f"http://127.0.0.1:{relay.port}/gun"


async def test_a_gun_js_peer_on_relay_a_sees_a_put_made_through_relay_b(gun_js, tmp_path):
    async with running_nats(tmp_path, 2) as cluster, relays(cluster.nodes[0].url, 1) as (ra,), \
            relays(cluster.nodes[1].url, 1) as (rb,):
        reader, writer = await NodeGun.start(gun_js, gun_url(ra)), await NodeGun.start(gun_js, gun_url(rb))
        try:
            watch = await reader.call("on", ["fed", "presence", "agent-1"])
            await writer.call("put", ["fed", "presence", "agent-1"], data={"online": True, "relay": "b"})
            await until(lambda: any(e.get("data", {}).get("relay") == "b" for e in reader.events.get(watch["sub"], [])),
                        timeout=15)
            # relay A merged it into its own graph: a peer arriving there later reads it from A
            assert ra.gun.get("fed") is not None
            late = await NodeGun.start(gun_js, gun_url(ra))
            try:
                got = await late.call("once", ["fed", "presence", "agent-1"], wait=2000)
                assert got["data"] == {"online": True, "relay": "b"}
            finally:
                await late.stop()
        finally:
            await reader.stop()
            await writer.stop()


async def test_a_put_reaching_a_relay_twice_over_nats_is_applied_once_and_garbage_is_counted(tmp_path):
    async with running_nats(tmp_path, 1) as cluster, relays(cluster.urls, 1) as (relay,):
        put = {"#": "dup-test-1", "put": {"soul-x": {"_": {"#": "soul-x", ">": {"k": 1}}, "k": "v"}}}
        nc = await nats.connect(cluster.urls)
        try:
            before = dict(relay.gun.counts)
            for raw in (json.dumps(put).encode(), json.dumps(put).encode(), b"{not json", b"\xff\xfe"):
                await nc.publish(GUN_SUBJECT, raw)
            await nc.flush()
            await until(lambda: relay.gun_bridge.counts["received"] >= 4, timeout=10)
        finally:
            await nc.close()
        counts = relay.gun.counts
        assert counts["puts"] - before["puts"] == 1
        assert counts["duplicates"] - before["duplicates"] == 1
        assert counts["malformed"] - before["malformed"] == 2
        assert relay.gun.get("soul-x") == {"_": {"#": "soul-x", ">": {"k": 1}}, "k": "v"}


async def _scrape(http, relay) -> dict[str, float]:
    async with http.get(f"http://127.0.0.1:{relay.port}/metrics") as response:
        text = await response.text()
    return {name: float(value) for name, value in
            (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))}


async def test_the_relays_metrics_count_gun_frames_between_relays_and_federation_drops(tmp_path):
    put = {"#": "metrics-put-1", "put": {"soul-m": {"_": {"#": "soul-m", ">": {"k": 1}}, "k": "v"}}}
    expected_b = {'edge_relay_gun_bridge_frames_total{what="received"}': 4,  # A's put, then the three below
                  'edge_relay_gun_bridge_frames_total{what="duplicates"}': 1,
                  'edge_relay_gun_bridge_dropped_total{reason="malformed"}': 2,
                  'edge_relay_federation_dropped_total{reason="malformed"}': 1}
    async with running_nats(tmp_path, 1) as cluster, relays(cluster.urls, 2) as (ra, rb), \
            aiohttp.ClientSession() as http:
        bob = await P2PSwarm.create("bob", TEST_SWARM_KEY)
        link, _ = await client(ws_url(rb.port), bob)  # relay B subscribes topic t of bob's swarm
        nc = await nats.connect(cluster.urls)
        try:
            async with http.ws_connect(f"ws://127.0.0.1:{ra.port}/gun") as peer:  # a GUN peer on relay A puts
                await peer.send_str(json.dumps(put))
                await until(lambda: rb.gun.get("soul-m") is not None, timeout=15)
            for raw in (json.dumps(put).encode(), b"{not json", b"\xff\xfe"):  # straight onto NATS
                await nc.publish(GUN_SUBJECT, raw)
            await nc.publish(sj.topic_subject(bob.swarm_id, "t"), b"garbage")
            await nc.flush()
            deadline = time.monotonic() + 15
            while {k: (await _scrape(http, rb)).get(k) for k in expected_b} != expected_b:
                assert time.monotonic() < deadline, f"relay B's /metrics: {await _scrape(http, rb)}"
                await asyncio.sleep(0.25)
            assert (await _scrape(http, ra))['edge_relay_gun_bridge_frames_total{what="published"}'] == 1
        finally:
            await nc.close()
            await link.stop()
