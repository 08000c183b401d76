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
// old one keeps answering. Nothing of it is persisted: rebuilt after a reload.

import { done, openDb, request } from "./idb.js";

if (new Uint8Array(new Float32Array([1]).buffer)[3] !== 0x3f) {
  throw new Error("edgeVectors: packed vectors are little-endian float32; this platform is big-endian");
}

const QUERY_GROUP = 8; // queries scored together, so a batch reads each block of rows once per group
const ROW_BLOCK = 128; // rows per block: 128 × 384 float32 = 192 KiB

function create(dim, initialRows = 1024, annAbove = 0) {
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`dimension must be a positive integer, not ${dim}`);
  if (!Number.isInteger(annAbove) || annAbove < 0) throw new RangeError(`annAbove must be a non-negative integer, not ${annAbove}`);
  const rows = Math.max(1, initialRows | 0);
  return {
    dim, n: 0, data: new Float32Array(rows * dim), scores: new Float64Array(0), queries: new Float32Array(0),
    annAbove, labels: new Float64Array(rows), rowOf: new Map(), nextLabel: 0, graph: null, tombstones: 0,
    building: null, scheduled: false,
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
  if (h.graph) graphAdd(h, h.graph, added);
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
let hnswlib = null; // the loaded module, once
let hnswlibLoading = null;
let hnswlibError = null;

/** Start loading hnswlib-wasm (compiling its inlined wasm) once; `maintain` retries when it is ready. */
function loadHnswlib(h) {
  if (!hnswlibLoading) {
    hnswlibLoading = import("hnswlib-wasm")
      .then((module) => module.loadHnswlib())
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
  maintain(h);
}

/** {ready, nodes, tombstones, building, error}: for tests and benchmarks. */
function annState(h) {
  return {
    ready: Boolean(h.graph), nodes: h.graph ? h.graph.getCurrentCount() - h.tombstones : 0, tombstones: h.tombstones,
    building: Boolean(h.building), error: hnswlibError,
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

globalThis.edgeVectors = { create, size, addMany, remove, search, annState, idbOpen, idbLoad, idbApply, idbClose };
export const edgeVectors = globalThis.edgeVectors;
