/**
 * XEP-0187 offline ESession core: options round trip, signatures, start/accept, ten
 * messages in one offline session, replay of the start and of a later stanza, expiry,
 * unknown options, wrong publisher key, receive-only receiver.
 *
 * Spec: XEP-0187 v0.5 sections 3.1-3.4, 4, 5, 6.1.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { parseFullJid, type ThreadId } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { offlineInitOf, parseOfflineInit, parseOfflineOptions } from "../../src/offline/codec.js";
import { OfflineError } from "../../src/offline/errors.js";
import { acceptOfflineSession, createOfflineOptions, startOfflineSession, verifyOfflineOptions } from "../../src/offline/session.js";
import { DEFAULT_POLICY, type ESession } from "../../src/esession/session.js";
import { el, type Element, parseXml } from "../../src/xml/index.js";

const crypto = nodeCrypto;
const bobKey = createIdentityKey("ed25519", 0);
const aliceKey = createIdentityKey("ed25519", 0);
const bob = signingIdentity(bobKey);
const alice = signingIdentity(aliceKey);
const verifier = keyVerifier();
const bobJid = parseFullJid("bob@example.org/phone");
const aliceJid = parseFullJid("alice@example.org/laptop");

function setup(seed: string) {
  const clock = new VirtualClock(1_700_000_000_000);
  const random = new SeededRandom(crypto, seed);
  // Bob publishes one-time options and goes offline.
  const { x, secret } = createOfflineOptions({ crypto, random, clock, identity: bob, lifetimeMs: 86_400_000 });
  const wire = parseXml(x.toString());
  return { clock, random, wire, secret };
}

function sends(s: ESession): Element[] {
  return s.drain().flatMap((o) => (o.kind === "send" ? [o.stanza] : []));
}

function bodies(s: ESession): string[] {
  return s.drain().flatMap((o) => (o.kind === "event" && o.event.type === "stanza" ? [o.event.stanza.getChildText("body") ?? ""] : []));
}

test("options: signed, parsed back, no iq, expiry; a wrong key does not verify", () => {
  const { wire } = setup("a");
  const o = parseOfflineOptions(wire);
  assert.ok(!o.stanzas.includes("iq"));
  assert.equal(o.signs.length, 1);
  assert.ok(verifyOfflineOptions(o, [bob.keyValue], verifier, false, crypto));
  assert.throws(() => verifyOfflineOptions(o, [alice.keyValue], verifier, false, crypto), (e: unknown) => e instanceof OfflineError && e.condition === "unsigned");
  // Tampering with any signed field breaks the signature.
  const tampered = parseXml(wire.toString().replace("aes256-ctr", "aes128-ctr"));
  const t = parseOfflineOptions(tampered);
  assert.throws(() => verifyOfflineOptions(t, [bob.keyValue], verifier, false, crypto), OfflineError);
});

test("ten messages in one offline session; replays of the start and of a later stanza are rejected; receive-only", () => {
  const { clock, random, wire, secret } = setup("b");
  const o = parseOfflineOptions(wire);
  const pk = verifyOfflineOptions(o, [bob.keyValue], verifier, false, crypto);
  const sender = startOfflineSession({
    crypto, random, clock, local: aliceJid, peer: parseFullJid("bob@example.org/x") , thread: "t1" as ThreadId,
    options: o, ...(pk ? { publisherKey: pk } : {}), identity: alice, verifier,
  });
  assert.equal(sender.isActive, true);
  const est = sender.drain().find((x) => x.kind === "event" && x.event.type === "established");
  assert.ok(est && est.kind === "event" && est.event.type === "established" && est.event.offline === "sender");
  const wireMsgs: Element[] = [];
  for (let i = 0; i < 10; i++) {
    sender.send(el("message", { type: "chat" }, el("body", {}, `offline secret ${i}`)));
    wireMsgs.push(...sends(sender).map((s) => parseXml(s.toString())));
  }
  assert.equal(wireMsgs.length, 10);
  assert.ok(offlineInitOf(wireMsgs[0]!));
  assert.ok(!offlineInitOf(wireMsgs[1]!));
  for (const m of wireMsgs) assert.ok(!m.toString().includes("offline secret"));
  // Bob is back: accepts the session from the first stanza and reads all ten.
  const init = parseOfflineInit(offlineInitOf(wireMsgs[0]!)!);
  const receiver = acceptOfflineSession({
    crypto, random, clock, local: bobJid, peer: aliceJid, thread: "t1" as ThreadId, init, secret, verifier, allowUnauthenticated: false,
  });
  const ev = receiver.drain().find((x) => x.kind === "event" && x.event.type === "established");
  assert.ok(ev && ev.kind === "event" && ev.event.type === "established" && ev.event.peerKey);
  const got: string[] = [];
  for (const m of wireMsgs) {
    receiver.handleStanza(m);
    got.push(...bodies(receiver));
  }
  assert.deepEqual(got, Array.from({ length: 10 }, (_, i) => `offline secret ${i}`));
  // The receiver never sends inside it (XEP-0187 section 4).
  assert.throws(() => receiver.send(el("message", {}, el("body", {}, "no"))), /receive-only/);
  // A replayed later stanza fails the MAC check.
  receiver.handleStanza(parseXml(wireMsgs[4]!.toString()));
  const out = receiver.drain();
  assert.ok(out.some((x) => x.kind === "event" && x.event.type === "failed" && x.event.error.condition === "bad-mac"));
});

test("accept refuses expired options, another publisher's secret, and an unauthenticated sender unless allowed", () => {
  const { clock, random, wire, secret } = setup("c");
  const o = parseOfflineOptions(wire);
  const sender = startOfflineSession({ crypto, random, clock, local: aliceJid, peer: bobJid, thread: "t2" as ThreadId, options: o, verifier });
  sender.send(el("message", { type: "chat" }, el("body", {}, "hi")));
  const first = sends(sender)[0]!;
  const init = parseOfflineInit(offlineInitOf(first)!);
  const base = { crypto, random, clock, local: bobJid, peer: aliceJid, thread: "t2" as ThreadId, init, verifier };
  assert.throws(() => acceptOfflineSession({ ...base, secret, allowUnauthenticated: false }), (e: unknown) => e instanceof OfflineError && e.condition === "identity-mismatch");
  const s = acceptOfflineSession({ ...base, secret, allowUnauthenticated: true });
  s.drain();
  s.handleStanza(first);
  assert.deepEqual(bodies(s), ["hi"]);
  const other = createOfflineOptions({ crypto, random, clock, identity: bob, lifetimeMs: 1000 }).secret;
  assert.throws(() => acceptOfflineSession({ ...base, secret: other, allowUnauthenticated: true }), (e: unknown) => e instanceof OfflineError && e.condition === "unknown-options");
  clock.advance(2 * 86_400_000);
  assert.throws(() => acceptOfflineSession({ ...base, secret, allowUnauthenticated: true }), (e: unknown) => e instanceof OfflineError && e.condition === "expired");
  assert.throws(() => startOfflineSession({ crypto, random, clock, local: aliceJid, peer: bobJid, thread: "t3" as ThreadId, options: o }), (e: unknown) => e instanceof OfflineError && e.condition === "expired");
  assert.ok(DEFAULT_POLICY.groups.length > 0);
});
