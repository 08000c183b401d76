// Poisoning resistance (issue 14) with a hostile tab: three honest tabs learn that edit_ts goes
// to typescript-developer; a fourth member, in its own browser context, pushes extreme patterns
// with 2^32-1 visits, sends a state "of" 50 invented origins and floods memories. The honest
// tabs keep the honest best action and memories, and their pages show what was held back.
// Runs its own relay; every wait is bounded.
import { test, expect } from "./fixtures.js";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { startRelay, stopProcess } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PORT = Number(process.env.E2E_PORT || 4173) + 7;
const BASE = `http://127.0.0.1:${PORT}`;
const KEY = randomBytes(32).toString("hex");
const HONEST = ["honest-a", "honest-b", "honest-c"];
const STATE = "edit_ts";
const GOOD = "typescript-developer";
const ACTIONS = [GOOD, "javascript-developer", "attacker-choice"];
const CONVERGE = { timeout: 40_000, intervals: [250, 500, 1000] };

test.describe.configure({ mode: "serial", timeout: 150_000 });

let relay = null;
const contexts = [];
const pages = new Map(); // id -> page

const act = (page, name, args = {}) => page.evaluate(([n, a]) => window.edge.act(n, a), [name, args]);
const py = (page, code) => page.evaluate((c) => window.edge.py(c), code);
const defences = (page) => page.locator("#defences");

test.beforeAll(async ({ browser }) => {
  test.setTimeout(150_000);
  relay = await startRelay(PORT, ["--web", `${ROOT}dist`, "--memory-only"]);
  for (let c = 0; c < 2; c++) contexts.push(await browser.newContext());
  const tabs = [...HONEST.map((id) => [id, contexts[0]]), ["hostile", contexts[1]]];
  await Promise.all(tabs.map(async ([id, context]) => {
    const page = await context.newPage();
    await page.goto(`${BASE}/#swarm_key=${KEY}&role=worker&id=${id}`);
    pages.set(id, page);
  }));
  for (const [id, page] of pages) await expect(page.locator("#me-id")).toHaveText(id, { timeout: 90_000 });
});

test.afterAll(async () => {
  for (const page of pages.values()) {
    await page.evaluate(() => window.edge.py("from ruvector_edge import browser_app\nawait browser_app.leave()")).catch(() => {});
  }
  for (const context of contexts) await context.close().catch(() => {});
  if (relay) {
    await stopProcess(relay);
  }
});

test("a hostile tab's patterns, invented origins and memory flood change no honest tab's best action or memories", async () => {
  const hostile = pages.get("hostile");
  for (const [i, id] of HONEST.entries()) {
    const page = pages.get(id);
    await act(page, "learn", { state: STATE, action: GOOD, reward: 0.85 + 0.02 * i });
    await act(page, "learn", { state: STATE, action: "javascript-developer", reward: 0.4 });
  }
  const victim = pages.get("honest-a");
  // A small memory on one honest tab, so that the flood fills it: five notes of its own first.
  await py(victim, "from ruvector_edge import browser_app\nbrowser_app._app.agent.memory.capacity = 40");
  for (let i = 0; i < 5; i++) await act(victim, "store_memory", { text: `honest note ${i} about routing` });
  for (const id of HONEST) {
    await expect.poll(async () => (await act(pages.get(id), "best_action", { state: STATE, actions: ACTIONS }))?.action,
      { ...CONVERGE, message: id }).toBe(GOOD);
  }
  await expect.poll(async () => (await act(hostile, "best_action", { state: STATE, actions: [GOOD] }))?.action, CONVERGE)
    .toBe(GOOD); // the hostile tab has heard the honest ones

  await py(hostile, `
from ruvector_edge import browser_app
from ruvector_edge.intelligence import IntelligenceSync
from ruvector_edge.p2p.wire import b64
from ruvector_edge.protocol import MessageKind
agent = browser_app._app.agent
HUGE, MAX = 1e100, 2**32 - 1
agent.intelligence.set_pattern("${STATE}", "attacker-choice", HUGE, MAX)
agent.intelligence.set_pattern("${STATE}", "${GOOD}", -HUGE, MAX)
agent.intelligence.set_pattern("${STATE}", "javascript-developer", HUGE, MAX)
await agent.sync_patterns()
sink = IntelligenceSync("sink")
for i in range(50):
    fake = IntelligenceSync(f"sybil-{i:02d}")
    fake.set_pattern("${STATE}", "attacker-choice", HUGE, MAX)
    sink.merge_peer_state(fake.agent_id, fake.serialize_state())
await agent.broadcast(MessageKind.SYNC_PATTERNS, state=b64(sink.serialize_state()))
for i in range(200):
    agent.memory.store_memory(f"spam {i} buy now", agent.embedder.embed(f"spam {i} buy now"))
await agent.sync_memories()`);

  for (const id of HONEST) {
    const page = pages.get(id);
    await expect(defences(page)).toHaveAttribute("data-foreign-refused", /^[1-9]/, CONVERGE);
    await expect(defences(page)).toHaveAttribute("data-trimmed", /^[1-9]/, CONVERGE);
    expect((await act(page, "best_action", { state: STATE, actions: ACTIONS }))?.action, id).toBe(GOOD);
  }
  // The flood reached the small memory: every spam entry past the hostile member's share is counted
  // and shown, and the victim's own notes and the other honest members' memories are all still there.
  const owners = () => py(victim, `
from ruvector_edge import browser_app
[e.owner for e in browser_app._app.agent.memory._entries.values()]`);
  const accounted = async () => { // all 200 spam entries arrived: held, or dropped and counted on the page
    const held = (await owners()).filter((o) => o === "hostile").length;
    return held + Number(await defences(victim).getAttribute("data-memory-over-share"));
  };
  await expect.poll(accounted, CONVERGE).toBe(200);
  await expect(defences(victim)).toContainText("past a member's share dropped");
  const held = await owners();
  expect(held.filter((o) => o === "honest-a")).toHaveLength(5);
  expect(held).toHaveLength(40);
});
