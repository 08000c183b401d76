"""RelayClient against a real relay: handshake, queueing while disconnected, reconnect after the relay dies.

The relay runs as an `edge-relay` process that is SIGKILLed and started again
on the same port, so the clients see a real connection loss.
"""

from __future__ import annotations

import asyncio

import pytest

from relay_fixtures import free_port, running_relay, start_relay_process, stop_process, wait_for, ws_url
from ruvector_edge.errors import SendQueueFull, TransportClosed
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.transport.websocket import RelayClient

pytestmark = pytest.mark.timeout(45)

KEY = bytes(range(32))


class Endpoint:
    """A P2PSwarm member behind a RelayClient, collecting the payloads it opens."""

    def __init__(self, swarm: P2PSwarm, url: str, topics=("t",), **options) -> None:
        self.swarm = swarm
        self.payloads: list[bytes] = []
        self.members: list[str] = []
        self.left: list[str] = []
        self.client = RelayClient(url, swarm, on_envelope=self._envelope, on_member=self._member,
                                  on_left=self._left, topics=topics, backoff_initial_s=0.05, backoff_max_s=0.3,
                                  **options)

    async def _envelope(self, text: str) -> None:
        self.payloads.append((await self.swarm.receive(text)).payload)

    async def _member(self, registration) -> None:
        self.members.append(registration.agent_id)
        await self.swarm.register_member(registration)

    async def _left(self, agent_id: str) -> None:
        self.left.append(agent_id)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self.client.send((await self.swarm.publish(topic, payload)).frame)


def hold_reconnects(endpoint: Endpoint) -> asyncio.Event:
    """Make the endpoint's next connection attempts wait until the returned event is set.

    The relay keeps nothing, so a sender that flushes its queue before the receiver has
    re-subscribed loses those frames by design; holding the sender back lets a test demand
    that every queued frame arrives.
    """
    gate = asyncio.Event()
    connect_once = endpoint.client._connect_once

    async def gated() -> None:
        await gate.wait()
        await connect_once()

    endpoint.client._connect_once = gated
    return gate


async def endpoints(url: str, names=("alice", "bob"), **options) -> list[Endpoint]:
    result = []
    for name in names:
        endpoint = Endpoint(await P2PSwarm.create(name, KEY), url, **options)
        await endpoint.client.start()
        result.append(endpoint)
    for endpoint in result:
        await endpoint.client.wait_connected(10)
        await endpoint.client.ping()  # same connection, in order: the relay has processed the subscription
    return result


async def test_handshake_members_topics_and_relay_ping():
    async with running_relay() as server:
        alice, bob = await endpoints(ws_url(server.port))
        try:
            await wait_for(lambda: "bob" in alice.members and "alice" in bob.members, what="member exchange")
            await alice.publish("t", b"hi bob")
            await wait_for(lambda: bob.payloads == [b"hi bob"], what="bob's payload")
            assert alice.payloads == []  # no echo to the sender
            rtt = await alice.client.ping(timeout=5)
            assert 0 < rtt < 1
            await bob.client.stop()
            await wait_for(lambda: alice.left == ["bob"], what="left")
        finally:
            await alice.client.stop()
            await bob.client.stop()


async def test_subscribe_after_connect_and_undeliverable_direct():
    async with running_relay() as server:
        alice, bob = await endpoints(ws_url(server.port), topics=())
        try:
            await wait_for(lambda: "bob" in alice.members, what="member")
            await bob.client.subscribe("late")
            await asyncio.sleep(0.05)
            await alice.publish("late", b"late topic")
            await wait_for(lambda: bob.payloads == [b"late topic"], what="late topic")
            await bob.client.stop()
            await wait_for(lambda: alice.left == ["bob"], what="left")
            direct = await alice.swarm.send_direct("bob", b"gone")
            await alice.client.send(direct.frame)
            await wait_for(lambda: list(alice.client.undeliverable) == [(direct.message_id, "bob")], what="undeliverable")
        finally:
            await alice.client.stop()
            await bob.client.stop()


async def test_send_after_stop_raises():
    async with running_relay() as server:
        (alice,) = await endpoints(ws_url(server.port), names=("alice",))
        await alice.client.stop()
        with pytest.raises(TransportClosed):
            await alice.publish("t", b"late")


async def test_frames_queued_before_the_first_connection_are_flushed_in_order():
    port = free_port()
    url = ws_url(port)
    alice = Endpoint(await P2PSwarm.create("alice", KEY), url)
    bob = Endpoint(await P2PSwarm.create("bob", KEY), url)
    await alice.swarm.register_member(bob.swarm.registration)
    await bob.swarm.register_member(alice.swarm.registration)
    for i in range(5):  # not started: nothing is connected, so these wait in the bounded queue
        await alice.publish("t", f"early {i}".encode())
    assert len(alice.client.session.pending) == 5
    async with running_relay(port=port):
        await bob.client.start()
        await bob.client.wait_connected(10)
        await bob.client.ping()
        await alice.client.start()
        await alice.client.wait_connected(10)
        try:
            await wait_for(lambda: len(bob.payloads) == 5, timeout=5, what="flushed frames")
            assert bob.payloads == [f"early {i}".encode() for i in range(5)]
        finally:
            await alice.client.stop()
            await bob.client.stop()


