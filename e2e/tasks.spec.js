// The browser task sandbox (issue 7): the native task tests' WAT modules, compiled
// natively with wasmtime, run in Chromium through the Pyodide worker's
// BrowserSandbox (a dedicated Web Worker per web/bridges/sandbox.js) and give the
// statuses and output hashes NativeSandbox gives; a receipt signed by a
// TaskExecutor in the browser verifies natively with verify_receipt.
import { test, expect } from "./fixtures.js";
import { nativeHelper, openReady, py } from "./helpers.js";

/** Start e2e/py/native_tasks.py; returns {ask(req) → answer, close()}. */
const nativeTasks = () => nativeHelper("native_tasks.py", { timeoutMs: 30_000, label: "native helper" });

const hex = (s) => Buffer.from(s).toString("hex");
const BUDGETS = { fuel_limit: 10 ** 15, memory_mb: 2, timeout_ms: 2000 };

/** Define `box` (a BrowserSandbox) and `run_case(...)` in the worker's Python; `modules` maps names to wasm hex. */
async function setUpSandbox(page, modules) {
  await py(page, `
import hashlib, json, js
from ruvector_edge.errors import ModuleRejected
from ruvector_edge.tasks import Budgets
from ruvector_edge.tasks.browser_sandbox import BrowserSandbox
box = BrowserSandbox()
modules = {k: bytes.fromhex(v) for k, v in json.loads(${JSON.stringify(JSON.stringify(modules))}).items()}
modules["garbage"] = b"\\x00asm garbage"
async def run_case(name, entrypoint, data_hex, budgets):
    try:
        r = await box.run_async(modules[name], entrypoint, bytes.fromhex(data_hex), Budgets(**budgets))
    except ModuleRejected as exc:
        return {"rejected": str(exc)}
    return {"status": r.status.value, "output": r.output.hex(), "output_sha256": hashlib.sha256(r.output).hexdigest(),
            "memory_peak": r.memory_peak, "fuel_used": r.fuel_used, "detail": r.detail,
            "workers_started": js.edgeSandbox.stats.workersStarted}
`);
}

/** Define `execute(...)` in the worker's Python: a TaskExecutor over `box` runs a native envelope and returns its receipt. */
async function setUpExecutor(page) {
  await py(page, `
from ruvector_edge.artifacts import ArtifactStore
from ruvector_edge.p2p import IdentityManager
from ruvector_edge.platform import default_runtime
from ruvector_edge.platform.base import Clock
from ruvector_edge.tasks import TaskEnvelope, TaskExecutor
store = ArtifactStore()
executor = TaskExecutor("browser-exec", await IdentityManager.generate(default_runtime().crypto), box, store,
                        clock=Clock(), crypto=default_runtime().crypto)
async def execute(envelope_json, requester_key_hex, module_hex, input_hex):
    store.store_artifact(bytes.fromhex(module_hex))
    store.store_artifact(bytes.fromhex(input_hex))
    receipt = await executor.execute(TaskEnvelope.from_json(envelope_json.encode()), bytes.fromhex(requester_key_hex))
    output = store.get_artifact(receipt.output_cid).hex() if receipt.output_cid else None
    return json.dumps({"receipt": receipt.to_json().decode(), "executor_key": executor.identity.ed25519_public.hex(), "output": output})
`);
}

/** The browser executor's receipt for `envelope` (from native_tasks.py's "envelope"), parsed. */
const executeInBrowser = async (page, env, module, input) =>
  JSON.parse(JSON.parse(await py(page,
    `json.dumps(await execute(${JSON.stringify(env.envelope)}, ${JSON.stringify(env.requester_key)}, ${JSON.stringify(module)}, ${JSON.stringify(input)}))`)));

const runCase = async (page, name, entrypoint, input, budgets = BUDGETS) =>
  JSON.parse(await py(page, `json.dumps(await run_case(${JSON.stringify(name)}, ${JSON.stringify(entrypoint)}, ${JSON.stringify(input)}, ${JSON.stringify(budgets)}))`));

