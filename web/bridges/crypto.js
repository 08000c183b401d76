// WebCrypto bridge for the Pyodide worker, exposed as globalThis.edgeCrypto.
//
// Every call from Python into JS costs ~100 µs once a promise is awaited, so
// each function here is one crossing for a whole batch: variable-length items
// arrive packed in one Uint8Array plus a Uint32Array of lengths (as raw bytes),
// the per-item work fans out with Promise.all, and results come back packed.
// Imported CryptoKeys are cached per key bytes because importKey is itself a
// promise round trip per call.

const subtle = globalThis.crypto.subtle;

// PKCS#8 DER prefixes that wrap a raw 32-byte RFC 8032 seed / RFC 7748 scalar.
const ED25519_PKCS8 = hex("302e020100300506032b657004220420");
const X25519_PKCS8 = hex("302e020100300506032b656e04220420");
const CACHE_LIMIT = 256;

function hex(s) {
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  return out;
}

function keyId(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += bytes[i].toString(16).padStart(2, "0");
  return s;
}

function pkcs8(prefix, raw) {
  const out = new Uint8Array(prefix.length + raw.length);
  out.set(prefix, 0);
  out.set(raw, prefix.length);
  return out;
}

function b64urlToBytes(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// A bounded cache: cleared whole when full, which is cheap and keeps memory flat.
function makeCache(importer) {
  const map = new Map();
  return (bytes) => {
    const id = keyId(bytes);
    let p = map.get(id);
    if (p === undefined) {
      if (map.size >= CACHE_LIMIT) map.clear();
      p = importer(bytes.slice());
      // A failed import must not poison the cache for that key.
      p.catch(() => map.delete(id));
      map.set(id, p);
    }
    return p;
  };
}

const edPrivate = makeCache((seed) => subtle.importKey("pkcs8", pkcs8(ED25519_PKCS8, seed), "Ed25519", false, ["sign"]));
const edPublic = makeCache((pub) => subtle.importKey("raw", pub, "Ed25519", false, ["verify"]));
const xPrivate = makeCache((sk) => subtle.importKey("pkcs8", pkcs8(X25519_PKCS8, sk), "X25519", false, ["deriveBits"]));
const aesKey = makeCache((k) => subtle.importKey("raw", k, "AES-GCM", false, ["encrypt", "decrypt"]));

// Lengths travel as little-endian uint32 bytes; copy if the view is unaligned.
function lengths(u8) {
  if (u8 instanceof Uint32Array) return u8;
  if (u8.byteOffset % 4 === 0) return new Uint32Array(u8.buffer, u8.byteOffset, u8.byteLength >>> 2);
  return new Uint32Array(u8.slice().buffer);
}

// Split a packed buffer into subarray views (no copies; WebCrypto copies its inputs on call).
function split(packed, lens) {
  const n = lens.length;
  const views = new Array(n);
  let off = 0;
  for (let i = 0; i < n; i++) {
    views[i] = packed.subarray(off, off + lens[i]);
    off += lens[i];
  }
  return views;
}

function concat(buffers, total) {
  const out = new Uint8Array(total);
  let off = 0;
  for (const b of buffers) {
    if (b === null) continue;
    out.set(b, off);
    off += b.length;
  }
  return out;
}

async function publicOfPrivate(prefix, alg, usages, raw) {
  const key = await subtle.importKey("pkcs8", pkcs8(prefix, raw), alg, true, usages);
  const jwk = await subtle.exportKey("jwk", key);
  return b64urlToBytes(jwk.x);
}

async function generatePair(alg, usages) {
  const pair = await subtle.generateKey(alg, true, usages);
  const der = new Uint8Array(await subtle.exportKey("pkcs8", pair.privateKey));
  const pub = new Uint8Array(await subtle.exportKey("raw", pair.publicKey));
  return { private: der.slice(der.length - 32), public: pub };
}

export const edgeCrypto = {
  /** A fresh Ed25519 key pair: {private: 32-byte seed, public: 32 bytes}. */
  ed25519Generate: () => generatePair("Ed25519", ["sign", "verify"]),

  /** The Ed25519 public key of a 32-byte seed. */
  ed25519Public: (seed) => publicOfPrivate(ED25519_PKCS8, "Ed25519", ["sign"], seed),

  /** Signatures of each packed message under one seed: n*64 bytes. */
  async signMany(seed, packed, lensBytes) {
    const key = await edPrivate(seed);
    const msgs = split(packed, lengths(lensBytes));
    const sigs = await Promise.all(msgs.map((m) => subtle.sign("Ed25519", key, m)));
    const out = new Uint8Array(sigs.length * 64);
    for (let i = 0; i < sigs.length; i++) out.set(new Uint8Array(sigs[i]), i * 64);
    return out;
  },

  /** pubs: n*32 bytes, sigs: n*64 bytes, messages packed; one 0/1 byte per item. Never rejects. */
  async verifyMany(pubs, sigs, packed, lensBytes) {
    const msgs = split(packed, lengths(lensBytes));
    const results = await Promise.all(
      msgs.map(async (m, i) => {
        try {
          const key = await edPublic(pubs.subarray(i * 32, i * 32 + 32));
          return await subtle.verify("Ed25519", key, sigs.subarray(i * 64, i * 64 + 64), m);
        } catch {
          return false;
        }
      }),
    );
    return Uint8Array.from(results, (ok) => (ok ? 1 : 0));
  },

  /** A fresh X25519 key pair: {private: 32-byte scalar, public: 32 bytes}. */
  x25519Generate: () => generatePair("X25519", ["deriveBits"]),

  /** The X25519 public key of a 32-byte private scalar. */
  x25519Public: (sk) => publicOfPrivate(X25519_PKCS8, "X25519", ["deriveBits"], sk),

  /** Raw 32-byte shared secret; all zeros when the engine refuses a low-order point. */
  async x25519Shared(sk, peerPublic) {
    const priv = await xPrivate(sk);
    const pub = await subtle.importKey("raw", peerPublic.slice(), "X25519", false, []);
    try {
      return new Uint8Array(await subtle.deriveBits({ name: "X25519", public: pub }, priv, 256));
    } catch (e) {
      // WebCrypto throws OperationError for an all-zero result; callers reject zeros.
      if (e && e.name === "OperationError") return new Uint8Array(32);
      throw e;
    }
  },

  /** RFC 5869 HKDF-SHA256. */
  async hkdf(ikm, salt, info, length) {
    const key = await subtle.importKey("raw", ikm.slice(), "HKDF", false, ["deriveBits"]);
    const bits = await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt, info }, key, length * 8);
    return new Uint8Array(bits);
  },

  /** ivs: n*12 bytes; plaintexts and aads packed. Returns ciphertext||tag for each, packed. */
  async aesGcmSealMany(key, ivs, pts, ptLens, aads, aadLens) {
    const k = await aesKey(key);
    const p = split(pts, lengths(ptLens));
    const a = split(aads, lengths(aadLens));
    const cts = await Promise.all(
      p.map((pt, i) =>
        subtle.encrypt({ name: "AES-GCM", iv: ivs.subarray(i * 12, i * 12 + 12), additionalData: a[i], tagLength: 128 }, k, pt),
      ),
    );
    const views = cts.map((c) => new Uint8Array(c));
    return concat(views, views.reduce((s, v) => s + v.length, 0));
  },

  /** Like seal, reversed: {data: plaintexts packed, lens: Int32Array (-1 = failed)}. Never rejects per item. */
  async aesGcmOpenMany(key, ivs, cts, ctLens, aads, aadLens) {
    const k = await aesKey(key);
    const c = split(cts, lengths(ctLens));
    const a = split(aads, lengths(aadLens));
    const pts = await Promise.all(
      c.map(async (ct, i) => {
        try {
          const iv = ivs.subarray(i * 12, i * 12 + 12);
          return new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv, additionalData: a[i], tagLength: 128 }, k, ct));
        } catch {
          return null;
        }
      }),
    );
    const lens = Int32Array.from(pts, (p) => (p === null ? -1 : p.length));
    return { data: concat(pts, pts.reduce((s, p) => s + (p === null ? 0 : p.length), 0)), lens };
  },
};

globalThis.edgeCrypto = edgeCrypto;
