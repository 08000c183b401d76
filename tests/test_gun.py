"""GUN-protocol peer: HAM, wire, SQLite persistence, and real GUN.js (npm `gun`) peers in Node
talking to our /gun endpoint, with the official Node relay run side by side for comparison."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruvector_edge.gun import GunEngine, GunLimits, SqliteGraphStore, add_gun_routes, ham, js_stringify, peer_with
from ruvector_edge.gun.graph import GraphLimits
from ruvector_edge.gun.ham import APPLY, DEFER, DROP
from ruvector_edge.gun.wire import WireLimits, valid_value

CLIENTS = Path(__file__).parent / "gun_clients"
GUN_VERSION = "0.2020.1241"
pytestmark = pytest.mark.timeout(60)


# -- pure HAM ------------------------------------------------------------------

def test_ham_rules_as_gun():
    now = 1_000_000.0
    assert ham(10, "a", 5, "b", now) == APPLY               # higher state wins
    assert ham(4, "z", 5, "b", now) == DROP                 # older loses
    assert ham(5, "b", 5, "a", now) == APPLY                # tie: higher JSON text wins
    assert ham(5, "a", 5, "b", now) == DROP
    assert ham(5, "a", 5, "a", now) == DROP                 # same
    assert ham(5, 1, 5, "1", now) == APPLY                  # '"1"' < '1' ('"' is 0x22 < '1' 0x31)
    assert ham(5, "1", 5, 1, now) == DROP
    assert ham(5, {"#": "x"}, 5, "zzz", now) == APPLY       # '{' > '"'
    assert ham(5, None, 5, True, now) == DROP               # 'null' < 'true'
    assert ham(now + 1, "a", 5, "b", now) == DEFER          # future
    assert ham(5, "a", float("-inf"), None, now, known_present=False) == APPLY
    # UTF-16 code-unit order, as JavaScript compares strings: U+1F600 is D83D DE00 < FF5E
    assert ham(5, "\uff5e", 5, "\U0001F600", now) == APPLY
    assert ham(5, "\U0001F600", 5, "\uff5e", now) == DROP


def test_js_stringify_matches_node():
    values = [0.1, 1.0, 1e21, 1e-7, 123456789012345680000.0, -0.0, 2 ** 53, "a\ud800\"\n\x01é", None, True,
              {"#": "s/x"}, 1795491861209.123]
    script = "const v=JSON.parse(require('fs').readFileSync(0,'utf8'));console.log(JSON.stringify(v.map(x=>JSON.stringify(x))))"
    payload = json.dumps(values)
    expected = json.loads(subprocess.run(["node", "-e", script], input=payload.encode(), capture_output=True,
                                         check=True).stdout)
    assert [js_stringify(v) for v in json.loads(payload)] == expected


# -- sans-I/O engine ------------------------------------------------------------

class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _put(msg_id, soul, key, value, state):
    return json.dumps({"#": msg_id, "put": {soul: {"_": {"#": soul, ">": {key: state}}, key: value}}})


def test_engine_handshake_dedup_relay_and_acks():
    eng = GunEngine(clock=Clock(1e12), pid="RELAY")
    (a, hello), = eng.open("A")
    assert json.loads(hello)["dam"] == "?" and json.loads(hello)["pid"] == "RELAY"
    eng.open("B")
    # A answers our handshake: pid learnt, nothing sent back
    assert eng.receive("A", json.dumps({"#": "h1", "@": json.loads(hello)["#"], "dam": "?", "pid": "PA"})) == []
    # B opens its own handshake: we answer with ours
    [(to, text)] = eng.receive("B", json.dumps({"#": "h2", "dam": "?", "pid": "PB"}))
    assert to == "B" and json.loads(text) == {"#": json.loads(text)["#"], "dam": "?", "pid": "RELAY", "@": "h2"}
    eng.receive("B", json.dumps({"#": "gs", "get": {"#": "s"}}))           # B subscribes to "s"
    out = eng.receive("A", _put("p1", "s", "k", "v", 5))
    sent = {(to, json.loads(t).get("@")) for to, t in out}
    assert ("A", "p1") in sent and ("B", None) in sent
    relayed = next(json.loads(t) for to, t in out if to == "B")
    assert relayed["#"] == "p1" and set(relayed["><"].split(",")) == {"PA", "PB"}
    assert eng.receive("A", _put("p1", "s", "k", "w", 6)) == []           # duplicate id ignored
    assert eng.get("s") == {"_": {"#": "s", ">": {"k": 5}}, "k": "v"}
    # B asks; A is asked too (relayed get); A's answer is routed back to B only
    out = eng.receive("B", json.dumps({"#": "g1", "get": {"#": "other"}}))
    assert [json.loads(t) for to, t in out if to == "B"][0] == {"#": json.loads(out[0][1])["#"], "@": "g1"}
    assert [to for to, t in out if json.loads(t).get("#") == "g1"] == ["A"]
    out = eng.receive("A", json.dumps({"#": "r1", "@": "g1", "put": {"other": {"_": {"#": "other", ">": {"x": 1}}, "x": 2}}}))
    assert [to for to, _ in out] == ["B"]
    assert eng.get("other", "x")["x"] == 2
    # a peer named in >< is skipped
    out = eng.receive("A", json.dumps({"#": "p2", "><": "PB,zz", "put": json.loads(_put("p2", "s", "k", "z", 7))["put"]}))
    assert [to for to, _ in out] == ["A"]


def test_a_put_reaches_only_the_peers_that_asked_for_its_souls():
    """As the official relay (AXE): a GET subscribes its connection to the soul; a put goes on to the subscribers
    of its souls, with only those souls; a peer that never asked gets nothing, a relay we dialled gets every put."""
    eng = GunEngine(clock=Clock(1e12), pid="RELAY")
    for conn in ("W", "S", "T", "N"):
        eng.open(conn)
    eng.open("UP", upstream=True)
    eng.receive("S", json.dumps({"#": "g1", "get": {"#": "a"}}))
    eng.receive("T", json.dumps({"#": "g2", "get": {"#": "b", ".": "k"}}))  # a GET of one key subscribes the soul
    two = {s: {"_": {"#": s, ">": {"k": 5}}, "k": s} for s in ("a", "b", "c")}
    out = eng.receive("W", json.dumps({"#": "p1", "put": two}))
    got = {to: sorted(json.loads(t)["put"]) for to, t in out if "put" in json.loads(t)}
    assert got == {"S": ["a"], "T": ["b"], "UP": ["a", "b", "c"]}
    assert {to for to, t in out if json.loads(t).get("@") == "p1"} == {"W"}          # the writer's ack
    out = eng.receive("W", _put("p2", "c", "k", "v", 6))                              # "c": nobody asked
    assert sorted(to for to, _ in out) == ["UP", "W"]
    # our own writes (an agent embedded in the relay) follow the same rule
    assert sorted(to for to, _ in eng.put("a", {"x": 1})) == ["S", "UP"]
    # subscriptions are bounded: past the bound a connection gets every put, it misses none
    small = GunEngine(limits=GunLimits(max_subscriptions=2), clock=Clock(1e12))
    small.open("W")
    small.open("S")
    for i in range(3):
        small.receive("S", json.dumps({"#": f"g{i}", "get": {"#": f"s{i}"}}))
    assert small.metrics()["subscriptions_overflowed"] == 1
    assert sorted(to for to, _ in small.receive("W", _put("p", "never-asked", "k", 1, 5))) == ["S", "W"]


def test_a_large_forwarded_put_goes_out_in_pages_gun_js_reads_whole(gun_js):
    """A put of 900 keys is one frame of ~70K characters: forwarded as it is, GUN.js in Node would lose keys
    (paging.py); forwarded, it is cut into pages of at most `page_chars`, which GUN.js reads whole."""
    eng = GunEngine(clock=Clock(2e12), pid="RELAY")
    eng.open("W")
    eng.open("S")
    eng.receive("S", json.dumps({"#": "g", "get": {"#": "big"}}))
    keys = {f"key-{i:04}": "v" * 40 for i in range(900)}
    states = {k: 1_796_594_485_045 + i / 999 for i, k in enumerate(keys)}
    raw = json.dumps({"#": "p", "put": {"big": {"_": {"#": "big", ">": states}, **keys}}})
    assert len(raw) > 32_768
    frames = [text for to, text in eng.receive("W", raw) if to == "S"]
    assert len(frames) > 1 and all(len(f) <= eng.limits.page_chars for f in frames)
    assert all(_gun_js_parses(gun_js, frames))
    pages = [json.loads(f) for f in frames]
    assert pages[0]["#"] == "p" and len({p["#"] for p in pages}) == len(pages)   # each page its own id
    whole = {}
    for page in pages:
        whole.update({k: v for k, v in page["put"]["big"].items() if k != "_"})
        assert all(page["put"]["big"]["_"][">"][k] == states[k] for k in page["put"]["big"] if k != "_")
    assert whole == keys
    # our own large writes too
    frames = [text for to, text in eng.put("big2", keys) if to == "S"]
    assert frames == []  # S never asked for "big2"
    eng.receive("S", json.dumps({"#": "g2", "get": {"#": "big2"}}))
    frames = [text for to, text in eng.put("big2", keys) if to == "S"]
    assert len(frames) > 1 and all(len(f) <= eng.limits.page_chars for f in frames)


def test_engine_malformed_limits_odd_souls_and_deferral(tmp_path):
    clock = Clock(1e12)
    limits = GunLimits(wire=WireLimits(max_message_bytes=4096, max_put_keys=10), graph=GraphLimits(max_deferred=2))
    eng = GunEngine(str(tmp_path / "g.sqlite"), limits=limits, clock=clock)
    eng.open("A")
    bad = ["", "{", "[1,2", "null", "[]", "[5, \"x\"]", '{"#": 5, "get": {"#": "s"}}', '{"get": {}}',
           '{"get": {"#": ""}}', '{"put": 5}', '{"put": {"s": {"_": {"#": "t", ">": {}}}}}',
           '{"put": {"s": {"_": {"#": "s"}, "k": 1}}}', '{"put": {"s": {"_": {"#": "s", ">": {}}, "k": 1}}}',
           '{"put": {"s": {"_": {"#": "s", ">": {"k": "x"}}, "k": 1}}}',
           '{"put": {"s": {"_": {"#": "s", ">": {"k": 1}}, "k": [1]}}}',
           '{"put": {"s": {"_": {"#": "s", ">": {"k": 1}}, "k": {"#": "x", "y": 1}}}}',
           '{"put": {"s": {"_": {"#": "s", ">": {"k": NaN}}, "k": 1}}}',
           '{"put": {"s": {"_": {"#": "s", ">": {"k": 1e999}}, "k": 1}}}',
           "x" * 5000, "[" * 3000 + "]" * 3000, '{"#": "m", "hello": 1}', '{"dam": "!", "err": "boom"}']
    for raw in bad:
        eng.receive("A", raw)
    assert eng.metrics()["malformed"] >= len(bad) - 2
    assert eng.graph.nodes == {}
    keys = {f"k{i}": 1 for i in range(11)}
    eng.receive("A", json.dumps({"put": {"s": {"_": {"#": "s", ">": keys}, **keys}}}))
    assert eng.get("s") is None
    # odd souls and keys round-trip, through SQLite too
    odd = ["a/b|c", "\u0000nul", "quote\"'\\", "\ud800lone", "emoji\U0001F600", "'; DROP TABLE gun_node; --"]
    for i, soul in enumerate(odd):
        [(_, ack)] = eng.receive("A", _put(f"o{i}", soul, soul, soul, 10))
        assert json.loads(ack)["ok"] is True
    # future: deferred until due, bounded; far future refused
    out = eng.receive("A", _put("f1", "fut", "k", "later", clock.t + 5000))
    assert json.loads(out[0][1])["ok"] is True and eng.get("fut") is None
    eng.receive("A", _put("f2", "fut", "k", "latest", clock.t + 5000))  # same state, other value: both wait
    eng.receive("A", _put("f3", "fut", "i", "later", clock.t + 7000))  # queue full: refused
    [(_, ack)] = eng.receive("A", _put("f4", "fut", "k", "x", clock.t + 10 * 365 * 86400e3))
    assert "err" in json.loads(ack)
    m = eng.metrics()
    assert m["deferred_waiting"] == 2 and m["refused_deferred_full"] == 1
    eng.close_store()
    # restart: graph and the deferred queue are back
    eng2 = GunEngine(str(tmp_path / "g.sqlite"), limits=limits, clock=clock)
    for soul in odd:
        assert eng2.get(soul)[soul] == soul
    assert eng2.get("fut") is None and eng2.metrics()["deferred_waiting"] == 2
    clock.t += 5500
    applied = eng2.tick()  # both merged by HAM in heap order; one or both apply depending on that order
    assert applied and set(applied) == {("fut", "k")}
    assert eng2.get("fut") == {"_": {"#": "fut", ">": {"k": 1e12 + 5000}}, "k": "latest"}  # tie: "latest" > "later"
    assert eng2.metrics()["deferred_waiting"] == 0
    eng2.close_store()


# -- real GUN.js peers ------------------------------------------------------------

_NODE_CWD: list[Path] = []  # where GUN.js peers run (they may leave a radata/ folder behind)


@pytest.fixture(scope="session")
def gun_js(tmp_path_factory):
    _NODE_CWD.append(tmp_path_factory.mktemp("gun-node"))
    # node and the `gun` package are the project's own dependencies (package.json, npm ci): a
    # missing one is a broken setup and must fail, not skip.
    node = shutil.which("node")
    assert node, "node is required (the project builds its web app with npm)"
    probe = subprocess.run([node, "-e", "require.resolve('gun')"], cwd=CLIENTS, capture_output=True)
    assert probe.returncode == 0, f"npm package gun@{GUN_VERSION} is not installed: run npm ci"
    return node


class NodeGun:
    """A GUN.js peer in Node (tests/gun_clients/client.js)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.replies: dict[int, asyncio.Future] = {}
        self.events: dict[int, list] = {}
        self.seq = 0
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, node: str, url: str) -> "NodeGun":
        proc = await asyncio.create_subprocess_exec(node, str(CLIENTS / "client.cjs"), url, cwd=_NODE_CWD[-1],
                                                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL)
        while True:  # GUN greets on stdout first
            line = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert line, "GUN client did not start"
            if line.startswith(b'{"ready"'):
                return cls(proc)

    async def _read(self) -> None:
        while line := await self.proc.stdout.readline():
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # GUN's own console output
            if "sub" in msg:
                self.events.setdefault(msg["sub"], []).append(msg)
            elif "id" in msg and msg["id"] in self.replies and not self.replies[msg["id"]].done():
                self.replies[msg["id"]].set_result(msg)

    async def call(self, op: str, path: list, timeout: float = 10, **kw) -> dict:
        self.seq += 1
        fut = self.replies[self.seq] = asyncio.get_running_loop().create_future()
        self.proc.stdin.write((json.dumps({"op": op, "id": self.seq, "path": path, **kw}) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(fut, timeout)
        reply["sub"] = self.seq
        return reply

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.reader.cancel()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


class Ours:
    def __init__(self, db: Path) -> None:
        self.db = db

    async def __aenter__(self):
        self.engine = GunEngine(SqliteGraphStore(self.db))
        app = web.Application()
        add_gun_routes(app, self.engine)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/gun"
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()
        self.engine.close_store()


class Official:
    def __init__(self, node: str, data_dir: Path) -> None:
        self.node, self.data_dir = node, data_dir

    async def __aenter__(self):
        self.proc = await asyncio.create_subprocess_exec(
            self.node, str(CLIENTS / "relay.cjs"), str(self.data_dir), cwd=_NODE_CWD[-1], stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 10)
            assert line, "official relay did not start"
            try:
                port = json.loads(line)["port"]
                break
            except (ValueError, KeyError, TypeError):
                continue
        self.url = f"http://127.0.0.1:{port}/gun"
        return self

    async def __aexit__(self, *exc):
        self.proc.kill()
        await self.proc.wait()


async def test_put_get_on_map_through_our_relay(gun_js, tmp_path):
    async with Ours(tmp_path / "g.sqlite") as relay:
        a, b = await NodeGun.start(gun_js, relay.url), await NodeGun.start(gun_js, relay.url)
        try:
            on = await b.call("on", ["swarm", "presence", "agent-1"])
            mapped = await b.call("map", ["swarm", "patterns"])
            await until(lambda: relay.engine.metrics()["gets"] >= 2)  # b's subscriptions reached the relay
            ack = await a.call("put", ["swarm", "patterns", "edit_ts|coder"], data={"q": 0.9, "visits": 3})
            assert ack["ok"], ack
            ack = await a.call("put", ["swarm", "presence", "agent-1"], data={"online": True})
            assert ack["ok"], ack
            await until(lambda: any(e["data"] == {"online": True} for e in b.events.get(on["sub"], [])))
            await until(lambda: any(e["key"] == "edit_ts|coder" and e["data"] == {"q": 0.9, "visits": 3}
                                    for e in b.events.get(mapped["sub"], [])))
            got = await b.call("once", ["swarm", "patterns", "edit_ts|coder"])
            assert got["data"] == {"q": 0.9, "visits": 3}
            assert relay.engine.get("swarm/patterns/edit_ts|coder")["visits"] == 3
        finally:
            await a.stop()
            await b.stop()
        # a fresh peer reads it from our graph (no other peer holds it)
        c = await NodeGun.start(gun_js, relay.url)
        try:
            assert (await c.call("once", ["swarm", "patterns", "edit_ts|coder"]))["data"] == {"q": 0.9, "visits": 3}
        finally:
            await c.stop()


async def test_native_agent_writes_reach_gun_js(gun_js, tmp_path):
    from ruvector_edge.gun.endpoint import _dispatch
    async with Ours(tmp_path / "g.sqlite") as relay:
        b = await NodeGun.start(gun_js, relay.url)
        try:
            watch = await b.call("on", ["native/agent"])  # the soul itself
            await until(lambda: relay.engine.metrics()["gets"] >= 1)  # b is a peer the put is relayed to
            _dispatch(relay.engine, relay.engine.put("native/agent", {"role": "coder", "load": 0.25}))
            await until(lambda: any(e["data"] == {"role": "coder", "load": 0.25} for e in b.events.get(watch["sub"], [])))
            assert (await b.call("put", ["native/agent"], data={"load": 0.5}))["ok"]
            assert relay.engine.get("native/agent", "load")["load"] == 0.5
        finally:
            await b.stop()


def _gun_js_parses(node: str, frames: list[str]) -> list[bool]:
    """For each frame, whether GUN.js in Node (its lib/yson.js JSON.parseAsync) reads it as JSON.parse does."""
    done = subprocess.run([node, str(CLIENTS / "yson.cjs")], input="".join(json.dumps(f) + "\n" for f in frames),
                          capture_output=True, text=True, cwd=CLIENTS, timeout=30, check=True)
    return [json.loads(line)["same"] for line in done.stdout.splitlines()]


def test_a_large_node_is_answered_in_pages_gun_js_reads_whole(gun_js):
    """20 writers' 100 keys each in one node: one answer frame of it lost a key in GUN.js's parser (and every key
    after it in GUN's put handler); pages of at most `page_chars`, chained by "%", carry it whole."""
    eng = GunEngine(clock=Clock(2e12), pid="RELAY")
    eng.open("A")
    t0 = 1_796_594_485_045
    for w in range(20):
        keys = {f"p{w}-{i}": i for i in range(100)}
        states = {k: t0 + w * 7 + i / 999 for i, k in enumerate(keys)}  # GUN's states: ms plus a count / 999
        eng.receive("A", json.dumps({"#": f"w{w}", "put": {"burst": {"_": {"#": "burst", ">": states}, **keys}}}))
    frames = [text for to, text in eng.receive("A", json.dumps({"#": "g", "get": {"#": "burst"}})) if to == "A"]
    assert all(_gun_js_parses(gun_js, frames))
    pages = [json.loads(f) for f in frames]
    assert len(pages) > 1 and all(len(f) <= eng.limits.page_chars for f in frames)
    assert all(p["@"] == "g" for p in pages) and "%" not in pages[-1]
    assert [p["%"] for p in pages[:-1]] == [p["#"] for p in pages[1:]]
    whole = {"_": {"#": "burst", ">": {}}}
    for page in pages:
        node = page["put"]["burst"]
        whole["_"][">"].update(node["_"][">"])
        whole.update({k: v for k, v in node.items() if k != "_"})
    assert whole == eng.get("burst") and len(whole) == 2_001


def test_a_paged_answer_reaches_on_answer_at_its_last_page():
    """A reader (NativeGunGraph.read) is woken once the whole node is in, not after its first page."""
    client = GunEngine(clock=Clock(2e12))
    answered = []
    client.on_answer = answered.append
    client.open("R")
    msg_id, _ = client.request("s")
    pages = [{"#": "p1", "@": msg_id, "%": "p2", "put": {"s": {"_": {"#": "s", ">": {"a": 1}}, "a": 1}}},
             {"#": "p2", "@": msg_id, "put": {"s": {"_": {"#": "s", ">": {"b": 1}}, "b": 2}}}]
    client.receive("R", json.dumps(pages[0]))
    assert answered == [] and client.get("s", "a")["a"] == 1
    client.receive("R", json.dumps(pages[1]))
    assert answered == [msg_id] and client.get("s", "b")["b"] == 2


async def _burst_then_read(node: str, relay: "Ours", soul: str, writers: int, per_writer: int) -> None:
    """`writers` GUN.js peers, each its own Node process, start together and put `per_writer` keys each into
    `soul` without waiting for acks; once the relay holds them all the writers leave, and two fresh peers
    map() the node: both must find every key with its value."""
    expected = {f"w{w}-{i}": i for w in range(writers) for i in range(per_writer)}
    peers = await asyncio.gather(*(NodeGun.start(node, relay.url) for _ in range(writers)))
    try:
        await asyncio.gather(*(p.call("burst", [soul], prefix=f"w{w}-", count=per_writer) for w, p in enumerate(peers)))
        await until(lambda: len(relay.engine.graph.nodes.get(soul, ())) >= len(expected), timeout=60)
    finally:
        await asyncio.gather(*(p.stop() for p in peers))
    readers = await asyncio.gather(*(NodeGun.start(node, relay.url) for _ in range(2)))
    try:
        subs = [(await r.call("map", [soul]))["sub"] for r in readers]
        seen = [lambda r=r, sub=sub: {e["key"]: e["data"] for e in r.events.get(sub, [])} for r, sub in zip(readers, subs)]
        with contextlib.suppress(AssertionError):  # the comparison below says what is missing
            await until(lambda: all(len(view()) >= len(expected) for view in seen), timeout=60)
        views = [view() for view in seen]
        assert views[0] == views[1] == expected, [len(v) for v in views]
    finally:
        await asyncio.gather(*(r.stop() for r in readers))


@pytest.mark.timeout(240)
async def test_twenty_gun_js_peers_bursting_into_one_node_are_all_read_back(gun_js, tmp_path):
    async with Ours(tmp_path / "g.sqlite") as relay:
        await _burst_then_read(gun_js, relay, "burst", writers=20, per_writer=100)


@pytest.mark.timeout(240)
async def test_ten_thousand_keys_in_one_node_are_all_read_back(gun_js, tmp_path):
    async with Ours(tmp_path / "g.sqlite") as relay:
        await _burst_then_read(gun_js, relay, "big", writers=4, per_writer=2_500)


@pytest.mark.timeout(300)
async def test_ten_gun_js_writers_bursting_get_every_ack_and_a_fresh_reader_finds_every_put(gun_js, tmp_path):
    """10 GUN.js writers x 1,000 puts without waiting: every writer gets all of its acks (they were lost when
    every put went to every peer and the shared send queue overflowed), and a fresh reader finds all 10,000.
    Half the writers also subscribe to the node, so the others' 9,000 puts are forwarded to each of them."""
    writers, per_writer = 10, 1_000
    expected = {f"w{w}-{i}": i for w in range(writers) for i in range(per_writer)}
    async with Ours(tmp_path / "g.sqlite") as relay:
        peers = await asyncio.gather(*(NodeGun.start(gun_js, relay.url) for _ in range(writers)))
        try:
            await asyncio.gather(*(p.call("once", ["acked"]) for p in peers[: writers // 2]))  # a GET subscribes
            await until(lambda: relay.engine.metrics()["gets"] >= writers // 2)
            bursts = await asyncio.gather(*(p.call("burst", ["acked"], prefix=f"w{w}-", count=per_writer)
                                            for w, p in enumerate(peers)))
            acks = lambda: [{e["key"]: e["err"] for e in p.events.get(b["sub"], [])}  # noqa: E731
                            for p, b in zip(peers, bursts)]
            with contextlib.suppress(AssertionError):  # the comparison below says what is missing
                await until(lambda: all(len(a) >= per_writer for a in acks()), timeout=120)
            assert [len(a) for a in acks()] == [per_writer] * writers, relay.engine.metrics()
            assert all(err is None for a in acks() for err in a.values())
        finally:
            await asyncio.gather(*(p.stop() for p in peers))
        reader = await NodeGun.start(gun_js, relay.url)
        try:
            sub = (await reader.call("map", ["acked"]))["sub"]
            seen = lambda: {e["key"]: e["data"] for e in reader.events.get(sub, [])}  # noqa: E731
            with contextlib.suppress(AssertionError):
                await until(lambda: len(seen()) >= len(expected), timeout=60)
            assert seen() == expected, len(seen())
        finally:
            await reader.stop()


async def test_data_survives_restart(gun_js, tmp_path):
    db = tmp_path / "g.sqlite"
    async with Ours(db) as relay:
        a = await NodeGun.start(gun_js, relay.url)
        try:
            assert (await a.call("put", ["persist", "me"], data={"v": "kept", "n": 7}))["ok"]
        finally:
            await a.stop()
    async with Ours(db) as relay:
        c = await NodeGun.start(gun_js, relay.url)
        try:
            assert (await c.call("once", ["persist", "me"]))["data"] == {"v": "kept", "n": 7}
        finally:
            await c.stop()


async def _raw_session(url: str, frames: list[str], answered: set[str], timeout: float = 10.0) -> list[dict]:
    """Send raw frames over a plain WebSocket; returns what came back once every id in `answered` has had an
    answer ("@"), or at `timeout`."""
    got = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url.replace("http", "ws"), max_msg_size=0) as ws:
            for frame in frames:
                await ws.send_str(frame)
            end = time.monotonic() + timeout
            while not answered <= {m.get("@") for m in got}:
                try:
                    msg = await ws.receive(timeout=max(0.0, end - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                got.extend(data if isinstance(data, list) else [data])
    return got


def _scenario(now_ms: float) -> tuple[list[str], dict]:
    """Crafted puts with fixed states (ties, older, nearer future) and the keys to read back."""
    s = 1_700_000_000_000
    frames = []
    writes = [  # (key, value, state) in arrival order
        ("tie_str", "apple", s), ("tie_str", "banana", s), ("tie_str", "aardvark", s),
        ("tie_num_str", "1", s), ("tie_num_str", 1, s),
        ("tie_link", "zzz", s), ("tie_link", {"#": "other"}, s),
        ("tie_null", True, s), ("tie_null", None, s),
        ("tie_unicode", "\U0001F600", s), ("tie_unicode", "\uff5e", s),
        ("older", "new", s + 10), ("older", "old", s),
        ("newer", "old", s), ("newer", "new", s + 10),
        ("float", 0.5, s), ("float", 0.25, s),
        ("soon", "now", s), ("soon", "future", now_ms + 60_000),
    ]
    for i, (key, value, state) in enumerate(writes):
        frames.append(json.dumps({"#": f"w{i}x{int(now_ms)}",
                                  "put": {"cmp": {"_": {"#": "cmp", ">": {key: state}}, key: value}}}))
    return frames, sorted({k for k, _, _ in writes})


async def test_conflicts_resolve_as_the_official_relay(gun_js, tmp_path):
    frames, keys = _scenario(time.time() * 1000)
    results = {}
    async with Ours(tmp_path / "g.sqlite") as ours, Official(gun_js, tmp_path / "radata") as official:
        for name, relay in (("ours", ours), ("official", official)):
            # the same writes, each as its own message, on two connections in turn
            # a get after the puts: once it is answered, the relay has taken every put before it
            # (the official relay does not ack a put that loses HAM)
            done = [json.dumps({"#": f"{name}-done-{i}", "get": {"#": "cmp"}}) for i in range(2)]
            await asyncio.gather(*(_raw_session(relay.url, [*half, end], {json.loads(end)["#"]})
                                   for half, end in zip((frames[0::2], frames[1::2]), done)))
            reader = await NodeGun.start(gun_js, relay.url)
            try:
                results[name] = (await reader.call("once", ["cmp"], wait=800))["data"]
            finally:
                await reader.stop()
    assert results["ours"] == results["official"], results
    assert sorted(results["ours"]) == keys
    assert results["ours"]["tie_str"] == "banana" and results["ours"]["soon"] == "now"


async def test_concurrent_gun_writers_converge_like_official(gun_js, tmp_path):
    outcome = {}
    async with Ours(tmp_path / "g.sqlite") as ours, Official(gun_js, tmp_path / "radata") as official:
        for name, relay in (("ours", ours), ("official", official)):
            a, b = await NodeGun.start(gun_js, relay.url), await NodeGun.start(gun_js, relay.url)
            try:  # (GUN.js queues what it sends until its relay link is open)
                acks = await asyncio.gather(*(c.call("put", ["race", f"k{i}"], timeout=4, data={"by": tag})
                                              for i in range(10) for c, tag in ((a, "A"), (b, "B"))),
                                            return_exceptions=True)
                if name == "ours":  # the official relay leaves some of these concurrent puts unacked
                    assert all(isinstance(ack, dict) and ack["ok"] for ack in acks), acks
                c = await NodeGun.start(gun_js, relay.url)
                try:  # read until the three agree (relayed puts may still be on their way), bounded
                    deadline = time.monotonic() + 15
                    while True:
                        views = [[g["data"] for g in await asyncio.gather(*(p.call("once", ["race", f"k{i}"])
                                                                            for i in range(10)))] for p in (a, b, c)]
                        if views[0] == views[1] == views[2] or time.monotonic() > deadline:
                            break
                finally:
                    await c.stop()
                outcome[name] = views
            finally:
                await a.stop()
                await b.stop()
    for name, (va, vb, vc) in outcome.items():
        assert va == vb == vc, (name, outcome[name])  # every peer agrees on each key
        assert all(v in ({"by": "A"}, {"by": "B"}) for v in va)


async def test_peered_with_the_official_relay(gun_js, tmp_path):
    async with Ours(tmp_path / "g.sqlite") as ours, Official(gun_js, tmp_path / "radata") as official:
        up = asyncio.Event()
        link = asyncio.create_task(peer_with(ours.engine, official.url, connected=up))
        try:
            await asyncio.wait_for(up.wait(), 5)
            x = await NodeGun.start(gun_js, official.url)
            y = await NodeGun.start(gun_js, ours.url)
            try:
                watch = await y.call("on", ["peered", "from-official"])
                # the official relay answered y's get (relayed by ours): it knows we want that soul
                await until(lambda: ours.engine.metrics()["acks_routed"] >= 1)
                assert (await x.call("put", ["peered", "from-official"], data={"v": 1}))["ok"]
                await until(lambda: any(e["data"] == {"v": 1} for e in y.events.get(watch["sub"], [])))
                assert ours.engine.get("peered/from-official")["v"] == 1  # stored on our side too
                assert (await y.call("put", ["peered", "from-ours"], data={"v": 2}))["ok"]
            finally:
                await x.stop()
                await y.stop()
            z = await NodeGun.start(gun_js, official.url)  # only the official relay can answer it
            try:
                assert (await z.call("once", ["peered", "from-ours"]))["data"] == {"v": 2}
            finally:
                await z.stop()
        finally:
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)


async def test_malformed_oversized_odd_and_far_future_over_the_wire(gun_js, tmp_path):
    async with Ours(tmp_path / "g.sqlite") as relay:
        eng = relay.engine
        now = time.time() * 1000
        big = {f"k{i}": i for i in range(eng.limits.wire.max_put_keys + 1)}
        # ('#' and '~' in souls mean content-addressed / user space to GUN.js's SEA, which checks them)
        odd = "sw\u00e4rm/\u0000/\"'\\/\U0001F600|.._> \u2028"
        frames = ["not json", "[{\"put\": 1}, 7, null]", '{"get": {"#": 5}}',
                  json.dumps({"#": "big", "put": {"b": {"_": {"#": "b", ">": {k: now for k in big}}, **big}}}),
                  _put("odd", odd, odd, "odd value \u2028", now - 1),
                  _put("far", "far", "k", "never", now + 1e13),
                  _put("near", "near", "k", "later", now + 700)]
        got = await _raw_session(relay.url, frames, {"big", "far", "odd", "near"})
        by = {m.get("@"): m for m in got if "@" in m}
        assert "err" in by["big"] and "err" in by["far"] and by["odd"]["ok"] and by["near"]["ok"]
        assert any(m.get("dam") == "!" for m in got)
        assert eng.get("b") is None and eng.get("far") is None and eng.get("near") is None
        assert eng.metrics()["malformed"] >= 6
        # oversized frame: the WebSocket is closed, the endpoint lives on
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(relay.url.replace("http", "ws")) as ws:
                await ws.send_str("x" * (eng.limits.wire.max_message_bytes + 10))
                msg = await ws.receive(timeout=5)
                while msg.type == aiohttp.WSMsgType.TEXT:  # our handshake
                    msg = await ws.receive(timeout=5)
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        c = await NodeGun.start(gun_js, relay.url)
        try:
            assert (await c.call("once", [odd, odd]))["data"] == "odd value \u2028"
            await until(lambda: eng.get("near") is not None, timeout=5)  # deferred state applied when due
            assert (await c.call("once", ["near", "k"]))["data"] == "later"
        finally:
            await c.stop()


async def test_the_relay_node_serves_gun_on_its_one_port(tmp_path):
    """edge-relay's own port answers GUN peers on /gun and keeps the graph in its SQLite file."""
    import aiohttp

    from ruvector_edge.relay.server import RelayServer

    store = str(tmp_path / "gun.sqlite")
    server = RelayServer("127.0.0.1", 0, None, gun_store=store)
    await server.start()
    put = {"#": "m1", "put": {"swarm": {"_": {"#": "swarm", ">": {"q": 1}}, "q": 0.5}}}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"http://127.0.0.1:{server.port}/gun") as ws:
                await ws.send_str(json.dumps(put))
                for _ in range(10):
                    reply = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
                    if reply.get("@") == "m1":
                        break
                assert reply.get("ok") is True
            async with http.get(f"http://127.0.0.1:{server.port}/metrics") as response:
                assert 'edge_relay_gun{what="puts"} 1' in await response.text()
    finally:
        await server.stop()
    again = RelayServer("127.0.0.1", 0, None, gun_store=store)
    assert again.gun.get("swarm", "q")["q"] == 0.5
    again.gun.close_store()


class EdgeRelay:
    """`edge-relay` itself, in its own process run from `cwd`; stopped with SIGTERM as a service manager would."""

    def __init__(self, cwd: Path, args: list[str]) -> None:
        self.cwd, self.args = cwd, args

    async def __aenter__(self) -> "EdgeRelay":
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ruvector_edge.cli", "--listen", "127.0.0.1:0", *self.args, cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
            assert line, "edge-relay exited before listening"
            if found := re.search(rb"listening on http://127\.0\.0\.1:(\d+)/", line):
                self.url = f"http://127.0.0.1:{int(found[1])}/gun"
                return self

    async def __aexit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            assert await asyncio.wait_for(self.proc.wait(), 15) == 0
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("where", ["default", "data-dir", "memory-only"])
async def test_edge_relay_keeps_its_gun_graph_across_a_restart_unless_memory_only(gun_js, tmp_path, where):
    """1,000 puts from GUN.js, SIGTERM, restart: a fresh peer finds all of them, in ./edge-data by default
    (it found none: the graph was kept in memory unless --gun-store was given)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    args = {"default": [], "data-dir": ["--data-dir", str(tmp_path / "kept")], "memory-only": ["--memory-only"]}[where]
    expected = {f"k{i}": i for i in range(1_000)}
    async with EdgeRelay(run_dir, args) as relay:
        writer = await NodeGun.start(gun_js, relay.url)
        try:
            burst = await writer.call("burst", ["kept"], prefix="k", count=len(expected))
            await until(lambda: len(writer.events.get(burst["sub"], [])) >= len(expected), timeout=60)
            assert all(e["err"] is None for e in writer.events[burst["sub"]])
        finally:
            await writer.stop()
    async with EdgeRelay(run_dir, args) as relay:
        reader = await NodeGun.start(gun_js, relay.url)
        try:
            if where == "memory-only":
                assert (await reader.call("once", ["kept"], wait=800))["data"] is None
            else:
                sub = (await reader.call("map", ["kept"]))["sub"]
                seen = lambda: {e["key"]: e["data"] for e in reader.events.get(sub, [])}  # noqa: E731
                with contextlib.suppress(AssertionError):
                    await until(lambda: len(seen()) >= len(expected), timeout=60)
                assert seen() == expected, len(seen())
        finally:
            await reader.stop()
    data_dirs = {"default": run_dir / "edge-data", "data-dir": tmp_path / "kept"}
    assert [w for w, d in data_dirs.items() if d.exists()] == ([] if where == "memory-only" else [where])
    if where != "memory-only":
        assert (data_dirs[where] / "gun.sqlite").is_file()


def test_edge_relay_refuses_a_data_dir_it_cannot_use_and_changes_nothing(tmp_path):
    from ruvector_edge.cli import relay_main

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("mine")
    assert relay_main(["--listen", "127.0.0.1:0", "--data-dir", str(not_a_dir)]) == 2
    assert not_a_dir.read_text() == "mine"
    with pytest.raises(SystemExit) as exited:
        relay_main(["--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"), "--memory-only"])
    assert exited.value.code == 2 and not (tmp_path / "d").exists()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "gun.sqlite").write_text("not a database")
    assert relay_main(["--listen", "127.0.0.1:0", "--data-dir", str(corrupt)]) == 2
    assert (corrupt / "gun.sqlite").read_text() == "not a database" and [p.name for p in corrupt.iterdir()] == ["gun.sqlite"]


def test_engine_rate_limits_each_connection_on_its_own():
    clock = Clock(1e12)
    limits = GunLimits(rate_messages=10, burst_messages=5, rate_bytes=1e9, burst_bytes=1e9)
    eng = GunEngine(limits=limits, clock=clock)
    eng.open("A")
    eng.open("B")
    acks = [eng.receive("A", _put(f"a{i}", "s", f"k{i}", i, 1)) for i in range(8)]
    assert [bool(a) for a in acks] == [True] * 5 + [False] * 3      # burst of 5, then dropped
    assert eng.metrics()["rate_limited"] == 3 and eng.get("s", "k5") is None
    assert eng.receive("B", _put("b0", "s", "b", 1, 1))             # B has its own bucket
    clock.t += 200                                                   # 10/s: two more after 200 ms
    assert eng.receive("A", _put("a8", "s", "k8", 8, 1)) and eng.receive("A", _put("a9", "s", "k9", 9, 1))
    assert eng.receive("A", _put("a10", "s", "k10", 10, 1)) == []
    # a batch frame counts every message in it
    clock.t += 10_000
    batch = json.dumps([json.loads(_put(f"c{i}", "t", f"k{i}", i, 1)) for i in range(6)])
    assert eng.receive("A", batch) == [] and eng.get("t") is None
    # bytes: a frame larger than the byte bucket holds is dropped before it is parsed
    byte_limited = GunEngine(limits=GunLimits(rate_bytes=1000, burst_bytes=1000), clock=clock)
    byte_limited.open("A")
    assert byte_limited.receive("A", _put("x", "s", "k", "v" * 2000, 1)) == []
    assert byte_limited.metrics()["rate_limited"] == 1 and byte_limited.metrics()["malformed"] == 0


def test_graph_memory_is_bounded_and_counted(tmp_path):
    from ruvector_edge.gun.graph import entry_size
    clock = Clock(1e12)
    limits = GunLimits(graph=GraphLimits(max_bytes=10 * entry_size("s0", "k", "v" * 100)))
    eng = GunEngine(str(tmp_path / "g.sqlite"), limits=limits, clock=clock)
    eng.open("A")
    for i in range(12):
        eng.receive("A", _put(f"p{i}", f"s{i % 10}" if i < 10 else f"z{i}", "k", "v" * 100, 1))
    m = eng.metrics()
    assert m["souls"] == 10 and m["refused_graph_full"] == 2 and m["graph_bytes"] <= limits.graph.max_bytes
    assert eng.get("z10") is None and "z10" not in eng.graph.nodes
    # a value that shrinks is always taken; one that grows past the bound is not
    eng.receive("A", _put("shrink", "s0", "k", "short", 2))
    assert eng.get("s0", "k")["k"] == "short"
    eng.receive("A", _put("grow", "s1", "k", "v" * 10_000, 2))
    assert eng.get("s1", "k")["k"] == "v" * 100 and eng.metrics()["refused_graph_full"] == 3
    used = eng.graph.bytes
    eng.close_store()
    # the bound is counted again from the store after a restart
    again = GunEngine(str(tmp_path / "g.sqlite"), limits=limits, clock=clock)
    assert again.graph.bytes == used
    again.close_store()


async def test_a_flooding_connection_is_rate_limited_without_hurting_others():
    engine = GunEngine(limits=GunLimits(rate_messages=20, burst_messages=20))
    app = web.Application()
    add_gun_routes(app, engine)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/gun"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url) as flood:
                for i in range(300):
                    await flood.send_str(_put(f"f{i}", "flood", f"k{i}", i, 1))
                await until(lambda: engine.metrics()["messages"] + engine.metrics()["rate_limited"] >= 300)
                assert engine.metrics()["rate_limited"] >= 250
                assert len(engine.graph.nodes["flood"]) < 50
                got = await _raw_session(url, [_put("calm", "calm", "k", "v", 1)], {"calm"})
                assert any(m.get("@") == "calm" and m.get("ok") for m in got)
                assert engine.get("calm", "k")["k"] == "v"
    finally:
        await runner.cleanup()


# -- hostile input, generated ---------------------------------------------------------

_NOW = 1e12
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**64, 2**64), st.floats(), st.text(max_size=12))
_any = st.recursive(_leaf, lambda kids: st.one_of(st.lists(kids, max_size=3),
                                                  st.dictionaries(st.text(max_size=6), kids, max_size=3)),
                    max_leaves=10)
_soul = st.one_of(st.text(max_size=8), st.sampled_from(["s", "a/b", "\ud800", "~@x", "#h"]))
_good_state = st.one_of(st.integers(0, int(_NOW)), st.floats(0, _NOW), st.sampled_from([_NOW, _NOW + 1e3]))
_bad_state = st.one_of(st.floats(), st.integers(-2**70, 2**70), st.just(_NOW + 1e13), _any)
_good_value = st.one_of(_leaf, st.builds(lambda s: {"#": s}, _soul))


def _mostly(draw, good, bad, p: float = 0.9):
    """Mostly well-formed parts, so whole messages are often valid and the merge path runs."""
    return draw(good) if draw(st.integers(0, 999)) < p * 1000 else draw(bad)


@st.composite
def _node(draw, soul):
    keys = draw(st.lists(st.text(max_size=6), max_size=4))
    states = {k: _mostly(draw, _good_state, _bad_state) for k in keys}
    meta = {"#": _mostly(draw, st.just(soul), _soul), ">": states}
    node = {k: _mostly(draw, _good_value, _any) for k in keys}
    return _mostly(draw, st.just({"_": meta, **node}), st.one_of(st.just(node), st.builds(lambda m: {"_": m, **node}, _any)))


@st.composite
def _message(draw):
    msg = {}
    if draw(st.integers(0, 9)) < 8:
        msg["#"] = _mostly(draw, st.text(min_size=1, max_size=10), _any)
    for field, per_ten in (("@", 2), ("##", 1), ("><", 2), ("dam", 1), ("pid", 1), ("get", 3)):
        if draw(st.integers(0, 9)) < per_ten:
            msg[field] = draw(st.one_of(st.text(max_size=10), _any))
    if "get" in msg and draw(st.booleans()):
        msg["get"] = {"#": draw(_soul), ".": draw(st.one_of(st.none(), st.text(max_size=4), _any))}
    if draw(st.integers(0, 9)) < 8:
        graph = {s: draw(_node(s)) for s in draw(st.lists(_soul, max_size=3))}
        msg["put"] = _mostly(draw, st.just(graph), st.one_of(st.builds(dict), _any))
    return msg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=st.lists(st.one_of(_message(), st.lists(_message(), max_size=3)), min_size=1, max_size=4))
def test_engine_survives_generated_messages_and_stores_only_valid_data(frames):
    eng = GunEngine(clock=Clock(_NOW), pid="RELAY")
    eng.open("A")
    eng.open("B")
    for frame in frames:
        try:
            raw = json.dumps(frame)
        except (ValueError, TypeError):
            continue
        for to, text in eng.receive("A", raw):
            assert to in ("A", "B") and isinstance(json.loads(text), (dict, list))
    limits = eng.limits
    for soul, node in eng.graph.nodes.items():
        assert 0 < len(soul) <= limits.wire.max_soul_length and node
        for key, (state, value) in node.items():
            assert key != "_" and len(key) <= limits.wire.max_key_length
            assert math.isfinite(state) and state <= _NOW and valid_value(value)
    for state, _, _, _, value in eng.graph._deferred:
        assert _NOW < state <= _NOW + limits.graph.max_future_ms and valid_value(value)
