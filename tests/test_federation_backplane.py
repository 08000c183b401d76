"""The federation backplane without NATS: relays (RelayRouter + Backplane) joined by a fake bus.

The fake bus does what the NATS shell asks of NATS, in memory: core subscriptions by subject
(with '*' and '>', no echo to the publisher), a stream per swarm that captures the same subjects
with de-duplication by message id, each relay's position feed (headers only, after the live
delivery, as the stream is usually behind), presence buckets with watchers, replays and fetches
from a sequence. Commands are queued and run by `settle()`, so nothing re-enters a router while
it is handling a frame (as with the real, asynchronous bus).
"""

from __future__ import annotations

import itertools
import json

import pytest

from relay_fixtures import FakeMonotonic, FakePeer, hello_for
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.platform.native import NativeCryptoProvider
from ruvector_edge.relay.federation import backplane as bp
from ruvector_edge.relay.federation import subjects as sj
from ruvector_edge.relay.router import RelayRouter
from ruvector_edge.transport import relay_wire as rw

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def matches(pattern: str, subject: str) -> bool:
    p, s = pattern.split("."), subject.split(".")
    for index, token in enumerate(p):
        if token == ">":
            return len(s) > index
        if index >= len(s) or (token != "*" and token != s[index]):
            return False
    return len(p) == len(s)


class FakeBus:
    def __init__(self) -> None:
        self.queue: list[tuple["Relay", bp.Command]] = []
        self.streams: dict[str, list[tuple[str, bytes]]] = {}
        self.msg_ids: dict[str, set[str]] = {}
        self.buckets: dict[str, dict[str, bytes]] = {}
        self.subs: dict[tuple[int, tuple], tuple["Relay", str]] = {}
        self.feeds: dict[tuple[int, str], tuple["Relay", str]] = {}  # (relay, stream) -> relay, swarm
        self.lose_live: set[str] = set()  # relay ids whose live deliveries are lost (a reconnecting link)
        self.stream_down = False  # JetStream stores nothing (and feeds no positions)
        self.watchers: dict[tuple[int, str], tuple["Relay", str]] = {}  # (relay, bucket) -> relay, swarm
        self.published: list[bp.Publish] = []
        self.commands: list[tuple[str, bp.Command]] = []

    def run(self) -> int:
        done = 0
        while self.queue:
            relay, command = self.queue.pop(0)
            self.commands.append((relay.id, command))
            self._execute(relay, command)
            done += 1
        return done

    def _execute(self, relay: "Relay", c: bp.Command) -> None:
        if isinstance(c, bp.EnsureSwarm):
            self.streams.setdefault(c.stream, [])
            self.msg_ids.setdefault(c.stream, set())
            bucket = self.buckets.setdefault(c.bucket, {})
            self.watchers[(id(relay), c.bucket)] = (relay, c.swarm)
            for key, value in list(bucket.items()):
                relay.backplane.presence(c.swarm, key, value)
            self.feeds[(id(relay), c.stream)] = (relay, c.swarm)
            relay.backplane.stream_at(c.swarm, len(self.streams[c.stream]))
        elif isinstance(c, bp.ReleaseSwarm):
            bucket = sj.presence_bucket(c.swarm)
            self.watchers.pop((id(relay), bucket), None)
            self.feeds.pop((id(relay), sj.stream_name(c.swarm)), None)
        elif isinstance(c, bp.Subscribe):
            self.subs[(id(relay), c.key)] = (relay, c.subject)
        elif isinstance(c, bp.Unsubscribe):
            del self.subs[(id(relay), c.key)]
        elif isinstance(c, bp.Publish):
            self.inject(c.subject, c.data, c.msg_id, origin=relay)
        elif isinstance(c, bp.Fetch):
            stored = self.streams[c.stream]
            relay.backplane.fetched(c.swarm, c.key, stored[c.seq - 1][1] if c.seq <= len(stored) else None)
        elif isinstance(c, (bp.Put, bp.Delete)):
            value = c.value if isinstance(c, bp.Put) else None
            if value is None:
                self.buckets[c.bucket].pop(c.key, None)
            else:
                self.buckets[c.bucket][c.key] = value
            for (_, bucket), (watcher, swarm) in list(self.watchers.items()):
                if bucket == c.bucket:
                    watcher.backplane.presence(swarm, c.key, value)
        elif isinstance(c, bp.Replay):
            for seq, (subject, data) in enumerate(self.streams[c.stream], start=1):
                if seq >= c.start_seq and matches(c.subject, subject):
                    relay.backplane.replayed(c.conn_id, subject, data, seq)
            relay.backplane.replay_done(c.conn_id)

    def inject(self, subject: str, data: bytes, msg_id: str | None = None, origin: "Relay | None" = None) -> None:
        """What anyone with access to NATS can do: publish on a subject (the stream captures it)."""
        self.published.append(bp.Publish(subject, data, msg_id or "", ""))
        for (relay, pattern), key in [(v, k[1]) for k, v in list(self.subs.items())]:
            if relay is not origin and relay.id not in self.lose_live and matches(pattern, subject):
                relay.backplane.received(key, data)
        stream = next((name for name in self.streams if matches(f"edge.s.{name[len('EDGE_'):]}.>", subject)), None)
        if stream is None or self.stream_down:
            return
        if msg_id is not None:
            if msg_id in self.msg_ids[stream]:
                return
            self.msg_ids[stream].add(msg_id)
        self.streams[stream].append((subject, data))
        seq = len(self.streams[stream])
        for (_, name), (relay, swarm) in list(self.feeds.items()):
            if name == stream:
                relay.backplane.position(swarm, seq, subject, msg_id)


