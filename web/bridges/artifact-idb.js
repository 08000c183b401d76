// Artifact block store bridge for the Pyodide worker, exposed as globalThis.edgeArtifacts:
// content-addressed blocks in IndexedDB, one database per store, one object
// store "blocks" of {cid, data}.
//
// Blocks cross to Python packed: one JSON list of CIDs and one Uint8Array of
// their bytes with a JSON list of lengths, because a proxy per block would cost
// a crossing each. Writes use `durability: "strict"` (a transaction completes
// only once it is on disk) and are created synchronously inside the call, so
// overlapping writes commit in call order. Hashing is not done here: Python
// verifies every block against its CID when it is read.

import { done, openDb, request } from "./idb.js";

const BLOCKS = "blocks";

function blocksOpen(name) {
  return openDb(name, { [BLOCKS]: { keyPath: "cid" } }, { owner: "edgeArtifacts" });
}

/** Every block: {cids: JSON list, lengths: JSON list, data: the blocks' bytes concatenated in that order}. */
async function blocksLoad(db) {
  const records = await request(db.transaction(BLOCKS, "readonly").objectStore(BLOCKS).getAll());
  let total = 0;
  for (const r of records) total += r.data.byteLength;
  const data = new Uint8Array(total);
  const cids = new Array(records.length);
  const lengths = new Array(records.length);
  let at = 0;
  records.forEach((r, i) => {
    data.set(new Uint8Array(r.data), at);
    at += r.data.byteLength;
    cids[i] = r.cid;
    lengths[i] = r.data.byteLength;
  });
  return { cids: JSON.stringify(cids), lengths: JSON.stringify(lengths), data };
}

/**
 * One atomic, durable step: delete the CIDs in `deleteJson`, then put the blocks
 * named in `putJson` (JSON [[cid, length], ...]) whose bytes are packed in `data`.
 * Resolves when the transaction has committed.
 */
function blocksApply(db, putJson, data, deleteJson) {
  const puts = JSON.parse(putJson);
  const deletes = JSON.parse(deleteJson);
  const total = puts.reduce((s, [, n]) => s + n, 0);
  if (data.byteLength < total) throw new RangeError("blocksApply: fewer bytes than the blocks' lengths add up to");
  const tx = db.transaction(BLOCKS, "readwrite", { durability: "strict" });
  const finished = done(tx);
  const store = tx.objectStore(BLOCKS);
  for (const cid of deletes) store.delete(cid);
  let at = 0;
  for (const [cid, n] of puts) {
    // slice(): a copy of just this block (structured clone would store the whole buffer).
    store.put({ cid, data: data.slice(at, at + n).buffer });
    at += n;
  }
  return finished;
}

function blocksClose(db) {
  db.close();
}

/** Drop a whole store (tests and "forget everything"); resolves when it is gone. */
function blocksDelete(name) {
  return request(indexedDB.deleteDatabase(name));
}

globalThis.edgeArtifacts = { blocksOpen, blocksLoad, blocksApply, blocksClose, blocksDelete };
