// GUN.js (npm gun) for the Pyodide worker, exposed as globalThis.edgeGun; Python's
// ruvector_edge.gun.browser.BrowserGunGraph drives it through the FFI.
//
// gun.js decides at evaluation time whether it is in a browser by looking for
// `window` (and takes WebSocket from it); a worker has none, so we alias
// `self.window = self` and only then import gun.js, lazily, on the first open():
// pages that never use GUN never load it or see the alias (BROWSER-NOTES).
//
// Values cross as JSON text: a put sends {key: value} for one node (soul), a read
// answers the node's keys and values (metadata stripped). Reads keep one `on`
// subscription per soul, so later reads see what the relay pushed since.

let gunModule = null;

async function loadGun() {
  if (!gunModule) {
    if (typeof self.window === "undefined") self.window = self;
    gunModule = (await import("gun/gun")).default;
  }
  return gunModule;
}

const strip = (node) => {
  const out = {};
  if (node && typeof node === "object") for (const k of Object.keys(node)) if (k !== "_") out[k] = node[k];
  return out;
};

/** A GUN instance peered with `peers` (relay URLs); no browser storage: the graph of record is the relays'. */
async function open(peers) {
  const Gun = await loadGun();
  const list = Array.from(peers || [], String);
  const gun = Gun({ peers: list, localStorage: false, radisk: false, file: false, axe: false, multicast: false });
  return { gun, mirrors: new Map(), peers: list };
}

/** Put {key: value} on node `soul`; resolves with "" on the first ack, the error text, or "timeout"
 * (a string either way: a JS null reaches Pyodide as `jsnull`, not None). */
function put(handle, soul, valuesJson, timeoutMs) {
  const values = JSON.parse(valuesJson);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), timeoutMs);
    handle.gun.get(soul).put(values, (ack) => {
      clearTimeout(timer);
      resolve(ack && ack.err ? String(ack.err) || "error" : "");
    });
  });
}

/** The node's keys and values as JSON text: at once if subscribed, else after its first update or `waitMs`. */
function read(handle, soul, waitMs) {
  let mirror = handle.mirrors.get(soul);
  if (!mirror) {
    mirror = { data: {}, first: null };
    mirror.first = new Promise((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      handle.gun.get(soul).on((node) => {
        Object.assign(mirror.data, strip(node));
        clearTimeout(timer);
        resolve();
      });
    });
    handle.mirrors.set(soul, mirror);
  }
  return mirror.first.then(() => JSON.stringify(mirror.data));
}

/** Drop the relays and subscriptions of this instance. */
function close(handle) {
  for (const soul of handle.mirrors.keys()) handle.gun.get(soul).off();
  handle.mirrors.clear();
  const mesh = handle.gun.back("opt.mesh");
  const peers = handle.gun.back("opt.peers") || {};
  for (const peer of Object.values(peers)) {
    try { if (mesh) mesh.bye(peer); } catch { /* already gone */ }
  }
}

globalThis.edgeGun = { open, put, read, close };
export const edgeGun = globalThis.edgeGun;
