// The page agent's long-term secrets in IndexedDB, so a reload keeps its identity:
// peers pin an agent id to the key of its first registration and would refuse the
// same id under a fresh key. One record per "swarm id/agent id", holding the JSON
// of IdentityManager.to_secret_json(); Python validates it when reading it back.
// Exposed to Python as globalThis.edgeIdentity {load(name), save(name, json)}.

import { done, openDb, request } from "./idb.js";

const DB = "ruvector-edge-identity";
const STORE = "identities";

let opened = null;
function db() {
  opened ??= openDb(DB, { [STORE]: {} }, { onVersionChange: () => (opened = null) });
  opened.catch(() => (opened = null));
  return opened;
}

globalThis.edgeIdentity = {
  /** The saved secret JSON for `name`, or undefined when there is none (None in Python; null would be jsnull). */
  async load(name) {
    const tx = (await db()).transaction(STORE, "readonly");
    const value = await request(tx.objectStore(STORE).get(String(name)));
    return typeof value === "string" ? value : undefined;
  },
  /** Store `json` under `name`; resolves once the transaction has committed. */
  async save(name, json) {
    const tx = (await db()).transaction(STORE, "readwrite", { durability: "strict" });
    const committed = done(tx);
    tx.objectStore(STORE).put(String(json), String(name));
    return committed;
  },
};
