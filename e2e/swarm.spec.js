// The whole swarm at once: 8 browser agents (4 contexts × 2 tabs, so tabs also share a
// BroadcastChannel and may upgrade to WebRTC) and 2 native agents (e2e/py/swarm_agent.py)
// on one relay that this spec runs itself, so that it can restart it. The tests run in order
// on one swarm; every wait is bounded. Everything is read from the pages' DOM or asked of
// the agents through the page's own actions (window.edge.act), as a person would click.
import { test, expect } from "./fixtures.js";
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { nativeHelper, startRelay, stopProcess } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PORT = Number(process.env.E2E_PORT || 4173) + 1;
const BASE = `http://127.0.0.1:${PORT}`;
const KEY = randomBytes(32).toString("hex");
const SHOTS = `${ROOT}test-results/screenshots`;
const CONVERGE = { timeout: 40_000, intervals: [250, 500, 1000] };
// Tab i: id tab-i with a role; 0 coordinates, 1 scouts, 2 is a specialist in "vision", the rest work.
const ROLES = ["coordinator", "scout", "specialist", "worker", "worker", "worker", "worker", "worker"];
const EXTRA = { 2: "&caps=vision" };
const TAB_IDS = ROLES.map((_, i) => `tab-${i}`);
const NATIVE_IDS = ["native-1", "native-2"];
const ALL = [...TAB_IDS, ...NATIVE_IDS];

test.describe.configure({ mode: "serial", timeout: 120_000 });

let relay = null;
const natives = [];
const contexts = [];
const pages = new Map(); // id -> page

/** A native agent (e2e/py/swarm_agent.py); `ask(req)` resolves with its answer's `ok`, rejects on its `error`. */
async function startNative(id) {
  const helper = nativeHelper("swarm_agent.py", { timeoutMs: 30_000, label: id, readyKey: "joined",
                                                  args: [`ws://127.0.0.1:${PORT}/ws`, KEY, id] });
  await helper.ready;
  const ask = async (req) => {
    const msg = await helper.ask(req);
    if (msg.error) throw new Error(msg.error);
    return msg.ok;
  };
  return { id, ask, close: helper.close };
}

const act = (page, name, args = {}) => page.evaluate(([n, a]) => window.edge.act(n, a), [name, args]);
const peerRows = (page) =>
  page.locator("#peers tbody tr").evaluateAll((rows) => rows.map((r) => [r.dataset.agentId, r.dataset.status]));
const activePeers = async (page) => (await peerRows(page)).filter(([, s]) => s === "active").map(([id]) => id).sort();
const others = (id, ids = ALL) => ids.filter((x) => x !== id).sort();

test.beforeAll(async ({ browser }) => {
  test.setTimeout(150_000);
  relay = await startRelay(PORT, ["--web", `${ROOT}dist`, "--memory-only"]);
  for (const id of NATIVE_IDS) natives.push(await startNative(id));
  for (let c = 0; c < 4; c++) contexts.push(await browser.newContext({ viewport: { width: 1280, height: 900 } }));
  await Promise.all(TAB_IDS.map(async (id, i) => {
    const page = await contexts[Math.floor(i / 2)].newPage();
    page.on("pageerror", (e) => console.error(`${id}: ${e}`));
    await page.goto(`${BASE}/#swarm_key=${KEY}&role=${ROLES[i]}&id=${id}${EXTRA[i] ?? ""}`);
    pages.set(id, page);
  }));
  for (const [id, page] of pages) await expect(page.locator("#me-id")).toHaveText(id, { timeout: 90_000 });
});

test.afterAll(async () => {
  for (const page of pages.values()) {
    await page.evaluate(() => window.edge.py("from ruvector_edge import browser_app\nawait browser_app.leave()")).catch(() => {});
  }
  for (const context of contexts) await context.close().catch(() => {});
  for (const n of natives) n.close();
  if (relay) await stopProcess(relay);
});

