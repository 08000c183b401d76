"""RelayRouter without sockets: fake peers record every frame and close, a fake monotonic clock drives the bucket.

Each test feeds the router text the way the server shell would and checks who
got what, which connections were closed with which code, and what was counted.
"""

from __future__ import annotations

import itertools
import json

import pytest

from relay_fixtures import FakeMonotonic, FakePeer, hello_for
from ruvector_edge.p2p import IdentityManager, P2PSwarm
from ruvector_edge.platform.base import FakeClock
from ruvector_edge.platform.native import NativeCryptoProvider
from ruvector_edge.relay.router import RelayLimits, RelayRouter
from ruvector_edge.transport import relay_wire as rw

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def make_router(limits: RelayLimits | None = None, monotonic: FakeMonotonic | None = None,
                clock: FakeClock | None = None) -> RelayRouter:
    counter = itertools.count(1)
    return RelayRouter(
        NativeCryptoProvider(),
        limits,
        clock=clock,
        monotonic=monotonic or FakeMonotonic(),
        random_hex=lambda: f"{next(counter):032x}",
    )


class Net:
    """One router and the fake peers connected to it."""

    def __init__(self, router: RelayRouter) -> None:
        self.router = router
        self._ids = itertools.count(1)

    def open(self) -> FakePeer:
        peer = FakePeer(next(self._ids))
        self.router.open(peer)
        return peer

    async def join(self, swarm: P2PSwarm, topics: list[str] = ()) -> FakePeer:
        peer = self.open()
        challenge = peer.last("challenge")["challenge"]
        await self.router.receive(peer, await hello_for(swarm, challenge))
        assert peer.close_code is None, peer.closes
        assert peer.last("welcome")["agent_id"] == swarm.agent_id
        if topics:
            await self.router.receive(peer, rw.subscribe(list(topics)))
        return peer


@pytest.fixture
def net() -> Net:
    return Net(make_router())


@pytest.fixture
async def agents():
    """Three members of one swarm and one member of another swarm."""
    a = await P2PSwarm.create("alice", KEY)
    b = await P2PSwarm.create("bob", KEY)
    c = await P2PSwarm.create("carol", KEY)
    x = await P2PSwarm.create("xavier", OTHER_KEY)
    return a, b, c, x


def bound_agents(router: RelayRouter, swarm_id: str) -> dict[str, int]:
    state = router._swarms.get(swarm_id)
    return dict(state.agents) if state is not None else {}


# --- handshake ---------------------------------------------------------------------


def test_open_sends_a_fresh_challenge(net):
    first, second = net.open(), net.open()
    assert first.ops() == ["challenge"] and second.ops() == ["challenge"]
    c1, c2 = first.last("challenge")["challenge"], second.last("challenge")["challenge"]
    assert c1 != c2 and len(bytes.fromhex(c1)) == 16
    assert net.router.metrics.connections == 2 and net.router.metrics.connections_total == 2


async def test_hello_with_valid_proof_is_welcomed_with_members_and_announced(net, agents):
    a, b, c, _ = agents
    pa = await net.join(a)
    assert pa.last("welcome") == {"op": "welcome", "agent_id": "alice", "swarm": a.swarm_id, "members": []}
    pb = await net.join(b)
    members = pb.last("welcome")["members"]
    assert [m["agent_id"] for m in members] == ["alice"]
    assert members[0] == a.registration.to_dict()
    assert pa.last("member")["registration"] == b.registration.to_dict()
    pc = await net.join(c)
    assert sorted(m["agent_id"] for m in pc.last("welcome")["members"]) == ["alice", "bob"]
    assert pa.frames[-1]["registration"]["agent_id"] == "carol"
    assert pb.frames[-1]["registration"]["agent_id"] == "carol"
    assert "member" not in pc.ops()  # nobody announces you to yourself
    assert bound_agents(net.router, a.swarm_id) == {"alice": pa.conn_id, "bob": pb.conn_id, "carol": pc.conn_id}


