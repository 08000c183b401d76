// The app starts: worker boots, Pyodide and the wheel load, "ready" is shown
// with the version; a broken wheel URL is reported visibly, not as a blank page.
import { allowConsoleErrors, test, expect } from "./fixtures.js";
import { readFileSync } from "node:fs";
import { openReady, py } from "./helpers.js";

const manifest = JSON.parse(readFileSync(new URL("../web/public/wheels/manifest.json", import.meta.url)));

test("worker reports ready with the package version and runtime", async ({ page }) => {
  const info = await openReady(page);
  expect(info.version).toBe(manifest.version);
  expect(info.runtime).toBe("pyodide");
  expect(info.crypto).toBe("webcrypto");
  await expect(page.locator("#status")).toContainText(`ruvector-edge ${manifest.version}`);
  // progress was shown step by step
  await expect(page.locator("#progress li")).toHaveCount(5);
  expect(await py(page, "import ruvector_edge; ruvector_edge.__version__")).toBe(manifest.version);
});

test("Pyodide, wheel and wasm are served with the right types", async ({ request }) => {
  const wasm = await request.get("/pyodide/pyodide.asm.wasm");
  expect(wasm.ok()).toBe(true);
  expect(wasm.headers()["content-type"]).toContain("application/wasm");
  const missing = await request.get("/wheels/no-such-wheel.whl");
  expect(missing.status()).toBe(404);
});

test("a broken wheel URL shows a visible error", async ({ page }) => {
  allowConsoleErrors(/could not install the wheel from .*no-such-wheel/);
  await page.goto("/?wheel=/wheels/no-such-wheel-0.0.0-py3-none-any.whl");
  await expect(page.locator("#status")).toHaveAttribute("data-state", "error", { timeout: 45_000 });
  await expect(page.locator("#error")).toBeVisible();
  await expect(page.locator("#error")).toContainText("no-such-wheel");
});

test("Python errors come back as rejected requests, and the worker keeps working", async ({ page }) => {
  await openReady(page);
  const err = await page.evaluate(() => window.edge.py("raise ValueError('boom')").then(() => null, (e) => e.message));
  expect(err).toContain("ValueError: boom");
  expect(await py(page, "1 + 1")).toBe(2);
});
