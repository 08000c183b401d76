// An admitted swarm's admin state in IndexedDB, so a reloaded admin tab stays the admin of the same
// swarm: same epoch key, members, revocations and invites with their uses left (without it a reload
// would found the swarm again with a new key, and every member would need a new invite). One record
// per swarm id, holding the admin-signed JSON of p2p/admin_store.py; Python checks its signature and
// every record in it when reading it back, so an altered record is refused, not trusted.
// Exposed to Python as globalThis.edgeAdminState {load(swarmId), save(swarmId, json)}.

import { done, openDb, request } from "./idb.js";

const DB = "ruvector-edge-admin";
const STORE = "swarms";

let opened = null;
function db() {
  opened ??= openDb(DB, { [STORE]: {} }, { onVersionChange: () => (opened = null) });
  opened.catch(() => (opened = null));
  return opened;
}

globalThis.edgeAdminState = {
  /** The saved state JSON of `swarmId`, or undefined when there is none (None in Python). */
  async load(swarmId) {
    const tx = (await db()).transaction(STORE, "readonly");
    const value = await request(tx.objectStore(STORE).get(String(swarmId)));
    return typeof value === "string" ? value : undefined;
  },
  /** Store `json` for `swarmId`; resolves once the transaction has committed (durably). */
  async save(swarmId, json) {
    const tx = (await db()).transaction(STORE, "readwrite", { durability: "strict" });
    const committed = done(tx);
    tx.objectStore(STORE).put(String(json), String(swarmId));
    return committed;
  },
};
