// Browser transport benchmark: signed, encrypted agent.ping() round trips
// between the Python agents of two Pyodide workers (two tabs of one headless
// Chromium) over WebRTC, BroadcastChannel and the relay WebSocket, p50/p99 in
// ms as JSON lines. Each round trip is PING sealed → path → verified+opened →
// PONG sealed → path → verified+opened (4 crypto crossings per side).
// Beside it, the link alone: a pre-sealed frame echoed Python → link → Python
// and back by the same two workers, with the links' receive hooks pointed at an
// echo instead of the agent (no crypto), and the seal/open cost measured in one
// worker, so the ping figure can be read as transport + crypto.
// Needs a built app (bash scripts/build-web.sh). Loopback only; every loop is bounded.
//   node bench/browser_transport.mjs [--n 500] [--warmup 50] [--port 4184]
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { arg, emit, openApp, withRelayAndBrowser } from "./browser_common.mjs";

const N = Math.min(arg("n", 500), 5000);
const WARMUP = arg("warmup", 50);
const PORT = arg("port", 4184);
// The relay rate-limits each connection (200 frames/s, burst 400) and drops the excess: pace every
// loop well below that, the same on every path so the figures compare (the gap is not timed).
const GAP_S = arg("gap-ms", 5) / 1000;
const BASE = `http://127.0.0.1:${PORT}`;


const py = (page, code) => page.evaluate((c) => window.edge.py(c), code);

async function openAgent(context, id, key) {
  const page = await openApp(context, BASE + "/");
  await py(page, `
from ruvector_edge.agent import SwarmAgent, SwarmConfig
from ruvector_edge.transport.browser import join_swarm_browser
agent = await SwarmAgent.new(SwarmConfig(agent_id=${JSON.stringify(id)}, swarm_key=bytes.fromhex(${JSON.stringify(key)})))
await join_swarm_browser(agent, ${JSON.stringify(`ws://127.0.0.1:${PORT}/ws`)})
`);
  return page;
}

async function waitFor(page, expr, ms = 20_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await py(page, expr)) return;
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${expr}`);
}

/** Keep only `path` in both agents' links (the others still listen, they just are not chosen), ping, restore. */
async function pingOver(a, b, path) {
  const only = `_saved = dict(agent.links); agent.links.clear(); agent.links[${JSON.stringify(path)}] = _saved[${JSON.stringify(path)}]`;
  await py(a, only);
  await py(b, only);
  try {
    return await py(a, `
import statistics
assert agent.path_to("bench-b") == ${JSON.stringify(path)}
import asyncio
_ms = []
for _i in range(${WARMUP} + ${N}):
    await asyncio.sleep(${GAP_S})
    _rtt = await agent.ping("bench-b")
    if _i >= ${WARMUP}:
        _ms.append(_rtt * 1000)
_ms.sort()
[_ms[len(_ms) // 2], _ms[min(len(_ms) - 1, int(len(_ms) * 0.99))], statistics.fmean(_ms)]
`);
  } finally {
    for (const p of [a, b]) await py(p, "agent.links.clear(); agent.links.update(_saved)");
  }
}

// Where each link hands received frames to the agent; the echo bench swaps that hook.
const HOOK = {
  webrtc: ["agent.handle_frame = {fn}", "del agent.handle_frame"],
  "broadcast-channel": ["agent.links['broadcast-channel'].on_frame = {fn}", "agent.links['broadcast-channel'].on_frame = agent.handle_frame"],
  relay: ["agent.links['relay'].session.on_envelope = {fn}", "agent.links['relay'].session.on_envelope = agent.handle_frame"],
};

