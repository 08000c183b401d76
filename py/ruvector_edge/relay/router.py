"""The relay's routing logic, without sockets (driven by relay/server.py and by tests).

Per swarm it knows which agent is on which connection, who subscribed to
which topic, and the registrations it has checked. It forwards envelopes by
header (swarm, topic, sender) byte for byte and never sees a payload key.
Every limit is enforced here: frame size, per-connection token bucket,
subscriptions, members; a peer whose outbound queue is full is dropped rather
than allowed to stall everyone else.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol

from ..errors import AdmissionRefused, InvalidRelayLimits, KeyConflict, MalformedMessage, NoAdminOnline, RejectedInput
from ..p2p.certificates import is_admitted
from ..p2p.registry import MemberRegistry
from ..platform.base import Clock, CryptoProvider
from ..transport import relay_wire as rw
from .gatekeeper import Gatekeeper
from .metrics import RelayMetrics

if TYPE_CHECKING:
    from .federation.backplane import Backplane

log = logging.getLogger(__name__)


class Peer(Protocol):
    """One client connection as the router sees it."""

    conn_id: int

    def send(self, text: str) -> bool:
        """Queue a frame; False when the peer's outbound queue is full."""

    def close(self, code: int, reason: str) -> None:
        """Close the connection (idempotent)."""