class Relay:
    def __init__(self, bus: FakeBus, relay_id: str, monotonic: FakeMonotonic, **config) -> None:
        counter = itertools.count(1)
        self.id = relay_id
        self.router = RelayRouter(NativeCryptoProvider(), monotonic=monotonic, random_hex=lambda: f"{next(counter):032x}")
        self.backplane = bp.Backplane(bp.FederationConfig(relay_id, **config), self.router,
                                      lambda command: bus.queue.append((self, command)), monotonic)
        self.router.attach_federation(self.backplane)
        self._ids = itertools.count(1)

    async def join(self, swarm: P2PSwarm, topics=(), resume: int | None = None) -> FakePeer:
        peer = FakePeer(next(self._ids))
        self.router.open(peer)
        challenge = peer.last("challenge")["challenge"]
        if resume is None:
            hello = await hello_for(swarm, challenge)
        else:
            reg = swarm.registration
            proof = await swarm.identity.sign(rw.auth_bytes(reg.swarm, reg.agent_id, challenge))
            hello = rw.hello(reg, proof, resume)
        await self.router.receive(peer, hello)
        assert peer.close_code is None, peer.closes
        if topics:
            await self.router.receive(peer, rw.subscribe(list(topics)))
        return peer


class World:
    def __init__(self, n: int = 3, **config) -> None:
        self.bus = FakeBus()
        self.clock = FakeMonotonic()
        self.relays = [Relay(self.bus, f"r{i}", self.clock, **config) for i in range(n)]

    def settle(self) -> None:
        for _ in range(100):
            if not self.bus.run():
                return
        raise AssertionError("the bus never settled")

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        for relay in self.relays:
            relay.backplane.tick()
        self.settle()


def delivered(peer: FakePeer) -> list[tuple[int, dict]]:
    """(sequence, envelope) of every envelope sent to the peer; 0 for a bare one (no position yet)."""
    return [(f["seq"], f["envelope"]) if f.get("op") == "deliver" else (0, f) for f in peer.frames
            if f.get("op") == "deliver" or "header" in f]


def bodies(peer: FakePeer) -> list[str]:
    return [env["header"]["message_id"] for _, env in delivered(peer)]


