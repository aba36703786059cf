/**
 * Deterministic two-party simulation of ESessions on the switchboard: negotiation, SAS,
 * message/presence/iq protection, re-keying (both sides, crossing in flight), termination,
 * retained secrets, and a network that drops, duplicates, reorders and tampers.
 *
 * Spec: XEP-0217 v0.1, XEP-0200 v0.2 sections 4-9 (a bad MAC terminates the session and
 * nothing forged is delivered), XEP-0155 termination. Requirements: XEP-0210 sections
 * 4.1.1-4.1.3 (confidentiality, integrity, replay protection).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ClientEvent } from "../../src/client/secure-client.js";
import { fromBase64, toBase64 } from "../../src/core/bytes.js";
import { el, NS, parseXml } from "../../src/xml/index.js";
import { makePair, type Pair } from "./pair.js";
import { MemoryStore } from "../../src/store/memory.js";
import { parseFullJid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { parseInfo } from "../../src/disco/codec.js";
import { verifyCaps } from "../../src/disco/caps.js";

async function established(p: Pair): Promise<{ aliceSas: string; bobSas: string }> {
  const est = p.alice.startSession(p.bobJid);
  await p.settle();
  const a = await est;
  const b = p.bobEvents.find((e): e is Extract<ClientEvent, { type: "established" }> => e.type === "established");
  assert.ok(b, "bob established");
  assert.ok(a.sas !== undefined && b.sas !== undefined, "4-message negotiations produce a SAS");
  return { aliceSas: a.sas, bobSas: b.sas };
}

function types(evs: readonly ClientEvent[]): string[] {
  return evs.map((e) => e.type);
}

function failures(evs: readonly ClientEvent[]): string[] {
  return evs.flatMap((e) => (e.type === "failed" ? [e.error.condition] : []));
}

test("negotiation: both sides compute the same 5-character SAS and an unconfirmed-SAS alert", async () => {
  const p = makePair({ seed: "sas" });
  const { aliceSas, bobSas } = await established(p);
  assert.equal(aliceSas, bobSas);
  assert.match(aliceSas, /^[acdefghikmopqruvwxy1-9]{5}$/);
  assert.ok(p.aliceEvents.some((e) => e.type === "alert" && e.alert === "sas-never-confirmed"));
  const steps = p.aliceEvents.flatMap((e) => (e.type === "progress" ? [e.step] : []));
  assert.deepEqual(steps, ["request-sent", "response-received", "identity-sent", "identity-received", "identity-verified"]);
});

test("message, presence and iq are encrypted; nothing relayed contains the plaintext", async () => {
  const p = makePair({ seed: "stanzas" });
  await established(p);
  await p.alice.sendMessage(p.bobJid, "the eagle lands at dawn");
  await p.alice.send(p.bobJid, el("presence", {}, el("status", {}, "secret-status-text")));
  await p.bob.send(p.aliceJid, el("iq", { type: "get", id: "q1" }, el("query", { xmlns: "urn:example:secret-iq" })));
  await p.settle();
  assert.deepEqual(p.bodies("bob"), ["the eagle lands at dawn"]);
  const pres = p.bobEvents.find((e) => e.type === "stanza" && e.stanza.name === "presence");
  assert.ok(pres && pres.type === "stanza");
  assert.equal(pres.stanza.getChildText("status"), "secret-status-text");
  const iq = p.aliceEvents.find((e) => e.type === "stanza" && e.stanza.name === "iq");
  assert.ok(iq && iq.type === "stanza" && iq.stanza.getChild("query", "urn:example:secret-iq"));
  for (const r of p.relayed) {
    assert.ok(!r.text.includes("eagle"), "message plaintext leaked");
    assert.ok(!r.text.includes("secret-status-text"), "presence plaintext leaked");
    assert.ok(!r.text.includes("urn:example:secret-iq"), "iq plaintext leaked");
  }
  // Messages keep their thread in the clear (XEP-0200 section 4); an iq carries only <c/>
  // (RFC 6120 8.2.3: exactly one payload child).
  const enc = p.relayed.filter((r) => r.stanza.getChild("c", NS.c));
  assert.ok(enc.length >= 3);
  for (const r of enc.filter((x) => x.stanza.name === "message")) assert.ok(r.stanza.getChildText("thread"));
  for (const r of enc.filter((x) => x.stanza.name === "iq")) assert.equal(r.stanza.children.filter((c) => typeof c !== "string").length, 1);
});

test("a tampered ciphertext is never delivered and terminates the session", async () => {
  const p = makePair({ seed: "tamper" });
  await established(p);
  p.board.setAdversary((item) => {
    const data = item.stanza.getChild("c", NS.c)?.getChild("data");
    if (!data) return { action: "deliver" };
    const bytes = fromBase64(data.getText());
    if (!bytes) return { action: "deliver" };
    bytes[0] = (bytes[0] ?? 0) ^ 0x01; // flip one bit: with CTR this would flip a plaintext bit
    const s = parseXml(item.stanza.toString());
    const d = s.getChild("c", NS.c)?.getChild("data");
    d?.children.splice(0, d.children.length, toBase64(bytes));
    return { action: "replace", stanza: s };
  });
  await p.alice.sendMessage(p.bobJid, "pay 100");
  await p.settle();
  assert.deepEqual(p.bodies("bob"), []);
  assert.deepEqual(failures(p.bobEvents), ["bad-mac"]);
  assert.equal(p.bob.session(p.aliceJid), undefined, "bob's session is gone");
  await assert.rejects(p.bob.sendMessage(p.aliceJid, "x"), /not-protected/);
});

test("a duplicated (replayed) stanza is delivered once, then the replay terminates the session", async () => {
  const p = makePair({ seed: "dup" });
  await established(p);
  let done = false;
  p.board.setAdversary((item) => {
    if (!done && item.stanza.getChild("c", NS.c)) {
      done = true;
      return { action: "duplicate" };
    }
    return { action: "deliver" };
  });
  await p.alice.sendMessage(p.bobJid, "once");
  await p.settle();
  assert.deepEqual(p.bodies("bob"), ["once"]);
  assert.deepEqual(failures(p.bobEvents), ["bad-mac"]);
});

test("reordered stanzas: the out-of-order one is rejected and nothing after it is delivered", async () => {
  const p = makePair({ seed: "reorder" });
  await established(p);
  let heldSeq: number | undefined;
  p.board.setAdversary((item) => {
    if (heldSeq === undefined && item.stanza.getChild("c", NS.c)) {
      heldSeq = item.seq;
      return { action: "hold" };
    }
    return { action: "deliver" };
  });
  await p.alice.sendMessage(p.bobJid, "first");
  await p.alice.sendMessage(p.bobJid, "second");
  await p.settle();
  p.board.setAdversary(undefined);
  assert.ok(heldSeq !== undefined);
  p.board.release(heldSeq);
  await p.settle();
  assert.deepEqual(p.bodies("bob"), []);
  // "second" fails its MAC and ends the session; the late "first" then has no session.
  assert.deepEqual(failures(p.bobEvents), ["bad-mac", "unexpected-request"]);
});

test("a dropped stanza desynchronises the counter: the next one is rejected (no silent gap)", async () => {
  const p = makePair({ seed: "drop" });
  await established(p);
  let dropped = false;
  p.board.setAdversary((item) => {
    if (!dropped && item.stanza.getChild("c", NS.c)) {
      dropped = true;
      return { action: "drop" };
    }
    return { action: "deliver" };
  });
  await p.alice.sendMessage(p.bobJid, "lost");
  await p.alice.sendMessage(p.bobJid, "after");
  await p.settle();
  assert.deepEqual(p.bodies("bob"), []);
  assert.deepEqual(failures(p.bobEvents), ["bad-mac"]);
});

test("an injected forged stanza (no keys) is rejected", async () => {
  const p = makePair({ seed: "inject" });
  await established(p);
  const thread = p.alice.session(p.bobJid)?.thread ?? "";
  p.board.inject(
    p.aliceJid,
    el("message", { to: p.bobJid, type: "chat" }, el("c", { xmlns: NS.c }, el("data", {}, toBase64(new Uint8Array(32))), el("mac", {}, toBase64(new Uint8Array(32)))), el("thread", {}, thread)),
  );
  await p.settle();
  assert.deepEqual(p.bodies("bob"), []);
  assert.deepEqual(failures(p.bobEvents), ["bad-mac"]);
});

test("an unencrypted stanza inside a session is not delivered as protected", async () => {
  const p = makePair({ seed: "clear" });
  await established(p);
  const thread = p.alice.session(p.bobJid)?.thread ?? "";
  p.board.inject(p.aliceJid, el("message", { to: p.bobJid, type: "chat" }, el("body", {}, "forged clear"), el("thread", {}, thread)));
  await p.settle();
  assert.deepEqual(p.bodies("bob"), []);
  assert.deepEqual(failures(p.bobEvents), ["not-protected"]);
});

test("re-keying: both sides initiate, including crossing re-keys in flight; traffic keeps flowing", async () => {
  const p = makePair({ seed: "rekey" });
  await established(p);
  const sent: string[] = [];
  for (let round = 0; round < 5; round++) {
    await p.alice.rekey(p.bobJid);
    await p.alice.sendMessage(p.bobJid, `a${round}`);
    await p.settle();
    await p.bob.rekey(p.aliceJid);
    await p.bob.sendMessage(p.aliceJid, `b${round}`);
    await p.settle();
    sent.push(`a${round}`);
  }
  // Crossing: both re-key before either sees the other's key.
  p.board.setMode("manual");
  await p.alice.rekey(p.bobJid);
  await p.bob.rekey(p.aliceJid);
  await p.alice.sendMessage(p.bobJid, "cross-a");
  await p.bob.sendMessage(p.aliceJid, "cross-b");
  await p.settle();
  p.board.setMode("auto");
  await p.alice.sendMessage(p.bobJid, "after-a");
  await p.bob.sendMessage(p.aliceJid, "after-b");
  await p.settle();
  await p.alice.sendMessage(p.bobJid, "after2-a");
  await p.settle();
  assert.deepEqual(failures(p.aliceEvents), []);
  assert.deepEqual(failures(p.bobEvents), []);
  assert.deepEqual(p.bodies("bob"), [...sent, "cross-a", "after-a", "after2-a"]);
  assert.deepEqual(p.bodies("alice"), ["b0", "b1", "b2", "b3", "b4", "cross-b", "after-b"]);
  const ac = p.alice.session(p.bobJid)?.channel;
  const bc = p.bob.session(p.aliceJid)?.channel;
  assert.ok(ac && bc);
  assert.ok(ac.stats.rekeysInitiated >= 6 && bc.stats.rekeysInitiated >= 6);
  assert.ok(ac.stats.rekeysAccepted >= 6 && bc.stats.rekeysAccepted >= 6);
  // Old MAC keys were published after confirmation (XEP-0200 section 8).
  assert.ok(ac.stats.oldKeysPublished > 0 && bc.stats.oldKeysPublished > 0);
  assert.ok(p.relayed.some((r) => r.stanza.getChild("c", NS.c)?.getChild("old")));
  assert.ok(p.relayed.some((r) => r.stanza.getChild("c", NS.c)?.getChild("new")));
});

test("the block limit forces a re-key before it is reached", async () => {
  const p = makePair({ seed: "limit", policy: { blockLimit: 64 } });
  await established(p);
  for (let i = 0; i < 20; i++) await p.alice.sendMessage(p.bobJid, `message number ${i} with some padding text`);
  await p.settle();
  assert.equal(p.bodies("bob").length, 20);
  const ac = p.alice.session(p.bobJid)?.channel;
  assert.ok(ac && ac.stats.rekeysInitiated >= 2, `rekeys: ${ac?.stats.rekeysInitiated}`);
  assert.deepEqual(failures(p.bobEvents), []);
});

test("rekey_freq is honoured: a peer asking for 5 stanzas between re-keys is respected", async () => {
  const p = makePair({ seed: "freq", policy: { rekeyFreq: 5 } });
  await established(p);
  await assert.rejects(p.alice.rekey(p.bobJid), /rekey-limit/);
  for (let i = 0; i < 5; i++) await p.alice.sendMessage(p.bobJid, `m${i}`);
  await p.settle();
  await p.alice.rekey(p.bobJid);
  await p.settle();
  assert.equal(p.bob.session(p.aliceJid)?.channel?.stats.rekeysAccepted, 1);
});

test("termination is encrypted and acknowledged; keys are destroyed on both sides", async () => {
  const p = makePair({ seed: "term" });
  await established(p);
  await Promise.all([p.alice.terminate(p.bobJid), p.settle()]);
  await p.settle();
  const at = p.aliceEvents.find((e) => e.type === "terminated");
  const bt = p.bobEvents.find((e) => e.type === "terminated");
  assert.ok(at && at.type === "terminated" && at.by === "us" && at.acknowledged);
  assert.ok(bt && bt.type === "terminated" && bt.by === "peer" && bt.acknowledged);
  assert.equal(p.alice.session(p.bobJid), undefined);
  assert.equal(p.bob.session(p.aliceJid), undefined);
  // Nothing about the termination is visible on the wire.
  assert.ok(!p.relayed.some((r) => r.text.includes("terminate")));
  await assert.rejects(p.alice.sendMessage(p.bobJid, "too late"), /not-protected/);
});

test("retained secrets: the second session shares a secret; a third party's stale secret does not match", async () => {
  const p = makePair({ seed: "rs1" });
  await established(p);
  assert.equal((await p.aliceStore.list("alice@example.org" as never, "bob@example.com" as never)).length, 1);
  await Promise.all([p.alice.terminate(p.bobJid), p.settle()]);
  await p.settle();
  const est2 = p.alice.startSession(p.bobJid);
  await p.settle();
  const a2 = await est2;
  assert.equal(a2.retainedSecretMatched, true);
  const b2 = p.bobEvents.filter((e) => e.type === "established").at(-1);
  assert.ok(b2 && b2.type === "established" && b2.retainedSecretMatched);
  assert.equal(a2.sas, b2.sas);
  // The old secret was destroyed and replaced by exactly one new one.
  assert.equal((await p.aliceStore.list("alice@example.org" as never, "bob@example.com" as never)).length, 1);
  assert.equal((await p.bobStore.list("bob@example.com" as never, "alice@example.org" as never)).length, 1);
});

test("a man-in-the-middle who alters Bob's DH value is detected (identity does not verify)", async () => {
  const p = makePair({ seed: "mitm-d", policy: { groups: [14] } });
  p.board.setAdversary((item) => {
    const x = item.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data);
    const f = x?.getChildren("field").find((fl) => fl.attrs.var === "dhkeys");
    if (!f || x?.attrs.type !== "submit") return { action: "deliver" };
    const s = parseXml(item.stanza.toString());
    const g = s.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").find((fl) => fl.attrs.var === "dhkeys");
    const v = g?.getChild("value");
    v?.children.splice(0, v.children.length, toBase64(Uint8Array.of(7)));
    return { action: "replace", stanza: s };
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  await assert.rejects(est);
  // 7 is a valid group element, so only the SIGMA identity check can catch the swap.
  assert.deepEqual(failures(p.bobEvents), ["identity-mismatch"]);
  assert.ok(!types(p.bobEvents).includes("established"));
  assert.ok(!types(p.aliceEvents).includes("established"));
});

test("a man-in-the-middle who alters Alice's committed DH value is caught by the hash commitment", async () => {
  const p = makePair({ seed: "mitm-e" });
  p.board.setAdversary((item) => {
    const x = item.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data);
    if (x?.attrs.type !== "result") return { action: "deliver" };
    const s = parseXml(item.stanza.toString());
    const g = s.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").find((fl) => fl.attrs.var === "dhkeys");
    const v = g?.getChild("value");
    v?.children.splice(0, v.children.length, toBase64(Uint8Array.of(5, 5, 5)));
    return { action: "replace", stanza: s };
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  assert.deepEqual(failures(p.bobEvents), ["bad-dh-value"]);
  assert.ok(!types(p.bobEvents).includes("established"));
  await assert.rejects(est);
});

test("downgrade: an option Alice never offered in Bob's answer is refused", async () => {
  const p = makePair({ seed: "downgrade" });
  p.board.setAdversary((item) => {
    const x = item.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data);
    if (x?.attrs.type !== "submit") return { action: "deliver" };
    const s = parseXml(item.stanza.toString());
    const g = s.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").find((fl) => fl.attrs.var === "logging");
    const v = g?.getChild("value");
    v?.children.splice(0, v.children.length, "sure-log-everything");
    return { action: "replace", stanza: s };
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  await assert.rejects(est, /not-acceptable/);
});

test("a request with an unsupported cipher gets feature-not-implemented naming the field", async () => {
  const p = makePair({ seed: "unsupported" });
  p.board.setAdversary((item) => {
    const x = item.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data);
    if (x?.attrs.type !== "form") return { action: "deliver" };
    const s = parseXml(item.stanza.toString());
    const g = s.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").find((fl) => fl.attrs.var === "crypt_algs");
    const values = [...(g?.getChildren("value") ?? []), ...(g?.getChildren("option").flatMap((o) => o.getChildren("value")) ?? [])];
    assert.ok(values.length > 0);
    for (const v of values) v.children.splice(0, v.children.length, "rot13-ctr");
    return { action: "replace", stanza: s };
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  await assert.rejects(est);
  const err = p.relayed.find((r) => r.stanza.attrs.type === "error");
  assert.ok(err);
  assert.ok(err.stanza.getChild("error")?.getChild("feature-not-implemented", NS.stanzas));
  assert.equal(err.stanza.getChild("error")?.getChild("feature", NS.featureNeg)?.getChild("field")?.attrs.var, "crypt_algs");
});

test("gajim profile on both sides: negotiation, SAS and messages work (clear termination)", async () => {
  const p = makePair({ seed: "gajim", aliceProfile: "gajim", bobProfile: "gajim" });
  const { aliceSas, bobSas } = await established(p);
  assert.equal(aliceSas, bobSas);
  await p.alice.sendMessage(p.bobJid, "hi gajim");
  await p.bob.sendMessage(p.aliceJid, "hi back");
  await p.settle();
  assert.deepEqual(p.bodies("bob"), ["hi gajim"]);
  assert.deepEqual(p.bodies("alice"), ["hi back"]);
});

test("spec responder detects a gajim-profile initiator", async () => {
  const p = makePair({ seed: "detect", aliceProfile: "gajim" });
  const { aliceSas, bobSas } = await established(p);
  assert.equal(aliceSas, bobSas);
  const b = p.bobEvents.find((e) => e.type === "established");
  assert.ok(b && b.type === "established" && b.options.profile === "gajim");
  await p.bob.sendMessage(p.aliceJid, "detected");
  await p.settle();
  assert.deepEqual(p.bodies("alice"), ["detected"]);
});

test("negotiation timeout: an unanswered request fails after the policy timeout", async () => {
  const p = makePair({ seed: "timeout" });
  p.board.setAdversary(() => ({ action: "drop" }));
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  p.clock.advance(61_000);
  p.timers.fire();
  await p.settle();
  await assert.rejects(est, /timed out/);
});

test("retained secrets expire: after the lifetime the next session shares none (and says so)", async () => {
  const p = makePair({ seed: "expire" });
  await established(p);
  await Promise.all([p.alice.terminate(p.bobJid), p.settle()]);
  await p.settle();
  p.clock.advance(366 * 24 * 3600 * 1000);
  const est = p.alice.startSession(p.bobJid);
  await p.settle();
  const a = await est;
  assert.equal(a.retainedSecretMatched, false);
});

test("disco#info: a peer discovers ESession support (XEP-0030) and our caps verify (XEP-0115)", async () => {
  const p = makePair({ seed: "disco" });
  const replies: import("../../src/xml/index.js").Element[] = [];
  const bobConn = p.board.connect(parseFullJid("bob@example.com/probe"));
  bobConn.onStanza((s) => replies.push(s));
  const caps = p.alice.capsElement();
  await bobConn.send(el("iq", { type: "get", id: "d1", to: p.aliceJid }, el("query", { xmlns: NS.disco, node: `${caps.attrs.node}#${caps.attrs.ver}` })));
  await p.settle();
  const q = replies.find((r) => r.attrs.id === "d1")?.getChild("query", NS.disco);
  assert.ok(q, "disco result");
  const features = q.getChildren("feature").map((f) => String(f.attrs.var));
  for (const v of [NS.ssn, NS.esession, NS.disco, NS.caps]) assert.ok(features.includes(v), v);
  const info = parseInfo(q);
  const v = verifyCaps(nodeCrypto, { hash: String(caps.attrs.hash), node: String(caps.attrs.node), ver: String(caps.attrs.ver) }, info);
  assert.equal(v.status, "valid");
});

test("an unprotected iq get that nobody serves is answered with service-unavailable (RFC 6120 8.4)", async () => {
  const p = makePair({ seed: "iq-clear" });
  const replies: import("../../src/xml/index.js").Element[] = [];
  const probe = p.board.connect(parseFullJid("carol@example.net/x"));
  probe.onStanza((s) => replies.push(s));
  await probe.send(el("iq", { type: "get", id: "v1", to: p.aliceJid }, el("query", { xmlns: "jabber:iq:version" })));
  await p.settle();
  const r = replies.find((x) => x.attrs.id === "v1");
  assert.equal(r?.attrs.type, "error");
  assert.ok(r?.getChild("error")?.getChild("service-unavailable", NS.stanzas));
  assert.ok(p.aliceEvents.some((e) => e.type === "unprotected"));
});

test("every cipher, hash and MODP group node:crypto serves negotiates and protects traffic", async () => {
  const combos: Array<[import("../../src/crypto/provider.js").CipherAlg, import("../../src/crypto/provider.js").HashAlg, import("../../src/crypto/provider.js").ModpGroup]> = [
    ["aes128-ctr", "sha256", 1],
    ["aes192-ctr", "sha384", 2],
    ["aes256-ctr", "sha512", 5],
    ["aes128-ctr", "sha512", 14],
    ["aes256-ctr", "sha256", 15],
    ["aes192-ctr", "sha256", 16],
    ["aes256-ctr", "sha384", 17],
    ["aes128-ctr", "sha256", 18],
  ];
  for (const [cipher, hash, group] of combos) {
    const p = makePair({ seed: `suite-${cipher}-${hash}-${group}`, policy: { groups: [group], cryptAlgs: [cipher], hashAlgs: [hash] } });
    const { aliceSas, bobSas } = await established(p);
    assert.equal(aliceSas, bobSas);
    const b = p.bobEvents.find((e) => e.type === "established");
    assert.ok(b && b.type === "established");
    assert.deepEqual([b.options.cipher, b.options.hash, b.options.group], [cipher, hash, group]);
    await p.alice.rekey(p.bobJid);
    await p.alice.sendMessage(p.bobJid, `over ${cipher}/${hash}/modp${group}`);
    await p.settle();
    assert.deepEqual(p.bodies("bob"), [`over ${cipher}/${hash}/modp${group}`]);
  }
});

test("Bob picks the first cipher and hash Alice prefers that he supports; none in common names the fields", async () => {
  const p = makePair({ seed: "pref", policy: { cryptAlgs: ["aes256-ctr", "aes128-ctr"], hashAlgs: ["sha512", "sha256"] } });
  await established(p);
  const b = p.bobEvents.find((e) => e.type === "established");
  assert.ok(b && b.type === "established" && b.options.cipher === "aes256-ctr" && b.options.hash === "sha512");
});

test("X25519: a small-order (all-zero) or short public value from the peer is refused", async () => {
  for (const bad of [new Uint8Array(32), Uint8Array.of(9)]) {
    const p = makePair({ seed: `x25519-bad-${bad.length}`, policy: { groups: ["x25519"] } });
    p.board.setAdversary((item) => {
      const x = item.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data);
      if (x?.attrs.type !== "submit") return { action: "deliver" };
      const s = parseXml(item.stanza.toString());
      const v = s.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").find((fl) => fl.attrs.var === "dhkeys")?.getChild("value");
      v?.children.splice(0, v.children.length, toBase64(bad));
      return { action: "replace", stanza: s };
    });
    const est = p.alice.startSession(p.bobJid);
    est.catch(() => undefined);
    await p.settle();
    await assert.rejects(est, /bad-dh-value/);
  }
});

test("the modern suite is preferred between xmpp-e2e peers; a 2007-only peer still negotiates MODP", async () => {
  const p = makePair({ seed: "modern" });
  const { aliceSas, bobSas } = await established(p);
  assert.equal(aliceSas, bobSas);
  const b = p.bobEvents.find((e) => e.type === "established");
  assert.ok(b && b.type === "established");
  assert.deepEqual([b.options.group, b.options.cipher, b.options.hash], ["x25519", "aes256-ctr", "sha512"]);
  await p.alice.rekey(p.bobJid);
  await p.alice.sendMessage(p.bobJid, "modern");
  await p.settle();
  assert.deepEqual(p.bodies("bob"), ["modern"]);
  // Bob knows only the 2007 values (as Gajim did): the same Alice falls back to MODP.
  const q = makePair({ seed: "modern-old", bob: { policy: { groups: [14, 5], cryptAlgs: ["aes128-ctr"], hashAlgs: ["sha256"] } } });
  await established(q);
  const b2 = q.bobEvents.find((e) => e.type === "established");
  assert.ok(b2 && b2.type === "established");
  assert.deepEqual([b2.options.group, b2.options.cipher, b2.options.hash], [14, "aes128-ctr", "sha256"]);
});

test("retained secrets: Bob's extended search finds the secret when Alice returns under another JID", async () => {
  const first = makePair({ seed: "ext-1" });
  await established(first);
  const [rs] = await first.aliceStore.list("alice@example.org" as never, "bob@example.com" as never);
  assert.ok(rs);
  // Alice now uses a different JID (identity protection); her client keeps the secret.
  const aliceStore = new MemoryStore();
  await aliceStore.replace({ account: "anon-7@example.net" as never, peer: "bob@example.com" as never, secret: rs.secret, now: first.clock.now(), verifiedChain: false });
  const second = makePair({ seed: "ext-2", aliceJid: "anon-7@example.net/x", aliceStore, bobStore: first.bobStore, clock: first.clock });
  const est = second.alice.startSession(second.bobJid);
  await second.settle();
  const a = await est;
  const b = second.bobEvents.find((e) => e.type === "established");
  assert.ok(b && b.type === "established");
  assert.equal(a.retainedSecretMatched, true, "alice: the SRS was not confirmed");
  assert.equal(b.retainedSecretMatched, true, "bob: the extended search did not find the secret");
  assert.equal(a.sas, b.sas);
});
