// Browser transports against the real relay the webServer runs (ws://…/ws):
// pages join one swarm (key made here) through join_swarm_browser and talk over
// the relay WebSocket, BroadcastChannel (tabs of one browser context) and WebRTC
// data channels (signalled as signed, encrypted SIGNAL messages); a native
// edge-agent process joins the same swarm. Loopback only, every wait bounded.
import { allowConsoleErrors, test, expect } from "./fixtures.js";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { openReady, py } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const POLL = { timeout: 20_000, intervals: [100, 200, 250] };

/** ws://host:port/ws of the server that served the page. */
const relayUrl = (page) => new URL("/ws", page.url()).href.replace(/^http/, "ws");

/** Start an agent in the page's worker and join the swarm; `agent` stays a global there. */
async function join(page, id, key, { relay = true, bc = true, rtc = true } = {}) {
  const url = relay ? JSON.stringify(relayUrl(page)) : "None";
  return py(page, `
from ruvector_edge.agent import SwarmAgent, SwarmConfig
from ruvector_edge.protocol import MessageKind
from ruvector_edge.transport.browser import join_swarm_browser
agent = await SwarmAgent.new(SwarmConfig(agent_id=${JSON.stringify(id)}, swarm_key=bytes.fromhex(${JSON.stringify(key)})))
got = []  # application messages, as [sender, kind, note]
async def _record(sender, message):
    got.append([sender, message.kind.value, message.body.get("note")])
agent.on(MessageKind.BROADCAST_TASK, _record)
agent.on(MessageKind.TASK_RESULT, _record)
await join_swarm_browser(agent, ${url}, broadcast_channel=${bc ? "True" : "False"}, webrtc=${rtc ? "True" : "False"})
agent.agent_id
`);
}

/** Pages in separate browser contexts share no BroadcastChannel: only the relay (and WebRTC) connect them. */
async function isolatedPage(browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await openReady(page);
  return page;
}

const peersOf = (page) => py(page, "[p['agent_id'] for p in agent.peer_table() if p['status'] == 'active']");
const pathTo = (page, peer) => py(page, `agent.path_to(${JSON.stringify(peer)})`);
const ping = (page, peer) => py(page, `round((await agent.ping(${JSON.stringify(peer)}, timeout=5)) * 1000, 3)`);
const received = (page) => py(page, "got");
const leave = (page) => py(page, "await agent.leave()").catch(() => {});

test("three pages join one swarm over the relay, see each other and exchange messages", async ({ browser }) => {
  const key = randomBytes(32).toString("hex");
  const pages = await Promise.all([0, 1, 2].map(() => isolatedPage(browser)));
  const ids = ["relay-a", "relay-b", "relay-c"];
  try {
    for (let i = 0; i < 3; i++) await join(pages[i], ids[i], key, { rtc: false });
    for (let i = 0; i < 3; i++) {
      const others = ids.filter((_, j) => j !== i);
      await expect.poll(() => peersOf(pages[i]), POLL).toEqual(others);
      for (const other of others) expect(await pathTo(pages[i], other)).toBe("relay");
    }
    expect(await ping(pages[0], "relay-c")).toBeGreaterThan(0);
    expect(await ping(pages[2], "relay-b")).toBeGreaterThan(0);
    // a broadcast reaches both others; a direct message only its recipient
    await py(pages[0], "await agent.broadcast(MessageKind.BROADCAST_TASK, note='to all')");
    await py(pages[1], "await agent.send_to('relay-c', MessageKind.TASK_RESULT, note='b to c')");
    await expect.poll(() => received(pages[1]), POLL).toEqual([["relay-a", "BROADCAST_TASK", "to all"]]);
    await expect.poll(() => received(pages[2]), POLL).toEqual([
      ["relay-a", "BROADCAST_TASK", "to all"],
      ["relay-b", "TASK_RESULT", "b to c"],
    ]);
    for (const p of pages) expect(await py(p, "dict(agent.rejected)")).toEqual({});
  } finally {
    for (const p of pages) {
      await leave(p);
      await p.context().close();
    }
  }
});

