"""P2PSwarm: one member's secure view of a swarm, without any I/O.

It turns payloads into signed, encrypted frames and frames back into verified
payloads; transports (issue "Real transports") move the bytes. The receive
path runs, per frame: size and shape → swarm and type → timestamp window and
replay window (read-only) → sender known in the registry → signature under the
registry's key → decrypt → payload hash → only then record nonce and counter.
Recording last means no forged or corrupted frame can burn a nonce, advance a
counter or touch liveness. Crypto is batched across frames (one FFI crossing
per batch in the browser).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Sequence

from ..errors import (
    BadSignature,
    DecryptionFailed,
    Misaddressed,
    PayloadHashMismatch,
    RejectedInput,
    SessionKeyError,
    WrongSwarm,
)
from ..platform import Runtime, default_runtime
from . import envelope as env
from . import wire
from .envelope import Envelope, EnvelopeHeader
from .identity import IdentityManager
from .keys import SwarmKey, payload_hash
from .load import LoadMeter
from .records import Heartbeat, Registration
from .registry import Member, MemberRegistry
from .replay import ReplayGuard


@dataclass(frozen=True)
class SecurityConfig:
    past_window_ms: int = 5 * 60 * 1000
    future_skew_ms: int = 60 * 1000
    replay_window: int = 1024
    max_payload_bytes: int = env.DEFAULT_MAX_PAYLOAD
    suspect_after_ms: int = 15_000
    gone_after_ms: int = 45_000


@dataclass(frozen=True)
class ReceivedMessage:
    sender_id: str
    topic: str
    message_id: str
    timestamp: int
    payload: bytes
    direct: bool


@dataclass(frozen=True)
class Published:
    message_id: str
    frame: bytes


class P2PSwarm:
    def __init__(
        self,
        agent_id: str,
        swarm_key: SwarmKey,
        identity: IdentityManager,
        registration: Registration,
        runtime: Runtime,
        config: SecurityConfig,
    ) -> None:
        self.agent_id = agent_id
        self.swarm_key = swarm_key
        self.swarm_id = swarm_key.swarm_id
        self.identity = identity
        self.registration = registration
        self.runtime = runtime
        self.config = config
        self.registry = MemberRegistry(
            self.swarm_id,
            runtime.crypto,
            runtime.clock,
            suspect_after_ms=config.suspect_after_ms,
            gone_after_ms=config.gone_after_ms,
            past_window_ms=config.past_window_ms,
            future_skew_ms=config.future_skew_ms,
        )
        self.replay = ReplayGuard(
            window=config.replay_window, past_ms=config.past_window_ms, future_ms=config.future_skew_ms
        )
        self.load = LoadMeter()
        # Counters start at wall-clock ms × 1024 so a restarted agent is still ahead of
        # what peers remember, without persisting the counter (≤ 1024 messages/ms sustained).
        self._counter = runtime.clock.now_ms() * 1024
        self._heartbeat_seq = self._counter
        self._session_keys: dict[str, bytes] = {}

    @classmethod
    async def create(
        cls,
        agent_id: str,
        swarm_key: bytes | None = None,
        capabilities: Sequence[str] = ("worker",),
        *,
        runtime: Runtime | None = None,
        identity: IdentityManager | None = None,
        config: SecurityConfig | None = None,
    ) -> "P2PSwarm":
        """Join (or, with no key, found) a swarm as `agent_id`. A fresh identity is generated unless given."""
        wire.check_id(agent_id, "agent_id")
        runtime = runtime or default_runtime()
        key = SwarmKey(swarm_key if swarm_key is not None else runtime.random.token_bytes(32))
        identity = identity or await IdentityManager.generate(runtime.crypto)
        registration = await identity.create_registration(agent_id, capabilities, swarm=key.swarm_id, clock=runtime.clock)
        swarm = cls(agent_id, key, identity, registration, runtime, config or SecurityConfig())
        await swarm.registry.register(registration)
        return swarm

    # Membership ------------------------------------------------------------------
    async def register_member(self, registration: Registration | bytes | str) -> Member:
        if not isinstance(registration, Registration):
            registration = Registration.from_json(registration)
        member = await self.registry.register(registration)
        self._session_keys.pop(registration.agent_id, None)
        return member

    async def create_heartbeat(self, queue_depth: int = 0) -> Heartbeat:
        self._heartbeat_seq += 1
        return await self.identity.create_heartbeat(
            self.agent_id,
            swarm=self.swarm_id,
            seq=self._heartbeat_seq,
            timestamp=self.runtime.clock.now_ms(),
            load=self.load.sample(),
            queue_depth=queue_depth,
        )

    async def receive_heartbeat(self, heartbeat: Heartbeat | bytes | str) -> Member:
        if not isinstance(heartbeat, Heartbeat):
            heartbeat = Heartbeat.from_json(heartbeat)
        return await self.registry.heartbeat(heartbeat)

    async def derive_session_key(self, peer_id: str) -> bytes:
        """The pairwise key for a direct channel with a registered peer; both sides derive the same one."""
        key = self._session_keys.get(peer_id)
        if key is None:
            member = self.registry.get(peer_id)
            if member is None:
                raise SessionKeyError(f"{peer_id!r} is not a registered member")
            key = await self.identity.session_key(member.x25519_pubkey, self.swarm_id)
            self._session_keys[peer_id] = key
        return key

    # Sending -------------------------------------------------------------------
    async def publish(self, topic: str, payload: bytes) -> Published:
        return (await self.publish_many(topic, [payload]))[0]

    async def publish_many(self, topic: str, payloads: Sequence[bytes]) -> list[Published]:
        """Seal payloads for every member under the swarm key: one sign batch, one encrypt batch."""
        return await self._seal(env.BROADCAST, topic, payloads, self.swarm_key.key)

    async def send_direct(self, peer_id: str, payload: bytes) -> Published:
        """Seal a payload that only `peer_id` can open (pairwise session key); its topic is '@peer_id',
        which is how relays route it and how the recipient knows it was meant for it."""
        key = await self.derive_session_key(peer_id)
        return (await self._seal(env.DIRECT, f"@{peer_id}", [payload], key))[0]

    async def _seal(self, kind: str, topic: str, payloads: Sequence[bytes], key: bytes) -> list[Published]:
        wire.check_id(topic, "topic")
        with self.load.busy():
            random = self.runtime.random
            now = self.runtime.clock.now_ms()
            headers: list[bytes] = []
            items = []
            parsed = []
            for payload in payloads:
                if len(payload) > self.config.max_payload_bytes:
                    raise ValueError(f"payload of {len(payload)} bytes exceeds {self.config.max_payload_bytes}")
                self._counter += 1
                entropy = random.token_bytes(44)
                header = EnvelopeHeader(
                    type=kind,
                    swarm=self.swarm_id,
                    sender_id=self.agent_id,
                    topic=topic,
                    counter=self._counter,
                    message_id=entropy[:16].hex(),
                    nonce=entropy[16:32].hex(),
                    timestamp=now,
                    payload_hash=payload_hash(key, payload),
                )
                canonical = header.canonical()
                headers.append(canonical)
                parsed.append(header)
                items.append((entropy[32:44], bytes(payload), EnvelopeHeader.aad_of(canonical)))
            signatures = await self.identity.sign_many(headers)
            ciphertexts = await self.runtime.crypto.aes_gcm_seal_many(key, items)
            return [
                Published(header.message_id, Envelope(header, sig, item[0], ct).to_json(canonical))
                for header, canonical, sig, item, ct in zip(parsed, headers, signatures, items, ciphertexts)
            ]

    # Receiving -----------------------------------------------------------------
    async def receive(self, frame: bytes | str) -> ReceivedMessage:
        result = (await self.receive_many([frame]))[0]
        if isinstance(result, RejectedInput):
            raise result
        return result

    async def receive_many(self, frames: Sequence[bytes | str]) -> list[ReceivedMessage | RejectedInput]:
        """Open a batch of frames. Each result is the message or the typed reason it was rejected."""
        with self.load.busy():
            return await self._receive_many(frames)

    async def _receive_many(self, frames: Sequence[bytes | str]) -> list[ReceivedMessage | RejectedInput]:
        results: list[ReceivedMessage | RejectedInput | None] = [None] * len(frames)
        now = self.runtime.clock.now_ms()
        pending: list[tuple[int, Envelope, bytes, Member]] = []
        for index, frame in enumerate(frames):
            try:
                envelope = Envelope.from_json(frame, self.config.max_payload_bytes)
                header = envelope.header
                if header.swarm != self.swarm_id:
                    raise WrongSwarm(f"envelope is for swarm {header.swarm!r}")
                self.replay.check(header.sender_id, header.counter, header.nonce, header.timestamp, now)
                member = self.registry.require(header.sender_id)
                if header.type == env.DIRECT and header.topic != f"@{self.agent_id}":
                    raise Misaddressed(f"direct message addressed to {header.topic!r}, not to us")
                pending.append((index, envelope, header.canonical(), member))
            except RejectedInput as exc:
                results[index] = exc

        verdicts = await self.runtime.crypto.verify_many(
            [(member.ed25519_pubkey, canonical, envelope.sig) for _, envelope, canonical, member in pending]
        )
        verified = []
        for entry, ok in zip(pending, verdicts):
            if ok:
                verified.append(entry)
            else:
                results[entry[0]] = BadSignature(f"envelope from {entry[1].header.sender_id!r} does not verify")

        by_key: dict[bytes, list[tuple[int, Envelope, bytes, Member]]] = {}
        for entry in verified:
            header = entry[1].header
            try:
                key = self.swarm_key.key if header.type == env.BROADCAST else await self.derive_session_key(header.sender_id)
            except SessionKeyError as exc:
                results[entry[0]] = DecryptionFailed(str(exc))
                continue
            by_key.setdefault(key, []).append(entry)

        for key, group in by_key.items():
            plaintexts = await self.runtime.crypto.aes_gcm_open_many(
                key, [(e.iv, e.ciphertext, EnvelopeHeader.aad_of(canonical)) for _, e, canonical, _ in group]
            )
            for (index, envelope, _, member), plaintext in zip(group, plaintexts):
                header = envelope.header
                try:
                    if plaintext is None:
                        raise DecryptionFailed(f"envelope {header.message_id} failed authentication")
                    if not hmac.compare_digest(payload_hash(key, plaintext), header.payload_hash):
                        raise PayloadHashMismatch(f"payload of {header.message_id} does not match its signed hash")
                    self.replay.record(header.sender_id, header.counter, header.nonce, header.timestamp, now)
                except RejectedInput as exc:
                    results[index] = exc
                    continue
                self.registry.touch(member.agent_id)
                results[index] = ReceivedMessage(
                    sender_id=header.sender_id,
                    topic=header.topic,
                    message_id=header.message_id,
                    timestamp=header.timestamp,
                    payload=plaintext,
                    direct=header.type == env.DIRECT,
                )
        return [r for r in results if r is not None]
