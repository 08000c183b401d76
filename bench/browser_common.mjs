// What the browser benchmarks share: flags, JSON-line output, and the native relay
// serving the built app (dist/) on a loopback port, as in production.
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";

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
  const server = spawn(RELAY, ["--listen", `127.0.0.1:${port}`, "--web", "dist"], { stdio: "ignore", detached: true });
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