test("tabs of one browser context find each other over BroadcastChannel with no relay", async ({ page, context }) => {
  const key = randomBytes(32).toString("hex");
  const other = await context.newPage();
  try {
    await openReady(page);
    await openReady(other);
    await join(page, "tab-a", key, { relay: false, rtc: false });
    await join(other, "tab-b", key, { relay: false, rtc: false });
    await expect.poll(() => peersOf(page), POLL).toEqual(["tab-b"]);
    await expect.poll(() => peersOf(other), POLL).toEqual(["tab-a"]);
    expect(await pathTo(page, "tab-b")).toBe("broadcast-channel");
    expect(await py(page, "sorted(agent.links)")).toEqual(["broadcast-channel"]);
    expect(await ping(page, "tab-b")).toBeGreaterThan(0);
    expect(await ping(other, "tab-a")).toBeGreaterThan(0);
    await py(other, "await agent.broadcast(MessageKind.BROADCAST_TASK, note='over the channel')");
    await expect.poll(() => received(page), POLL).toEqual([["tab-b", "BROADCAST_TASK", "over the channel"]]);
    expect(await py(page, "dict(agent.rejected)")).toEqual({});
  } finally {
    await leave(page);
    await leave(other);
    await other.close();
  }
});

test("BroadcastChannel is preferred over the relay, and carries on when the relay link is gone", async ({ page, context }) => {
  const key = randomBytes(32).toString("hex");
  const other = await context.newPage();
  try {
    await openReady(page);
    await openReady(other);
    await join(page, "both-a", key, { rtc: false });
    await join(other, "both-b", key, { rtc: false });
    await expect.poll(() => pathTo(page, "both-b"), POLL).toBe("broadcast-channel");
    await expect.poll(() => pathTo(other, "both-a"), POLL).toBe("broadcast-channel");
    // Drop the relay on both sides: the tabs still reach each other.
    for (const p of [page, other]) await py(p, "await agent.links.pop('relay').stop()");
    expect(await ping(page, "both-b")).toBeGreaterThan(0);
    await py(page, "await agent.send_to('both-b', MessageKind.TASK_RESULT, note='no relay')");
    await expect.poll(() => received(other), POLL).toEqual([["both-a", "TASK_RESULT", "no relay"]]);
  } finally {
    await leave(page);
    await leave(other);
    await other.close();
  }
});

test("two pages open a WebRTC data channel signalled through the relay and ping over it", async ({ browser }) => {
  const key = randomBytes(32).toString("hex");
  const [a, b] = await Promise.all([isolatedPage(browser), isolatedPage(browser)]);
  try {
    await join(a, "rtc-a", key);
    await join(b, "rtc-b", key);
    await expect.poll(() => pathTo(a, "rtc-b"), POLL).toBe("webrtc");
    await expect.poll(() => pathTo(b, "rtc-a"), POLL).toBe("webrtc");
    // Only the smaller id offered (glare rule): one session each side, nothing refused.
    expect(await py(a, "(agent.links['webrtc'].sessions['rtc-b'].initiator, agent.links['webrtc'].refused_signals)")).toEqual([true, 0]);
    expect(await py(b, "(agent.links['webrtc'].sessions['rtc-a'].initiator, agent.links['webrtc'].refused_signals)")).toEqual([false, 0]);
    // With the relay links stopped (separate contexts: no BroadcastChannel), only WebRTC is left. The relay
    // tells b that a left (the relay, not the swarm): b forgets a but for its key binding ...
    await py(a, "await agent.links.pop('relay').stop()");
    await expect.poll(() => py(b, "agent.swarm.registry.departed()"), POLL).toEqual(["rtc-a"]);
    await py(b, "await agent.links.pop('relay').stop()");
    expect(await py(a, "sorted(agent.links)")).toEqual(["broadcast-channel", "webrtc"]);
    // ... and takes a back on the first frame a signs after that, which comes over WebRTC.
    expect(await ping(a, "rtc-b")).toBeGreaterThan(0);
    expect(await py(b, "('rtc-a' in agent.swarm.registry, agent.swarm.registry.departed())")).toEqual([true, []]);
    expect(await ping(b, "rtc-a")).toBeGreaterThan(0);
    await py(a, "await agent.broadcast(MessageKind.BROADCAST_TASK, note='over webrtc')");
    await expect.poll(() => received(b), POLL).toEqual([["rtc-a", "BROADCAST_TASK", "over webrtc"]]);
    expect(await py(b, "dict(agent.rejected)")).toEqual({});
    // A peer whose binding is released takes its WebRTC state with it (hold shortened to release it now).
    expect(await py(b, `
rtc = agent.links['webrtc']
rtc.attempts['rtc-a'] = 1
agent.swarm.registry.hold_departed_ms = 0
agent.swarm.member_departed('rtc-a')
(agent.swarm.registry.departed(), 'rtc-a' in rtc.sessions, 'rtc-a' in rtc.attempts)`)).toEqual([[], false, false]);
  } finally {
    for (const p of [a, b]) {
      await leave(p);
      await p.context().close();
    }
  }
});