async def test_relay_killed_and_restarted_nothing_sent_after_reconnect_is_lost():
    port = free_port()
    url = ws_url(port)
    relay = start_relay_process(port)
    alice = bob = None
    try:
        alice, bob = await endpoints(url)
        await wait_for(lambda: "bob" in alice.members and "alice" in bob.members, what="member exchange")
        await alice.publish("t", b"before")
        await wait_for(lambda: bob.payloads == [b"before"], what="first frame")

        alice_may_reconnect = hold_reconnects(alice)
        stop_process(relay)  # SIGKILL: no close frame, the sockets just die
        await wait_for(lambda: not alice.client.connected.is_set() and not bob.client.connected.is_set(),
                       timeout=5, what="both clients to notice the loss")
        for i in range(3):
            await alice.publish("t", f"while down {i}".encode())  # queued, not lost
        assert len(alice.client.session.pending) == 3

        relay = start_relay_process(port)
        await bob.client.wait_connected(10)
        await bob.client.ping()  # bob's re-subscription is processed before alice flushes her queue
        alice_may_reconnect.set()
        await alice.client.wait_connected(10)
        assert alice.client.reconnects >= 1 and bob.client.reconnects >= 1
        for i in range(20):
            await alice.publish("t", f"after {i}".encode())
        expected = [b"before"] + [f"while down {i}".encode() for i in range(3)] + [f"after {i}".encode() for i in range(20)]
        await wait_for(lambda: len(bob.payloads) >= len(expected), timeout=10, what="every frame")
        assert bob.payloads == expected  # every queued frame, once, in order, before the new ones
        rtt = await bob.client.ping(timeout=5)  # the new relay answers on the new connection
        assert rtt < 1
    finally:
        for endpoint in (alice, bob):
            if endpoint is not None:
                await endpoint.client.stop()
        stop_process(relay)


async def test_graceful_relay_restart_receiver_reconnects_and_gets_queued_frames():
    port = free_port()
    url = ws_url(port)
    async with running_relay(port=port):
        alice, bob = await endpoints(url)
        await wait_for(lambda: "bob" in alice.members and "alice" in bob.members, what="member exchange")
        alice_may_reconnect = hold_reconnects(alice)
    # relay stopped gracefully: both notice
    await wait_for(lambda: not alice.client.connected.is_set() and not bob.client.connected.is_set(), what="loss")
    for i in range(4):
        await alice.publish("t", f"queued {i}".encode())
    assert len(alice.client.session.pending) == 4
    try:
        async with running_relay(port=port):
            await bob.client.wait_connected(10)
            await bob.client.ping()  # bob is subscribed again before alice flushes
            alice_may_reconnect.set()
            await alice.client.wait_connected(10)
            assert not alice.client.session.pending
            await alice.publish("t", b"after both are back")
            expected = [f"queued {i}".encode() for i in range(4)] + [b"after both are back"]
            await wait_for(lambda: len(bob.payloads) >= len(expected), what="queued frames and the new one")
            assert bob.payloads == expected  # every queued frame, once, in order
    finally:
        await alice.client.stop()
        await bob.client.stop()


async def test_tiny_queue_raises_send_queue_full_instead_of_dropping():
    port = free_port()
    swarm = await P2PSwarm.create("alice", KEY)
    client = RelayClient(ws_url(port), swarm, on_envelope=lambda text: asyncio.sleep(0), queue_limit=2,
                         backoff_initial_s=0.05, backoff_max_s=0.2)
    await client.start()
    try:
        frames = [(await swarm.publish("t", str(i).encode())).frame for i in range(3)]
        await client.send(frames[0])
        await client.send(frames[1])
        with pytest.raises(SendQueueFull):
            await client.send(frames[2])
        assert list(client.session.pending) == [f.decode() for f in frames[:2]]
    finally:
        await client.stop()


async def test_reconnect_backoff_is_bounded_and_keeps_trying(monkeypatch):
    from ruvector_edge.transport import relay_link

    ceilings: list[float] = []  # the jitter's upper bound before each attempt: the backoff itself

    def uniform(low: float, high: float) -> float:
        ceilings.append(high)
        return high

    monkeypatch.setattr(relay_link.random, "uniform", uniform)
    port = free_port()
    swarm = await P2PSwarm.create("alice", KEY)
    client = RelayClient(ws_url(port), swarm, on_envelope=lambda text: asyncio.sleep(0),
                         backoff_initial_s=0.01, backoff_max_s=0.05)
    await client.start()
    try:
        await wait_for(lambda: client.reconnects >= 8, timeout=5, what="repeated attempts")
        assert ceilings[:4] == pytest.approx([0.01, 0.02, 0.04, 0.05])  # doubles, then the cap
        assert max(ceilings) == pytest.approx(0.05)
        async with running_relay(port=port):
            await client.wait_connected(5)
    finally:
        await client.stop()
