// Task sandbox bridge for the Pyodide worker, exposed as globalThis.edgeSandbox:
// runs a task-ABI WebAssembly module (see py/ruvector_edge/tasks/sandbox.py) in
// a dedicated Worker (web/sandbox-worker.js) that has no access to anything but
// the bytes it is handed.
//
// Python (ruvector_edge.tasks.browser_sandbox) has already checked the ABI and
// capped the memory maximum at the budget; here the module is compiled once
// (cached by the key Python gives, the SHA-256 of the capped bytes) and refused
// if it imports anything. The wall-clock budget is enforced by terminating the
// worker: a wasm loop cannot be interrupted any other way. A fresh worker is
// then started for the next task; otherwise one warm worker is reused, since
// starting one costs far more than a trivial task.
//
// Runs are serialised (one worker, one task at a time), as natively.

const MODULE_CACHE = 64;
const modules = new Map(); // key -> WebAssembly.Module, in least-recently-used order

let warm = null; // {worker, ready: Promise}
let queue = Promise.resolve();
const stats = { workersStarted: 0, workersTerminated: 0 };

const message = (err) => String(err && err.message ? err.message : err).slice(0, 200);

function startWorker() {
  const worker = new Worker(new URL("../sandbox-worker.js", import.meta.url), { type: "module", name: "edge-sandbox" });
  stats.workersStarted++;
  const ready = new Promise((resolve, reject) => {
    worker.onmessage = (e) => (e.data && e.data.ready ? resolve() : reject(new Error("sandbox worker spoke before ready")));
    worker.onerror = (e) => reject(new Error(`sandbox worker failed to start: ${e.message || "error"}`));
  });
  return { worker, ready };
}

function stopWorker(w) {
  w.worker.terminate();
  stats.workersTerminated++;
  if (warm === w) warm = null;
}

/** The compiled module for `key`, compiling `bytes` if it is new; {rejected} for invalid or importing modules. */
async function compiled(key, bytes) {
  let module = modules.get(key);
  if (module) {
    modules.delete(key);
    modules.set(key, module);
    return { module };
  }
  if (!bytes) return { rejected: `module ${key} is not cached and no bytes were given` };
  try {
    module = await WebAssembly.compile(bytes);
  } catch (err) {
    return { rejected: message(err) };
  }
  const imports = WebAssembly.Module.imports(module);
  if (imports.length) return { rejected: `module imports ${imports[0].module}.${imports[0].name}: task modules get no host imports` };
  modules.set(key, module);
  while (modules.size > MODULE_CACHE) modules.delete(modules.keys().next().value);
  return { module };
}

/** One run in the warm worker (started if needed; its start-up is not charged to the task's time budget). */
async function runInWorker(module, entrypoint, input, timeoutMs, maxOutput, fuelExport, startExport) {
  const w = (warm ??= startWorker());
  try {
    await w.ready;
  } catch (err) {
    stopWorker(w);
    return { status: "Error", output: null, memoryPeak: 0, execUs: 0, detail: message(err) };
  }
  return new Promise((resolve) => {
    const t0 = performance.now();
    const finish = (answer) => {
      clearTimeout(timer);
      w.worker.onmessage = w.worker.onerror = null;
      resolve(answer);
    };
    const timer = setTimeout(() => {
      stopWorker(w);
      warm = startWorker(); // the next task finds a worker already starting
      finish({
        status: "Timeout",
        output: null,
        memoryPeak: 0,
        execUs: Math.round((performance.now() - t0) * 1000),
        detail: `wall-clock budget of ${timeoutMs} ms exceeded: worker terminated, memory peak unknown`,
      });
    }, timeoutMs);
    w.worker.onmessage = (e) => finish(e.data);
    w.worker.onerror = (e) => {
      e.preventDefault();
      stopWorker(w);
      finish({ status: "Error", output: null, memoryPeak: 0, execUs: 0, detail: `sandbox worker error: ${e.message || "unknown"}` });
    };
    w.worker.postMessage({ module, entrypoint, input, maxOutput, fuelExport, startExport }, [input.buffer]);
  });
}

/**
 * Run `entrypoint` of the module `key` (compiled from `bytes` when not cached) on `input`; `fuelExport`
 * names the metered module's fuel counter and `startExport` its start function (or they are null).
 * Resolves to {status, output: Uint8Array|null, memoryPeak, execUs, detail, fuelLeft, instantiated} (the last two
 * only from the worker, null where unknown) or {rejected}.
 */
function run(key, bytes, entrypoint, input, timeoutMs, maxOutput, fuelExport = null, startExport = null) {
  // Taken now: Python sent no bytes because `has(key)` was true, and runs queued ahead may evict the key.
  const cached = modules.get(key);
  const job = queue.then(async () => {
    const { module, rejected } = cached ? { module: cached } : await compiled(key, bytes);
    if (rejected) return { rejected };
    return runInWorker(module, entrypoint, input, timeoutMs, maxOutput, fuelExport ?? null, startExport ?? null);
  });
  queue = job.catch(() => {});
  return job;
}

/** Terminate the warm worker (the next run starts a cold one) and, with `modules`, forget compiled modules. */
function reset({ dropModules = false } = {}) {
  if (warm) stopWorker(warm);
  if (dropModules) modules.clear();
}

/**
 * Benchmark baselines in this worker, microseconds per call: the entrypoint called as plain JS on one
 * instance with the input copied in once (`directUs`), and alloc + copy + call on a fresh instance per
 * call, without a worker (`instanceUs`).
 */
async function plainJsBaseline(bytes, entrypoint, input, count) {
  const module = await WebAssembly.compile(bytes);
  const output = (ex, packed) => {
    const outPtr = Number(BigInt.asUintN(64, packed) >> 32n);
    return new Uint8Array(ex.memory.buffer.slice(outPtr, outPtr + Number(BigInt.asUintN(64, packed) & 0xffffffffn)));
  };
  const copyIn = (ex) => {
    const ptr = ex.alloc(input.length) >>> 0;
    new Uint8Array(ex.memory.buffer, ptr, input.length).set(input);
    return ptr;
  };
  const once = new WebAssembly.Instance(module, {}).exports;
  const ptr = copyIn(once);
  let t0 = performance.now();
  for (let i = 0; i < count; i++) output(once, once[entrypoint](ptr, input.length));
  const directUs = ((performance.now() - t0) * 1000) / count;
  t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const ex = new WebAssembly.Instance(module, {}).exports;
    output(ex, ex[entrypoint](copyIn(ex), input.length));
  }
  const instanceUs = ((performance.now() - t0) * 1000) / count;
  return { directUs, instanceUs, output: output(once, once[entrypoint](ptr, input.length)) };
}

globalThis.edgeSandbox = { has: (key) => modules.has(key), run, reset, stats, plainJsBaseline };
