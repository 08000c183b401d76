"""The web app's page agent natively, over a real relay: identity records, the message log,
role behaviour (workers learn, scouts fill memory) and the panels' snapshot and actions."""

from __future__ import annotations

import base64
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay_fixtures import running_relay, wait_for, ws_url
from ruvector_edge import browser_app
from ruvector_edge.agent import AgentRole, SwarmAgent, SwarmConfig
from ruvector_edge.browser_app import PageAgent, SCOUT_CORPUS
from ruvector_edge.errors import IdentityFileError, RejectedInput
from ruvector_edge.p2p.identity import IdentityManager
from ruvector_edge.platform import default_runtime

pytestmark = pytest.mark.timeout(45)
KEY = bytes(range(32))


async def joined_pages(port: int, *specs: tuple) -> list[PageAgent]:
    """Page agents joined to the relay, from (id, role[, extra capabilities]) each."""
    pages = []
    for agent_id, role, *extra in specs:
        config = SwarmConfig(agent_id=agent_id, role=role, swarm_key=KEY, coordinator_url=None,
                             capabilities=browser_app.role_capabilities(role, *extra), sync_interval_ms=100)
        agent = await SwarmAgent.new(config)
        page = PageAgent(agent, rng=random.Random(agent_id))  # seeded: the learning test is repeatable
        await agent.join_swarm(ws_url(port), timeout=10)
        pages.append(page)
    ids = {p.agent.agent_id for p in pages}
    for page in pages:
        await wait_for(lambda: all(page.agent.peers.get(i) is not None and page.agent.peers[i].joined
                                   for i in ids - {page.agent.agent_id}), what="every JOIN")
    return pages


# --- identity records -------------------------------------------------------------------


async def test_identity_is_created_once_and_read_back_with_the_same_fingerprint():
    saved: dict[str, str] = {}

    async def load(name):
        return saved.get(name)

    async def save(name, raw):
        saved[name] = raw

    crypto = default_runtime().crypto
    name = browser_app.identity_name("swarm-x", "tab-1")
    first, new = await browser_app.load_or_create_identity(crypto, name, load, save)
    again, new_again = await browser_app.load_or_create_identity(crypto, name, load, save)
    assert (new, new_again) == (True, False)
    assert list(saved) == ["swarm-x/tab-1"]
    assert again.fingerprint == first.fingerprint and again.x25519_public == first.x25519_public
    assert await again.sign(b"m") == await first.sign(b"m")  # Ed25519 is deterministic: the same key


@pytest.mark.parametrize("raw", [
    "", "null", "[]", "{}", '{"version": 2}', '{"version": 1}',
    '{"version": 1, "ed25519_seed": "!!", "x25519_private": "AAAA"}',
    json.dumps({"version": 1, "ed25519_seed": base64.b64encode(b"x" * 31).decode(),
                "x25519_private": base64.b64encode(b"y" * 32).decode()}),
])
async def test_a_damaged_saved_identity_is_an_error_and_is_not_replaced(raw):
    saved = {"n": raw}

    async def load(name):
        return saved.get(name)

    async def save(name, value):
        saved[name] = value

    with pytest.raises(IdentityFileError):
        await browser_app.load_or_create_identity(default_runtime().crypto, "n", load, save)
    assert saved == {"n": raw}


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.text(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=4),
    max_leaves=12).map(json.dumps)))
async def test_hostile_identity_records_raise_only_identity_file_error(raw):
    try:
        identity = await browser_app.identity_from_secret_json(default_runtime().crypto, raw)
    except IdentityFileError:
        return
    assert isinstance(identity, IdentityManager)


def test_role_capabilities():
    assert browser_app.role_capabilities(AgentRole.WORKER) == ("worker", "wasm")
    assert browser_app.role_capabilities(AgentRole.SPECIALIST, "gpu, vision,,gpu") == ("specialist", "wasm", "gpu", "vision")
    assert browser_app.role_capabilities(AgentRole.SCOUT) == ("scout",)
    assert browser_app.role_capabilities(AgentRole.COORDINATOR) == ("coordinator",)


# --- the page agent over a real relay -----------------------------------------------------


async def test_worker_episodes_learn_the_corridor_and_peers_agree_on_the_best_action():
    async with running_relay() as relay:
        worker, scout = await joined_pages(relay.port, ("w1", AgentRole.WORKER), ("s1", AgentRole.SCOUT))
        try:
            returns = [await worker.learn_episode() for _ in range(40)]
            assert list(worker.curve) == returns
            env = worker.env
            assert max(returns) == env.optimal_return  # the all-right walk was found
            best_here = await worker.agent.get_best_action("c0", ["left", "right"])
            assert best_here is not None and best_here[0] == "right"
            await worker.agent.sync_patterns()
            await wait_for(lambda: scout.agent.intelligence.best_action("c0", ["left", "right"]) == best_here,
                           timeout=10, what="the scout to see the worker's patterns")
        finally:
            for page in (worker, scout):
                await page.stop()


