/**
 * XEP-0210 "Requirements for Encrypted Sessions" v0.2: one test per requirement, each
 * asserting the property itself (what an attacker can or cannot do), not merely that code
 * runs. Offline sessions (4.6), interoperability through CPIM gateways (4.7) and object
 * encryption (4.8) are shown by the tests of their own layers (XEP-0187, RFC 3923).
 *
 * Spec: XEP-0210 sections 3.1-3.10 and 4.1-4.5; the mechanisms are XEP-0116/0217/0200.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ClientEvent } from "../../src/client/secure-client.js";
import { equalBytes, fromBase64, toBase64, utf8 } from "../../src/core/bytes.js";
import { BlockCounter } from "../../src/esession/keys.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { normalizedKey } from "../../src/esession/identity.js";
import { el, NS, normalize, parseXml } from "../../src/xml/index.js";
import { makePair, type Pair } from "../sim/pair.js";
import { installMitm } from "../sim/mitm.js";
import { rsaIdentity, rsaVerifier } from "../support/rsa-identity.js";

type Est = Extract<ClientEvent, { type: "established" }>;

async function establish(p: Pair): Promise<{ a: Est; b: Est }> {
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  await est;
  const a = p.aliceEvents.filter((e): e is Est => e.type === "established").at(-1);
  const b = p.bobEvents.filter((e): e is Est => e.type === "established").at(-1);
  assert.ok(a && b);
  return { a, b };
}

async function end(p: Pair): Promise<void> {
  await Promise.all([p.alice.terminate(p.bobJid), p.settle()]);
  await p.settle();
}

const failures = (evs: readonly ClientEvent[]) => evs.flatMap((e) => (e.type === "failed" ? [e.error.condition] : []));
const alerts = (evs: readonly ClientEvent[]) => evs.flatMap((e) => (e.type === "alert" ? [e.alert] : []));

test("3.1 Confidentiality: the server sees routing data only; equal plaintexts never give equal ciphertexts", async () => {
  const p = makePair({ seed: "r31" });
  await establish(p);
  const secrets = ["attack at dawn", "attack at dawn", "the vault code is 4711", "<x>markup</x> & entities"];
  for (const s of secrets) await p.alice.sendMessage(p.bobJid, s);
  await p.alice.send(p.bobJid, el("iq", { type: "set", id: "i1" }, el("query", { xmlns: "urn:example:private" }, "payload-in-iq")));
  await p.settle();
  assert.equal(p.bodies("bob").length, 4);
  const enc = p.relayed.filter((r) => r.stanza.getChild("c", NS.c));
  for (const r of enc) {
    for (const s of [...secrets, "payload-in-iq", "urn:example:private", "vault", "markup"]) assert.ok(!r.text.includes(s), `leaked ${s}`);
    // Only what routing needs stays outside <c/>: attributes, thread, fallback body.
    const clear = r.stanza.children.filter((c) => typeof c !== "string").map((c) => (c as { name: string }).name).sort();
    for (const name of clear) assert.ok(["body", "c", "thread"].includes(name), `clear child ${name}`);
  }
  const data = enc.map((r) => r.stanza.getChild("c", NS.c)?.getChildText("data"));
  assert.equal(new Set(data).size, data.length, "two identical messages encrypted identically");
});

test("3.2 Integrity: any change, removal or insertion is detected and nothing altered is delivered", async () => {
  // Flip one bit at several positions of <data/> and of <mac/>, and truncate.
  const mutations: Array<(c: import("../../src/xml/index.js").Element) => void> = [
    (c) => flip(c, "data", 0),
    (c) => flip(c, "data", 7),
    (c) => flip(c, "mac", 3),
    (c) => {
      const d = c.getChild("data");
      const b = fromBase64(d?.getText() ?? "") ?? new Uint8Array();
      d?.children.splice(0, d.children.length, toBase64(b.subarray(0, b.length - 1)));
    },
  ];
  for (const [i, mutate] of mutations.entries()) {
    const p = makePair({ seed: `r32-${i}` });
    await establish(p);
    let done = false;
    p.board.setAdversary((item) => {
      if (done || !item.stanza.getChild("c", NS.c)) return { action: "deliver" };
      done = true;
      const s = parseXml(item.stanza.toString());
      const c = s.getChild("c", NS.c);
      if (c) mutate(c);
      return { action: "replace", stanza: s };
    });
    await p.alice.sendMessage(p.bobJid, "transfer 10 EUR");
    await p.settle();
    assert.deepEqual(p.bodies("bob"), [], `mutation ${i} delivered`);
    assert.deepEqual(failures(p.bobEvents), ["bad-mac"]);
  }
  // Removal: dropping one stanza makes the next one fail; insertion of a foreign one fails.
  const p = makePair({ seed: "r32-drop" });
  await establish(p);
  let dropped = false;
  p.board.setAdversary((item) => (!dropped && item.stanza.getChild("c", NS.c) ? ((dropped = true), { action: "drop" }) : { action: "deliver" }));
  await p.alice.sendMessage(p.bobJid, "one");
  await p.alice.sendMessage(p.bobJid, "two");
  await p.settle();
  assert.deepEqual(p.bodies("bob"), []);
  assert.deepEqual(failures(p.bobEvents), ["bad-mac"]);
});

function flip(c: import("../../src/xml/index.js").Element, child: string, byte: number): void {
  const e = c.getChild(child);
  const b = fromBase64(e?.getText() ?? "");
  if (!e || !b) return;
  b[byte] = (b[byte] ?? 0) ^ 1;
  e.children.splice(0, e.children.length, toBase64(b));
}

test("3.3 Replay protection: a resent stanza and a replayed negotiation are both rejected", async () => {
  const p = makePair({ seed: "r33" });
  await establish(p);
  const captured: import("../../src/xml/index.js").Element[] = [];
  p.board.tap((r) => {
    if (r.stanza.getChild("c", NS.c) && !r.injected) captured.push(r.stanza);
  });
  await p.alice.sendMessage(p.bobJid, "pay Bob 100");
  await p.alice.sendMessage(p.bobJid, "later");
  await p.settle();
  const first = captured[0];
  assert.ok(first);
  p.board.inject(p.aliceJid, parseXml(first.toString()));
  await p.settle();
  assert.deepEqual(p.bodies("bob"), ["pay Bob 100", "later"], "the replay was delivered");
  assert.deepEqual(failures(p.bobEvents), ["bad-mac"]);

  // A whole recorded negotiation replayed to Bob: Bob's fresh nonce and d make Alice's old
  // identity message worthless, so no session is established for the attacker.
  const q = makePair({ seed: "r33-neg" });
  const wire: import("../../src/xml/index.js").Element[] = [];
  q.board.tap((r) => {
    if (r.from === q.aliceJid && !r.injected) wire.push(parseXml(r.text));
  });
  await establish(q);
  await end(q);
  const bobEstablished = q.bobEvents.filter((e) => e.type === "established").length;
  for (const s of wire.slice(0, 2)) q.board.inject(q.aliceJid, s);
  await q.settle();
  assert.equal(q.bobEvents.filter((e) => e.type === "established").length, bobEstablished, "replayed negotiation established a session");
});

test("3.4 Perfect forward secrecy: re-keying replaces the keys, and ending a session wipes them", async () => {
  const p = makePair({ seed: "r34" });
  await establish(p);
  const channel = p.alice.session(p.bobJid)?.channel;
  assert.ok(channel);
  const internals = channel as unknown as { sendKeys: { kc: Uint8Array; km: Uint8Array } };
  const before = internals.sendKeys.kc.slice();
  await p.alice.rekey(p.bobJid);
  await p.alice.sendMessage(p.bobJid, "after re-key");
  await p.settle();
  assert.deepEqual(p.bodies("bob"), ["after re-key"]);
  const after = internals.sendKeys.kc;
  assert.notDeepEqual(Array.from(after), Array.from(before), "the re-key did not change the cipher key");
  // The old key buffer was overwritten when the new one took over.
  const keysAtEnd = [internals.sendKeys.kc, internals.sendKeys.km];
  await end(p);
  for (const k of keysAtEnd) assert.ok(k.every((b) => b === 0), "a key survived the end of the session");
  // The long-term state left behind (the retained secret) is not a session key: it is a
  // one-way HMAC of K, and the next session's keys also depend on a fresh DH exchange.
  const rs = await p.aliceStore.list("alice@example.org" as never, "bob@example.com" as never);
  assert.equal(rs.length, 1);
  assert.notDeepEqual(Array.from(rs[0]?.secret ?? []), Array.from(before));
});

test("3.5 PKI independence: authenticated sessions with no keys at all, and external keys when available", async () => {
  const p = makePair({ seed: "r35" });
  const { a, b } = await establish(p);
  assert.equal(a.initPubkey, "none");
  assert.equal(a.respPubkey, "none");
  assert.equal(a.sas, b.sas, "the SAS authenticates without any PKI");
  await end(p);
  const second = await establish(p);
  assert.ok(second.a.retainedSecretMatched && second.b.retainedSecretMatched, "retained secrets carry trust forward");
  const aliceKey = rsaIdentity();
  const bobKey = rsaIdentity();
  const q = makePair({
    seed: "r35-keys",
    alice: { identity: aliceKey, verifier: rsaVerifier(), policy: { offerPubkey: ["key"], acceptPubkey: ["key"] } },
    bob: { identity: bobKey, verifier: rsaVerifier(), policy: { acceptPubkey: ["key"] } },
  });
  const k = await establish(q);
  assert.equal(normalizedKey(k.a.peerKey?.keyValue ?? el("x")), normalizedKey(bobKey.keyValue));
});

test("3.6 Authentication: a man in the middle is exposed by the SAS, by retained secrets, and by the other secret", async () => {
  // First an honest session, so that both sides retain a secret.
  const p = makePair({ seed: "r36" });
  const honest = await establish(p);
  assert.equal(honest.a.sas, honest.b.sas);
  await end(p);
  // Now Mallory sits in the middle.
  const mitm = installMitm(p.board, p.aliceJid, p.bobJid, p.clock);
  const { a, b } = await establish(p);
  await p.alice.sendMessage(p.bobJid, "for Bob only");
  await p.settle();
  assert.deepEqual(mitm.read, ["for Bob only"], "the harness really is in the middle");
  assert.notEqual(a.sas, b.sas, "the SAS did not change under a man in the middle");
  assert.equal(a.retainedSecretMatched, false);
  assert.equal(b.retainedSecretMatched, false);
  assert.ok(alerts(p.aliceEvents).includes("retained-secret-mismatch"), "alice was not alerted");
  assert.ok(alerts(p.bobEvents).includes("retained-secret-mismatch"), "bob was not alerted");
  // With an Other Shared Secret Mallory cannot complete either side: the OSS enters the
  // final keys, so Alice rejects "Bob's" identity (message 4) and Mallory cannot verify the
  // real Bob's; nothing Bob then sends is readable by him.
  const oss = utf8("our pub, the Tuesday before");
  const q = makePair({ seed: "r36-oss", alice: { otherSecret: oss }, bob: { otherSecret: oss } });
  const m2 = installMitm(q.board, q.aliceJid, q.bobJid, q.clock, { otherSecret: utf8("guess") });
  const est = q.alice.startSession(q.bobJid);
  est.catch(() => undefined);
  await q.settle();
  await assert.rejects(est, /identity-mismatch/);
  assert.ok(m2.failures.includes("identity-mismatch"), "mallory verified the real Bob");
  await q.bob.sendMessage(q.aliceJid, "for Alice only").catch(() => undefined);
  await q.settle();
  assert.deepEqual(m2.read, [], "mallory read Bob's message");
});

test("3.7 Identity protection: keys never cross in the clear, rshashes do not link sessions, Bob reveals himself only to a verified Alice", async () => {
  const aliceKey = rsaIdentity();
  const bobKey = rsaIdentity();
  const opts = {
    alice: { identity: aliceKey, verifier: rsaVerifier(), policy: { offerPubkey: ["key" as const], acceptPubkey: ["key" as const] } },
    bob: { identity: bobKey, verifier: rsaVerifier(), policy: { acceptPubkey: ["key" as const] } },
  };
  const p = makePair({ seed: "r37", ...opts });
  await establish(p);
  await end(p);
  await establish(p);
  for (const k of [aliceKey, bobKey]) {
    const mod = k.keyValue.getChild("RSAKeyValue")?.getChildText("Modulus") ?? "";
    for (const r of p.relayed) assert.ok(!r.text.includes(mod.slice(10, 50)), "a public key crossed in the clear");
  }
  const rsh = p.relayed.flatMap((r) =>
    r.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").filter((f) => f.attrs.var === "rshashes").flatMap((f) => f.getChildren("value").map((v) => v.getText())) ?? [],
  );
  assert.equal(new Set(rsh).size, rsh.length, "an rshash value repeated across sessions links them");
  // SIGMA-R: someone who cannot prove Alice's identity never receives Bob's (message 4).
  const q = makePair({ seed: "r37-probe", ...opts, alice: { ...opts.alice, identity: rsaIdentity() } });
  (q.bob as unknown as { o: { verifier: unknown } }).o.verifier = rsaVerifier([], (k) => normalizedKey(k.keyValue) === normalizedKey(aliceKey.keyValue));
  const est = q.alice.startSession(q.bobJid);
  est.catch(() => undefined);
  await q.settle();
  assert.ok(!q.relayed.some((r) => r.stanza.getChild("init", NS.esessionInit)), "Bob sent his identity to an unverified initiator");
});

test("3.8 Repudiability: published old MAC keys let anyone forge a valid MAC for past stanzas", async () => {
  const p = makePair({ seed: "r38" });
  await establish(p);
  await p.alice.sendMessage(p.bobJid, "I never said this");
  await p.alice.rekey(p.bobJid);
  await p.settle();
  await p.bob.sendMessage(p.aliceJid, "ack"); // carries <new>1</new> and Alice's old MAC key
  await p.settle();
  await p.alice.sendMessage(p.bobJid, "and more"); // Alice publishes hers too
  await p.settle();
  const old = p.relayed.flatMap((r) => r.stanza.getChild("c", NS.c)?.getChildren("old").map((o) => fromBase64(o.getText())) ?? []);
  assert.ok(old.length > 0, "no old MAC key was published");
  // What an eavesdropper has: every relayed <c/> and the initial counter C_A, which Bob's
  // response form carries in the clear (C_B = C_A xor 2^127). With a published KM and that
  // counter, a MAC of a past stanza verifies: so does one over any content the
  // eavesdropper chooses, and the transcript proves nothing about its author.
  const hash = (p.aliceEvents.find((e) => e.type === "established") as { options: { hash: "sha256" | "sha512" } }).options.hash;
  const response = p.relayed.find((r) => r.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.attrs.type === "submit");
  const counterField = response?.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").find((f) => f.attrs.var === "counter");
  const cA = BlockCounter.fromBytes(fromBase64(counterField?.getChildText("value") ?? "") ?? new Uint8Array(16));
  const encrypted = p.relayed.filter((r) => r.stanza.getChild("c", NS.c) && !r.stanza.getChild("c", NS.c)?.getChild("old"));
  let verified: { km: Uint8Array; counter: Uint8Array; content: string } | undefined;
  search: for (const km of old) {
    if (!km) continue;
    for (const r of encrypted) {
      const c = r.stanza.getChild("c", NS.c);
      const mac = fromBase64(c?.getChildText("mac") ?? "");
      const content = normalize((c?.children ?? []).filter((k): k is import("../../src/xml/index.js").Element => typeof k !== "string" && k.name !== "mac"));
      for (const start of [cA, cA.flipTopBit()]) {
        const ctr = start.clone();
        for (let i = 0; i < 64; i++, ctr.advance(1)) {
          if (mac && equalBytes(nodeCrypto.hmac(hash, km, content, ctr.mpi()), mac)) {
            verified = { km, counter: ctr.mpi(), content };
            break search;
          }
        }
      }
    }
  }
  assert.ok(verified, "no published MAC key authenticates a relayed stanza");
  const forged = normalize([el("data", {}, toBase64(utf8("words never said")))]);
  const forgedMac = nodeCrypto.hmac(hash, verified.km, forged, verified.counter);
  assert.equal(forgedMac.length, hash === "sha256" ? 32 : 64);
  assert.notDeepEqual(forged, verified.content);
  assert.ok(!p.relayed.some((r) => r.text.includes("SignatureValue")), "a stanza carried a signature");
});

test("3.9 Robustness: the keys depend on DH, the retained secret and the other secret together", async () => {
  const oss = utf8("shared password");
  const p = makePair({ seed: "r39", alice: { otherSecret: oss }, bob: { otherSecret: oss } });
  await establish(p);
  await end(p);
  // Second session with SRS and OSS; a Bob who lost the retained secret still derives the
  // DH part but no longer the same keys as an Alice who uses it: the session then runs on
  // DH + OSS only, and both clients say so.
  const { a, b } = await establish(p);
  assert.ok(a.retainedSecretMatched && b.retainedSecretMatched);
  // A wrong OSS alone is enough to stop a session even when DH and SRS are fine.
  const q = makePair({ seed: "r39-wrong", alice: { otherSecret: oss }, bob: { otherSecret: utf8("other") } });
  const est = q.alice.startSession(q.bobJid);
  est.catch(() => undefined);
  await q.settle();
  await assert.rejects(est, /identity-mismatch/);
});

test("3.10 Upgradability: Alice lists the versions she supports; Bob picks one or rejects; the list cannot be downgraded", async () => {
  const verOf = (r: { stanza: import("../../src/xml/index.js").Element }) =>
    r.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").find((f) => f.attrs.var === "ver");
  const p = makePair({ seed: "r310", alice: { policy: { versions: ["2.0", "1.0"] } } });
  await establish(p);
  const request = p.relayed.find((r) => r.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.attrs.type === "form");
  assert.deepEqual(request && verOf(request)?.getChildren("option").map((o) => o.getChildText("value")), ["2.0", "1.0"]);
  const answer = p.relayed.find((r) => r.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.attrs.type === "submit");
  assert.equal(answer && verOf(answer)?.getChildText("value"), "1.0", "Bob chose a version he speaks");
  // Only a version Bob does not speak: he rejects, naming the field.
  const q = makePair({ seed: "r310-no", alice: { policy: { versions: ["2.0"] } } });
  const est = q.alice.startSession(q.bobJid);
  est.catch(() => undefined);
  await q.settle();
  await assert.rejects(est);
  const err = q.relayed.find((r) => r.stanza.attrs.type === "error");
  assert.equal(err?.stanza.getChild("error")?.getChild("feature", NS.featureNeg)?.getChild("field")?.attrs.var, "ver");
  // An attacker who strips the newer version from Alice's offer is caught: her request is
  // inside her SIGMA MAC, so Bob's verification of her identity fails.
  const r = makePair({ seed: "r310-down", alice: { policy: { versions: ["1.0", "0.9"] } } });
  r.board.setAdversary((item) => {
    if (item.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.attrs.type !== "form") return { action: "deliver" };
    const s = parseXml(item.stanza.toString());
    const f = s.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").find((fl) => fl.attrs.var === "ver");
    const drop = f?.getChildren("option").find((o) => o.getChildText("value") === "0.9");
    if (f && drop) f.children.splice(f.children.indexOf(drop), 1);
    return { action: "replace", stanza: s };
  });
  const est2 = r.alice.startSession(r.bobJid);
  est2.catch(() => undefined);
  await r.settle();
  await assert.rejects(est2);
  assert.deepEqual(failures(r.bobEvents), ["identity-mismatch"]);
});

test("4.1 Generality: the full content of message, presence and iq is protected", async () => {
  const p = makePair({ seed: "r41" });
  await establish(p);
  await p.alice.send(p.bobJid, el("message", { type: "chat" }, el("body", {}, "m"), el("active", { xmlns: "http://jabber.org/protocol/chatstates" })));
  await p.alice.send(p.bobJid, el("presence", {}, el("show", {}, "dnd"), el("status", {}, "s")));
  await p.alice.send(p.bobJid, el("iq", { type: "get", id: "g" }, el("query", { xmlns: "jabber:iq:version" })));
  await p.settle();
  const got = p.bobEvents.flatMap((e) => (e.type === "message" || e.type === "stanza" ? [e.stanza] : []));
  assert.deepEqual(got.map((s) => s.name), ["message", "presence", "iq"]);
  assert.ok(got[0]?.getChild("active", "http://jabber.org/protocol/chatstates"));
  assert.equal(got[1]?.getChildText("show"), "dnd");
  assert.ok(got[2]?.getChild("query", "jabber:iq:version"));
});

test("4.3 Usability: encryption needs no user action; verification is one short string of at most 6 characters", async () => {
  const p = makePair({ seed: "r43" });
  const { a, b } = await establish(p); // Bob accepted automatically
  assert.ok(a.sas && a.sas.length <= 6 && /^[a-z0-9]+$/.test(a.sas));
  assert.equal(a.sas, b.sas);
  await p.alice.confirmSas(p.bobJid);
  await end(p);
  await establish(p);
  assert.equal(p.aliceEvents.filter((e) => e.type === "alert" && e.alert === "sas-never-confirmed").length, 1, "reminded after confirming");
});

test("4.4 Efficiency: negotiation costs 4 stanzas (3 with SIGMA-I), re-keying none extra", async () => {
  const p = makePair({ seed: "r44" });
  await establish(p);
  const negotiation = p.relayed.filter((r) => r.stanza.getChild("feature", NS.featureNeg) || r.stanza.getChild("init", NS.esessionInit));
  assert.equal(negotiation.length, 4);
  const before = p.relayed.length;
  await p.alice.sendMessage(p.bobJid, "hi");
  await p.settle();
  await p.alice.rekey(p.bobJid); // an empty re-key stanza when nothing is pending
  await p.settle();
  assert.equal(p.relayed.length - before, 2);
  const k1 = rsaIdentity();
  const k2 = rsaIdentity();
  const q = makePair({
    seed: "r44-3",
    policy: { messages: 3 },
    alice: { identity: k1, verifier: rsaVerifier(), policy: { offerPubkey: ["key"], acceptPubkey: ["key"] } },
    bob: { identity: k2, verifier: rsaVerifier(), policy: { acceptPubkey: ["key"] } },
  });
  await establish(q);
  assert.equal(q.relayed.filter((r) => r.stanza.getChild("feature", NS.featureNeg)).length, 3);
});

test("4.5 Flexibility: algorithms are negotiated, not fixed", async () => {
  for (const [cipher, hash] of [
    ["aes256-ctr", "sha512"],
    ["aes128-ctr", "sha256"],
  ] as const) {
    const p = makePair({ seed: `r45-${cipher}`, policy: { cryptAlgs: [cipher], hashAlgs: [hash], groups: [5] } });
    const { b } = await establish(p);
    assert.deepEqual([b.options.cipher, b.options.hash], [cipher, hash]);
  }
});
