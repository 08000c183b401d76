// Vector memory bridge for the Pyodide worker, exposed as globalThis.edgeVectors:
// an exact cosine top-k kernel over Float32Array rows, and the IndexedDB calls
// behind the browser MemoryStore.
//
// Python (ruvector_edge.memory.browser) holds a kernel handle and crosses once
// per batch: rows and queries arrive as one Uint8Array of packed little-endian
// float32 unit vectors (the format the VectorKernel seam already uses), and a
// search answers with one Float64Array. Scores are float64 sums over the
// float32 components (products of two float32 are exact in a double), as the
// pure-Python kernel computes them, so the two agree to rounding order.
//
// Rows are dense (0..n-1): removing a row moves the last row into the hole.
// A search returns, per query, every row scoring at least the k-th best score
// (boundary ties all kept), ordered by score and then row index; the caller
// breaks ties by a key that is the same on every replica.
//
// Handles are plain objects: when Python drops its proxy, the matrix is garbage.
//
// Above `annAbove` rows (0: never) a search asks an HNSW graph (npm hnswlib-wasm,
// its wasm inlined in the bundle, so offline) for candidates and scores them
// exactly from the rows here, like the native kernel (memory/hnsw_index.py):
// the graph only proposes, so it can cost recall, never return a removed row or
// a wrong score. Below it the exact scan answers (bench/browser_ann.mjs, 384-d, one
// query: 13 ms at 50K rows, 27 ms at 100K; twice that on a loaded machine) and
// the graph at 100K takes 1.8 ms at recall@10 0.98. The graph is built in
// slices of the worker's idle time (setTimeout, never inside a call), searches
// stay exact until it is complete, removals only mark nodes deleted, and once
// deleted nodes outnumber live ones a new graph is built the same way while the
// old one keeps answering. With a persist name the graph is kept across reloads
// (see "Persisting the graph" below); without one it is rebuilt after a reload.

import { done, openDb, request } from "./idb.js";

if (new Uint8Array(new Float32Array([1]).buffer)[3] !== 0x3f) {
  throw new Error("edgeVectors: packed vectors are little-endian float32; this platform is big-endian");
}

const QUERY_GROUP = 8; // queries scored together, so a batch reads each block of rows once per group
const ROW_BLOCK = 128; // rows per block: 128 × 384 float32 = 192 KiB

function create(dim, initialRows = 1024, annAbove = 0, persistAs = "") {
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`dimension must be a positive integer, not ${dim}`);
  if (!Number.isInteger(annAbove) || annAbove < 0) throw new RangeError(`annAbove must be a non-negative integer, not ${annAbove}`);
  if (typeof persistAs !== "string") throw new TypeError("persistAs must be a string");
  const rows = Math.max(1, initialRows | 0);
  return {
    dim, n: 0, data: new Float32Array(rows * dim), scores: new Float64Array(0), queries: new Float32Array(0),
    annAbove, labels: new Float64Array(rows), rowOf: new Map(), nextLabel: 0, graph: null, tombstones: 0,
    building: null, scheduled: false, persist: persistAs ? newPersist(persistAs) : null,
  };
}

function size(h) {
  return h.n;
}

function reserve(h, rows) {
  if (rows > h.labels.length) {
    const labels = new Float64Array(Math.max(rows, 2 * h.labels.length));
    labels.set(h.labels.subarray(0, h.n));
    h.labels = labels;
  }
  const need = rows * h.dim;
  if (need <= h.data.length) return;
  const grown = new Float32Array(Math.max(need, 2 * h.data.length));
  grown.set(h.data.subarray(0, h.n * h.dim));
  h.data = grown;
}

