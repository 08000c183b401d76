// What the browser benchmarks share: flags, JSON-line output, the native relay
// serving the built app (dist/) on a loopback port, as in production, and headless
// Chromium (the e2e tests' binary and flags, playwright.config.js) opening the app.
import { chromium } from "@playwright/test";
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { CHROMIUM, CHROMIUM_ARGS } from "../playwright.config.js";

/** `--name value` from the command line as a number, else `dflt`. */
export const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};

export const emit = (obj) => console.log(JSON.stringify(obj));

const RELAY = new URL("../.venv/bin/edge-relay", import.meta.url).pathname;

/** Start edge-relay on 127.0.0.1:port serving dist/ and wait for /healthz; returns the child process. */
export async function startRelay(port) {
  const base = `http://127.0.0.1:${port}`;
  // Something already answering there (a relay left over from an earlier run) would be measured
  // instead of this build: refuse rather than benchmark the wrong server.
  const taken = await fetch(base + "/healthz").then(() => true, () => false);
  if (taken) throw new Error(`port ${port} is already serving: stop that server or pass another --port`);
  const server = spawn(RELAY, ["--listen", `127.0.0.1:${port}`, "--web", "dist", "--memory-only"], { stdio: "ignore", detached: true });
  let exited = false;
  server.on("exit", () => (exited = true));
  for (let i = 0; i < 100 && !exited; i++) {
    try {
      if ((await fetch(base + "/healthz")).ok) return server;
    } catch {}
    await sleep(100);
  }
  process.kill(-server.pid);
  throw new Error(`edge-relay did not start on ${base} (build the app: bash scripts/build-web.sh)`);
}

/**
 * Start the relay on `port` and headless Chromium, run `body(browser)`, then close
 * the browser and stop the relay whatever happened; returns what `body` returned.
 */
export async function withRelayAndBrowser(port, body) {
  const server = await startRelay(port);
  let browser;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    return await body(browser);
  } finally {
    await browser?.close();
    try { process.kill(-server.pid); } catch {}
  }
}

/** A new tab in `context` on the app at `url`, once the worker's Python is ready. */
export async function openApp(context, url) {
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.edge && window.edge.timing.readyMs !== null, null, { timeout: 60_000 });
  return page;
}

/** Run `code` in the page's Python and resolve with its result; reject if it takes over 10 minutes. */
export async function pyWithinTenMinutes(page, code) {
  let timer;
  return Promise.race([
    page.evaluate((c) => window.edge.py(c), code),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("benchmark exceeded 10 minutes")), 600_000); }),
  ]).finally(() => clearTimeout(timer));
}
