// Puts per second delivered between two GUN.js clients (npm gun, Node) through our relay's /gun
// (edge-relay) versus through the official Node GUN relay (tests/gun_clients/relay.cjs), same run,
// loopback; and each relay's RSS after the puts. JSON lines.
//
//   node bench/gun_puts.mjs [--puts 100000] [--window 1000] [--timeout 300]
//
// The writer and the reader are separate Node processes (this file with --role). The writer puts
// key k<i> = i on node bench/<run>/<i mod nodes>, keeping at most `window` puts un-acked; the
// reader subscribes (`on`) to those nodes first (our relay, like the official one with AXE, forwards
// a put only to peers whose GET asked for its soul; relay.cjs runs without AXE and sends every put to
// every peer) and counts distinct (soul, key) arriving in `put` messages on its wire. Both
// relays persist: ours to its data directory (SQLite), the official one to its radisk directory.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { arg, emit } from "./browser_common.mjs";

const require = createRequire(import.meta.url);
const ROOT = new URL("..", import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;
const PUTS = arg("puts", 100_000);
const WINDOW = arg("window", 1_000);
const TIMEOUT_S = arg("timeout", 300);
const NODES = arg("nodes", 100); // puts spread over this many nodes (the reader subscribes to each)
const role = process.argv.includes("--role") ? process.argv[process.argv.indexOf("--role") + 1] : "main";
const url = process.argv.includes("--url") ? process.argv[process.argv.indexOf("--url") + 1] : null;
const run = process.argv.includes("--run") ? process.argv[process.argv.indexOf("--run") + 1] : null;

function client() {
  const Gun = require("gun");
  return Gun({ peers: [url], localStorage: false, radisk: false, file: false, axe: false, multicast: false });
}

const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");

if (role === "reader") {
  const prefix = `bench/${run}/`;
  const seen = new Set();
  const Gun = require("gun");
  Gun.on("opt", function (root) {
    this.to.next(root);
    root.on("in", function (msg) {
      const put = msg && msg.put;
      if (put && typeof put === "object") {
        for (const soul of Object.keys(put)) {
          if (!soul.startsWith(prefix) || !put[soul]) continue;
          for (const key of Object.keys(put[soul])) if (key !== "_") seen.add(soul + "\u0000" + key);
        }
        if (seen.size >= PUTS && !reported) { reported = true; say({ done: seen.size }); setTimeout(() => process.exit(0), 50); }
      }
      this.to.next(msg);
    });
  });
  let reported = false;
  const gun = client();
  for (let s = 0; s < NODES; s++) gun.get(`${prefix}${s}`).on(() => {}); // a relay forwards puts to subscribers
  await sleep(500);
  say({ ready: true });
  setInterval(() => say({ progress: seen.size }), 1000).unref();
} else if (role === "writer") {
  const gun = client();
  await sleep(500); // the handshake
  let sent = 0, acked = 0, errors = 0;
  const t0 = performance.now();
  await new Promise((resolve) => {
    const pump = () => {
      while (sent < PUTS && sent - acked < WINDOW) {
        const i = sent++;
        gun.get(`bench/${run}/${i % NODES}`).put({ [`k${i}`]: i }, (ack) => {
          if (ack.err) errors++;
          if (++acked === PUTS) resolve();
          else if (acked % 100 === 0) setImmediate(pump);
        });
      }
    };
    pump();
  });
  say({ acked, errors, ms: performance.now() - t0 });
  setTimeout(() => process.exit(0), 50);
} else {
  await main();
}

function rssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const get = (k) => Number((status.match(new RegExp(`${k}:\\s+(\\d+)`)) || [0, 0])[1]);
  return { rss_kib: get("VmRSS"), peak_rss_kib: get("VmHWM") };
}

/** User + system CPU seconds of a process (/proc/<pid>/stat, clock ticks of 10 ms). */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function lines(child, onLine) {
  createInterface({ input: child.stdout }).on("line", (line) => {
    try { onLine(JSON.parse(line)); } catch { /* GUN's own console output */ }
  });
}

async function startOurs(dir) {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const proc = spawn(join(ROOT, ".venv/bin/edge-relay"),
    ["--listen", `127.0.0.1:${port}`, "--data-dir", join(dir, "relay-data")], { stdio: "ignore" });
  for (let i = 0; i < 100; i++) {
    try { if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return { proc, url: `http://127.0.0.1:${port}/gun` }; } catch {}
    await sleep(100);
  }
  proc.kill();
  throw new Error("edge-relay did not start");
}

async function startOfficial(dir) {
  const proc = spawn(process.execPath, [join(ROOT, "tests/gun_clients/relay.cjs"), join(dir, "radata")],
    { cwd: dir, stdio: ["pipe", "pipe", "ignore"] });
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("official relay did not start")), 10_000);
    lines(proc, (o) => { if (o.port) { clearTimeout(timer); resolve(o.port); } });
  });
  return { proc, url: `http://127.0.0.1:${port}/gun` };
}

async function measure(name, start) {
  const dir = mkdtempSync(join(tmpdir(), "gun-bench-"));
  const relay = await start(dir);
  const runId = Math.random().toString(36).slice(2, 10);
  const children = [];
  const node = (r) => {
    const c = spawn(process.execPath, [SELF, "--role", r, "--url", relay.url, "--run", runId, "--puts", String(PUTS),
      "--window", String(WINDOW), "--nodes", String(NODES)], { cwd: dir, stdio: ["ignore", "pipe", "ignore"] });
    children.push(c);
    return c;
  };
  try {
    const rssBefore = rssKiB(relay.proc.pid);
    const cpuBefore = cpuSeconds(relay.proc.pid);
    const reader = node("reader");
    let delivered = 0;
    const readerDone = new Promise((resolve) => lines(reader, (o) => {
      if (o.progress !== undefined) delivered = o.progress;
      if (o.done !== undefined) { delivered = o.done; resolve(); }
      if (o.ready) readerReady();
    }));
    let readerReady;
    await new Promise((r) => { readerReady = r; });
    await sleep(500);
    const t0 = performance.now();
    const writer = node("writer");
    let writerResult = null;
    lines(writer, (o) => { if (o.acked !== undefined) writerResult = o; });
    const timedOut = await Promise.race([readerDone.then(() => false), sleep(TIMEOUT_S * 1000).then(() => true)]);
    const seconds = (performance.now() - t0) / 1000;
    const relayCpu = cpuSeconds(relay.proc.pid) - cpuBefore;
    await sleep(1000); // let the writer's last acks and the relay's writes settle before reading its memory
    emit({
      bench: "gun_puts", relay: name, puts: PUTS, nodes: NODES, window: WINDOW, delivered, timed_out: timedOut,
      seconds: Number(seconds.toFixed(3)), delivered_per_s: Math.round(delivered / seconds),
      writer_acked: writerResult ? writerResult.acked : null, writer_errors: writerResult ? writerResult.errors : null,
      relay_cpu_s: Number(relayCpu.toFixed(2)), relay_cpu_us_per_put: Math.round((relayCpu * 1e6) / Math.max(1, delivered)),
      relay_rss_kib_before: rssBefore.rss_kib, ...rssKiB(relay.proc.pid),
    });
    return delivered / seconds;
  } finally {
    for (const c of children) c.kill("SIGKILL");
    relay.proc.kill("SIGKILL");
    await sleep(200);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const official = await measure("official-node-gun", startOfficial);
  const ours = await measure("ours-edge-relay", startOurs);
  emit({ bench: "gun_puts", summary: true, puts: PUTS, ours_vs_official: Number((ours / official).toFixed(3)) });
}
