"""What a relay does on the NATS backplane, without NATS (driven by nats_bus.py and by tests with a fake bus).

The router tells it what happens locally (an agent joined or left, a topic came into use, an
envelope to forward, an agent resuming from a stream sequence); it answers with commands for the
bus (`Publish`, `Subscribe`, `Put`, `Replay`, …, handed to `emit` in order) and, for what the bus
delivers, calls back into the router (`FederationSink`). Frames cross the bus byte for byte as the
agents signed and encrypted them; the backplane reads headers only, like the router.

Decisions taken here:
- one subscription per relay and topic in use (not per agent), plus one inbox per swarm for the
  direct frames of the agents this relay holds; a direct frame goes to the relay that holds its
  target, found in presence, never flooded;
- presence is a JetStream key-value bucket per swarm (keys in subjects.py). Each relay puts an
  entry per agent it holds and a heartbeat entry of its own every `heartbeat_s`; a relay unheard
  for `relay_timeout_s` is gone and so are its agents. The bucket's TTL (`presence_ttl_s`,
  refreshed every `refresh_s`) clears what a dead relay left behind for relays that start later;
- live frames ride plain core-NATS subscriptions: the relay that gets a frame from its agent
  delivers it to its own subscribers at once and publishes it once (without echo); the relays
  with subscribers deliver it as it arrives. JetStream is never on that path: the swarm's stream
  captures the same subjects, so the one publish is also the history, stored beside delivery;
- a relay de-duplicates by message id (sender/message id, the envelope's own; bounded per swarm),
  so a frame an agent re-sends after failing over is delivered once, and the stream keeps one
  copy of it (`Nats-Msg-Id`). What is older than that bound reaches the agent, whose replay guard
  skips it quietly;
- the sequence sent with a live frame is the relay's *position* in the stream, not the frame's own
  sequence (a core-NATS frame does not carry one, and waiting for JetStream's ack would put the
  store back on the live path). The position is the highest sequence S such that every frame up
  to S that this relay subscribes to has been delivered here: a headers-only ordered consumer per
  swarm reads the stream's (sequence, subject, message id) in order and the position advances over
  what was delivered live or is not for this relay. An agent keeps the highest sequence it saw, so
  what it passes as `resume` is always safe: everything it missed comes after it. A frame the
  stream holds that never came live (lost while NATS reconnected) is fetched from the stream after
  `gap_s` and delivered then, so the live path is at most once and the relay's delivery is not;
- a live frame can overtake the presence entry of its sender (the entry reaches other relays
  through the bucket's JetStream watch, the frame through core NATS), and an agent refuses frames
  from senders it was not told of. So a frame from a sender this relay does not know yet waits
  (bounded, at most `relay_timeout_s`) for the sender's entry: the agents get `member`, then it;
- catch-up: an agent's hello may carry the last stream sequence it saw; after its first
  subscription the relay replays what the swarm's stream holds after it, filtered to that agent's
  topics and direct frames, holding live frames for it meanwhile; at the seam a held frame that
  the replay already sent is dropped by message id, so nothing is lost or doubled.
"""

from __future__ import annotations

import collections
import json
import logging
from dataclasses import dataclass, field
from typing import Callable, Protocol

from ...canonical import canonicalize
from ...errors import RejectedInput
from ...transport import relay_wire as rw
from . import subjects as sj

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FederationConfig:
    """Bounds and timings of one relay's federation; the stream bounds are its catch-up horizon."""

    relay_id: str
    stream_max_msgs: int = 100_000
    stream_max_bytes: int = 256 * 1024 * 1024
    stream_max_age_s: float = 3600.0
    replicas: int = 1  # stream and bucket replicas: 3 on a 3-node cluster survives losing a node
    heartbeat_s: float = 1.0
    relay_timeout_s: float = 3.0
    presence_ttl_s: float = 30.0
    refresh_s: float = 10.0
    max_held: int = 10_000  # live frames held for one agent while its catch-up replays; frames awaited per swarm
    dedup_max: int = 65_536  # message ids remembered per swarm (duplicates dropped, the position confirmed)
    gap_s: float = 1.0  # a frame the stream has but the live path did not bring is fetched after this
    max_frame_bytes: int = 2 * 1024 * 1024

    def __post_init__(self) -> None:
        sj.check_relay_id(self.relay_id)
        if not 0 < self.heartbeat_s < self.relay_timeout_s:
            raise ValueError("heartbeat_s must be positive and shorter than relay_timeout_s")
        if not 0 < self.refresh_s < self.presence_ttl_s:
            raise ValueError("refresh_s must be positive and shorter than presence_ttl_s")
        if min(self.stream_max_msgs, self.stream_max_bytes, self.replicas, self.max_held, self.dedup_max) < 1 \
                or self.stream_max_age_s <= 0 or self.gap_s <= 0:
            raise ValueError("stream bounds, replicas, max_held, dedup_max and gap_s must be positive")


