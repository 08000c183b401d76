// Browser swarm benchmark, as JSON lines: the web app's agents (headless Chromium, one
// context per tab, the page's own join from its invite) on the native relay.
//   join_ms       page open → "joined" (window.edge.joined resolved), measured in the page from
//                 navigation start: with no other tab running, cold (fresh context: empty HTTP
//                 cache) and warm (reload: cached Pyodide/wheel, identity read from IndexedDB);
//                 then each tab's cold join while the swarm grows to 8 and 16 tabs.
//   memory        per browser agent: Pyodide's wasm heap (in the worker), the page's JS heap
//                 (CDP Performance.getMetrics) and the RSS summed over all Chromium processes
//                 divided by the tabs (shared pages counted per process: an upper bound).
//   propagation   a pattern learned in one tab (then synced, as the page's Learn button does)
//                 until every other tab has merged it: p50/p99 of "all reached" and of each
//                 receiver, with 8 and 16 tabs. Peer in the same run: the same pattern reaching
//                 a native agent (e2e/py/swarm_agent.py, CPython) in the same swarm.
// Tabs open one after another (no join is timed while another tab is still loading); every
// loop is bounded. Needs a built app (bash scripts/build-web.sh).
//   node bench/browser_swarm.mjs [--sizes 8,16] [--trials 20] [--port 4417]
import { chromium } from "@playwright/test";
import { nativeHelper } from "../e2e/helpers.js";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { CHROMIUM, CHROMIUM_ARGS } from "../playwright.config.js";
import { arg, emit, startRelay } from "./browser_common.mjs";

const PORT = arg("port", 4417);
const TRIALS = Math.min(arg("trials", 20), 200);
const sizesAt = process.argv.indexOf("--sizes");
const SIZES = (sizesAt > 0 ? process.argv[sizesAt + 1] : "8,16").split(",").map(Number).filter((n) => n >= 2 && n <= 32);
const WARM_RELOADS = 4;
const BASE = `http://127.0.0.1:${PORT}`;

const py = (page, code) => page.evaluate((c) => window.edge.py(c), code);
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * q))] : null;
};
const round = (x, d = 1) => (x == null ? null : Math.round(x * 10 ** d) / 10 ** d);
const summary = (xs) => ({ n: xs.length, p50: round(quantile(xs, 0.5)), p99: round(quantile(xs, 0.99)), max: round(Math.max(...xs)) });

/** Open the app as `id` in a fresh context and wait for the join; returns {page, joinMs}. */
async function openTab(browser, key, id) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${BASE}/#swarm_key=${key}&id=${id}`);
  const joinMs = await page.waitForFunction(() => window.edge?.joined, null, { timeout: 90_000 })
    .then(() => page.evaluate(() => window.edge.joined.then(() => performance.now())));
  await watchPatterns(page);
  return { page, joinMs };
}

/** In the tab: note when each watched state's pattern first arrives (epoch ms), without polling. */
const watchPatterns = (page) => py(page, `
import time
from ruvector_edge import browser_app
from ruvector_edge.protocol import MessageKind
_agent = browser_app._app.agent
_watch = {}
async def _on_sync(sender, message):
    for state in [s for s, t in _watch.items() if t is None]:
        if _agent.intelligence.best_action(state, ["go"]) is not None:
            _watch[state] = time.time() * 1000
_agent.on(MessageKind.SYNC_PATTERNS, _on_sync)
`);

async function startNative(key, id) {
  const native = nativeHelper("swarm_agent.py", { timeoutMs: 30_000, label: id, readyKey: "joined",
                                                  args: [`ws://127.0.0.1:${PORT}/ws`, key, id] });
  await native.ready;
  return native;
}

/** Resident memory of the browser and all its child processes, in MiB. */
function browserRssMiB(pid) {
  const out = execFileSync("ps", ["-e", "-o", "pid=,ppid=,rss="]).toString().trim().split("\n").map((l) => l.trim().split(/\s+/).map(Number));
  const tree = new Set([pid]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [p, pp] of out) if (tree.has(pp) && !tree.has(p)) { tree.add(p); grew = true; }
  }
  return out.filter(([p]) => tree.has(p)).reduce((s, [, , rss]) => s + rss, 0) / 1024;
}

async function memory(tabs, browserPid) {
  const wasm = [];
  const js = [];
  for (const { page } of tabs) {
    wasm.push((await py(page, "import pyodide_js\npyodide_js._module.HEAPU8.length")) / 2 ** 20);
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Performance.enable");
    const { metrics } = await cdp.send("Performance.getMetrics");
    js.push(metrics.find((m) => m.name === "JSHeapUsedSize").value / 2 ** 20);
    await cdp.detach();
  }
  // RSS summed over Chromium's processes counts shared pages once per process: an upper bound.
  return { wasm_heap_mib: summary(wasm), page_js_heap_mib: summary(js), chromium_rss_sum_mib_per_tab: round(browserRssMiB(browserPid) / tabs.length) };
}