/** Copy `count` packed rows from the start of `bytes` (which may be longer: a reused buffer) as rows n..n+count-1. */
function addMany(h, bytes, count) {
  const len = count * h.dim * 4;
  if (!Number.isInteger(count) || count < 0 || bytes.byteLength < len) {
    throw new RangeError(`addMany: ${count} rows of ${h.dim} float32 need ${len} bytes, got ${bytes.byteLength}`);
  }
  reserve(h, h.n + count);
  // A byte copy: the source may sit at an offset that is not a multiple of 4.
  new Uint8Array(h.data.buffer, h.n * h.dim * 4, len).set(bytes.subarray(0, len));
  const added = [];
  for (let row = h.n; row < h.n + count; row++) {
    const label = h.nextLabel++;
    h.labels[row] = label;
    h.rowOf.set(label, row);
    added.push(label);
  }
  h.n += count;
  if (h.graph) {
    graphAdd(h, h.graph, added);
    changed(h);
  }
  if (h.building) h.building.queue.push(...added);
  maintain(h);
  return h.n;
}

/**
 * Remove rows one after another (each one moves the last row into its place).
 * `rows` is a number or an array of numbers; returns an Int32Array holding, for
 * each removal, the old index of the row that moved, or -1 when the removed row was last.
 */
function remove(h, rows) {
  const list = typeof rows === "number" ? [rows] : Array.from(rows);
  const moved = new Int32Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const row = list[i];
    const last = h.n - 1;
    if (!Number.isInteger(row) || row < 0 || row > last) throw new RangeError(`remove: no row ${row} (${h.n} held)`);
    const label = h.labels[row];
    h.rowOf.delete(label);
    if (h.graph) {
      h.graph.markDelete(label);
      h.tombstones++;
      changed(h);
    }
    if (h.building && h.building.added.has(label)) {
      h.building.graph.markDelete(label);
      h.building.tombstones++;
    }
    if (row !== last) {
      h.data.copyWithin(row * h.dim, last * h.dim, (last + 1) * h.dim);
      h.labels[row] = h.labels[last];
      h.rowOf.set(h.labels[row], row);
    }
    moved[i] = row === last ? -1 : last;
    h.n = last;
  }
  maintain(h);
  return moved;
}

// The HNSW graph ------------------------------------------------------------------

const ANN = { m: 16, efConstruction: 40, efSearch: 128, sliceMs: 40, chunk: 64, seed: 100 };
let hnswlib = null; // the loaded library, once
let hnswlibModule = null; // its JS wrapper (syncFileSystem)
let hnswlibLoading = null;
let hnswlibError = null;

/** Start loading hnswlib-wasm (compiling its inlined wasm) once; `maintain` retries when it is ready. */
function loadHnswlib(h) {
  if (!hnswlibLoading) {
    hnswlibLoading = import("hnswlib-wasm")
      .then((module) => (hnswlibModule = module).loadHnswlib())
      .then((lib) => (hnswlib = lib), (error) => (hnswlibError = String(error && error.message || error)));
  }
  hnswlibLoading.then(() => maintain(h));
}

/** Insert the nodes of `labels` whose rows still exist, growing the graph when full. */
function graphAdd(h, graph, labels) {
  const live = labels.filter((label) => h.rowOf.has(label));
  if (!live.length) return live;
  const need = graph.getCurrentCount() + live.length;
  if (need > graph.getMaxElements()) graph.resizeIndex(Math.max(need, 2 * graph.getMaxElements()));
  const vectors = live.map((label) => {
    const row = h.rowOf.get(label);
    return h.data.subarray(row * h.dim, (row + 1) * h.dim);
  });
  graph.addPoints(vectors, live, false);
  return live;
}

/** Start a build when the rows reach `annAbove`, or when deleted nodes outnumber live ones. */
function maintain(h) {
  if (!h.annAbove || h.building || h.n < h.annAbove || (h.graph && h.tombstones <= h.n)) return;
  if (!hnswlib) {
    if (!hnswlibError) loadHnswlib(h);
    return;
  }
  if (h.persist && h.persist.state === "new") return startLoad(h);
  if (h.persist && h.persist.state === "loading") return;
  const graph = new hnswlib.HierarchicalNSW("ip", h.dim, "");
  graph.initIndex(Math.max(1024, 2 * h.n), ANN.m, ANN.efConstruction, ANN.seed);
  h.building = { graph, queue: Array.from(h.labels.subarray(0, h.n)), at: 0, added: new Set(), tombstones: 0 };
  schedule(h);
}

