// Compression bridge for the Pyodide worker, exposed as globalThis.edgeCompression:
// LZ4 block compression from npm lz4-wasm (lz4_flex built for wasm), and the
// tensor codec's float32 array work (byte shuffle, per-block quantization).
//
// Python (ruvector_edge.compression.browser_codec) crosses once per call with
// one Uint8Array and gets one Uint8Array back. Failures throw an Error whose
// message starts with the Python error class to raise ("InvalidTensor: ...",
// "MalformedMessage: ...").
//
// lz4-wasm's own glue imports the .wasm as an ES module, which Vite does not
// build; its wasm exports are small, so this file instantiates the module
// itself (Vite's `?init`) and calls it with the same stack-pointer convention.
// Instantiation is asynchronous but takes milliseconds, long before Pyodide has
// loaded; until then the LZ4 calls throw ProviderUnavailable.
//
// Quantization reproduces ruvector_edge/compression/quantize.py bit for bit:
// every operation rounded to float32 (Math.fround after each + - * /, exact
// because a double holds any float32 result before rounding), float16
// parameters through Math.f16round, nextafter on the bit patterns, and
// round-half-to-even — so a container made here equals one made by numpy
// except for deflate's bytes, and decodes to the same values everywhere.
import initLz4Wasm from "lz4-wasm/lz4_wasm_bg.wasm?init";

if (typeof Math.f16round !== "function" || typeof Float16Array !== "function") {
  throw new Error("edgeCompression: this engine lacks Float16Array / Math.f16round");
}

let lz4 = () => {
  throw new Error("ProviderUnavailable: lz4-wasm is still being instantiated");
};
const lz4Ready = instantiateLz4().then(
  (call) => {
    lz4 = call;
    return true;
  },
  (err) => {
    lz4 = () => {
      throw new Error(`ProviderUnavailable: lz4-wasm failed to load: ${err}`);
    };
    return false;
  },
);

async function instantiateLz4() {
  const strings = [];
  let wasm = null;
  const imports = {
    "./lz4_wasm_bg.js": {
      __wbindgen_string_new(ptr, len) {
        strings.push(new TextDecoder().decode(new Uint8Array(wasm.memory.buffer, ptr, len)));
        return strings.length - 1;
      },
    },
  };
  wasm = (await initLz4Wasm(imports)).exports;
  /** Run lz4_flex's `compress` or `decompress` on `input`; returns a copy of its output. */
  return function call(fn, input) {
    const ret = wasm.__wbindgen_add_to_stack_pointer(-16);
    try {
      const ptr = wasm.__wbindgen_malloc(input.length);
      new Uint8Array(wasm.memory.buffer).set(input, ptr);
      wasm[fn](ret, ptr, input.length);
      const [outPtr, outLen, errIdx, failed] = new Int32Array(wasm.memory.buffer, ret, 4);
      if (fn === "decompress" && failed) {
        const message = strings[errIdx];
        strings.length = 0;
        throw new Error(`MalformedMessage: corrupt LZ4 block: ${message}`);
      }
      const out = new Uint8Array(wasm.memory.buffer, outPtr, outLen).slice();
      wasm.__wbindgen_free(outPtr, outLen);
      return out;
    } finally {
      wasm.__wbindgen_add_to_stack_pointer(16);
    }
  };
}

function lz4Compress(data) {
  return lz4("compress", data);
}

/** Decompress a size-prefixed block whose prefix Python already checked against its limit; re-checked here. */
function lz4Decompress(block, expectedSize) {
  if (block.length < 4) throw new Error("MalformedMessage: LZ4 block shorter than its size prefix");
  const declared = new DataView(block.buffer, block.byteOffset, 4).getUint32(0, true);
  if (declared !== expectedSize) throw new Error(`MalformedMessage: LZ4 block declares ${declared} bytes, expected ${expectedSize}`);
  return lz4("decompress", block);
}

// Byte shuffle --------------------------------------------------------------------------

function shuffle(raw, n) {
  const out = new Uint8Array(4 * n);
  for (let p = 0; p < 4; p++) {
    const base = p * n;
    for (let i = 0; i < n; i++) out[base + i] = raw[4 * i + p];
  }
  return out;
}

