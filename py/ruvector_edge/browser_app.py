"""The page's agent: what the web app's worker calls (Pyodide only).

`start(invite)` creates one SwarmAgent from an invite read from the URL fragment
({"swarm_key": hex, "role"?: str, "id"?: str, "relay_url": "ws(s)://host/ws"}) and
joins the swarm through the browser links; `snapshot()` returns everything the
page shows in one call (identity and the peer table), so one worker request
per refresh is enough.
"""
from __future__ import annotations

import os
from typing import Any

_agent: Any = None


def parse_invite(invite: dict[str, Any]) -> tuple[bytes, Any, str, str | None]:
    """(swarm key, role, agent id, relay URL) from an invite; ValueError when it is unusable."""
    from ruvector_edge.agent import AgentRole

    key_hex = str(invite.get("swarm_key") or "").strip().lower()
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError("the invite's swarm_key must be 64 hex characters")
    role_name = str(invite.get("role") or "worker").lower()
    try:
        role = AgentRole(role_name)
    except ValueError:
        raise ValueError(f"unknown role {role_name!r}: use one of {[r.value for r in AgentRole]}") from None
    agent_id = str(invite.get("id") or f"tab-{os.urandom(2).hex()}")
    return key, role, agent_id, invite.get("relay_url") or None


async def start(invite: dict[str, Any]) -> dict[str, Any]:
    """Create and join the page's agent (once); returns `snapshot()`."""
    global _agent
    if _agent is not None:
        return snapshot()
    key, role, agent_id, relay_url = parse_invite(invite)
    from ruvector_edge.agent import SwarmAgent, SwarmConfig
    from ruvector_edge.transport.browser import join_swarm_browser  # Pyodide only

    agent = await SwarmAgent.new(SwarmConfig(agent_id=agent_id, role=role, swarm_key=key))
    await join_swarm_browser(agent, relay_url)
    _agent = agent
    return snapshot()


def snapshot() -> dict[str, Any]:
    """This agent and its peers, JSON-friendly; {"joined": False} before start()."""
    agent = _agent
    if agent is None:
        return {"joined": False}
    now_ms = agent.swarm.runtime.clock.now_ms()
    peers = []
    for row in agent.peer_table():
        hb = row.get("last_heartbeat")
        role = row.get("role")
        peers.append({
            "agent_id": row["agent_id"],
            "role": getattr(role, "value", role),
            "transport": agent.path_to(row["agent_id"]) or getattr(row.get("transport"), "value", row.get("transport")),
            "status": row["status"],
            "last_heartbeat_age_s": None if hb is None else round(max(0, now_ms - hb) / 1000, 1),
        })
    return {
        "joined": True,
        "agent_id": agent.agent_id,
        "role": agent.config.role.value,
        "fingerprint": agent.swarm.identity.fingerprint,
        "swarm_id": agent.swarm.swarm_id,
        "peers": peers,
    }
