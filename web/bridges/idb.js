// IndexedDB plumbing the worker's storage bridges share (vectors.js,
// artifact-idb.js, identity-idb.js): requests and transactions as promises, and
// opening a version-1 database whose stores are created on first open.

/** Resolves with `req.result` on success, rejects with `req.error`. */
export const request = (req) =>
  new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });

/** Resolves `true` once `tx` has committed; rejects if it fails or aborts. */
export const done = (tx) =>
  new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve(true);
    tx.onerror = () => reject(tx.error || new Error("IndexedDB transaction failed"));
    tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
  });

/**
 * Open database `name` at version 1, creating the object stores in `stores`
 * ({store name: createObjectStore options}) when it is new. With `owner` (the
 * bridge's name), a warning is logged while another connection blocks the open.
 * Another tab deleting or upgrading the database gets it: this connection closes
 * (then `onVersionChange()` runs, if given) rather than block it forever.
 */
export async function openDb(name, stores, { owner, onVersionChange } = {}) {
  const req = indexedDB.open(name, 1);
  req.onupgradeneeded = () => {
    const db = req.result;
    for (const [store, options] of Object.entries(stores)) {
      if (!db.objectStoreNames.contains(store)) db.createObjectStore(store, options);
    }
  };
  if (owner) req.onblocked = () => console.warn(`${owner}: opening ${name} is blocked by another connection`);
  const db = await request(req);
  db.onversionchange = () => {
    db.close();
    onVersionChange?.();
  };
  return db;
}