@pytest.fixture
async def swarm3():
    return [await P2PSwarm.create(name, KEY) for name in ("alice", "bob", "carol")]


async def send(relay: Relay, peer: FakePeer, swarm: P2PSwarm, topic: str, payload: bytes = b"x") -> str:
    published = await swarm.publish(topic, payload)
    await relay.router.receive(peer, published.frame.decode())
    return published.message_id


# --- subjects ------------------------------------------------------------------------------


def test_subjects_are_per_swarm_hashed_tokens_and_parse_back():
    a, b = "swarm.one", "swarm-two"
    assert sj.topic_subject(a, "tasks") != sj.topic_subject(b, "tasks")
    assert sj.topic_subject(a, "x.y").count(".") == 4  # a '.' in a topic does not add a token
    assert sj.parse_subject(sj.topic_subject(a, "x.y")) == ("t", sj.topic_token(a, "x.y"), None)
    assert sj.parse_subject(sj.direct_subject(a, "bob", "r1")) == ("d", sj.agent_token(a, "bob"), "r1")
    assert matches(sj.inbox_subject(a, "r1"), sj.direct_subject(a, "bob", "r1"))
    assert not matches(sj.inbox_subject(a, "r1"), sj.direct_subject(a, "bob", "r2"))
    assert not matches(sj.swarm_subjects(b), sj.topic_subject(a, "t"))
    assert sj.parse_subject("edge.s.zz.t.zz") is None and sj.parse_key("a.b") is None
    with pytest.raises(ValueError):
        sj.check_relay_id("no.dots")


def test_config_refuses_inconsistent_timings():
    with pytest.raises(ValueError):
        bp.FederationConfig("r1", heartbeat_s=5, relay_timeout_s=3)
    with pytest.raises(ValueError):
        bp.FederationConfig("r1", stream_max_msgs=0)


# --- traffic -------------------------------------------------------------------------------


async def test_broadcast_crosses_relays_with_one_subscription_per_relay_and_topic(swarm3):
    world = World()
    a, b, c = swarm3
    r0, r1, r2 = world.relays
    pa = await r0.join(a, ["t"])
    pa2_swarm = await P2PSwarm.create("alice2", KEY)
    pa2 = await r0.join(pa2_swarm, ["t"])
    pb = await r1.join(b, ["t"])
    pc = await r2.join(c, ["other"])
    world.settle()
    subs = [cmd for rid, cmd in world.bus.commands if isinstance(cmd, bp.Subscribe) and cmd.key[0] == "t"]
    assert sorted((cmd.key[2], cmd.subject == sj.topic_subject(a.swarm_id, cmd.key[2])) for cmd in subs) == \
        [("other", True), ("t", True), ("t", True)]  # r0 subscribes "t" once for its two agents
    published = await a.publish("t", b"x")
    await r0.router.receive(pa, published.frame.decode())
    world.settle()
    assert bodies(pb) == [published.message_id] and bodies(pa2) == [published.message_id]
    assert bodies(pa) == [] and bodies(pc) == []  # not echoed to the sender, not to other topics
    # On the bus and to the agent: the sender's envelope byte for byte, with the stream sequence.
    assert world.bus.published[-1].data == published.frame
    # Bare: the stream's position feed had not confirmed anything when the frame came live.
    assert pb.sent[-1] == published.frame.decode()
    await b.register_member(a.registration)
    assert (await b.receive(rw.decode(pb.sent[-1], 1 << 21).raw)).payload == b"x"


