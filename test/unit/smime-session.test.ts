/**
 * The ObjectSession core, driven directly (sans-IO) with a virtual clock: signed and
 * encrypted messages, signed broadcast presence, encrypted directed presence, and every
 * rejection with its typed condition and RFC 3923 section 7 error reply: tampered,
 * replayed (also across a restart with the SQLite cache), wrongly addressed, stale,
 * unsigned, a certificate for another address, an untrusted certificate; error replies
 * from a peer without support. Also the replay caches and the certificate store.
 *
 * Spec: draft-ietf-xmpp-e2e-03 sections 3-4 and 2 (RFC 2779 2.5.1-2.5.4); RFC 3923
 * sections 6.3, 6.9, 7.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type FullJid, parseFullJid, parseJid } from "../../src/core/types.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { nodeCrypto, systemClock, systemRandom } from "../../src/crypto/node.js";
import { generateIdentity } from "../../src/smime/certs.js";
import { FileCertificateStore, MemoryCertificateStore } from "../../src/smime/certstore.js";
import type { SmimeIdentity } from "../../src/smime/cms.js";
import { findE2e, NS_E2E } from "../../src/smime/e2e.js";
import { SmimeError } from "../../src/smime/errors.js";
import { type ObjectEvent, ObjectSession, type ObjectPolicy } from "../../src/smime/session.js";
import { MemoryReplayCache, type ReplayCache } from "../../src/store/replay.js";
import { openSqliteReplayCache } from "../../src/store/replay-sqlite.js";
import { el, type Element, normalize, parseXml } from "../../src/xml/index.js";

const ALICE = parseFullJid("alice@example.org/phone");
const BOB = parseFullJid("bob@example.net/desk");
const EVE = parseFullJid("eve@example.com/lair");
const env = { random: systemRandom, clock: systemClock };
let alice: SmimeIdentity, bob: SmimeIdentity, eve: SmimeIdentity, bobRsa: SmimeIdentity;
let dir: string;

before(async () => {
  alice = await generateIdentity({ jid: ALICE, keyType: "ec-p256" }, env);
  bob = await generateIdentity({ jid: BOB, keyType: "ec-p256" }, env);
  bobRsa = await generateIdentity({ jid: BOB, keyType: "rsa-2048" }, env);
  eve = await generateIdentity({ jid: EVE, keyType: "ec-p256" }, env);
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-smime-unit-"));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Party {
  readonly jid: FullJid;
  readonly session: ObjectSession;
  readonly events: ObjectEvent[];
  readonly sent: Element[];
  readonly certs: MemoryCertificateStore;
}

async function party(jid: FullJid, id: SmimeIdentity, trusted: SmimeIdentity[], clock: VirtualClock, opts: { replay?: ReplayCache; policy?: Partial<ObjectPolicy>; extra?: SmimeIdentity[] } = {}): Promise<Party> {
  const certs = new MemoryCertificateStore();
  for (const t of trusted) await certs.add(t.certificate, { anchor: true });
  const session = new ObjectSession({
    self: jid,
    identity: id,
    certificates: certs,
    replay: opts.replay ?? new MemoryReplayCache(),
    clock,
    random: new SeededRandom(nodeCrypto, jid),
    ...(opts.extra ? { extraIdentities: opts.extra } : {}),
    ...(opts.policy ? { policy: opts.policy } : {}),
  });
  return { jid, session, events: [], sent: [], certs };
}

function drain(p: Party): void {
  for (const o of p.session.drain()) if (o.kind === "send") p.sent.push(o.stanza);
  else p.events.push(o.event);
}

/** What the server does: serialize, parse (CRLF becomes LF in XML), stamp 'from'. */
function wire(s: Element, from: FullJid, to?: string): Element {
  const x = parseXml(s.toString().replace(/\r\n/g, "\n"));
  x.attrs.from = from;
  if (to !== undefined) x.attrs.to = to;
  return x;
}

async function deliver(from: Party, to: Party, stanza?: Element): Promise<ObjectEvent | undefined> {
  const s = stanza ?? from.sent.shift();
  assert.ok(s, "nothing sent");
  const before = to.events.length;
  assert.equal(await to.session.receive(wire(s, from.jid, to.jid)), true);
  drain(to);
  return to.events[before];
}

function condition(e: ObjectEvent | undefined): string | undefined {
  return e?.type === "rejected" ? e.error.condition : undefined;
}

