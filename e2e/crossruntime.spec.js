// Cross-runtime envelopes: a native CPython member (PyNaCl/cryptography) and a
// Pyodide member in the browser worker (WebCrypto) share a swarm; each opens
// what the other sealed, broadcast and direct (X25519+HKDF session keys), and
// each rejects tampered or replayed frames. Frames cross by fixture round trip.
import { test, expect } from "./fixtures.js";
import { nativeHelper, openReady, py } from "./helpers.js";

/** Start e2e/py/native_peer.py; returns {ask(req) → answer, close()}. */
const nativePeer = () => nativeHelper("native_peer.py", { timeoutMs: 20_000, label: "native peer" });

const hex = (s) => Buffer.from(s).toString("hex");

test("envelopes sealed natively open in the browser and vice versa", async ({ page }) => {
  const native = nativePeer();
  try {
    await openReady(page);
    const n = await native.ask({ cmd: "init", agent_id: "native-peer" });
    expect(n.error).toBeUndefined();

    // The browser member joins the same swarm and learns the native member from its signed registration.
    const b = JSON.parse(await py(page, `
import json
from ruvector_edge.p2p import P2PSwarm
swarm = await P2PSwarm.create("browser-peer", bytes.fromhex(${JSON.stringify(n.key)}), capabilities=["browser"])
await swarm.register_member(${JSON.stringify(n.registration)})
json.dumps({"registration": swarm.registration.to_json().decode()})
`));
    expect((await native.ask({ cmd: "register", registration: b.registration })).error).toBeUndefined();

    // native → browser: broadcast and direct
    const nb = await native.ask({ cmd: "publish", topic: "cross", payload: hex("from native") });
    const nd = await native.ask({ cmd: "direct", peer: "browser-peer", payload: hex("native to browser, direct") });
    const got = JSON.parse(await py(page, `
out = []
for f in (${JSON.stringify(nb.frame)}, ${JSON.stringify(nd.frame)}):
    m = await swarm.receive(f)
    out.append({"sender_id": m.sender_id, "topic": m.topic, "payload": m.payload.decode(), "direct": m.direct})
json.dumps(out)
`));
    expect(got).toEqual([
      { sender_id: "native-peer", topic: "cross", payload: "from native", direct: false },
      { sender_id: "native-peer", topic: "@browser-peer", payload: "native to browser, direct", direct: true },
    ]);

    // browser → native: broadcast and direct
    const frames = JSON.parse(await py(page, `
p = await swarm.publish("cross", b"from the browser")
d = await swarm.send_direct("native-peer", b"browser to native, direct")
json.dumps([p.frame.decode(), d.frame.decode()])
`));
    expect(await native.ask({ cmd: "receive", frame: frames[0] })).toEqual(
      { sender_id: "browser-peer", topic: "cross", payload: hex("from the browser"), direct: false });
    expect(await native.ask({ cmd: "receive", frame: frames[1] })).toEqual(
      { sender_id: "browser-peer", topic: "@native-peer", payload: hex("browser to native, direct"), direct: true });

    // Replays are refused on both sides.
    expect((await native.ask({ cmd: "receive", frame: frames[0] })).rejected).toBe("ReplayDetected");
    const replay = await py(page, `
from ruvector_edge.errors import RejectedInput
try:
    await swarm.receive(${JSON.stringify(nb.frame)})
    r = "accepted"
except RejectedInput as exc:
    r = type(exc).__name__
r
`);
    expect(replay).toBe("ReplayDetected");
  } finally {
    native.close();
  }
});

test("a tampered browser frame is rejected natively", async ({ page }) => {
  const native = nativePeer();
  try {
    await openReady(page);
    const n = await native.ask({ cmd: "init" });
    const out = JSON.parse(await py(page, `
import json
from ruvector_edge.p2p import P2PSwarm
swarm = await P2PSwarm.create("browser-peer", bytes.fromhex(${JSON.stringify(n.key)}), capabilities=["browser"])
f = json.loads((await swarm.publish("cross", b"payload")).frame)
good = (await swarm.publish("cross", b"payload")).frame.decode()
f["header"]["topic"] = "other"
json.dumps({"registration": swarm.registration.to_json().decode(), "tampered": json.dumps(f), "good": good})
`));
    await native.ask({ cmd: "register", registration: out.registration });
    const bad = await native.ask({ cmd: "receive", frame: out.tampered });
    expect(bad.rejected).toBe("BadSignature"); // as natively: the signature covers the topic
    // the forged frame burned nothing: the genuine one still opens
    expect((await native.ask({ cmd: "receive", frame: out.good })).payload).toBe(hex("payload"));
  } finally {
    native.close();
  }
});
