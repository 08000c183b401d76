"""The web app's Python glue, natively: invite parsing and the snapshot before joining."""
import pytest

from ruvector_edge import browser_app
from ruvector_edge.agent import AgentRole


def test_invite_defaults_to_a_worker_with_a_tab_id():
    key, role, agent_id, relay = browser_app.parse_invite({"swarm_key": "AB" * 32, "relay_url": "ws://h:1/ws"})
    assert key == bytes.fromhex("ab" * 32)
    assert role is AgentRole.WORKER
    assert agent_id.startswith("tab-") and len(agent_id) == 8
    assert relay == "ws://h:1/ws"


def test_invite_role_and_id_are_taken_from_the_fragment():
    _, role, agent_id, relay = browser_app.parse_invite({"swarm_key": "00" * 32, "role": "scout", "id": "me"})
    assert (role, agent_id, relay) == (AgentRole.SCOUT, "me", None)


@pytest.mark.parametrize("invite", [{}, {"swarm_key": "zz"}, {"swarm_key": "00" * 31}, {"swarm_key": "00" * 32, "role": "boss"}])
def test_bad_invites_are_refused(invite):
    with pytest.raises(ValueError):
        browser_app.parse_invite(invite)


def test_snapshot_before_joining():
    assert browser_app.snapshot() == {"joined": False}
