// Semantic embeddings bridge for the Pyodide worker, exposed as globalThis.edgeEmbed:
// all-MiniLM-L6-v2 (the int8 ONNX file natives use, served with the app under
// models/minilm/) on npm onnxruntime-web, WASM backend, one thread.
//
// Loading starts with the worker (`start`), beside Pyodide's, because the model
// is 23 MB and its session takes seconds to build; `ready()` answers once it is
// usable or known to be absent. Both files are checked against the sha256 pins
// that scripts/build-web.sh wrote from memory/model_files.py into manifest.json
// before the session is built; Python checks the digests again against its own
// pins (ruvector_edge.memory.browser_embedder). Nothing is fetched from anywhere
// but this origin: the wasm and its glue come from ort/, copied from the npm package.
//
// Python tokenises (memory/wordpiece.py) and crosses once per embed_many: the
// ids of every text in one Int32Array with a Uint32Array of lengths. Here texts
// are batched by length (as natively: a padded token costs the encoder as much
// as a real one), run, mean-pooled over the attention mask and L2-normalised,
// and all vectors come back in one Float32Array, in input order.

const DIM = 384;
const BATCH = 32;

let loading = null;
let session = null;

/** Fetch `url` as bytes, calling `onProgress(loaded, total)` as chunks arrive. */
async function fetchBytes(url, onProgress) {
  const res = await fetch(url);
  if (!res.ok) throw Object.assign(new Error(`${url}: HTTP ${res.status}`), { absent: res.status === 404 });
  const total = Number(res.headers.get("content-length")) || 0;
  const reader = res.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    onProgress(loaded, total);
  }
  const out = new Uint8Array(loaded);
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function load(base, onProgress) {
  const t0 = performance.now();
  const dir = new URL("models/minilm/", base);
  let manifest;
  try {
    const res = await fetch(new URL("manifest.json", dir));
    if (!res.ok) throw Object.assign(new Error(`models/minilm/manifest.json: HTTP ${res.status}`), { absent: res.status === 404 });
    manifest = await res.json();
  } catch (err) {
    return { ok: false, absent: !!err.absent, reason: `the MiniLM model is not served with this app (${err.message})` };
  }
  try {
    const total = manifest.onnx_bytes;
    let reported = 0;
    onProgress({ state: "loading", loaded: 0, total });
    const [onnx, tokenizer] = await Promise.all([
      fetchBytes(new URL("model.onnx", dir), (loaded) => {
        if (loaded - reported < total / 50 && loaded < total) return; // every 2%: a message per chunk would flood the page
        reported = loaded;
        onProgress({ state: "loading", loaded, total });
      }),
      fetchBytes(new URL("tokenizer.json", dir), () => {}),
    ]);
    const [onnxSha256, tokenizerSha256] = await Promise.all([sha256Hex(onnx), sha256Hex(tokenizer)]);
    if (onnxSha256 !== manifest.onnx_sha256 || tokenizerSha256 !== manifest.tokenizer_sha256) {
      return { ok: false, absent: false, reason: `MiniLM files do not match their sha256 pins (model ${onnxSha256}, tokenizer ${tokenizerSha256})` };
    }
    onProgress({ state: "session", loaded: onnx.length, total: onnx.length });
    const ort = await import("onnxruntime-web/wasm");
    ort.env.wasm.wasmPaths = new URL("ort/", base).href;
    ort.env.wasm.numThreads = 1; // one thread: no SharedArrayBuffer, no cross-origin isolation needed
    ort.env.wasm.proxy = false;
    session = await ort.InferenceSession.create(onnx, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
    session.ort = ort;
    return {
      ok: true,
      modelId: manifest.model_id,
      onnxSha256,
      tokenizerSha256,
      tokenizer: new TextDecoder().decode(tokenizer),
      loadMs: performance.now() - t0,
      ortVersion: ort.env.versions?.web ?? "",
    };
  } catch (err) {
    return { ok: false, absent: false, reason: `MiniLM failed to load: ${err && err.message ? err.message : err}` };
  }
}

/** Run one padded batch; `rows` are [index, offset, length] into `ids`. Writes pooled unit vectors into `out`. */
async function runBatch(rows, ids, out) {
  const { Tensor } = session.ort;
  const width = Math.max(...rows.map((r) => r[2]));
  const n = rows.length;
  const inputIds = new BigInt64Array(n * width);
  const mask = new BigInt64Array(n * width);
  rows.forEach(([, offset, length], b) => {
    for (let t = 0; t < length; t++) {
      inputIds[b * width + t] = BigInt(ids[offset + t]);
      mask[b * width + t] = 1n;
    }
  });
  const dims = [n, width];
  const feeds = {
    input_ids: new Tensor("int64", inputIds, dims),
    attention_mask: new Tensor("int64", mask, dims),
    token_type_ids: new Tensor("int64", new BigInt64Array(n * width), dims),
  };
  const result = await session.run(feeds, ["last_hidden_state"]);
  const hidden = result.last_hidden_state.data;
  const pooled = new Float64Array(DIM);
  rows.forEach(([index, , length], b) => {
    pooled.fill(0);
    for (let t = 0; t < length; t++) {
      const base = (b * width + t) * DIM;
      for (let d = 0; d < DIM; d++) pooled[d] += hidden[base + d];
    }
    let norm = 0;
    for (let d = 0; d < DIM; d++) {
      pooled[d] /= length;
      norm += pooled[d] * pooled[d];
    }
    norm = Math.max(Math.sqrt(norm), 1e-12);
    for (let d = 0; d < DIM; d++) out[index * DIM + d] = pooled[d] / norm;
  });
  result.last_hidden_state.dispose?.();
}

/** Vectors for texts given as token ids: `ids` concatenated, `lens[i]` ids for text i. */
async function embedMany(ids, lens) {
  if (!session) throw new Error("edgeEmbed: the model is not loaded");
  const n = lens.length;
  const rows = [];
  let offset = 0;
  for (let i = 0; i < n; i++) {
    if (lens[i] < 1) throw new RangeError(`text ${i} has no tokens`);
    rows.push([i, offset, lens[i]]);
    offset += lens[i];
  }
  if (offset !== ids.length) throw new RangeError("lengths do not add up to the ids given");
  rows.sort((a, b) => a[2] - b[2] || a[0] - b[0]);
  const out = new Float32Array(n * DIM);
  for (let start = 0; start < n; start += BATCH) await runBatch(rows.slice(start, start + BATCH), ids, out);
  return out;
}

/** Raw onnxruntime-web, the benchmark's floor: `session.run` on consecutive groups of `batch` texts' ids
 * (padded to the group's longest), no pooling, no copies back; returns the milliseconds spent. */
async function rawRuns(ids, lens, batch = 1) {
  const { Tensor } = session.ort;
  const offsets = [];
  let offset = 0;
  for (const length of lens) {
    offsets.push(offset);
    offset += length;
  }
  const t0 = performance.now();
  for (let start = 0; start < lens.length; start += batch) {
    const group = Array.from(lens.subarray(start, start + batch));
    const width = Math.max(...group);
    const dims = [group.length, width];
    const inputIds = new BigInt64Array(group.length * width);
    const mask = new BigInt64Array(group.length * width);
    group.forEach((length, b) => {
      for (let t = 0; t < length; t++) {
        inputIds[b * width + t] = BigInt(ids[offsets[start + b] + t]);
        mask[b * width + t] = 1n;
      }
    });
    await session.run({
      input_ids: new Tensor("int64", inputIds, dims),
      attention_mask: new Tensor("int64", mask, dims),
      token_type_ids: new Tensor("int64", new BigInt64Array(group.length * width), dims),
    }, ["last_hidden_state"]);
  }
  return performance.now() - t0;
}

globalThis.edgeEmbed = {
  /** Begin loading once; `onProgress({state, loaded, total})` follows the download and the session build. */
  start(base, onProgress = () => {}) {
    loading ??= load(base, onProgress);
    return loading;
  },
  /** Resolves with {ok, modelId, onnxSha256, tokenizerSha256, tokenizer, loadMs} or {ok: false, absent, reason}. */
  ready() {
    return loading ?? Promise.resolve({ ok: false, absent: true, reason: "the model was never requested" });
  },
  embedMany,
  rawRuns,
};
