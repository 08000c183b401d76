// Browser pages across federated relays (issue 16): a 3-node NATS cluster and edge-relays joined by
// it (--nats), all started by this spec on loopback. Page A is served by relay A and its invite lists
// relays A and C (`&relays=`); page B is served by relay B and lists none (its own relay is the
// default); a native agent sits on relay B. The pages see each other through two relays, share a
// pattern, and end up on a direct WebRTC path signalled across the relays. Then relay A is killed
// (SIGKILL): page A moves to relay C, started only after the native agent has broadcast while page A
// was away, so page A can have those frames only by resuming from its last stream sequence there.
// Every wait is bounded; every process is stopped by its own handle.
import { allowConsoleErrors, test, expect } from "./fixtures.js";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { nativeHelper, startRelay, stopProcess } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const NATS_SERVER = process.env.NATS_SERVER || "/usr/sbin/nats-server";
const KEY = randomBytes(32).toString("hex");
const CONVERGE = { timeout: 40_000, intervals: [250, 500, 1000] };
const MISSED = Array.from({ length: 20 }, (_, i) => `while-away-${i}`);

test.describe.configure({ mode: "serial", timeout: 120_000 });

let dir = null;
const nodes = []; // nats-server processes
const relays = {}; // name -> {proc, port, ws, base}
let native = null;
const contexts = [];
const pages = {}; // agent id -> page