async def test_proof_for_another_challenge_is_refused_without_binding(net, agents):
    a, b, *_ = agents
    pb = await net.join(b)
    peer = net.open()
    await net.router.receive(peer, await hello_for(a, "ff" * 16))
    assert peer.close_code == rw.CLOSE_POLICY
    assert "welcome" not in peer.ops()
    assert bound_agents(net.router, a.swarm_id) == {"bob": pb.conn_id}
    assert "member" not in pb.ops()
    assert net.router.metrics.drops == {"policy": 1}


async def test_replayed_public_registration_without_the_key_is_refused(net, agents):
    """Anyone can copy alice's registration; only alice's key can sign the challenge."""
    a, *_ = agents
    mallory = await IdentityManager.generate(NativeCryptoProvider())
    peer = net.open()
    hello = await hello_for(a, peer.last("challenge")["challenge"], signer=mallory)
    await net.router.receive(peer, hello)
    assert peer.close_code == rw.CLOSE_POLICY
    assert bound_agents(net.router, a.swarm_id) == {}
    # A proof copied from alice's own hello on another connection does not work either.
    pa = await net.join(a)
    stolen = json.loads(await hello_for(a, pa.last("challenge")["challenge"]))
    thief = net.open()
    await net.router.receive(thief, json.dumps(stolen))
    assert thief.close_code == rw.CLOSE_POLICY
    assert bound_agents(net.router, a.swarm_id) == {"alice": pa.conn_id}


async def test_same_agent_id_with_another_key_is_a_key_conflict(net, agents):
    a, *_ = agents
    pa = await net.join(a)
    impostor = await P2PSwarm.create("alice", KEY)  # same id, fresh key pair, a valid self-signed registration
    peer = net.open()
    await net.router.receive(peer, await hello_for(impostor, peer.last("challenge")["challenge"]))
    assert peer.close_code == rw.CLOSE_POLICY
    assert net.router.metrics.drops == {"key_conflict": 1}
    assert bound_agents(net.router, a.swarm_id) == {"alice": pa.conn_id}
    assert pa.close_code is None and "member" not in pa.ops()


async def test_second_hello_on_one_connection_is_refused(net, agents):
    a, *_ = agents
    pa = await net.join(a)
    await net.router.receive(pa, await hello_for(a, pa.last("challenge")["challenge"]))
    assert pa.close_code == rw.CLOSE_POLICY


async def test_a_connection_that_never_says_hello_is_closed_at_its_deadline(agents):
    a, *_ = agents
    clock = FakeMonotonic()
    net = Net(make_router(RelayLimits(hello_timeout_s=3.0), clock))
    silent = net.open()
    clock.advance(1.0)
    late = net.open()  # its own deadline, one second after the first's
    agent = await net.join(a)
    clock.advance(1.9)
    net.router.expire_handshakes()
    assert silent.closes == [] and late.closes == []
    clock.advance(0.2)
    net.router.expire_handshakes()
    assert silent.close_code == rw.CLOSE_POLICY and "no hello" in silent.closes[0][1]
    assert late.closes == []
    clock.advance(1.0)
    net.router.expire_handshakes()
    assert late.close_code == rw.CLOSE_POLICY
    clock.advance(100.0)
    net.router.expire_handshakes()
    assert agent.closes == [], "an agent that said hello has no deadline"
    assert net.router.metrics.handshake_timeouts == 2
    net.router.closed(silent)
    net.router.closed(late)
    assert net.router._hello_deadlines == {} and net.router.peer_count() == 1


async def test_a_connection_closed_before_its_deadline_is_not_counted_as_a_timeout(agents):
    clock = FakeMonotonic()
    net = Net(make_router(RelayLimits(hello_timeout_s=3.0), clock))
    gone = net.open()
    net.router.closed(gone)
    clock.advance(10.0)
    net.router.expire_handshakes()
    assert gone.closes == [] and net.router.metrics.handshake_timeouts == 0