test("three tabs with every link: each pair ends up on WebRTC", async ({ page, context }) => {
  const key = randomBytes(32).toString("hex");
  const pages = [page, await context.newPage(), await context.newPage()];
  const ids = ["mesh-a", "mesh-b", "mesh-c"];
  try {
    await Promise.all(pages.map((p) => openReady(p)));
    for (let i = 0; i < 3; i++) await join(pages[i], ids[i], key);
    for (let i = 0; i < 3; i++) {
      for (const other of ids.filter((_, j) => j !== i)) {
        await expect.poll(() => pathTo(pages[i], other), POLL).toBe("webrtc");
        expect(await ping(pages[i], other)).toBeGreaterThan(0);
      }
    }
  } finally {
    for (const p of pages) await leave(p);
    await pages[1].close();
    await pages[2].close();
  }
});

test("a page and a native edge-agent process see each other through the relay", async ({ page }) => {
  const key = randomBytes(32).toString("hex");
  await openReady(page);
  const invite = `${relayUrl(page)}#swarm_key=${key}`;
  const child = spawn(`${ROOT}.venv/bin/edge-agent`,
    ["--coordinator", invite, "--id", "native-1", "--duration", "30", "--status-every", "0.5"],
    { stdio: ["ignore", "pipe", "inherit"] });
  const lines = [];
  createInterface({ input: child.stdout }).on("line", (l) => lines.push(l));
  try {
    await expect.poll(() => lines.some((l) => l.includes("joined swarm")), POLL).toBe(true);
    await join(page, "browser-1", key);
    await expect.poll(() => peersOf(page), POLL).toEqual(["native-1"]);
    expect(await pathTo(page, "native-1")).toBe("relay");
    expect(await ping(page, "native-1")).toBeGreaterThan(0);
    await expect.poll(() => lines.some((l) => /peers: .*browser-1\(worker,active\)/.test(l)), POLL).toBe(true);
  } finally {
    await leave(page);
    child.kill("SIGTERM");
  }
});

