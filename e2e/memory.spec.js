// Vector memory in the Pyodide worker: the JS Float32Array kernel (bridges/vectors.js
// through ruvector_edge.memory.browser) must answer exactly as the pure-Python
// kernel does, memories stored through IndexedDbMemoryStore must survive a page
// reload once flushed, and bad embeddings must be refused with the typed error.
import { test, expect } from "./fixtures.js";
import { openReady, py } from "./helpers.js";

// A fresh database name per run, so reruns against one browser profile never see old data.
const agentId = (tag) => `mem-${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

test("the JS kernel is the browser default and gives the pure-Python kernel's top-k", async ({ page }) => {
  await openReady(page);
  const out = JSON.parse(await py(page, `
import json, random
from ruvector_edge.memory import PurePythonKernel, VectorMemory
from ruvector_edge.memory.browser import JsFloat32Kernel, browser_default_kernel

dim, rng = 64, random.Random(20240607)
default_name = browser_default_kernel(dim).name
mems = [VectorMemory("agent-a", dim, 1500, kernel=k) for k in (PurePythonKernel(dim), JsFloat32Kernel(dim, initial_rows=16))]
vectors = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(2000)]
for i, v in enumerate(vectors):  # 2000 into 1500: 500 evictions exercise remove()
    for m in mems:
        m.store_memory(f"memory {i}", v, {"i": i})
for i in range(40):  # scaled copies of stored vectors: exact score ties, broken by id
    for m in mems:
        m.store_memory(f"copy {i}", [3 * x for x in vectors[1999 - i]])
queries = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(25)] + vectors[1960:1975]
mismatches, worst, ties = [], 0.0, 0
for k in (1, 10, 50):
    py_hits, js_hits = (m.search_many(queries, k) for m in mems)
    for q, (a, b) in enumerate(zip(py_hits, js_hits)):
        if [h.id for h in a] != [h.id for h in b]:
            mismatches.append((k, q))
        worst = max([worst] + [abs(x.score - y.score) for x, y in zip(a, b)])
        ties += sum(1 for x, y in zip(b, b[1:]) if x.score == y.score)
single = [h.id for h in mems[1].search_memory(queries[0], 10)] == [h.id for h in mems[0].search_memory(queries[0], 10)]
json.dumps({"default": default_name, "lens": [len(m) for m in mems], "kernel_rows": [len(m.kernel) for m in mems],
            "mismatches": mismatches, "worst": worst, "ties": ties, "single": single})
`));
  expect(out.default).toBe("js-float32");
  expect(out.lens).toEqual([1500, 1500]);
  expect(out.kernel_rows).toEqual([1500, 1500]);
  expect(out.mismatches).toEqual([]);
  expect(out.worst).toBeLessThan(1e-12);
  expect(out.ties).toBeGreaterThan(0);
  expect(out.single).toBe(true);
});

test("memories stored through IndexedDB are there after a reload, evictions too", async ({ page }) => {
  const agent = agentId("reload");
  await openReady(page);
  const stored = JSON.parse(await py(page, `
import json
from ruvector_edge.memory import HashingEmbedder, VectorMemory
from ruvector_edge.memory.browser import IndexedDbMemoryStore, JsFloat32Kernel

emb = HashingEmbedder(dim=128)
store = await IndexedDbMemoryStore.open(${JSON.stringify(agent)})
mem = VectorMemory(${JSON.stringify(agent)}, 128, 5, kernel=JsFloat32Kernel(128), store=store)
texts = ["the relay listens on loopback", "webrtc needs signalling", "gun keeps swarm state",
         "indexeddb survives reloads", "pyodide runs in a worker", "lz4 frames compress sync"]
ids = [mem.store_memory(t, emb.embed(t), {"n": n}) for n, t in enumerate(texts)]  # six into five: the first goes
await store.flush()
json.dumps({"ids": ids, "unflushed": store.unflushed, "len": len(mem)})
`));
  expect(stored.unflushed).toBe(0);
  expect(stored.len).toBe(5);

  await page.reload();
  await openReady(page);
  const back = JSON.parse(await py(page, `
import json
from ruvector_edge.memory import HashingEmbedder, VectorMemory
from ruvector_edge.memory.browser import IndexedDbMemoryStore, JsFloat32Kernel

emb = HashingEmbedder(dim=128)
store = await IndexedDbMemoryStore.open(${JSON.stringify(agent)})
mem = VectorMemory(${JSON.stringify(agent)}, 128, 5, kernel=JsFloat32Kernel(128), store=store)
hit = mem.search_memory(emb.embed("indexeddb survives reloads"), 1)[0]
try:
    store.load(64)
    other_dim = None
except ValueError as e:
    other_dim = str(e)
