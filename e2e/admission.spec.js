// Admitted swarms in the page (issue 15): "Create a swarm" makes the tab its admin; "Invite someone" gives a
// link with no key in it; tabs trade it with the admin (through the relay) for a certificate and the sealed
// swarm key; the admin's Remove button revokes a member, which can then neither publish nor read what follows.
// Hostile tabs (a replayed or expired invite, a forged certificate) are refused with visible text.
// Each tab gets its own browser context, so tabs meet only through the relay (no shared BroadcastChannel).
import { allowConsoleErrors, test, expect } from "./fixtures.js";
import { py } from "./helpers.js";

const WAIT = { timeout: 30_000 };
const JOIN = { timeout: 45_000 };

async function newTab(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.errors = errors;
  await page.goto(url);
  return page;
}

/** A tab that founds an admitted swarm through the page's own buttons; returns it once it is the admin. */
async function adminTab(browser, id) {
  const page = await newTab(browser, "/");
  await expect(page.locator("#create-btn")).toBeVisible(JOIN);
  await page.locator("#create-btn").click();
  await expect(page.locator("#picker")).toBeVisible();
  await expect(page.locator("#pick-role")).toHaveValue("coordinator");
  await page.locator("#pick-id").fill(id);
  await page.locator("#join-btn").click();
  await expect(page.locator("#me-id")).toHaveText(id, JOIN);
  await expect(page.locator("#me-mode")).toHaveText(/^admitted swarm, admin, key epoch 0$/);
  await expect(page.locator("#invite-form")).toBeVisible();
  return page;
}

