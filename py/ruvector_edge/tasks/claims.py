"""Signed, time-limited, exclusive leases on tasks, resolved the same way by every member.

Claims travel by broadcast and arrive in any order, so the holder is not "the
first claim I heard of" but a pure function of the *set* of signed claims:
sort by (claimed_at, claimant); walk the list keeping the current lease; a claim
made while another claimant's lease is live loses, a claim at or after its expiry
takes over, the holder's own later claim renews. Two members holding the same
claims therefore name the same holder; a tie at the same millisecond goes to the
lexicographically smaller claimant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

from ..errors import FutureTimestamp, LeaseHeld, MalformedMessage, OversizedMessage, StaleTimestamp
from ..p2p import wire
from .envelope import TaskRecord

__all__ = ["Claim", "ClaimBook", "resolve_holder"]

MAX_LEASE_MS = 3_600_000


@dataclass(frozen=True)
class Claim(TaskRecord):
    """A lease on `task_id` from `claimed_at` until `claimed_at + lease_ms`, bound to one envelope by its hash."""

    TYPE: ClassVar[str] = "task_claim"

    swarm: str
    task_id: str
    task_envelope_hash: bytes
    claimant: str
    claimed_at: int
    lease_ms: int
    sig: bytes = b""

    @property
    def expires_at(self) -> int:
        return self.claimed_at + self.lease_ms

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "task_id": self.task_id,
            "task_envelope_hash": self.task_envelope_hash.hex(),
            "claimant": self.claimant,
            "claimed_at": self.claimed_at,
            "lease_ms": self.lease_ms,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "Claim":
        cls._expect(obj)
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            task_id=wire.get_id(obj, "task_id"),
            task_envelope_hash=wire.get_hex(obj, "task_envelope_hash", 32),
            claimant=wire.get_id(obj, "claimant"),
            claimed_at=wire.get_int(obj, "claimed_at"),
            lease_ms=wire.get_int(obj, "lease_ms", 1, MAX_LEASE_MS),
            sig=wire.get_hex(obj, "sig", 64),
        )


def resolve_holder(claims: Iterable[Claim], now: int) -> Claim | None:
    """The claim whose lease is live at `now`, by the order-independent rule in the module docstring."""
    current: Claim | None = None
    for claim in sorted(claims, key=lambda c: (c.claimed_at, c.claimant, c.lease_ms)):
        if claim.claimed_at > now:
            break
        if current is None or claim.claimant == current.claimant or claim.claimed_at >= current.expires_at:
            current = claim
    if current is None or now >= current.expires_at:
        return None
    return current


class ClaimBook:
    """Claims per task, sans-I/O: callers verify a claim's signature (registry key) before `accept`.

    Bounded: at most `max_claims_per_task` claims per task and `max_tasks` tasks;
    `forget(task_id)` once a task has a verified receipt. Claims whose timestamp
    falls outside [now - max_past_ms, now + max_skew_ms] are refused, so nobody can
    win a race by back-dating a claim arbitrarily far.
    """

    def __init__(
        self,
        swarm: str,
        *,
        lease_ms: int = 30_000,
        max_past_ms: int = 60_000,
        max_skew_ms: int = 5_000,
        max_claims_per_task: int = 64,
        max_tasks: int = 10_000,
    ) -> None:
        if not 1 <= lease_ms <= MAX_LEASE_MS:
            raise MalformedMessage(f"lease_ms must be in [1, {MAX_LEASE_MS}]")
        self.swarm = swarm
        self.lease_ms = lease_ms
        self.max_past_ms = max_past_ms
        self.max_skew_ms = max_skew_ms
        self.max_claims_per_task = max_claims_per_task
        self.max_tasks = max_tasks
        self._claims: dict[str, dict[tuple[str, int], Claim]] = {}

    def holder(self, task_id: str, now: int) -> Claim | None:
        return resolve_holder(self._claims.get(task_id, {}).values(), now)

    def claims(self, task_id: str) -> list[Claim]:
        return sorted(self._claims.get(task_id, {}).values(), key=lambda c: (c.claimed_at, c.claimant))

    async def claim(self, identity: Any, claimant: str, task_id: str, envelope_hash: bytes, now: int) -> Claim:
        """Sign and record our own lease, or raise LeaseHeld if another claimant's lease is live."""
        held = self.holder(task_id, now)
        if held is not None and held.claimant != claimant:
            raise LeaseHeld(task_id, held.claimant, held.expires_at)
        unsigned = Claim(
            swarm=self.swarm,
            task_id=task_id,
            task_envelope_hash=envelope_hash,
            claimant=claimant,
            claimed_at=now,
            lease_ms=self.lease_ms,
        )
        signed: Claim = await unsigned.sign(identity)
        self.accept(signed, now)
        return signed

    def accept(self, claim: Claim, now: int) -> Claim | None:
        """Record a claim (signature already verified) and return the task's holder at `now`.

        A claim that loses the race is still recorded: the set must be the same
        everywhere for the rule to agree, and a loser's claim can never win later
        because the walk is over timestamps, not arrival order.
        """
        if claim.swarm != self.swarm:
            raise MalformedMessage(f"claim is for swarm {claim.swarm!r}")
        if claim.claimed_at < now - self.max_past_ms:
            raise StaleTimestamp(f"claim at {claim.claimed_at} is older than {self.max_past_ms} ms")
        if claim.claimed_at > now + self.max_skew_ms:
            raise FutureTimestamp(f"claim at {claim.claimed_at} is ahead by more than {self.max_skew_ms} ms")
        per_task = self._claims.get(claim.task_id)
        if per_task is None:
            if len(self._claims) >= self.max_tasks:
                raise OversizedMessage(f"claim book already tracks {self.max_tasks} tasks")
            per_task = self._claims[claim.task_id] = {}
        known = per_task.get((claim.claimant, claim.claimed_at))
        if known is None:
            if len(per_task) >= self.max_claims_per_task:
                raise OversizedMessage(f"task {claim.task_id!r} already has {self.max_claims_per_task} claims")
            others = [c for c in per_task.values() if c.task_envelope_hash != claim.task_envelope_hash]
            if others:
                raise MalformedMessage(f"claim on {claim.task_id!r} names a different envelope")
            per_task[(claim.claimant, claim.claimed_at)] = claim
        return self.holder(claim.task_id, now)

    def forget(self, task_id: str) -> None:
        self._claims.pop(task_id, None)