test("garbage sent to the relay is refused without breaking the page", async ({ browser }) => {
  const key = randomBytes(32).toString("hex");
  const [a, b] = await Promise.all([isolatedPage(browser), isolatedPage(browser)]);
  try {
    await join(a, "garbage-a", key, { rtc: false });
    await join(b, "garbage-b", key, { rtc: false });
    await expect.poll(() => peersOf(a), POLL).toEqual(["garbage-b"]);
    // A separate socket from the page: the relay answers garbage with 1007 (invalid data).
    const code = await a.evaluate((url) => new Promise((resolve) => {
      const ws = new WebSocket(url);
      ws.onopen = () => ws.send("{not json");
      ws.onclose = (ev) => resolve(ev.code);
      setTimeout(() => resolve("timeout"), 10_000);
    }), relayUrl(a));
    expect(code).toBe(1007);
    // Garbage on the agent's own relay socket (its private send, on purpose): the relay closes it,
    // the link reconnects, re-announces, and the swarm keeps working.
    await py(a, "agent.links['relay']._sock_send('\\x00garbage')");
    await expect.poll(() => py(a, "(agent.links['relay'].close_codes, agent.links['relay'].connected.is_set())"), POLL)
      .toEqual([[1007], true]);
    expect(await py(a, "agent.links['relay'].reconnects")).toBeGreaterThanOrEqual(1);
    expect(await ping(a, "garbage-b")).toBeGreaterThan(0);
    expect(await ping(b, "garbage-a")).toBeGreaterThan(0);
    expect(await py(a, "import js; js.edgeTransport.stats.callbackErrors")).toBe(0);
  } finally {
    for (const p of [a, b]) {
      await leave(p);
      await p.context().close();
    }
  }
});

test("a relay link that cannot connect queues up to its bound, then raises SendQueueFull", async ({ page }) => {
  await openReady(page);
  const out = await py(page, `
import asyncio
from ruvector_edge.errors import SendQueueFull
from ruvector_edge.p2p import P2PSwarm
from ruvector_edge.transport.browser import BrowserRelayLink
swarm = await P2PSwarm.create("lonely")
async def nothing(frame): pass
link = BrowserRelayLink("ws://127.0.0.1:9/ws", swarm, on_envelope=nothing, queue_limit=2, backoff_initial_s=0.05)
await link.start()
await link.send("one"); await link.send("two")
try:
    await link.send("three")
    full = "accepted"
except SendQueueFull:
    full = "SendQueueFull"
await asyncio.sleep(1.0)
result = [full, list(link.session.pending), link.reconnects >= 2, link.connected.is_set()]
await link.stop()
result
`);
  expect(out).toEqual(["SendQueueFull", ["one", "two"], true, false]);
});

test("an exception in a Python callback is counted and logged, not lost", async ({ page }) => {
  allowConsoleErrors(/callback failed on registration: PythonError[\s\S]*RuntimeError: boom/); // logged is the point
  await openReady(page);
  const out = await py(page, `
import asyncio, js
from pyodide.ffi import create_proxy
def bad(kind, a=None, b=None):
    raise RuntimeError("boom")
def quiet(kind, a=None, b=None):
    pass
before = js.edgeTransport.stats.callbackErrors
p1, p2 = create_proxy(bad), create_proxy(quiet)
listener = js.edgeTransport.broadcastChannel("callback-test", "listener", p1)
talker = js.edgeTransport.broadcastChannel("callback-test", "talker", p2)
talker.post("registration", "{}")
for _ in range(50):
    if js.edgeTransport.stats.callbackErrors > before:
        break
    await asyncio.sleep(0.02)
listener.close(); talker.close(); p1.destroy(); p2.destroy()
[js.edgeTransport.stats.callbackErrors - before, "RuntimeError: boom" in js.edgeTransport.stats.lastCallbackError]
`);
  expect(out).toEqual([1, true]);
});

test("a page agent that leaves closes its relay socket and nothing calls back into the destroyed proxy", async ({ browser }) => {
  const page = await isolatedPage(browser);
  const key = randomBytes(32).toString("hex");
  const connections = async () => {
    const text = await (await page.request.get("/metrics")).text();
    return Number(/^edge_relay_connections (\d+)/m.exec(text)[1]);
  };
  const before = await connections();
  await join(page, "leaver", key, { bc: false, rtc: false });
  await expect.poll(connections, POLL).toBe(before + 1);
  const errorsBefore = await py(page, "import js; js.edgeTransport.stats.callbackErrors");
  await py(page, "await agent.leave()");
  await expect.poll(connections, POLL).toBe(before);
  await py(page, "import asyncio; await asyncio.sleep(0.5)");
  expect(await py(page, "import js; js.edgeTransport.stats.callbackErrors")).toBe(errorsBefore);
  await page.context().close();
});