async def test_direct_frame_goes_to_the_relay_holding_the_agent_only(swarm3):
    world = World()
    a, b, c = swarm3
    r0, r1, r2 = world.relays
    pa, pb, pc = await r0.join(a), await r1.join(b), await r2.join(c)
    world.settle()
    await a.register_member(b.registration)
    published = await a.send_direct("bob", b"hi")
    await r0.router.receive(pa, published.frame.decode())
    world.settle()
    assert world.bus.published[-1].subject == sj.direct_subject(a.swarm_id, "bob", "r1")
    assert bodies(pb) == [published.message_id] and bodies(pc) == []
    ghost = await P2PSwarm.create("ghost", KEY)
    await a.register_member(ghost.registration)
    published = await a.send_direct("ghost", b"hi")
    await r0.router.receive(pa, published.frame.decode())
    assert pa.last("undeliverable")["to"] == "ghost"


# --- presence ------------------------------------------------------------------------------


async def test_members_and_departures_agree_across_relays(swarm3):
    world = World()
    a, b, c = swarm3
    r0, r1, r2 = world.relays
    pa = await r0.join(a)
    world.settle()
    pb = await r1.join(b)
    world.settle()
    # The first agent on a relay hears of the others as the presence watch starts; later ones in their welcome.
    assert pb.last("member")["registration"] == a.registration.to_dict()
    assert pa.last("member")["registration"]["agent_id"] == "bob"
    pc = await r1.join(c)
    assert sorted(m["agent_id"] for m in pc.last("welcome")["members"]) == ["alice", "bob"]
    world.settle()
    await r1.router.receive(pc, rw.encode("leave"))
    await r1.router.receive(pb, rw.encode("leave"))
    world.settle()
    assert pa.last("left") == {"op": "left", "agent_id": "bob"}
    assert r0.backplane.relay_of(a.swarm_id, "bob") is None


async def test_a_silent_relay_is_gone_with_its_agents_but_an_agent_that_moved_stays(swarm3):
    world = World()
    a, b, c = swarm3
    r0, r1, r2 = world.relays
    pa, pb = await r0.join(a), await r1.join(b)
    pc = await r1.join(c)
    world.settle()
    world.tick(1.0)
    # r1 dies (stops heartbeating); carol fails over to r2 before r1 is declared gone.
    world.relays = [r0, r2]
    await r2.join(c)
    world.settle()
    assert r0.backplane.relay_of(a.swarm_id, "carol") == "r2"
    for _ in range(4):
        world.tick(1.0)
    lefts = [f["agent_id"] for f in pa.frames if f.get("op") == "left"]
    assert lefts == ["bob"]  # carol is on r2 now, so she did not leave
    assert r0.backplane.relay_of(a.swarm_id, "bob") is None


async def test_forged_presence_entries_are_ignored(swarm3):
    world = World()
    a, b, _ = swarm3
    r0 = world.relays[0]
    pa = await r0.join(a)
    world.settle()
    bucket = sj.presence_bucket(a.swarm_id)
    key = sj.agent_key(a.swarm_id, "bob", "rX")
    for value in (b"garbage", json.dumps({"agent": "carol", "registration": b.registration.to_dict(), "relay": "rX"}).encode(),
                  json.dumps({"agent": "bob", "registration": b.registration.to_dict(), "relay": "rY"}).encode()):
        r0.backplane.presence(a.swarm_id, key, value)
    assert r0.backplane.dropped["bad_presence"] == 3 and "member" not in pa.ops()


# --- bus input -----------------------------------------------------------------------------


async def test_frames_injected_on_the_bus_that_are_not_envelopes_of_the_swarm_are_dropped(swarm3):
    world = World()
    a, b, _ = swarm3
    r0, r1, _ = world.relays
    pa = await r0.join(a, ["t"])
    world.settle()
    x = await P2PSwarm.create("xavier", OTHER_KEY)
    subject = sj.topic_subject(a.swarm_id, "t")
    other = (await x.publish("t", b"x")).frame
    mine = (await b.publish("t", b"x")).frame.decode()
    wrong_topic = (await b.publish("u", b"x")).frame
    for data in (b"\xff\x00garbage", b'{"op":"welcome"}', other, rw.delivered(mine, 7).encode(), wrong_topic,
                 b"{" * 10 + b"x" * (3 * 1024 * 1024)):
        world.bus.inject(subject, data)
    assert bodies(pa) == []
    assert dict(r0.backplane.dropped) == {"malformed": 2, "not_an_envelope": 2, "wrong_swarm": 1, "wrong_topic": 1}