test("the browser sandbox gives NativeSandbox's statuses and outputs for the task tests' modules", async ({ page }) => {
  test.setTimeout(90_000);
  const native = nativeTasks();
  try {
    const modules = await native.ask({ cmd: "modules" });
    expect(modules.error).toBeUndefined();
    await openReady(page);
    await setUpSandbox(page, modules);

    // A correct computation: the same output hash as wasmtime, on one warm worker.
    const computations = [
      ["sum", Buffer.from(Array.from({ length: 100 }, (_, i) => i)).toString("hex")],
      ["reverse", hex("hello")],
      ["reverse", ""],
    ];
    for (const [entrypoint, input] of computations) {
      const b = await runCase(page, "good", entrypoint, input);
      const n = await native.ask({ cmd: "run", module: modules.good, entrypoint, input, budgets: BUDGETS });
      expect(b.status).toBe("Success");
      expect(b.output_sha256).toBe(n.output_sha256);
      expect(b.fuel_used).toBe(n.fuel_used); // the rewritten module counts wasmtime's fuel units
      expect(b.detail).toBe("");
      expect(b.memory_peak).toBe(65536);
    }
    expect((await runCase(page, "good", "reverse", hex("hello"))).output).toBe(hex("olleh"));
    expect((await runCase(page, "good", "sum", "01")).workers_started).toBe(1); // the warm worker is reused

    // An infinite loop is stopped by terminating the worker; the next task gets a fresh one.
    const t0 = Date.now();
    const spin = await runCase(page, "good", "spin", "", { ...BUDGETS, timeout_ms: 300 });
    expect(spin.status).toBe("Timeout");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    const after = await runCase(page, "good", "sum", "05");
    expect(after.status).toBe("Success");
    expect(after.output).toBe("05000000");
    expect(after.workers_started).toBe(2);

    expect(spin.fuel_used).toBeNull(); // unknown once the worker is terminated, as natively

    // The statuses wasmtime gives, for the same budgets.
    const cases = [
      ["good", "spin", { ...BUDGETS, timeout_ms: 300 }],
      ["good", "spin", { ...BUDGETS, fuel_limit: 100_000, timeout_ms: 10_000 }],
      ["good", "sum", { ...BUDGETS, fuel_limit: 5 }],
      ["good", "hog", { ...BUDGETS, memory_mb: 4 }],
      ["good", "divzero", BUDGETS],
      ["good", "badout", BUDGETS],
      ["big_memory", "sum", BUDGETS],
      ["start_loop", "sum", { ...BUDGETS, fuel_limit: 50_000 }], // fuel runs out in the start function
      ["start_loop", "sum", { ...BUDGETS, timeout_ms: 300 }],
      ["recurse", "deep", BUDGETS], // stack exhaustion
      ["bad_alloc", "sum", BUDGETS], // alloc answers a range outside memory
    ];
    for (const [name, entrypoint, budgets] of cases) {
      const b = await runCase(page, name, entrypoint, "", budgets);
      const n = await native.ask({ cmd: "run", module: modules[name], entrypoint, input: "", budgets });
      expect([entrypoint, b.status]).toEqual([entrypoint, n.status]);
      expect(b.output).toBe("");
    }
    const hog = await runCase(page, "good", "hog", "", { ...BUDGETS, memory_mb: 4 });
    expect(hog.status).toBe("OutOfMemory");
    expect(hog.memory_peak).toBeLessThanOrEqual(4 << 20);
    expect(hog.memory_peak).toBeGreaterThan(3 << 20);
    expect((await runCase(page, "good", "divzero", "")).detail).toMatch(/divide by zero/);
    const exhausted = await runCase(page, "good", "spin", "", { ...BUDGETS, fuel_limit: 100_000, timeout_ms: 10_000 });
    expect([exhausted.status, exhausted.fuel_used]).toEqual(["FuelExhausted", 100_000]);

    // At every fuel limit around what the task needs, the browser's status and fuel are wasmtime's.
    const limits = Array.from({ length: 80 }, (_, i) => i + 1);
    const sweep = await native.ask({ cmd: "sweep", module: modules.good, entrypoint: "sum", input: "0102", limits });
    const browserSweep = JSON.parse(await py(page, `
out = []
for limit in ${JSON.stringify(limits)}:
    r = await run_case("good", "sum", "0102", {"fuel_limit": limit, "memory_mb": 2, "timeout_ms": 5000})
    out.append([r["status"], r["fuel_used"]])
json.dumps(out)
`));
    expect(browserSweep).toEqual(sweep.runs);
    expect(new Set(sweep.runs.map((r) => r[0]))).toEqual(new Set(["FuelExhausted", "Success"]));

    // A module the fuel meter cannot decode runs unmetered, and says so.
    const simd = await runCase(page, "simd", "lanes", "");
    const nSimd = await native.ask({ cmd: "run", module: modules.simd, entrypoint: "lanes", input: "", budgets: BUDGETS });
    expect([simd.status, simd.output_sha256]).toEqual(["Success", nSimd.output_sha256]);
    expect(simd.fuel_used).toBeNull();
    expect(simd.detail).toMatch(/fuel unmetered in the browser \(not metered: operator 0xfd\)/);

    // Modules outside the ABI are refused before running, as natively.
    expect((await runCase(page, "imports", "sum", "")).rejected).toMatch(/imports env\.clock/);
    expect((await runCase(page, "no_alloc", "sum", "")).rejected).toMatch(/alloc/);
    expect((await runCase(page, "good", "missing", "")).rejected).toMatch(/missing/);
    expect((await runCase(page, "garbage", "sum", "")).rejected).toMatch(/valid WebAssembly/);
  } finally {
    native.close();
  }
});