/** One trial: tab `src` learns a fresh state; ms until each other tab and the native agent have it. */
async function propagate(tabs, native, src, state) {
  for (const { page } of tabs) await py(page, `_watch[${JSON.stringify(state)}] = None`);
  const t0 = await py(tabs[src].page, `
import time
_t0 = time.time() * 1000
await _agent.learn(${JSON.stringify(state)}, "go", 1.0)
await _agent.sync_patterns()
_t0`);
  const nativeAt = (async () => {
    for (let i = 0; i < 400; i++) {
      if ((await native.ask({ cmd: "best_action", state, actions: ["go"] })).ok === "go") return Date.now();
      await sleep(5);
    }
    return null;
  })();
  const arrivals = [];
  for (let i = 0; i < tabs.length; i++) {
    if (i === src) continue;
    let at = null; // Python None arrives as undefined
    for (let n = 0; n < 200 && at == null; n++) {
      at = await py(tabs[i].page, `_watch[${JSON.stringify(state)}]`);
      if (at == null) await sleep(25);
    }
    if (at == null) throw new Error(`tab ${i} never received ${state}`);
    arrivals.push(at - t0);
  }
  const nat = await nativeAt;
  return { all: Math.max(...arrivals), each: arrivals, native: nat === null ? null : nat - t0 };
}

/** Page open → joined with no other tab running: cold in a fresh context, then warm (reload). */
async function idleJoins(browser) {
  const key = randomBytes(32).toString("hex");
  const cold = [];
  const warm = [];
  for (let i = 0; i < WARM_RELOADS; i++) {
    const { page, joinMs } = await openTab(browser, key, `probe-${i}`);
    cold.push(joinMs);
    await py(page, "from ruvector_edge import browser_app\nawait browser_app.leave()");
    await page.reload();
    await page.waitForFunction(() => window.edge?.joined, null, { timeout: 90_000 });
    warm.push(await page.evaluate(() => window.edge.joined.then(() => performance.now())));
    await py(page, "from ruvector_edge import browser_app\nawait browser_app.leave()");
    await page.context().close();
  }
  emit({ bench: "browser_swarm", what: "join_cold_ms", tabs: 1, ...summary(cold) });
  emit({ bench: "browser_swarm", what: "join_warm_ms", tabs: 1, note: "reload: HTTP-cached Pyodide and wheel, identity from IndexedDB", ...summary(warm) });
}

const relay = await startRelay(PORT);
// A browser server, so that its process (and so the tabs' processes) can be measured.
const server = await chromium.launchServer({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
const browserPid = server.process().pid;
const browser = await chromium.connect(server.wsEndpoint());
try {
  await idleJoins(browser);
  for (const size of SIZES) {
    const key = randomBytes(32).toString("hex");
    const native = await startNative(key, "bench-native");
    const tabs = [];
    try {
      for (let i = 0; i < size; i++) tabs.push(await openTab(browser, key, `bench-${i}`));
      emit({ bench: "browser_swarm", what: "join_cold_ms_while_swarm_grows", tabs: size, ...summary(tabs.map((t) => t.joinMs)) });
      await sleep(3000); // let the last tabs be known to everyone
      emit({ bench: "browser_swarm", what: "memory_per_agent", tabs: size, ...(await memory(tabs, browserPid)) });
      const all = [];
      const each = [];
      const nat = [];
      for (let t = 0; t < TRIALS; t++) {
        const r = await propagate(tabs, native, t % size, `bench-${size}-${t}`);
        all.push(r.all);
        each.push(...r.each);
        if (r.native !== null) nat.push(r.native);
        await sleep(200);
      }
      emit({ bench: "browser_swarm", what: "pattern_to_all_tabs_ms", tabs: size, ...summary(all) });
      emit({ bench: "browser_swarm", what: "pattern_to_each_tab_ms", tabs: size, ...summary(each) });
      emit({ bench: "browser_swarm", what: "pattern_to_native_agent_ms", tabs: size, peer: "CPython agent in the same swarm (polled every ~5 ms)", ...summary(nat) });
    } finally {
      for (const { page } of tabs) await page.context().close().catch(() => {});
      native.close();
    }
  }
} finally {
  await browser.close();
  await server.close();
  try {
    process.kill(-relay.pid);
  } catch {} // already gone
}
