// Browser benchmark (issue 7): what a task costs in the browser sandbox — a
// dedicated Web Worker per web/bridges/sandbox.js, driven by BrowserSandbox in
// the Pyodide worker — side by side with calling the same export as plain JS in
// that worker (instantiate once, call directly; and a fresh instance per call),
// and with NativeSandbox (wasmtime) on this machine in the same run. The module
// is bench/tasks.py's `sum`, compiled natively. Cold = the warm worker is
// terminated before each task (a fresh worker starts); cold+compile also drops
// the compiled module. Prints JSON lines. Needs a built app (bash scripts/build-web.sh).
//   node bench/browser_sandbox.mjs [--count 300] [--cold 20] [--port 4186]
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { arg, emit, openApp, pyWithinTenMinutes, withRelayAndBrowser } from "./browser_common.mjs";

const COUNT = arg("count", 300);
const COLD = arg("cold", 20);
const PORT = arg("port", 4186);
const SIZES = [16, 65536];
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PYTHON = process.env.PYTHON || `${ROOT}.venv/bin/python`;

// Native side, in this run: the module's bytes and NativeSandbox's figures (bench/tasks.py's helpers).
const NATIVE = `
import json, sys
sys.path.insert(0, "bench")
import wasmtime
from tasks import BUDGETS, SUM_WAT, per_call_us, py_sum
from ruvector_edge.tasks import NativeSandbox
module = wasmtime.wat2wasm(SUM_WAT)
out = {"module": module.hex(), "sizes": {}}
with NativeSandbox() as box:
    for size in ${JSON.stringify(SIZES)}:
        data = bytes(range(256)) * (size // 256) if size >= 256 else bytes(range(size))
        result = box.run(module, "sum", data, BUDGETS)
        assert result.output == py_sum(data)
        out["sizes"][size] = {"native_sandbox_us": per_call_us(lambda: box.run(module, "sum", data, BUDGETS), ${COUNT}),
                              "fuel_used": result.fuel_used, "output": result.output.hex()}
def cold():
    with NativeSandbox(module_cache=0) as fresh:
        fresh.run(module, "sum", b"abc", BUDGETS)
out["native_cold_us"] = per_call_us(cold, ${COLD}, 1)
print(json.dumps(out))
`;
const native = spawnSync(PYTHON, ["-c", NATIVE], { cwd: ROOT, env: { ...process.env, PYTHONPATH: `${ROOT}py` }, encoding: "utf8", timeout: 300_000 });
if (native.status !== 0) throw new Error(`native side failed: ${native.stderr}`);
const nat = JSON.parse(native.stdout);

// Browser side, in the Pyodide worker. Times are time.perf_counter() around each awaited call, best of 3 rounds.
const CODE = `
import json, time, js
from ruvector_edge.tasks import Budgets
from ruvector_edge.tasks.browser_sandbox import BrowserSandbox
from ruvector_edge.tasks.wasm_fuel import instrument
module = bytes.fromhex(${JSON.stringify(nat.module)})
budgets = Budgets(fuel_limit=10_000_000, memory_mb=4, timeout_ms=5_000)  # bench/tasks.py's BUDGETS
box = BrowserSandbox()
bridge = js.edgeSandbox

def u8(b):
    a = js.Uint8Array.new(len(b))
    if b:
        a.assign(b)
    return a

async def per_task_us(data, count, before=None, rounds=3):
    best = float("inf")
    for _ in range(rounds):
        total = 0.0
        for _ in range(count):
            if before:
                before()
            t = time.perf_counter()
            result = await box.run_async(module, "sum", data, budgets)
            total += time.perf_counter() - t
        best = min(best, total)
    return best / count * 1e6, result

out = {"sizes": {}}
for size in ${JSON.stringify(SIZES)}:
    data = bytes(range(256)) * (size // 256) if size >= 256 else bytes(range(size))
    await box.run_async(module, "sum", data, budgets)  # warm: worker started, module compiled
    warm_us, result = await per_task_us(data, ${COUNT})
    plain = await bridge.plainJsBaseline(u8(module), "sum", u8(data), ${COUNT})
    metered = await bridge.plainJsBaseline(u8(instrument(module, 10**12)[0].module), "sum", u8(data), ${COUNT})
    out["sizes"][size] = {"warm_us": warm_us, "plain_direct_us": plain.directUs, "plain_instance_us": plain.instanceUs,
                          "metered_direct_us": metered.directUs, "output": result.output.hex(), "fuel_used": result.fuel_used,
                          "same_output_as_plain_js": bytes(plain.output.to_py()) == result.output}
small = bytes(range(16))
started = bridge.stats.workersStarted
out["cold_us"] = (await per_task_us(small, ${COLD}, before=lambda: bridge.reset(), rounds=1))[0]
out["cold_compile_us"] = (await per_task_us(small, ${COLD}, before=lambda: bridge.reset(dropModules=True), rounds=1))[0]
out["workers_started"] = bridge.stats.workersStarted - started
json.dumps(out)
`;

await withRelayAndBrowser(PORT, async (browser) => {
  const page = await openApp(await browser.newContext(), `http://127.0.0.1:${PORT}/`);
  const r = JSON.parse(await pyWithinTenMinutes(page, CODE));
  const us = (x) => +x.toFixed(1);
  for (const size of SIZES) {
    const b = r.sizes[size];
    const n = nat.sizes[size];
    emit({
      bench: "browser_sandbox_task", input_bytes: size, tasks: COUNT,
      browser_warm_worker_us_per_task: us(b.warm_us),
      plain_js_direct_us_per_call: us(b.plain_direct_us),
      plain_js_fresh_instance_us_per_call: us(b.plain_instance_us),
      plain_js_metered_module_us_per_call: us(b.metered_direct_us),
      native_sandbox_us_per_task: us(n.native_sandbox_us),
      ratio_browser_to_plain_js: us(b.warm_us / b.plain_direct_us),
      ratio_browser_to_native: us(b.warm_us / n.native_sandbox_us),
      same_output_as_native: b.output === n.output, same_output_as_plain_js: b.same_output_as_plain_js,
      fuel_used_browser: b.fuel_used, fuel_used_native: n.fuel_used,
    });
  }
  emit({
    bench: "browser_sandbox_startup", tasks: COLD,
    cold_worker_us_per_task: us(r.cold_us),
    cold_worker_and_compile_us_per_task: us(r.cold_compile_us),
    warm_worker_us_per_task: us(r.sizes[SIZES[0]].warm_us),
    native_cold_start_us: us(nat.native_cold_us),
    workers_started: r.workers_started,
    note: "cold = a new dedicated worker per task (as after a Timeout); cold+compile also recompiles the module; native cold = new wasmtime engine + compile + run",
  });
});
