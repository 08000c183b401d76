// Browser benchmark: all-MiniLM-L6-v2 in the Pyodide worker. Model load (download of the
// 23 MB file, sha256 checks, onnxruntime-web session, one thread) per cold page, and
// embeddings/s through BrowserEmbedder.embed_many (WordPiece in Python, one FFI crossing,
// pooling in JS) beside raw onnxruntime-web session.run on the same ids in the same worker,
// at batch 1 and 32 (issue 13 goal: >= 0.9x raw). The sentences are bench/semantic_memory.py's.
// Needs a built app with the model (bash scripts/build-web.sh). Loopback only; every loop is bounded.
//   node bench/browser_embed.mjs [--n 96] [--rounds 3] [--cold 2]
import { arg, emit, openApp, withRelayAndBrowser } from "./browser_common.mjs";

const N = arg("n", 96);
const ROUNDS = arg("rounds", 3);
const COLD = arg("cold", 2);
const PORT = arg("port", 4186);
const BASE = `http://127.0.0.1:${PORT}`;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function modelReady(page) {
  await page.waitForFunction(() => ["ready", "absent", "failed"].includes(window.edge.model?.state), null, { timeout: 120_000 });
  const model = await page.evaluate(() => window.edge.model);
  if (model.state !== "ready") throw new Error(`the model did not load: ${model.reason}`);
  return model;
}

// Python in the worker: the same sentences as natively, embedded by ours and by raw onnxruntime-web,
// the two interleaved per round; returns texts/s per round for each side.
const code = (n, rounds, batch) => `
import json, random, time
from array import array
import js
from ruvector_edge.platform import default_embedder
from ruvector_edge.platform.jsffi import to_u8
WORDS = ("agent relay memory vector signed heartbeat swarm browser tab model search index token key "
         "garden weather river music coffee train city winter market doctor letter window").split()
rng = random.Random(7)
texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 24))) for _ in range(${n})]
e = default_embedder(384)
assert type(e).__name__ == "BrowserEmbedder", type(e)
encoded = [e.tokenizer.encode(t) for t in texts]
ids = js.Int32Array.new(to_u8(array("i", [x for row in encoded for x in row]).tobytes()).buffer)
lens = js.Uint32Array.new(to_u8(array("I", [len(r) for r in encoded]).tobytes()).buffer)
e.embed_many(texts[:${batch}])  # warm both paths once
await js.edgeEmbed.rawRuns(ids, lens, ${batch})
ours, raw = [], []
for _ in range(${rounds}):
    start = time.perf_counter()
    for at in range(0, len(texts), ${batch}):
        e.embed_many(texts[at : at + ${batch}])
    ours.append(len(texts) / (time.perf_counter() - start))
    raw.append(len(texts) / (await js.edgeEmbed.rawRuns(ids, lens, ${batch}) / 1000))
json.dumps({"ours": ours, "raw": raw, "tokens_mean": sum(len(r) for r in encoded) / len(encoded)})
`;

await withRelayAndBrowser(PORT, async (browser) => {
  const loads = [];
  for (let i = 0; i < COLD; i++) {
    const context = await browser.newContext();
    const page = await openApp(context, BASE + "/");
    const model = await modelReady(page);
    loads.push({ loadMs: model.loadMs, readyMs: await page.evaluate(() => window.edge.timing.readyMs) });
    await context.close();
  }
  emit({ bench: "minilm_load", impl: "onnxruntime-web-wasm-1thread", model_bytes: 22928619,
    load_ms_median: Math.round(median(loads.map((l) => l.loadMs))), load_ms_all: loads.map((l) => Math.round(l.loadMs)),
    python_ready_ms_all: loads.map((l) => Math.round(l.readyMs)) });

  const context = await browser.newContext();
  const page = await openApp(context, BASE + "/");
  await modelReady(page);
  for (const [batch, n] of [[1, N], [32, Math.max(N, 256)]]) {
    const r = JSON.parse(await page.evaluate((c) => window.edge.py(c), code(n, ROUNDS, batch)));
    const ours = median(r.ours);
    const raw = median(r.raw);
    emit({ bench: "minilm_embed", impl: "pyodide-BrowserEmbedder", batch, texts: n, tokens_mean: +r.tokens_mean.toFixed(1),
      per_s_median: +ours.toFixed(1), per_s_best: +Math.max(...r.ours).toFixed(1) });
    emit({ bench: "minilm_embed", impl: "onnxruntime-web-raw-session.run", batch, texts: n,
      per_s_median: +raw.toFixed(1), per_s_best: +Math.max(...r.raw).toFixed(1) });
    emit({ bench: "minilm_embed_ratio", batch, ratio_median: +(ours / raw).toFixed(3),
      ratio_best: +(Math.max(...r.ours) / Math.max(...r.raw)).toFixed(3), target_ratio: 0.9 });
  }
  await context.close();
});
