"""An agent's side of admission over the relay protocol, without I/O (RelaySession calls it).

A member of an admitted swarm adds its certificate (or, not yet admitted, its
invite) to the hello; takes certificates, revocations and epoch keys the relay
passes on; and, when it is the admin, answers admission requests: a valid unspent
invite becomes a certificate and the current key sealed to the joiner, anything
else a refusal with its reason. Bad input from the relay is logged, counted in
`P2PSwarm.admission_rejected` and changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from ..canonical import canonicalize
from ..errors import MalformedMessage, RejectedInput
from ..p2p.certificates import Certificate, Revocation
from ..p2p.epochs import EpochKeyDelivery
from ..p2p.invites import Invite
from ..p2p.records import Registration
from ..p2p.swarm import P2PSwarm
from . import relay_wire as rw

log = logging.getLogger(__name__)

MAX_RECORDS_PER_FRAME = 10_000

def with_admission(hello_text: str, swarm: P2PSwarm) -> str:
    """The hello with our certificate or invite added (open swarms: unchanged)."""
    if swarm.admission is None:
        return hello_text
    hello = rw.decode(hello_text, len(hello_text) + 1)
    assert isinstance(hello, rw.Control)
    return canonicalize({**hello.body, **swarm.admission.hello_fields()}).decode("utf-8")


async def on_op(swarm: P2PSwarm, frame: rw.Control) -> list[str]:
    """Handle one admission frame from the relay; the frames to send back."""
    if swarm.admission is None:
        return []
    try:
        return await _HANDLERS[frame.op](swarm, frame.body)
    except RejectedInput as exc:
        swarm.admission_rejected[type(exc).__name__] += 1
        log.warning("%s: %s from the relay refused: %s", swarm.agent_id, frame.op, exc)
        return []


async def _admitted(swarm: P2PSwarm, body: dict[str, Any]) -> list[str]:
    await swarm.accept_admission(Certificate.from_dict(_object(body, "certificate")),
                                 EpochKeyDelivery.from_dict(_object(body, "delivery")))
    log.info("%s: admitted to %s", swarm.agent_id, swarm.swarm_id)
    return []


async def _certificates(swarm: P2PSwarm, body: dict[str, Any]) -> list[str]:
    for item in _list(body, "certificates"):
        try:
            await swarm.accept_certificate(Certificate.from_dict(item))
        except RejectedInput as exc:
            swarm.admission_rejected[type(exc).__name__] += 1
    return []


async def _revoked(swarm: P2PSwarm, body: dict[str, Any]) -> list[str]:
    for item in _list(body, "revocations"):
        revocation = Revocation.from_dict(item)
        if await swarm.accept_revocation(revocation):
            for hook in swarm.on_revoked:
                await hook(revocation.agent_id)
    return []


async def _epoch(swarm: P2PSwarm, body: dict[str, Any]) -> list[str]:
    await swarm.accept_epoch(EpochKeyDelivery.from_dict(_object(body, "delivery")))
    return []


async def _admit_request(swarm: P2PSwarm, body: dict[str, Any]) -> list[str]:
    authority = swarm.admission.authority if swarm.admission is not None else None
    if authority is None:
        return []
    conn = body.get("conn")
    try:
        registration = Registration.from_dict(_object(body, "registration"))
        invite = Invite.from_dict(_object(body, "invite"))
        cert, delivery = await authority.admit(registration, invite)
    except RejectedInput as exc:
        swarm.admission_rejected[type(exc).__name__] += 1
        return [rw.encode("refuse", conn=conn, reason=f"{type(exc).__name__}: {exc}"[:100])]
    await swarm.accept_certificate(cert)
    return [rw.encode("admit", conn=conn, certificate=cert.to_dict(), delivery=delivery.to_dict())]


_HANDLERS = {
    "admitted": _admitted,
    "certificates": _certificates,
    "revoked": _revoked,
    "epoch": _epoch,
    "admit-request": _admit_request,
}


def _object(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise MalformedMessage(f"{key} must be an object")
    return value


def _list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list) or len(value) > MAX_RECORDS_PER_FRAME:
        raise MalformedMessage(f"{key} must be a list of at most {MAX_RECORDS_PER_FRAME}")
    return value
