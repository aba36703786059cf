/**
 * Object encryption through a real Prosody: an encrypted-and-signed message and a signed
 * directed presence delivered and verified; tampered, replayed and wrongly addressed
 * objects rejected with typed errors (and the sender receives the RFC 3923 section 7
 * error); a client without support sees the fallback body, and its
 * <service-unavailable/> answer reaches the sender as a peer-error.
 *
 * Spec: draft-ietf-xmpp-e2e-03 sections 3, 4 and 2 (RFC 2779 2.5.1-2.5.4); RFC 3923
 * sections 6.3, 6.9, 7. Everything runs on 127.0.0.1 with a private Prosody.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connectXmpp, type XmppConnection } from "../../src/adapters/xmpp-client.js";
import { errorReply } from "../../src/adapters/connection.js";
import { bareJid, parseJid } from "../../src/core/types.js";
import { systemClock, systemRandom } from "../../src/crypto/node.js";
import { generateIdentity } from "../../src/smime/certs.js";
import { MemoryCertificateStore } from "../../src/smime/certstore.js";
import type { SmimeIdentity } from "../../src/smime/cms.js";
import { findE2e, NS_E2E } from "../../src/smime/e2e.js";
import { type ObjectEvent, ObjectClient } from "../../src/smime/session.js";
import { MemoryReplayCache } from "../../src/store/replay.js";
import { el, type Element, parseXml } from "../../src/xml/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

let server: ProsodyInstance;
const env = { random: systemRandom, clock: systemClock };

interface Side {
  readonly conn: XmppConnection;
  readonly client: ObjectClient;
  readonly events: ObjectEvent[];
  readonly raw: Element[];
  readonly certificates: MemoryCertificateStore;
}

let alice: Side, bob: Side, plain: XmppConnection;
let aliceId: SmimeIdentity, bobId: SmimeIdentity;
const plainSeen: Element[] = [];

async function side(user: string, id: SmimeIdentity, trusted: SmimeIdentity[]): Promise<Side> {
  const conn = await connectXmpp({ service: server.service, domain: server.domain, username: user, password: `${user}-pw`, resource: "r1" });
  const raw: Element[] = [];
  conn.onStanza((s) => raw.push(s));
  const certificates = new MemoryCertificateStore();
  for (const t of trusted) await certificates.add(t.certificate, { anchor: true });
  const client = new ObjectClient({ connection: conn, identity: id, certificates, replay: new MemoryReplayCache(), clock: systemClock, random: systemRandom });
  const events: ObjectEvent[] = [];
  client.on((e) => events.push(e));
  return { conn, client, events, raw, certificates };
}

function waitFor<T>(get: () => T | undefined, what: string, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      const v = get();
      if (v !== undefined) return resolve(v);
      if (Date.now() - start > ms) return reject(new Error(`timed out waiting for ${what}; prosody log:\n${server.logTail(8)}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

before(async () => {
  server = await startProsody({ users: [["alice", "alice-pw"], ["bob", "bob-pw"], ["plain", "plain-pw"]] });
  aliceId = await generateIdentity({ jid: parseJid("alice@localhost"), keyType: "rsa-2048" }, env);
  bobId = await generateIdentity({ jid: parseJid("bob@localhost"), keyType: "ec-p256" }, env);
  alice = await side("alice", aliceId, [bobId]);
  bob = await side("bob", bobId, [aliceId]);
  plain = await connectXmpp({ service: server.service, domain: server.domain, username: "plain", password: "plain-pw", resource: "r1" });
  plain.onStanza((s) => plainSeen.push(s));
  // Alice also knows a certificate for the plain user (it just cannot use it).
  const plainId = await generateIdentity({ jid: parseJid("plain@localhost"), keyType: "ec-p256" }, env);
  await alice.certificates.add(plainId.certificate, { anchor: true });
});

after(async () => {
  await alice?.client.close();
  await bob?.client.close();
  await alice?.conn.close();
  await bob?.conn.close();
  await plain?.close();
  await server?.stop();
});

const ofType = (s: Side, t: ObjectEvent["type"], n = 1) => () => {
  const evs = s.events.filter((e) => e.type === t);
  return evs.length >= n ? evs[n - 1] : undefined;
};

test("encrypted + signed message through Prosody is delivered and verified; nothing readable on the wire", { timeout: 30_000 }, async () => {
  await alice.client.sendMessage(bob.conn.jid, "Wherefore art thou, Romeo?");
  const ev = await waitFor(ofType(bob, "message"), "bob's message");
  assert.equal(ev.type, "message");
  if (ev.type !== "message") return;
  assert.equal(ev.stanza.getChildText("body"), "Wherefore art thou, Romeo?");
  assert.equal(ev.signedBy, "alice@localhost");
  assert.equal(ev.encrypted, true);
  assert.equal(bareJid(ev.from), "alice@localhost");
  const relayed = bob.raw.find((s) => findE2e(s) !== undefined);
  assert.ok(relayed);
  assert.ok(!relayed.toString().includes("Wherefore"));
});

test("signed directed presence through Prosody is delivered and verified", { timeout: 30_000 }, async () => {
  await alice.client.sendPresence(el("presence", {}, el("show", {}, "away"), el("status", {}, "retired to the chamber")), bob.conn.jid, { encrypt: false });
  const ev = await waitFor(ofType(bob, "presence"), "bob's presence");
  assert.equal(ev.type, "presence");
  if (ev.type !== "presence") return;
  assert.equal(ev.signedBy, "alice@localhost");
  assert.equal(ev.encrypted, false);
  assert.equal(ev.stanza.getChildText("show"), "away");
  assert.equal(ev.stanza.getChildText("status"), "retired to the chamber");
});

test("tampered, replayed and wrongly addressed objects are rejected with typed errors", { timeout: 30_000 }, async () => {
  // Produce protected stanzas without sending them, then send variants raw.
  const session = alice.client.session;
  await session.sendMessage(bob.conn.jid, el("message", { type: "chat" }, el("body", {}, "pay 10 euros")), { encrypt: false });
  await session.sendMessage(parseJid("plain@localhost"), el("message", { type: "chat" }, el("body", {}, "for plain only")), { encrypt: false });
  const [signedForBob, signedForPlain] = session.drain().flatMap((o) => (o.kind === "send" ? [o.stanza] : []));
  assert.ok(signedForBob && signedForPlain);
  // Tampered: the signed text changed in transit.
  const tampered = parseXml(signedForBob.toString());
  const e2e = findE2e(tampered);
  assert.ok(e2e);
  e2e.children = [e2e.getText().replace("pay 10 euros", "pay 99 euros")];
  await alice.conn.send(tampered);
  const r1 = await waitFor(ofType(bob, "rejected", 1), "tamper rejection");
  assert.equal(r1.type === "rejected" && r1.error.condition, "signature-unverified");
  const err = await waitFor(ofType(alice, "peer-error", 1), "alice's error reply");
  assert.equal(err.type === "peer-error" && err.e2eCondition, "signature-unverified");
  assert.equal(err.type === "peer-error" && err.condition, "not-acceptable");
  // Replayed: the genuine stanza twice.
  await alice.conn.send(parseXml(signedForBob.toString()));
  await waitFor(ofType(bob, "message", 2), "genuine delivery");
  await alice.conn.send(parseXml(signedForBob.toString()));
  const r2 = await waitFor(ofType(bob, "rejected", 2), "replay rejection");
  assert.equal(r2.type === "rejected" && r2.error.condition, "replayed");
  // Wrongly addressed: an object for plain@localhost sent to Bob.
  const misdirected = parseXml(signedForPlain.toString());
  misdirected.attrs.to = bob.conn.jid;
  await alice.conn.send(misdirected);
  const r3 = await waitFor(ofType(bob, "rejected", 3), "wrong-recipient rejection");
  assert.equal(r3.type === "rejected" && r3.error.condition, "wrong-recipient");
  assert.match(r3.type === "rejected" ? r3.error.message : "", /^wrong-recipient: /);
});

test("a client without support sees the fallback body; its service-unavailable reaches the sender", { timeout: 30_000 }, async () => {
  const id = await alice.client.sendMessage(plain.jid, "top secret");
  const got = await waitFor(() => plainSeen.find((s) => s.attrs.id === id), "plain client's message");
  assert.match(got.getChildText("body") ?? "", /encrypted/);
  assert.ok(!got.toString().includes("top secret"));
  assert.ok(got.getChild("e2e", NS_E2E));
  await plain.send(errorReply(got, "service-unavailable", "cancel"));
  const ev = await waitFor(() => alice.events.find((e) => e.type === "peer-error" && e.id === id), "peer-error");
  assert.equal(ev.type === "peer-error" && ev.unsupported, true);
  // Signed-only messages stay readable for it (RFC 2779 2.5.4: clients that do not use it keep working).
  const id2 = await alice.client.sendMessage(plain.jid, "hello in clear, signed", { encrypt: false });
  const got2 = await waitFor(() => plainSeen.find((s) => s.attrs.id === id2), "plain client's signed message");
  assert.equal(got2.getChildText("body"), "hello in clear, signed");
});
