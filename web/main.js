// Page side: starts the Python worker, shows load progress, and surfaces any
// failure as visible text (never a silent blank page). `window.edge` lets
// Playwright tests and benchmarks drive Python in the worker.

import { hostWebRtc } from "./bridges/rtc-host.js";

const $ = (id) => document.getElementById(id);
const STAGES = ["boot", "pyodide", "manifest", "wheel", "import"];

function setStatus(state, text) {
  const el = $("status");
  el.dataset.state = state;
  el.textContent = text;
}

function addStep(stage, detail) {
  const list = $("progress");
  for (const li of list.children) li.className = "done";
  const li = document.createElement("li");
  li.textContent = detail || stage;
  list.append(li);
  $("bar").value = Math.max($("bar").value, STAGES.indexOf(stage) + 1);
}

function showError(message) {
  setStatus("error", "Failed to start");
  const last = $("progress").lastElementChild;
  if (last) last.className = "failed";
  const el = $("error");
  el.hidden = false;
  el.textContent = message;
}

const params = new URLSearchParams(location.search);
const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
hostWebRtc(worker); // RTCPeerConnection exists only on the page; data channels move to the worker
const pending = new Map();
let nextId = 1;
let resolveBooted;
const booted = new Promise((r) => (resolveBooted = r));

/** Send one request to the worker; resolves with its result or rejects with its error text. */
async function call(cmd, args = {}) {
  await booted;
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, cmd, args });
  });
}

const timing = { bootMs: null, readyMs: null };

worker.onmessage = ({ data }) => {
  if (data.id !== undefined) {
    const p = pending.get(data.id);
    if (!p) return;
    pending.delete(data.id);
    data.ok ? p.resolve(data.result) : p.reject(new Error(data.error));
    return;
  }
  switch (data.type) {
    case "boot":
      timing.bootMs = performance.now();
      addStep("boot", "worker started");
      resolveBooted();
      break;
    case "progress":
      addStep(data.stage, data.detail);
      setStatus("loading", `Loading: ${data.detail || data.stage}…`);
      break;
    case "ready":
      timing.readyMs = performance.now();
      for (const li of $("progress").children) li.className = "done";
      $("bar").value = STAGES.length;
      setStatus("ready", `ready — ruvector-edge ${data.version} on ${data.runtime} (crypto: ${data.crypto}, Python ${data.python})`);
      break;
    case "failed":
      showError(data.message);
      break;
  }
};

worker.onerror = (event) => {
  event.preventDefault();
  showError(`worker error: ${event.message || "the worker script failed to load"}`);
  for (const p of pending.values()) p.reject(new Error("worker error"));
  pending.clear();
};

const ready = call("init", params.get("wheel") ? { wheel: params.get("wheel") } : {});
ready.catch((err) => showError(err.message));

window.edge = {
  /** Resolves with {version, runtime, crypto, python} once Python and the wheel are loaded. */
  ready,
  timing,
  call,
  /** Run Python code in the worker; resolves with its (converted) last expression. */
  py: (code) => call("py", { code }),
};

// The swarm panel. The invite lives in the URL fragment (#swarm_key=<64 hex>&role=…&id=…),
// which browsers never send to the server; once Python is ready the page's agent joins
// the swarm through the relay on this same host, and the panel polls one snapshot a second.
const invite = () => Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
const relayWs = () => new URL("/ws", location.href).href.replace(/^http/, "ws");
let joining = null;

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text ?? "—";
  if (cls) td.className = cls;
}

function render(snap) {
  $("me").hidden = false;
  $("me-id").textContent = snap.agent_id;
  $("me-role").textContent = snap.role;
  $("me-fp").textContent = snap.fingerprint;
  $("me-swarm").textContent = snap.swarm_id;
  const body = $("peers").tBodies[0];
  body.replaceChildren();
  for (const p of snap.peers) {
    const row = body.insertRow();
    row.dataset.agentId = p.agent_id;
    cell(row, p.agent_id);
    cell(row, p.role);
    cell(row, p.transport);
    cell(row, p.status, `status-${p.status}`);
    cell(row, p.last_heartbeat_age_s == null ? null : `${p.last_heartbeat_age_s.toFixed(1)} s ago`);
  }
  $("peer-count").textContent = `(${snap.peers.length})`;
  $("peers-empty").hidden = snap.peers.length > 0;
}

function showInvite() {
  $("invite").hidden = false;
  $("invite-link").value = location.href;
}

async function joinFromFragment() {
  const inv = invite();
  if (!inv.swarm_key || joining) return;
  $("create").hidden = true;
  showInvite();
  const args = JSON.stringify({ swarm_key: inv.swarm_key, role: inv.role, id: inv.id, relay_url: relayWs() });
  joining = call("py", { code: `import json\nfrom ruvector_edge import browser_app\nawait browser_app.start(json.loads(${JSON.stringify(args)}))` })
    .then((snap) => {
      render(snap);
      setInterval(() => call("py", { code: "from ruvector_edge import browser_app\nbrowser_app.snapshot()" }).then(render, () => {}), 1000);
      return snap;
    })
    .catch((err) => {
      showError(`joining the swarm failed: ${err.message}`);
      throw err;
    });
  window.edge.joined = joining;
}

ready.then(() => {
  $("swarm").hidden = false;
  if (invite().swarm_key) return joinFromFragment();
  $("create").hidden = false;
});
$("create-btn").onclick = () => {
  const key = Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join("");
  location.hash = `swarm_key=${key}`; // fires hashchange → join
};
addEventListener("hashchange", () => ready.then(joinFromFragment, () => {}));
$("copy-btn").onclick = () => navigator.clipboard?.writeText($("invite-link").value).catch(() => {});
