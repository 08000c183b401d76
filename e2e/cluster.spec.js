// scripts/cluster.sh's page link opened as a person would (issue 16): the script starts three nats-servers
// and three relays on free loopback ports and prints `http://…/#swarm_key=…&relays=ws://…,ws://…,ws://…`;
// a page opened from it (with an id, so it joins without the picker) joins the first relay, knows all
// three to fail over to, and keeps the list in its fragment. SIGTERM to the script leaves no process.
import { test, expect } from "./fixtures.js";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

test.describe.configure({ timeout: 180_000 });

const listens = (port) => new Promise((resolve) => {
  const srv = createServer();
  srv.once("error", () => resolve(false));
  srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
});

/** A first port of three consecutive free loopback ports (cluster.sh numbers its ports from a base). */
async function freeBase() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    if ((await listens(base)) && (await listens(base + 1)) && (await listens(base + 2))) return base;
  }
  throw new Error("no three consecutive free ports");
}

/** Whether any process is left in process group `pgid` (the script's: it was started detached). */
function groupAlive(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

test("the page link cluster.sh prints joins its first relay and lists all three", async ({ page }) => {
  const dir = mkdtempSync(join(tmpdir(), "edge-cluster-e2e-"));
  const [nats, routes, relays] = [await freeBase(), await freeBase(), await freeBase()];
  const env = { ...process.env, NATS_PORT: `${nats}`, ROUTE_PORT: `${routes}`, RELAY_PORT: `${relays}`, CLUSTER_DIR: dir };
  const script = spawn("bash", [`${ROOT}scripts/cluster.sh`], { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "inherit"] });
  let output = "";
  script.stdout.on("data", (chunk) => (output += chunk));
  try {
    for (const end = Date.now() + 120_000; !/web app: \S+/.test(output); await sleep(100)) {
      if (Date.now() > end || script.exitCode !== null) throw new Error(`cluster.sh printed no page link: ${output}`);
    }
    const link = output.match(/web app: (\S+)/)[1];
    const urls = [0, 1, 2].map((i) => `ws://127.0.0.1:${relays + i}/ws`);
    expect(new URLSearchParams(new URL(link).hash.slice(1)).get("relays")).toBe(urls.join(","));
    await page.goto(`${link}&id=tab-cluster&role=worker`);
    await expect(page.locator("#me-id")).toHaveText("tab-cluster", { timeout: 90_000 });
    const linkAttr = (attr) => page.evaluate((a) => window.edge.py(`from ruvector_edge import browser_app\nbrowser_app._app.agent.links['relay'].${a}`), attr);
    expect(await linkAttr("target")).toBe(urls[0]);
    expect(await linkAttr("targets")).toEqual(urls);
    // a reload rejoins through the same list
    expect(new URLSearchParams((await page.evaluate(() => location.hash)).slice(1)).get("relays")).toBe(urls.join(","));
  } finally {
    await page.evaluate(() => window.edge.py("from ruvector_edge import browser_app\nawait browser_app.leave()")).catch(() => {});
    if (script.exitCode === null) {
      const exited = new Promise((resolve) => script.once("exit", resolve));
      script.kill("SIGTERM");
      await Promise.race([exited, sleep(30_000)]);
    }
    for (const end = Date.now() + 10_000; groupAlive(script.pid) && Date.now() < end; ) await sleep(100);
    const left = groupAlive(script.pid);
    if (left) process.kill(-script.pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    expect(left, "processes of cluster.sh left after SIGTERM").toBe(false);
  }
});
