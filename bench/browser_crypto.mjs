// Browser benchmark: Pyodide cold start, raw WebCrypto Ed25519 in plain JS in
// the worker, the same through WebCryptoProvider from Python, and envelope
// seal/open — all in one headless Chromium run, printed as JSON lines.
// Needs a built app (bash scripts/build-web.sh). Loopback only; every loop is bounded.
//   node bench/browser_crypto.mjs [--n 500] [--rounds 3] [--cold 3]
import { readFileSync } from "node:fs";
import { arg, emit, openApp, withRelayAndBrowser } from "./browser_common.mjs";

const N = arg("n", 500);
const ROUNDS = arg("rounds", 3);
const COLD = arg("cold", 3);
const PAYLOAD = arg("payload", 1024);
const PORT = arg("port", 4183);
const BASE = `http://127.0.0.1:${PORT}`;


async function openReady(browser) {
  const context = await browser.newContext();
  const page = await openApp(context, BASE + "/");
  const ms = await page.evaluate(() => window.edge.timing.readyMs);
  return { context, page, ms };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

await withRelayAndBrowser(PORT, async (browser) => {
  const cold = [];
  for (let i = 0; i < COLD; i++) {
    const { context, ms } = await openReady(browser);
    cold.push(ms);
    await context.close();
  }
  emit({ bench: "pyodide_cold_start", impl: "page-load-to-ready", ms_median: Math.round(median(cold)), ms_all: cold.map(Math.round) });

  const { page } = await openReady(browser);
  const raw = await page.evaluate(([n]) => window.edge.call("rawEd25519", { n, size: 300 }), [Math.max(N, 2000)]);
  emit({ bench: "ed25519_sign", impl: "webcrypto-js-worker", ops_per_s: Math.round(raw.sign_per_s) });
  emit({ bench: "ed25519_verify", impl: "webcrypto-js-worker", ops_per_s: Math.round(raw.verify_per_s) });

  const src = readFileSync(new URL("./browser_bench.py", import.meta.url), "utf8");
  const code = `
import json
_b = {"__name__": "browser_bench"}
exec(${JSON.stringify(src)}, _b)
json.dumps(await _b["run"](${N}, ${ROUNDS}, ${PAYLOAD}))
`;
  const r = JSON.parse(await page.evaluate((c) => window.edge.py(c), code));
  emit({ bench: "ed25519_sign", impl: "pyodide-webcrypto-sign_many", batch: N, ops_per_s: Math.round(r.sign_many_per_s),
    ratio_vs_raw: +(r.sign_many_per_s / raw.sign_per_s).toFixed(3) });
  emit({ bench: "ed25519_verify", impl: "pyodide-webcrypto-verify_many", batch: N, ops_per_s: Math.round(r.verify_many_per_s),
    ratio_vs_raw: +(r.verify_many_per_s / raw.verify_per_s).toFixed(3) });
  if (r.seal_per_s !== undefined) {
    emit({ bench: "envelope_seal", impl: "pyodide-ruvector_edge", batch: N, payload_bytes: PAYLOAD, ops_per_s: Math.round(r.seal_per_s),
      ratio_vs_raw_sign: +(r.seal_per_s / raw.sign_per_s).toFixed(3), target_ratio: 0.3 });
    emit({ bench: "envelope_open", impl: "pyodide-ruvector_edge", batch: N, payload_bytes: PAYLOAD, ops_per_s: Math.round(r.open_per_s),
      ratio_vs_raw_verify: +(r.open_per_s / raw.verify_per_s).toFixed(3), target_ratio: 0.3 });
  }
});
