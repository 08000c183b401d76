// The browser CryptoProvider (WebCrypto through the FFI bridge) must give the
// same answers as the standards. The known-answer vectors ship inside the wheel
// (ruvector_edge.conformance: RFC 8032, RFC 7748, RFC 5869, the GCM spec's test
// cases 13-16, RFC 8785) and run here, in the Pyodide worker, exactly as pytest
// runs them natively.
import { test, expect } from "./fixtures.js";
import { openReady, py } from "./helpers.js";

// The same count tests/test_conformance.py pins natively: a vector dropped from the suite fails both.
const CONFORMANCE_CHECKS = 83;

test("the conformance suite passes under Pyodide with the WebCrypto provider", async ({ page }) => {
  await openReady(page);
  const report = JSON.parse(await py(page, `
import json
from ruvector_edge import conformance
from ruvector_edge.platform import default_runtime
json.dumps(await conformance.run_all(default_runtime().crypto))
`));
  expect(report.failures).toEqual([]);
  expect(report.failed).toBe(0);
  expect(report.passed).toBe(CONFORMANCE_CHECKS);
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
