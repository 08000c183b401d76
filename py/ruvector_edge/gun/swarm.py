"""GunSwarm: swarm presence and learned patterns kept in a GUN graph, signed and optionally encrypted.

Layout: one GUN node per kind, soul ``<name>/<swarm_id>/<kind>``, one key per
agent holding that agent's latest sealed value (see sealed.py):

- ``presence``: what `announce_peer` says (capabilities, time);
- ``learning``: the agent's `IntelligenceSync.serialize_state()`;
- ``pointers``: the agent's newest signed `ArtifactPointer`s (at most
  MAX_POINTERS_PER_AGENT), so members find Q-tables, memory snapshots and
  weights by CID and fetch them over the swarm.

Patterns are not a second CRDT: `publish_pattern` writes through the agent's
IntelligenceSync and `import_to_learning_state` joins every member's state with
`merge_peer_state`, the same rule the relay and WebRTC paths use.

Offline first: with no relays the graph is local only; `with_public_relays`
takes the user's own list, nothing is built in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Protocol, Sequence
from urllib.parse import urlsplit

from ..errors import AdmissionRefused, MalformedMessage, RejectedInput
from ..intelligence import IntelligenceSync
from ..intelligence.sync import MergeResult
from ..learning.pattern import Pattern
from ..artifacts.pointer import ArtifactPointer
from ..p2p import wire
from ..p2p.swarm import P2PSwarm
from .sealed import OpenedState, StateSealer

log = logging.getLogger(__name__)

PRESENCE, LEARNING, POINTERS = "presence", "learning", "pointers"
MAX_POINTERS_PER_AGENT = 64


class GunGraph(Protocol):
    """What GunSwarm needs from a GUN implementation (native engine, or GUN.js in the browser)."""

    async def connect(self, timeout: float = 10.0) -> None: ...

    async def put(self, soul: str, values: dict[str, object]) -> None: ...

    async def read(self, soul: str, timeout: float = 2.0) -> dict[str, object]: ...

    async def close(self) -> None: ...


def _relay_url(url: object) -> str:
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https", "ws", "wss") or not urlsplit(url).netloc:
        raise MalformedMessage(f"a GUN relay is an http(s):// or ws(s):// URL, not {url!r:.80}")
    return url


class GunSwarmBuilder:
    """`GunSwarmBuilder(name).with_relays([...]).encrypted(True).sync_interval(ms).build(agent_id, p2p)`."""

    def __init__(self, name: str) -> None:
        self.name = wire.check_id(name, "GUN swarm name")
        self._relays: list[str] = []
        self._encrypted = False
        self._interval_ms: int | None = None

    def with_relays(self, urls: Sequence[str]) -> "GunSwarmBuilder":
        self._relays += [_relay_url(u) for u in urls]
        return self

    def with_public_relays(self, urls: Sequence[str]) -> "GunSwarmBuilder":
        """Public GUN relays the user chose; there is no built-in list (dead hosts, and offline first)."""
        if isinstance(urls, str) or not urls:
            raise MalformedMessage("with_public_relays takes a non-empty list of URLs the user supplies")
        return self.with_relays(urls)

    def encrypted(self, flag: bool = True) -> "GunSwarmBuilder":
        self._encrypted = bool(flag)
        return self

    def sync_interval(self, ms: int) -> "GunSwarmBuilder":
        if not isinstance(ms, int) or isinstance(ms, bool) or ms < 50:
            raise MalformedMessage("sync_interval is an int of at least 50 ms")
        self._interval_ms = ms
        return self

    def build(self, agent_id: str, p2p: P2PSwarm, learning: IntelligenceSync | None = None,
              graph: GunGraph | None = None) -> "GunSwarm":
        """`p2p` gives the identity, swarm key and member registry; `graph` defaults to this runtime's GUN."""
        if agent_id != p2p.agent_id:
            raise MalformedMessage(f"agent {agent_id!r} cannot build a GunSwarm with {p2p.agent_id!r}'s identity")
        if graph is None:
            from ..platform import default_gun_graph

            graph = default_gun_graph(self._relays)
        learning = learning or IntelligenceSync(agent_id, clock=p2p.runtime.clock)
        return GunSwarm(self.name, p2p, learning, graph, encrypted=self._encrypted,
                        sync_interval_ms=self._interval_ms, relays=tuple(self._relays))


