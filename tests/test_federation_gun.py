"""GUN across federated relays (relay/federation/gun_bridge.py), on real nats-server processes:
GUN.js peers on different relays see each other's puts; a frame that reaches a relay twice over
NATS is applied once; garbage on the GUN subject is counted, not fatal."""

from __future__ import annotations

import asyncio
import json

import nats
import pytest

from nats_fixtures import running_nats
from ruvector_edge.relay.federation.gun_bridge import GUN_SUBJECT
from test_federation_nats import relays
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