/** Round trip of one sealed frame A → B → A over `path`, Python to Python, no crypto on the way. */
async function echoOver(a, b, path) {
  const [install, restore] = HOOK[path];
  await py(b, `
_to_a = (await agent.swarm.send_direct("bench-a", b"x" * 64)).frame.decode()
_from_a = None
async def _echo(frame, via=None):
    if _from_a is not None and frame == _from_a:
        await agent.links[${JSON.stringify(path)}].send(_to_a)
${install.replace("{fn}", "_echo")}
`);
  try {
    const toB = await py(a, `_to_b = (await agent.swarm.send_direct("bench-b", b"x" * 64)).frame.decode(); _to_b`);
    await py(b, `_from_a = ${JSON.stringify(toB)}`);
    return await py(a, `
import asyncio, time
_from_b = None
_fut = None
async def _got(frame, via=None):
    if _fut is not None and not _fut.done() and (frame if isinstance(frame, str) else frame.decode()).startswith('{'):
        _fut.set_result(None)
${install.replace("{fn}", "_got")}
try:
    _link = agent.links[${JSON.stringify(path)}]
    _ms = []
    for _i in range(${WARMUP} + ${N}):
        await asyncio.sleep(${GAP_S})
        _fut = asyncio.get_running_loop().create_future()
        _t0 = time.perf_counter()
        await _link.send(_to_b)
        await asyncio.wait_for(_fut, 5)
        if _i >= ${WARMUP}:
            _ms.append((time.perf_counter() - _t0) * 1000)
finally:
    ${restore}
_ms.sort()
[_ms[len(_ms) // 2], _ms[min(len(_ms) - 1, int(len(_ms) * 0.99))], sum(_ms) / len(_ms)]
`);
  } finally {
    await py(b, restore);
  }
}

await withRelayAndBrowser(PORT, async (browser) => {
  const key = randomBytes(32).toString("hex");
  const context = await browser.newContext(); // one context: the tabs share a BroadcastChannel
  const a = await openAgent(context, "bench-a", key);
  const b = await openAgent(context, "bench-b", key);
  await waitFor(a, "agent.path_to('bench-b') == 'webrtc'");
  await waitFor(b, "agent.path_to('bench-a') == 'webrtc'");
  for (const path of ["webrtc", "broadcast-channel", "relay"]) {
    const [p50, p99, mean] = await pingOver(a, b, path);
    emit({ bench: "browser_agent_ping", path, impl: "pyodide-agent.ping (signed+encrypted)", n: N,
      p50_ms: +p50.toFixed(3), p99_ms: +p99.toFixed(3), mean_ms: +mean.toFixed(3),
      ...(path === "relay" ? {} : { goal_p50_ms: 1.5, meets_goal: p50 <= 1.5 }) });
  }
  for (const path of ["webrtc", "broadcast-channel", "relay"]) {
    const [p50, p99, mean] = await echoOver(a, b, path);
    emit({ bench: "browser_link_echo", path, impl: "pyodide link → link (sealed frame echoed, no crypto)", n: N,
      p50_ms: +p50.toFixed(3), p99_ms: +p99.toFixed(3), mean_ms: +mean.toFixed(3),
      ...(path === "relay" ? {} : { goal_p50_ms: 1.5, meets_goal: p50 <= 1.5 }) });
  }
  const sealMs = await py(a, `
import time
_seal = []
for _i in range(${N}):
    _t0 = time.perf_counter()
    _p = await agent.swarm.send_direct("bench-b", b'{"body":{"token":"0123456789abcdef"},"kind":"PING"}')
    _seal.append((time.perf_counter() - _t0) * 1000)
_seal.sort()
_seal[len(_seal) // 2]
`);
  const frames = await py(b, `
import json
json.dumps([(await agent.swarm.send_direct("bench-a", b'{"body":{"token":"0123456789abcdef"},"kind":"PONG"}')).frame.decode()
            for _ in range(${N})])
`);
  const openMs = await py(a, `
import json, time
_open = []
for _f in json.loads(${JSON.stringify(frames)}):
    _t0 = time.perf_counter()
    await agent.swarm.receive(_f)
    _open.append((time.perf_counter() - _t0) * 1000)
_open.sort()
_open[len(_open) // 2]
`);
  emit({ bench: "browser_seal_direct", impl: "pyodide P2PSwarm.send_direct (sign + AES-GCM, 2 crossings)", n: N, p50_ms: +sealMs.toFixed(3) });
  emit({ bench: "browser_open_direct", impl: "pyodide P2PSwarm.receive (verify + AES-GCM, 2 crossings)", n: N, p50_ms: +openMs.toFixed(3) });
  const relayRtt = await py(a, `
import asyncio
_r = []
for _ in range(${N}):
    await asyncio.sleep(${GAP_S})
    _r.append((await agent.links['relay'].ping()) * 1000)
_r.sort()
[_r[len(_r) // 2], _r[min(len(_r) - 1, int(len(_r) * 0.99))]]
`);
  emit({ bench: "browser_relay_control_ping", path: "relay", impl: "pyodide relay-link ping (no crypto)", n: N,
    p50_ms: +relayRtt[0].toFixed(3), p99_ms: +relayRtt[1].toFixed(3) });
  await py(a, "await agent.leave()");
  await py(b, "await agent.leave()");
});