function unshuffle(data, n) {
  const out = new Uint8Array(4 * n);
  for (let p = 0; p < 4; p++) {
    const base = p * n;
    for (let i = 0; i < n; i++) out[4 * i + p] = data[base + i];
  }
  return out;
}

// Quantization --------------------------------------------------------------------------

const F16_SLACK = 1.118; // quantize.py's _F16_SLACK
const f32 = Math.fround;
const f16 = Math.f16round;
const bits32 = new Float32Array(1);
const word32 = new Uint32Array(bits32.buffer);
const bits16 = new Float16Array(1);
const word16 = new Uint16Array(bits16.buffer);

/** numpy.nextafter for one float32 / float16 value `x` toward +Infinity (up) or -Infinity. */
function nextAfter(x, up, values, words, signBit) {
  if (Number.isNaN(x) || x === (up ? Infinity : -Infinity)) return x;
  if (x === 0) {
    words[0] = up ? 1 : signBit | 1;
    return values[0];
  }
  values[0] = x;
  words[0] += (x > 0) === up ? 1 : -1;
  return values[0];
}
const nextAfter32 = (x, up) => nextAfter(x, up, bits32, word32, 0x80000000);
const nextAfter16 = (x, up) => nextAfter(x, up, bits16, word16, 0x8000);

// Round half to even, like numpy.rint: adding and taking away 1.5 × 2^52 leaves a double
// with no fraction bits, rounded by the FPU's default mode (to nearest, ties to even).
// Exact for |v| < 2^51; codes are at most 255.
const ROUND = 6755399441055744;
const rintHalfEven = (v) => v + ROUND - ROUND;

/** quantize.py's _params: float16 parameters when every block allows them, else float32. */
function chooseParams(mins, maxs, levels) {
  const nb = mins.length;
  const ideal = new Float64Array(nb);
  const scale32 = new Float32Array(nb);
  const off16 = new Float16Array(nb);
  const scale16 = new Float16Array(nb);
  let useF16 = true;
  for (let b = 0; b < nb; b++) {
    const lo = mins[b];
    const hi = maxs[b];
    ideal[b] = (hi - lo) / levels;
    let s = f32(ideal[b]);
    if (lo + levels * s < hi) s = nextAfter32(s, true);
    if (!Number.isFinite(s)) throw new Error("InvalidTensor: a block's range exceeds float32");
    scale32[b] = s;
    let o = f16(lo);
    if (o > lo) o = nextAfter16(o, false);
    let s16 = f16((hi - o) / levels);
    if (o + levels * s16 < hi) s16 = nextAfter16(s16, true);
    off16[b] = o;
    scale16[b] = s16;
    if (
      !Number.isFinite(o) ||
      !Number.isFinite(s16) ||
      !(s16 <= F16_SLACK * ideal[b]) ||
      (ideal[b] === 0 && o !== lo)
    ) {
      useF16 = false;
    }
  }
  if (useF16) return { pdtype: 1, offsets: off16, scales: scale16 };
  return { pdtype: 2, offsets: mins, scales: scale32 };
}

/**
 * Minima and maxima of `x` over consecutive runs of `size` values (the last may be shorter); throws on NaN/infinity.
 * Of equal values the later one wins, as in numpy's minimum/maximum (they return the second operand on a tie):
 * that decides whether a zero offset is +0 or -0, which is in the container's bytes.
 */
function runMinMax(x, size) {
  const nb = Math.ceil(x.length / size);
  const mins = new Float32Array(nb);
  const maxs = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    const end = Math.min(x.length, (b + 1) * size);
    let lo = x[b * size];
    let hi = lo;
    let finite = true;
    for (let i = b * size; i < end; i++) {
      const v = x[i];
      if (v <= lo) lo = v;
      if (v >= hi) hi = v;
      if (v - v !== 0) finite = false;
    }
    if (!finite) throw new Error("InvalidTensor: lossy levels need finite values (NaN or infinity found)");
    mins[b] = lo;
    maxs[b] = hi;
  }
  return { mins, maxs };
}

