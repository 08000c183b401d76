// Shared helpers: open the app and wait for Python in the worker to be ready;
// run native CPython beside it (one-shot, or a JSON-lines helper process).
import { expect } from "@playwright/test";
import { execFileSync, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const PYTHON = process.env.PYTHON || `${ROOT}.venv/bin/python`;
const NATIVE_ENV = { ...process.env, PYTHONPATH: `${ROOT}py` };

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

/** Run `code` in native CPython with `input` as JSON on stdin; returns the JSON it prints. */
export function native(code, input) {
  const out = execFileSync(PYTHON, ["-c", code], {
    input: JSON.stringify(input),
    env: NATIVE_ENV,
    maxBuffer: 256 << 20,
    timeout: 60_000,
  });
  return JSON.parse(out.toString());
}

/**
 * Start the JSON-lines helper `e2e/py/<script> [args…]` in native CPython; returns
 * {ask(req) → answer, close(), ready}. Each `ask` writes one request line and resolves
 * with the next answer line, or rejects after `timeoutMs` naming `label`. With
 * `readyKey`, the helper's first line (holding that key) announces it is up: `ready`
 * resolves then, or rejects after `readyMs`.
 */
export function nativeHelper(script, { timeoutMs, label, args = [], readyKey = null, readyMs = 20_000 }) {
  const child = spawn(PYTHON, [`${ROOT}e2e/py/${script}`, ...args], {
    env: NATIVE_ENV,
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  let announced = null;
  const ready = readyKey === null ? Promise.resolve() : new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${label} did not start within ${readyMs} ms`)), readyMs);
    announced = (msg) => { clearTimeout(timer); resolve(msg); };
  });
  lines.on("line", (l) => {
    const msg = JSON.parse(l);
    if (announced && readyKey in msg) {
      const done = announced;
      announced = null;
      return done(msg);
    }
    waiting.shift()?.(msg);
  });
  return {
    ready,
    ask(req) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${label} timed out on ${req.cmd}`)), timeoutMs);
        waiting.push((v) => { clearTimeout(timer); resolve(v); });
        child.stdin.write(JSON.stringify(req) + "\n");
      });
    },
    close() {
      child.stdin.end();
      child.kill();
    },
  };
}

/**
 * Start `edge-relay --listen 127.0.0.1:<port> <args…>` (stderr inherited) and resolve once its
 * /healthz answers; reject if it exits first or does not answer within `timeoutMs`.
 */
export async function startRelay(port, args = [], { timeoutMs = 30_000 } = {}) {
  const proc = spawn(`${ROOT}.venv/bin/edge-relay`, ["--listen", `127.0.0.1:${port}`, ...args],
    { stdio: ["ignore", "ignore", "inherit"] });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`edge-relay on port ${port} exited with ${proc.exitCode}`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return proc;
    } catch {}
    await sleep(100);
  }
  proc.kill("SIGKILL");
  throw new Error(`edge-relay did not come up on port ${port} within ${timeoutMs} ms`);
}

/** Send `signal` and wait (bounded) for the process to exit; SIGKILL if it has not after 5 s. */
export async function stopProcess(proc, signal = "SIGTERM") {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill(signal);
  await Promise.race([exited, sleep(5000)]);
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.kill("SIGKILL");
    await Promise.race([exited, sleep(5000)]);
  }
}
