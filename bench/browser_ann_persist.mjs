// Browser benchmark (issue 13): keep the hnswlib-wasm graph across a reload, or build it again?
// Page 1 builds the graph over N × 384 rows (the corpus of bench/browser_ann.mjs, same seeded
// generator) in one go, measures search p50 and recall@10 against the exact scan, and saves it
// with hnswlib-wasm's own serialisation (writeIndex into its IDBFS mount, then syncFS to
// IndexedDB). The tab is reloaded; page 2 loads the library (which mounts IDBFS and reads every
// stored file into memory, the graph included: timed beyond page 1's load of an empty mount),
// reads the raw record back (what an integrity check must read), HMACs it with WebCrypto, then
// loads it (syncFS from IndexedDB, readIndex) and searches the same queries. Compare load (+ check)
// against build. The graph's capacity is N (2N ran out of wasm memory at 100K beside the rows).
// Needs a built app (bash scripts/build-web.sh).
// Loopback only; every loop is bounded.
//   node bench/browser_ann_persist.mjs [--n 100000] [--queries 100] [--port 4186]
import { readdirSync } from "node:fs";
import { arg, emit, openApp, pyWithinTenMinutes, withRelayAndBrowser } from "./browser_common.mjs";

const N = arg("n", 100_000);
const QUERIES = arg("queries", 100);
const PORT = arg("port", 4186);
const BASE = `http://127.0.0.1:${PORT}`;
// The bundle's hnswlib-wasm wrapper chunk (not the -<hash>-<hash>.js wasm chunk it imports).
const CHUNK = readdirSync(new URL("../dist/assets/", import.meta.url)).find((f) => /^hnswlib-[A-Za-z0-9_]+\.js$/.test(f));
if (!CHUNK) throw new Error("no hnswlib-wasm chunk in dist/assets: build the app first");

// Shared by both pages: the corpus, the queries and the exact top-10 (recomputed, deterministic).
const SETUP = `
  const t0 = performance.now();
  const mod = await import("${BASE}/assets/${CHUNK}");
  if (mod.__tla) await mod.__tla;
  const lib = await mod.loadHnswlib(); // mounts IDBFS and reads every file it holds into memory
  const N = ${N}, Q = ${QUERIES}, DIM = 384, K = 10, out = { lib_load_s: (performance.now() - t0) / 1000 };
  let s = 13;
  const u = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return (s + 0.5) / 4294967296; };
  const g = () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  const basis = Array.from({ length: 24 }, () => Float32Array.from({ length: DIM }, () => g() / Math.sqrt(DIM / 24)));
  const make = (into, at) => {
    let norm = 0;
    for (let d = 0; d < DIM; d++) into[at + d] = 0.3 * Math.sqrt(24 / DIM) * g();
    for (let j = 0; j < 24; j++) { const z = g() / Math.sqrt(24); for (let d = 0; d < DIM; d++) into[at + d] += z * basis[j][d]; }
    for (let d = 0; d < DIM; d++) norm += into[at + d] ** 2;
    for (let d = 0; d < DIM; d++) into[at + d] /= Math.sqrt(norm);
  };
  const data = new Float32Array(N * DIM), queries = new Float32Array(Q * DIM);
  for (let i = 0; i < N; i++) make(data, i * DIM);
  for (let i = 0; i < Q; i++) make(queries, i * DIM);
  const q = (i) => queries.subarray(i * DIM, (i + 1) * DIM);
  const V = globalThis.edgeVectors, exact = V.create(DIM, N);
  V.addMany(exact, new Uint8Array(data.buffer), N);
  const truth = Array.from({ length: Q }, (_, i) => new Set(Array.from(V.search(exact, new Uint8Array(queries.buffer, i * DIM * 4, DIM * 4), 1, K).subarray(1, 1 + 2 * K)).filter((_, j) => j % 2 === 0)));
  const measure = (graph) => {
    graph.setEfSearch(128);
    const times = [];
    let hit = 0;
    for (let i = 0; i < Q; i++) {
      const t = performance.now();
      const found = graph.searchKnn(q(i), K, undefined).neighbors;
      times.push(performance.now() - t);
      hit += found.filter((label) => truth[i].has(label)).length;
    }
    return { p50_ms: times.sort((a, b) => a - b)[Math.floor(Q / 2)], recall_at_10: hit / (K * Q) };
  };
`;