async def test_republished_message_id_is_stored_once(swarm3):
    world = World()
    a, b, _ = swarm3
    r0, r1, _ = world.relays
    pa, pb = await r0.join(a, ["t"]), await r1.join(b, ["t"])
    world.settle()
    published = await a.publish("t", b"once")
    for _ in range(2):  # e.g. re-sent from the agent's queue after failing over
        await r0.router.receive(pa, published.frame.decode())
    world.settle()
    assert bodies(pb) == [published.message_id]
    assert [p.msg_id for p in world.bus.published].count(f"alice/{published.message_id}") == 1  # and put on the bus once


# --- catch-up ------------------------------------------------------------------------------


async def test_resume_replays_what_was_missed_in_order_then_live_frames_without_duplicates(swarm3):
    world = World()
    a, b, c = swarm3
    r0, r1, r2 = world.relays
    pa = await r0.join(a, ["t"])
    pb = await r1.join(b, ["t"])
    pc = await r2.join(c)
    world.settle()
    first = await send(r0, pa, a, "t")
    world.settle()
    second = await send(r0, pa, a, "t")
    world.settle()
    # A live frame goes out with the relay's position, which had confirmed `first` but not `second`
    # yet: bob's resume point lags by what was in flight, and he gets `second` again (his replay
    # guard skips it quietly); what he never had all comes after it.
    assert [seq for seq, _ in delivered(pb)] == [0, 1]
    last_seen = delivered(pb)[-1][0]
    r1.router.closed(pb)  # bob's relay connection drops
    world.settle()
    missed = [await send(r0, pa, a, "t") for _ in range(3)]
    await a.register_member(b.registration)
    direct = await a.send_direct("bob", b"for bob")
    not_for_bob = await send(r0, pa, a, "elsewhere")
    world.settle()
    # bob comes back on another relay with his last sequence; a frame arrives live before his sub.
    pb2 = await r2.join(b, resume=last_seen)
    world.settle()
    await r0.router.receive(pa, direct.frame.decode())  # sent to bob while he is catching up
    live = await send(r0, pa, a, "t")
    await r2.router.receive(pb2, rw.subscribe(["t"]))
    world.settle()
    got = bodies(pb2)
    assert got == [second] + missed + [direct.message_id, live], got
    assert first not in got and not_for_bob not in got
    seqs = [seq for seq, _ in delivered(pb2)]
    assert seqs == sorted(seqs)


async def test_without_resume_nothing_is_replayed(swarm3):
    world = World()
    a, b, _ = swarm3
    r0, r1, _ = world.relays
    pa = await r0.join(a, ["t"])
    world.settle()
    await send(r0, pa, a, "t")
    pb = await r1.join(b, ["t"])
    world.settle()
    assert bodies(pb) == [] and not any(isinstance(cmd, bp.Replay) for _, cmd in world.bus.commands)


# --- live path and position ------------------------------------------------------------------


async def test_live_frames_cross_relays_on_core_subscriptions_even_when_the_stream_stores_nothing(swarm3):
    """The live path does not wait for JetStream: frames reach the other relay's agent and the sender's
    neighbour on its own relay with JetStream down, and no subscription names a stream."""
    world = World()
    a, b, _ = swarm3
    r0, r1, _ = world.relays
    pa, pb = await r0.join(a, ["t"]), await r1.join(b, ["t"])
    neighbour = await r0.join(await P2PSwarm.create("alice2", KEY), ["t"])
    world.settle()
    world.bus.stream_down = True
    sent = [await send(r0, pa, a, "t") for _ in range(3)]
    world.settle()
    assert bodies(pb) == sent and bodies(neighbour) == sent
    assert world.bus.streams[sj.stream_name(a.swarm_id)] == []


