"""The member registry: the only place a sender's public key comes from.

A message is never trusted for the key that verifies it; the registry binds an
agent id to the Ed25519 key of its first valid registration and refuses to
rebind it. Liveness comes only from heartbeats whose signature verifies under
that bound key. A member that departs is forgotten except for that binding,
which is held for a while (see `depart`), so churn does not grow the registry;
heard from again meanwhile, it is readmitted under it (see `readmit`).
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from ..errors import (
    BadSignature,
    FutureTimestamp,
    KeyConflict,
    RegistrationRejected,
    ReplayDetected,
    StaleTimestamp,
    UnknownSender,
    WrongSwarm,
)
from ..platform.base import Clock, CryptoProvider
from .records import Heartbeat, Registration

EARLIEST_JOINED_AT = 1_577_836_800_000  # 2020-01-01T00:00:00Z: anything earlier is a bogus clock


class MemberStatus(str, enum.Enum):
    ACTIVE = "active"
    SUSPECT = "suspect"
    GONE = "gone"


@dataclass
class Member:
    registration: Registration
    last_seen: int
    last_heartbeat: int | None = None
    heartbeat_seq: int = -1
    load: float = 0.0
    queue_depth: int = 0

    @property
    def agent_id(self) -> str:
        return self.registration.agent_id

    @property
    def ed25519_pubkey(self) -> bytes:
        return self.registration.ed25519_pubkey

    @property
    def x25519_pubkey(self) -> bytes:
        return self.registration.x25519_pubkey


class MemberRegistry:
    def __init__(
        self,
        swarm_id: str,
        crypto: CryptoProvider,
        clock: Clock | None = None,
        *,
        suspect_after_ms: int = 15_000,
        gone_after_ms: int = 45_000,
        past_window_ms: int = 5 * 60 * 1000,
        future_skew_ms: int = 60 * 1000,
        max_members: int = 10_000,
        max_departed: int = 10_000,
        hold_departed_ms: int | None = None,
    ) -> None:
        """`max_members` bounds the members present; `max_departed` is the room for the bindings of departed
        ones beyond that, each held `hold_departed_ms` (default: the timestamp windows, see `depart`)."""
        if not 0 < suspect_after_ms < gone_after_ms:
            raise ValueError("need 0 < suspect_after_ms < gone_after_ms")
        self.swarm_id = swarm_id
        self.crypto = crypto
        self.clock = clock or Clock()
        self.suspect_after_ms = suspect_after_ms
        self.gone_after_ms = gone_after_ms
        self.past_window_ms = past_window_ms
        self.future_skew_ms = future_skew_ms
        self.max_members = max_members
        self.max_departed = max_departed
        self.hold_departed_ms = past_window_ms + future_skew_ms if hold_departed_ms is None else hold_departed_ms
        self._members: dict[str, Member] = {}
        # id -> (the registration it left under, departed at), oldest first
        self._departed: OrderedDict[str, tuple[Registration, int]] = OrderedDict()
        # Told each id whose binding is released: state an owner keeps per bound id (a replay window) goes with it.
        self.on_released: list[Callable[[str], None]] = []

    # Registration ----------------------------------------------------------
    async def register(self, registration: Registration) -> Member:
        """Admit or refresh a member; raise a `RegistrationRejected` (or subclass) and change nothing otherwise."""
        now = self.clock.now_ms()
        reg = registration
        if reg.swarm != self.swarm_id:
            raise WrongSwarm(f"registration is for swarm {reg.swarm!r}, not {self.swarm_id!r}")
        if len(reg.x25519_pubkey) != 32 or not any(reg.x25519_pubkey):
            raise RegistrationRejected("x25519 public key is missing or all-zero")
        if len(reg.ed25519_pubkey) != 32:
            raise RegistrationRejected("ed25519 public key must be 32 bytes")
        if not reg.capabilities:
            raise RegistrationRejected("capabilities must not be empty")
        if not EARLIEST_JOINED_AT <= reg.joined_at <= now + self.future_skew_ms:
            raise RegistrationRejected(f"joined_at {reg.joined_at} is not a plausible time")
        self._release_expired(now)
        self._check_binding(reg)
        existing = self._members.get(reg.agent_id)
        if existing is None and len(self._members) >= self.max_members:
            raise RegistrationRejected(f"registry is full ({self.max_members} members)")
        if existing is None and reg.agent_id not in self._departed \
                and len(self._members) + len(self._departed) >= self.max_members + self.max_departed:
            raise RegistrationRejected(f"registry is full ({len(self._departed)} departed agents' ids held), try later")
        await reg.verify(self.crypto, self.swarm_id)
        self._check_binding(reg)  # re-check: another registration may have landed, or its holder left, while we awaited
        existing = self._members.get(reg.agent_id)
        if existing is None:
            self._departed.pop(reg.agent_id, None)
            member = self._members[reg.agent_id] = Member(registration=reg, last_seen=now)
            return member
        if reg.joined_at > existing.registration.joined_at:
            existing.registration = reg  # a newer self-signed registration may change capabilities
        # No liveness refresh: anyone holding a copy of a registration can resend it.
        return existing

    def _check_binding(self, reg: Registration) -> None:
        existing = self._members.get(reg.agent_id)
        held = existing.registration if existing is not None else self._departed.get(reg.agent_id, (None,))[0]
        if held is not None and held.ed25519_pubkey != reg.ed25519_pubkey:
            raise KeyConflict(f"{reg.agent_id!r} is already registered under another key")

    def depart(self, agent_id: str) -> None:
        """Forget a member that left, except its id -> key binding (the registration it left under), held for
        `hold_departed_ms`.

        Why keep the binding: until then the departed agent may still be live (reconnecting after a dropped
        connection, which takes seconds), and envelopes and heartbeats it signed still pass receivers'
        timestamp windows, which is what the default hold spans. If a different key could take the id in that
        time, the newcomer would inherit the departed agent's identity for everything still in flight, and
        direct frames for it would reach the newcomer. Why no more than that: an id bound forever makes the
        registry grow with every agent ever seen until it refuses everyone. When `max_departed` bindings are
        held, newcomers are refused until the oldest age out; evicting one early instead would let a flood of
        registrations free any id for a takeover.
        """
        member = self._members.pop(agent_id, None)
        if member is None:
            return
        self._departed[agent_id] = (member.registration, self.clock.now_ms())
        self._departed.move_to_end(agent_id)
        self._release_expired(self.clock.now_ms())

    def held(self, agent_id: str) -> tuple[Registration, int] | None:
        """The registration a departed member left under and when it left, while its binding is held."""
        entry = self._departed.get(agent_id)
        if entry is None or entry[1] + self.hold_departed_ms <= self.clock.now_ms():
            return None
        return entry

    def readmit(self, agent_id: str) -> Member:
        """A departed member heard from again is a member again, under the registration it left with.

        Only for what proves it is still here: a frame it signed after it left, verified under the held key
        (P2PSwarm's receive path). A member can be reported gone while it is not (it left the relay but still
        talks over WebRTC or BroadcastChannel, or its relay dropped it for a moment); without this its frames
        would be refused until it registered again, which nothing would ask it to do."""
        now = self.clock.now_ms()
        self._release_expired(now)
        entry = self._departed.get(agent_id)
        if entry is None:
            raise UnknownSender(f"{agent_id!r} is not a registered or departed member")
        if len(self._members) >= self.max_members:
            raise RegistrationRejected(f"registry is full ({self.max_members} members)")
        del self._departed[agent_id]
        member = self._members[agent_id] = Member(registration=entry[0], last_seen=now)
        return member

    def _release_expired(self, now: int) -> None:
        while self._departed:
            agent_id, (_, departed_at) = next(iter(self._departed.items()))
            if departed_at + self.hold_departed_ms > now:
                return
            del self._departed[agent_id]
            self._released(agent_id)

    def _released(self, agent_id: str) -> None:
        for listener in self.on_released:
            listener(agent_id)

    def bindings(self) -> int:
        """Ids bound to a key right now: members present plus departed ones still held."""
        self._release_expired(self.clock.now_ms())
        return len(self._members) + len(self._departed)

    def departed(self) -> list[str]:
        """Ids of departed members whose binding is still held, oldest departure first."""
        self._release_expired(self.clock.now_ms())
        return list(self._departed)

    # Heartbeats --------------------------------------------------------------
    async def heartbeat(self, heartbeat: Heartbeat) -> Member:
        """Record a signed heartbeat: known sender, fresh, newer than the last, signed by the registered key."""
        now = self.clock.now_ms()
        hb = heartbeat
        if hb.swarm != self.swarm_id:
            raise WrongSwarm(f"heartbeat is for swarm {hb.swarm!r}")
        member = self.require(hb.agent_id)
        if hb.timestamp < now - self.past_window_ms:
            raise StaleTimestamp(f"heartbeat from {hb.agent_id!r} is {now - hb.timestamp} ms old")
        if hb.timestamp > now + self.future_skew_ms:
            raise FutureTimestamp(f"heartbeat from {hb.agent_id!r} is {hb.timestamp - now} ms ahead")
        if hb.seq <= member.heartbeat_seq:
            raise ReplayDetected(f"heartbeat seq {hb.seq} from {hb.agent_id!r} is not newer than {member.heartbeat_seq}")
        if not await self.crypto.verify(member.ed25519_pubkey, hb.signing_bytes(), hb.sig):
            raise BadSignature(f"heartbeat from {hb.agent_id!r} does not verify under its registered key")
        if hb.seq <= member.heartbeat_seq:  # a concurrent heartbeat won while we verified
            raise ReplayDetected(f"heartbeat seq {hb.seq} from {hb.agent_id!r} is not newer than {member.heartbeat_seq}")
        member.heartbeat_seq = hb.seq
        member.last_heartbeat = hb.timestamp
        member.last_seen = max(member.last_seen, now)
        member.load = hb.load
        member.queue_depth = hb.queue_depth
        return member

    def touch(self, agent_id: str) -> None:
        """Any verified message is evidence of life."""
        member = self._members.get(agent_id)
        if member is not None:
            member.last_seen = max(member.last_seen, self.clock.now_ms())

    # Queries -------------------------------------------------------------------
    def require(self, agent_id: str) -> Member:
        member = self._members.get(agent_id)
        if member is None:
            raise UnknownSender(f"{agent_id!r} is not a registered member")
        return member

    def get(self, agent_id: str) -> Member | None:
        return self._members.get(agent_id)

    def public_key(self, agent_id: str) -> bytes:
        """The key `agent_id` is bound to, also while it is held for a departed member: a record it signed
        before leaving (a task receipt another member passes on) still verifies until the binding is released."""
        registration = self.registration_of(agent_id)
        if registration is None:
            raise UnknownSender(f"{agent_id!r} is not a registered member")
        return registration.ed25519_pubkey

    def registration_of(self, agent_id: str) -> Registration | None:
        """A member's registration, or a departed member's while its binding is held."""
        member = self._members.get(agent_id)
        if member is not None:
            return member.registration
        held = self.held(agent_id)
        return None if held is None else held[0]

    def status(self, agent_id: str) -> MemberStatus:
        silence = self.clock.now_ms() - self.require(agent_id).last_seen
        if silence < self.suspect_after_ms:
            return MemberStatus.ACTIVE
        if silence < self.gone_after_ms:
            return MemberStatus.SUSPECT
        return MemberStatus.GONE

    def members(self) -> list[Member]:
        return list(self._members.values())

    def active_members(self) -> list[Member]:
        return [m for m in self._members.values() if self.status(m.agent_id) is MemberStatus.ACTIVE]

    def remove(self, agent_id: str) -> None:
        """Forget a revoked member at once, a binding held since it left included: the admission book refuses
        its id from then on, so nothing of it needs keeping (a member that merely left goes through `depart`)."""
        present = self._members.pop(agent_id, None) is not None
        if self._departed.pop(agent_id, None) is not None or present:
            self._released(agent_id)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._members
