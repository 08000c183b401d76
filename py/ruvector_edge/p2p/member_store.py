"""A member's admission kept as a document signed by its own key, and the swarm resumed from it (sans-I/O).

A native agent restarted under the same id must come back as the member it was: the
admin pins an id to its first key and may have spent the agent's one-use invite, so a
fresh identity or a second trade of the invite is refused. What it keeps is what a
reloaded page keeps (its certificate and the current epoch key, beside its identity);
here the document is signed by the member's own Ed25519 key (type `member-state`,
bound to the agent id and swarm id), so a file that was edited, or copied from another
agent's directory, is refused rather than trusted. Where the text is kept is the
caller's: a 0600 file natively (member_file.py). It holds the epoch key: never log it.
"""

from __future__ import annotations

from typing import Sequence

from ..canonical import canonicalize
from ..errors import MemberStateError, RejectedInput
from ..platform import Runtime
from . import wire
from .certificates import Certificate
from .identity import IdentityManager
from .swarm import P2PSwarm

STATE_TYPE = "member-state"
STATE_VERSION = 1
MAX_STATE_BYTES = 64 * 1024  # one certificate and one key
_KEYS = frozenset({"type", "version", "swarm", "agent_id", "certificate", "epoch", "key", "sig"})


async def sign_membership(swarm: P2PSwarm) -> str:
    """An admitted member's certificate and current epoch key as signed JSON text (secret: it holds the key)."""
    admission = swarm.admission
    if admission is None or admission.certificate is None:
        raise MemberStateError("only an admitted member has a membership to keep")
    epoch, key = admission.require_key()
    doc = {"type": STATE_TYPE, "version": STATE_VERSION, "swarm": swarm.swarm_id, "agent_id": swarm.agent_id,
           "certificate": admission.certificate.to_dict(), "epoch": epoch, "key": key.hex()}
    sig = await swarm.identity.sign(canonicalize(doc))
    return canonicalize({**doc, "sig": sig.hex()}).decode("utf-8")


def saved_agent_id(text: str) -> str:
    """The agent id a saved membership names (before it is checked: only to pick the id to resume as)."""
    try:
        return wire.get_id(wire.parse_json_object(text, MAX_STATE_BYTES), "agent_id")
    except RejectedInput as exc:
        raise MemberStateError(f"malformed member state: {exc}") from None


async def resume_membership(identity: IdentityManager, text: str, capabilities: Sequence[str], *,
                            runtime: Runtime | None = None) -> P2PSwarm:
    """The swarm a document `sign_membership` made with this identity resumes; MemberStateError otherwise."""
    try:
        doc = wire.parse_json_object(text, MAX_STATE_BYTES)
        wire.expect_keys(doc, _KEYS, "member state")
        if doc["type"] != STATE_TYPE or doc["version"] != STATE_VERSION:
            raise MemberStateError(f"not a member state of version {STATE_VERSION}")
        sig = wire.get_hex(doc, "sig", 64)
        unsigned = {k: v for k, v in doc.items() if k != "sig"}
        if not await identity.crypto.verify(identity.ed25519_public, canonicalize(unsigned), sig):
            raise MemberStateError("the saved membership is not signed by this agent's key: altered or another "
                                   "agent's, refused")
        if not isinstance(doc["certificate"], dict):
            raise MemberStateError("certificate must be an object")
        certificate = Certificate.from_dict(doc["certificate"])
        agent_id = wire.get_id(doc, "agent_id")
        if certificate.swarm != wire.get_id(doc, "swarm") or certificate.agent_id != agent_id:
            raise MemberStateError("the saved certificate is not of the saved swarm and agent id")
        epoch, key = wire.get_int(doc, "epoch"), wire.get_hex(doc, "key", 32)
        return await P2PSwarm.resume_admitted(agent_id, certificate, epoch, key, capabilities, identity=identity,
                                              runtime=runtime)
    except RejectedInput as exc:  # a refused certificate (AdmissionRefused) too
        raise MemberStateError(f"saved membership refused: {type(exc).__name__}: {exc}") from None