function schedule(h) {
  if (h.scheduled) return;
  h.scheduled = true;
  setTimeout(() => {
    h.scheduled = false;
    buildSlice(h);
  }, 0);
}

/** Insert queued nodes for up to ANN.sliceMs; swap the graph in when the queue is done. */
function buildSlice(h) {
  const b = h.building;
  if (!b) return;
  const until = performance.now() + ANN.sliceMs;
  while (b.at < b.queue.length && performance.now() < until) {
    const labels = b.queue.slice(b.at, b.at + ANN.chunk);
    b.at += labels.length;
    for (const label of graphAdd(h, b.graph, labels)) b.added.add(label);
  }
  if (b.at < b.queue.length) return schedule(h);
  if (h.graph) h.graph.delete();
  h.graph = b.graph;
  h.tombstones = b.tombstones;
  h.building = null;
  if (h.persist) h.persist.source = "built";
  changed(h);
  maintain(h);
}

// Persisting the graph -------------------------------------------------------------
//
// Building the graph costs ~24 s at 50K rows and loading a saved one ~1.5 s
// (bench/browser_ann_persist.mjs), so a kernel with a persist name keeps it.
// hnswlib-wasm does not expose its file system: `writeIndex` writes into its
// IDBFS mount and `syncFileSystem("write")` copies that file into its own
// IndexedDB database (/hnswlib-index, shared by every graph of the origin) as
// ONE value. Our own record (database ruvector-edge/ann, keyed by the persist
// name) holds the SHA-256 of those exact bytes and, per live node, its label
// and a 53-bit hash of its row. At load the stored bytes are hashed again: a
// different digest (corrupt, or another graph in the file) is refused, both
// records deleted, and the graph built anew. A matching graph is then patched
// to the rows the memory holds now (a row is found by its hash): nodes whose
// row is gone are marked deleted, rows the save did not cover are inserted.
// The graph only proposes candidates that the rows score exactly, so even a
// wrong graph costs recall, never a wrong score or a removed row.
// Chromium refuses an IndexedDB value above 133,169,152 bytes, and the value
// IDBFS stores is the file's whole growable buffer (up to 1.125x the file):
// at 384-d, M=16 that is ~1.7 KB a node, so graphs above ~70K nodes are not
// saved (state "skipped") and are rebuilt after a reload.

const PERSIST = { delayMs: 3000, maxValueBytes: 133_169_152, growth: 1.125, db: "ruvector-edge/ann", store: "graphs" };

function newPersist(name) {
  let hash = 2166136261;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619) >>> 0;
  const file = `edge-${name.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 80)}-${hash.toString(16)}.bin`;
  return { name, file, state: "new", source: null, saves: 0, saved: false, dirty: false, timer: null, refused: 0,
    patched: 0, skipped: null, error: null };
}

/** A 53-bit hash of row `row`'s float32 bits (two 32-bit FNV-style lanes): how a saved node finds its row again. */
function rowHash(h, row) {
  const words = new Uint32Array(h.data.buffer, row * h.dim * 4, h.dim);
  let a = 2166136261, b = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    a = Math.imul(a ^ words[i], 16777619);
    b = Math.imul(b ^ words[i], 0x85ebca6b) ^ (b >>> 13);
  }
  return (a >>> 0) * 2097152 + ((b >>> 0) >>> 11);
}

async function annDb() {
  return openDb(PERSIST.db, { [PERSIST.store]: {} }, { owner: "edgeVectors" });
}

