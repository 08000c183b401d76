// GunSwarm in the browser: GUN.js in the Pyodide worker (web/bridges/gun.js) behind
// GunSwarmBuilder, syncing signed+encrypted learning state through our relay's /gun;
// a native agent (CPython, our GunEngine) reads and writes the same graph; and what was
// written before a relay restart is served from its data directory afterwards.
import { test, expect } from "./fixtures.js";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { openReady, py, startRelay, stopProcess } from "./helpers.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PYTHON = process.env.PYTHON || `${ROOT}.venv/bin/python`;
const KEY = "42".repeat(32);

// A native member: joins with the key, registers the pages, publishes a pattern and
// reports the swarm's patterns once it sees `expect` distinct (state, action) pairs.
const NATIVE = `
import asyncio, json, sys
from ruvector_edge.gun import GunSwarmBuilder
from ruvector_edge.p2p import P2PSwarm

async def main():
    first = json.loads(sys.stdin.readline())
    p2p = await P2PSwarm.create("native-gun", bytes.fromhex(first["key"]))
    print(json.dumps({"registration": p2p.registration.to_json().decode()}), flush=True)
    second = json.loads(sys.stdin.readline())
    for registration in second["registrations"]:
        await p2p.register_member(registration)
    swarm = GunSwarmBuilder("e2e").with_relays([first["relay"]]).encrypted(True).build("native-gun", p2p)
    await swarm.connect(10)
    await swarm.publish_pattern("native_state", "native_action", 0.3, 2)
    patterns = []
    for _ in range(100):
        patterns = await swarm.get_patterns()
        if len(patterns) >= second["expect"]:
            break
        await asyncio.sleep(0.2)
    print(json.dumps({"patterns": sorted([p.state, p.action, round(p.q_value, 6), p.visits] for p in patterns),
                      "stats": swarm.stats}), flush=True)
    await swarm.close()

asyncio.run(main())
`;

function nativeAgent() {
  const child = spawn(PYTHON, ["-c", NATIVE], { env: { ...process.env, PYTHONPATH: `${ROOT}py` },
    stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  lines.on("line", (l) => waiting.shift()?.(JSON.parse(l)));
  const exited = new Promise((resolve) => child.once("exit", resolve));
  return {
    exited,
    next(send) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("native agent timed out")), 30_000);
        waiting.push((v) => { clearTimeout(timer); resolve(v); });
        child.stdin.write(JSON.stringify(send) + "\n");
      });
    },
    close() { child.kill(); },
  };
}

/** Create the page's member identity; returns its registration JSON. */
async function enrol(page, agentId) {
  return py(page, `
from ruvector_edge.p2p import P2PSwarm
gun_p2p = await P2PSwarm.create(${JSON.stringify(agentId)}, bytes.fromhex(${JSON.stringify(KEY)}))
gun_p2p.registration.to_json().decode()
`);
}

/** Register the other members and build this page's GunSwarm on `relay` (its GUN.js peers with it). */
async function build(page, agentId, registrations, relay) {
  await py(page, `
import js
from ruvector_edge.gun import GunSwarmBuilder
for r in ${JSON.stringify(registrations)}:
    await gun_p2p.register_member(r)
relay = ${JSON.stringify(relay || "")} or (str(js.location.origin) + "/gun")
gun_swarm = GunSwarmBuilder("e2e").with_relays([relay]).encrypted(True).build(${JSON.stringify(agentId)}, gun_p2p)
await gun_swarm.connect()
type(gun_swarm.graph).__name__
`);
}

/** The page's view of the swarm's patterns once it holds `n` of them (bounded wait). */
function patternsWhen(page, n) {
  return py(page, `
import asyncio, json
for _ in range(100):
    seen = await gun_swarm.get_patterns()
    if len(seen) >= ${n}:
        break
    await asyncio.sleep(0.2)
json.dumps({"patterns": sorted([p.state, p.action, round(p.q_value, 6), p.visits] for p in seen),
            "stats": gun_swarm.stats})
`).then(JSON.parse);
}