// A quantized level's per-tensor plan: ruvector_edge/compression/blocking.py has the rules and why;
// only exact or element-wise IEEE operations, so this reaches numpy's plan bit for bit.
const SPREAD = 4;
const MAX_BLOCK = 4096;
const OUTLIER_SHARE = 256; // container.py's OUTLIER_SHARE
/** blocking.py's RULES, by the level's steps: the predicted error aimed for, the smallest block (cell), outliers per cell. */
const RULES = new Map([
  [255, { levels: 255, target: 0.0095, cell: 128, perCell: 8 }],
  [15, { levels: 15, target: 0.0975, cell: 16, perCell: 2 }],
]);
const exponentBits = new DataView(new ArrayBuffer(8));

/** math.frexp(m)[1] for a positive finite double: m = f × 2^e with ½ ≤ f < 1. */
function frexpExponent(m) {
  exponentBits.setFloat64(0, m);
  return ((exponentBits.getUint32(0) >>> 20) & 0x7ff) - 1022;
}

/** blocking.py's _outliers: the outliers, `values` (x with them replaced) and the cells' extremes after that. */
function takeOutliers(x, cellMins, cellMaxs, cell, perCell) {
  const nc = cellMins.length;
  const index = [];
  const value = [];
  const mins = cellMins.slice();
  const maxs = cellMaxs.slice();
  if (nc < 2) return { index, value, values: x, mins, maxs };
  const range = (c) => cellMaxs[c] - cellMins[c];
  const cap = Math.floor(x.length / OUTLIER_SHARE);
  let values = x;
  let total = 0;
  for (let c = 0; c < nc; c++) {
    // -1: no cell there. The wider neighbour, or the wider cell two away when that one is narrower.
    const left = c > 0 ? range(c - 1) : -1;
    const right = c < nc - 1 ? range(c + 1) : -1;
    const left2 = c > 1 ? range(c - 2) : -1;
    const right2 = c < nc - 2 ? range(c + 2) : -1;
    const near = Math.max(left, right);
    const far = Math.max(left2, right2);
    const useFar = far >= 0 && far < near;
    const nb = useFar ? (left2 >= right2 ? c - 2 : c + 2) : left >= right ? c - 1 : c + 1;
    if (!(range(c) > SPREAD * (useFar ? far : near))) continue;
    const mid = (cellMins[nb] + cellMaxs[nb]) / 2 + 0.0;
    const half = (SPREAD / 2) * range(nb);
    const end = Math.min(x.length, (c + 1) * cell);
    const hits = [];
    for (let i = c * cell; i < end; i++) if (x[i] < mid - half || x[i] > mid + half) hits.push(i);
    const count = hits.length > perCell ? 0 : hits.length;
    total += count;
    if (total > cap) break;
    if (count === 0) continue;
    if (values === x) values = x.slice();
    const fill = f32(mid);
    for (const i of hits) {
      index.push(i);
      value.push(x[i]);
      values[i] = fill;
    }
    let lo = values[c * cell];
    let hi = lo;
    for (let i = c * cell; i < end; i++) {
      if (values[i] <= lo) lo = values[i]; // ties: the later value, as runMinMax
      if (values[i] >= hi) hi = values[i];
    }
    mins[c] = lo;
    maxs[c] = hi;
  }
  return { index, value, values, mins, maxs };
}

