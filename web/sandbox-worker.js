// The task sandbox's dedicated worker (started by web/bridges/sandbox.js). It
// instantiates the module it is sent with no imports, runs the task ABI once
// (alloc, copy the input in, call the entrypoint, read (out_ptr << 32) | out_len)
// and posts back the status, the output and the memory size reached. Each run
// gets a fresh instance; the worker itself is reused until the bridge
// terminates it for overrunning its time budget.

self.onmessage = (event) => {
  const { module, entrypoint, input, maxOutput } = event.data;
  const t0 = performance.now();
  let memory = null;
  const done = (status, detail, output = null) => {
    const memoryPeak = memory ? memory.buffer.byteLength : 0;
    const execUs = Math.round((performance.now() - t0) * 1000);
    self.postMessage({ status, output, memoryPeak, execUs, detail }, output ? [output.buffer] : []);
  };
  const why = (err) => `${err && err.name ? err.name + ": " : ""}${err && err.message ? err.message : err}`.slice(0, 200);

  let exports;
  try {
    exports = new WebAssembly.Instance(module, {}).exports;
  } catch (err) {
    // A RangeError here is the engine failing to allocate the (already budget-checked) initial memory.
    return done(err instanceof RangeError ? "OutOfMemory" : "Error", why(err));
  }
  try {
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
    // Traps (RuntimeError) and stack exhaustion (RangeError) alike: the module failed, as a wasmtime trap is Error.
    return done("Error", why(err));
  }
};

self.postMessage({ ready: true });