test("two pages and a native agent sync patterns through the relay's /gun", async ({ browser }) => {
  const context = await browser.newContext();
  const [a, b] = [await context.newPage(), await context.newPage()];
  const native = nativeAgent();
  try {
    await openReady(a);
    await openReady(b);
    const origin = new URL(a.url()).origin;
    const n = await native.next({ key: KEY, relay: `${origin}/gun` });
    const ra = await enrol(a, "page-a");
    const rb = await enrol(b, "page-b");
    await build(a, "page-a", [rb, n.registration], null);
    await build(b, "page-b", [ra, n.registration], null);
    expect(await py(a, "type(gun_swarm.graph).__name__")).toBe("BrowserGunGraph");

    await py(a, "await gun_swarm.publish_pattern('edit_ts', 'coder', 0.9, 3)");
    await py(b, "await gun_swarm.publish_pattern('edit_ts', 'reviewer', 0.4, 2)");
    const nativeSeen = native.next({ registrations: [ra, rb], expect: 3 });

    const want = [["edit_ts", "coder", 0.9, 3], ["edit_ts", "reviewer", 0.4, 2], ["native_state", "native_action", 0.3, 2]];
    const seenByB = await patternsWhen(b, 3);
    expect(seenByB.patterns).toEqual(want);
    const seenByA = await patternsWhen(a, 3);
    expect(seenByA.patterns).toEqual(want);
    expect((await nativeSeen).patterns).toEqual(want);
    for (const s of [seenByA.stats, seenByB.stats]) {
      expect(s.bad_signature + s.unknown_sender + s.unsigned + s.malformed + s.undecryptable).toBe(0);
    }
    // what GUN.js holds for page-a is a sealed envelope (ciphertext), not the state
    const raw = JSON.parse(await py(a, `
import json
json.dumps(await gun_swarm.graph.read(gun_swarm.soul("learning")))
`));
    expect(Object.keys(raw).sort()).toEqual(["native-gun", "page-a", "page-b"]);
    const sealed = JSON.parse(raw["page-a"]);
    expect(Object.keys(sealed).sort()).toEqual(["ct", "header", "iv", "sig"]);
    expect(sealed.header.topic).toBe("gun.learning");
    expect(sealed.header.sender_id).toBe("page-a");
    // closing drops GUN.js's relay links: the relay's /gun engine loses this page as a peer
    const peers = async () => Number((await (await fetch(`${origin}/metrics`)).text()).match(/edge_relay_gun\{what="peers"\} (\d+)/)[1]);
    await Promise.race([native.exited, sleep(10_000)]);
    await expect.poll(peers, { timeout: 10_000 }).toBe(2); // the two pages (the native agent has left)
    await py(a, "await gun_swarm.close()");
    await expect.poll(peers, { timeout: 10_000 }).toBe(1);
  } finally {
    native.close();
    await context.close();
  }
});

test("patterns written before a relay restart are served from its data directory after it", async ({ browser }) => {
  const port = Number(process.env.E2E_PORT || 4173) + 1;
  const dir = mkdtempSync(join(tmpdir(), "gun-e2e-"));
  const relayUrl = `http://127.0.0.1:${port}/gun`;
  let relay = await startRelay(port, ["--data-dir", dir]);
  const context = await browser.newContext();
  try {
    const writer = await context.newPage();
    const reader = await context.newPage();
    await openReady(writer);
    await openReady(reader);
    const rw = await enrol(writer, "page-w");
    const rr = await enrol(reader, "page-r");
    await build(writer, "page-w", [rr], relayUrl);
    await py(writer, "await gun_swarm.publish_pattern('persist', 'kept', 0.7, 5)");
    await writer.close(); // nothing but the relay's store holds the value now
    await stopProcess(relay);
    relay = await startRelay(port, ["--data-dir", dir]);
    await build(reader, "page-r", [rw], relayUrl);
    const seen = await patternsWhen(reader, 1);
    expect(seen.patterns).toEqual([["persist", "kept", 0.7, 5]]);
  } finally {
    await context.close();
    await stopProcess(relay);
    rmSync(dir, { recursive: true, force: true });
  }
});