test("receipts signed by a TaskExecutor in the browser verify natively", async ({ page }) => {
  test.setTimeout(90_000);
  const native = nativeTasks();
  try {
    const modules = await native.ask({ cmd: "modules" });
    await openReady(page);
    await setUpSandbox(page, modules);
    await setUpExecutor(page);
    const input = Buffer.from(Array.from({ length: 64 }, (_, i) => i * 3)).toString("hex");
    const outcomes = [];
    for (const [entrypoint, budgets, status] of [
      ["sum", BUDGETS, "Success"],
      ["spin", { ...BUDGETS, timeout_ms: 250 }, "Timeout"],
      ["spin", { ...BUDGETS, fuel_limit: 50_000 }, "FuelExhausted"],
      ["divzero", BUDGETS, "Error"],
    ]) {
      const env = await native.ask({ cmd: "envelope", task_id: `t-${entrypoint}`, module: modules.good, entrypoint, input, budgets });
      expect(env.error).toBeUndefined();
      const got = await executeInBrowser(page, env, modules.good, input);
      const artifacts = [modules.good, input, ...(got.output ? [got.output] : [])];
      const check = await native.ask({ cmd: "verify", receipt: got.receipt, envelope: env.envelope, executor_key: got.executor_key, artifacts });
      expect(check).toMatchObject({ verified: true, status });
      const n = await native.ask({ cmd: "run", module: modules.good, entrypoint, input, budgets });
      if (status === "Error") {
        // A trap ends a segment the browser meter has already charged whole: an upper bound of wasmtime's count.
        expect(check.fuel_used).toBeGreaterThanOrEqual(n.fuel_used);
      } else {
        expect([entrypoint, check.fuel_used]).toEqual([entrypoint, status === "Timeout" ? null : n.fuel_used]);
      }
      outcomes.push({ entrypoint, got, env, artifacts });
    }

    // The browser's output is the one wasmtime computes.
    const n = await native.ask({ cmd: "run", module: modules.good, entrypoint: "sum", input, budgets: BUDGETS });
    expect(outcomes[0].got.output).toBe(n.output);

    // A tampered receipt, and a receipt presented for another envelope, are refused natively.
    const { got, env, artifacts } = outcomes[0];
    const tampered = JSON.parse(got.receipt);
    tampered.exec_us += 1;
    const bad = await native.ask({ cmd: "verify", receipt: JSON.stringify(tampered), envelope: env.envelope, executor_key: got.executor_key, artifacts });
    expect(bad).toMatchObject({ verified: false, rejected: "BadSignature" });
    const other = await native.ask({ cmd: "verify", receipt: got.receipt, envelope: outcomes[3].env.envelope, executor_key: got.executor_key, artifacts });
    expect(other.verified).toBe(false);
  } finally {
    native.close();
  }
});