/** The stored graph file's bytes, read from hnswlib-wasm's IDBFS database, or null. */
async function storedGraphBytes(file) {
  for (const { name } of await indexedDB.databases()) {
    if (!name || !name.startsWith("/")) continue;
    const db = await new Promise((ok, no) => {
      const r = indexedDB.open(name);
      r.onsuccess = () => ok(r.result);
      r.onerror = () => no(r.error);
    });
    try {
      if (!db.objectStoreNames.contains("FILE_DATA")) continue;
      const store = db.transaction("FILE_DATA", "readonly").objectStore("FILE_DATA");
      const key = (await request(store.getAllKeys())).find((k) => String(k).endsWith(`/${file}`));
      if (key === undefined) continue;
      const entry = await request(db.transaction("FILE_DATA", "readonly").objectStore("FILE_DATA").get(key));
      return entry && entry.contents ? new Uint8Array(entry.contents) : null;
    } finally {
      db.close();
    }
  }
  return null;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (x) => x.toString(16).padStart(2, "0")).join("");
}

function startLoad(h) {
  const p = h.persist;
  p.state = "loading";
  loadGraph(h).then(
    (ok) => (p.state = ok ? "loaded" : "absent"),
    (error) => {
      p.state = "absent";
      p.error = String(error && error.message || error);
    },
  ).then(() => maintain(h));
}

/** Load and check the saved graph, then patch it to the rows held now; false when there is none to use. */
async function loadGraph(h) {
  const p = h.persist;
  const db = await annDb();
  let rec;
  try {
    rec = await request(db.transaction(PERSIST.store, "readonly").objectStore(PERSIST.store).get(p.name));
  } finally {
    db.close();
  }
  if (!rec) return false;
  const bytes = await storedGraphBytes(p.file);
  const fits = rec.dim === h.dim && rec.file === p.file && bytes && bytes.byteLength === rec.bytes;
  if (!fits || (await sha256Hex(bytes)) !== rec.digest) {
    p.refused++;
    await forget(p);
    return false;
  }
  await hnswlibModule.syncFileSystem("read");
  const graph = new hnswlib.HierarchicalNSW("ip", h.dim, "");
  await graph.readIndex(p.file, rec.maxElements);
  if (graph.getCurrentCount() !== rec.count) {
    graph.delete();
    p.refused++;
    await forget(p);
    return false;
  }
  adopt(h, graph, rec);
  return true;
}

/** Relabel the rows held now to the saved graph's labels (matched by row hash); mark the rest deleted or insert them. */
function adopt(h, graph, rec) {
  const p = h.persist;
  const free = new Map();
  for (let row = 0; row < h.n; row++) {
    const key = rowHash(h, row);
    const list = free.get(key);
    if (list) list.push(row);
    else free.set(key, [row]);
  }
  const matched = new Uint8Array(h.n);
  let maxLabel = -1, patched = 0, tombstones = rec.tombstones;
  h.rowOf = new Map();
  for (let i = 0; i < rec.labels.length; i++) {
    const label = rec.labels[i];
    maxLabel = Math.max(maxLabel, label);
    const list = free.get(rec.hashes[i]);
    if (list && list.length) {
      const row = list.pop();
      matched[row] = 1;
      h.labels[row] = label;
      h.rowOf.set(label, row);
    } else {
      graph.markDelete(label);
      tombstones++;
      patched++;
    }
  }
  h.nextLabel = Math.max(h.nextLabel, maxLabel + 1, rec.nextLabel);
  const added = [];
  for (let row = 0; row < h.n; row++) {
    if (matched[row]) continue;
    const label = h.nextLabel++;
    h.labels[row] = label;
    h.rowOf.set(label, row);
    added.push(label);
  }
  h.graph = graph;
  h.tombstones = tombstones;
  graphAdd(h, graph, added);
  p.patched = patched + added.length;
  p.source = "loaded";
  p.saved = true;
  if (p.patched) changed(h);
}