/** A port nothing listens on right now (the OS picks it). */
function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Poll `check` every 100 ms until it is truthy, at most `ms`; throws `what` otherwise. */
async function until(check, ms, what) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) {
    if (await check()) return;
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/** Three nats-server nodes in one cluster with JetStream, on loopback; resolves once every node knows the
 * JetStream meta leader (a relay whose node does not yet fails to create its swarm's stream). */
async function startNats() {
  const ports = [];
  for (let i = 0; i < 3; i++) ports.push([await freePort(), await freePort()]);
  const routes = ports.map(([, c]) => `nats://127.0.0.1:${c}`).join(",");
  ports.forEach(([port, cport], i) => {
    const log = join(dir, `n${i}.log`);
    const proc = spawn(NATS_SERVER, ["-a", "127.0.0.1", "-p", `${port}`, "-js", "-sd", join(dir, `n${i}`), "-n", `n${i}`,
      "--cluster_name", "edge", "--cluster", `nats://127.0.0.1:${cport}`, "--routes", routes, "-l", log],
    { stdio: "ignore" });
    nodes.push({ proc, url: `nats://127.0.0.1:${port}`, log });
  });
  const elected = () => nodes.every(({ log }) => {
    try { return /metadata leader/.test(readFileSync(log, "utf8")); }
    catch { return false; }
  });
  await until(elected, 30_000, "the NATS cluster to elect its JetStream meta leader");
}

/** Relay `name` on NATS node `node` (the others as fallbacks), serving dist/; resolves once /healthz answers. */
async function startFederatedRelay(name, node) {
  const port = relays[name]?.port ?? await freePort();
  const nats = [nodes[node].url, ...nodes.filter((_, i) => i !== node).map((n) => n.url)].join(",");
  const proc = await startRelay(port, ["--web", `${ROOT}dist`, "--memory-only", "--nats", nats, "--relay-id", name]);
  const base = `http://127.0.0.1:${port}`;
  relays[name] = { proc, port, base, ws: `ws://127.0.0.1:${port}/ws` };
}

const act = (page, name, args = {}) => page.evaluate(([n, a]) => window.edge.act(n, a), [name, args]);
const snap = (page) => page.evaluate(() => window.edge.snapshot());
const py = (page, code) => page.evaluate((c) => window.edge.py(c), code);
const peerField = async (page, id, field) => (await snap(page)).peers?.find((p) => p.agent_id === id)?.[field];

test.beforeAll(async ({ browser }) => {
  test.setTimeout(150_000);
  dir = mkdtempSync(join(tmpdir(), "edge-federation-e2e-"));
  await startNats();
  await startFederatedRelay("ra", 0);
  await startFederatedRelay("rb", 1);
  relays.rc = { port: await freePort() }; // listed in page A's invite; started only in the failover test
  relays.rc.ws = `ws://127.0.0.1:${relays.rc.port}/ws`;
  native = nativeHelper("federation_agent.py", { timeoutMs: 30_000, label: "native-b", readyKey: "joined",
                                                 args: [relays.rb.ws, KEY, "native-b"] });
  await native.ready;
  const invites = {
    "page-a": `${relays.ra.base}/#${new URLSearchParams({ swarm_key: KEY, id: "page-a", relays: `${relays.ra.ws},${relays.rc.ws}` })}`,
    "page-b": `${relays.rb.base}/#${new URLSearchParams({ swarm_key: KEY, id: "page-b" })}`,
  };
  for (const [id, url] of Object.entries(invites)) {
    const context = await browser.newContext(); // own context: no BroadcastChannel shortcut between the pages
    contexts.push(context);
    pages[id] = await context.newPage();
    await pages[id].goto(url);
  }
  for (const [id, page] of Object.entries(pages)) await expect(page.locator("#me-id")).toHaveText(id, { timeout: 90_000 });
});

test.afterAll(async () => {
  for (const page of Object.values(pages)) {
    await page.evaluate(() => window.edge.py("from ruvector_edge import browser_app\nawait browser_app.leave()")).catch(() => {});
  }
  for (const context of contexts) await context.close().catch(() => {});
  native?.close();
  for (const relay of Object.values(relays)) if (relay.proc) await stopProcess(relay.proc);
  for (const node of nodes) await stopProcess(node.proc);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("pages on two relays list each other, share a pattern and end up on a direct webrtc path", async () => {
  const a = pages["page-a"];
  const b = pages["page-b"];
  for (const [page, others] of [[a, ["native-b", "page-b"]], [b, ["native-b", "page-a"]]]) {
    await expect.poll(async () => (await snap(page)).peers.filter((p) => p.status === "active").map((p) => p.agent_id).sort(),
      CONVERGE).toEqual(others);
  }
  // the relay page A joined is the first of its invite's list, not its page's default
  expect(await py(a, "from ruvector_edge import browser_app\nbrowser_app._app.agent.links['relay'].target")).toBe(relays.ra.ws);
  await act(a, "learn", { state: "fed-route", action: "north", reward: 5 });
  await act(a, "learn", { state: "fed-route", action: "south", reward: 1 });
  await expect.poll(async () => (await act(b, "best_action", { state: "fed-route", actions: ["north", "south"] }))?.action,
    CONVERGE).toBe("north");
  // WebRTC offers and answers are direct frames between pages on different relays, routed over NATS
  await expect.poll(() => peerField(a, "page-b", "transport"), CONVERGE).toBe("webrtc");
  await expect.poll(() => peerField(b, "page-a", "transport"), CONVERGE).toBe("webrtc");
  expect(await peerField(a, "native-b", "transport")).toBe("relay");
});

test("a page whose relay is SIGKILLed fails over to the next listed relay and gets what was sent meanwhile", async () => {
  allowConsoleErrors(/WebSocket connection to .* failed/); // page A's attempts at relays A and C while they are down
  const a = pages["page-a"];
  const b = pages["page-b"];
  await py(a, `from ruvector_edge import browser_app
from ruvector_edge.protocol import MessageKind
got = []
async def _note(sender, message):
    got.append(message.body.get("note"))
browser_app._app.agent.on(MessageKind.BROADCAST_TASK, _note)`);
  // the page loaded from relay A: let it finish fetching what it needs from there first
  await expect.poll(() => a.evaluate(() => window.edge.model?.state), CONVERGE).toMatch(/^(ready|absent|failed)$/);
  await stopProcess(relays.ra.proc, "SIGKILL");
  await expect.poll(() => py(a, "browser_app._app.agent.links['relay'].connected.is_set()"), CONVERGE).toBe(false);
  expect(await native.ask({ cmd: "send", notes: MISSED })).toEqual({ ok: MISSED.length });
  await startFederatedRelay("rc", 2);
  await expect.poll(() => py(a, "browser_app._app.agent.links['relay'].connected.is_set()"), CONVERGE).toBe(true);
  expect(await py(a, "browser_app._app.agent.links['relay'].target")).toBe(relays.rc.ws);
  await expect.poll(() => py(a, "got"), CONVERGE).toEqual(MISSED);
  // and it is back in everyone's peer table, through relay C
  await expect.poll(async () => (await native.ask({ cmd: "peers" })).ok, CONVERGE).toEqual(["page-a", "page-b"]);
  await expect.poll(() => peerField(b, "page-a", "status"), CONVERGE).toBe("active");
  await act(a, "learn", { state: "after-failover", action: "kept", reward: 2 });
  await expect.poll(async () => (await act(b, "best_action", { state: "after-failover", actions: ["kept", "lost"] }))?.action,
    CONVERGE).toBe("kept");
});
