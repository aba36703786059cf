/**
 * Many devices through a real Prosody with message carbons (XEP-0280) enabled on every
 * connection: Alice on two devices, Bob on two devices, and a fifth, stale Bob resource
 * that is connected, advertises ESessions in its caps, answers disco#info and never answers
 * a negotiation. Every fan-out reaches all four live devices decryptably (the sender's other
 * device through the sender's own session with it, as a sent-by-self copy, not through a
 * server carbon); the stale device delays nobody (it times out on its own deadline and is
 * then skipped); Prosody never delivers a carbon of an encrypted stanza, while a plaintext
 * message is carbon-copied (the control that shows carbons are on).
 *
 * Spec: XEP-0280 v1.0 sections 4, 6, 7, 11; XEP-0334 v0.3 section 4 (no-copy); XEP-0115
 * v1.6.0 (caps in presence); RFC 6121 sections 3-4 (subscriptions, presence of contacts and
 * of one's own other resources); docs/offline-and-devices.md "Many devices".
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connectXmpp } from "../../src/adapters/xmpp-client.js";
import { CAPS_NODE } from "../../src/client/secure-client.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { NS_CARBONS } from "../../src/devices/codec.js";
import { DiscoResponder } from "../../src/disco/responder.js";
import { MemoryStore } from "../../src/store/memory.js";
import { el, NS, type Element } from "../../src/xml/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";
import { bodies, shut, side, subscribe, type Side } from "./offline-helpers.js";

let server: ProsodyInstance;

before(async () => {
  server = await startProsody({ users: [["alice", "alice-pw"], ["bob", "bob-pw"]] });
});

after(async () => {
  await server?.stop();
});

const NEGOTIATION_TIMEOUT_MS = 10_000;

async function until(pred: () => boolean, what: string, ms = 30_000): Promise<void> {
  const start = Date.now();
  while (!pred()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}\n${server.logTail(10)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const copies = (s: Side): string[] => s.events.flatMap((e) => (e.type === "sent-copy" && e.body !== undefined ? [`${e.to}:${e.body}`] : []));

/** Carbons Prosody delivered to `s` that wrap an encrypted stanza (there must be none). */
const encryptedCarbons = (s: Side): string[] =>
  s.received.filter((x) => (x.includes(`<sent xmlns="${NS_CARBONS}"`) || x.includes(`<received xmlns="${NS_CARBONS}"`)) && x.includes(NS.c));