class GunSwarm:
    def __init__(self, name: str, p2p: P2PSwarm, learning: IntelligenceSync, graph: GunGraph, *,
                 encrypted: bool, sync_interval_ms: int | None = None, relays: tuple[str, ...] = ()) -> None:
        self.name = name
        self.p2p = p2p
        self.agent_id = p2p.agent_id
        self.learning = learning
        self.graph = graph
        self.encrypted = encrypted
        self.relays = relays
        self.sync_interval_ms = sync_interval_ms
        self.sealer = StateSealer(p2p, encrypted=encrypted)
        self._merged: dict[str, int] = {}
        self._bad_state = 0
        self._bad_pointer = 0
        self._not_member = 0
        self._pointers: list[ArtifactPointer] = []
        self._last_written: bytes | None = None
        self._loop: asyncio.Task | None = None
        self.sync_rounds = 0  # periodic rounds completed: what "after a few rounds" means, not a guess in seconds

    def soul(self, kind: str) -> str:
        return f"{self.name}/{self.p2p.swarm_id}/{kind}"

    @property
    def stats(self) -> dict[str, int]:
        """Values accepted and ignored, by reason; `bad_state`: signed learning states the CRDT refused;
        `bad_pointer`: pointers in a signed value that are malformed or not their publisher's; in an admitted
        swarm, `not_member`: authentic values whose signer holds no valid certificate now (a removed member)."""
        stats = {**self.sealer.stats, "bad_state": self._bad_state, "bad_pointer": self._bad_pointer}
        if self.p2p.admission is not None:
            stats["not_member"] = self._not_member
        return stats

    async def connect(self, timeout: float = 10.0) -> None:
        await self.graph.connect(timeout)
        if self.sync_interval_ms is not None and self._loop is None:
            self._loop = asyncio.create_task(self._sync_loop())

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        await self.graph.close()

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval_ms / 1000)
            try:
                if self.learning.own_state() != self._last_written:  # unchanged state is already in GUN
                    await self.sync_learning_state()
                await self.import_to_learning_state()
            except Exception:  # a relay hiccup must not end the loop
                log.exception("gun: periodic sync failed")
            self.sync_rounds += 1

    async def _write(self, kind: str, payload: bytes) -> None:
        await self.graph.put(self.soul(kind), {self.agent_id: await self.sealer.seal(kind, payload)})

    async def _read(self, kind: str, timeout: float) -> dict[str, OpenedState]:
        """The node's authentic values; in an admitted swarm only those of members certified now. GUN keeps
        what a member wrote before its removal (and a relay cannot tell), so every read asks the certificate
        book, as the frame path does: a removed member's values, old or new, count as `not_member`."""
        opened = await self.sealer.open_node(kind, await self.graph.read(self.soul(kind), timeout))
        admission = self.p2p.admission
        if admission is None:
            return opened
        kept = {}
        for sender, value in opened.items():
            try:
                admission.book.require(sender, self.p2p.registry.public_key(sender))
            except AdmissionRefused as exc:
                self._not_member += 1
                log.info("gun: %s value of %s ignored: %s", kind, sender, exc)
                continue
            kept[sender] = value
        return kept

    # presence ------------------------------------------------------------------
    async def announce_peer(self, capabilities: Sequence[str] = ()) -> None:
        body = {"agent_id": self.agent_id, "capabilities": list(capabilities),
                "at": self.p2p.runtime.clock.now_ms()}
        await self._write(PRESENCE, json.dumps(body, sort_keys=True).encode())

    async def get_peers(self, timeout: float = 2.0) -> dict[str, dict]:
        """Members whose signed presence is in the graph (this agent included), with what they announced."""
        peers = {}
        for sender, opened in (await self._read(PRESENCE, timeout)).items():
            try:
                body = wire.parse_json_object(opened.payload, 64 * 1024)
            except RejectedInput:
                continue
            peers[sender] = {"capabilities": body.get("capabilities", []), "at": body.get("at"),
                             "written_at": opened.timestamp}
        return peers

    # patterns (through the learning CRDT) ------------------------------------------
    async def publish_pattern(self, state: str, action: str, q_value: float, visits: int) -> None:
        self.learning.set_pattern(state, action, q_value, visits)
        await self.sync_learning_state()

    async def sync_learning_state(self) -> None:
        """Write this agent's own learning entries (a CRDT state: readers join it, in any order; they
        believe each member only about itself, intelligence/sync.py)."""
        state = self.learning.own_state()
        await self._write(LEARNING, state)
        self._last_written = state

    async def import_to_learning_state(self, timeout: float = 2.0) -> dict[str, MergeResult]:
        """Join every other member's newest verified learning state into ours; returns the merges done."""
        merged = {}
        for sender, opened in (await self._read(LEARNING, timeout)).items():
            if sender == self.agent_id or self._merged.get(sender) == opened.counter:
                continue
            try:
                merged[sender] = self.learning.merge_peer_state(sender, opened.payload, own_only=True)
            except RejectedInput as exc:
                self._bad_state += 1
                log.info("gun: learning state of %s refused: %s", sender, exc)
            self._merged[sender] = opened.counter
        return merged

    async def get_patterns(self, timeout: float = 2.0) -> list[Pattern]:
        """The swarm's patterns: ours joined with every member's state in the graph."""
        await self.import_to_learning_state(timeout)
        return self.learning.patterns()

    # artifact pointers ---------------------------------------------------------------
    async def publish_pointer(self, pointer: ArtifactPointer) -> None:
        """Add a pointer this agent signed to its list in GUN (newest MAX_POINTERS_PER_AGENT kept;
        a pointer to a CID already listed replaces it)."""
        if pointer.publisher != self.agent_id:
            raise ValueError(f"a pointer published by {pointer.publisher!r} is not this agent's to publish")
        await pointer.verify(self.p2p.runtime.crypto, self.p2p.identity.ed25519_public, swarm_id=self.p2p.swarm_id)
        kept = [p for p in self._pointers if p.cid != pointer.cid][-(MAX_POINTERS_PER_AGENT - 1):]
        self._pointers = kept + [pointer]
        payload = json.dumps([json.loads(p.to_json()) for p in self._pointers], separators=(",", ":"))
        await self._write(POINTERS, payload.encode())

    async def get_pointers(self, timeout: float = 2.0) -> list[ArtifactPointer]:
        """Every member's verified pointers (this agent's included), newest last per member.

        The value holding them is signed by the member whose key it sits under, and each
        pointer must also be signed by that member as its publisher: a member cannot pass
        off someone else's (or a made-up) pointer as its own. Bad ones are counted, not kept.
        """
        pointers: list[ArtifactPointer] = []
        for sender, opened in (await self._read(POINTERS, timeout)).items():
            try:
                items = json.loads(opened.payload)
            except ValueError:
                items = None
            if not isinstance(items, list) or len(items) > MAX_POINTERS_PER_AGENT:
                self._bad_pointer += 1
                continue
            key = self.p2p.registry.public_key(sender)
            for item in items:
                try:
                    if not isinstance(item, dict):
                        raise MalformedMessage("a pointer is a JSON object")
                    pointer = ArtifactPointer.from_dict(item)
                    if pointer.publisher != sender:
                        raise MalformedMessage(f"{sender!r} listed a pointer published by {pointer.publisher!r}")
                    await pointer.verify(self.p2p.runtime.crypto, key, swarm_id=self.p2p.swarm_id)
                except RejectedInput as exc:
                    self._bad_pointer += 1
                    log.info("gun: pointer from %s refused: %s", sender, exc)
                    continue
                pointers.append(pointer)
        return pointers