entries = [mem.get(i) for i in ${JSON.stringify(stored.ids)}]
json.dumps({"len": len(mem), "present": [e is not None for e in entries],
            "meta": [e.metadata for e in entries if e], "owner": entries[-1].owner,
            "hit": hit.content, "other_dim": other_dim})
`));
  expect(back.len).toBe(5);
  expect(back.present).toEqual([false, true, true, true, true, true]);
  expect(back.meta).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }]);
  expect(back.owner).toBe(agent);
  expect(back.hit).toBe("indexeddb survives reloads");
  expect(back.other_dim).toContain("128-dimensional");
});

test("a SwarmAgent in the page keeps what store_memory acknowledged in IndexedDB across a reload", async ({ page }) => {
  const agent = agentId("agent");
  const newAgent = (persist) => `
from ruvector_edge.agent import SwarmAgent, SwarmConfig
agent = await SwarmAgent.new(SwarmConfig(agent_id=${JSON.stringify(agent)}, swarm_key=bytes(range(32)), memory_dim=64,
                                         memory_persist=${persist ? "True" : "False"}))
`;
  await openReady(page);
  const stored = JSON.parse(await py(page, `
import json
${newAgent(true)}
ids = [await agent.store_memory(t, metadata={"n": n}) for n, t in enumerate(["tabs share a relay", "receipts are signed"])]
json.dumps({"store": type(agent.memory.store).__name__, "unflushed": agent.memory.store.unflushed, "ids": ids,
            "graph_kept": isinstance(agent.memory.kernel.ann_state()["persist"], dict)})
`));
  expect(stored.store).toBe("IndexedDbMemoryStore");
  expect(stored.graph_kept).toBe(true); // its search graph, once built, is kept across reloads too
  expect(stored.unflushed).toBe(0); // store_memory returned only after the IndexedDB commit

  await page.reload(); // no explicit flush or close: what was acknowledged must already be on disk
  await openReady(page);
  const back = JSON.parse(await py(page, `
import json
${newAgent(true)}
hits = await agent.search_memory("receipts are signed", 1)
json.dumps({"len": len(agent.memory), "hit": hits[0].content, "owner": hits[0].owner,
            "meta": [agent.memory.get(i).metadata for i in ${JSON.stringify(stored.ids)}]})
`));
  expect(back).toEqual({ len: 2, hit: "receipts are signed", owner: agent, meta: [{ n: 0 }, { n: 1 }] });

  const volatile = JSON.parse(await py(page, `
import json
${newAgent(false)}
json.dumps({"store": agent.memory.store is None, "len": len(agent.memory),
            "graph_kept": isinstance(agent.memory.kernel.ann_state()["persist"], dict)})
`));
  expect(volatile).toEqual({ store: true, len: 0, graph_kept: false });
});

test("writes behind without an explicit flush, and a failed write stays queued and raises OSError", async ({ page }) => {
  const agent = agentId("behind");
  await openReady(page);
  const out = JSON.parse(await py(page, `
import asyncio, json
from ruvector_edge.memory import VectorMemory
from ruvector_edge.memory.browser import IndexedDbMemoryStore

store = await IndexedDbMemoryStore.open(${JSON.stringify(agent)})
mem = VectorMemory(${JSON.stringify(agent)}, 4, 10, store=store)
mem.store_memory("written behind", [1, 2, 3, 4])
for _ in range(200):  # bounded: at most ~10 s
    if not store.unflushed:
        break
    await asyncio.sleep(0.05)
behind = store.unflushed
store._js.idbClose(store._db)  # the connection goes away underneath the store
mem.store_memory("never lands", [4, 3, 2, 1])
await asyncio.sleep(0)  # let the background attempt fail first
try:
    await store.flush()
    error = None
except OSError as e:
    error = type(e).__name__
json.dumps({"behind": behind, "error": error, "queued": store.unflushed})
`));
  expect(out).toEqual({ behind: 0, error: "OSError", queued: 1 });

  await page.reload();
  await openReady(page);
  const back = JSON.parse(await py(page, `
import json
from ruvector_edge.memory import VectorMemory
from ruvector_edge.memory.browser import IndexedDbMemoryStore
store = await IndexedDbMemoryStore.open(${JSON.stringify(agent)})
mem = VectorMemory(${JSON.stringify(agent)}, 4, 10, store=store)
json.dumps(sorted(e["content"] for e in mem.export_entries()))
`));
  expect(back).toEqual(["written behind"]);
});

test("an embedding of the wrong dimension or holding NaN is refused with MalformedMessage and nothing is kept", async ({ page }) => {
  const agent = agentId("refuse");
  await openReady(page);
  const out = JSON.parse(await py(page, `
