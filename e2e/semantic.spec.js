// Semantic memory across runtimes: all-MiniLM-L6-v2 on onnxruntime-web in the worker
// (bridges/embed.js, memory/browser_embedder.py, the pure-Python WordPiece) against
// onnxruntime + HF tokenizers natively (e2e/py/semantic_agent.py), on a relay this spec
// runs itself; and a copy of the app without the model, where the tab says it hashes.
import { test, expect } from "./fixtures.js";
import { randomBytes } from "node:crypto";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, nativeHelper, py, startRelay, stopProcess } from "./helpers.js";

const PORT = Number(process.env.E2E_PORT || 4173) + 2;
const BARE_PORT = PORT + 1;
const KEY = randomBytes(32).toString("hex");
const CONVERGE = { timeout: 40_000, intervals: [250, 500, 1000] };

const TEXTS = [
  "how does auth work?",
  "API authentication flow uses signed JWTs",
  "Café naïve résumé — Ångström, Łódź, Đà Nẵng",
  "東京は日本の首都です。北京、上海",
  "I ❤️ emoji 🥰 👍🏽 🚀 and ctrl\u0007 chars\u200b",
  "pneumonoultramicroscopicsilicovolcanoconiosis " + "x".repeat(120),
  "hello [MASK] world",
  "the quick brown fox jumps over the lazy dog ".repeat(40), // over 256 tokens: cut as natively
  ...Array.from({ length: 36 }, (_, i) => `memory number ${i} about ${["relays", "signatures", "patterns", "tasks"][i % 4]}`),
];

/** The model line of the page once loading is over (ready, absent or failed). */
async function modelOutcome(page) {
  const status = page.locator("#model-status");
  await expect(status).toHaveAttribute("data-state", /^(ready|absent|failed)$/, { timeout: 60_000 });
  return { state: await status.getAttribute("data-state"), text: await status.textContent() };
}

test.describe.configure({ mode: "serial", timeout: 120_000 });

let relay = null;
let native = null;

test.beforeAll(async () => {
  relay = await startRelay(PORT, ["--web", `${ROOT}dist`, "--memory-only"]);
  native = nativeHelper("semantic_agent.py", { timeoutMs: 60_000, label: "native agent", readyKey: "joined",
                                               args: [`ws://127.0.0.1:${PORT}/ws`, KEY, "native-sem"], readyMs: 60_000 });
  const hello = await native.ready;
  expect(hello.model).toMatch(/^all-MiniLM-L6-v2-onnx-int8:sha256=/);
});

test.afterAll(async () => {
  native?.close();
  if (relay) await stopProcess(relay);
});

const ask = async (req) => {
  const msg = await native.ask(req);
  if (msg.error) throw new Error(msg.error);
  return msg.ok;
};

test("the page shows the model loading, then the same texts give the same ids and vectors as natively", async ({ page }) => {
  const states = [];
  await page.exposeFunction("recordModelState", (s) => states.push(s));
  await page.addInitScript(() => {
    new MutationObserver(() => window.recordModelState?.(document.querySelector("#model-status")?.dataset.state))
      .observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
  });
  await page.goto(`http://127.0.0.1:${PORT}/`);
  const outcome = await modelOutcome(page);
  expect(outcome.state).toBe("ready");
  expect(outcome.text).toContain("all-MiniLM-L6-v2 on onnxruntime-web");
  expect(states).toContain("loading"); // the 23 MB download was shown as it happened
  await expect(page.locator("#status")).toHaveAttribute("data-state", "ready", { timeout: 45_000 });

  const browser = JSON.parse(await py(page, `
import json
from ruvector_edge.platform import default_embedder
e = default_embedder(384)
texts = json.loads(${JSON.stringify(JSON.stringify(TEXTS))})
json.dumps({"kind": type(e).__name__, "model": e.model_id, "ids": e.tokenizer.encode_many(texts),
            "vectors": [list(v) for v in e.embed_many(texts)], "one": list(e.embed(texts[1]))})
`));
  expect(browser.kind).toBe("BrowserEmbedder");
  const nativeIds = await ask({ cmd: "ids", texts: TEXTS });
  expect(browser.ids).toEqual(nativeIds);
  expect(Math.max(...browser.ids.map((ids) => ids.length))).toBe(256);

  const nativeVectors = await ask({ cmd: "embed", texts: TEXTS });
  let worst = 0;
  nativeVectors.forEach((row, i) => row.forEach((x, d) => (worst = Math.max(worst, Math.abs(x - browser.vectors[i][d])))));
  browser.one.forEach((x, d) => (worst = Math.max(worst, Math.abs(x - nativeVectors[1][d])))); // batch of one, too
  console.log(`max |browser - native| over ${TEXTS.length} texts: ${worst.toExponential(2)}`);
  expect(worst).toBeLessThan(1e-5);
});