// Issue 17: modules that fail before their entrypoint runs (tests/test_tasks.py's FAILS_BEFORE_ENTRY_WAT and
// WRONG_TYPES_WAT). A browser TaskExecutor raised TypeError on the ones failing at instantiation (the
// worker's `fuelLeft: null` reached Python as JsNull); each must give the receipt a native TaskExecutor
// gives for the same bytes, from the sandbox itself rather than the executor's last resort ("sandbox failed").
// Fuel: "same" as natively, "unmetered" (SIMD keeps the browser's meter out), a "bound" (the browser
// charges a trapping segment whole) or "any" (stack depth, hence calls made, differs between engines).
const FAILS_BEFORE_ENTRY = {
  data_outside_memory: "same",
  elem_outside_table: "same",
  start_traps: "bound",
  start_recurses: "any",
  simd_start_traps: "unmetered",
  simd_start_recurses: "unmetered",
  alloc_takes_i64: "same",
  alloc_returns_nothing: "same",
  alloc_is_a_global: "same",
  entry_returns_i32: "same",
  memory_is_a_global: "same",
};

test("modules failing at instantiation, in their start function or on the ABI's types get native receipts", async ({ page }) => {
  test.setTimeout(90_000);
  const native = nativeTasks();
  try {
    const modules = await native.ask({ cmd: "modules" });
    expect(modules.error).toBeUndefined();
    await openReady(page);
    await setUpSandbox(page, modules);
    await setUpExecutor(page);
    for (const [name, fuel] of Object.entries(FAILS_BEFORE_ENTRY)) {
      const module = modules[name];
      const env = await native.ask({ cmd: "envelope", task_id: `t-${name}`, module, entrypoint: "sum", input: "", budgets: BUDGETS });
      expect(env.error).toBeUndefined();
      const n = await native.ask({ cmd: "execute", envelope: env.envelope, module, input: "" });
      expect([name, n.status]).toEqual([name, "Error"]);
      const got = await executeInBrowser(page, env, module, "");
      const b = await native.ask({ cmd: "verify", receipt: got.receipt, envelope: env.envelope, executor_key: got.executor_key, artifacts: [module, ""] });
      expect([name, b.verified, b.status, b.memory_peak]).toEqual([name, true, n.status, n.memory_peak]);
      expect(b.detail).not.toMatch(/sandbox failed/);
      if (n.detail.startsWith("module rejected")) expect([name, b.detail]).toEqual([name, n.detail]); // the same wording
      if (fuel === "same") expect([name, b.fuel_used]).toEqual([name, n.fuel_used]);
      if (fuel === "bound") expect(b.fuel_used).toBeGreaterThanOrEqual(n.fuel_used);
      if (fuel === "unmetered") expect([name, b.fuel_used, b.detail]).toEqual([name, null, expect.stringMatching(/fuel unmetered/)]);
    }
    // The sandbox's own statuses for the same bytes, without an executor in between.
    for (const name of ["data_outside_memory", "simd_start_traps", "simd_start_recurses"]) {
      const b = await runCase(page, name, "sum", "");
      const n = await native.ask({ cmd: "run", module: modules[name], entrypoint: "sum", input: "", budgets: BUDGETS });
      expect([name, b.status, b.memory_peak]).toEqual([name, n.status, 0]);
    }
  } finally {
    native.close();
  }
});