async function forget(p) {
  const db = await annDb();
  try {
    const tx = db.transaction(PERSIST.store, "readwrite");
    tx.objectStore(PERSIST.store).delete(p.name);
    await done(tx);
  } finally {
    db.close();
  }
}

/** Note a change to a persisted graph: save it once the changes pause for PERSIST.delayMs. */
function changed(h) {
  const p = h.persist;
  if (!p) return;
  p.dirty = true;
  if (p.timer) clearTimeout(p.timer);
  p.timer = setTimeout(() => {
    p.timer = null;
    annSaveNow(h).catch((error) => (p.error = String(error && error.message || error)));
  }, PERSIST.delayMs);
}

/**
 * Save the graph now (after a build, or changes: also called by the delayed save).
 * Resolves true once both records are written; false when there is nothing to
 * save, a save is already running (it will see the dirty flag), or the graph is too large.
 */
async function annSaveNow(h) {
  const p = h.persist;
  if (!p || !h.graph || h.building || p.saving || !p.dirty) return false;
  const graph = h.graph;
  const estimate = graph.getCurrentCount() * (h.dim * 4 + (2 * ANN.m + 1) * 4 + 8) + 4096;
  if (estimate * PERSIST.growth > PERSIST.maxValueBytes) {
    p.skipped = `about ${estimate} bytes: above what one IndexedDB value may hold`;
    p.dirty = false;
    return false;
  }
  p.saving = true;
  try {
    p.dirty = false;
    // Captured together with the write (synchronous in the wasm): later changes set dirty again.
    const labels = Array.from(h.labels.subarray(0, h.n));
    const hashes = labels.map((_, row) => rowHash(h, row));
    const meta = { count: graph.getCurrentCount(), maxElements: graph.getMaxElements(), tombstones: h.tombstones,
      nextLabel: h.nextLabel };
    await graph.writeIndex(p.file);
    await hnswlibModule.syncFileSystem("write");
    const bytes = await storedGraphBytes(p.file);
    if (!bytes) throw new Error(`the saved graph ${p.file} is not in IndexedDB`);
    const rec = { dim: h.dim, file: p.file, bytes: bytes.byteLength, digest: await sha256Hex(bytes), labels, hashes, ...meta };
    const db = await annDb();
    try {
      const tx = db.transaction(PERSIST.store, "readwrite", { durability: "strict" });
      tx.objectStore(PERSIST.store).put(rec, p.name);
      await done(tx);
    } finally {
      db.close();
    }
    p.saves++;
    p.saved = true;
    return true;
  } finally {
    p.saving = false;
    if (p.dirty && !p.timer) changed(h);
  }
}

/** {ready, nodes, tombstones, building, error, persist}: for tests and benchmarks. */
function annState(h) {
  const p = h.persist;
  return {
    ready: Boolean(h.graph), nodes: h.graph ? h.graph.getCurrentCount() - h.tombstones : 0, tombstones: h.tombstones,
    building: Boolean(h.building), error: hnswlibError,
    persist: p && { state: p.state, source: p.source, saves: p.saves, saved: p.saved, dirty: p.dirty, refused: p.refused,
      patched: p.patched, skipped: p.skipped, error: p.error },
  };
}

/** Rows the graph proposes for query `qi` (exactly re-scored, best first), or null to scan instead. */
function graphTop(h, qi, k) {
  const { dim, data, queries } = h;
  let found;
  try {
    h.graph.setEfSearch(Math.max(ANN.efSearch, k));
    found = h.graph.searchKnn(queries.subarray(qi * dim, (qi + 1) * dim), k, undefined).neighbors;
  } catch {
    return null; // fewer than k reachable (a small graph, many deleted): the scan answers
  }
  const hits = [];
  for (const label of found) {
    const row = h.rowOf.get(label);
    if (row === undefined) continue;
    let acc = 0;
    const base = row * dim;
    for (let d = 0; d < dim; d++) acc += data[base + d] * queries[qi * dim + d];
    hits.push([row, acc]);
  }
  return hits.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
}