import json, math
from ruvector_edge.errors import MalformedMessage
from ruvector_edge.memory import VectorMemory
from ruvector_edge.memory.browser import IndexedDbMemoryStore, JsFloat32Kernel

store = await IndexedDbMemoryStore.open(${JSON.stringify(agent)})
mem = VectorMemory(${JSON.stringify(agent)}, 8, 10, kernel=JsFloat32Kernel(8), store=store)
mem.store_memory("fine", [1.0] * 8)
await store.flush()
refused = []
for content, emb in [("short", [1.0] * 7), ("long", [1.0] * 9), ("nan", [1.0] * 7 + [math.nan]),
                     ("inf", [math.inf] + [1.0] * 7), ("zeros", [0.0] * 8)]:
    try:
        mem.store_memory(content, emb)
        refused.append(None)
    except MalformedMessage as e:
        refused.append(type(e).__name__)
try:
    mem.search_memory([math.nan] * 8, 3)
    query = None
except MalformedMessage as e:
    query = type(e).__name__
json.dumps({"refused": refused, "query": query, "len": len(mem), "rows": len(mem.kernel), "queued": store.unflushed})
`));
  expect(out).toEqual({ refused: Array(5).fill("MalformedMessage"), query: "MalformedMessage", len: 1, rows: 1, queued: 0 });
});

test("above its threshold the JS kernel searches an HNSW graph: recall against exact, removed rows never returned", async ({ page }) => {
  await openReady(page);
  const out = JSON.parse(await py(page, `
import asyncio, json, random
from ruvector_edge.memory import pack_unit_vector
from ruvector_edge.memory.browser import JsFloat32Kernel

dim, rng = 32, random.Random(13)
basis = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(6)]
def sample():  # near a 6-d subspace: neighbours like embeddings', not uniform noise
    z = [rng.gauss(0, 1) for _ in range(6)]
    return pack_unit_vector([sum(z[j] * basis[j][d] for j in range(6)) + 0.3 * rng.gauss(0, 1) for d in range(dim)], dim)
rows = [sample() for _ in range(3000)]
queries = [sample() for _ in range(100)]
ann, exact = JsFloat32Kernel(dim, ann_above=1000), JsFloat32Kernel(dim)
for at in range(0, len(rows), 256):
    ann.add_many(rows[at:at + 256])
    exact.add_many(rows[at:at + 256])
while_building = ann.search(queries, 10) == exact.search(queries, 10)
for _ in range(600):  # built in the worker's idle time: wait for it, bounded (30 s)
    if ann.ann_state()["ready"] or ann.ann_state()["error"]:
        break
    await asyncio.sleep(0.05)
built = ann.ann_state()

def recall(found, truth):
    return sum(len({r for r, _ in f} & {r for r, _ in t}) / 10 for f, t in zip(found, truth)) / len(truth)

found = ann.search(queries, 10)
recall_before = recall(found, exact.search(queries, 10))
same_scores = all(abs(s - sum(a * b for a, b in zip(memoryview(rows[r]).cast("f"), memoryview(q).cast("f")))) < 1e-9
                  for q, hits in zip(queries, found) for r, s in hits)
gone = []
for i in range(300):  # 10% removed, each moving the last row into the hole, in both kernels alike
    row = (i * 7919) % len(rows)
    gone.append(rows[row])
    ann.remove(row)
    exact.remove(row)
    last = rows.pop()
    if row < len(rows):
        rows[row] = last
gone_set = set(gone)
found = ann.search(gone, 10)
returned_gone = sum(rows[r] in gone_set for hits in found for r, _ in hits)
full = all(len(hits) == 10 for hits in found)
recall_after = recall(ann.search(queries, 10), exact.search(queries, 10))
json.dumps({"while_building": while_building, "built": built, "after": ann.ann_state(), "recall_before": recall_before,
            "recall_after": recall_after, "same_scores": same_scores, "returned_gone": returned_gone, "full": full})
`));
  expect(out.while_building).toBe(true); // exact until the graph is complete
  expect(out.built).toMatchObject({ ready: true, nodes: 3000, tombstones: 0, error: null });
  expect(out.after).toMatchObject({ ready: true, nodes: 2700, tombstones: 300 });
  expect(out.recall_before).toBeGreaterThanOrEqual(0.95);
  expect(out.recall_after).toBeGreaterThanOrEqual(0.95);
  expect(out.same_scores).toBe(true);
  expect(out.returned_gone).toBe(0);
  expect(out.full).toBe(true);
});

// The corpus of the HNSW test above, and a kernel that keeps its graph under `name`.
const annSetup = (name) => `
import asyncio, json, random
from ruvector_edge.memory import pack_unit_vector
from ruvector_edge.memory.browser import JsFloat32Kernel