# --- envelopes from the wrong place -------------------------------------------------


async def test_envelope_before_hello_is_a_policy_close(net, agents):
    a, b, *_ = agents
    pb = await net.join(b, ["t"])
    peer = net.open()
    await net.router.receive(peer, (await a.publish("t", b"x")).frame)
    assert peer.close_code == rw.CLOSE_POLICY
    assert pb.envelopes() == []


async def test_sub_before_hello_is_a_policy_close(net):
    peer = net.open()
    await net.router.receive(peer, rw.subscribe(["t"]))
    assert peer.close_code == rw.CLOSE_POLICY
    assert net.router.metrics.drops == {"policy": 1}


async def test_envelope_for_another_swarm_is_a_policy_close(net, agents):
    a, b, _, x = agents
    pb = await net.join(b, ["t"])
    px = await net.join(x, ["t"])
    pa = await net.join(a)
    # alice's connection joined her swarm; an envelope header naming x's swarm is refused.
    foreign = await P2PSwarm.create("alice", OTHER_KEY)
    await net.router.receive(pa, (await foreign.publish("t", b"x")).frame)
    assert pa.close_code == rw.CLOSE_POLICY
    assert pb.envelopes() == [] and px.envelopes() == []


async def test_envelope_with_a_spoofed_sender_is_a_policy_close(net, agents):
    a, b, c, _ = agents
    pb = await net.join(b, ["t"])
    pc = await net.join(c)
    await net.router.receive(pc, (await a.publish("t", b"i am alice")).frame)
    assert pc.close_code == rw.CLOSE_POLICY
    assert pb.envelopes() == []
    assert net.router.metrics.drops == {"policy": 1}


# --- malformed input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        b"\xff\xfe\x00garbage\x80",
        "[1, 2, 3]",
        '{"op": "teleport"}',
        '{"op": 7}',
        '{"neither": "control nor envelope"}',
        '{"header": {"type": "envelope"}}',
        '{"op": "ping", "op": "pong"}',
        "",
    ],
    ids=["broken-json", "garbage-bytes", "array", "unknown-op", "op-not-string", "no-op-no-header",
         "short-header", "duplicate-key", "empty"],
)
async def test_malformed_frames_close_1007_and_are_counted(net, agents, frame):
    a, b, *_ = agents
    pb = await net.join(b)
    pa = await net.join(a)
    await net.router.receive(pa, frame)
    assert pa.close_code == rw.CLOSE_INVALID_DATA
    assert net.router.metrics.drops == {"malformed": 1}
    assert pb.close_code is None


async def test_malformed_frame_before_hello_closes_1007(net):
    peer = net.open()
    await net.router.receive(peer, b"\x00\x01\x02")
    assert peer.close_code == rw.CLOSE_INVALID_DATA
    assert net.router.metrics.drops == {"malformed": 1}


async def test_frame_over_the_size_limit_is_refused(agents):
    net = Net(make_router(RelayLimits(max_frame_bytes=256)))
    a, *_ = agents
    peer = net.open()
    await net.router.receive(peer, await hello_for(a, peer.last("challenge")["challenge"]))
    assert peer.close_code == rw.CLOSE_INVALID_DATA  # a registration is well over 256 bytes
    assert bound_agents(net.router, a.swarm_id) == {}


async def test_utf16_encoded_envelope_is_rejected_not_crashing(net, agents):
    """json.loads accepts UTF-16 bytes, but the router forwards envelopes as UTF-8 text.

    A binary frame holding a valid envelope in UTF-16 must be refused with a close
    code like any other malformed frame, not escape as UnicodeDecodeError."""
    a, b, *_ = agents
    pb = await net.join(b, ["t"])
    pa = await net.join(a)
    frame = (await a.publish("t", b"x")).frame.decode().encode("utf-16")
    await net.router.receive(pa, frame)
    assert pa.close_code == rw.CLOSE_INVALID_DATA
    assert net.router.metrics.drops == {"malformed": 1}
    assert pb.envelopes() == []