@dataclass(frozen=True)
class RelayLimits:
    """Every bound the relay enforces. The handshake ones follow NATS (auth timeout) and PostgreSQL
    (authentication_timeout): a connection that has not proved who it is gets a few seconds and a small share."""

    max_frame_bytes: int = 2 * 1024 * 1024
    rate_per_s: float = 200.0
    burst: float = 400.0
    max_topics_per_peer: int = 256
    max_members_per_swarm: int = 10_000  # present at once
    max_departed_per_swarm: int = 10_000  # departed agents' id -> key bindings held beyond those (MemberRegistry.depart)
    max_swarms: int = 10_000
    queue_length: int = 1024
    hello_timeout_s: float = 5.0
    max_pending: int = 1024  # connections on /ws that have not answered the challenge, all addresses
    max_pending_per_address: int = 64
    max_connections_per_address: int = 256  # /ws and /gun together
    # Before any HTTP: a TCP connection must send a complete request head within this many seconds (bytes
    # trickling in do not extend it), and may then sit idle between requests for keepalive_timeout_s.
    request_head_timeout_s: float = 10.0
    keepalive_timeout_s: float = 30.0
    max_tcp_per_address: int = 512  # open TCP connections of one source address, whatever they carry
    max_tcp_connections: int = 8192  # all addresses; the relay lowers it to what its descriptor limit allows

    def __post_init__(self) -> None:
        for name in ("request_head_timeout_s", "keepalive_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InvalidRelayLimits(f"{name} must be a positive number of seconds, not {value!r}")
        for name in ("max_tcp_per_address", "max_tcp_connections"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRelayLimits(f"{name} must be a whole number of at least 1, not {value!r}")


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _PeerState:
    peer: Peer
    bucket: TokenBucket
    challenge: str
    swarm: str | None = None
    agent_id: str | None = None
    topics: set[str] = field(default_factory=set)
    pings: dict[int, float] = field(default_factory=dict)


@dataclass
class _SwarmState:
    """Only agents present are kept here; the registry keeps departed agents' key bindings for a while."""

    registry: MemberRegistry
    agents: dict[str, int] = field(default_factory=dict)  # agent id -> conn id
    registration_json: dict[str, str] = field(default_factory=dict)  # canonical text, made once per join
    subscribers: dict[str, set[int]] = field(default_factory=dict)  # topic -> conn ids


class RelayRouter:
    def __init__(
        self,
        crypto: CryptoProvider,
        limits: RelayLimits | None = None,
        *,
        metrics: RelayMetrics | None = None,
        clock: Clock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        random_hex: Callable[[], str] | None = None,
    ) -> None:
        self.crypto = crypto
        self.limits = limits or RelayLimits()
        self.metrics = metrics or RelayMetrics()
        self.clock = clock or Clock()
        self.monotonic = monotonic
        self.random_hex = random_hex or (lambda: os.urandom(16).hex())
        self._peers: dict[int, _PeerState] = {}
        self._swarms: dict[str, _SwarmState] = {}
        self._hello_deadlines: dict[int, float] = {}  # conn id -> deadline, in opening order (so also deadline order)
        self._next_ping = 0
        self.gatekeeper = Gatekeeper(crypto, self.clock, self.limits.max_members_per_swarm)
        # Set by attach_federation: envelopes then go through the NATS backplane, which delivers
        # them back with a stream sequence (local subscribers included, so every frame has one).
        self.federation: Backplane | None = None

    def attach_federation(self, backplane: Backplane) -> None:
        self.federation = backplane

    # Connections ---------------------------------------------------------------
    def open(self, peer: Peer) -> None:
        state = _PeerState(peer, TokenBucket(self.limits.rate_per_s, self.limits.burst, self.monotonic()), self.random_hex())
        self._peers[peer.conn_id] = state
        self._hello_deadlines[peer.conn_id] = self.monotonic() + self.limits.hello_timeout_s
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        self._send(state, rw.encode("challenge", challenge=state.challenge))

    def closed(self, peer: Peer) -> None:
        state = self._peers.pop(peer.conn_id, None)
        if state is None:
            return
        self._hello_deadlines.pop(peer.conn_id, None)
        self.metrics.connections -= 1
        self.gatekeeper.closed(peer.conn_id, state.swarm)
        self._unbind(state, departing=True)
        if self.federation is not None:
            self.federation.closed(peer.conn_id)

    def peer_count(self) -> int:
        return len(self._peers)

    def joined(self, conn_id: int) -> bool:
        """Whether this connection has completed its hello (it is then an agent, no longer a stranger)."""
        state = self._peers.get(conn_id)
        return state is not None and state.agent_id is not None

    def expire_handshakes(self) -> None:
        """Close the connections whose hello deadline has passed: without this a client that never answers
        the challenge holds its socket forever. Deadlines are kept in opening order, so this only looks at
        the ones that expire."""
        now = self.monotonic()
        while self._hello_deadlines:
            conn_id, deadline = next(iter(self._hello_deadlines.items()))
            if deadline > now:
                return
            del self._hello_deadlines[conn_id]
            self.metrics.handshake_timeouts += 1
            self._peers[conn_id].peer.close(rw.CLOSE_POLICY, f"no hello within {self.limits.hello_timeout_s:g} s")

    def _unbind(self, state: _PeerState, departing: bool) -> None:
        """Take a connection out of routing; `departing` (not replaced by a newer connection of the same agent):
        also tell the swarm and forget the agent's registration."""
        if state.swarm is None:
            return
        swarm = self._swarms.get(state.swarm)
        if swarm is None:
            return
        for topic in state.topics:
            subs = swarm.subscribers.get(topic)
            if subs is not None:
                subs.discard(state.peer.conn_id)
                if not subs:
                    self._topic_unused(state.swarm, swarm, topic)
        state.topics.clear()
        if state.agent_id is not None and swarm.agents.get(state.agent_id) == state.peer.conn_id:
            del swarm.agents[state.agent_id]
            if departing:
                del swarm.registration_json[state.agent_id]
                swarm.registry.depart(state.agent_id)
                if self.federation is not None:
                    self.federation.departed(state.swarm, state.agent_id)
                self._to_swarm(swarm, rw.encode("left", agent_id=state.agent_id), exclude=state.peer.conn_id)
                if not swarm.agents and not swarm.registry.bindings():
                    del self._swarms[state.swarm]

    # Frames --------------------------------------------------------------------
    async def receive(self, peer: Peer, data: str | bytes) -> None:
        state = self._peers.get(peer.conn_id)
        if state is None:
            return
        self.metrics.frames_in += 1
        self.metrics.bytes_in += len(data)
        if not state.bucket.take(self.monotonic()):
            self.metrics.drop("rate_limited")
            return
        try:
            frame = rw.decode(data, self.limits.max_frame_bytes)
        except RejectedInput as exc:
            self.metrics.drop("malformed")
            log.debug("conn %d sent a malformed frame: %s", peer.conn_id, exc)
            peer.close(rw.CLOSE_INVALID_DATA, "malformed frame")
            return
        try:
            if isinstance(frame, rw.RoutedEnvelope):
                self._route(state, frame)
            else:
                await self._control(state, frame)
        except KeyConflict as exc:
            self.metrics.drop("key_conflict")
            peer.close(rw.CLOSE_POLICY, str(exc)[:120])
        except AdmissionRefused as exc:
            self.metrics.drop(f"admission_{type(exc).__name__}")
            log.debug("conn %d refused admission: %s", peer.conn_id, exc)
            peer.close(rw.CLOSE_REFUSED, f"{type(exc).__name__}: {exc}"[:120])
        except RejectedInput as exc:
            self.metrics.drop("policy")
            log.debug("conn %d violated the protocol: %s", peer.conn_id, exc)
            peer.close(rw.CLOSE_POLICY, str(exc)[:120])

    async def _control(self, state: _PeerState, control: rw.Control) -> None:
        op = control.op
        if op == "hello":
            await self._hello(state, control)
        elif op == "ping":
            self._send(state, rw.encode("pong", id=rw.ping_id(control)))
        elif op == "pong":
            sent = state.pings.pop(rw.ping_id(control), None)
            if sent is not None:
                self.metrics.observe_rtt(self.monotonic() - sent)
        elif state.agent_id is None:
            raise MalformedMessage(f"{op!r} before hello")
        elif op == "sub":
            self._subscribe(state, rw.topics_of(control))
            if self.federation is not None:
                self.federation.subscribed(state.peer.conn_id)
        elif op == "unsub":
            self._unsubscribe(state, rw.topics_of(control))
        elif op == "leave":
            self._unbind(state, departing=True)
            state.peer.close(rw.CLOSE_NORMAL, "left")
        elif op in rw.ADMIN_OPS:
            await self._admin_op(state, control)
        else:
            raise MalformedMessage(f"{op!r} is not a client operation")

    async def _hello(self, state: _PeerState, control: rw.Control) -> None:
        if state.agent_id is not None:
            raise MalformedMessage("second hello on one connection")
        registration = rw.registration_of(control)
        proof = rw.proof_of(control)
        swarm = self._swarms.get(registration.swarm)
        if swarm is None:
            if len(self._swarms) >= self.limits.max_swarms:
                self._forget_idle_swarms()
            if len(self._swarms) >= self.limits.max_swarms:
                raise MalformedMessage("relay is at its swarm limit")
            swarm = _SwarmState(MemberRegistry(registration.swarm, self.crypto, self.clock,
                                               max_members=self.limits.max_members_per_swarm,
                                               max_departed=self.limits.max_departed_per_swarm))
        signed = rw.auth_bytes(registration.swarm, registration.agent_id, state.challenge)
        if not await self.crypto.verify(registration.ed25519_pubkey, signed, proof):
            raise MalformedMessage("hello proof does not verify: not the holder of this registration's key")
        certificate = None
        if is_admitted(registration.swarm):
            certificate = await self.gatekeeper.check_hello(state.peer.conn_id, registration, control.body)
            if certificate is None:
                self._ask_admin(state, registration.swarm, control)
                return
        await swarm.registry.register(registration)  # checks its signature and the id -> key binding
        self._swarms.setdefault(registration.swarm, swarm)
        previous = swarm.agents.get(registration.agent_id)
        if previous is not None and previous != state.peer.conn_id:
            old = self._peers.get(previous)
            if old is not None:
                self._unbind(old, departing=False)
                old.peer.close(rw.CLOSE_NORMAL, "replaced by a newer connection")
        state.swarm, state.agent_id = registration.swarm, registration.agent_id
        self._hello_deadlines.pop(state.peer.conn_id, None)
        swarm.agents[registration.agent_id] = state.peer.conn_id
        # The registry keeps the newest registration of an agent; serialise it once, not once per joiner.
        own = swarm.registry.require(registration.agent_id).registration.to_json().decode("utf-8")
        swarm.registration_json[registration.agent_id] = own
        members = [swarm.registration_json[agent] for agent in swarm.agents if agent != registration.agent_id]
        if self.federation is not None:
            self.federation.joined(registration.swarm, registration.agent_id, own)
            members += self.federation.remote_members(registration.swarm)
            resume = rw.resume_of(control)
            if resume is not None:
                self.federation.resume(state.peer.conn_id, registration.swarm, resume)
        if certificate is not None:  # certificates before the registrations they admit
            for text in self.gatekeeper.joined(state.peer.conn_id, certificate):
                self._send(state, text)
            self._to_swarm(swarm, self.gatekeeper.certificate_frame(registration.swarm, registration.agent_id),
                           exclude=state.peer.conn_id)
        self._send(state, rw.welcome(registration.agent_id, registration.swarm, members))
        self._to_swarm(swarm, rw.member(own), exclude=state.peer.conn_id)

    def _ask_admin(self, state: _PeerState, swarm_id: str, control: rw.Control) -> None:
        """Pass an invite to an admin online in the swarm; the candidate waits under its hello deadline."""
        gate = self.gatekeeper.swarms.get(swarm_id)
        admin = next((self._peers[c] for c in sorted(gate.admins) if c in self._peers), None) if gate else None
        if admin is None:
            self.gatekeeper.closed(state.peer.conn_id, None)
            raise NoAdminOnline(f"no admin of {swarm_id} is online to trade the invite")
        self._send(admin, rw.encode("admit-request", conn=state.peer.conn_id,
                                    registration=control.body["registration"], invite=control.body["invite"]))

    async def _admin_op(self, state: _PeerState, control: rw.Control) -> None:
        """What only the swarm's admin may send: answers to candidates, revocations, epoch keys."""
        gate = self.gatekeeper.admin_of(state.peer.conn_id, state.swarm)
        swarm = self._swarms[state.swarm]  # type: ignore[index]
        if control.op == "admit":
            conn_id, texts = await self.gatekeeper.admit(gate, control.body)
            candidate = self._peers.get(conn_id)
            if candidate is not None:  # admitted: a fresh challenge for the hello with its certificate
                candidate.challenge = self.random_hex()
                for text in (*texts, rw.encode("challenge", challenge=candidate.challenge)):
                    self._send(candidate, text)
        elif control.op == "refuse":
            conn_id, reason = self.gatekeeper.refuse(control.body)
            self.metrics.drop("admission_refused_by_admin")
            candidate = self._peers.get(conn_id)
            if candidate is not None:
                candidate.peer.close(rw.CLOSE_REFUSED, reason)
        elif control.op == "revoke":
            revocation = await self.gatekeeper.revoke(gate, control.body)
            victim = self._peers.get(swarm.agents.get(revocation.agent_id, -1))
            if victim is not None:
                self.metrics.drop("admission_revoked_connection")
                self._unbind(victim, departing=True)
                victim.peer.close(rw.CLOSE_REFUSED, "RevokedMember: membership revoked by the admin")
            self._to_swarm(swarm, rw.encode("revoked", revocations=[revocation.to_dict()]), exclude=state.peer.conn_id)
        else:
            for agent_id, text in self.gatekeeper.rekey(gate, control.body).items():
                peer = self._peers.get(swarm.agents.get(agent_id, -1))
                if peer is not None:
                    self._send(peer, text)

    def _forget_idle_swarms(self) -> None:
        """Drop the swarms nobody is in whose departed agents' bindings have all aged out (only at the swarm
        limit: a swarm left empty keeps those bindings until then, see MemberRegistry.depart)."""
        for swarm_id, swarm in tuple(self._swarms.items()):
            if not swarm.agents and not swarm.registry.bindings():
                del self._swarms[swarm_id]

    def _subscribe(self, state: _PeerState, topics: list[str]) -> None:
        swarm = self._swarms[state.swarm]  # type: ignore[index]
        new = [t for t in topics if t not in state.topics]
        if len(state.topics) + len(new) > self.limits.max_topics_per_peer:
            raise MalformedMessage(f"more than {self.limits.max_topics_per_peer} subscriptions")
        for topic in new:
            state.topics.add(topic)
            swarm.subscribers.setdefault(topic, set()).add(state.peer.conn_id)
            if self.federation is not None:
                self.federation.topic_used(state.swarm, topic)  # type: ignore[arg-type]

    def _unsubscribe(self, state: _PeerState, topics: list[str]) -> None:
        swarm = self._swarms[state.swarm]  # type: ignore[index]
        for topic in topics:
            if topic in state.topics:
                state.topics.discard(topic)
                subs = swarm.subscribers.get(topic)
                if subs is not None:
                    subs.discard(state.peer.conn_id)
                    if not subs:
                        self._topic_unused(state.swarm, swarm, topic)  # type: ignore[arg-type]

    def _route(self, state: _PeerState, envelope: rw.RoutedEnvelope) -> None:
        header = envelope.header
        if state.agent_id is None:
            raise MalformedMessage("envelope before hello")
        if header.swarm != state.swarm:
            raise MalformedMessage("envelope for a swarm this connection did not join")
        if header.sender_id != state.agent_id:
            raise MalformedMessage("envelope sender is not the agent of this connection")
        if envelope.seq is not None:
            raise MalformedMessage("deliver frames go from relays to agents")
        if self.federation is not None:
            if not self.federation.publish(envelope):
                self.metrics.drop("undeliverable")
                self._send(state, rw.encode("undeliverable", message_id=header.message_id, to=header.topic[1:]))
            return
        swarm = self._swarms[header.swarm]
        if rw.is_direct(header.topic):
            target = swarm.agents.get(header.topic[1:])
            peer = self._peers.get(target) if target is not None else None
            if peer is None:
                self.metrics.drop("undeliverable")
                self._send(state, rw.encode("undeliverable", message_id=header.message_id, to=header.topic[1:]))
                return
            self._send(peer, envelope.raw)
            return
        for conn_id in tuple(swarm.subscribers.get(header.topic, ())):
            if conn_id != state.peer.conn_id:
                peer = self._peers.get(conn_id)
                if peer is not None:
                    self._send(peer, envelope.raw)

    def _topic_unused(self, swarm_id: str, swarm: _SwarmState, topic: str) -> None:
        del swarm.subscribers[topic]
        if self.federation is not None:
            self.federation.topic_unused(swarm_id, topic)

    # From the federation backplane (FederationSink) -------------------------------------------
    def bus_frame(self, swarm_id: str, envelope: rw.RoutedEnvelope, seq: int) -> None:
        swarm = self._swarms.get(swarm_id)
        if swarm is None:
            return
        header = envelope.header
        if rw.is_direct(header.topic):
            target = swarm.agents.get(header.topic[1:])
            targets: tuple[int, ...] = () if target is None else (target,)
        else:
            targets = tuple(swarm.subscribers.get(header.topic, ()))
        text = rw.delivered(envelope.raw, seq) if seq else envelope.raw  # 0: no position yet, a bare envelope
        for conn_id in targets:
            state = self._peers.get(conn_id)
            if state is None or state.agent_id == header.sender_id:
                continue
            if not self.federation.hold(conn_id, seq, text):  # type: ignore[union-attr]
                self._send(state, text)

    def bus_replay(self, conn_id: int, envelope: rw.RoutedEnvelope, seq: int) -> None:
        self.send_held(conn_id, [rw.delivered(envelope.raw, seq)])

    def send_held(self, conn_id: int, texts: list[str]) -> None:
        state = self._peers.get(conn_id)
        for text in texts:
            if state is None or state.agent_id is None:
                return
            self._send(state, text)

    def conn_view(self, conn_id: int) -> tuple[str, frozenset[str]] | None:
        state = self._peers.get(conn_id)
        if state is None or state.agent_id is None:
            return None
        return state.agent_id, frozenset(state.topics)

    def remote_joined(self, swarm_id: str, agent_id: str, registration_json: str) -> None:
        swarm = self._swarms.get(swarm_id)
        if swarm is not None and agent_id not in swarm.agents:
            self._to_swarm(swarm, rw.member(registration_json), exclude=-1)

    def remote_left(self, swarm_id: str, agent_id: str) -> None:
        swarm = self._swarms.get(swarm_id)
        if swarm is not None and agent_id not in swarm.agents:
            self._to_swarm(swarm, rw.encode("left", agent_id=agent_id), exclude=-1)

    def _to_swarm(self, swarm: _SwarmState, text: str, exclude: int) -> None:
        for conn_id in tuple(swarm.agents.values()):
            if conn_id != exclude:
                peer = self._peers.get(conn_id)
                if peer is not None:
                    self._send(peer, text)

    def _send(self, state: _PeerState, text: str) -> None:
        if state.peer.send(text):
            self.metrics.frames_out += 1
            self.metrics.bytes_out += len(text)
        else:
            self.metrics.drop("slow_consumer")
            self._unbind(state, departing=True)
            state.peer.close(rw.CLOSE_TRY_LATER, "outbound queue full")

    # Liveness ------------------------------------------------------------------
    def ping_slice(self, slice_index: int, slices: int) -> None:
        """Ping the peers whose connection id falls in this slice; pongs feed the round-trip histogram.

        Called for each slice in turn across the ping interval, so 1000 agents get 20 pings every
        100 ms instead of 1000 at once (which stalled the loop and showed up as p99 latency).
        """
        now = self.monotonic()
        for state in tuple(self._peers.values()):
            if state.peer.conn_id % slices != slice_index:
                continue
            self._next_ping += 1
            if len(state.pings) > 8:  # a peer that never answers must not grow this without bound
                state.pings.clear()
            state.pings[self._next_ping] = now
            self._send(state, rw.ping(self._next_ping))

    def ping_all(self) -> None:
        self.ping_slice(0, 1)