dim, rng = 32, random.Random(13)
basis = [[rng.gauss(0, 1) for _ in range(dim)] for _ in range(6)]
def sample():
    z = [rng.gauss(0, 1) for _ in range(6)]
    return pack_unit_vector([sum(z[j] * basis[j][d] for j in range(6)) + 0.3 * rng.gauss(0, 1) for d in range(dim)], dim)
rows = [sample() for _ in range(3000)]
extra = [sample() for _ in range(50)]
queries = [sample() for _ in range(100)]
ann, exact = JsFloat32Kernel(dim, ann_above=1000, persist_as=${JSON.stringify(name)}), JsFloat32Kernel(dim)

async def settled():  # bounded: 600 x 50 ms
    seen_building = False
    for _ in range(600):
        state = ann.ann_state()
        seen_building = seen_building or state["building"]
        if (state["ready"] and not state["building"]) or state["error"]:
            break
        await asyncio.sleep(0.05)
    return seen_building

def recall():
    found, truth = ann.search(queries, 10), exact.search(queries, 10)
    return sum(len({r for r, _ in f} & {r for r, _ in t}) / 10 for f, t in zip(found, truth)) / len(truth)
`;

async function saveGraph(page, name) {
  return JSON.parse(await py(page, annSetup(name) + `
ann.add_many(rows)
exact.add_many(rows)
await settled()
saved = await ann.save_index()
json.dumps({"saved": saved, "state": ann.ann_state(), "recall": recall()})
`));
}

test("the HNSW graph is kept across a reload: loaded, patched to the rows held now, not rebuilt", async ({ page }) => {
  const name = agentId("ann-keep");
  await openReady(page);
  const first = await saveGraph(page, name);
  expect(first.saved).toBe(true);
  expect(first.state.persist).toMatchObject({ source: "built", saves: 1, saved: true, refused: 0 });

  await page.reload();
  await openReady(page);
  // The memory changed since the save: 100 rows gone, 50 new ones.
  const out = JSON.parse(await py(page, annSetup(name) + `
held = rows[100:] + extra
ann.add_many(held)
exact.add_many(held)
seen_building = await settled()
json.dumps({"seen_building": seen_building, "state": ann.ann_state(), "recall": recall()})
`));
  expect(out.seen_building).toBe(false);
  expect(out.state).toMatchObject({ ready: true, building: false, nodes: 2950, tombstones: 100, error: null });
  expect(out.state.persist).toMatchObject({ state: "loaded", source: "loaded", refused: 0, patched: 150, error: null });
  expect(out.recall).toBeGreaterThanOrEqual(0.95);
});

test("a corrupted stored graph is refused and built anew", async ({ page }) => {
  const name = agentId("ann-bad");
  await openReady(page);
  expect((await saveGraph(page, name)).saved).toBe(true);
  // Flip bytes in the middle of the graph file hnswlib-wasm keeps in its own IndexedDB database.
  const flipped = await py(page, `
from pyodide.code import run_js
await run_js("""(async () => {
  const open = (n) => new Promise((ok, no) => { const r = indexedDB.open(n); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  const req = (r) => new Promise((ok, no) => { r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
  for (const { name } of await indexedDB.databases()) {
    if (!name.startsWith("/")) continue;
    const db = await open(name);
    const keys = await req(db.transaction("FILE_DATA").objectStore("FILE_DATA").getAllKeys());
    const key = keys.find((k) => String(k).includes(${JSON.stringify(name.replace(/[^A-Za-z0-9_-]/g, "_"))}));
    if (key === undefined) { db.close(); continue; }
    const entry = await req(db.transaction("FILE_DATA").objectStore("FILE_DATA").get(key));
    const bytes = new Uint8Array(entry.contents);
    for (let i = 0; i < 64; i++) bytes[(bytes.length >> 1) + i] ^= 0xff;
    entry.contents = bytes;
    await req(db.transaction("FILE_DATA", "readwrite").objectStore("FILE_DATA").put(entry, key));
    db.close();
    return "flipped";
  }
  return "not found";
})()""")
`);
  expect(flipped).toBe("flipped");

  await page.reload();
  await openReady(page);
  const out = JSON.parse(await py(page, annSetup(name) + `
ann.add_many(rows)
exact.add_many(rows)
seen_building = await settled()
json.dumps({"seen_building": seen_building, "state": ann.ann_state(), "recall": recall()})
`));
  expect(out.state).toMatchObject({ ready: true, nodes: 3000, tombstones: 0, error: null });
  expect(out.state.persist).toMatchObject({ source: "built", refused: 1 });
  expect(out.recall).toBeGreaterThanOrEqual(0.95);
});
