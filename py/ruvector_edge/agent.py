"""SwarmAgent: a member that joins a swarm over a transport and speaks the swarm protocol.

It owns a `P2PSwarm` (identity, registry, envelopes) and a link to a relay;
every incoming frame goes through the P2PSwarm receive path before a handler
sees it, and each protocol kind has exactly one handler here. Application
messages are also delivered to subscribers registered with `on()`; those no
handler consumes (signals, task messages without an envelope or receipt) wait
in a bounded inbox when nobody subscribes. Tasks and artifact exchange are in
tasks/swarm.py and artifacts/exchange.py; this class only routes to them.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Awaitable, Callable, Protocol

from .errors import MalformedMessage, Misaddressed, RejectedInput, ReplayDetected
from .artifacts import ArtifactStore
from .artifacts.exchange import ArtifactExchange
from .intelligence import IntelligenceSync
from .memory import VectorMemory
from .p2p import P2PSwarm, Registration, wire
from .p2p.wire import b64
from .platform import default_embedder, default_vector_kernel, open_artifact_backend, open_memory_store
from .p2p.records import Heartbeat
from .p2p.registry import MemberStatus
from .protocol import MessageKind, SwarmMessage
from .protocol import decode as decode_message
from .protocol import encode as encode_message
from .tasks import Budgets, Claim, Coordinator, MismatchReport, TaskReceipt
from .tasks.swarm import SwarmTasks
from .transport import relay_wire as rw

log = logging.getLogger(__name__)

SWARM_TOPIC = "swarm"
MAX_VERSION_VECTOR = 100_000  # origins in one REQUEST_PATTERNS
PATTERN_CHUNK_BYTES = 96 * 1024  # one SYNC_PATTERNS state: ~170 KB once base64'd twice, under WebRTC's 256 KiB message cap
REKEY_FRAME_DELIVERIES = 1000  # epoch keys per rekey frame (~550 KB, under the relay's 2 MiB frame cap)
MEMORY_PAGE = 32  # memories per SYNC_MEMORIES message: 32 × (16 KiB content + 2 KiB vector) fits a 1 MiB payload


class AgentRole(str, enum.Enum):
    COORDINATOR = "coordinator"
    WORKER = "worker"
    SCOUT = "scout"
    SPECIALIST = "specialist"


class Transport(str, enum.Enum):
    WEBSOCKET = "websocket"
    SHARED_MEMORY = "shared-memory"
    WASM = "wasm"  # browser bridges: WebSocket, BroadcastChannel, WebRTC


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer number of milliseconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


@dataclass(frozen=True)
class SwarmConfig:
    agent_id: str = field(default_factory=lambda: f"agent-{os.urandom(3).hex()}")
    role: AgentRole = AgentRole.WORKER
    transport: Transport = Transport.WEBSOCKET
    capabilities: tuple[str, ...] = ()
    swarm_key: bytes | None = None
    invite: str | None = None  # admitted swarm: the invite token to trade for a certificate (no key needed)
    found_admitted: bool = False  # with no key and no invite: found an admitted swarm (we are its admin)
    rekey_interval_ms: int = 0  # admin of an admitted swarm: start a new key epoch this often (0: only on removal)
    coordinator_url: str | None = field(default_factory=lambda: os.environ.get("SWARM_COORDINATOR") or None)
    sync_interval_ms: int = field(default_factory=lambda: _env_int("SWARM_SYNC_INTERVAL", 1000))
    heartbeat_interval_ms: int = 5000
    inbox_limit: int = 1024
    memory_dim: int = 384
    memory_capacity: int = 10_000
    memory_path: str | None = None  # SQLite file for memories that survive restarts (native)
    memory_persist: bool = True  # browser: keep memories in IndexedDB under the agent id
    artifact_dir: str | None = None  # native: artifact blocks on disk (one file per block)
    artifact_persist: bool = True  # browser: keep artifact blocks in IndexedDB under the agent id
    task_lease_ms: int = 10_000  # a claim's lease; the executor renews it at half-life while running
    task_settle_ms: int = 150  # how long a claimant waits for earlier claims in flight before running
    task_poll_ms: int = 200  # coordinator assignment / lease takeover tick
    task_max_running: int = 4  # leases an uncoordinated executor holds at once (runs are still one at a time)
    task_reannounce_ms: int = 2_000  # a requester repeats its unsettled envelopes this often (lost frames)

    def with_agent_id(self, agent_id: str) -> "SwarmConfig":
        return replace(self, agent_id=agent_id)

    def with_role(self, role: AgentRole) -> "SwarmConfig":
        return replace(self, role=role)

    def with_transport(self, transport: Transport) -> "SwarmConfig":
        return replace(self, transport=transport)

    def with_swarm_key(self, key: bytes) -> "SwarmConfig":
        return replace(self, swarm_key=key)

    def with_capabilities(self, *capabilities: str) -> "SwarmConfig":
        return replace(self, capabilities=tuple(capabilities))

    def effective_capabilities(self) -> tuple[str, ...]:
        """Explicit capabilities, else the role's; workers and specialists run WebAssembly tasks by default."""
        if self.capabilities:
            return self.capabilities
        if self.role in (AgentRole.WORKER, AgentRole.SPECIALIST):
            return (self.role.value, "wasm")
        return (self.role.value,)