/** "Invite someone" with `uses`; the link it shows (no swarm key in it). */
async function invite(admin, uses) {
  await admin.locator("#invite-uses").fill(String(uses));
  const before = await admin.locator("#invite-link").inputValue();
  await admin.locator("#invite-btn").click();
  await expect(admin.locator("#invite-link")).not.toHaveValue(before);
  const link = await admin.locator("#invite-link").inputValue();
  expect(link).toMatch(/#invite=[A-Za-z0-9_-]+$/);
  expect(link).not.toContain("swarm_key");
  await expect(admin.locator("#invite-note")).toContainText(`Good for ${uses} join`);
  return link;
}

const members = (page) => page.locator("#members tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.agentId));
const peers = (page) => page.locator("#peers tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.agentId));
const leave = (page) => py(page, "from ruvector_edge import browser_app\nawait browser_app.leave()").catch(() => {});

async function closeAll(...pages) {
  for (const page of pages) {
    if (!page) continue;
    await leave(page);
    await page.context().close();
  }
}

test("tabs join by invite; the admin removes one, which can neither publish nor read after the rekey", async ({ browser }) => {
  allowConsoleErrors(/MembershipRefused: InviteExhausted/); // the late tab's refused join, logged by its page
  let admin, bob, carol;
  try {
    admin = await adminTab(browser, "admin-tab");
    const link = await invite(admin, 2);
    bob = await newTab(browser, `${link}&role=worker&id=tab-bob`);
    carol = await newTab(browser, `${link}&role=scout&id=tab-carol`);
    for (const [page, id] of [[bob, "tab-bob"], [carol, "tab-carol"]]) {
      await expect(page.locator("#me-id")).toHaveText(id, JOIN);
      await expect(page.locator("#me-mode")).toHaveText("admitted swarm, member, key epoch 0");
      await expect(page.locator("#invite-form")).toBeHidden(); // only the admin invites
      await expect(page.locator("#invite-note")).toHaveText("Only the swarm's admin can invite.");
      // the spent invite left the fragment: a reload comes back by swarm id with the kept certificate
      expect(await page.evaluate(() => location.hash)).toMatch(new RegExp(`^#swarm=adm-[0-9a-f]{32}&role=\\w+&id=${id}$`));
    }
    await expect.poll(() => members(admin), WAIT).toEqual(["admin-tab", "tab-bob", "tab-carol"]);
    await expect.poll(() => peers(bob), WAIT).toEqual(["admin-tab", "tab-carol"]);
    await expect(admin.locator("#members tbody tr[data-agent-id='admin-tab']")).toContainText("admin");

    // The link was good for two: a third tab is refused, visibly.
    const late = await newTab(browser, `${link}&id=tab-late`);
    await expect(late.locator("#error")).toContainText("joining the swarm failed", JOIN);
    await expect(late.locator("#error")).toContainText("InviteExhausted");
    await late.context().close();

    // A frame carol makes now (epoch 0) is read by bob: the baseline for what follows.
    const frame0 = await py(carol, `from ruvector_edge import browser_app
from ruvector_edge.protocol import MessageKind, encode
(await browser_app._app.agent.swarm.publish("swarm", encode(MessageKind.SIGNAL, text="before"))).frame.decode()`);

    await admin.locator("#members tbody tr[data-agent-id='tab-carol'] button.remove").click();
    await expect(admin.locator("#members-result")).toHaveText("removed tab-carol; swarm key epoch 1", WAIT);
    await expect.poll(() => members(admin), WAIT).toEqual(["admin-tab", "tab-bob"]);
    await expect(carol.locator("#refused")).toBeVisible(WAIT);
    await expect(carol.locator("#refused")).toContainText("Removed from the swarm: RevokedMember");
    await expect(bob.locator("#me-mode")).toHaveText("admitted swarm, member, key epoch 1", WAIT);

    // Carol cannot publish: bob refuses her frames, old or new, as a revoked member's.
    const fromCarol = await py(carol, `from ruvector_edge import browser_app
from ruvector_edge.protocol import MessageKind, encode
(await browser_app._app.agent.swarm.publish("swarm", encode(MessageKind.SIGNAL, text="after"))).frame.decode()`);
    const bobRejected = await py(bob, `from ruvector_edge import browser_app
agent = browser_app._app.agent
before = agent.rejected["RevokedMember"]
for frame in (${JSON.stringify(frame0)}, ${JSON.stringify(fromCarol)}):
    await agent.handle_frame(frame)
agent.rejected["RevokedMember"] - before`);
    expect(bobRejected).toBe(2);

    // Nor read: a frame bob sends after the rekey names epoch 1, whose key was never sealed to her.
    const fromBob = await py(bob, `from ruvector_edge import browser_app
from ruvector_edge.protocol import MessageKind, encode
(await browser_app._app.agent.swarm.publish("swarm", encode(MessageKind.SIGNAL, text="secret"))).frame.decode()`);
    expect(JSON.parse(fromBob).header.epoch).toBe(1);
    const carolReads = await py(carol, `from ruvector_edge import browser_app
from ruvector_edge.errors import UnknownEpoch
try:
    await browser_app._app.agent.swarm.receive(${JSON.stringify(fromBob)})
    result = "read"
except UnknownEpoch as exc:
    result = type(exc).__name__
result`);
    expect(carolReads).toBe("UnknownEpoch");

    // The others carry on under the new key: a signed ping round trip bob -> admin.
    const rtt = await py(bob, `from ruvector_edge import browser_app
await browser_app._app.agent.ping("admin-tab", timeout=10)`);
    expect(rtt).toBeGreaterThan(0);
    for (const page of [admin, bob]) expect(page.errors).toEqual([]);
  } finally {
    await closeAll(carol, bob, admin);
  }
});

test("hostile tabs: an expired invite and a forged certificate are refused with a reason", async ({ browser }) => {
  allowConsoleErrors(/ExpiredInvite|InvalidCertificate/); // the hostile tabs' refused joins, logged by their pages
  let admin, forger, late;
  try {
    admin = await adminTab(browser, "admin-2");
    const swarmId = await admin.locator("#me-swarm").textContent();
    // An invite that expires two seconds from now, opened after it did: the joiner's runtime refuses it.
    const made = await admin.evaluate(() => window.edge.act("create_invite", { uses: 1, hours: 2 / 3600 }));
    await expect.poll(() => Date.now() > made.expires_at, { timeout: 10_000 }).toBe(true);
    late = await newTab(browser, `/#invite=${made.token}&id=tab-late`);
    await expect(late.locator("#error")).toContainText("ExpiredInvite", JOIN);

    // A forged certificate (signed by the forger's own key, naming the admin's swarm), saved where a member
    // keeps its certificate: the page refuses to use it, visibly.
    forger = await newTab(browser, "/");
    await expect(forger.locator("#create")).toBeVisible(JOIN);
    await py(forger, `import json, js
from ruvector_edge import browser_app
from ruvector_edge.p2p.certificates import Certificate
from ruvector_edge.p2p.identity import IdentityManager
from ruvector_edge.platform import default_runtime
crypto = default_runtime().crypto
me = await IdentityManager.generate(crypto)
now = default_runtime().clock.now_ms()
cert = Certificate(swarm=${JSON.stringify(swarmId)}, issuer=me.ed25519_public, agent_id="forger", ed25519_pubkey=me.ed25519_public,
                   x25519_pubkey=me.x25519_public, roles=("worker", "wasm"), serial=1, issued_at=now, expires_at=now + 3600_000)
cert = Certificate(**{**cert.__dict__, "sig": await me.sign(cert.signing_bytes())})
await js.edgeIdentity.save(browser_app.identity_name(${JSON.stringify(swarmId)}, "forger"), me.to_secret_json())
await js.edgeIdentity.save(browser_app.membership_name(${JSON.stringify(swarmId)}, "forger"),
                           json.dumps({"version": 1, "certificate": cert.to_dict(), "epoch": 0, "key": "00" * 32}))`);
    await forger.evaluate((s) => (location.hash = `swarm=${s}&id=forger`), swarmId);
    await expect(forger.locator("#error")).toContainText("InvalidCertificate", JOIN);

    // The same forgery presented to the relay by hand (bypassing the page's own check): refused there too.
    const relaySays = await py(forger, `from ruvector_edge.errors import MembershipRefused
from ruvector_edge.p2p.admission import Admission
from ruvector_edge.p2p.swarm import P2PSwarm
from ruvector_edge.p2p.swarm import SecurityConfig
from ruvector_edge.platform import default_runtime
from ruvector_edge.transport.browser import BrowserRelayLink
import json, js
from ruvector_edge import browser_app
from ruvector_edge.p2p.certificates import Certificate
rt = default_runtime()
saved = json.loads(await js.edgeIdentity.load(browser_app.membership_name(${JSON.stringify(swarmId)}, "forger")))
me = await browser_app.identity_from_secret_json(rt.crypto, await js.edgeIdentity.load(browser_app.identity_name(${JSON.stringify(swarmId)}, "forger")))
admission = Admission(${JSON.stringify(swarmId)}, rt.crypto, rt.clock)
admission.certificate = Certificate.from_dict(saved["certificate"])
admission.epochs.install(0, bytes(32), rt.clock.now_ms())
registration = await me.create_registration("forger", ["worker", "wasm"], swarm=${JSON.stringify(swarmId)}, clock=rt.clock)
swarm = P2PSwarm("forger", None, me, registration, rt, SecurityConfig(), admission)
async def ignore(*a): pass
link = BrowserRelayLink(js.location.origin.replace("http", "ws") + "/ws", swarm, on_envelope=ignore)
await link.start()
try:
    await link.wait_connected(20)
    result = "welcomed"
except MembershipRefused as exc:
    result = str(exc)
await link.stop(leave=False)
result`);
    expect(relaySays).toMatch(/^InvalidCertificate: /);
    await expect.poll(() => members(admin), WAIT).toEqual(["admin-2"]); // nobody got in
  } finally {
    await closeAll(late, forger, admin);
  }
});

test("a reloaded admin tab keeps its swarm, key and member list; its member needs no new invite", async ({ browser }) => {
  let admin, bob;
  try {
    admin = await adminTab(browser, "admin-3");
    const link = await invite(admin, 1);
    bob = await newTab(browser, `${link}&role=worker&id=tab-bob3`);
    await expect(bob.locator("#me-mode")).toHaveText("admitted swarm, member, key epoch 0", JOIN);
    await expect.poll(() => members(admin), WAIT).toEqual(["admin-3", "tab-bob3"]);
    const swarmOf = (page) => py(page, "from ruvector_edge import browser_app\nbrowser_app._app.agent.swarm.swarm_id");
    const swarmId = await swarmOf(admin);
    expect(await admin.evaluate(() => location.hash)).toContain(`swarm=${swarmId}`);

    await admin.reload(); // the admin state comes back from IndexedDB, checked, instead of a new swarm
    await expect(admin.locator("#me-id")).toHaveText("admin-3", JOIN);
    await expect(admin.locator("#me-mode")).toHaveText(/^admitted swarm, admin, key epoch 0$/);
    expect(await swarmOf(admin)).toBe(swarmId);
    await expect.poll(() => members(admin), WAIT).toEqual(["admin-3", "tab-bob3"]);
    await expect(admin.locator("#members tbody tr[data-agent-id='tab-bob3'] button.remove")).toBeVisible();
    // Same key on both sides: a broadcast bob seals now (under the epoch-0 key he was given) opens at the admin.
    const fromBob = await py(bob, `from ruvector_edge import browser_app
from ruvector_edge.protocol import MessageKind, encode
(await browser_app._app.agent.swarm.publish("swarm", encode(MessageKind.SIGNAL, text="after reload"))).frame.decode()`);
    const adminReads = await py(admin, `from ruvector_edge import browser_app
from ruvector_edge.errors import EdgeError
try:
    result = (await browser_app._app.agent.swarm.receive(${JSON.stringify(fromBob)})).sender_id
except EdgeError as exc:
    result = type(exc).__name__
result`);
    expect(adminReads).toBe("tab-bob3");
    expect(bob.errors).toEqual([]);
  } finally {
    await closeAll(bob, admin);
  }
});