async def test_scout_feed_stores_each_line_once_and_another_page_finds_it_with_provenance():
    async with running_relay() as relay:
        scout, other = await joined_pages(relay.port, ("s1", AgentRole.SCOUT), ("w1", AgentRole.WORKER))
        try:
            assert await scout.scout_feed("\n".join(SCOUT_CORPUS), source="corpus") == len(SCOUT_CORPUS)
            assert await scout.scout_feed(SCOUT_CORPUS[0] + "\n\n  \n") == 0  # nothing twice, blanks skipped
            result = await scout.act("scout_feed", {"text": "the quick brown fox jumps"})
            assert result == {"stored": 1}
            await scout.agent.sync_memories()
            await wait_for(lambda: len(other.agent.memory) == len(SCOUT_CORPUS) + 1, timeout=10, what="memories to arrive")
            hits = await other.act("search_memory", {"query": "brown fox", "k": 3})
            assert hits[0]["content"] == "the quick brown fox jumps"
            assert hits[0]["owner"] == "s1" and hits[0]["source"] == "page"
        finally:
            for page in (scout, other):
                await page.stop()


async def test_log_snapshot_and_actions():
    async with running_relay() as relay:
        a, b = await joined_pages(relay.port, ("a", AgentRole.COORDINATOR), ("b", AgentRole.WORKER))
        try:
            assert await a.act("learn", {"state": "probe", "action": "go", "reward": 2.5}) == {"ok": True}
            await wait_for(lambda: b.log.by_kind["SYNC_PATTERNS"] >= 1, timeout=10, what="b to log the sync")
            assert await b.act("best_action", {"state": "probe", "actions": "stay, go"}) == {"action": "go", "confidence": pytest.approx(b.agent.intelligence.best_action("probe", ["go"])[1], abs=1e-3)}
            assert await b.act("best_action", {"state": "unknown", "actions": ["x"]}) is None
            await b.measure_latency()
            assert b.latency_ms is not None and b.latency_ms > 0
            await b.sample()
            await b.sample()
            snap = b.snapshot()
            assert snap["agent_id"] == "b" and snap["role"] == "worker" and snap["capabilities"] == ["worker", "wasm"]
            assert [p["agent_id"] for p in snap["peers"]] == ["a"] and snap["peers"][0]["role"] == "coordinator"
            assert {"state": "probe", "action": "go", "q": 2.5, "visits": 1} .items() <= snap["patterns"][0].items()
            kinds = {row["kind"] for row in snap["log"]}
            assert {"JOIN", "SYNC_PATTERNS", "PONG"} <= kinds and all(row["sender"] == "a" for row in snap["log"])
            assert snap["log_total"] == b.log.total and len(snap["series"]["t"]) == 2
            assert snap["series"]["patterns"][-1] == 1 and snap["series"]["latency_ms"][-1] == b.latency_ms
            json.dumps(snap)  # everything the page receives is plain JSON
            with pytest.raises(ValueError):
                await b.act("format_disk", {})
            with pytest.raises(ValueError):
                await b.act("store_memory", {"text": "   "})
            assert len(b.agent.memory) == 0
        finally:
            for page in (a, b):
                await page.stop()


def test_message_log_is_bounded():
    from ruvector_edge.protocol import MessageKind, SwarmMessage
    import asyncio

    log = browser_app.MessageLog(limit=5)
    for i in range(12):
        asyncio.run(log.record(f"p{i}", SwarmMessage(MessageKind.SIGNAL, {})))
    assert log.total == 12 and len(log.recent) == 5
    assert [r["sender"] for r in log.rows(3)] == ["p11", "p10", "p9"]



async def test_a_sample_task_submitted_from_a_page_is_executed_by_a_worker_and_its_receipt_verifies():
    async with running_relay() as relay:
        coord, worker = await joined_pages(relay.port, ("c", AgentRole.COORDINATOR), ("w", AgentRole.WORKER))
        try:
            submitted = await coord.act("submit_sample_task", {"input": "swarm of tabs"})
            receipt = await coord.act("wait_receipt", {"task_id": submitted["task_id"], "timeout": 20})
            assert receipt["executor"] == "w" and receipt["status"] == "Success"
            assert receipt["output"] == "SWARM OF TABS"
            snap = coord.snapshot()
            row = next(r for r in snap["tasks"] if r["task_id"] == submitted["task_id"])
            assert row["state"] == "done" and row["verified"] is True and row["executor"] == "w"
            cids = [a["cid"] for a in snap["artifacts"]]
            assert receipt["output_cid"] in cids and len(cids) == 3 and all(a["local"] for a in snap["artifacts"])
        finally:
            for page in (coord, worker):
                await page.stop()



