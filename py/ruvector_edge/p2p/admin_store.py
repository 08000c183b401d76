"""The admin's state as a signed document, and the admin's swarm opened from it (sans-I/O).

A restarted `edge-coordinator` or a reloaded admin tab must stay the admin of the same
swarm: same epoch key, same members, same revocations, same invites with the same uses
left; otherwise every member needs a new invite and a revoked member's old certificate
is honoured again by a relay that restarted with it. `AdminAuthority.state()` is what
to keep; this module wraps it in a document signed by the admin's own key (type
`admin-state`, bound to the swarm id), so a state that was edited, truncated or copied
from another swarm is refused rather than trusted. Where the text is kept is the
caller's: a 0600 file natively (admin_file.py), IndexedDB in the page
(web/bridges/admin-idb.js). The document holds the epoch key: never log it.

Not covered: rolling the store back to an older signed state of the same admin (it
would undo later revocations); that needs a counter kept somewhere the attacker cannot
write, which neither runtime offers.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Sequence

from ..canonical import canonicalize
from ..errors import AdminStateError, RejectedInput
from ..platform import Runtime, default_runtime
from . import wire
from .admission import Admission, AdminAuthority
from .certificates import admitted_swarm_id
from .epochs import DEFAULT_GRACE_MS
from .identity import IdentityManager
from .swarm import P2PSwarm, SecurityConfig

STATE_TYPE = "admin-state"
STATE_VERSION = 1
MAX_STATE_BYTES = 64 * 1024 * 1024  # 10,000 certificates and 100,000 revocations fit with room to spare
_KEYS = frozenset({"type", "version", "swarm", "admin_id", "saved_at", "state", "sig"})


async def sign_state(authority: AdminAuthority, admin_id: str) -> str:
    """The authority's state as signed JSON text (secret: it holds the epoch key)."""
    doc = {"type": STATE_TYPE, "version": STATE_VERSION, "swarm": authority.swarm_id, "admin_id": admin_id,
           "saved_at": authority.clock.now_ms(), "state": authority.state()}
    sig = await authority.identity.sign(canonicalize(doc))
    return canonicalize({**doc, "sig": sig.hex()}).decode("utf-8")


async def open_state(identity: IdentityManager, text: str) -> tuple[str, dict[str, Any]]:
    """(admin id, state) of a document `sign_state` made with this identity; AdminStateError otherwise."""
    try:
        doc = wire.parse_json_object(text, MAX_STATE_BYTES)
        wire.expect_keys(doc, _KEYS, "admin state")
        if doc["type"] != STATE_TYPE or doc["version"] != STATE_VERSION:
            raise AdminStateError(f"not an admin state of version {STATE_VERSION}")
        if doc["swarm"] != admitted_swarm_id(identity.ed25519_public):
            raise AdminStateError("the saved admin state is of another swarm than this identity's")
        sig = wire.get_hex(doc, "sig", 64)
        unsigned = {k: v for k, v in doc.items() if k != "sig"}
        if not await identity.crypto.verify(identity.ed25519_public, canonicalize(unsigned), sig):
            raise AdminStateError("the saved admin state is not signed by this admin: altered, refused")
        admin_id = wire.get_id(doc, "admin_id")
        if not isinstance(doc["state"], dict):
            raise AdminStateError("state must be an object")
    except RejectedInput as exc:
        raise AdminStateError(f"malformed admin state: {exc}") from None
    return admin_id, doc["state"]


async def open_admin_swarm(
    identity: IdentityManager,
    capabilities: Sequence[str],
    load: Callable[[], Awaitable[str | None]],
    save: Callable[[str], Awaitable[Any]],
    *,
    agent_id: str | None = None,
    new_agent_id: str = "coordinator",
    runtime: Runtime | None = None,
    grace_ms: int = DEFAULT_GRACE_MS,
    config: SecurityConfig | None = None,
) -> P2PSwarm:
    """The admitted swarm this identity is admin of, as saved by `load()`, or a new one when nothing is saved;
    from then on every change is saved with `save(text)` before it takes effect outside.

    `agent_id`: our id (default: the saved one, else `new_agent_id`). AdminStateError for a saved state that
    does not check out: the caller must not found a new swarm over it silently."""
    runtime = runtime or default_runtime()
    text = await load()
    if text is None:
        agent_id = agent_id or new_agent_id
        swarm = await P2PSwarm.found_admitted(agent_id, capabilities, runtime=runtime, identity=identity,
                                              grace_ms=grace_ms, config=config)
    else:
        saved_id, state = await open_state(identity, str(text))
        agent_id = agent_id or saved_id
        wire.check_id(agent_id, "agent_id")
        swarm_id = admitted_swarm_id(identity.ed25519_public)
        admission = Admission(swarm_id, runtime.crypto, runtime.clock, grace_ms=grace_ms)
        authority = AdminAuthority(identity, runtime.crypto, runtime.random, runtime.clock, admission)
        await authority.restore(state)
        admission.authority = authority
        registration = await identity.create_registration(agent_id, capabilities, swarm=swarm_id, clock=runtime.clock)
        cert = await authority.certify(agent_id, identity.ed25519_public, identity.x25519_public, capabilities)
        await admission.accept_certificate(cert, identity, registration)
        swarm = P2PSwarm(agent_id, None, identity, registration, runtime, config or SecurityConfig(), admission)
        await swarm.registry.register(registration)
    authority = swarm.admission.authority

    async def persist() -> None:
        await save(await sign_state(authority, agent_id))

    authority.on_change = persist
    await persist()  # a new swarm is on disk before its first invite; a restored one records our new certificate
    return swarm
