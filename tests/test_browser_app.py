"""The web app's Python glue, natively: invite parsing and the snapshot before joining."""
import pytest

from ruvector_edge import browser_app
from ruvector_edge.agent import AgentRole
from ruvector_edge.errors import InvalidRelayUrl


def test_invite_defaults_to_a_worker_with_a_tab_id():
    request = browser_app.parse_fragment({"swarm_key": "AB" * 32, "relay_url": "ws://h:1/ws"})
    assert request.mode == "open" and request.swarm_key == bytes.fromhex("ab" * 32)
    assert request.role is AgentRole.WORKER
    assert request.agent_id.startswith("tab-") and len(request.agent_id) == 8
    assert request.relays == ("ws://h:1/ws",)


def test_invite_role_and_id_are_taken_from_the_fragment():
    request = browser_app.parse_fragment({"swarm_key": "00" * 32, "role": "scout", "id": "me"})
    assert (request.role, request.agent_id, request.relays) == (AgentRole.SCOUT, "me", ())


def test_an_invites_relay_list_replaces_the_pages_own_relay():
    """A federation's invite lists its relays; the page's own relay (relay_url) is only the default."""
    request = browser_app.parse_fragment({"swarm_key": "00" * 32, "relay_url": "ws://page:1/ws",
                                          "relays": "ws://a:1/ws, ws://b:2 ,wss://c:3/ws/"})
    assert request.relays == ("ws://a:1/ws", "ws://b:2/ws", "wss://c:3/ws")


@pytest.mark.parametrize("relays", ["http://a:1/ws", "ws://a:1/ws,file:///etc/passwd", " , ", "ws://" + "a" * 3000])
def test_an_invites_bad_relay_list_is_refused_before_joining(relays):
    with pytest.raises(InvalidRelayUrl):
        browser_app.parse_fragment({"swarm_key": "00" * 32, "relay_url": "ws://page:1/ws", "relays": relays})


@pytest.mark.parametrize("invite", [{}, {"swarm_key": "zz"}, {"swarm_key": "00" * 31}, {"swarm_key": "00" * 32, "role": "boss"}])
def test_bad_invites_are_refused(invite):
    with pytest.raises(ValueError):
        browser_app.parse_fragment(invite)


def test_snapshot_before_joining():
    assert browser_app.snapshot() == {"joined": False}
