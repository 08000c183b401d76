"""The page's side of admission, natively (browser_app without Pyodide): what the URL fragment asks for, the
page founding an admitted swarm, joining by invite, the admin's "Invite someone" and "Remove" actions, and a
member coming back after a reload with the certificate it kept instead of spending another invite."""

from __future__ import annotations

import json

import pytest

from relay_fixtures import running_relay, wait_for, ws_url
from ruvector_edge import browser_app
from ruvector_edge.agent import AgentRole
from ruvector_edge.errors import IdentityFileError, InvalidPageAction, MalformedMessage, NotAdmitted
from ruvector_edge.p2p.certificates import admitted_swarm_id
from ruvector_edge.p2p.invites import Invite


@pytest.fixture
async def relay():
    async with running_relay() as server:
        yield server


class Store:
    """The page's IndexedDB record store (bridges/identity-idb.js), as a dict."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}

    async def load(self, name: str) -> str | None:
        return self.records.get(name)

    async def save(self, name: str, text: str) -> None:
        self.records[name] = text


async def page_for(fragment: dict, store: Store, port: int, **join) -> browser_app.PageAgent:
    """What browser_app.start does, with the native relay link in place of the browser's."""
    request = browser_app.parse_fragment(fragment)
    agent, swarm_id = await browser_app._new_agent(request, store.load, store.save)
    member = swarm_id is not None and agent.swarm.admission.authority is None

    async def save_membership(text: str) -> None:
        await store.save(browser_app.membership_name(agent.swarm.swarm_id, agent.agent_id), text)

    page = browser_app.PageAgent(agent, save_membership=save_membership if member else None)
    try:
        await agent.join_swarm(ws_url(port), **join)
    except BaseException:
        await agent.leave()
        raise
    await page.keep_membership()
    return page


def test_a_fragment_names_one_way_in():
    assert browser_app.parse_fragment({"found": "admitted", "role": "coordinator", "id": "boss"}).mode == "found"
    member = browser_app.parse_fragment({"swarm": "adm-" + "0" * 32, "id": "me"})
    assert (member.mode, member.swarm_id) == ("member", "adm-" + "0" * 32)
    with pytest.raises(ValueError):  # an open swarm's id, or no id to come back as
        browser_app.parse_fragment({"swarm": "0123456789abcdef", "id": "me"})
    with pytest.raises(ValueError):
        browser_app.parse_fragment({"swarm": "adm-" + "0" * 32})
    with pytest.raises(MalformedMessage):
        browser_app.parse_fragment({"invite": "not-an-invite!"})


async def test_the_page_founds_an_admitted_swarm_invites_and_removes(relay):
    admin_store, bob_store = Store(), Store()
    admin = await page_for({"found": "admitted", "role": "coordinator", "id": "boss"}, admin_store, relay.port)
    bob = None
    try:
        swarm_id = admin.agent.swarm.swarm_id
        assert swarm_id == admitted_swarm_id(admin.agent.swarm.identity.ed25519_public)
        assert browser_app.identity_name(swarm_id, "boss") in admin_store.records  # a reload comes back as admin
        made = await admin.act("create_invite", {"uses": 2, "hours": 0.5})
        assert made["uses"] == 2 and Invite.from_token(made["token"]).swarm == swarm_id
        for bad in ({"uses": 0}, {"uses": 1001}, {"uses": True}, {"hours": 0}, {"hours": float("nan")}, {"hours": 1e9}):
            with pytest.raises(InvalidPageAction):
                await admin.act("create_invite", bad)
        assert len(admin.invites) == 1  # refused requests made no invite

        bob = await page_for({"invite": made["token"], "role": "worker", "id": "bob"}, bob_store, relay.port)
        assert bob.agent.swarm.admission.admitted
        with pytest.raises(InvalidPageAction, match="only the admin"):
            await bob.act("create_invite", {})
        with pytest.raises(InvalidPageAction, match="only the admin"):
            await bob.act("remove_member", {"agent_id": "boss"})
        view = admin.snapshot()["admission"]
        assert view["admin"] and [m["agent_id"] for m in view["members"]] == ["bob", "boss"]
        assert view["invites"][0]["uses_left"] == 1
        assert bob.snapshot()["admission"]["admin"] is False and "invites" not in bob.snapshot()["admission"]

        assert (await admin.act("remove_member", {"agent_id": "bob"})) == {"removed": "bob", "epoch": 1}
        await wait_for(lambda: bob.agent.refusal is not None, what="bob's page to learn it was removed")
        assert "RevokedMember" in bob.snapshot()["refusal"]
        assert [m["agent_id"] for m in admin.snapshot()["admission"]["members"]] == ["boss"]
        assert admin.snapshot()["admission"]["invites"][0]["uses_left"] == 0  # what was left of bob's link is spent
    finally:
        for page in (bob, admin):
            if page is not None:
                await page.agent.leave()


async def test_a_reloaded_member_comes_back_with_its_certificate_not_another_invite(relay):
    admin_store, carol_store = Store(), Store()
    admin = await page_for({"found": "admitted", "id": "boss"}, admin_store, relay.port)
    carol = again = None
    try:
        swarm_id = admin.agent.swarm.swarm_id
        token = (await admin.act("create_invite", {"uses": 1}))["token"]
        carol = await page_for({"invite": token, "id": "carol"}, carol_store, relay.port)
        saved = json.loads(carol_store.records[browser_app.membership_name(swarm_id, "carol")])
        assert saved["certificate"]["agent_id"] == "carol" and saved["epoch"] == 0
        await carol.agent.leave()
        assert await admin.agent.rekey() == 1  # while carol is away: the relay keeps her new key

        again = await page_for({"swarm": swarm_id, "id": "carol"}, carol_store, relay.port)  # the invite is spent
        assert again.agent.swarm.identity.ed25519_public == carol.agent.swarm.identity.ed25519_public
        await wait_for(lambda: again.agent.swarm.admission.epochs.epoch == 1, what="carol to catch up on epoch 1")
        await again.keep_membership()
        assert json.loads(carol_store.records[browser_app.membership_name(swarm_id, "carol")])["epoch"] == 1

        with pytest.raises(NotAdmitted, match="join with an invite link"):
            await page_for({"swarm": swarm_id, "id": "stranger"}, Store(), relay.port)
        damaged = Store()
        damaged.records = {**carol_store.records, browser_app.membership_name(swarm_id, "carol"): '{"version": 1}'}
        with pytest.raises(IdentityFileError):
            await page_for({"swarm": swarm_id, "id": "carol"}, damaged, relay.port)
    finally:
        for page in (again, admin):
            if page is not None:
                await page.agent.leave()


def test_an_open_fragment_still_joins_an_open_swarm():
    request = browser_app.parse_fragment({"swarm_key": "11" * 32, "role": "scout", "id": "s"})
    assert (request.mode, request.role, request.invite) == ("open", AgentRole.SCOUT, None)