@pytest.mark.parametrize(
    "frame",
    [
        {"op": "sub", "topics": "t"},
        {"op": "sub", "topics": ["@bob"]},
        {"op": "sub", "topics": ["no spaces allowed"]},
        {"op": "sub", "topics": [f"t{i}" for i in range(rw.MAX_TOPICS_PER_FRAME + 1)]},
        {"op": "welcome"},
        {"op": "ping"},
    ],
    ids=["topics-not-list", "direct-topic", "bad-topic-id", "too-many-topics", "relay-op-from-client", "ping-no-id"],
)
async def test_misused_control_frames_close_1008(net, agents, frame):
    a, *_ = agents
    pa = await net.join(a)
    await net.router.receive(pa, json.dumps(frame))
    assert pa.close_code == rw.CLOSE_POLICY
    assert net.router.metrics.drops == {"policy": 1}


async def test_subscription_limit_per_peer(agents):
    net = Net(make_router(RelayLimits(max_topics_per_peer=3)))
    a, *_ = agents
    pa = await net.join(a, ["t1", "t2", "t3"])
    await net.router.receive(pa, rw.subscribe(["t1", "t2"]))  # already subscribed: not new
    assert pa.close_code is None
    await net.router.receive(pa, rw.subscribe(["t4"]))
    assert pa.close_code == rw.CLOSE_POLICY


# --- routing ------------------------------------------------------------------------


async def test_topic_frames_go_only_to_subscribers_and_never_back_to_the_sender(net, agents):
    a, b, c, x = agents
    pa = await net.join(a, ["t"])
    pb = await net.join(b, ["t"])
    pc = await net.join(c, ["other"])
    px = await net.join(x, ["t"])  # same topic name, other swarm
    frame = (await a.publish("t", b"hello")).frame
    await net.router.receive(pa, frame)
    assert [e["header"]["sender_id"] for e in pb.envelopes()] == ["alice"]
    assert pb.sent[-1] == frame.decode()  # forwarded byte for byte
    assert pa.envelopes() == [] and pc.envelopes() == [] and px.envelopes() == []
    await b.register_member(a.registration)
    received = await b.receive(pb.sent[-1])
    assert received.payload == b"hello"


async def test_unsubscribe_stops_delivery(net, agents):
    a, b, *_ = agents
    pa = await net.join(a)
    pb = await net.join(b, ["t", "u"])
    await net.router.receive(pb, rw.unsubscribe(["t", "never-subscribed"]))
    await net.router.receive(pa, (await a.publish("t", b"1")).frame)
    await net.router.receive(pa, (await a.publish("u", b"2")).frame)
    assert [e["header"]["topic"] for e in pb.envelopes()] == ["u"]
    assert "t" not in net.router._swarms[a.swarm_id].subscribers


async def test_direct_topic_reaches_only_the_named_agent(net, agents):
    a, b, c, _ = agents
    for swarm in (a, b, c):
        for other in (a, b, c):
            if other is not swarm:
                await swarm.register_member(other.registration)
    pa = await net.join(a)
    pb = await net.join(b, ["@bob"[1:]])  # subscribing to "bob" is unrelated to "@bob"
    pc = await net.join(c)
    direct = await a.send_direct("bob", b"for bob only")
    await net.router.receive(pa, direct.frame)
    assert len(pb.envelopes()) == 1 and pc.envelopes() == [] and pa.envelopes() == []
    assert (await b.receive(pb.sent[-1])).payload == b"for bob only"


async def test_direct_frame_to_an_absent_agent_is_answered_undeliverable(net, agents):
    a, b, *_ = agents
    await a.register_member(b.registration)
    pa = await net.join(a)
    direct = await a.send_direct("bob", b"anyone?")
    await net.router.receive(pa, direct.frame)
    assert pa.last("undeliverable") == {"op": "undeliverable", "message_id": direct.message_id, "to": "bob"}
    assert net.router.metrics.drops == {"undeliverable": 1}
    assert pa.close_code is None