# Commands for the bus -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EnsureSwarm:
    """Create (or find) the swarm's stream and presence bucket, watch the bucket, and follow the
    stream's positions (headers only) from its end: `stream_at`, then `position` for each frame."""

    swarm: str
    stream: str
    subjects: str
    bucket: str


@dataclass(frozen=True)
class ReleaseSwarm:
    """No agent of this swarm is left here: stop its subscriptions and its watch."""

    swarm: str


@dataclass(frozen=True)
class Subscribe:
    """A core-NATS subscription: live frames, not a JetStream consumer."""

    key: tuple[str, ...]  # ("t", swarm, topic) or ("d", swarm): handed back with every message
    subject: str


@dataclass(frozen=True)
class Unsubscribe:
    key: tuple[str, ...]


@dataclass(frozen=True)
class Publish:
    subject: str
    data: bytes
    msg_id: str
    stream: str  # the swarm's stream, whose position feed tells whether the frame was stored


@dataclass(frozen=True)
class Put:
    bucket: str
    key: str
    value: bytes


@dataclass(frozen=True)
class Delete:
    bucket: str
    key: str


@dataclass(frozen=True)
class Replay:
    """Feed `replayed(conn_id, …)` with the stream's frames from `start_seq` on, then `replay_done(conn_id)`."""

    conn_id: int
    stream: str
    subject: str
    start_seq: int


@dataclass(frozen=True)
class Fetch:
    """Read one frame from the stream by sequence and hand it to `fetched` (data None if it is gone)."""

    swarm: str
    stream: str
    seq: int
    key: str  # the awaited message id, handed back


Command = EnsureSwarm | ReleaseSwarm | Subscribe | Unsubscribe | Publish | Put | Delete | Replay | Fetch


class FederationSink(Protocol):
    """The router, as the backplane sees it."""

    def bus_frame(self, swarm: str, envelope: rw.RoutedEnvelope, seq: int) -> None:
        """Deliver a frame from the bus to the local subscribers of its topic (or its direct target)."""

    def bus_replay(self, conn_id: int, envelope: rw.RoutedEnvelope, seq: int) -> None:
        """Deliver one replayed frame to one connection."""

    def send_held(self, conn_id: int, texts: list[str]) -> None:
        """Send frames held during a catch-up, in order."""

    def conn_view(self, conn_id: int) -> tuple[str, frozenset[str]] | None:
        """The agent id and topics of a connection (None once it is gone)."""

    def remote_joined(self, swarm: str, agent_id: str, registration_json: str) -> None:
        """An agent appeared on another relay."""

    def remote_left(self, swarm: str, agent_id: str) -> None:
        """An agent is on no other relay any more."""


@dataclass
class _Gap:
    """A frame the stream holds for this relay that has not come live yet."""

    seq: int
    deadline: float
    fetching: bool = False


@dataclass
class _Swarm:
    local: dict[str, str] = field(default_factory=dict)  # agent id -> registration (canonical text)
    topics: set[str] = field(default_factory=set)
    remote: dict[str, dict[str, str]] = field(default_factory=dict)  # agent id -> relay id -> registration
    agent_ids: dict[str, str] = field(default_factory=dict)  # agent token -> agent id (remote)
    relays: dict[str, float] = field(default_factory=dict)  # other relay id -> last heard (monotonic)
    topic_tokens: set[str] = field(default_factory=set)  # subject tokens of `topics`
    recent: collections.OrderedDict[str, None] = field(default_factory=collections.OrderedDict)  # delivered ids
    head: int = 0  # the last stream sequence the position feed reported
    ready: bool = False  # the presence watch and position feed run (stream_at was called)
    awaited: collections.OrderedDict[str, _Gap] = field(default_factory=collections.OrderedDict)  # in stream order
    early: dict[str, list[tuple[float, rw.RoutedEnvelope, str]]] = field(default_factory=dict)  # unknown sender ->
    early_count: int = 0  # frames waiting for their sender's presence entry, over all senders
    # relay id -> (when it went silent, agent token -> (agent id, registration)): the agents of a relay
    # unheard for relay_timeout_s, restored if it is heard again (its entries are still in the bucket: a
    # presence watch or a bucket without a leader for a while after a NATS node died loses no entry)
    dormant: dict[str, tuple[float, dict[str, tuple[str, str]]]] = field(default_factory=dict)

    @property
    def position(self) -> int:
        """Every frame up to here that this relay subscribes to has been delivered here."""
        return next(iter(self.awaited.values())).seq - 1 if self.awaited else self.head


