// Browser benchmark: exact top-10 search over 10K × 384 memories in the Pyodide
// worker, through VectorMemory with the JS Float32Array kernel (bridges/vectors.js),
// the same kernel called directly with packed queries (no VectorMemory around it),
// and the pure-Python kernel for comparison. Printed as JSON lines; goal ≤ 20 ms.
// Needs a built app (bash scripts/build-web.sh). Loopback only; every loop is bounded.
//   node bench/browser_memory.mjs [--n 10000] [--dim 384] [--k 10] [--queries 200] [--py-queries 20] [--port 4184]
import { arg, emit, openApp, pyWithinTenMinutes, withRelayAndBrowser } from "./browser_common.mjs";

const N = arg("n", 10_000);
const DIM = arg("dim", 384);
const K = arg("k", 10);
const QUERIES = arg("queries", 200);
const PY_QUERIES = arg("py-queries", 20);
const BATCH = arg("batch", 100);
const PORT = arg("port", 4184);
const GOAL_MS = 20;
const BASE = `http://127.0.0.1:${PORT}`;


// Runs in the worker. Timings are time.perf_counter() around each call, in ms.
// Data: seeded uniform vectors (normalised on store), queries drawn the same way.
const CODE = `
import json, random, time
from ruvector_edge.memory import PurePythonKernel, VectorMemory, pack_unit_vector
from ruvector_edge.memory.browser import JsFloat32Kernel

N, DIM, K, Q, PYQ, BATCH = ${N}, ${DIM}, ${K}, ${QUERIES}, ${PY_QUERIES}, ${BATCH}
rng = random.Random(1234)
vectors = [[rng.random() - 0.5 for _ in range(DIM)] for _ in range(N)]
queries = [[rng.random() - 0.5 for _ in range(DIM)] for _ in range(max(Q, PYQ, BATCH))]

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]

def timed(fn, items):
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
    return out

res = {}
mems = {}
for name, kernel in (("js", JsFloat32Kernel(DIM)), ("py", PurePythonKernel(DIM))):
    mem = VectorMemory("bench-agent", DIM, N, kernel=kernel)
    t = time.perf_counter()
    for i, v in enumerate(vectors):
        mem.store_memory(f"memory {i}", v)
    res[name + "_store_ms"] = (time.perf_counter() - t) * 1000
    mems[name] = mem

js, pyk = mems["js"], mems["py"]
timed(lambda q: js.search_memory(q, K), queries[:10])  # warm-up: let the JIT compile the kernel
res["js_single"] = timed(lambda q: js.search_memory(q, K), queries[:Q])
packed = [pack_unit_vector(q, DIM) for q in queries[:Q]]
res["kernel_single"] = timed(lambda p: js.kernel.search([p], K), packed)
t = time.perf_counter()
js.search_many(queries[:BATCH], K)
res["js_batch_ms"] = (time.perf_counter() - t) * 1000
fresh = JsFloat32Kernel(DIM)
blobs = [pack_unit_vector(v, DIM) for v in vectors]
t = time.perf_counter()
fresh.add_many(blobs)
res["js_add_many_ms"] = (time.perf_counter() - t) * 1000
res["py_single"] = timed(lambda q: pyk.search_memory(q, K), queries[:PYQ])
same = all([h.id for h in js.search_memory(q, K)] == [h.id for h in pyk.search_memory(q, K)] for q in queries[:PYQ])
res["same_top_k"] = same
json.dumps({k: v if not isinstance(v, list) else {"p50": pct(v, 50), "p99": pct(v, 99), "n": len(v)} for k, v in res.items()})
`;

await withRelayAndBrowser(PORT, async (browser) => {
  const page = await openApp(await browser.newContext(), BASE + "/");
  const r = JSON.parse(await pyWithinTenMinutes(page, CODE));
  const shape = { n: N, dim: DIM, k: K };
  const ms = (x) => +x.toFixed(3);
  const line = (impl, s, extra = {}) =>
    emit({ bench: "browser_memory_search", impl, ...shape, queries: s.n, p50_ms: ms(s.p50), p99_ms: ms(s.p99), ...extra });
  line("vectormemory+js-float32", r.js_single, { goal_ms: GOAL_MS, meets_goal: r.js_single.p50 <= GOAL_MS });
  line("js-float32-kernel-only", r.kernel_single);
  line("vectormemory+pure-python", r.py_single, { same_top_k_as_js: r.same_top_k });
  emit({ bench: "browser_memory_search_batch", impl: "vectormemory+js-float32", ...shape, batch: BATCH,
    ms_total: ms(r.js_batch_ms), ms_per_query: ms(r.js_batch_ms / BATCH) });
  emit({ bench: "browser_memory_load", impl: "js-float32-add_many", ...shape, ms: ms(r.js_add_many_ms) });
  emit({ bench: "browser_memory_store", impl: "vectormemory.store_memory", ...shape,
    ms_js: Math.round(r.js_store_ms), ms_py: Math.round(r.py_store_ms) });
});