async def test_ping_is_answered_and_pong_feeds_the_rtt_histogram(agents):
    clock = FakeMonotonic()
    net = Net(make_router(monotonic=clock))
    a, *_ = agents
    pa = await net.join(a)
    await net.router.receive(pa, rw.encode("ping", id=42))
    assert pa.last("pong") == {"op": "pong", "id": 42}
    net.router.ping_all()
    ping = pa.last("ping")
    clock.advance(0.003)
    await net.router.receive(pa, rw.encode("pong", id=ping["id"]))
    assert sum(net.router.metrics.rtt_counts) == 1
    assert net.router.metrics.rtt_sum == pytest.approx(0.003)
    await net.router.receive(pa, rw.encode("pong", id=ping["id"]))  # a repeated pong is not a second sample
    assert sum(net.router.metrics.rtt_counts) == 1


# --- limits -------------------------------------------------------------------------


async def test_token_bucket_drops_frames_over_the_rate_and_refills_with_time(agents):
    clock = FakeMonotonic()
    net = Net(make_router(RelayLimits(rate_per_s=10.0, burst=5.0), clock))
    a, b, *_ = agents
    pa = await net.join(a)  # hello: 1 token
    pb = await net.join(b, ["t"])
    frames = [(await a.publish("t", str(i).encode())).frame for i in range(10)]
    for frame in frames:
        await net.router.receive(pa, frame)
    assert len(pb.envelopes()) == 4  # burst 5, one spent on hello
    assert net.router.metrics.drops == {"rate_limited": 6}
    assert pa.close_code is None  # rate limiting drops frames, it does not disconnect
    clock.advance(0.25)  # 2.5 tokens
    for frame in [(await a.publish("t", b"later")).frame for _ in range(3)]:
        await net.router.receive(pa, frame)
    assert len(pb.envelopes()) == 6
    assert net.router.metrics.drops == {"rate_limited": 7}


async def test_slow_consumer_is_closed_1013_while_others_still_receive(net, agents):
    a, b, c, _ = agents
    pa = await net.join(a)
    pb = await net.join(b, ["t"])
    pc = await net.join(c, ["t"])
    pb.accept = False  # bob's outbound queue is full
    await net.router.receive(pa, (await a.publish("t", b"1")).frame)
    assert pb.close_code == rw.CLOSE_TRY_LATER
    assert net.router.metrics.drops == {"slow_consumer": 1}
    await net.router.receive(pa, (await a.publish("t", b"2")).frame)
    assert len(pc.envelopes()) == 2
    assert net.router.metrics.drops == {"slow_consumer": 1}  # bob is unbound, not dropped again
    assert bound_agents(net.router, a.swarm_id) == {"alice": pa.conn_id, "carol": pc.conn_id}
    assert pc.last("left") == {"op": "left", "agent_id": "bob"}


async def test_disconnect_announces_left_and_forgets_subscriptions(net, agents):
    a, b, c, _ = agents
    pa = await net.join(a, ["t"])
    pb = await net.join(b, ["t"])
    pc = await net.join(c)
    net.router.closed(pb)
    assert pa.last("left") == {"op": "left", "agent_id": "bob"}
    assert pc.last("left") == {"op": "left", "agent_id": "bob"}
    assert net.router.metrics.connections == 2
    await net.router.receive(pc, (await c.publish("t", b"x")).frame)
    assert len(pa.envelopes()) == 1 and pb.envelopes() == []
    direct_peer = await c.register_member(b.registration)
    assert direct_peer.agent_id == "bob"
    direct = await c.send_direct("bob", b"gone?")
    await net.router.receive(pc, direct.frame)
    assert pc.last("undeliverable")["to"] == "bob"
    net.router.closed(pb)  # closing twice is harmless
    assert net.router.metrics.connections == 2


