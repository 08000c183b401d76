// Shared helpers: open the app and wait for Python in the worker to be ready.
import { expect } from "@playwright/test";

/** Load the page and wait for the worker's "ready"; returns the info it reported. */
export async function openReady(page) {
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto("/");
  await expect(page.locator("#status")).toHaveAttribute("data-state", "ready", { timeout: 45_000 });
  expect(errors).toEqual([]);
  return page.evaluate(() => window.edge.ready);
}

/** Run Python in the worker and return its converted result. */
export function py(page, code) {
  return page.evaluate((c) => window.edge.py(c), code);
}
