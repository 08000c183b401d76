"""A reloaded admin tab stays the admin of the same swarm (browser_app natively, issue 15): same key, same
member list, its members carry on without a new invite; an altered saved state is refused, not replaced."""

from __future__ import annotations

import json

import pytest

from relay_fixtures import running_relay, wait_for, ws_url
from ruvector_edge import browser_app
from ruvector_edge.errors import AdminStateError
from test_browser_app_admission import Store


class AdminStore(Store):
    """bridges/admin-idb.js as a dict: one admin state per swarm id."""


async def open_page(fragment: dict, store: Store, admin_store: AdminStore, port: int) -> browser_app.PageAgent:
    agent, _ = await browser_app._new_agent(browser_app.parse_fragment(fragment), store.load, store.save, admin_store)
    await agent.join_swarm(ws_url(port))
    return browser_app.PageAgent(agent)


async def test_a_reloaded_admin_tab_keeps_its_swarm_key_and_member_list():
    async with running_relay() as relay:
        store, admin_store = Store(), AdminStore()
        admin = await open_page({"found": "admitted", "role": "coordinator", "id": "boss"}, store, admin_store, relay.port)
        swarm_id = admin.agent.swarm.swarm_id
        made = await admin.act("create_invite", {"uses": 2, "hours": 1})
        bob = await open_page({"invite": made["token"], "role": "worker", "id": "bob"}, Store(), AdminStore(), relay.port)
        reloaded = None
        try:
            key = admin.agent.swarm.admission.require_key()
            await admin.stop()  # the tab reloads
            reloaded = await open_page({"swarm": swarm_id, "role": "coordinator", "id": "boss"}, store, admin_store,
                                       relay.port)
            view = reloaded.snapshot()["admission"]
            assert view["admin"] and reloaded.agent.swarm.swarm_id == swarm_id
            assert reloaded.agent.swarm.admission.require_key() == key
            assert [m["agent_id"] for m in view["members"]] == ["bob", "boss"]
            await wait_for(lambda: "bob" in reloaded.agent.swarm.registry, timeout=10, what="the admin to see bob again")
            await reloaded.act("remove_member", {"agent_id": "bob"})  # still its member to remove
            await wait_for(lambda: bob.agent.refusal is not None, timeout=10, what="bob to be dropped")

            saved = json.loads(admin_store.records[swarm_id])
            saved["state"]["epoch"] = 0  # back to a key bob held
            admin_store.records[swarm_id] = json.dumps(saved)
            await reloaded.stop()
            reloaded = None
            with pytest.raises(AdminStateError, match="not signed"):
                await open_page({"swarm": swarm_id, "role": "coordinator", "id": "boss"}, store, admin_store, relay.port)
        finally:
            for page in (bob, reloaded):
                if page is not None:
                    await page.stop()