async def test_leave_op_closes_normally_and_announces(net, agents):
    a, b, *_ = agents
    pa = await net.join(a)
    pb = await net.join(b)
    await net.router.receive(pb, rw.encode("leave"))
    assert pb.close_code == rw.CLOSE_NORMAL
    assert pa.last("left") == {"op": "left", "agent_id": "bob"}


async def test_a_second_connection_for_the_same_agent_replaces_the_first(net, agents):
    a, b, *_ = agents
    pa = await net.join(a)
    pb1 = await net.join(b, ["t"])
    pb2 = await net.join(b, ["t"])
    assert pb1.close_code == rw.CLOSE_NORMAL
    assert "left" not in pa.ops()  # bob never left: the slot moved
    assert bound_agents(net.router, a.swarm_id) == {"alice": pa.conn_id, "bob": pb2.conn_id}
    await net.router.receive(pa, (await a.publish("t", b"x")).frame)
    assert len(pb2.envelopes()) == 1 and pb1.envelopes() == []
    net.router.closed(pb1)  # the old socket finishing its close must not evict the new one
    assert "left" not in pa.ops()
    assert bound_agents(net.router, a.swarm_id)["bob"] == pb2.conn_id


async def test_swarm_limit(agents):
    net = Net(make_router(RelayLimits(max_swarms=1)))
    a, _, _, x = agents
    await net.join(a)
    px = net.open()
    await net.router.receive(px, await hello_for(x, px.last("challenge")["challenge"]))
    assert px.close_code == rw.CLOSE_POLICY


async def test_frames_after_close_are_ignored(net, agents):
    a, *_ = agents
    pa = await net.join(a)
    net.router.closed(pa)
    before = net.router.metrics.frames_in
    await net.router.receive(pa, "garbage")
    assert net.router.metrics.frames_in == before and net.router.metrics.drops == {}


# --- departures: the registry keeps only who is present (and bindings for a while) ---------


def registry_sizes(router: RelayRouter, swarm_id: str) -> dict[str, int]:
    """Every per-swarm structure that could grow with agents ever seen."""
    state = router._swarms.get(swarm_id)
    if state is None:
        return {"members": 0, "departed": 0, "agents": 0, "registration_json": 0}
    return {"members": len(state.registry._members), "departed": len(state.registry._departed),
            "agents": len(state.agents), "registration_json": len(state.registration_json)}


async def test_distinct_agents_one_at_a_time_are_not_refused_past_the_member_limit():
    """Issue 17 item 8: with max_members_per_swarm=5 the sixth distinct agent was refused although only one was there."""
    net = Net(make_router(RelayLimits(max_members_per_swarm=5)))
    for index in range(12):
        agent = await P2PSwarm.create(f"agent{index}", KEY)
        peer = await net.join(agent)
        assert registry_sizes(net.router, agent.swarm_id)["members"] == 1
        net.router.closed(peer)
    assert registry_sizes(net.router, agent.swarm_id) == {"members": 0, "departed": 12, "agents": 0,
                                                          "registration_json": 0}


async def test_a_departed_agents_id_stays_bound_to_its_key_until_the_hold_ends(agents):
    a, b, *_ = agents
    clock = FakeClock()
    net = Net(make_router(clock=clock))
    pb = await net.join(b)
    net.router.closed(await net.join(a))
    impostor = await P2PSwarm.create("alice", KEY)  # same id, another key
    peer = net.open()
    await net.router.receive(peer, await hello_for(impostor, peer.last("challenge")["challenge"]))
    assert peer.close_code == rw.CLOSE_POLICY and net.router.metrics.drops == {"key_conflict": 1}
    again = await net.join(a)  # the departed agent itself comes back at once
    net.router.closed(again)
    registry = net.router._swarms[a.swarm_id].registry
    clock.advance(registry.hold_departed_ms - 1)
    peer = net.open()
    await net.router.receive(peer, await hello_for(impostor, peer.last("challenge")["challenge"]))
    assert peer.close_code == rw.CLOSE_POLICY
    clock.advance(1)
    await net.join(impostor)  # the binding has aged out: the id is free
    assert pb.last("member")["registration"]["ed25519_pubkey"] == impostor.registration.ed25519_pubkey.hex()


