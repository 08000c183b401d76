"""The secure P2P core: identities, membership, replay protection, signed encrypted envelopes."""

from .envelope import Envelope, EnvelopeHeader
from .identity import IdentityManager, fingerprint
from .keys import SwarmKey, derive_session_key, swarm_id_for
from .records import Heartbeat, Registration
from .registry import Member, MemberRegistry, MemberStatus
from .replay import ReplayGuard
from .swarm import P2PSwarm, Published, ReceivedMessage, SecurityConfig

__all__ = [
    "Envelope",
    "EnvelopeHeader",
    "Heartbeat",
    "IdentityManager",
    "Member",
    "MemberRegistry",
    "MemberStatus",
    "P2PSwarm",
    "Published",
    "ReceivedMessage",
    "Registration",
    "ReplayGuard",
    "SecurityConfig",
    "SwarmKey",
    "derive_session_key",
    "fingerprint",
    "swarm_id_for",
]