@dataclass
class PeerInfo:
    agent_id: str
    role: str = "unknown"
    capabilities: tuple[str, ...] = ()
    transport: str = "relay"
    joined: bool = False
    left: bool = False


Handler = Callable[[str, SwarmMessage], Awaitable[None]]

# Paths to a peer, most direct first. A direct frame takes the first path that reaches its
# recipient; a broadcast goes out on every path (receivers drop the copies as duplicates).
PATH_PREFERENCE = ("webrtc", "broadcast-channel", "relay")


class Link(Protocol):
    """What the agent needs from a transport: send a frame, say whether a peer is reachable on it."""

    async def send(self, frame: bytes | str) -> None: ...

    def reaches(self, peer_id: str) -> bool: ...

    async def stop(self) -> None: ...


class SwarmAgent:
    def __init__(self, config: SwarmConfig, swarm: P2PSwarm, memory_store: Any = None, artifact_backend: Any = None) -> None:
        """`memory_store` / `artifact_backend` override where memories and artifact blocks persist
        (SwarmAgent.new opens the runtime's own)."""
        self.config = config
        self.swarm = swarm
        self.peers: dict[str, PeerInfo] = {}
        self.rejected: collections.Counter[str] = collections.Counter()
        self.ignored: collections.Counter[str] = collections.Counter()
        self.bounded: collections.Counter[str] = collections.Counter()  # what members sent past their share, dropped
        self.inbox: collections.deque[tuple[str, SwarmMessage]] = collections.deque(maxlen=config.inbox_limit)
        self._subscribers: dict[MessageKind, list[Handler]] = collections.defaultdict(list)
        self._pongs: dict[str, asyncio.Future] = {}
        self.links: dict[str, Link] = {}
        self._tasks: list[asyncio.Task] = []
        self._handlers: dict[MessageKind, Callable[[str, SwarmMessage], Awaitable[None]]] = {
            MessageKind.JOIN: self._on_join,
            MessageKind.LEAVE: self._on_leave,
            MessageKind.PING: self._on_ping,
            MessageKind.PONG: self._on_pong,
            MessageKind.HEARTBEAT: self._on_heartbeat,
            MessageKind.SYNC_PATTERNS: self._on_sync_patterns,
            MessageKind.REQUEST_PATTERNS: self._on_request_patterns,
            MessageKind.SYNC_MEMORIES: self._on_sync_memories,
        }
        self.intelligence = IntelligenceSync(config.agent_id, clock=swarm.runtime.clock)
        self._own_version_sent = 0
        self._relay_was_connected = False
        self.embedder = default_embedder(config.memory_dim)
        store = memory_store
        if store is None and config.memory_path:
            from .memory import SqliteMemoryStore

            store = SqliteMemoryStore(config.memory_path)
        # A memory that persists keeps its search graph too (the browser's in IndexedDB under the agent id).
        kernel = default_vector_kernel(config.memory_dim, persist_as=config.agent_id if store is not None else "")
        self.memory = VectorMemory(
            config.agent_id, config.memory_dim, config.memory_capacity, kernel=kernel, store=store, embedder=self.embedder
        )
        self._memory_seq_sent = 0
        if artifact_backend is None and config.artifact_dir:
            from .artifacts import DiskBlockStore

            artifact_backend = DiskBlockStore(config.artifact_dir)
        self.artifacts = ArtifactStore(artifact_backend)
        self.exchange = ArtifactExchange(self.artifacts, self.send_to, self._live_peers)
        self.swarm_tasks = SwarmTasks(
            self, lease_ms=config.task_lease_ms, settle_ms=config.task_settle_ms, poll_ms=config.task_poll_ms,
            # A receipt settles a task everywhere, whatever its status: the coordinator retries lost
            # assignments (lease ran out, member gone), not results; a requester may resubmit a Timeout.
            coordinator=Coordinator(retry_statuses=frozenset()) if config.role is AgentRole.COORDINATOR else None,
            max_running=config.task_max_running, reannounce_ms=config.task_reannounce_ms,
        )
        self._handlers.update({
            MessageKind.REQUEST_BLOCK: self.exchange.on_request,
            MessageKind.BLOCK: self.exchange.on_block,
            MessageKind.BROADCAST_TASK: self.swarm_tasks.on_broadcast_task,
            MessageKind.TASK_CLAIM: self.swarm_tasks.on_claim,
            MessageKind.TASK_ASSIGN: self.swarm_tasks.on_assign,
            MessageKind.TASK_RESULT: self.swarm_tasks.on_result,
            MessageKind.SPOT_CHECK: self.swarm_tasks.on_spot_check,
            MessageKind.SPOT_RESULT: self.swarm_tasks.on_spot_result,
        })
        swarm.on_revoked.append(self._on_revoked)

    @classmethod
    async def new(cls, config: SwarmConfig | None = None, swarm: P2PSwarm | None = None,
                  **swarm_options: Any) -> "SwarmAgent":
        """`swarm`: a swarm state the caller built (a page resuming its admitted membership)."""
        config = config or SwarmConfig()
        capabilities = config.effective_capabilities()
        if swarm is None and config.invite is not None:
            swarm = await P2PSwarm.join_admitted(config.agent_id, config.invite, capabilities, **swarm_options)
        elif swarm is None and config.found_admitted and config.swarm_key is None:
            swarm = await P2PSwarm.found_admitted(config.agent_id, capabilities, **swarm_options)
        elif swarm is None:
            swarm = await P2PSwarm.create(config.agent_id, config.swarm_key, capabilities, **swarm_options)
        store = await open_memory_store(config.agent_id, config.memory_path, persist=config.memory_persist)
        blocks = await open_artifact_backend(config.agent_id, config.artifact_dir, persist=config.artifact_persist)
        return cls(config, swarm, memory_store=store, artifact_backend=blocks)

    @property
    def agent_id(self) -> str:
        return self.config.agent_id

    # Joining and leaving -------------------------------------------------------------
    async def join_swarm(self, url: str | None = None, timeout: float = 10.0) -> None:
        """Connect to a relay, announce ourselves and start heartbeats.

        `ws://host:port[/ws]` reaches a relay over WebSocket; `shm://hub` reaches a relay's
        shared-memory hub on this machine (edge-relay --shm-hub NAME)."""
        target = url or self.config.coordinator_url
        if not target:
            raise ValueError("no relay URL: pass one or set SWARM_COORDINATOR")
        handlers = dict(on_envelope=self.handle_frame, on_member=self.add_member, on_left=self.on_relay_left,
                        topics=[SWARM_TOPIC])
        if target.startswith("shm://"):
            from .transport.shm_link import ShmRelayLink

            link: Any = ShmRelayLink(target[len("shm://"):], self.swarm, **handlers)
        elif target.startswith(("ws://", "wss://")):
            from .transport.websocket import RelayClient

            if not target.rstrip("/").endswith("/ws"):
                target = target.rstrip("/") + "/ws"
            link = RelayClient(target, self.swarm, **handlers)
        else:
            raise ValueError(f"unsupported relay URL {target!r}: use ws://host:port or shm://hub")
        self.links["relay"] = link
        await link.start()
        await link.wait_connected(timeout)
        await self.announce()

    async def announce(self) -> None:
        """Once links are attached: say JOIN, start heartbeats and syncing, and ask for missed patterns.

        `join_swarm` calls it; a runtime that attaches its own links (the browser's) calls it too."""
        await self._pass_on_revocations()
        await self.broadcast(MessageKind.JOIN, role=self.config.role.value,
                             capabilities=list(self.config.effective_capabilities()))
        self._tasks.append(asyncio.create_task(self._heartbeat_loop()))
        self._tasks.append(asyncio.create_task(self._sync_loop()))
        self._tasks.append(asyncio.create_task(self.swarm_tasks.run_loop()))
        if self.config.rekey_interval_ms > 0 and self._authority() is not None:
            self._tasks.append(asyncio.create_task(self._rekey_loop()))
        # Catch up: every member answers with what our (empty or stale) version vector lacks.
        await self.broadcast(MessageKind.REQUEST_PATTERNS, vv=self.intelligence.version_vector())

    async def on_relay_left(self, agent_id: str) -> None:
        """The relay reports `agent_id` disconnected: its registration is forgotten, its key binding held for a
        while (P2PSwarm.member_departed), and it shows as gone until it is announced again (the relay's member,
        its JOIN). A frame it signs meanwhile on another path is still taken (P2PSwarm._sender)."""
        info = self.peers.get(agent_id)
        if info is not None:
            info.left = True
        self.swarm.member_departed(agent_id)
        self.swarm_tasks.member_gone(agent_id)

    # Admission (admitted swarms; the records and rules are in p2p/admission.py) --------------
    def _authority(self) -> Any:
        admission = self.swarm.admission
        return admission.authority if admission is not None else None

    def _require_authority(self) -> Any:
        authority = self._authority()
        if authority is None:
            raise PermissionError("only the admin of an admitted swarm can do that")
        return authority

    async def create_invite(self, roles: tuple[str, ...] = ("worker", "scout", "specialist", "wasm"), *,
                            max_uses: int = 1, ttl_ms: int = 3600 * 1000) -> str:
        """An invite token (for a link's `#invite=`) good for `max_uses` joins until `ttl_ms` from now."""
        invite = await self._require_authority().create_invite(roles, max_uses=max_uses, ttl_ms=ttl_ms)
        return invite.to_token()

    async def remove_member(self, agent_id: str) -> None:
        """Revoke a member: every member and relay refuses it from now on, and a new key epoch starts."""
        revocation, deliveries = await self._require_authority().revoke(agent_id)
        self.swarm.registry.remove(agent_id)  # our book already holds the revocation, so accept_revocation would not
        relay = self.links.get("relay")
        if relay is not None:
            await relay.send(rw.encode("revoke", revocation=revocation.to_dict()))
        await self._send_epoch(deliveries)
        await self._on_revoked(agent_id)

    async def _pass_on_revocations(self) -> None:
        """An admin joining a relay hands it every revocation it holds: a relay that restarted (an
        edge-coordinator's own, restarted with it) would otherwise accept a removed member's unexpired certificate."""
        relay = self.links.get("relay")
        if relay is None or self._authority() is None:
            return
        for revocation in list(self.swarm.admission.book.revocations.values()):
            await relay.send(rw.encode("revoke", revocation=revocation.to_dict()))

    async def rekey(self) -> int:
        """Start a new key epoch now; the number of members the key was sealed to."""
        deliveries = await self._require_authority().rekey()
        await self._send_epoch(deliveries)
        return len(deliveries)

    async def _send_epoch(self, deliveries: list[Any]) -> None:
        relay = self.links.get("relay")
        if relay is None:
            return
        for start in range(0, len(deliveries), REKEY_FRAME_DELIVERIES):
            chunk = deliveries[start:start + REKEY_FRAME_DELIVERIES]
            await relay.send(rw.encode("rekey", deliveries=[d.to_dict() for d in chunk]))

    async def _rekey_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.rekey_interval_ms / 1000)
            try:
                await self.rekey()
            except Exception as exc:  # a failed rekey is retried at the next interval
                log.warning("%s: rekey failed: %s", self.agent_id, exc)

    async def _on_revoked(self, agent_id: str) -> None:
        info = self.peers.get(agent_id)
        if info is not None:
            info.left = True
        self.swarm_tasks.member_gone(agent_id)

    @property
    def refusal(self) -> str | None:
        """Why the relay refused or dropped us for good (admitted swarm: invite refused, membership revoked)."""
        return getattr(self.links.get("relay"), "refusal", None)

    def member_list(self) -> list[dict[str, Any]]:
        """Admitted swarm: every certified member with its roles and expiry (the admin's Remove list)."""
        admission = self.swarm.admission
        if admission is None:
            return []
        return sorted(({"agent_id": c.agent_id, "roles": list(c.roles), "expires_at": c.expires_at, "admin": c.is_admin}
                       for c in admission.book.certificates()), key=lambda row: row["agent_id"])

    async def leave(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.swarm_tasks.close()
        if self.links:
            try:
                await self.broadcast(MessageKind.LEAVE, reason="shutdown")
            except Exception as exc:  # leaving must not fail because the link already died
                log.debug("LEAVE not sent: %s", exc)
            for link in self.links.values():
                await link.stop()
            self.links.clear()
        self.memory.close()
        flush = getattr(self.artifacts.backend, "flush", None)  # write-behind block stores (IndexedDB)
        if flush is not None:
            try:
                await flush()
            except OSError as exc:
                log.warning("%s: artifact blocks not all written: %s", self.agent_id, exc)

    def attach_link(self, name: str, link: Link) -> None:
        """Add a path (e.g. the browser's BroadcastChannel or WebRTC links); see PATH_PREFERENCE."""
        if name not in PATH_PREFERENCE:
            raise ValueError(f"unknown path {name!r}; expected one of {PATH_PREFERENCE}")
        self.links[name] = link

    def path_to(self, peer_id: str) -> str | None:
        """The most direct attached path that reaches `peer_id` now."""
        for name in PATH_PREFERENCE:
            link = self.links.get(name)
            if link is not None and link.reaches(peer_id):
                return name
        return None

    # Sending -----------------------------------------------------------------------
    async def broadcast(self, kind: MessageKind, **body: Any) -> str:
        published = await self.swarm.publish(SWARM_TOPIC, encode_message(kind, **body))
        if not self.links:
            raise RuntimeError("not connected: call join_swarm() first")
        for link in list(self.links.values()):
            await link.send(published.frame)
        return published.message_id

    async def send_to(self, peer_id: str, kind: MessageKind, **body: Any) -> str:
        published = await self.swarm.send_direct(peer_id, encode_message(kind, **body))
        path = self.path_to(peer_id)
        if path is None:
            path = "relay" if "relay" in self.links else None
        if path is None:
            raise RuntimeError(f"no path to {peer_id!r}: call join_swarm() first")
        await self.links[path].send(published.frame)
        return published.message_id

    async def ping(self, peer_id: str, timeout: float = 5.0) -> float:
        """Signed end-to-end round trip to a peer through whatever path the link uses, in seconds."""
        token = os.urandom(8).hex()
        future = asyncio.get_running_loop().create_future()
        self._pongs[token] = future
        start = time.perf_counter()
        try:
            await self.send_to(peer_id, MessageKind.PING, token=token)
            await asyncio.wait_for(future, timeout)
        finally:
            self._pongs.pop(token, None)
        return time.perf_counter() - start

    # Receiving ---------------------------------------------------------------------
    def on(self, kind: MessageKind, handler: Handler) -> None:
        """Deliver messages of `kind` (beyond the agent's own bookkeeping) to `handler(sender, message)`."""
        self._subscribers[kind].append(handler)

    async def add_member(self, registration: Registration | bytes | str) -> None:
        try:
            member = await self.swarm.register_member(registration)
        except RejectedInput as exc:
            self.rejected[type(exc).__name__] += 1
            log.warning("%s: registration refused: %s", self.agent_id, exc)
            return
        if member.agent_id == self.agent_id:
            return
        info = self.peers.setdefault(member.agent_id, PeerInfo(member.agent_id))
        info.capabilities = member.registration.capabilities
        info.left = False
        if self.links:  # introduce ourselves to the newcomer and share what we remember
            await self.send_to(member.agent_id, MessageKind.JOIN, role=self.config.role.value,
                               capabilities=list(self.config.effective_capabilities()))
            await self.sync_memories(to=member.agent_id)

    async def handle_frame(self, frame: bytes | str, via: str = "relay") -> None:
        """Entry point for every frame a transport delivers (`via` names the path it came by)."""
        try:
            received = await self.swarm.receive(frame)
            message = decode_message(received.payload)
        except (ReplayDetected, Misaddressed) as exc:
            # With several paths the same frame can arrive twice, and a shared medium (BroadcastChannel)
            # shows everyone direct frames meant for one: neither is an attack, so neither is a rejection.
            self.ignored[type(exc).__name__] += 1
            return
        except RejectedInput as exc:
            self.rejected[type(exc).__name__] += 1
            log.debug("%s: dropped frame: %s", self.agent_id, exc)
            return
        sender = received.sender_id
        info = self.peers.get(sender)
        if info is not None and via in PATH_PREFERENCE:
            info.transport = self.path_to(sender) or via
        try:
            handler = self._handlers.get(message.kind)
            if handler is not None:
                handled = await handler(sender, message)
            subscribers = self._subscribers.get(message.kind)
            if subscribers:
                for subscriber in subscribers:
                    await subscriber(sender, message)
            elif handler is None or handled is False:  # False: a plain BROADCAST_TASK/TASK_RESULT, not a task
                self.inbox.append((sender, message))
        except RejectedInput as exc:
            self.rejected[type(exc).__name__] += 1
            log.debug("%s: %s from %s refused: %s", self.agent_id, message.kind.value, sender, exc)

    async def _on_join(self, sender: str, message: SwarmMessage) -> None:
        role = message.body.get("role")
        if not isinstance(role, str) or role not in {r.value for r in AgentRole}:
            raise MalformedMessage(f"JOIN with unknown role {role!r:.40}")
        info = self.peers.setdefault(sender, PeerInfo(sender))
        info.role, info.joined, info.left = role, True, False

    async def _on_leave(self, sender: str, message: SwarmMessage) -> None:
        info = self.peers.setdefault(sender, PeerInfo(sender))
        info.left = True
        self.swarm_tasks.member_gone(sender)

    async def _on_ping(self, sender: str, message: SwarmMessage) -> None:
        token = message.body.get("token")
        if not isinstance(token, str) or len(token) > 64:
            raise MalformedMessage("PING needs a short string token")
        await self.send_to(sender, MessageKind.PONG, token=token)

    async def _on_pong(self, sender: str, message: SwarmMessage) -> None:
        future = self._pongs.get(message.body.get("token"))  # type: ignore[arg-type]
        if future is not None and not future.done():
            future.set_result(sender)

    async def _on_heartbeat(self, sender: str, message: SwarmMessage) -> None:
        heartbeat = Heartbeat.from_dict(message.body.get("heartbeat"))  # type: ignore[arg-type]
        if heartbeat.agent_id != sender:
            raise MalformedMessage("heartbeat for another agent")
        await self.swarm.receive_heartbeat(heartbeat)

    async def _heartbeat_loop(self) -> None:
        interval = self.config.heartbeat_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                heartbeat = await self.swarm.create_heartbeat(queue_depth=len(self.inbox))
                await self.broadcast(MessageKind.HEARTBEAT, heartbeat=heartbeat.to_dict())
            except Exception as exc:  # a failed heartbeat must not end the loop
                log.warning("%s: heartbeat not sent: %s", self.agent_id, exc)

    # Learning ------------------------------------------------------------------------
    async def learn(self, state: str, action: str, reward: float) -> None:
        """Fold an outcome into this agent's patterns; peers get it at the next sync."""
        self.intelligence.update_pattern(state, action, reward)

    async def get_best_action(self, state: str, actions: list[str]) -> tuple[str, float] | None:
        """The best known action for `state` in the swarm's merged view, with its confidence."""
        return self.intelligence.best_action(state, actions)

    async def sync_patterns(self) -> bool:
        """Broadcast this agent's own entries written since the last sync; False when there was nothing new."""
        vv = self.intelligence.version_vector()
        own = vv.get(self.agent_id, 0)
        if own <= self._own_version_sent:
            return False
        for chunk in self.intelligence.own_chunks(self._own_version_sent, PATTERN_CHUNK_BYTES):
            await self.broadcast(MessageKind.SYNC_PATTERNS, state=b64(chunk))
        self._own_version_sent = own
        return True

    async def catch_up_after_reconnect(self) -> bool:
        """The relay stores nothing: what peers broadcast while our link was down is gone. So when
        the relay link comes back, ask again for the patterns this replica lacks, as at join.
        True when it asked (the sync loop calls this every tick)."""
        relay = self.links.get("relay")
        event = getattr(relay, "connected", None)
        connected = event is not None and event.is_set()
        came_back = connected and not self._relay_was_connected
        self._relay_was_connected = connected
        if came_back:
            await self.broadcast(MessageKind.REQUEST_PATTERNS, vv=self.intelligence.version_vector())
        return came_back

    async def _sync_loop(self) -> None:
        interval = self.config.sync_interval_ms / 1000
        self._relay_was_connected = True  # announce() has just asked
        while True:
            await asyncio.sleep(interval)
            try:
                await self.catch_up_after_reconnect()
                await self.sync_patterns()
                await self.sync_memories()
            except Exception as exc:  # a failed sync is retried at the next tick (the cursors did not move)
                log.warning("%s: sync not sent: %s", self.agent_id, exc)

    # Memory --------------------------------------------------------------------------
    async def store_memory(self, content: str, embedding: list[float] | None = None,
                           metadata: dict[str, Any] | None = None) -> str:
        """Store a memory (embedded with `self.embedder` when no vector is given); returns its id."""
        vector = self.embedder.embed(content) if embedding is None else embedding
        memory_id = self.memory.store_memory(content, vector, metadata)
        flush = getattr(self.memory.store, "flush", None)  # write-behind stores (IndexedDB): wait for the commit
        if flush is not None:
            await flush()
        return memory_id

    async def store_text(self, text: str, metadata: dict[str, Any] | None = None) -> str:
        """Store text, embedded by this agent's embedder (MiniLM natively with the extra); returns its id."""
        return await self.store_memory(text, None, metadata)

    async def search_text(self, query: str, k: int = 5) -> list[Any]:
        """The k memories closest in meaning to `query` (by the same embedder as every vector held)."""
        if type(query) is not str:
            raise MalformedMessage("query must be a string")
        return await self.search_memory(query, k)

    async def search_memory(self, query: str | list[float], k: int = 5) -> list[Any]:
        """Top-k memories by cosine similarity, across everything this agent and its peers stored."""
        vector = self.embedder.embed(query) if isinstance(query, str) else query
        return self.memory.search_memory(vector, k)

    async def sync_memories(self, to: str | None = None) -> int:
        """Send this agent's own memories (all of them to `to`, else those new since the last broadcast)."""
        since = 0 if to is not None else self._memory_seq_sent
        sent = 0
        while True:
            page = self.memory.export_entries(since=since, limit=MEMORY_PAGE)
            if not page:
                return sent
            if to is None:
                await self.broadcast(MessageKind.SYNC_MEMORIES, entries=page)
            else:
                await self.send_to(to, MessageKind.SYNC_MEMORIES, entries=page)
            since = page[-1]["seq"]
            sent += len(page)
            if to is None:
                self._memory_seq_sent = since

    async def _on_sync_memories(self, sender: str, message: SwarmMessage) -> None:
        result = self.memory.import_entries(message.body.get("entries"), sender)
        if result.rejected:
            self.rejected["memory_entry"] += len(result.rejected)
        if result.over_share:
            self.bounded["memory_entries"] += result.over_share
            log.warning("%s: %s is past its share of memory: %d of its entries dropped", self.agent_id, sender,
                        result.over_share)

    async def _on_sync_patterns(self, sender: str, message: SwarmMessage) -> None:
        data = wire.get_b64(message.body, "state", self.intelligence.limits.max_message_bytes)
        result = self.intelligence.merge_peer_state(sender, data, own_only=True)
        log.debug("%s: merged %s from %s", self.agent_id, result, sender)

    async def _on_request_patterns(self, sender: str, message: SwarmMessage) -> None:
        vv = message.body.get("vv")
        if not isinstance(vv, dict) or len(vv) > MAX_VERSION_VECTOR:
            raise MalformedMessage("REQUEST_PATTERNS needs a version vector object")
        for origin, version in vv.items():
            if type(version) is not int or version < 0:
                raise MalformedMessage("version vector values must be non-negative integers")
        own = self.intelligence.version_vector().get(self.agent_id, 0)
        asked = vv.get(self.agent_id, 0)
        if own <= asked:
            return
        # Only our own entries: the asker believes each origin only about itself (ForeignOrigin), so
        # a late joiner learns every member's patterns from that member's answer.
        for chunk in self.intelligence.own_chunks(asked, PATTERN_CHUNK_BYTES):
            await self.send_to(sender, MessageKind.SYNC_PATTERNS, state=b64(chunk))

    # Artifacts and tasks (the protocol is in artifacts/exchange.py and tasks/swarm.py) ---------
    def _live_peers(self) -> list[str]:
        return [p for p, info in self.peers.items() if not info.left]

    def store_artifact(self, data: bytes, compressed: bool = False) -> str:
        return self.artifacts.store_artifact(data, compressed)

    def get_artifact(self, cid: str) -> bytes:
        """Local only; MissingChunks when a block is not here (see fetch_artifact)."""
        return self.artifacts.get_artifact(cid)

    async def fetch_artifact(self, cid: str, timeout: float = 10.0, prefer: list[str] | tuple[str, ...] = ()) -> bytes:
        """Local if held, else fetched from peers chunk by chunk (`prefer` asked first), every chunk verified."""
        return await self.exchange.fetch(cid, timeout, prefer)

    async def submit_task(self, module: bytes, input: bytes, *, entrypoint: str = "run", budgets: Budgets | None = None,
                          priority: int = 0, deadline_ms: int | None = None, capability: str = "wasm") -> str:
        """Store module and input as artifacts, sign the envelope and broadcast it; returns the task id."""
        return await self.swarm_tasks.submit(module, input, entrypoint=entrypoint, budgets=budgets, priority=priority,
                                             deadline_ms=deadline_ms, capability=capability)

    async def claim_task(self, task_id: str) -> Claim:
        """A signed lease on a known task, broadcast to the swarm; LeaseHeld while another member holds one."""
        return await self.swarm_tasks.claim(task_id)

    async def wait_receipt(self, task_id: str, timeout: float = 30.0) -> TaskReceipt:
        """The task's receipt once verified (for our own tasks: against the envelope and every artifact hash)."""
        return await self.swarm_tasks.wait_receipt(task_id, timeout)

    async def spot_check(self, task_id: str, executor_id: str, timeout: float = 30.0) -> MismatchReport | None:
        """Have `executor_id` re-run our task; a signed MismatchReport if its result disagrees with the receipt's."""
        return await self.swarm_tasks.spot_check(task_id, executor_id, timeout)

    def task_table(self) -> list[dict[str, Any]]:
        return self.swarm_tasks.table()

    # Views ---------------------------------------------------------------------------
    def defences(self) -> dict[str, int]:
        """What the swarm's bounds on any one member (issue 14) have held back so far, for the page."""
        stats = self.intelligence.get_swarm_stats()
        return {
            "memory_over_share": self.bounded["memory_entries"],
            "blocks_over_share": self.artifacts.over_share,
            "pattern_entries_trimmed": stats.trimmed_entries,
            "pattern_entries_capped": stats.capped_entries,
            "foreign_origins_refused": self.rejected["ForeignOrigin"],
            "executors_reported": len(self.swarm_tasks.reported),
        }

    def peer_table(self) -> list[dict[str, Any]]:
        rows = []
        for member in self.swarm.registry.members():
            if member.agent_id == self.agent_id:
                continue
            info = self.peers.get(member.agent_id, PeerInfo(member.agent_id))
            status = MemberStatus.GONE if info.left else self.swarm.registry.status(member.agent_id)
            rows.append({
                "agent_id": member.agent_id,
                "role": info.role,
                "transport": info.transport,
                "status": status.value,
                "load": member.load,
                "last_heartbeat": member.last_heartbeat,
            })
        for agent_id in self.swarm.registry.departed():  # shown gone while its binding is held, then dropped
            info = self.peers.get(agent_id, PeerInfo(agent_id))
            rows.append({"agent_id": agent_id, "role": info.role, "transport": info.transport,
                         "status": MemberStatus.GONE.value, "load": 0.0, "last_heartbeat": None})
        return sorted(rows, key=lambda row: row["agent_id"])
