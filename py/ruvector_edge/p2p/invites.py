"""Invites: an admin-signed, expiring, use-limited ticket to trade for a membership certificate.

An invite carries no key: leaking one gives a stranger at most the uses left on it
before it expires, and the admin, who counts uses, refuses the rest. Relays check
an invite's signature and expiry (no secret needed) before troubling the admin.
In a link it travels as base64url of its canonical JSON, in the URL fragment
(`#invite=...`), which browsers never send to a server.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import ExpiredInvite, InvalidCertificate, InvalidInvite, InviteExhausted, MalformedMessage, WrongSwarm
from ..platform.base import CryptoProvider
from . import wire
from .certificates import MAX_ROLES, _roles, check_issuer
from .records import MAX_RECORD_BYTES, SignedRecord

MAX_INVITE_USES = 1000


@dataclass(frozen=True)
class Invite(SignedRecord):
    TYPE: ClassVar[str] = "invite"

    swarm: str
    issuer: bytes
    invite_id: str  # 16 random bytes, hex: what the admin counts uses against
    roles: tuple[str, ...]  # capabilities a joiner may ask for
    max_uses: int
    expires_at: int
    sig: bytes = b""

    def unsigned_fields(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "swarm": self.swarm,
            "issuer": self.issuer.hex(),
            "invite_id": self.invite_id,
            "roles": list(self.roles),
            "max_uses": self.max_uses,
            "expires_at": self.expires_at,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> "Invite":
        cls._expect(obj)
        return cls(
            swarm=wire.get_id(obj, "swarm"),
            issuer=wire.get_hex(obj, "issuer", 32),
            invite_id=wire.get_hex(obj, "invite_id", 16).hex(),
            roles=_roles(obj, "roles"),
            max_uses=wire.get_int(obj, "max_uses", 1, MAX_INVITE_USES),
            expires_at=wire.get_int(obj, "expires_at"),
            sig=wire.get_hex(obj, "sig", 64),
        )

    async def verify(self, crypto: CryptoProvider, swarm_id: str, now: int) -> None:
        """Raise unless the swarm's admin signed this invite and it has not expired (uses are the admin's count)."""
        if self.swarm != swarm_id:
            raise WrongSwarm(f"invite is for swarm {self.swarm!r}")
        try:
            check_issuer(self.swarm, self.issuer, "invite")
        except InvalidCertificate as exc:
            raise InvalidInvite(str(exc)) from None
        if now >= self.expires_at:
            raise ExpiredInvite(f"invite {self.invite_id} expired at {self.expires_at}")
        if not await crypto.verify(self.issuer, self.signing_bytes(), self.sig):
            raise InvalidInvite(f"invite {self.invite_id} is not signed by the admin")

    def to_token(self) -> str:
        """The invite as it goes in a link fragment: unpadded base64url of its canonical JSON."""
        return base64.urlsafe_b64encode(self.to_json()).rstrip(b"=").decode("ascii")

    @classmethod
    def from_token(cls, token: str) -> "Invite":
        if type(token) is not str or len(token) > MAX_RECORD_BYTES * 4 // 3 + 4:
            raise MalformedMessage("invite token must be a short string")
        try:
            data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise MalformedMessage("invite token is not base64url") from None
        return cls.from_json(data)


class InviteLedger:
    """The admin's count of what each of its invites has been used for (sans-I/O, bounded).

    `consume` is the only way a use is spent; `withdraw` spends every use left (the admin
    removed a member who came in through it, or cancelled the link)."""

    def __init__(self, max_invites: int = 10_000) -> None:
        self.max_invites = max_invites
        self._left: dict[str, tuple[int, int]] = {}  # invite id -> (uses left, expires at)

    def issued(self, invite: Invite) -> None:
        if len(self._left) >= self.max_invites:
            raise InvalidInvite(f"{self.max_invites} invites outstanding; let some expire first")
        self._left[invite.invite_id] = (invite.max_uses, invite.expires_at)

    def check(self, invite: Invite, now: int) -> None:
        left = self._left.get(invite.invite_id)
        if left is None or left[0] <= 0:
            raise InviteExhausted(f"invite {invite.invite_id} has no uses left")
        if now >= left[1]:
            raise ExpiredInvite(f"invite {invite.invite_id} expired")

    def consume(self, invite: Invite, now: int) -> int:
        """Spend one use (after `check`); the uses left."""
        self.check(invite, now)
        uses, expires_at = self._left[invite.invite_id]
        self._left[invite.invite_id] = (uses - 1, expires_at)
        return uses - 1

    def uses_left(self, invite_id: str) -> int:
        return self._left.get(invite_id, (0, 0))[0]

    def withdraw(self, invite_id: str) -> None:
        if invite_id in self._left:
            self._left[invite_id] = (0, self._left[invite_id][1])

    def entries(self) -> list[tuple[str, int, int]]:
        """(invite id, uses left, expires at) of every invite counted, for the admin's saved state."""
        return [(invite_id, uses, expires_at) for invite_id, (uses, expires_at) in self._left.items()]

    def restore(self, invite_id: str, uses_left: int, expires_at: int) -> None:
        """Count an invite again as saved by `entries` (an admin restarting); its signature was checked then."""
        if len(self._left) >= self.max_invites and invite_id not in self._left:
            raise InvalidInvite(f"{self.max_invites} invites outstanding; let some expire first")
        self._left[invite_id] = (uses_left, expires_at)

    def prune(self, now: int) -> None:
        for invite_id in [i for i, (_, expires_at) in self._left.items() if expires_at <= now]:
            del self._left[invite_id]


__all__ = ["Invite", "InviteLedger", "MAX_INVITE_USES", "MAX_ROLES"]