@dataclass
class _CatchUp:
    swarm: str
    start_seq: int
    last_seq: int
    started: bool = False
    held: list[tuple[str, str]] = field(default_factory=list)  # (message id, text) of live frames
    held_ids: set[str] = field(default_factory=set)  # of those, the ones the replay has not sent
    topics: frozenset[str] = frozenset()  # the agent's topics when `tokens` was computed
    tokens: frozenset[str] = frozenset()  # their subject tokens (hashed once per change, not per frame)


class Backplane:
    def __init__(self, config: FederationConfig, sink: FederationSink, emit: Callable[[Command], None],
                 monotonic: Callable[[], float]) -> None:
        self.config = config
        self.relay_id = config.relay_id
        self.sink = sink
        self.emit = emit
        self.monotonic = monotonic
        self.dropped: collections.Counter[str] = collections.Counter()
        self._swarms: dict[str, _Swarm] = {}
        self._catchups: dict[int, _CatchUp] = {}
        self._delivering: str | None = None  # message id of the live frame being handed to the sink
        now = monotonic()
        self._next_heartbeat = now
        self._next_refresh = now + config.refresh_s

    # From the router: local events --------------------------------------------------------------
    def joined(self, swarm_id: str, agent_id: str, registration_json: str) -> None:
        swarm = self._swarms.get(swarm_id)
        if swarm is None:
            swarm = self._swarms[swarm_id] = _Swarm()
            self.emit(EnsureSwarm(swarm_id, sj.stream_name(swarm_id), sj.swarm_subjects(swarm_id), sj.presence_bucket(swarm_id)))
            self.emit(Subscribe(("d", swarm_id), sj.inbox_subject(swarm_id, self.relay_id)))
            self._put_relay(swarm_id)
        swarm.local[agent_id] = registration_json
        self._put_agent(swarm_id, agent_id, registration_json)

    def departed(self, swarm_id: str, agent_id: str) -> None:
        swarm = self._swarms.get(swarm_id)
        if swarm is None or swarm.local.pop(agent_id, None) is None:
            return
        bucket = sj.presence_bucket(swarm_id)
        self.emit(Delete(bucket, sj.agent_key(swarm_id, agent_id, self.relay_id)))
        if not swarm.local:
            for topic in swarm.topics:
                self.emit(Unsubscribe(("t", swarm_id, topic)))
            self.emit(Unsubscribe(("d", swarm_id)))
            self.emit(Delete(bucket, sj.relay_key(self.relay_id)))
            self.emit(ReleaseSwarm(swarm_id))
            del self._swarms[swarm_id]

    def topic_used(self, swarm_id: str, topic: str) -> None:
        swarm = self._swarms.get(swarm_id)
        if swarm is not None and topic not in swarm.topics:
            swarm.topics.add(topic)
            swarm.topic_tokens.add(sj.topic_token(swarm_id, topic))
            self.emit(Subscribe(("t", swarm_id, topic), sj.topic_subject(swarm_id, topic)))

    def topic_unused(self, swarm_id: str, topic: str) -> None:
        swarm = self._swarms.get(swarm_id)
        if swarm is not None and topic in swarm.topics:
            swarm.topics.discard(topic)
            swarm.topic_tokens.discard(sj.topic_token(swarm_id, topic))
            self.emit(Unsubscribe(("t", swarm_id, topic)))

    def publish(self, envelope: rw.RoutedEnvelope) -> bool:
        """Deliver an agent's envelope to this relay's subscribers and put it on the bus once (the
        stream records it from there); False for a direct frame whose target is on no relay."""
        header = envelope.header
        if rw.is_direct(header.topic):
            relay = self.relay_of(header.swarm, header.topic[1:])
            if relay is None:
                return False
            subject = sj.direct_subject(header.swarm, header.topic[1:], relay)
        else:
            subject = sj.topic_subject(header.swarm, header.topic)
        msg_id = _msg_id(envelope)
        swarm = self._swarms.get(header.swarm)
        if swarm is not None and msg_id in swarm.recent:  # already delivered here, so already on the bus
            self.dropped["duplicate"] += 1
            return True
        self._deliver(header.swarm, envelope, msg_id)
        self.emit(Publish(subject, envelope.raw.encode("utf-8"), msg_id, sj.stream_name(header.swarm)))
        return True

    def relay_of(self, swarm_id: str, agent_id: str) -> str | None:
        swarm = self._swarms.get(swarm_id)
        if swarm is None:
            return None
        if agent_id in swarm.local:
            return self.relay_id
        relays = swarm.remote.get(agent_id)
        return next(reversed(relays)) if relays else None  # the relay it joined last

    def remote_members(self, swarm_id: str) -> list[str]:
        """Registrations of the agents on other relays only (for a welcome)."""
        swarm = self._swarms.get(swarm_id)
        if swarm is None:
            return []
        return [next(reversed(by_relay.values())) for agent, by_relay in swarm.remote.items() if agent not in swarm.local]

    # Catch-up -----------------------------------------------------------------------------------
    def resume(self, conn_id: int, swarm_id: str, last_seq: int) -> None:
        """An agent saw everything up to `last_seq`; hold its live frames until it has the rest."""
        self._catchups[conn_id] = _CatchUp(swarm_id, last_seq + 1, last_seq)

    def subscribed(self, conn_id: int) -> None:
        """The agent's topics are known now: start its replay (once)."""
        catchup = self._catchups.get(conn_id)
        if catchup is not None and not catchup.started:
            catchup.started = True
            self.emit(Replay(conn_id, sj.stream_name(catchup.swarm), sj.swarm_subjects(catchup.swarm), catchup.start_seq))

    def hold(self, conn_id: int, seq: int, text: str) -> bool:
        """Keep a live frame for a connection still catching up (True: held, don't send it now).
        `seq` is the position it goes out with; the seam is matched by the frame's message id."""
        catchup = self._catchups.get(conn_id)
        if catchup is None or self._delivering is None:
            return False
        if len(catchup.held) >= self.config.max_held:  # an agent that never subscribes must not grow this
            self.dropped["held_overflow"] += 1
            self.replay_done(conn_id)
            return False
        catchup.held.append((self._delivering, text))
        catchup.held_ids.add(self._delivering)
        return True

    def closed(self, conn_id: int) -> None:
        self._catchups.pop(conn_id, None)

    # From the bus --------------------------------------------------------------------------------
    def received(self, key: tuple[str, ...], data: bytes) -> None:
        """A live frame on one of our subscriptions."""
        swarm_id = key[1]
        envelope = self._envelope(swarm_id, data)
        if envelope is None:
            return
        topic = envelope.header.topic
        if key[0] == "t":
            if topic != key[2]:
                self.dropped["wrong_topic"] += 1
                return
        elif not rw.is_direct(topic):
            self.dropped["wrong_topic"] += 1
            return
        self._deliver(swarm_id, envelope, _msg_id(envelope))

    def stream_at(self, swarm_id: str, last_seq: int) -> None:
        """The position feed starts after `last_seq`: frames before it are not this relay's to confirm."""
        swarm = self._swarms.get(swarm_id)
        if swarm is not None and not swarm.ready:
            swarm.ready = True
            # Frames from senders not known yet waited for a presence watch that was not running: their
            # wait starts now, when the watch can answer.
            deadline = self.monotonic() + self.config.relay_timeout_s
            for frames in swarm.early.values():
                frames[:] = [(max(due, deadline), envelope, msg_id) for due, envelope, msg_id in frames]
        if swarm is not None and last_seq > swarm.head:
            swarm.head = last_seq
            for key in [k for k, gap in swarm.awaited.items() if gap.seq <= last_seq]:
                del swarm.awaited[key]

    def position(self, swarm_id: str, seq: int, subject: str, msg_id: str | None) -> None:
        """The stream stored a frame at `seq` (headers only, in stream order): advance the position
        over it if it was delivered here or is not for this relay; otherwise await it."""
        swarm = self._swarms.get(swarm_id)
        if swarm is None or seq <= swarm.head:
            return
        swarm.head = seq
        parsed = sj.parse_subject(subject)
        wanted = parsed is not None and (parsed[1] in swarm.topic_tokens if parsed[0] == "t" else parsed[2] == self.relay_id)
        key = msg_id or f"#{seq}"  # no id (not a relay's publish): fetched, then judged by its envelope
        if not wanted or key in swarm.recent or key in swarm.awaited:
            return
        swarm.awaited[key] = _Gap(seq, self.monotonic() + self.config.gap_s)
        if len(swarm.awaited) > self.config.max_held:  # the live path is far behind: fetch the oldest now
            oldest_key, oldest = next(iter(swarm.awaited.items()))
            if not oldest.fetching:  # once: asking again for a frame already asked for only adds load
                self._fetch(swarm_id, swarm, oldest_key, oldest)

    def fetched(self, swarm_id: str, key: str, data: bytes | None) -> None:
        """An awaited frame read from the stream (None: no longer there, past the stream's bounds)."""
        swarm = self._swarms.get(swarm_id)
        if swarm is None or swarm.awaited.pop(key, None) is None:
            return
        if data is None:
            self.dropped["gap_lost"] += 1
            return
        envelope = self._envelope(swarm_id, data)
        if envelope is not None:
            self.dropped["gap_fetched"] += 1  # counted: a non-zero count says the live path lost frames
            self._deliver(swarm_id, envelope, _msg_id(envelope))

    def fetch_failed(self, swarm_id: str, key: str) -> None:
        """Reading an awaited frame failed for now (a timeout, NATS reconnecting): ask again after gap_s.
        Only the stream saying the frame is gone makes it lost; a busy moment must not."""
        swarm = self._swarms.get(swarm_id)
        gap = swarm.awaited.get(key) if swarm is not None else None
        if gap is not None:
            gap.fetching = False
            gap.deadline = self.monotonic() + self.config.gap_s

    def replayed(self, conn_id: int, subject: str, data: bytes, seq: int) -> None:
        """A frame of a catch-up, with its own stream sequence (replays run in stream order)."""
        catchup = self._catchups.get(conn_id)
        view = self.sink.conn_view(conn_id)
        if catchup is None or view is None or seq <= catchup.last_seq:
            return
        catchup.last_seq = seq
        agent_id, topics = view
        parsed = sj.parse_subject(subject)
        if parsed is None:
            return
        kind, token, _relay = parsed
        if kind == "t":
            if topics != catchup.topics:
                catchup.topics, catchup.tokens = topics, frozenset(sj.topic_token(catchup.swarm, t) for t in topics)
            wanted = token in catchup.tokens
        else:
            wanted = token == sj.agent_token(catchup.swarm, agent_id)
        if not wanted:
            return
        envelope = self._envelope(catchup.swarm, data)
        if envelope is None or envelope.header.sender_id == agent_id:
            return
        topic = envelope.header.topic
        if topic != rw.direct_topic(agent_id) if kind == "d" else topic not in topics:
            self.dropped["wrong_topic"] += 1
            return
        catchup.held_ids.discard(_msg_id(envelope))  # came live too: the replay's copy goes, in order
        self.sink.bus_replay(conn_id, envelope, seq)

    def replay_done(self, conn_id: int) -> None:
        catchup = self._catchups.pop(conn_id, None)
        if catchup is None:
            return
        held = [text for msg_id, text in catchup.held if msg_id in catchup.held_ids]
        if held:
            self.sink.send_held(conn_id, held)

    def presence(self, swarm_id: str, key: str, value: bytes | None) -> None:
        """A put (value) or delete (None) in a swarm's presence bucket."""
        swarm = self._swarms.get(swarm_id)
        parsed = sj.parse_key(key)
        if swarm is None or parsed is None:
            return
        kind, token, relay = parsed
        if relay == self.relay_id:
            return
        if kind == "r":
            if value is None:
                swarm.dormant.pop(relay, None)
                self._relay_gone(swarm_id, swarm, relay)
            else:
                self._relay_heard(swarm_id, swarm, relay)
            return
        dormant = swarm.dormant.get(relay)
        if dormant is not None:
            dormant[1].pop(token, None)  # type: ignore[arg-type]
        if value is None:
            agent_id = swarm.agent_ids.get(token)  # type: ignore[arg-type]
            if agent_id is not None:
                self._remote_gone(swarm_id, swarm, agent_id, relay)
            return
        entry = self._presence_entry(swarm_id, token, relay, value)  # type: ignore[arg-type]
        if entry is None:
            return
        if relay not in swarm.relays:
            self._relay_heard(swarm_id, swarm, relay)
        self._remote_put(swarm_id, swarm, token, relay, *entry)  # type: ignore[arg-type]

    def _relay_heard(self, swarm_id: str, swarm: _Swarm, relay: str) -> None:
        """A heartbeat (or entry) of another relay; one that had gone silent gets its agents back."""
        swarm.relays[relay] = self.monotonic()
        _, agents = swarm.dormant.pop(relay, (0.0, {}))
        if agents:
            log.debug("relay %s: relay %s heard again in swarm %s, %d agent(s) back", self.relay_id, relay, swarm_id,
                      len(agents))
        for token, (agent_id, registration_json) in agents.items():
            self._remote_put(swarm_id, swarm, token, relay, agent_id, registration_json)

    def _remote_put(self, swarm_id: str, swarm: _Swarm, token: str, relay: str, agent_id: str,
                    registration_json: str) -> None:
        swarm.agent_ids[token] = agent_id
        by_relay = swarm.remote.setdefault(agent_id, {})
        known = bool(by_relay)
        changed = by_relay.get(relay) != registration_json
        by_relay.pop(relay, None)
        by_relay[relay] = registration_json  # the newest last: relay_of() picks it
        if (not known or changed) and agent_id not in swarm.local:
            self.sink.remote_joined(swarm_id, agent_id, registration_json)
        for _, envelope, msg_id in swarm.early.pop(agent_id, ()):
            swarm.early_count -= 1
            self._hand(swarm_id, swarm, envelope, msg_id)

    def tick(self) -> None:
        """Heartbeats, presence refreshes and the liveness of other relays; call about every heartbeat_s/2."""
        now = self.monotonic()
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_s
            for swarm_id in self._swarms:
                self._put_relay(swarm_id)
        if now >= self._next_refresh:
            self._next_refresh = now + self.config.refresh_s
            for swarm_id, swarm in self._swarms.items():
                for agent_id, registration_json in swarm.local.items():
                    self._put_agent(swarm_id, agent_id, registration_json)
        deadline = now - self.config.relay_timeout_s
        for swarm_id, swarm in tuple(self._swarms.items()):
            for relay, heard in tuple(swarm.relays.items()):
                if heard < deadline:
                    swarm.dormant[relay] = (now, {sj.agent_token(swarm_id, a): (a, by_relay[relay])
                                                  for a, by_relay in swarm.remote.items() if relay in by_relay})
                    self._relay_gone(swarm_id, swarm, relay)
            for relay, (since, _) in tuple(swarm.dormant.items()):  # its entries have expired from the bucket
                if since + self.config.presence_ttl_s < now:
                    del swarm.dormant[relay]
            for key, gap in tuple(swarm.awaited.items()):  # in stream order, so deadlines ascend
                if gap.deadline > now:
                    break
                if not gap.fetching:
                    self._fetch(swarm_id, swarm, key, gap)
            for sender, frames in tuple(swarm.early.items()):  # no relay announced it: no agent would take these
                if swarm.ready and frames[0][0] <= now:
                    del swarm.early[sender]
                    swarm.early_count -= len(frames)
                    for _, _, msg_id in frames:  # not delivered: a later copy (stream fetch, republish) may be
                        swarm.recent.pop(msg_id, None)
                    log.debug("relay %s: %d frame(s) from unknown sender %s dropped", self.relay_id, len(frames), sender)
                    self.dropped["unknown_sender"] += len(frames)

    # Internals -------------------------------------------------------------------------------------
    def _deliver(self, swarm_id: str, envelope: rw.RoutedEnvelope, msg_id: str) -> None:
        """Hand a frame to this relay's subscribers once, with the swarm's position as its sequence."""
        swarm = self._swarms.get(swarm_id)
        if swarm is None:
            return
        if msg_id in swarm.recent:
            self.dropped["duplicate"] += 1
            return
        swarm.recent[msg_id] = None
        if len(swarm.recent) > self.config.dedup_max:
            swarm.recent.popitem(last=False)
        swarm.awaited.pop(msg_id, None)
        sender = envelope.header.sender_id
        if sender not in swarm.local and sender not in swarm.remote:
            if swarm.early_count >= self.config.max_held:
                self.dropped["unknown_sender"] += 1
                return
            dormant = any(sender == agent for _, agents in swarm.dormant.values() for agent, _ in agents.values())
            wait = self.config.presence_ttl_s if dormant else self.config.relay_timeout_s  # its relay may come back
            swarm.early.setdefault(sender, []).append((self.monotonic() + wait, envelope, msg_id))
            swarm.early_count += 1
            return
        self._hand(swarm_id, swarm, envelope, msg_id)

    def _hand(self, swarm_id: str, swarm: _Swarm, envelope: rw.RoutedEnvelope, msg_id: str) -> None:
        self._delivering = msg_id
        try:
            self.sink.bus_frame(swarm_id, envelope, swarm.position)
        finally:
            self._delivering = None

    def _fetch(self, swarm_id: str, swarm: _Swarm, key: str, gap: _Gap) -> None:
        gap.fetching = True
        self.emit(Fetch(swarm_id, sj.stream_name(swarm_id), gap.seq, key))

    def _envelope(self, swarm_id: str, data: bytes) -> rw.RoutedEnvelope | None:
        """A bus frame must be a plain envelope of this swarm within the frame limit; anything else
        (garbage, a relay control frame, another swarm's envelope) is dropped here and counted."""
        try:
            frame = rw.decode(data, self.config.max_frame_bytes)
        except RejectedInput:
            self.dropped["malformed"] += 1
            return None
        if not isinstance(frame, rw.RoutedEnvelope) or frame.seq is not None:
            self.dropped["not_an_envelope"] += 1
            return None
        if frame.header.swarm != swarm_id:
            self.dropped["wrong_swarm"] += 1
            return None
        return frame

    def _presence_entry(self, swarm_id: str, token: str, relay: str, value: bytes) -> tuple[str, str] | None:
        try:
            body = json.loads(value)
            agent_id = body["agent"]
            registration = body["registration"]
            ok = (body.get("relay") == relay and isinstance(agent_id, str) and isinstance(registration, dict)
                  and sj.agent_token(swarm_id, agent_id) == token
                  and registration.get("agent_id") == agent_id and registration.get("swarm") == swarm_id)
        except (ValueError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            self.dropped["bad_presence"] += 1
            return None
        return agent_id, canonicalize(registration).decode("utf-8")

    def _remote_gone(self, swarm_id: str, swarm: _Swarm, agent_id: str, relay: str) -> None:
        by_relay = swarm.remote.get(agent_id)
        if by_relay is None or by_relay.pop(relay, None) is None:
            return
        if not by_relay:
            del swarm.remote[agent_id]
            swarm.agent_ids.pop(sj.agent_token(swarm_id, agent_id), None)
            if agent_id not in swarm.local:
                self.sink.remote_left(swarm_id, agent_id)

    def _relay_gone(self, swarm_id: str, swarm: _Swarm, relay: str) -> None:
        log.debug("relay %s: relay %s gone from swarm %s", self.relay_id, relay, swarm_id)
        swarm.relays.pop(relay, None)
        for agent_id in [a for a, by_relay in swarm.remote.items() if relay in by_relay]:
            self._remote_gone(swarm_id, swarm, agent_id, relay)

    def _put_relay(self, swarm_id: str) -> None:
        self.emit(Put(sj.presence_bucket(swarm_id), sj.relay_key(self.relay_id),
                      json.dumps({"relay": self.relay_id}).encode()))

    def _put_agent(self, swarm_id: str, agent_id: str, registration_json: str) -> None:
        value = f'{{"agent":{json.dumps(agent_id)},"registration":{registration_json},"relay":"{self.relay_id}"}}'
        self.emit(Put(sj.presence_bucket(swarm_id), sj.agent_key(swarm_id, agent_id, self.relay_id), value.encode()))


def _msg_id(envelope: rw.RoutedEnvelope) -> str:
    """A frame's identity on the bus: its sender and message id, as signed in its header."""
    return f"{envelope.header.sender_id}/{envelope.header.message_id}"