/** blocking.py's plan: block size, the values to quantize, their blocks' extremes, the outliers. */
function plan(x, { levels, target, cell, perCell }) {
  const n = x.length;
  if (n === 0) return { block: cell, values: x, mins: new Float32Array(0), maxs: new Float32Array(0), index: [], value: [] };
  const cells = runMinMax(x, cell);
  let m = 0;
  for (let c = 0; c < cells.mins.length; c++) m = Math.max(m, Math.abs(cells.mins[c]), Math.abs(cells.maxs[c]));
  const p = m === 0 ? 1 : 2 ** Math.min(127, 8 - frexpExponent(m));
  const p32 = f32(p);
  let energy = 0;
  for (let i = 0; i < n; i++) {
    const w = f32(x[i] * p32);
    energy += rintHalfEven(f32(w * w));
  }
  const { index, value, values, ...extremes } = takeOutliers(x, cells.mins, cells.maxs, cell, perCell);
  let { mins, maxs } = extremes;
  const budget = 12 * levels * levels * target * target * energy;
  const nc = mins.length;
  const cellSteps = new Float64Array(nc);
  for (let c = 0; c < nc; c++) cellSteps[c] = (maxs[c] - mins[c]) * levels;
  let best = { block: cell, mins, maxs };
  for (let block = cell; block <= MAX_BLOCK; block *= 2) {
    if (block > cell) {
      const half = Math.ceil(mins.length / 2);
      const lo = new Float32Array(half);
      const hi = new Float32Array(half);
      for (let b = 0; b < half; b++) {
        const j = Math.min(2 * b + 1, mins.length - 1);
        lo[b] = mins[j] <= mins[2 * b] ? mins[j] : mins[2 * b]; // ties: the later cell, as numpy.minimum
        hi[b] = maxs[j] >= maxs[2 * b] ? maxs[j] : maxs[2 * b];
      }
      mins = lo;
      maxs = hi;
    }
    // A cell whose range is under the block's step rounds as one cluster: its values count three times.
    const per = block / cell;
    let spent = 0;
    for (let b = 0; b < mins.length; b++) {
      const range = maxs[b] - mins[b];
      let weight = 0;
      for (let c = b * per; c < Math.min(nc, (b + 1) * per); c++) {
        const size = c === nc - 1 ? n - (nc - 1) * cell : cell;
        weight += cellSteps[c] < range ? 3 * size : size;
      }
      const r = range * p;
      spent += weight * rintHalfEven(r * r);
    }
    if (spent > budget) break;
    best = { block, mins, maxs };
    if (mins.length === 1) break;
  }
  return { ...best, values, index, value };
}

/**
 * Quantize n float32 values (packed bytes) in blocks of `block` (0: the level's plan) to codes 0..levels.
 * Returns one Uint8Array: u32 LE header [param dtype, block size, then the lengths of params,
 * plain, high, low, outlier indices, outlier values], then those parts: params (offsets,
 * scales), the plain code stream (nibbles for 15 levels, bytes for 255), for 255 levels the
 * split streams, and the outliers (u32 indices, float32 values).
 */
function quantize(raw, n, block, levels) {
  if (raw.byteLength !== 4 * n) throw new Error(`InvalidTensor: ${raw.byteLength} bytes are not ${n} float32 values`);
  const input = raw.byteOffset % 4 === 0 ? new Float32Array(raw.buffer, raw.byteOffset, n) : new Float32Array(raw.slice().buffer);
  let x = input;
  let mins;
  let maxs;
  let outliers = { index: [], value: [] };
  if (block === 0) {
    const chosen = plan(input, RULES.get(levels));
    ({ block, mins, maxs } = chosen);
    x = chosen.values;
    outliers = chosen;
  } else {
    ({ mins, maxs } = runMinMax(input, block));
  }
  const nb = mins.length;
  const { pdtype, offsets, scales } = chooseParams(mins, maxs, levels);
  const codes = new Uint8Array(Math.ceil(n / 16) * 16);
  for (let b = 0; b < nb; b++) {
    const off = f32(offsets[b]);
    const sc = f32(scales[b]);
    const inv = sc > 0 ? f32(1 / sc) : 0;
    const end = Math.min(n, (b + 1) * block);
    if (inv === Infinity) {
      // A subnormal scale has no float32 reciprocal: divide, as quantize.py does for such blocks.
      for (let i = b * block; i < end; i++) codes[i] = rintHalfEven(f32(f32(x[i] - off) / sc));
    } else {
      for (let i = b * block; i < end; i++) codes[i] = rintHalfEven(f32(f32(x[i] - off) * inv));
    }
  }
  const params = new Uint8Array(offsets.byteLength + scales.byteLength);
  params.set(new Uint8Array(offsets.buffer, offsets.byteOffset, offsets.byteLength), 0);
  params.set(new Uint8Array(scales.buffer, scales.byteOffset, scales.byteLength), offsets.byteLength);
  let plain;
  let high = new Uint8Array(0);
  let low = new Uint8Array(0);
  if (levels === 15) {
    plain = new Uint8Array(Math.ceil(n / 2));
    for (let j = 0; j < plain.length; j++) plain[j] = codes[2 * j] | (codes[2 * j + 1] << 4);
  } else {
    plain = codes.subarray(0, n);
    const quads = Math.ceil(n / 4);
    high = new Uint8Array(quads);
    low = new Uint8Array(3 * quads);
    for (let j = 0; j < quads; j++) {
      const c0 = codes[4 * j], c1 = codes[4 * j + 1], c2 = codes[4 * j + 2], c3 = codes[4 * j + 3];
      high[j] = (c0 >> 6) | ((c1 >> 6) << 2) | ((c2 >> 6) << 4) | ((c3 >> 6) << 6);
      const l = (c0 & 63) | ((c1 & 63) << 6) | ((c2 & 63) << 12) | ((c3 & 63) << 18);
      low[3 * j] = l & 255;
      low[3 * j + 1] = (l >> 8) & 255;
      low[3 * j + 2] = (l >> 16) & 255;
    }
  }
  const outlierIndex = Uint32Array.from(outliers.index);
  const outlierValue = Float32Array.from(outliers.value);
  const parts = [params, plain, high, low, new Uint8Array(outlierIndex.buffer), new Uint8Array(outlierValue.buffer)];
  const out = new Uint8Array(32 + parts.reduce((s, p) => s + p.length, 0));
  const head = new DataView(out.buffer);
  head.setUint32(0, pdtype, true);
  head.setUint32(4, block, true);
  let at = 32;
  parts.forEach((p, k) => {
    head.setUint32(8 + 4 * k, p.length, true);
    out.set(p, at);
    at += p.length;
  });
  return out;
}