async def test_when_the_held_bindings_are_full_newcomers_wait_and_returning_agents_do_not(agents):
    a, *_ = agents
    clock = FakeClock()
    net = Net(make_router(RelayLimits(max_members_per_swarm=2, max_departed_per_swarm=2), clock=clock))
    net.router.closed(await net.join(a))
    for index in range(3):
        net.router.closed(await net.join(await P2PSwarm.create(f"n{index}", KEY)))
        clock.advance(1000)
    late = await P2PSwarm.create("late", KEY)
    peer = net.open()
    await net.router.receive(peer, await hello_for(late, peer.last("challenge")["challenge"]))
    assert peer.close_code == rw.CLOSE_POLICY and "try later" in peer.closes[0][1]
    assert registry_sizes(net.router, a.swarm_id)["departed"] == 4  # max_members + max_departed, never more
    net.router.closed(await net.join(a))  # a binding it already holds: always welcome back
    clock.advance(net.router._swarms[a.swarm_id].registry.hold_departed_ms)
    await net.join(late)
    assert registry_sizes(net.router, a.swarm_id)["departed"] == 0


async def test_an_empty_swarm_whose_bindings_aged_out_frees_its_slot(agents):
    a, _, _, x = agents
    clock = FakeClock()
    net = Net(make_router(RelayLimits(max_swarms=1), clock=clock))
    net.router.closed(await net.join(a))
    px = net.open()
    await net.router.receive(px, await hello_for(x, px.last("challenge")["challenge"]))
    assert px.close_code == rw.CLOSE_POLICY  # alice's binding is still held: her swarm stays
    clock.advance(net.router._swarms[a.swarm_id].registry.hold_departed_ms)
    await net.join(x)
    assert list(net.router._swarms) == [x.swarm_id]


async def test_churn_of_20000_distinct_agents_leaves_the_registry_flat():
    """20,000 distinct agent ids join and leave, 500 at a time, 500 a minute (fake clock), default limits.

    Every structure the swarm keeps must be back to "who is present" after each batch, and the held bindings
    must stop growing once the first ones age out. One key pair signs every registration: what is being
    counted is agent ids, and generating 20,000 key pairs would only slow the test down."""
    clock = FakeClock()
    net = Net(make_router(clock=clock))
    identity = await IdentityManager.generate(NativeCryptoProvider())
    swarm_id = (await P2PSwarm.create("probe", KEY)).swarm_id
    batch, total = 500, 20_000
    held: list[int] = []
    for start in range(0, total, batch):
        peers = []
        for index in range(start, start + batch):
            registration = await identity.create_registration(f"churn{index}", ["worker"], swarm=swarm_id, clock=clock)
            peer = net.open()
            challenge = peer.last("challenge")["challenge"]
            proof = await identity.sign(rw.auth_bytes(swarm_id, registration.agent_id, challenge))
            await net.router.receive(peer, rw.hello(registration, proof))
            assert peer.close_code is None, peer.closes
            peers.append(peer)
        assert registry_sizes(net.router, swarm_id)["members"] == batch
        for peer in peers:
            net.router.closed(peer)
        sizes = registry_sizes(net.router, swarm_id)
        assert sizes["members"] == sizes["agents"] == sizes["registration_json"] == 0, sizes
        held.append(sizes["departed"])
        clock.advance(60_000)
    hold_batches = net.router._swarms[swarm_id].registry.hold_departed_ms // 60_000 + 1
    assert max(held) <= hold_batches * batch, held
    assert held[-1] == held[hold_batches], f"held bindings kept growing: {held}"
    assert net.router.peer_count() == 0 and net.router._hello_deadlines == {}