/** The k-th largest value of scores[0..n) (n > k), with a size-k min-heap: most scores cost one comparison. */
function kthLargest(scores, n, k, heap) {
  for (let i = 0; i < k; i++) {
    // sift up
    let j = i;
    const s = scores[i];
    while (j > 0) {
      const p = (j - 1) >> 1;
      if (heap[p] <= s) break;
      heap[j] = heap[p];
      j = p;
    }
    heap[j] = s;
  }
  for (let i = k; i < n; i++) {
    const s = scores[i];
    if (!(s > heap[0])) continue;
    // replace the root and sift down
    let j = 0;
    for (;;) {
      const l = 2 * j + 1;
      if (l >= k) break;
      const r = l + 1;
      const c = r < k && heap[r] < heap[l] ? r : l;
      if (heap[c] >= s) break;
      heap[j] = heap[c];
      j = c;
    }
    heap[j] = s;
  }
  return heap[0];
}

/**
 * Scores of queries q0..q0+g-1 against every row, into h.scores[(query - q0) * n + row].
 * Rows are visited in blocks that stay in cache while each query of the group
 * passes over them. The sum runs in component order, like the pure-Python kernel's.
 */
function scoreGroup(h, q0, g) {
  const { dim, n, data, queries, scores } = h;
  for (let r0 = 0; r0 < n; r0 += ROW_BLOCK) {
    const r1 = Math.min(n, r0 + ROW_BLOCK);
    for (let qi = 0; qi < g; qi++) {
      const qb = (q0 + qi) * dim;
      const off = qi * n;
      for (let row = r0; row < r1; row++) {
        const base = row * dim;
        let acc = 0;
        for (let d = 0; d < dim; d++) acc += data[base + d] * queries[qb + d];
        scores[off + row] = acc;
      }
    }
  }
}

/**
 * Top-k for `nq` packed unit queries at the start of `bytes`. Returns one
 * Float64Array: nq counts, then per query its (row, score) pairs, best score
 * first and equal scores by ascending row. A query gets every row when k >= n.
 */
function search(h, bytes, nq, k) {
  const { dim, n } = h;
  const len = nq * dim * 4;
  if (!Number.isInteger(nq) || nq < 0 || bytes.byteLength < len) {
    throw new RangeError(`search: ${nq} queries of ${dim} float32 need ${len} bytes, got ${bytes.byteLength}`);
  }
  if (!Number.isInteger(k) || k < 1) throw new RangeError(`search: k must be a positive integer, not ${k}`);
  if (h.queries.length < nq * dim) h.queries = new Float32Array(nq * dim);
  new Uint8Array(h.queries.buffer, 0, len).set(bytes.subarray(0, len));
  const group = Math.min(QUERY_GROUP, Math.max(1, nq));
  if (h.scores.length < group * n) h.scores = new Float64Array(group * n);
  const heap = new Float64Array(Math.max(1, k));
  const counts = new Array(nq);
  const hits = new Array(nq);
  let total = 0;
  if (h.graph && h.n >= h.annAbove && k < h.n) {
    for (let q = 0; q < nq; q++) {
      hits[q] = graphTop(h, q, k);
      if (hits[q] === null) break;
      counts[q] = hits[q].length;
      total += hits[q].length;
    }
    if (hits[nq - 1]) return pack(nq, counts, hits, total);
    total = 0;
  }
  for (let q0 = 0; q0 < nq; q0 += group) {
    const g = Math.min(group, nq - q0);
    scoreGroup(h, q0, g);
    for (let qi = 0; qi < g; qi++) {
      const off = qi * n;
      const scores = h.scores.subarray(off, off + n);
      const threshold = k < n ? kthLargest(scores, n, k, heap) : -Infinity;
      const rows = [];
      for (let row = 0; row < n; row++) if (scores[row] >= threshold) rows.push(row);
      rows.sort((a, b) => scores[b] - scores[a] || a - b);
      counts[q0 + qi] = rows.length;
      hits[q0 + qi] = rows.map((row) => [row, scores[row]]);
      total += rows.length;
    }
  }
  return pack(nq, counts, hits, total);
}