async def test_a_task_for_a_specialists_capability_goes_to_that_specialist_not_to_the_workers():
    async with running_relay() as relay:
        coord, worker, specialist = await joined_pages(
            relay.port, ("c", AgentRole.COORDINATOR), ("w", AgentRole.WORKER), ("sp", AgentRole.SPECIALIST, "vision"))
        try:
            assert specialist.snapshot()["capabilities"] == ["specialist", "wasm", "vision"]
            submitted = await coord.act("submit_sample_task", {"input": "eyes", "capability": "vision"})
            receipt = await coord.act("wait_receipt", {"task_id": submitted["task_id"], "timeout": 20})
            assert (receipt["executor"], receipt["output"]) == ("sp", "EYES")
            assert all(row["task_id"] != submitted["task_id"] or row["claimant"] == "sp" for row in worker.snapshot()["tasks"])
        finally:
            for page in (coord, worker, specialist):
                await page.stop()


HOSTILE_ACTIONS = [
    ("", {}), ("__init__", {}), ("act", {"name": "learn", "args": {}}), ("learn; import os", {}), (None, {}), (7, {}),
    ("learn", []), ("learn", "state=x"), ("learn", {"state": "s"}), ("learn", {"state": "s", "action": "a", "reward": 1, "x": 2}),
    ("learn", {"state": "s", "action": "a", "reward": "1"}), ("learn", {"state": "s", "action": "a", "reward": True}),
    ("learn", {"state": "s", "action": "a", "reward": float("nan")}), ("learn", {"state": "s", "action": "a", "reward": 1e400}),
    ("learn", {"state": "", "action": "a", "reward": 1}), ("learn", {"state": ["s"], "action": "a", "reward": 1}),
    ("learn", {"state": "s" * 20_000, "action": "a", "reward": 1}), ("learn", {"state": "s", "action": None, "reward": 1}),
    ("best_action", {"state": "s", "actions": []}), ("best_action", {"state": "s", "actions": ""}),
    ("best_action", {"state": "s", "actions": [1, 2]}), ("best_action", {"state": "s", "actions": {"a": 1}}),
    ("best_action", {"state": "s", "actions": ["a"] * 300}),
    ("store_memory", {"text": ""}), ("store_memory", {"text": "   \n"}), ("store_memory", {"text": 5}),
    ("store_memory", {"text": "x" * 20_000}), ("search_memory", {"query": "q", "k": 0}), ("search_memory", {"query": "q", "k": "5"}),
    ("search_memory", {"query": "q", "k": 5.0}), ("search_memory", {"query": None}), ("scout_feed", {"text": ["a"]}),
    ("store_artifact", {"text": None}), ("submit_sample_task", {"input": b"x"}), ("submit_sample_task", {"capability": "x" * 100}), ("wait_receipt", {"task_id": "nope", "timeout": -1}),
    ("wait_receipt", {"task_id": "nope", "timeout": float("inf")}), ("wait_receipt", {"task_id": 3, "timeout": 1}),
]


async def test_hostile_page_actions_get_typed_errors_and_change_nothing():
    async with running_relay() as relay:
        (page,) = await joined_pages(relay.port, ("solo", AgentRole.COORDINATOR))
        try:
            before = json.dumps({k: v for k, v in page.snapshot().items() if k not in ("log", "series", "peers")}, sort_keys=True)
            for name, args in HOSTILE_ACTIONS:
                try:
                    await page.act(name, args)
                except RejectedInput:
                    pass
                else:
                    pytest.fail(f"accepted: {name!r} {args!r:.80}")
                after = json.dumps({k: v for k, v in page.snapshot().items() if k not in ("log", "series", "peers")}, sort_keys=True)
                assert after == before, (name, args)
        finally:
            await page.stop()


@settings(max_examples=80, deadline=None)
@given(name=st.sampled_from(["learn", "best_action", "store_memory", "search_memory", "scout_feed", "store_artifact", "nope"]),
       args=st.dictionaries(st.sampled_from(["state", "action", "reward", "actions", "text", "query", "k", "extra"]),
                            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.lists(st.integers(), max_size=2),
                            max_size=4))
async def test_fuzzed_page_actions_raise_only_rejected_input(name, args):
    agent = await SwarmAgent.new(SwarmConfig(agent_id="fuzz", swarm_key=KEY, coordinator_url=None))
    page = PageAgent(agent)
    try:
        await page.act(name, args)
    except RejectedInput:
        pass
    except RuntimeError as exc:  # a valid action that then needs the network: this agent never joined
        assert "not connected" in str(exc)
    finally:
        await agent.leave()