test("2 + 2 devices and a stale fifth through Prosody with carbons: every message reaches the four live devices, nothing undecryptable is carbon-copied", { timeout: 120_000 }, async () => {
  const opts = () => ({ store: new MemoryStore(), devices: { negotiationTimeoutMs: NEGOTIATION_TIMEOUT_MS } });
  const alicePda = await side(server, "alice", "pda", opts(), false);
  const alicePhone = await side(server, "alice", "phone", opts(), false);
  const bobLaptop = await side(server, "bob", "laptop", opts(), false);
  const bobPhone = await side(server, "bob", "phone", opts(), false);
  await subscribe(alicePda, bobLaptop);

  // The fifth device: connected, caps that claim ESessions, answers disco#info, nothing else.
  const zombie = await connectXmpp({ service: server.service, domain: server.domain, username: "bob", password: "bob-pw", resource: "zombie", presence: false });
  const zombieGot: Element[] = [];
  const disco = new DiscoResponder({ jid: zombie.jid, crypto: nodeCrypto, capsNode: CAPS_NODE });
  zombie.onStanza((s) => {
    zombieGot.push(s);
    if (disco.handleStanza(s) === "handled") for (const o of disco.drain()) if (o.kind === "send") void zombie.send(o.stanza);
  });
  await zombie.send(el("presence", {}, disco.caps()));

  const all = [alicePda, alicePhone, bobLaptop, bobPhone];
  for (const s of all) await s.client.announce();
  for (const s of all) assert.ok(s.events.some((e) => e.type === "carbons" && e.enabled), `carbons enabled for ${s.conn.jid}`);

  // Discovery: each device knows the other account's devices and its own other devices, all ESession-capable.
  const capable = (s: Side, account: string) => s.client.devices(account).filter((d) => d.online && d.esession === "yes").map((d) => String(d.jid)).sort();
  await until(() => capable(alicePda, "bob@localhost").length === 3 && capable(alicePda, "alice@localhost").length === 1, "alice/pda discovers the devices");
  await until(() => capable(bobPhone, "alice@localhost").length === 2 && capable(bobPhone, "bob@localhost").length === 2, "bob/phone discovers the devices");
  assert.deepEqual(capable(alicePda, "bob@localhost"), ["bob@localhost/laptop", "bob@localhost/phone", "bob@localhost/zombie"]);
  assert.deepEqual(capable(alicePda, "alice@localhost"), ["alice@localhost/phone"]);

  // Alice's first message: sessions with the four live devices are negotiated on the way.
  const r1 = await alicePda.client.fanoutMessage("bob@localhost", "first secret");
  assert.equal(r1.queued.length, 4);
  await until(
    () => bodies(bobLaptop.events).includes("first secret") && bodies(bobPhone.events).includes("first secret") && copies(alicePhone).includes("bob@localhost:first secret"),
    "the first message on the live devices",
  );
  // The stale device has not held anything up: its copy is still waiting for its own deadline.
  const zombieReported = () => alicePda.events.some((e) => e.type === "delivery" && e.delivery.device === "bob@localhost/zombie");
  assert.ok(!zombieReported(), "the live devices got the message before the stale device's deadline");

  // While the zombie still negotiates, more messages flow in every direction.
  const r2 = await alicePda.client.fanoutMessage("bob@localhost", "second secret");
  assert.deepEqual([...r2.sent].sort(), ["alice@localhost/phone", "bob@localhost/laptop", "bob@localhost/phone"]);
  const r3 = await bobPhone.client.fanoutMessage("alice@localhost", "bob's secret");
  const r4 = await alicePhone.client.fanoutMessage("bob@localhost", "phone secret");
  await until(
    () =>
      bodies(alicePda.events).includes("bob's secret") &&
      bodies(alicePhone.events).includes("bob's secret") &&
      copies(bobLaptop).includes("alice@localhost:bob's secret") &&
      bodies(bobLaptop.events).includes("phone secret") &&
      bodies(bobPhone.events).includes("phone secret") &&
      copies(alicePda).includes("bob@localhost:phone secret") &&
      bodies(bobLaptop.events).includes("second secret") &&
      bodies(bobPhone.events).includes("second secret"),
    "every message on every live device",
  );
  assert.deepEqual(bodies(bobLaptop.events), ["first secret", "second secret", "phone secret"]);
  assert.deepEqual(bodies(bobPhone.events), ["first secret", "second secret", "phone secret"]);
  assert.deepEqual(bodies(alicePda.events), ["bob's secret"]);
  assert.deepEqual(bodies(alicePhone.events), ["bob's secret"]);
  assert.deepEqual(copies(alicePhone), ["bob@localhost:first secret", "bob@localhost:second secret"]);
  assert.deepEqual(copies(alicePda), ["bob@localhost:phone secret"]);
  assert.deepEqual(copies(bobLaptop), ["alice@localhost:bob's secret"]);

  // Every fan-out settles: the live copies sent, the stale device's copies reported (timeout, or skipped afterwards).
  for (const r of [r1, r2, r3, r4]) {
    const done = await r.settled;
    for (const d of done) {
      if (d.device === "bob@localhost/zombie") assert.ok(d.state === "undelivered" && (d.reason === "timeout" || d.reason === "unresponsive"), JSON.stringify(d));
      else assert.equal(d.state, "sent", JSON.stringify(d));
    }
  }
  const r5 = await alicePda.client.fanoutMessage("bob@localhost", "after the timeout");
  assert.deepEqual(r5.skipped, [{ device: "bob@localhost/zombie", reason: "unresponsive" }]);
  assert.equal(r5.queued.length, 0, "nothing waits for the stale device any more");
  await until(() => bodies(bobPhone.events).includes("after the timeout") && bodies(bobLaptop.events).includes("after the timeout"), "the fifth message");

  // Control: a plaintext message is carbon-copied by Prosody (carbons are on), shown as unprotected.
  await alicePda.conn.send(el("message", { to: "bob@localhost/laptop", type: "chat" }, el("body", {}, "plain hello")));
  await until(() => alicePhone.events.some((e) => e.type === "carbon" && e.body === "plain hello" && e.direction === "sent"), "a plaintext sent carbon");
  await until(() => bobPhone.events.some((e) => e.type === "carbon" && e.body === "plain hello" && e.direction === "received"), "a plaintext received carbon");

  // What Prosody delivered: no carbon of an encrypted stanza, anywhere; no plaintext of the secrets.
  for (const s of all) {
    assert.deepEqual(encryptedCarbons(s), [], `no encrypted carbon delivered to ${s.conn.jid}`);
    assert.ok(!s.events.some((e) => e.type === "carbon-undecryptable" || e.type === "undecryptable"), `nothing undecryptable on ${s.conn.jid}`);
    for (const x of s.received) assert.ok(!x.includes("secret") && !x.includes("after the timeout"), "plaintext relayed");
  }
  assert.equal(zombieGot.filter((s) => s.getChild("c", NS.c) || s.getChild("received", NS_CARBONS) || s.getChild("sent", NS_CARBONS)).filter((s) => s.toString().includes(NS.c)).length, 0);

  // Bob's laptop leaves: Alice's devices drop its live session and fan out to the phone only.
  await shut(bobLaptop);
  await until(() => alicePda.client.devices("bob@localhost").some((d) => d.jid === "bob@localhost/laptop" && !d.online), "the laptop offline");
  assert.equal(alicePda.client.session("bob@localhost/laptop"), undefined);
  const r6 = await alicePda.client.fanoutMessage("bob@localhost", "laptop gone");
  assert.deepEqual([...r6.sent].sort(), ["alice@localhost/phone", "bob@localhost/phone"]);
  await until(() => bodies(bobPhone.events).includes("laptop gone"), "the phone gets it");

  await zombie.close();
  await shut(alicePda, alicePhone, bobPhone);
});