async def test_a_frame_lost_on_the_live_path_is_fetched_from_the_stream_and_the_position_waits_for_it(swarm3):
    world = World(gap_s=1.0)
    a, b, _ = swarm3
    r0, r1, _ = world.relays
    pa, pb = await r0.join(a, ["t"]), await r1.join(b, ["t"])
    world.settle()
    first = await send(r0, pa, a, "t")
    world.settle()
    world.bus.lose_live.add("r1")  # r1's link is down for one frame: the stream still stores it
    lost = await send(r0, pa, a, "t")
    world.settle()
    world.bus.lose_live.clear()
    after = await send(r0, pa, a, "t")
    world.settle()
    # `after` goes out with position 1: r1 cannot vouch for the lost frame (seq 2) yet.
    assert delivered(pb)[-1][0] == 1 and bodies(pb) == [first, after]
    world.tick(0.5)
    assert bodies(pb) == [first, after]  # not fetched before gap_s
    world.tick(0.6)
    assert bodies(pb) == [first, after, lost] and r1.backplane.dropped["gap_fetched"] == 1
    last = await send(r0, pa, a, "t")
    world.settle()
    assert delivered(pb)[-1][0] == 3 and bodies(pb)[-1] == last  # the position passed every frame up to `after`


async def test_a_failed_fetch_is_asked_again_and_a_far_behind_live_path_fetches_each_frame_once(swarm3):
    world = World(gap_s=1.0, max_held=2)
    a, b, _ = swarm3
    r0, r1, _ = world.relays
    pa, pb = await r0.join(a, ["t"]), await r1.join(b, ["t"])
    world.settle()
    world.bus.lose_live.add("r1")
    lost, fetches = [], []
    for _ in range(5):
        lost.append(await send(r0, pa, a, "t"))
        while world.bus.queue:  # run the bus, but leave fetches unanswered (NATS busy)
            relay, command = world.bus.queue.pop(0)
            if isinstance(command, bp.Fetch):
                fetches.append(command)
            else:
                world.bus._execute(relay, command)
    assert [c.seq for c in fetches] == [1]  # over max_held: the oldest is asked for once, not once per new frame
    r1.backplane.fetch_failed(a.swarm_id, fetches[0].key)  # e.g. a timeout
    assert r1.backplane.dropped["gap_lost"] == 0
    world.bus.lose_live.clear()
    world.tick(1.1)
    assert sorted(bodies(pb)) == sorted(lost) and r1.backplane.dropped["gap_lost"] == 0


async def test_a_frame_that_overtakes_its_senders_presence_waits_for_it_and_an_unannounced_one_is_dropped(swarm3):
    """Core NATS can bring bob's frame before the bucket's watch brings bob's entry: alice must get
    `member` bob first, then the frame (her agent refuses frames from senders it was not told of)."""
    world = World()
    a, b, c = swarm3
    r0, r1, _ = world.relays
    pa = await r0.join(a, ["t"])
    world.settle()
    early = await b.publish("t", b"before my entry")
    world.bus.inject(sj.topic_subject(a.swarm_id, "t"), early.frame, f"bob/{early.message_id}")
    assert bodies(pa) == []
    await r1.join(b, ["t"])
    world.settle()
    ops = [f.get("op", "envelope").replace("deliver", "envelope") for f in pa.frames]
    assert ops[ops.index("member"):] == ["member", "envelope"] and bodies(pa) == [early.message_id]
    never = await c.publish("t", b"nobody announced carol")
    world.bus.inject(sj.topic_subject(a.swarm_id, "t"), never.frame, f"carol/{never.message_id}")
    world.tick(1.0)
    world.tick(1.0)
    world.tick(1.5)
    assert bodies(pa) == [early.message_id] and r0.backplane.dropped["unknown_sender"] == 1