test("signed + encrypted message (EC and RSA recipients, our own devices too) is delivered and verified", async () => {
  const clock = new VirtualClock(Date.now());
  const a = await party(ALICE, alice, [bob, bobRsa], clock);
  const b = await party(BOB, bob, [alice], clock, { extra: [bobRsa] });
  const msg = el("message", { xmlns: "jabber:client", type: "chat" }, el("subject", {}, "Imploring"), el("body", {}, "Wherefore art thou?\nsecond line"));
  await a.session.sendMessage(BOB, msg);
  drain(a);
  const wireStanza = a.sent[0];
  assert.ok(wireStanza);
  assert.ok(!wireStanza.toString().includes("Wherefore"), "no plaintext on the wire");
  assert.match(wireStanza.getChildText("body") ?? "", /encrypted/);
  const ev = await deliver(a, b);
  assert.equal(ev?.type, "message");
  if (ev?.type !== "message") return;
  assert.equal(ev.signedBy, "alice@example.org");
  assert.equal(ev.encrypted, true);
  assert.deepEqual(ev.layers, ["enveloped", "signed"]);
  assert.equal(normalize(ev.stanza.children), "<subject>Imploring</subject><body>Wherefore art thou?\nsecond line</body>");
  assert.equal(ev.stanza.attrs.type, "chat");
  // The same object decrypts with Bob's RSA identity alone (several recipients).
  const b2 = await party(BOB, bobRsa, [alice], clock);
  await a.session.sendMessage(BOB, msg, { cipher: "aes-256-gcm" });
  drain(a);
  const ev2 = await deliver(a, b2);
  assert.equal(ev2?.type, "message");
  assert.deepEqual(ev2?.type === "message" ? ev2.layers : [], ["authEnveloped", "signed"]);
});

test("signed broadcast presence and encrypted directed presence are verified", async () => {
  const clock = new VirtualClock(Date.now());
  const a = await party(ALICE, alice, [bob], clock);
  const b = await party(BOB, bob, [alice], clock);
  await a.session.sendPresence(el("presence", {}, el("show", {}, "away"), el("status", {}, "at the balcony")));
  drain(a);
  assert.equal(a.sent[0]?.attrs.to, undefined);
  const ev = await deliver(a, b);
  assert.equal(ev?.type, "presence");
  if (ev?.type !== "presence") return;
  assert.equal(ev.encrypted, false);
  assert.equal(ev.signedBy, "alice@example.org");
  assert.equal(normalize(ev.stanza.children), "<show>away</show><status>at the balcony</status>");
  await a.session.sendPresence(el("presence", {}, el("show", {}, "dnd")), BOB);
  drain(a);
  const ev2 = await deliver(a, b);
  assert.equal(ev2?.type === "presence" && ev2.encrypted, true);
  await assert.rejects(a.session.sendPresence(el("presence"), undefined, { encrypt: true }), (e: unknown) => e instanceof SmimeError && e.condition === "bad-request");
});

test("tampered objects are rejected with typed errors and RFC 3923 error replies", async () => {
  const clock = new VirtualClock(Date.now());
  const a = await party(ALICE, alice, [bob], clock);
  const b = await party(BOB, bob, [alice], clock);
  // Signed only: change one character of the signed text.
  await a.session.sendMessage(BOB, el("message", { type: "chat" }, el("body", {}, "pay 10 euros")), { encrypt: false });
  drain(a);
  const signed = a.sent.shift();
  assert.ok(signed);
  const e2e = findE2e(signed);
  assert.ok(e2e);
  e2e.children = [e2e.getText().replace("pay 10 euros", "pay 99 euros")];
  const ev = await deliver(a, b, signed);
  assert.equal(condition(ev), "signature-unverified");
  const reply = b.sent.shift();
  assert.ok(reply);
  assert.equal(reply.attrs.type, "error");
  assert.ok(reply.getChild("error")?.getChild("not-acceptable"));
  assert.ok(reply.getChild("error")?.getChild("signature-unverified", NS_E2E));
  // Encrypted: flip a base64 character in the ciphertext.
  await a.session.sendMessage(BOB, el("message", {}, el("body", {}, "secret")), { cipher: "aes-128-gcm" });
  drain(a);
  const enc = a.sent.shift();
  assert.ok(enc);
  const e = findE2e(enc);
  assert.ok(e);
  const text = e.getText();
  const lines = text.split("\r\n");
  const i = lines.length - 4;
  const line = lines[i] ?? "";
  lines[i] = `${line.slice(0, 10)}${line[10] === "A" ? "B" : "A"}${line.slice(11)}`;
  e.children = [lines.join("\r\n")];
  const ev2 = await deliver(a, b, enc);
  assert.ok(["decryption-failed", "malformed"].includes(condition(ev2) ?? ""), String(condition(ev2)));
  const reply2 = b.sent.shift();
  assert.ok(reply2?.getChild("error")?.getChild("bad-request"));
});

