"""P2PSwarm: one member's secure view of a swarm, without any I/O.

It turns payloads into signed, encrypted frames and frames back into verified
payloads; transports (issue "Real transports") move the bytes. The receive
path runs, per frame: size and shape → swarm and type → timestamp window and
replay window (read-only) → sender known in the registry → signature under the
registry's key → decrypt → payload hash → only then record nonce and counter.
Recording last means no forged or corrupted frame can burn a nonce, advance a
counter or touch liveness. Crypto is batched across frames (one FFI crossing
per batch in the browser).

In an admitted swarm (see admission.py) the sender must also hold a valid,
unexpired, unrevoked certificate, checked right after the registry lookup, and
a broadcast opens under the key of the epoch its header names.
"""

from __future__ import annotations

import collections
import hmac
from dataclasses import dataclass
from typing import Awaitable, Callable, Sequence

from ..errors import (
    BadSignature,
    DecryptionFailed,
    Misaddressed,
    PayloadHashMismatch,
    RejectedInput,
    SessionKeyError,
    UnknownEpoch,
    UnknownSender,
    WrongSwarm,
)
from ..platform import Runtime, default_runtime
from . import envelope as env
from . import wire
from .admission import Admission, AdminAuthority
from .certificates import Certificate, Revocation, admitted_swarm_id
from .epochs import DEFAULT_GRACE_MS, EpochKeyDelivery
from .envelope import Envelope, EnvelopeHeader
from .identity import IdentityManager
from .invites import Invite
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
        swarm_key: SwarmKey | None,
        identity: IdentityManager,
        registration: Registration,
        runtime: Runtime,
        config: SecurityConfig,
        admission: Admission | None = None,
    ) -> None:
        """Open swarm: `swarm_key` names the swarm and seals everything. Admitted swarm: `admission` names it
        and holds the epoch keys (`swarm_key` is None)."""
        if (swarm_key is None) == (admission is None):
            raise ValueError("a swarm is either open (a swarm key) or admitted (an admission state)")
        self.agent_id = agent_id
        self._open_key = swarm_key
        self.admission = admission
        self.swarm_id = admission.swarm_id if admission is not None else swarm_key.swarm_id  # type: ignore[union-attr]
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
        self.registry.on_released.append(self._released)
        self.load = LoadMeter()
        # Counters start at wall-clock ms × 1024 so a restarted agent is still ahead of
        # what peers remember, without persisting the counter (≤ 1024 messages/ms sustained).
        self._counter = runtime.clock.now_ms() * 1024
        self._heartbeat_seq = self._counter
        self._session_keys: dict[str, bytes] = {}
        self.admission_rejected: collections.Counter[str] = collections.Counter()  # admission records refused
        self.on_revoked: list[Callable[[str], Awaitable[None]]] = []  # told the id of each member removed

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

    @classmethod
    async def found_admitted(
        cls,
        agent_id: str,
        capabilities: Sequence[str] = ("coordinator",),
        *,
        runtime: Runtime | None = None,
        identity: IdentityManager | None = None,
        config: SecurityConfig | None = None,
        grace_ms: int = DEFAULT_GRACE_MS,
    ) -> "P2PSwarm":
        """Found an admitted swarm: our key becomes the admin key the swarm id is derived from, we certify
        ourselves and hold epoch 0's key."""
        wire.check_id(agent_id, "agent_id")
        runtime = runtime or default_runtime()
        identity = identity or await IdentityManager.generate(runtime.crypto)
        swarm_id = admitted_swarm_id(identity.ed25519_public)
        admission = Admission(swarm_id, runtime.crypto, runtime.clock, grace_ms=grace_ms)
        admission.authority = AdminAuthority(identity, runtime.crypto, runtime.random, runtime.clock, admission)
        admission.epochs.install(0, runtime.random.token_bytes(32), runtime.clock.now_ms())
        registration = await identity.create_registration(agent_id, capabilities, swarm=swarm_id, clock=runtime.clock)
        cert = await admission.authority.certify(agent_id, identity.ed25519_public, identity.x25519_public, capabilities)
        await admission.accept_certificate(cert, identity, registration)
        swarm = cls(agent_id, None, identity, registration, runtime, config or SecurityConfig(), admission)
        await swarm.registry.register(registration)
        return swarm

    @classmethod
    async def join_admitted(
        cls,
        agent_id: str,
        invite: Invite | str,
        capabilities: Sequence[str] = ("worker",),
        *,
        runtime: Runtime | None = None,
        identity: IdentityManager | None = None,
        config: SecurityConfig | None = None,
        grace_ms: int = DEFAULT_GRACE_MS,
    ) -> "P2PSwarm":
        """A joiner of an admitted swarm holding only an invite: it has no key until an admin admits it
        (`accept_admission`), which the relay protocol arranges at the first hello."""
        wire.check_id(agent_id, "agent_id")
        invite = invite if isinstance(invite, Invite) else Invite.from_token(invite)
        runtime = runtime or default_runtime()
        identity = identity or await IdentityManager.generate(runtime.crypto)
        await invite.verify(runtime.crypto, invite.swarm, runtime.clock.now_ms())
        admission = Admission(invite.swarm, runtime.crypto, runtime.clock, grace_ms=grace_ms, invite=invite)
        registration = await identity.create_registration(agent_id, capabilities, swarm=invite.swarm, clock=runtime.clock)
        swarm = cls(agent_id, None, identity, registration, runtime, config or SecurityConfig(), admission)
        await swarm.registry.register(registration)
        return swarm

    @classmethod
    async def resume_admitted(
        cls,
        agent_id: str,
        certificate: Certificate,
        epoch: int,
        key: bytes,
        capabilities: Sequence[str] = ("worker",),
        *,
        identity: IdentityManager,
        runtime: Runtime | None = None,
        config: SecurityConfig | None = None,
        grace_ms: int = DEFAULT_GRACE_MS,
    ) -> "P2PSwarm":
        """A member coming back (a reloaded page) with the certificate and epoch key it kept: no invite is spent;
        the relay passes on the revocations and the newer epoch key it missed at the hello."""
        wire.check_id(agent_id, "agent_id")
        runtime = runtime or default_runtime()
        admission = Admission(certificate.swarm, runtime.crypto, runtime.clock, grace_ms=grace_ms)
        registration = await identity.create_registration(agent_id, capabilities, swarm=certificate.swarm,
                                                          clock=runtime.clock)
        await admission.accept_certificate(certificate, identity, registration)
        admission.epochs.install(epoch, key, runtime.clock.now_ms())
        swarm = cls(agent_id, None, identity, registration, runtime, config or SecurityConfig(), admission)
        await swarm.registry.register(registration)
        return swarm

    @property
    def swarm_key(self) -> SwarmKey:
        """The key broadcasts are sealed under now: the open swarm's key, or the current epoch's."""
        if self.admission is None:
            return self._open_key  # type: ignore[return-value]
        return SwarmKey(self.admission.require_key()[1])

    # Admission -------------------------------------------------------------------
    async def accept_admission(self, certificate: Certificate, delivery: EpochKeyDelivery) -> None:
        """Our certificate and first epoch key, as the admin sent them in exchange for our invite."""
        admission = self._admitted()
        await admission.accept_certificate(certificate, self.identity, self.registration)
        await admission.accept_epoch(delivery, self.identity, self.agent_id)

    async def accept_certificate(self, certificate: Certificate) -> Certificate:
        """Another member's certificate (the relay passes it on beside the registration)."""
        return await self._admitted().book.add(certificate)

    async def accept_epoch(self, delivery: EpochKeyDelivery) -> bool:
        return await self._admitted().accept_epoch(delivery, self.identity, self.agent_id)

    async def accept_revocation(self, revocation: Revocation) -> bool:
        """Honour a revocation: the member is forgotten and refused from now on. True when it was news."""
        news = await self._admitted().book.revoke(revocation)
        if news:
            self.registry.remove(revocation.agent_id)
        return news

    def _admitted(self) -> Admission:
        if self.admission is None:
            raise ValueError("an open swarm has no admission state")
        return self.admission

    # Membership ------------------------------------------------------------------
    async def register_member(self, registration: Registration | bytes | str) -> Member:
        if not isinstance(registration, Registration):
            registration = Registration.from_json(registration)
        if self.admission is not None:
            self.admission.book.require(registration.agent_id, registration.ed25519_pubkey,
                                        registration.x25519_pubkey, registration.capabilities)
        member = await self.registry.register(registration)
        self._session_keys.pop(registration.agent_id, None)
        return member

    def member_departed(self, agent_id: str) -> None:
        """A member left (the relay says so): forget it but for its key binding, held for the replay window
        (MemberRegistry.depart), so every agent's registry is as big as the swarm, not as every agent ever seen.
        A frame it signs after that brings it back (`_sender`). Our own id is kept whatever a relay says: our
        registration is what our own records verify against."""
        if agent_id != self.agent_id:
            self.registry.depart(agent_id)

    def _released(self, agent_id: str) -> None:
        """An id's binding is gone: so is what we kept for it. Not before: until then its frames still pass the
        timestamp window, so its counter window must still refuse their replays, and it may come back."""
        self.replay.forget_sender(agent_id)
        self._session_keys.pop(agent_id, None)

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
        if self.admission is not None:
            self.admission.book.check_not_revoked(heartbeat.agent_id)
        self._require_certified(self.registry.require(heartbeat.agent_id))
        return await self.registry.heartbeat(heartbeat)

    def _require_certified(self, member: Member) -> None:
        if self.admission is not None and member.agent_id != self.agent_id:
            self.admission.book.require(member.agent_id, member.ed25519_pubkey)

    async def derive_session_key(self, peer_id: str) -> bytes:
        """The pairwise key for a direct channel with a registered peer; both sides derive the same one."""
        key = self._session_keys.get(peer_id)
        if key is None:
            registration = self.registry.registration_of(peer_id)  # or a departed peer's, while it is held
            if registration is None:
                raise SessionKeyError(f"{peer_id!r} is not a registered member")
            key = await self.identity.session_key(registration.x25519_pubkey, self.swarm_id)
            self._session_keys[peer_id] = key
        return key

    # Sending -------------------------------------------------------------------
    async def publish(self, topic: str, payload: bytes) -> Published:
        return (await self.publish_many(topic, [payload]))[0]

    async def publish_many(self, topic: str, payloads: Sequence[bytes]) -> list[Published]:
        """Seal payloads for every member under the swarm key: one sign batch, one encrypt batch."""
        if self.admission is None:
            return await self._seal(env.BROADCAST, topic, payloads, self.swarm_key.key)
        epoch, key = self.admission.require_key()
        return await self._seal(env.BROADCAST, topic, payloads, key, epoch)

    async def send_direct(self, peer_id: str, payload: bytes) -> Published:
        """Seal a payload that only `peer_id` can open (pairwise session key); its topic is '@peer_id',
        which is how relays route it and how the recipient knows it was meant for it."""
        key = await self.derive_session_key(peer_id)
        return (await self._seal(env.DIRECT, f"@{peer_id}", [payload], key))[0]

    async def _seal(self, kind: str, topic: str, payloads: Sequence[bytes], key: bytes,
                    epoch: int | None = None) -> list[Published]:
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
                    epoch=epoch,
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
                if self.admission is not None:
                    self.admission.book.check_not_revoked(header.sender_id)
                member = self._sender(header)
                self._require_certified(member)
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
                key = self._broadcast_key(header, now) if header.type == env.BROADCAST \
                    else await self.derive_session_key(header.sender_id)
            except SessionKeyError as exc:
                results[entry[0]] = DecryptionFailed(str(exc))
                continue
            except RejectedInput as exc:
                results[entry[0]] = exc
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
                    if member.agent_id not in self.registry:  # a departed member back (see _sender): no await
                        self.replay.check(header.sender_id, header.counter, header.nonce, header.timestamp, now)
                        self.registry.readmit(member.agent_id)  # between these, so a refused frame changes nothing
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

    def _sender(self, header: EnvelopeHeader) -> Member:
        """The frame's sender as registered; or as it departed, for a frame it signed after it left: the relay
        reported it gone, yet it is still here (on another path, or its relay dropped it for a moment). Such a
        frame, once it verifies like any, brings it back (`registry.readmit`). A frame from before the departure
        cannot: replaying a departed member's old frames does not refill the registry."""
        member = self.registry.get(header.sender_id)
        if member is not None:
            return member
        held = self.registry.held(header.sender_id)
        if held is None or header.timestamp <= held[1]:
            raise UnknownSender(f"{header.sender_id!r} is not a registered member")
        return Member(registration=held[0], last_seen=held[1])

    def _broadcast_key(self, header: EnvelopeHeader, now: int) -> bytes:
        if self.admission is None:
            return self.swarm_key.key
        if header.epoch is None:
            raise UnknownEpoch("a broadcast in an admitted swarm must name its key epoch")
        return self.admission.epochs.key_for(header.epoch, now)
