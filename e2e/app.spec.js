// The page as an agent: an invite in the URL fragment (#swarm_key=…) makes the page
// join that swarm through the relay on its own host and list its peers; without one,
// "Create a swarm" puts a fresh key in the fragment. Everything is read from the DOM.
import { test, expect } from "./fixtures.js";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WAIT = { timeout: 30_000 };

/** Open the app with a fragment in a fresh context (no shared BroadcastChannel) and wait until it joined. */
async function openJoined(browser, fragment) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`/#${fragment}`);
  await expect(page.locator("#me-id")).not.toBeEmpty({ timeout: 45_000 });
  expect(errors).toEqual([]);
  return page;
}

const peerIds = (page) => page.locator("#peers tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.agentId));
const leave = (page) => page.evaluate(() => window.edge.py("from ruvector_edge import browser_app\nawait browser_app.leave()")).catch(() => {});

test("pages opened with one invite fragment list each other and a native agent", async ({ browser }) => {
  const key = randomBytes(32).toString("hex");
  const a = await openJoined(browser, `swarm_key=${key}&id=app-a`);
  const b = await openJoined(browser, `swarm_key=${key}&role=scout&id=app-b`);
  const port = new URL(a.url()).port;
  const child = spawn(`${ROOT}.venv/bin/edge-agent`,
    ["--coordinator", `ws://127.0.0.1:${port}/ws#swarm_key=${key}`, "--duration", "30", "--id", "native-1"],
    { stdio: ["ignore", "ignore", "inherit"] });
  try {
    await expect(a.locator("#me-id")).toHaveText("app-a");
    await expect(a.locator("#me-role")).toHaveText("worker");
    await expect(b.locator("#me-role")).toHaveText("scout");
    await expect(a.locator("#me-fp")).not.toBeEmpty();
    expect(await a.locator("#me-swarm").textContent()).toBe(await b.locator("#me-swarm").textContent());
    await expect.poll(() => peerIds(a), WAIT).toEqual(["app-b", "native-1"]);
    await expect.poll(() => peerIds(b), WAIT).toEqual(["app-a", "native-1"]);
    const rowB = a.locator('#peers tr[data-agent-id="app-b"] td');
    await expect(rowB.nth(1)).toHaveText("scout");
    await expect(rowB.nth(2)).toHaveText(/^(relay|webrtc)$/); // tabs upgrade to WebRTC when they can
    await expect(rowB.nth(3)).toHaveText("active");
    await expect(rowB.nth(4)).toContainText("s ago");
    await expect(a.locator('#peers tr[data-agent-id="native-1"] td').nth(2)).toHaveText("relay");
    // the key stays in the fragment: the invite link shown is this page's URL
    await expect(a.locator("#invite-link")).toHaveValue(new RegExp(`#swarm_key=${key}`));
    mkdirSync(`${ROOT}test-results/screenshots`, { recursive: true });
    await a.screenshot({ path: `${ROOT}test-results/screenshots/app-peers.png`, fullPage: true });
  } finally {
    child.kill("SIGTERM");
    for (const p of [a, b]) {
      await leave(p);
      await p.context().close();
    }
  }
});

test("without an invite the page offers to create a swarm; the role/id picker joins, and a reload keeps the identity", async ({ page }) => {
  await page.goto("/");
  await expect(page.locator("#status")).toHaveAttribute("data-state", "ready", { timeout: 45_000 });
  await expect(page.locator("#create-btn")).toBeVisible();
  await expect(page.locator("#me")).toBeHidden();
  await expect(page.locator("#create-open-btn")).toBeVisible();
  await page.locator("#create-open-btn").click(); // "Create a swarm" founds an admitted one: e2e/admission.spec.js
  await expect.poll(() => page.evaluate(() => location.hash)).toMatch(/^#swarm_key=[0-9a-f]{64}$/);
  // the picker comes first, with a random tab id as default
  await expect(page.locator("#picker")).toBeVisible();
  await expect(page.locator("#pick-id")).toHaveValue(/^tab-[0-9a-f]{4}$/);
  // the browser itself checks the id (the pattern must compile under the `v` flag browsers use)
  const idValid = (value) => page.locator("#pick-id").evaluate((el, v) => ((el.value = v), el.checkValidity()), value);
  expect(await idValid("bad id!")).toBe(false);
  expect(await idValid("x".repeat(65))).toBe(false);
  expect(await idValid("a-b_c.9")).toBe(true);
  await page.locator("#pick-role").selectOption("scout");
  await page.locator("#pick-id").fill("picked-1");
  await page.locator("#join-btn").click();
  await expect(page.locator("#me-id")).toHaveText("picked-1", WAIT);
  await expect(page.locator("#me-role")).toHaveText("scout");
  await expect(page.locator("#create")).toBeHidden();
  await expect(page.locator("#picker")).toBeHidden();
  await expect(page.locator("#invite-link")).toHaveValue(/#swarm_key=[0-9a-f]{64}$/); // the key alone, not our id
  await expect(page.locator("#peers-empty")).toBeVisible();
  await expect(page.locator("#scout-feed")).toBeVisible(); // a scout is given a feed box
  // counts read as English: one pattern, not "1 patterns from 1 agents"
  await page.locator("#learn-state").fill("plural-state");
  await page.locator("#learn-action").fill("go");
  await page.locator("#learn-reward").fill("1");
  await page.locator("#learn-form button").click();
  await expect(page.locator("#pattern-stats")).toContainText("1 pattern from 1 agent, 1 visit,", WAIT);
  const fp = await page.locator("#me-fp").textContent();
  expect(fp).toMatch(/^([0-9a-f]{4}:){7}[0-9a-f]{4}$/);
  expect(await page.evaluate(() => location.hash)).toMatch(/&role=scout&id=picked-1$/);
  await leave(page);

  // Reload: the fragment names this agent now, so it rejoins at once with the identity kept in IndexedDB.
  await page.reload();
  await expect(page.locator("#me-id")).toHaveText("picked-1", { timeout: 45_000 });
  await expect(page.locator("#me-role")).toHaveText("scout");
  await expect(page.locator("#me-fp")).toHaveText(fp);
  await expect(page.locator("#picker")).toBeHidden();
  await leave(page);
});

test("a saved identity is per swarm and id: another id in the same browser gets another fingerprint", async ({ browser }) => {
  const key = randomBytes(32).toString("hex");
  const context = await browser.newContext();
  try {
    const fps = [];
    for (const id of ["same-a", "same-b", "same-a"]) {
      const page = await context.newPage();
      await page.goto(`/#swarm_key=${key}&id=${id}`);
      await expect(page.locator("#me-id")).toHaveText(id, { timeout: 45_000 });
      fps.push(await page.locator("#me-fp").textContent());
      await leave(page);
      await page.close();
    }
    expect(fps[0]).not.toBe(fps[1]);
    expect(fps[2]).toBe(fps[0]);
  } finally {
    await context.close();
  }
});
