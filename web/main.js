// Page side: starts the Python worker, shows load progress, and surfaces any
// failure as visible text (never a silent blank page). `window.edge` lets
// Playwright tests and benchmarks drive Python in the worker.

import { hostWebRtc } from "./bridges/rtc-host.js";
import { Charts } from "./ui/charts.js";
import { $, count, renderAll, renderSearch } from "./ui/panels.js";

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

const MB = (bytes) => (bytes / 1e6).toFixed(1);

/** The embedding model's state (downloading, starting, ready, or absent with hashing instead), as visible text. */
function showModel(m) {
  const el = $("model-status");
  const bar = $("model-bar");
  window.edge.model = m;
  el.dataset.state = m.state;
  if (m.state === "loading") {
    bar.max = m.total || 1;
    bar.value = m.loaded;
    el.textContent = `Semantic model all-MiniLM-L6-v2: downloading ${MB(m.loaded)} of ${MB(m.total)} MB…`;
    return;
  }
  if (m.state === "session") {
    bar.value = bar.max;
    el.textContent = "Semantic model all-MiniLM-L6-v2: starting onnxruntime-web…";
    return;
  }
  bar.hidden = true;
  el.textContent = m.state === "ready"
    ? `Semantic memory: all-MiniLM-L6-v2 on onnxruntime-web (loaded in ${(m.loadMs / 1000).toFixed(1)} s)`
    : `No semantic model in this tab: memory search falls back to feature hashing (lexical, not semantic). ${m.reason}`;
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
    case "model":
      showModel(data);
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

// The swarm. What to join lives in the URL fragment, which browsers never send to the server:
//   #invite=<token>      an admitted swarm's invite, traded with its admin for a certificate (no key in it)
//   #found=admitted      a new admitted swarm with this page as its admin ("Create a swarm")
//   #swarm=<adm-…>&id=…  back to the admitted swarm this browser joined (identity and certificate in IndexedDB)
//   #swarm_key=<64 hex>  an open swarm: the key is in the link, anyone holding it is a member ("open")
// plus &role=…&id=…&caps=…, and &relays=ws://a:8080/ws,ws://b:8080/ws when the swarm's relays are federated
// (the page fails over between them in turn; without the list it joins this page's own relay, /ws here).
// With an id in it the page joins at once (a reload rejoins as the same agent);
// without one it offers the role/id picker first. Once joined, the dashboard renders one snapshot a second.
const fragment = () => Object.fromEntries(new URLSearchParams(location.hash.slice(1)));
const relayWs = () => new URL("/ws", location.href).href.replace(/^http/, "ws");
const pyString = (value) => JSON.stringify(JSON.stringify(value)); // a Python string literal holding JSON
const randomId = () => `tab-${Array.from(crypto.getRandomValues(new Uint8Array(2)), (b) => b.toString(16).padStart(2, "0")).join("")}`;
const lastLine = (err) => err.message.split("\n").filter(Boolean).pop();
/** A link to this page with `params` in its fragment, keeping the relay list this page joined through. */
const pageLink = (params) => {
  const relays = fragment().relays;
  return `${location.origin}${location.pathname}#${new URLSearchParams(relays ? { ...params, relays } : params)}`;
};
let joining = null;
let charts = null;

/** Run one page action in the worker (browser_app.PageAgent.act_<name>). */
const act = (name, args = {}) =>
  call("py", { code: `from ruvector_edge import browser_app\nawait browser_app.act(${JSON.stringify(name)}, ${pyString(args)})` });
const snapshot = () => call("py", { code: "from ruvector_edge import browser_app\nbrowser_app.snapshot()" });
window.edge.act = act;
window.edge.snapshot = snapshot;

/** The admin's Remove button: revoke the member and start a new key epoch without it. */
function removeMember(agentId, btn) {
  btn.disabled = true;
  $("members-result").textContent = `removing ${agentId}…`;
  act("remove_member", { agent_id: agentId }).then(
    (r) => ($("members-result").textContent = `removed ${r.removed}; swarm key epoch ${r.epoch}`),
    (err) => ($("members-result").textContent = `error: ${lastLine(err)}`),
  );
}

function render(snap) {
  if (!snap.joined) return;
  $("me").hidden = false;
  renderAll(snap, removeMember);
  charts ??= new Charts($("charts"), $("curve"));
  charts.update(snap);
}

function refreshForever() {
  const tick = () => snapshot().then(render, () => {}).finally(() => setTimeout(tick, 1000));
  setTimeout(tick, 1000);
}

function showPicker(inv) {
  $("create").hidden = true;
  $("picker").hidden = false;
  $("pick-role").value = inv.role || (inv.found ? "coordinator" : "worker");
  $("pick-id").value = inv.id || randomId();
  $("pick-caps").value = inv.caps || "";
}

/** After joining: what to share. Open: the key itself. Admitted: invites only the admin can make. */
function showInvite(inv, snap) {
  if (!snap.admission) {
    $("invite").hidden = false;
    $("invite-link").value = pageLink({ swarm_key: inv.swarm_key });
    $("invite-note").hidden = false;
    $("invite-note").textContent = "Open swarm: anyone holding this link is a member, and nobody can be removed.";
    return;
  }
  $("invite-form").hidden = !snap.admission.admin;
  $("invite-note").hidden = false;
  $("invite-note").textContent = snap.admission.admin
    ? "Invites are signed by this page (the admin), expire, and are good for the uses you choose; the swarm key is not in them."
    : "Only the swarm's admin can invite.";
}

function join(inv) {
  if (joining) return joining;
  $("create").hidden = true;
  $("picker").hidden = true;
  const request = { ...inv, relay_url: relayWs() };
  joining = call("py", { code: `import json\nfrom ruvector_edge import browser_app\nawait browser_app.start(json.loads(${pyString(request)}))` })
    .then((snap) => {
      // The fragment now names this agent, so a reload rejoins as it: an open swarm by its key, an admitted
      // one by its id (the invite is spent; identity and certificate wait in IndexedDB).
      const mine = snap.admission
        ? new URLSearchParams({ swarm: snap.swarm_id, role: snap.role, id: snap.agent_id })
        : new URLSearchParams({ swarm_key: inv.swarm_key, role: snap.role, id: snap.agent_id });
      if (inv.caps) mine.set("caps", inv.caps);
      if (inv.relays) mine.set("relays", inv.relays);
      history.replaceState(null, "", `#${mine}`);
      showInvite(inv, snap);
      render(snap);
      refreshForever();
      return snap;
    })
    .catch((err) => {
      showError(`joining the swarm failed: ${lastLine(err)}`);
      throw err;
    });
  window.edge.joined = joining;
  return joining;
}

function route() {
  const inv = fragment();
  if (joining) return;
  if (!inv.swarm_key && !inv.invite && !inv.found && !inv.swarm) {
    $("create").hidden = false;
    return;
  }
  if (inv.id) return join(inv);
  showPicker(inv);
}

ready.then(() => {
  $("swarm").hidden = false;
  route();
});
addEventListener("hashchange", () => ready.then(route, () => {}));
$("create-btn").onclick = () => (location.hash = "found=admitted"); // fires hashchange → picker
$("create-open-btn").onclick = () => {
  const key = Array.from(crypto.getRandomValues(new Uint8Array(32)), (b) => b.toString(16).padStart(2, "0")).join("");
  location.hash = `swarm_key=${key}`;
};
$("picker").onsubmit = (e) => {
  e.preventDefault();
  join({ ...fragment(), role: $("pick-role").value, id: $("pick-id").value.trim(), caps: $("pick-caps").value.trim() || undefined });
};
$("copy-btn").onclick = () => navigator.clipboard?.writeText($("invite-link").value).catch(() => {});
$("invite-form").onsubmit = (e) => {
  e.preventDefault();
  act("create_invite", { uses: Number($("invite-uses").value), hours: Number($("invite-hours").value) }).then(
    (r) => {
      $("invite").hidden = false;
      $("invite-link").value = pageLink({ invite: r.token });
      $("invite-note").textContent = `Good for ${count(r.uses, "join")}, until ${new Date(r.expires_at).toLocaleString()}; the swarm key is not in it.`;
    },
    (err) => ($("invite-note").textContent = `error: ${lastLine(err)}`),
  );
};

/** Wire a form to an action: `args()` reads its inputs, `show(result)` renders the answer in `out`. */
function onSubmit(formId, out, name, args, show) {
  $(formId).onsubmit = (e) => {
    e.preventDefault();
    $(out).textContent = "…";
    act(name, args()).then(
      (result) => {
        $(out).textContent = "";
        show(result);
      },
      (err) => ($(out).textContent = `error: ${lastLine(err)}`),
    );
  };
}

onSubmit("best-form", "best-result", "best_action",
  () => ({ state: $("best-state").value, actions: $("best-actions").value }),
  (r) => ($("best-result").textContent = r ? `best: ${r.action} (confidence ${r.confidence})` : "no pattern known for that state"));
onSubmit("learn-form", "best-result", "learn",
  () => ({ state: $("learn-state").value, action: $("learn-action").value, reward: Number($("learn-reward").value) }),
  () => ($("best-result").textContent = "learned; peers get it at the next sync"));
onSubmit("store-form", "memory-result", "store_memory", () => ({ text: $("store-text").value }),
  (r) => ($("store-text").value = "", $("memory-result").textContent = `stored ${r.id}`));
onSubmit("search-form", "memory-result", "search_memory", () => ({ query: $("search-text").value, k: 5 }), renderSearch);
onSubmit("task-form", "task-result", "submit_sample_task", () => ({ input: $("task-input").value, capability: $("task-cap").value }), (r) => {
  $("task-result").textContent = `submitted ${r.task_id}; waiting for a verified receipt…`;
  act("wait_receipt", { task_id: r.task_id, timeout: 30 }).then(
    (rc) => ($("task-result").textContent = `receipt verified: ${rc.executor} → ${rc.status}, output “${rc.output}”`),
    (err) => ($("task-result").textContent = `no verified receipt: ${lastLine(err)}`),
  );
});
onSubmit("artifact-form", "task-result", "store_artifact", () => ({ text: $("artifact-text").value }),
  (r) => ($("artifact-text").value = "", $("task-result").textContent = `stored ${r.cid}`));
$("feed-btn").onclick = () =>
  act("scout_feed", { text: $("feed-text").value }).then(
    (r) => ($("feed-result").textContent = `${count(r.stored, "new memory", "new memories")}`),
    (err) => ($("feed-result").textContent = `error: ${err.message}`),
  );