test("a tab's store_text is found by a native search_text with a paraphrase, and vice versa", async ({ page }) => {
  await page.goto(`http://127.0.0.1:${PORT}/#swarm_key=${KEY}&role=worker&id=tab-sem`);
  await expect(page.locator("#me-id")).toHaveText("tab-sem", { timeout: 90_000 });
  const act = (name, args) => page.evaluate(([n, a]) => window.edge.act(n, a), [name, args]);
  const snap = await page.evaluate(() => window.edge.snapshot());
  expect(snap.embedder).toMatch(/^all-MiniLM-L6-v2-onnx-int8:sha256=/);

  // Filler that shares words with the queries, so lexical overlap alone would not pick the right one.
  for (const text of ["The cafeteria menu changes every week", "Store the work queue in the relay", "How the page is laid out"]) {
    await act("store_memory", { text });
  }
  await act("store_memory", { text: "API authentication flow uses signed JWTs" });
  await ask({ cmd: "store_text", text: "The cat is sleeping on the sofa" });

  // native → what the tab stored, by meaning
  await expect.poll(async () => (await ask({ cmd: "search_text", query: "how does auth work?", k: 1 }))[0]?.content,
    { ...CONVERGE, message: "the native agent's top hit" }).toBe("API authentication flow uses signed JWTs");
  // tab → what the native agent stored, by meaning, through the page's search form
  await page.fill("#search-text", "a kitten naps on the couch");
  await page.click("#search-form button[type=submit]");
  await expect(page.locator("#search-results tbody tr").first()).toContainText("The cat is sleeping on the sofa", { timeout: 40_000 });
  const hits = await act("search_memory", { query: "a kitten naps on the couch", k: 1 });
  expect(hits[0]).toMatchObject({ content: "The cat is sleeping on the sofa", owner: "native-sem" });
});

test("a tab served without the model falls back to hashing and says so", async ({ page }) => {
  const web = mkdtempSync(join(tmpdir(), "edge-web-bare-"));
  let bare = null;
  try {
    cpSync(`${ROOT}dist`, web, { recursive: true, filter: (src) => !src.includes(`${join("dist", "models")}`) });
    bare = await startRelay(BARE_PORT, ["--web", web, "--memory-only"]);
    await page.goto(`http://127.0.0.1:${BARE_PORT}/`);
    const outcome = await modelOutcome(page);
    expect(outcome.state).toBe("absent");
    expect(outcome.text).toContain("falls back to feature hashing");
    await expect(page.locator("#status")).toHaveAttribute("data-state", "ready", { timeout: 45_000 });
    const out = JSON.parse(await py(page, `
import json
from ruvector_edge.memory import HashingEmbedder, VectorMemory
from ruvector_edge.platform import default_embedder
e = default_embedder(384)
m = VectorMemory("bare", 384, 10, embedder=e)
m.store_memory("signed heartbeats every few seconds", e.embed("signed heartbeats every few seconds"))
json.dumps({"hashing": isinstance(e, HashingEmbedder), "model": m.model,
            "hit": m.search_memory(e.embed("heartbeats"), 1)[0].content})
`));
    expect(out).toEqual({ hashing: true, model: "feature-hashing-sha256-v1", hit: "signed heartbeats every few seconds" });
  } finally {
    if (bare) await stopProcess(bare);
    rmSync(web, { recursive: true, force: true });
  }
});
