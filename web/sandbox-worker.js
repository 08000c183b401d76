// The task sandbox's dedicated worker (started by web/bridges/sandbox.js). It
// instantiates the module it is sent with no imports, runs the task ABI once
// (alloc, copy the input in, call the entrypoint, read (out_ptr << 32) | out_len)
// and posts back the status, the output, the memory size reached and, for a
// module metered by tasks/wasm_fuel.py, the fuel left in its counter (a trap
// with the counter below zero is FuelExhausted) and whether instantiation
// succeeded (a metered module's start function runs after it, so when it fails
// no fuel was used). Failures are classified as NativeSandbox classifies them:
// the same module gets the same status in both runtimes. Each run
// gets a fresh instance; the worker itself is reused until the bridge
// terminates it for overrunning its time budget.

const EXHAUSTED = -(2 ** 63); // what tasks/wasm_fuel.py's check leaves in the counter before it traps

self.onmessage = (event) => {
  const { module, entrypoint, input, maxOutput, fuelExport, startExport } = event.data;
  const t0 = performance.now();
  let memory = null;
  let exports = null;
  const fuel = () => (fuelExport && exports ? Number(exports[fuelExport].value) : null); // < 2^53: budgets are ≤ 10^15
  const done = (status, detail, output = null) => {
    const memoryPeak = memory ? memory.buffer.byteLength : 0;
    const execUs = Math.round((performance.now() - t0) * 1000);
    const answer = { status, output, memoryPeak, execUs, detail, fuelLeft: fuel(), instantiated: exports !== null };
    self.postMessage(answer, output ? [output.buffer] : []);
  };
  const why = (err) => `${err && err.name ? err.name + ": " : ""}${err && err.message ? err.message : err}`.slice(0, 200);

  try {
    exports = new WebAssembly.Instance(module, {}).exports;
  } catch (err) {
    // Only a RangeError about memory is the engine failing to allocate the (budget-checked) initial memory,
    // as wasmtime's refusal names memory. A segment out of bounds, or a trap or stack overflow (also a
    // RangeError) in an unmetered module's start function, is an Error, as a wasmtime trap is.
    return done(err instanceof RangeError && /memory/i.test(err.message) ? "OutOfMemory" : "Error", why(err));
  }
  try {
    if (startExport) exports[startExport](); // a metered module's start function, moved out of instantiation
    // Read after the start function, as natively (a trap there leaves wasmtime no instance to measure):
    // the memory peak decides whether a failed run is re-run as a memory probe, so it must match.
    memory = exports.memory;
    const ptr = exports.alloc(input.length) >>> 0;
    if (ptr + input.length > memory.buffer.byteLength) return done("Error", "alloc returned a range outside memory");
    new Uint8Array(memory.buffer, ptr, input.length).set(input);
    const packed = BigInt.asUintN(64, exports[entrypoint](ptr, input.length));
    const outPtr = Number(packed >> 32n);
    const outLen = Number(packed & 0xffffffffn);
    if (outLen > maxOutput) return done("Error", `output of ${outLen} bytes exceeds the limit`);
    if (outPtr + outLen > memory.buffer.byteLength) return done("Error", "output range outside memory");
    return done("Success", "", new Uint8Array(memory.buffer.slice(outPtr, outPtr + outLen)));
  } catch (err) {
    // The fuel counter's own trap; otherwise traps (RuntimeError) and stack exhaustion (RangeError)
    // alike: the module failed, as a wasmtime trap is Error.
    if (fuel() === EXHAUSTED) return done("FuelExhausted", "all fuel consumed");
    return done("Error", why(err));
  }
};

self.postMessage({ ready: true });
