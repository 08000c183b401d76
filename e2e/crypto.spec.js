// The browser CryptoProvider (WebCrypto through the FFI bridge) must give the
// same answers as the standards: RFC 8032, RFC 7748, RFC 5869, GCM test case 16,
// checked inside the Pyodide worker.
import { test, expect } from "@playwright/test";
import { existsSync, readFileSync } from "node:fs";
import { openReady, py } from "./helpers.js";

const KAT = readFileSync(new URL("./py/kat.py", import.meta.url), "utf8");
const HAS_CONFORMANCE = existsSync(new URL("../py/ruvector_edge/conformance.py", import.meta.url))
  || existsSync(new URL("../py/ruvector_edge/conformance/__init__.py", import.meta.url));

/** Python that execs e2e/py/kat.py as a module and runs its check() against the browser provider. */
const runKat = `
import json
from ruvector_edge.platform import default_runtime
_kat = {"__name__": "kat"}
exec(${JSON.stringify(KAT)}, _kat)
json.dumps(await _kat["check"](default_runtime().crypto))
`;

test("WebCryptoProvider passes the RFC known-answer vectors in the worker", async ({ page }) => {
  await openReady(page);
  const report = JSON.parse(await py(page, runKat));
  expect(report.failures).toEqual([]);
  expect(report.failed).toBe(0);
  expect(report.passed).toBeGreaterThanOrEqual(20);
});

test("verify_many never raises on malformed items", async ({ page }) => {
  await openReady(page);
  const out = await py(page, `
from ruvector_edge.platform import default_runtime
c = default_runtime().crypto
seed, pub = await c.ed25519_generate()
sig = await c.sign(seed, b"m")
items = [(pub, b"m", sig), (b"", b"m", sig), (pub, b"m", b""), (None, b"m", sig), (pub,), (b"\\xff" * 32, b"m", sig), (pub, b"m", bytes(64))]
await c.verify_many(items)
`);
  expect(out).toEqual([true, false, false, false, false, false, false]);
});

test("shared conformance suite passes under Pyodide", async ({ page }) => {
  test.skip(!HAS_CONFORMANCE, "ruvector_edge.conformance not written yet");
  await openReady(page);
  const report = JSON.parse(await py(page, `
import json
from ruvector_edge import conformance
from ruvector_edge.platform import default_runtime
json.dumps(await conformance.run_all(default_runtime().crypto))
`));
  expect(report.failures).toEqual([]);
  expect(report.failed).toBe(0);
  expect(report.passed).toBeGreaterThan(0);
});