const BUILD = `
(async () => {${SETUP}
  const graph = new lib.HierarchicalNSW("ip", DIM, "");
  graph.initIndex(N, 16, 40, 100);
  let t = performance.now();
  for (let at = 0; at < N; at += 1000) {
    const rows = [], labels = [];
    for (let i = at; i < Math.min(N, at + 1000); i++) { rows.push(data.subarray(i * DIM, (i + 1) * DIM)); labels.push(i); }
    graph.addPoints(rows, labels, false);
  }
  out.build_s = (performance.now() - t) / 1000;
  out.built = measure(graph);
  t = performance.now();
  await graph.writeIndex("bench-graph.bin");
  out.write_index_s = (performance.now() - t) / 1000;
  t = performance.now();
  await mod.syncFileSystem("write");
  out.sync_to_idb_s = (performance.now() - t) / 1000;
  out.databases = (await indexedDB.databases()).map((d) => d.name);
  return JSON.stringify(out);
})()`;

const LOAD = `
(async () => {${SETUP}
  // The raw record, as an integrity check would read it: emscripten's IDBFS keeps one record per file.
  let t = performance.now();
  const names = (await indexedDB.databases()).map((d) => d.name).filter((n) => n.startsWith("/"));
  let bytes = null, key = null;
  for (const name of names) {
    const db = await new Promise((ok, no) => { const r = indexedDB.open(name); r.onsuccess = () => ok(r.result); r.onerror = () => no(r.error); });
    const store = db.transaction("FILE_DATA", "readonly").objectStore("FILE_DATA");
    const keys = await new Promise((ok) => { const r = store.getAllKeys(); r.onsuccess = () => ok(r.result); });
    key = keys.find((k) => String(k).endsWith("bench-graph.bin"));
    if (key) bytes = await new Promise((ok) => { const r = db.transaction("FILE_DATA", "readonly").objectStore("FILE_DATA").get(key); r.onsuccess = () => ok(r.result.contents); });
    db.close();
    if (key) break;
  }
  out.read_record_s = (performance.now() - t) / 1000;
  out.record = key;
  out.bytes = bytes ? bytes.byteLength : 0;
  t = performance.now();
  const hmacKey = await crypto.subtle.importKey("raw", new Uint8Array(32), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  await crypto.subtle.sign("HMAC", hmacKey, bytes);
  out.hmac_s = (performance.now() - t) / 1000;
  t = performance.now();
  await mod.syncFileSystem("read");
  out.sync_from_idb_s = (performance.now() - t) / 1000;
  const graph = new lib.HierarchicalNSW("ip", DIM, "");
  t = performance.now();
  await graph.readIndex("bench-graph.bin", N);
  out.read_index_s = (performance.now() - t) / 1000;
  out.loaded = { count: graph.getCurrentCount(), ...measure(graph) };
  return JSON.stringify(out);
})()`;

const py = (js) => `from pyodide.code import run_js\nawait run_js(${JSON.stringify(js)})`;

await withRelayAndBrowser(PORT, async (browser) => {
  const context = await browser.newContext();
  const page = await openApp(context, BASE + "/");
  const built = JSON.parse(await pyWithinTenMinutes(page, py(BUILD)));
  await page.reload();
  await page.waitForFunction(() => window.edge && window.edge.timing.readyMs !== null, null, { timeout: 60_000 });
  const loaded = JSON.parse(await pyWithinTenMinutes(page, py(LOAD)));
  const r = (x) => +x.toFixed(3);
  // The library's own load reads the stored graph from IndexedDB too: count what it took beyond page 1's.
  const load_s = Math.max(0, loaded.lib_load_s - built.lib_load_s) + loaded.read_record_s + loaded.hmac_s + loaded.sync_from_idb_s + loaded.read_index_s;
  emit({ bench: "browser_ann_persist", what: "build", n: N, seconds: r(built.build_s), search: built.built,
    note: "addPoints in one go (the page builds in idle-time slices, slower)" });
  emit({ bench: "browser_ann_persist", what: "save", n: N, write_index_s: r(built.write_index_s), sync_to_idb_s: r(built.sync_to_idb_s),
    databases: built.databases, lib_load_empty_s: r(built.lib_load_s) });
  emit({ bench: "browser_ann_persist", what: "load-after-reload", n: N, bytes: loaded.bytes, lib_load_s: r(loaded.lib_load_s), record: loaded.record,
    read_record_s: r(loaded.read_record_s), hmac_s: r(loaded.hmac_s), sync_from_idb_s: r(loaded.sync_from_idb_s),
    read_index_s: r(loaded.read_index_s), total_s: r(load_s), search: loaded.loaded });
  emit({ bench: "browser_ann_persist", what: "choice", n: N, rebuild_s: r(built.build_s), load_and_check_s: r(load_s),
    faster: load_s < built.build_s ? "persist" : "rebuild", speedup: r(built.build_s / load_s) });
});