test("replayed objects are rejected (memory, and SQLite across a restart); replies stay silent", async () => {
  const clock = new VirtualClock(Date.now());
  const path = join(dir, "replay.db");
  const cache = openSqliteReplayCache(path);
  const a = await party(ALICE, alice, [bob], clock);
  const b = await party(BOB, bob, [alice], clock, { replay: cache });
  await a.session.sendMessage(BOB, el("message", {}, el("body", {}, "once")));
  drain(a);
  const s = a.sent.shift();
  assert.ok(s);
  assert.equal((await deliver(a, b, s))?.type, "message");
  assert.equal(condition(await deliver(a, b, s)), "replayed");
  assert.equal(b.sent.length, 0, "no error reply to a replay");
  await cache.close();
  // A restarted client with the same cache file still recognises it.
  const cache2 = openSqliteReplayCache(path);
  const b2 = await party(BOB, bob, [alice], clock, { replay: cache2 });
  clock.advance(60_000);
  assert.equal(condition(await deliver(a, b2, s)), "replayed");
  // After the window, the timestamp check rejects it (and the cache may forget it).
  clock.advance(10 * 60_000);
  assert.equal(condition(await deliver(a, b2, s)), "bad-timestamp");
  const reply = b2.sent.at(-1);
  assert.ok(reply?.getChild("error")?.getChild("bad-timestamp", NS_E2E));
  await cache2.close();
});

test("wrongly addressed, unsigned, foreign-address and untrusted objects are rejected", async () => {
  const clock = new VirtualClock(Date.now());
  const a = await party(ALICE, alice, [bob, eve], clock);
  const b = await party(BOB, bob, [alice], clock);
  const e = await party(EVE, eve, [alice], clock);
  // Alice's signed+encrypted object for Eve, replayed by Eve to Bob (encrypted to Eve only,
  // so it cannot even be decrypted; a signed-only one shows the address check).
  await a.session.sendMessage(parseJid("eve@example.com"), el("message", {}, el("body", {}, "for eve")), { encrypt: false });
  drain(a);
  const forEve = a.sent.shift();
  assert.ok(forEve);
  assert.equal((await deliver(a, e, forEve))?.type, "message");
  assert.equal(condition(await deliver(a, b, forEve)), "wrong-recipient");
  // Unsigned (encrypted only) while signatures are required.
  await a.session.sendMessage(BOB, el("message", {}, el("body", {}, "x")), { sign: false });
  drain(a);
  assert.equal(condition(await deliver(a, b)), "not-protected");
  // Eve signs with her own (trusted) certificate but the stanza claims to be from Alice.
  await e.session.sendMessage(BOB, el("message", {}, el("body", {}, "I am alice")), { encrypt: false });
  drain(e);
  assert.equal(condition(await deliver(a, b, e.sent.shift())), "address-mismatch");
  // Eve's certificate is not trusted by Bob.
  assert.equal(condition(await deliver(e, b, (await e.session.sendMessage(BOB, el("message", {}, el("body", {}, "hi")), { encrypt: false }), drain(e), e.sent.shift()))), "untrusted-certificate");
  // Bob has no certificate for Carol: nothing is sent.
  await assert.rejects(a.session.sendMessage(parseJid("carol@example.org"), el("message", {}, el("body", {}, "x"))), (x: unknown) => x instanceof SmimeError && x.condition === "no-recipient-certificate");
  // Malformed <e2e/> content.
  const junk = el("message", { xmlns: "jabber:client", to: BOB, type: "chat", id: "j1" }, el("e2e", { xmlns: NS_E2E }, "not mime at all"));
  assert.equal(condition(await deliver(a, b, junk)), "malformed");
});

test("a peer without support: error replies become peer-error events; clear stanzas are not claimed", async () => {
  const clock = new VirtualClock(Date.now());
  const a = await party(ALICE, alice, [bob], clock);
  const id = await a.session.sendMessage(BOB, el("message", {}, el("body", {}, "hello")));
  drain(a);
  const err = el("message", { xmlns: "jabber:client", type: "error", id, from: BOB, to: ALICE }, el("error", { type: "cancel" }, el("service-unavailable", { xmlns: "urn:ietf:params:xml:ns:xmpp-stanzas" })));
  assert.equal(await a.session.receive(err), true);
  drain(a);
  const ev = a.events.at(-1);
  assert.equal(ev?.type, "peer-error");
  assert.equal(ev?.type === "peer-error" && ev.unsupported, true);
  assert.equal(await a.session.receive(el("message", { from: BOB, to: ALICE }, el("body", {}, "plain"))), false);
});

test("replay caches and the file certificate store", async () => {
  for (const c of [new MemoryReplayCache(2), openSqliteReplayCache(":memory:")]) {
    assert.equal(await c.checkAndRecord("a", "b", "1", 10), true);
    assert.equal(await c.checkAndRecord("a", "b", "1", 11), false);
    assert.equal(await c.checkAndRecord("a", "c", "1", 12), true);
    assert.equal(await c.expire(11), 1);
    assert.equal(await c.checkAndRecord("a", "b", "1", 13), true);
    await c.close();
  }
  const path = join(dir, "certs.json");
  const s = new FileCertificateStore(path);
  await s.add(alice.certificate, { anchor: true });
  await s.add(bob.certificate);
  const s2 = new FileCertificateStore(path);
  assert.deepEqual(await s2.anchors(), [alice.certificate]);
  assert.deepEqual(await s2.certificatesFor(parseJid("BOB@example.net/x")), [bob.certificate]);
  await s2.remove(bob.certificate);
  assert.deepEqual(await new FileCertificateStore(path).certificatesFor(BOB), []);
});
