"""Federation with every NATS node and relay its own host (issue 16): Linux network namespaces on one
bridge (tests/netns.py), so frames cross interfaces and a relay host can be cut off by taking its
switch port down. The agents run in this process, on the bridge from the root namespace.

Runs where the test is root (as in CI); skipped elsewhere, where tests/test_federation_nats.py covers
the same federation on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import time

import aiohttp
import pytest

import netns
from nats_fixtures import NATS_SERVER, wait_jetstream
from relay_fixtures import TEST_SWARM_KEY, child_env, script, wait_for
from ruvector_edge.errors import RejectedInput
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.transport.websocket import RelayClient

pytestmark = [pytest.mark.timeout(150),
              pytest.mark.skipif(netns.unavailable() is not None, reason=str(netns.unavailable()))]

NATS_HOSTS = ("n0", "n1", "n2")
RELAY_HOSTS = ("r0", "r1", "r2")
RELAY_PORT = 8080
CUT_LIVENESS_S = 2.0  # where a host is cut off, agents give up on a silent relay after ~3 s (default: 10 s)


@contextlib.asynccontextmanager
async def federation_hosts(tmp_path):
    """Three NATS nodes (one cluster) and three relays, each relay on a node of its own, six hosts."""
    with netns.network([*NATS_HOSTS, *RELAY_HOSTS]) as net:
        nodes = [net.addr(h) for h in NATS_HOSTS]
        for index, host in enumerate(NATS_HOSTS):
            store = tmp_path / host
            store.mkdir()
            routes = ",".join(f"nats://{a}:6222" for i, a in enumerate(nodes) if i != index)
            net.popen(host, [NATS_SERVER, "-a", "0.0.0.0", "-p", "4222", "-js", "-sd", str(store), "-n", host,
                             "--cluster_name", "edge", "--cluster", "nats://0.0.0.0:6222", "--routes", routes],
                      tmp_path / f"{host}.log")
        for address in nodes:
            await wait_jetstream(f"nats://{address}:4222", timeout=40)
        for index, host in enumerate(RELAY_HOSTS):
            servers = ",".join(f"nats://{a}:4222" for a in [nodes[index], *nodes[:index], *nodes[index + 1:]])
            net.popen(host, [script("edge-relay"), "--listen", f"{net.addr(host)}:{RELAY_PORT}", "--memory-only",
                             "--nats", servers, "--relay-id", host],
                      tmp_path / f"{host}.log", env=child_env(EDGE_LOG="warning"), cwd=tmp_path)
        async with aiohttp.ClientSession() as http:
            for host in RELAY_HOSTS:
                await _until_healthy(http, f"http://{net.addr(host)}:{RELAY_PORT}/healthz", tmp_path / f"{host}.log")
        yield net


async def _until_healthy(http, url: str, log, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"{url} not healthy after {timeout}s: {log.read_text()[-2000:]}")


def ws(net, host: str) -> str:
    return f"ws://{net.addr(host)}:{RELAY_PORT}/ws"


class Agent:
    """A bare agent on a relay link: opens every frame it gets, records who it knows is present."""

    def __init__(self, swarm: P2PSwarm, urls: list[str], liveness_s: float) -> None:
        self.swarm = swarm
        self.got: list[tuple[str, str, bytes, bool]] = []  # message id, sender, payload, direct
        self.refused: dict[str, int] = {}
        self.present: set[str] = set()
        self.link = RelayClient(",".join(urls), swarm, on_envelope=self._envelope, on_member=self._member,
                                on_left=self._left, topics=("t",), backoff_initial_s=0.05, backoff_max_s=0.5,
                                liveness_s=liveness_s)

    @classmethod
    async def on(cls, name: str, urls: list[str], liveness_s: float = 10.0) -> Agent:
        """Joined to the first of `urls`; `liveness_s` short only where a host is cut off, since a loop
        stalled for half of it on a busy machine would drop a healthy connection."""
        agent = cls(await P2PSwarm.create(name, TEST_SWARM_KEY), urls, liveness_s)
        await agent.link.start()
        await agent.link.wait_connected(15)
        return agent

    @property
    def ids(self) -> list[str]:
        return [i for i, *_ in self.got]

    async def _envelope(self, raw: str) -> None:
        try:
            message = await self.swarm.receive(raw)
        except RejectedInput as exc:  # a frame seen before a failover comes again: skipped, counted
            self.refused[type(exc).__name__] = self.refused.get(type(exc).__name__, 0) + 1
            return
        self.got.append((message.message_id, message.sender_id, message.payload, message.direct))

    async def _member(self, registration) -> None:
        if registration.agent_id != self.swarm.agent_id:
            await self.swarm.register_member(registration)
            self.present.add(registration.agent_id)

    async def _left(self, agent_id: str) -> None:
        self.present.discard(agent_id)

    async def send(self, topic_or_peer: str, payload: bytes, direct: bool = False) -> str:
        published = await (self.swarm.send_direct(topic_or_peer, payload) if direct
                           else self.swarm.publish(topic_or_peer, payload))
        await self.link.send(published.frame)
        return published.message_id


async def everyone_present(agents, timeout: float = 30.0) -> None:
    names = {a.swarm.agent_id for a in agents}
    for agent in agents:
        await wait_for(lambda: agent.present >= names - {agent.swarm.agent_id}, timeout=timeout,
                       what=f"{agent.swarm.agent_id} to see {sorted(names)} (sees {sorted(agent.present)})")


async def members_seen_on(url: str, name: str) -> set[str]:
    """Who a relay lists in its welcome to a newcomer (its own agents and the other relays')."""
    probe = await Agent.on(name, [url])
    try:
        return set(probe.present)
    finally:
        await probe.link.stop()


async def test_agents_on_relays_in_their_own_namespaces_exchange_broadcasts_and_direct_frames(tmp_path):
    async with federation_hosts(tmp_path) as net:
        agents = [await Agent.on(name, [ws(net, host)]) for name, host in zip(("alice", "bob", "carol"), RELAY_HOSTS)]
        try:
            await everyone_present(agents)
            expected: dict[str, set[str]] = {a.swarm.agent_id: set() for a in agents}
            for sender in agents:
                me = sender.swarm.agent_id
                sent = await sender.send("t", f"to all from {me}".encode())
                for other in agents:
                    if other is not sender:
                        expected[other.swarm.agent_id].add(sent)
                        expected[other.swarm.agent_id].add(
                            await sender.send(other.swarm.agent_id, f"to {other.swarm.agent_id} from {me}".encode(), True))
            await wait_for(lambda: all(set(a.ids) >= expected[a.swarm.agent_id] for a in agents), timeout=20,
                           what="every broadcast and direct frame across the hosts")
            for agent in agents:
                me = agent.swarm.agent_id
                assert sorted(agent.ids) == sorted(expected[me]) and agent.refused == {}
                assert {(s, p, d) for _, s, p, d in agent.got} == {
                    *((o, f"to all from {o}".encode(), False) for o in expected if o != me),
                    *((o, f"to {me} from {o}".encode(), True) for o in expected if o != me)}
        finally:
            for agent in agents:
                await agent.link.stop()


async def test_a_relay_host_cut_off_its_agents_fail_over_losing_nothing_and_it_rejoins_when_healed(tmp_path):
    async with federation_hosts(tmp_path) as net:
        r0, r1, r2 = (ws(net, h) for h in RELAY_HOSTS)
        # Alice and dave are on r0 and know r1 as their next relay; bob on r1, carol on r2.
        alice, dave = [await Agent.on(n, [r0, r1], CUT_LIVENESS_S) for n in ("alice", "dave")]
        bob, carol = await Agent.on("bob", [r1]), await Agent.on("carol", [r2])
        agents = [alice, dave, bob, carol]
        try:
            await everyone_present(agents)
            before = [await bob.send("t", b"before %d" % i) for i in range(5)]
            await wait_for(lambda: set(alice.ids) >= set(before) and set(dave.ids) >= set(before), timeout=15,
                           what="alice and dave to get the first frames")
            net.cut("r0")
            during = [await bob.send("t", b"during %d" % i) for i in range(20)]
            direct = await carol.send("alice", b"for alice while r0 is cut off", True)
            await wait_for(lambda: set(carol.ids) >= set(during), timeout=15, what="carol to get what bob sent")
            await wait_for(lambda: alice.link.target == r1 and alice.link.connected.is_set()
                           and dave.link.target == r1 and dave.link.connected.is_set(), timeout=30,
                           what="alice and dave to fail over to r1")
            await wait_for(lambda: set(alice.ids) >= {*during, direct} and set(dave.ids) >= set(during), timeout=20,
                           what="alice and dave to catch up on r1")
            for agent, extra in ((alice, [direct]), (dave, [])):
                assert sorted(agent.ids) == sorted([*before, *during, *extra])  # nothing lost, nothing twice
                assert set(agent.refused) <= {"ReplayDetected"}  # frames seen before the cut may come again
            assert [i for i in alice.ids if i in during] == during  # in order
            net.heal("r0")
            # r0 rejoins: an agent on it reaches, and is reached by, the agents on the others.
            erin = await Agent.on("erin", [r0])
            agents.append(erin)
            await everyone_present(agents)
            hello, reply = await erin.send("t", b"hello from r0"), await bob.send("t", b"welcome back")
            await wait_for(lambda: hello in bob.ids and hello in carol.ids and reply in erin.ids, timeout=20,
                           what="frames to and from the healed relay")
            # Presence agrees everywhere: every relay lists the same members (r0 no longer alice's or dave's).
            names = {a.swarm.agent_id for a in agents}
            probes = itertools.count()
            for url in (r0, r1, r2):
                deadline = time.monotonic() + 40
                while (seen := await members_seen_on(url, f"probe{next(probes)}") & names) != names:
                    assert time.monotonic() < deadline, f"{url} lists {sorted(seen)}, not {sorted(names)}"
                    await asyncio.sleep(0.5)
            async with aiohttp.ClientSession() as http:
                async def r0_holds() -> int:
                    async with http.get(f"http://{net.addr('r0')}:{RELAY_PORT}/healthz") as response:
                        return (await response.json())["connections"]

                deadline = time.monotonic() + 40
                while (held := await r0_holds()) != 1:  # erin's; alice's and dave's old connections gone
                    assert time.monotonic() < deadline, f"r0 still holds {held} connections"
                    await asyncio.sleep(0.5)
        finally:
            for agent in agents:
                await agent.link.stop()


def test_the_network_module_removes_what_a_crashed_run_left(tmp_path):
    """A run whose process died before its teardown leaves names with its (dead) pid: the next run
    removes them; a live run's names are left alone."""
    import subprocess

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = netns.Network(["a"], pid=dead.pid)
    try:
        crashed.up()
        with netns.network(["x"]) as live:
            assert netns.ours(dead.pid) == []
            assert netns.ours(live.pid)
    finally:
        crashed.down()
    assert netns.ours(dead.pid) == [] and netns.ours(live.pid) == []