test("every agent, browser or native, is in every peer list with its role", async () => {
  for (const [id, page] of pages) {
    await expect.poll(() => activePeers(page), { ...CONVERGE, message: `${id}'s peers` }).toEqual(others(id));
  }
  for (const n of natives) {
    await expect.poll(async () => (await n.ask({ cmd: "peers" })).filter((p) => p.status === "active").map((p) => p.agent_id).sort(),
      { ...CONVERGE, message: `${n.id}'s peers` }).toEqual(others(n.id));
  }
  // roles come with each member's JOIN, which can trail its registration
  const expected = { "tab-0": "coordinator", "tab-1": "scout", "tab-2": "specialist", "tab-3": "worker", "native-1": "worker" };
  for (const [id, page] of pages) {
    await expect.poll(() => page.locator("#peers tbody tr").evaluateAll((rows) =>
      Object.fromEntries(rows.map((r) => [r.dataset.agentId, r.cells[1].textContent]))), { ...CONVERGE, message: `roles seen by ${id}` })
      .toMatchObject(Object.fromEntries(Object.entries(expected).filter(([peer]) => peer !== id)));
  }
  // tabs of one context reach each other directly, natives only through the relay
  const paths = await pages.get("tab-4").locator("#peers tbody tr").evaluateAll((rows) =>
    Object.fromEntries(rows.map((r) => [r.dataset.agentId, r.cells[2].textContent])));
  expect(paths["tab-5"]).toMatch(/^(webrtc|broadcast-channel)$/);
  expect(paths["native-1"]).toBe("relay");
  mkdirSync(SHOTS, { recursive: true });
  await pages.get("tab-3").screenshot({ path: `${SHOTS}/swarm-worker-tab-3.png`, fullPage: true });
});

test("a pattern learned in one tab reaches every agent and all agree on the best action", async () => {
  const page = pages.get("tab-3");
  await page.locator("#learn-state").fill("e2e-route");
  await page.locator("#learn-action").fill("fast");
  await page.locator("#learn-reward").fill("5");
  await page.locator("#learn-form button").click();
  await expect(page.locator("#best-result")).toContainText("learned");
  await act(page, "learn", { state: "e2e-route", action: "slow", reward: 1 });
  const query = { state: "e2e-route", actions: ["fast", "slow"] };
  for (const [id, p] of pages) {
    await expect.poll(async () => (await act(p, "best_action", query))?.action, { ...CONVERGE, message: id }).toBe("fast");
  }
  for (const n of natives) {
    await expect.poll(() => n.ask({ cmd: "best_action", ...query }), { ...CONVERGE, message: n.id }).toBe("fast");
  }
  // and through the page's own form, in another tab
  const other = pages.get("tab-6");
  await other.locator("#best-state").fill("e2e-route");
  await other.locator("#best-actions").fill("slow, fast");
  await other.locator("#best-form button").click();
  await expect(other.locator("#best-result")).toContainText("best: fast");
  await expect(other.locator('#patterns tr[data-state="e2e-route"]').first()).toBeVisible();
});

test("a memory stored in one tab is found from another tab and a native agent, with its origin", async () => {
  const text = "penguins huddle in a rotating circle to share warmth";
  const page = pages.get("tab-4");
  await page.locator("#store-text").fill(text);
  await page.locator("#store-form button").click();
  await expect(page.locator("#memory-result")).toContainText("stored");
  const other = pages.get("tab-6");
  await other.locator("#search-text").fill("penguins huddle for warmth");
  await expect.poll(async () => {
    await other.locator("#search-form button").click();
    return other.locator("#search-results tbody tr").first().evaluate((r) => [r.cells[0].textContent, r.dataset.owner]).catch(() => null);
  }, CONVERGE).toEqual([text, "tab-4"]);
  await expect.poll(async () => (await natives[0].ask({ cmd: "search", query: "penguins huddle" }))[0], CONVERGE)
    .toEqual({ content: text, owner: "tab-4" });
  // the scout filled the shared memory from its bundled corpus
  await expect.poll(async () => (await act(other, "search_memory", { query: "relay forwards sealed frames", k: 1 }))[0]?.owner, CONVERGE)
    .toBe("tab-1");
});

test("a task submitted in one tab is executed by another agent and its receipt verifies in the submitting tab; one for a specialist capability runs in that tab", async () => {
  const page = pages.get("tab-0");
  await page.locator("#task-input").fill("tasks from a tab");
  await page.locator("#task-btn").click();
  await expect(page.locator("#task-result")).toContainText("receipt verified", { timeout: 45_000 });
  await expect(page.locator("#task-result")).toContainText("output “TASKS FROM A TAB”");
  const row = page.locator('#tasks tbody tr[data-state="done"]').first();
  await expect(row).toBeVisible();
  const [executor, verified] = await row.evaluate((r) => [r.cells[4].textContent, r.cells[6].textContent]);
  expect(executor).not.toBe("tab-0");
  expect(TAB_IDS.concat(NATIVE_IDS)).toContain(executor);
  expect(verified).toBe("yes");
  await expect(page.locator("#artifacts tbody tr")).toHaveCount(3); // module, input, output
  // a task for the specialist's capability is run by the specialist, in its browser sandbox
  await expect(pages.get("tab-2").locator("#me-caps")).toHaveText("specialist, wasm, vision");
  await page.locator("#task-input").fill("for the specialist");
  await page.locator("#task-cap").fill("vision");
  await page.locator("#task-btn").click();
  await expect(page.locator("#task-result")).toContainText("receipt verified: tab-2 → Success, output “FOR THE SPECIALIST”", { timeout: 45_000 });
  await page.screenshot({ path: `${SHOTS}/swarm-coordinator-tab-0.png`, fullPage: true });
});