function pack(nq, counts, hits, total) {
  const out = new Float64Array(nq + 2 * total);
  let at = nq;
  for (let q = 0; q < nq; q++) {
    out[q] = counts[q];
    for (const [row, score] of hits[q]) {
      out[at++] = row;
      out[at++] = score;
    }
  }
  return out;
}

// IndexedDB ------------------------------------------------------------------------
//
// One database per agent, two object stores: "memories" keyed by id
// ({id, seq, owner, content, metadata, embedding}) and "meta" (the dimension).
// Records cross to Python packed: one JSON text for the fields and one
// Uint8Array of the embeddings in the same order, because per-record proxies
// would cost a crossing per field. Writes use `durability: "strict"`, so a
// transaction completes only once it is on disk. Each write creates its
// transaction synchronously, inside the call: IndexedDB runs overlapping
// read-write transactions in creation order, and `close()` lets the ones
// already created finish.

const MEMORIES = "memories";
const META = "meta";

function idbOpen(name) {
  return openDb(name, { [MEMORIES]: { keyPath: "id" }, [META]: {} }, { owner: "edgeVectors" });
}

/** Everything stored: {dim (0 when new), fields: JSON [[id, seq, owner, content, metadata, embedding bytes], ...] by seq, vectors}. */
async function idbLoad(db) {
  const tx = db.transaction([MEMORIES, META], "readonly");
  const [dim, records] = await Promise.all([request(tx.objectStore(META).get("dim")), request(tx.objectStore(MEMORIES).getAll())]);
  records.sort((a, b) => a.seq - b.seq);
  let bytes = 0;
  for (const r of records) bytes += r.embedding.byteLength;
  const vectors = new Uint8Array(bytes);
  const fields = new Array(records.length);
  let at = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    const emb = new Uint8Array(r.embedding);
    vectors.set(emb, at);
    at += emb.byteLength;
    fields[i] = [r.id, r.seq, r.owner, r.content, r.metadata, emb.byteLength];
  }
  return { dim: dim ?? 0, fields: JSON.stringify(fields), vectors };
}

/**
 * One atomic, durable step: set the dimension if `dim` is given, delete the ids
 * in `deleteJson` (a JSON list), then put the records in `putJson` (JSON
 * [[id, seq, owner, content, metadata], ...]) with embeddings of `vecBytes`
 * bytes each, packed in `vectors`. Resolves when the transaction has committed.
 */
function idbApply(db, dim, putJson, vectors, vecBytes, deleteJson) {
  const puts = JSON.parse(putJson);
  const deletes = JSON.parse(deleteJson);
  if (vectors.byteLength < puts.length * vecBytes) throw new RangeError("idbApply: fewer embedding bytes than records");
  const tx = db.transaction([MEMORIES, META], "readwrite", { durability: "strict" });
  const finished = done(tx);
  const store = tx.objectStore(MEMORIES);
  if (dim !== null && dim !== undefined) tx.objectStore(META).put(dim, "dim");
  for (const id of deletes) store.delete(id);
  for (let i = 0; i < puts.length; i++) {
    const [id, seq, owner, content, metadata] = puts[i];
    // slice(): a copy of just this record's bytes (structured clone would store the whole buffer).
    const embedding = vectors.slice(i * vecBytes, (i + 1) * vecBytes).buffer;
    store.put({ id, seq, owner, content, metadata, embedding });
  }
  return finished;
}

function idbClose(db) {
  db.close();
}

globalThis.edgeVectors = { create, size, addMany, remove, search, annState, annSaveNow, idbOpen, idbLoad, idbApply, idbClose };
export const edgeVectors = globalThis.edgeVectors;
