// Module worker that hosts Python: loads Pyodide from our own origin, installs
// the project's wheel by URL and answers {id, cmd, args} requests from the page
// with {id, ok, result | error}. Unsolicited messages carry a `type`
// (boot, progress, ready, failed, and model: the MiniLM download and session,
// which load beside Pyodide).
//
// No top-level await: a module worker drops messages posted to it before its
// evaluation finishes, so we register the handler, post "boot" at once and do
// the slow loading afterwards; the page sends nothing until it sees "boot".
import "./bridges/crypto.js";
import "./bridges/vectors.js";
import "./bridges/gun.js";
import "./bridges/identity-idb.js";
import "./bridges/admin-idb.js";
import "./bridges/lz4.js";
import "./bridges/artifact-idb.js";
import "./bridges/sandbox.js";
import "./bridges/embed.js";
import { edgeTransport } from "./bridges/transport.js";

const post = (msg) => self.postMessage(msg);
const progress = (stage, detail = "") => post({ type: "progress", stage, detail, t: performance.now() });

let pyodide = null;
let started = null;

/** Load the embedding model beside Pyodide, reporting progress and the outcome to the page. */
function startModel(base) {
  const report = (p) => post({ type: "model", ...p });
  edgeEmbed.start(base.href, report).then((r) =>
    report(r.ok ? { state: "ready", modelId: r.modelId, loadMs: r.loadMs } : { state: r.absent ? "absent" : "failed", reason: r.reason }),
  );
}

/** Load Pyodide and the wheel; `opts.wheel` overrides the manifest (used to test failures). */
async function boot(opts = {}) {
  const base = new URL("/", self.location.href);
  const indexURL = new URL("pyodide/", base).href;
  startModel(base);

  progress("pyodide", "loading the Python runtime");
  const { loadPyodide } = await import(/* @vite-ignore */ new URL("pyodide.mjs", indexURL).href);
  pyodide = await loadPyodide({ indexURL, packages: [], stdout: () => {}, stderr: (s) => console.warn(s) });

  progress("manifest", "reading the wheel manifest");
  let wheelUrl;
  if (opts.wheel) {
    wheelUrl = new URL(opts.wheel, base).href;
  } else {
    const res = await fetch(new URL("wheels/manifest.json", base));
    if (!res.ok) throw new Error(`wheel manifest: HTTP ${res.status}`);
    const manifest = await res.json();
    wheelUrl = new URL(`wheels/${manifest.wheel}`, base).href;
  }

  progress("wheel", `installing ${wheelUrl.split("/").pop()}`);
  // loadPackage reports failure through its messages and an empty result, not by throwing.
  const errors = [];
  const loaded = await pyodide.loadPackage(wheelUrl, { messageCallback: () => {}, errorCallback: (m) => errors.push(m) });
  if (!loaded || loaded.length === 0) {
    throw new Error(`could not install the wheel from ${wheelUrl}${errors.length ? ": " + errors.join("; ") : ""}`);
  }

  progress("import", "importing ruvector_edge");
  const info = await pyodide.runPythonAsync(`
import sys, ruvector_edge
from ruvector_edge.platform import default_runtime
_rt = default_runtime()
(ruvector_edge.__version__, _rt.name, _rt.crypto.name, sys.version.split()[0])
`);
  const [version, runtime, crypto, python] = info.toJs();
  info.destroy();
  return { version, runtime, crypto, python };
}

/** Turn a Python result into something postMessage can clone. */
function toClonable(value) {
  if (value && typeof value === "object" && typeof value.toJs === "function") {
    try {
      return value.toJs({ dict_converter: Object.fromEntries, create_pyproxies: false });
    } finally {
      value.destroy();
    }
  }
  return value;
}

const commands = {
  async init(args) {
    started ??= boot(args).then(
      (info) => {
        post({ type: "ready", ...info });
        return info;
      },
      (err) => {
        post({ type: "failed", message: String(err && err.message ? err.message : err) });
        throw err;
      },
    );
    return started;
  },
  /** Run Python in the worker (runPythonAsync, so JSPI and top-level await work). */
  async py({ code }) {
    if (!started) throw new Error("not initialised");
    await started;
    return toClonable(await pyodide.runPythonAsync(code));
  },
  /** Plain-JS WebCrypto Ed25519 rates in this worker: the baseline for the Python figures. */
  async rawEd25519({ n = 2000, size = 1024 } = {}) {
    const subtle = crypto.subtle;
    const pair = await subtle.generateKey("Ed25519", true, ["sign", "verify"]);
    const msgs = Array.from({ length: n }, (_, i) => {
      const m = new Uint8Array(size);
      crypto.getRandomValues(m.subarray(0, Math.min(size, 65536)));
      m[0] = i & 255;
      return m;
    });
    let t0 = performance.now();
    const sigs = await Promise.all(msgs.map((m) => subtle.sign("Ed25519", pair.privateKey, m)));
    const signS = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const oks = await Promise.all(msgs.map((m, i) => subtle.verify("Ed25519", pair.publicKey, sigs[i], m)));
    const verifyS = (performance.now() - t0) / 1000;
    if (!oks.every(Boolean)) throw new Error("raw verify failed");
    return { n, size, sign_per_s: n / signS, verify_per_s: n / verifyS };
  },
};

self.onmessage = async (event) => {
  // The page's WebRTC host (bridges/rtc-host.js) hands over its port once, right after "boot".
  if (event.data && event.data.rtcHostPort && event.ports.length === 1) {
    edgeTransport.attachRtcHost(event.ports[0]);
    return;
  }
  const { id, cmd, args } = event.data || {};
  const handler = commands[cmd];
  try {
    if (!handler) throw new Error(`unknown command: ${cmd}`);
    post({ id, ok: true, result: await handler(args || {}) });
  } catch (err) {
    post({ id, ok: false, error: String(err && err.message ? err.message : err) });
  }
};

post({ type: "boot", t: performance.now() });