test("a closed tab shows as gone in the others", async () => {
  await pages.get("tab-7").close();
  pages.delete("tab-7");
  for (const [id, page] of pages) {
    await expect.poll(async () => Object.fromEntries(await peerRows(page))["tab-7"], { ...CONVERGE, message: id }).toBe("gone");
  }
});

test("a reloaded tab keeps its identity, so everyone accepts it again under the same id", async () => {
  const page = pages.get("tab-6");
  const fingerprint = await page.locator("#me-fp").textContent();
  await page.reload();
  await expect(page.locator("#me-id")).toHaveText("tab-6", { timeout: 60_000 });
  await expect(page.locator("#me-fp")).toHaveText(fingerprint);
  // peers pinned tab-6 to its first key: a new key would be refused and tab-6 would stay gone
  await act(page, "learn", { state: "after-reload", action: "kept", reward: 1 });
  for (const [id, other] of pages) {
    if (id === "tab-6") continue;
    await expect.poll(async () => Object.fromEntries(await peerRows(other))["tab-6"], { ...CONVERGE, message: id }).toBe("active");
    await expect.poll(async () => (await act(other, "best_action", { state: "after-reload", actions: ["kept"] }))?.action,
      { ...CONVERGE, message: id }).toBe("kept");
  }
});

/** Agents connected to the relay now (its Prometheus gauge). */
async function relayConnections() {
  const text = await (await fetch(`${BASE}/metrics`)).text();
  const line = text.split("\n").find((l) => /^edge_relay_connections(\{[^}]*\})? /.test(l));
  return line ? Number(line.split(" ").pop()) : -1;
}

test("the relay restarted: every agent reconnects and the swarm reconverges without losing patterns", async () => {
  await stopProcess(relay);
  relay = null;
  // learned while the relay is down: it can only travel once the native agent is back
  await natives[0].ask({ cmd: "learn", state: "during-outage", action: "x", reward: 2 });
  await sleep(1500);
  relay = await startRelay(PORT, ["--web", `${ROOT}dist`, "--memory-only"]);
  const alive = [...pages.keys(), ...NATIVE_IDS];
  // "active" alone could be heartbeats from before the restart: count the relay's connections too
  await expect.poll(relayConnections, { ...CONVERGE, message: "agents connected to the new relay" }).toBe(alive.length);
  for (const [id, page] of pages) {
    await expect.poll(() => activePeers(page), { ...CONVERGE, message: `${id} after restart` }).toEqual(others(id, alive));
  }
  for (const n of natives) {
    await expect.poll(async () => (await n.ask({ cmd: "peers" })).filter((p) => p.status === "active").map((p) => p.agent_id).sort(),
      { ...CONVERGE, message: `${n.id} after restart` }).toEqual(others(n.id, alive));
  }
  const query = { state: "e2e-route", actions: ["fast", "slow"] };
  for (const [id, page] of pages) expect((await act(page, "best_action", query))?.action, id).toBe("fast");
  for (const n of natives) expect(await n.ask({ cmd: "best_action", ...query }), n.id).toBe("fast");
  for (const [id, page] of pages) {
    await expect.poll(async () => (await act(page, "best_action", { state: "during-outage", actions: ["x"] }))?.action,
      { ...CONVERGE, message: `${id}: a pattern learned during the outage` }).toBe("x");
  }
  // new learning after the restart still spreads, from a native agent this time
  await natives[1].ask({ cmd: "learn", state: "after-restart", action: "b", reward: 3 });
  await natives[1].ask({ cmd: "learn", state: "after-restart", action: "a", reward: 1 });
  for (const [id, page] of pages) {
    await expect.poll(async () => (await act(page, "best_action", { state: "after-restart", actions: ["a", "b"] }))?.action,
      { ...CONVERGE, message: id }).toBe("b");
  }
  await pages.get("tab-1").screenshot({ path: `${SHOTS}/swarm-scout-tab-1-after-restart.png`, fullPage: true });
});
