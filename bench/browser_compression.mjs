// Browser benchmark: TensorCodec in the Pyodide worker (LZ4 from npm lz4-wasm, the
// JS quantizer in bridges/lz4.js, Pyodide's zlib) beside the native codec (liblz4,
// numpy, threaded zlib) on the same bytes, in one run. Corpora, seeded and built
// the same way in both runtimes from Python's `random` (so the bytes are
// identical): `gaussian` 1M float32 N(0,1), `laplace` 1M Laplace(0, 1), `outliers` the
// same with 48 values 20-100 standard deviations out, `lowrank` a 1024 × 1024 product of
// two random rank-16 factors plus N(0, 0.1²) noise, `embeddings` 10K × 384 unit vectors.
// One JSON line per (runtime, corpus, level): ratio, relative RMS error, MB/s of
// float32 input for compress and decompress (min and median of --repeats), and a
// digest of the decoded values (equal digests: both runtimes decode the same bits).
// Needs a built app (bash scripts/build-web.sh). Loopback only; every loop is bounded.
//   node bench/browser_compression.mjs [--repeats 5] [--seed 5] [--port 4411]
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { arg, emit, openApp, pyWithinTenMinutes, withRelayAndBrowser } from "./browser_common.mjs";

const REPEATS = arg("repeats", 5);
const SEED = arg("seed", 5);
const PORT = arg("port", 4411);
const BASE = `http://127.0.0.1:${PORT}`;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PYTHON = process.env.PYTHON || `${ROOT}.venv/bin/python`;

// The same Python runs natively and in the worker; only the tensor type handed to the codec differs.
const CODE = (runtime) => `
import hashlib, json, math, random, statistics, time
from array import array
from ruvector_edge.compression import CompressionLevel, Float32Tensor, Limits, TensorCodec

REPEATS, SEED = ${REPEATS}, ${SEED}
rng = random.Random(SEED)
gaussian = array("f", [rng.gauss(0.0, 1.0) for _ in range(1_000_000)])
emb = array("f")
for _ in range(10_000):
    row = [rng.gauss(0.0, 1.0) for _ in range(384)]
    norm = math.sqrt(sum(x * x for x in row))
    emb.extend([x / norm for x in row])
laplace = array("f", [rng.expovariate(1.0) * rng.choice((-1.0, 1.0)) for _ in range(1_000_000)])
outliers = array("f", laplace)
std = math.sqrt(math.fsum(x * x for x in laplace) / len(laplace))
for i in rng.sample(range(len(outliers)), 48):
    outliers[i] = rng.choice((-1.0, 1.0)) * rng.uniform(20, 100) * std
left = [[rng.gauss(0.0, 1.0) / 4 for _ in range(16)] for _ in range(1024)]
right = [[rng.gauss(0.0, 1.0) for _ in range(1024)] for _ in range(16)]
lowrank = array("f")
for row in left:
    acc = [rng.gauss(0.0, 0.1) for _ in range(1024)]
    for a, col in zip(row, right):
        acc = [s + a * v for s, v in zip(acc, col)]
    lowrank.extend(acc)
corpora = {"gaussian": (gaussian.tobytes(), (1_000_000,)), "laplace": (laplace.tobytes(), (1_000_000,)),
           "outliers": (outliers.tobytes(), (1_000_000,)), "lowrank": (lowrank.tobytes(), (1024, 1024)),
           "embeddings": (emb.tobytes(), (10_000, 384))}
limits = Limits(max_message_bytes=256 << 20, max_decompressed_bytes=256 << 20)

def tensor(raw, shape):
    if ${JSON.stringify(runtime)} == "native":
        import numpy as np
        return np.frombuffer(raw, "<f4").reshape(shape)
    return Float32Tensor(raw, shape)

def values(t):
    return t.tobytes() if hasattr(t, "tobytes") else t.data

def timed(fn):
    out = fn()
    samples = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return out, samples

def speeds(nbytes, samples):
    return {"min_mb_s": round(nbytes / min(samples) / 1e6, 1), "median_mb_s": round(nbytes / statistics.median(samples) / 1e6, 1)}

def rel_rms(a, b):
    xa, xb = memoryview(a).cast("f"), memoryview(b).cast("f")
    err = math.fsum((y - x) ** 2 for x, y in zip(xa, xb))
    return math.sqrt(err / math.fsum(x * x for x in xa))

lines = []
for name, (raw, shape) in corpora.items():
    t = tensor(raw, shape)
    input_digest = hashlib.sha256(raw).hexdigest()[:16]
    for level in CompressionLevel:
        codec = TensorCodec(level, limits=limits)
        blob, enc = timed(lambda: codec.compress_tensor(t))
        back, dec = timed(lambda: codec.decompress_tensor(blob))
        out = values(back)
        lines.append({"corpus": name, "level": level.name, "codec": codec.codec.name, "input_sha256_16": input_digest,
                      "block_size": int.from_bytes(blob[12:16], "little") or None,
                      "ratio": round(len(raw) / len(blob), 3),
                      "rel_rms_error": round(rel_rms(raw, out), 5) if level.lossy else 0.0,
                      "decoded_sha256_16": hashlib.sha256(out).hexdigest()[:16],
                      "compress": speeds(len(raw), enc), "decompress": speeds(len(raw), dec)})
json.dumps(lines)
`;

function nativeLines() {
  const out = execFileSync(PYTHON, ["-c", `${CODE("native")}\nprint(json.dumps(lines))`], {
    env: { ...process.env, PYTHONPATH: `${ROOT}py` },
    maxBuffer: 64 << 20,
    timeout: 600_000,
  });
  return JSON.parse(out.toString());
}

const native = nativeLines();
await withRelayAndBrowser(PORT, async (browser) => {
  const page = await openApp(await browser.newContext(), BASE + "/");
  const inBrowser = JSON.parse(await pyWithinTenMinutes(page, CODE("browser")));
  const key = (l) => `${l.corpus}/${l.level}`;
  const nativeBy = new Map(native.map((l) => [key(l), l]));
  for (const l of inBrowser) {
    const n = nativeBy.get(key(l));
    emit({ bench: "browser_compression", runtime: "native", ...n });
    emit({ bench: "browser_compression", runtime: "browser", ...l,
      same_input_as_native: l.input_sha256_16 === n.input_sha256_16,
      same_decoded_values_as_native: l.decoded_sha256_16 === n.decoded_sha256_16,
      compress_vs_native: +(l.compress.min_mb_s / n.compress.min_mb_s).toFixed(3),
      decompress_vs_native: +(l.decompress.min_mb_s / n.decompress.min_mb_s).toFixed(3) });
  }
});