/**
 * Packed float32 values from parameters (offsets then scales, float16 when pdtype is 1)
 * and codes: nibbles for 15 levels; bytes, or (when `low` is non-empty) high + low streams, for 255.
 */
function dequantize(params, pdtype, n, block, levels, codes, low) {
  const nb = Math.ceil(n / block);
  const size = pdtype === 1 ? 2 : 4;
  if (params.length !== 2 * nb * size) throw new Error("MalformedMessage: quantization parameters have the wrong length");
  const copy = params.slice();
  const Params = pdtype === 1 ? Float16Array : Float32Array;
  const offsets = new Params(copy.buffer, 0, nb);
  const scales = new Params(copy.buffer, nb * size, nb);
  for (let b = 0; b < nb; b++) {
    if (!Number.isFinite(offsets[b]) || !Number.isFinite(scales[b]) || scales[b] < 0) {
      throw new Error("MalformedMessage: quantization parameters must be finite with non-negative scales");
    }
  }
  const code = new Uint8Array(n);
  if (levels === 15) {
    if (codes.length !== Math.ceil(n / 2)) throw new Error("MalformedMessage: Quantized4 code stream has the wrong length");
    for (let i = 0; i < n; i++) code[i] = i & 1 ? codes[i >> 1] >> 4 : codes[i >> 1] & 15;
  } else if (!low || low.length === 0) {
    if (codes.length !== n) throw new Error("MalformedMessage: Quantized8 code stream has the wrong length");
    code.set(codes);
  } else {
    const quads = Math.ceil(n / 4);
    if (codes.length !== quads || low.length !== 3 * quads) throw new Error("MalformedMessage: split Quantized8 streams have the wrong length");
    for (let j = 0; j < quads; j++) {
      const l = low[3 * j] | (low[3 * j + 1] << 8) | (low[3 * j + 2] << 16);
      const h = codes[j];
      for (let k = 0; k < 4 && 4 * j + k < n; k++) code[4 * j + k] = ((l >> (6 * k)) & 63) | (((h >> (2 * k)) & 3) << 6);
    }
  }
  const out = new Float32Array(n);
  for (let b = 0; b < nb; b++) {
    const off = f32(offsets[b]);
    const sc = f32(scales[b]);
    const end = Math.min(n, (b + 1) * block);
    for (let i = b * block; i < end; i++) out[i] = f32(f32(code[i] * sc) + off);
  }
  return new Uint8Array(out.buffer);
}

/** Packed little-endian float32 bytes of any JS typed array or array of numbers. */
function float32Bytes(values) {
  const arr = values instanceof Float32Array ? values : Float32Array.from(values);
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength).slice();
}

globalThis.edgeCompression = { lz4Ready, lz4Compress, lz4Decompress, shuffle, unshuffle, quantize, dequantize, float32Bytes };
