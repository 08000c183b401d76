// Browser benchmark (issue 15): the admin's pairwise-sealed rekey in the page's Python (Pyodide, WebCrypto
// underneath) for 10/100/1,000 members — the same measurement as bench/rekey.py natively: time for
// AdminAuthority.rekey() (one X25519 + HKDF + AES-GCM per member, one Ed25519 signing batch), bytes of the
// relay frame(s) carrying the deliveries, and one member opening its delivery. Prints JSON lines.
// Needs a built app (bash scripts/build-web.sh). Loopback only; every loop is bounded.
//   node bench/browser_rekey.mjs [--rounds 3] [--port 4187]
import { arg, emit, openApp, pyWithinTenMinutes, withRelayAndBrowser } from "./browser_common.mjs";

const ROUNDS = arg("rounds", 3);
const PORT = arg("port", 4187);
const MEMBERS = [10, 100, 1000];

const rekeyCode = (members, rounds) => `
import json, statistics, time
from ruvector_edge.p2p import IdentityManager, P2PSwarm
from ruvector_edge.transport import relay_wire as rw

admin = await P2PSwarm.found_admitted("admin")
authority = admin.admission.authority
crypto = admin.runtime.crypto
identities = []
for index in range(${members}):
    identity = await IdentityManager.generate(crypto)
    await authority.certify(f"m-{index}", identity.ed25519_public, identity.x25519_public, ["worker"])
    identities.append(identity)
times = []
for _ in range(${rounds}):
    start = time.perf_counter()
    deliveries = await authority.rekey()
    times.append(time.perf_counter() - start)
frames = [rw.encode("rekey", deliveries=[d.to_dict() for d in deliveries[i:i + 1000]])
          for i in range(0, len(deliveries), 1000)]
start = time.perf_counter()
key = await deliveries[0].open(crypto, identities[0], admin.swarm_id, "m-0")
open_s = time.perf_counter() - start
assert key == admin.admission.epochs.key
json.dumps(dict(median_s=round(statistics.median(times), 4), max_s=round(max(times), 4),
                bytes_total=sum(len(f) for f in frames), frames=len(frames),
                bytes_per_member=round(sum(len(f) for f in frames) / ${members}), member_open_s=round(open_s, 6)))
`;

await withRelayAndBrowser(PORT, async (browser) => {
  const context = await browser.newContext();
  const page = await openApp(context, `http://127.0.0.1:${PORT}/`);
  for (const members of MEMBERS) {
    const result = JSON.parse(await pyWithinTenMinutes(page, rekeyCode(members, ROUNDS)));
    emit({ bench: "rekey", runtime: "browser (Pyodide, WebCrypto)", members, rounds: ROUNDS, ...result });
  }
  await context.close();
});
