// The console guard of fixtures.js: each of these tests logs an error on purpose and is
// declared to fail (test.fail), so the guard not noticing the error fails the run.
import { allowConsoleErrors, test, expect } from "./fixtures.js";

test("a page's console.error fails the test", async ({ page }) => {
  test.fail();
  await page.goto("/pyodide/pyodide-lock.json");
  await page.evaluate(() => console.error("guard probe: page"));
});

test("a dedicated worker's console.error fails the test", async ({ page }) => {
  test.fail();
  await page.goto("/pyodide/pyodide-lock.json");
  await page.evaluate(() => new Promise((resolve) => {
    const src = "console.error('guard probe: worker'); postMessage(1);";
    const worker = new Worker(URL.createObjectURL(new Blob([src], { type: "text/javascript" })));
    worker.onmessage = () => resolve();
  }));
  // the worker's message may trail its postMessage; give the event loop a bounded chance
  await expect.poll(() => page.evaluate(() => 1), { timeout: 2_000 }).toBe(1);
});

test("an uncaught exception in a context the test opens itself fails the test", async ({ browser }) => {
  test.fail();
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto("http://127.0.0.1:" + new URL(test.info().project.use.baseURL).port + "/pyodide/pyodide-lock.json");
  await page.evaluate(() => setTimeout(() => { throw new Error("guard probe: uncaught"); }, 0));
  await page.waitForFunction(() => new Promise((r) => setTimeout(() => r(true), 50)));
  await context.close();
});

test("an error the test expects passes when it says so", async ({ page }) => {
  allowConsoleErrors(/guard probe: expected/);
  await page.goto("/pyodide/pyodide-lock.json");
  await page.evaluate(() => console.error("guard probe: expected"));
});
