/**
 * Unit tests for the Jingle layer: codec fixtures (draft-meyer-xmpp-e2e-encryption-02
 * section 3 and 6 examples, XEP-0261 v1.0 section 2) round-tripped both ways; the draft's
 * responder and initiator rules (section 3) as tables; the XEP-0166 v1.1.2 session core
 * (acknowledgements 6.2/6.3, security-info 8, termination 6.7, errors 9, timeouts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { parseFullJid, type FullJid } from "../../src/core/types.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { el, NS, normalize, parseXml, serialize, type Element } from "../../src/xml/index.js";
import { attrOf } from "../../src/adapters/connection.js";
import { errorCondition } from "../../src/ibb/codec.js";
import {
  JingleSession,
  NS_JINGLE,
  NS_JINGLE_ERRORS,
  buildJingle,
  initiatorDecision,
  jingleChild,
  parseJingle,
  responderDecision,
  sameFingerprint,
  formatFingerprint,
  type Content,
  type JingleEvent,
  type Jingle,
  type XtlsSecurity,
} from "../../src/jingle/index.js";

const DIR = fileURLToPath(new URL("../vectors/jingle/", import.meta.url));
const R = parseFullJid("romeo@montague.lit/orchard");
const J = parseFullJid("juliet@capulet.lit/balcony");

for (const f of readdirSync(DIR).filter((x) => x.endsWith(".xml"))) {
  test(`fixture ${f}: XML -> object -> XML`, () => {
    const xml = readFileSync(join(DIR, f), "utf8").trim();
    const expected = (JSON.parse(readFileSync(join(DIR, f.replace(/\.xml$/, ".json")), "utf8")) as { jingle: Jingle }).jingle;
    const parsed = parseJingle(parseXml(xml));
    assert.ok(parsed.ok, parsed.ok ? "" : parsed.reason);
    assert.deepEqual(JSON.parse(JSON.stringify(parsed.value)), expected);
    assert.equal(normalize([buildJingle(expected)]), normalize([parseXml(xml)]));
  });
}

test("codec: malformed jingle is refused with a reason", () => {
  const bad = [
    `<jingle xmlns='${NS_JINGLE}' sid='x'/>`,
    `<jingle xmlns='${NS_JINGLE}' action='session-dance' sid='x'/>`,
    `<jingle xmlns='${NS_JINGLE}' action='session-initiate'/>`,
    `<jingle xmlns='${NS_JINGLE}' action='session-initiate' sid='x'><content name='c'/></jingle>`,
    `<jingle xmlns='${NS_JINGLE}' action='session-initiate' sid='x'><content creator='initiator'/></jingle>`,
    `<jingle xmlns='${NS_JINGLE}' action='session-initiate' sid='x'><content creator='initiator' name='c'><transport xmlns='urn:xmpp:jingle:transports:ibb:1' block-size='70000' sid='s'/></content></jingle>`,
    `<jingle xmlns='${NS_JINGLE}' action='session-initiate' sid='x'><content creator='initiator' name='c'><security xmlns='urn:xmpp:jingle:security:xtls:0'><fingerprint>AA</fingerprint></security></content></jingle>`,
    `<jingle xmlns='${NS_JINGLE}' action='session-terminate' sid='x'><reason><sad/></reason></jingle>`,
  ];
  for (const b of bad) assert.equal(parseJingle(parseXml(b)).ok, false, b);
});

test("fingerprints: algo spellings and separators compare equal; formatting", () => {
  assert.ok(sameFingerprint({ algo: "sha-256", value: "AB:CD" }, { algo: "SHA256", value: "abcd" }));
  assert.ok(!sameFingerprint({ algo: "sha-1", value: "AB:CD" }, { algo: "sha-256", value: "ABCD" }));
  assert.ok(!sameFingerprint({ algo: "md5", value: "AB" }, { algo: "md5", value: "AB" }), "unknown algorithms never match");
  assert.ok(!sameFingerprint({ algo: "sha1", value: "RomeoX509CertSHA1Hash" }, { algo: "sha1", value: "RomeoX509CertSHA1Hash" }));
  assert.equal(formatFingerprint(new Uint8Array([0, 171, 255])), "00:AB:FF");
});

const OWN = { algo: "sha-256", value: "11:22" };
const offer = (o: Partial<XtlsSecurity> = {}): XtlsSecurity => ({ kind: "xtls", fingerprint: { algo: "sha-256", value: "AA:BB" }, methods: ["x509", "srp"], ...o });
const rf = { supportsXtls: true, ownFingerprint: OWN, canVerifyPeer: false, srpAvailable: false, leapOfFaith: false };

test("draft section 3 responder rules", () => {
  // Rule 1: no XTLS support -> accept without <security/>.
  assert.deepEqual(responderDecision(offer(), { ...rf, supportsXtls: false }), { kind: "accept-plain" });
  // Rules 2-3: can verify -> security with our fingerprint.
  const happy = responderDecision(offer(), { ...rf, canVerifyPeer: true, srpAvailable: true });
  assert.equal(happy.kind, "accept");
  assert.ok(happy.kind === "accept" && happy.security.fingerprint === OWN && happy.expect === "x509" && !happy.leapOfFaith);
  assert.deepEqual(happy.kind === "accept" && happy.security.methods, ["x509", "srp"]);
  // Rule 4: cannot verify, password available -> no fingerprint, srp.
  const srp = responderDecision(offer(), { ...rf, srpAvailable: true });
  assert.ok(srp.kind === "accept" && srp.security.fingerprint === undefined && srp.expect === "srp");
  assert.deepEqual(srp.kind === "accept" && srp.security.methods, ["srp"]);
  // Rule 5: cannot verify, no password: leap of faith only when allowed, else terminate.
  const lof = responderDecision(offer(), { ...rf, leapOfFaith: true });
  assert.ok(lof.kind === "accept" && lof.leapOfFaith && lof.security.fingerprint === OWN);
  assert.deepEqual(responderDecision(offer(), rf).kind, "terminate");
  // An offer without fingerprint (initiator cannot do x509) and no password: terminate.
  const { fingerprint: _f, ...noFp } = offer();
  assert.equal(responderDecision({ ...noFp }, { ...rf, canVerifyPeer: true, leapOfFaith: true }).kind, "terminate");
  // An offer without srp, responder has only a password: terminate (nothing common).
  assert.equal(responderDecision(offer({ methods: ["x509"] }), { ...rf, srpAvailable: true }).kind, "terminate");
});

const inf = { canVerifyPeer: false, srpAvailable: false, leapOfFaith: false, allowPlain: false };

test("draft section 3 initiator rules", () => {
  // Rule 1: no security element -> terminate (xml streams) flagged as a downgrade, or plain if allowed.
  const t = initiatorDecision(undefined, inf);
  assert.ok(t.kind === "terminate" && t.downgrade && t.reason === "security-error");
  assert.deepEqual(initiatorDecision(undefined, { ...inf, allowPlain: true }), { kind: "plain" });
  // Verified certificate -> x509.
  assert.deepEqual(initiatorDecision(offer(), { ...inf, canVerifyPeer: true, srpAvailable: true }), { kind: "secure", method: "x509", leapOfFaith: false });
  // Rule 2: cannot verify -> srp if a password was exchanged, else leap of faith if allowed, else terminate.
  assert.deepEqual(initiatorDecision(offer(), { ...inf, srpAvailable: true }), { kind: "secure", method: "srp", leapOfFaith: false });
  assert.deepEqual(initiatorDecision(offer(), { ...inf, leapOfFaith: true }), { kind: "secure", method: "x509", leapOfFaith: true });
  const no = initiatorDecision(offer(), inf);
  assert.ok(no.kind === "terminate" && !no.downgrade);
  // Responder omitted its fingerprint (it cannot verify us): only srp can work.
  assert.equal(initiatorDecision({ kind: "xtls", methods: ["srp"] }, { ...inf, canVerifyPeer: true, leapOfFaith: true }).kind, "terminate");
  assert.deepEqual(initiatorDecision({ kind: "xtls", methods: ["srp"] }, { ...inf, srpAvailable: true }), { kind: "secure", method: "srp", leapOfFaith: false });
});

// ---- session core ----

function pair(clock = new VirtualClock()): { i: JingleSession; r: JingleSession; clock: VirtualClock } {
  const mk = (role: "initiator" | "responder"): JingleSession =>
    new JingleSession({
      self: role === "initiator" ? R : J,
      peer: role === "initiator" ? J : R,
      role,
      sid: "a73sjjvkl37jfea",
      random: new SeededRandom(nodeCrypto, role),
      clock,
      ackTimeoutMs: 1000,
      acceptTimeoutMs: 5000,
    });
  return { i: mk("initiator"), r: mk("responder"), clock };
}

/** Delivers everything both ways (stamping 'from'); returns events and the wire. */
function run(i: JingleSession, r: JingleSession, drop?: (s: Element) => boolean): { i: JingleEvent[]; r: JingleEvent[]; wire: Element[] } {
  const out = { i: [] as JingleEvent[], r: [] as JingleEvent[], wire: [] as Element[] };
  for (let moved = true; moved; ) {
    moved = false;
    for (const [src, dst, from, evs] of [
      [i, r, R, out.i],
      [r, i, J, out.r],
    ] as const) {
      for (const o of src.outbox.drain()) {
        moved = true;
        if (o.kind === "event") evs.push(o.event);
        else {
          const s = parseXml(serialize(o.stanza));
          s.attrs.from = from;
          out.wire.push(s);
          if (drop?.(s) !== true) dst.handleStanza(s);
        }
      }
    }
  }
  return out;
}

const CONTENT: Content = {
  creator: "initiator",
  name: "xmlstream",
  description: { kind: "xmlstream" },
  transport: { kind: "ibb", ns: "urn:xmpp:jingle:transports:ibb:1", sid: "ch3d9s71", blockSize: 4096 },
  security: offer(),
};

test("session: initiate, ack, accept, ack, security-info, terminate with success", () => {
  const { i, r } = pair();
  i.initiate([CONTENT]);
  let ev = run(i, r);
  assert.equal(ev.r[0]?.type, "incoming");
  assert.ok(ev.i.some((e) => e.type === "initiate-acked"));
  const inc = ev.r[0];
  assert.ok(inc?.type === "incoming" && inc.jingle.contents[0]?.security?.kind === "xtls");
  assert.equal(r.stateName, "awaiting-local-decision");
  r.accept([{ ...CONTENT, security: { kind: "xtls", fingerprint: OWN, methods: ["x509"] } }]);
  ev = run(i, r);
  assert.ok(ev.i.some((e) => e.type === "accepted"));
  assert.ok(ev.r.some((e) => e.type === "accept-acked"));
  i.securityInfo([{ creator: "initiator", name: "xmlstream", security: { kind: "xtls", methods: ["x509"] } }]);
  ev = run(i, r);
  const si = ev.r.find((e) => e.type === "security-info");
  assert.ok(si?.type === "security-info" && si.contents[0]?.security?.kind === "xtls");
  r.terminate({ condition: "success" });
  ev = run(i, r);
  assert.deepEqual(ev.i.find((e) => e.type === "terminated"), { type: "terminated", by: "remote", reason: { condition: "success" } });
  assert.deepEqual(ev.r.find((e) => e.type === "terminated"), { type: "terminated", by: "local", reason: { condition: "success" } });
  // Every set got a result (XEP-0166: each request is acknowledged).
  const sets = ev.wire.length;
  assert.ok(sets > 0);
  assert.equal(i.stateName, "ended");
  assert.equal(r.stateName, "ended");
});

test("session: terminate with <security-error/> per draft section 6 is acknowledged", () => {
  const { i, r } = pair();
  i.initiate([CONTENT]);
  run(i, r);
  r.accept([CONTENT]);
  run(i, r);
  i.terminate({ condition: "security-error" });
  const ev = run(i, r);
  const term = ev.wire.find((s) => jingleChild(s)?.attrs.action === "session-terminate");
  assert.ok(term?.getChild("jingle", NS_JINGLE)?.getChild("reason")?.getChild("security-error"));
  assert.ok(ev.wire.some((s) => s.attrs.type === "result" && s.attrs.id === term?.attrs.id));
  assert.deepEqual(ev.r.find((e) => e.type === "terminated"), { type: "terminated", by: "remote", reason: { condition: "security-error" } });
});

test("session: out-of-order and unknown-session errors (XEP-0166 section 9)", () => {
  const { i, r } = pair();
  i.initiate([CONTENT]);
  run(i, r);
  // A second session-initiate for the same sid is out of order.
  const again = el("iq", { xmlns: NS.client, type: "set", id: "x1", from: R, to: J }, buildJingle({ action: "session-initiate", sid: "a73sjjvkl37jfea", initiator: R, contents: [CONTENT] }));
  assert.equal(r.handleStanza(again), true);
  const err = r.outbox.drain().find((o) => o.kind === "send");
  assert.ok(err?.kind === "send" && errorCondition(err.stanza) === "unexpected-request");
  assert.ok(err.kind === "send" && err.stanza.getChild("error")?.getChild("out-of-order", NS_JINGLE_ERRORS));
  r.terminate({ condition: "decline" });
  run(i, r);
  const late = el("iq", { xmlns: NS.client, type: "set", id: "x2", from: R, to: J }, buildJingle({ action: "security-info", sid: "a73sjjvkl37jfea", contents: [] }));
  r.handleStanza(late);
  const e2 = r.outbox.drain().find((o) => o.kind === "send");
  assert.ok(e2?.kind === "send" && e2.stanza.getChild("error")?.getChild("unknown-session", NS_JINGLE_ERRORS));
  // From a third party: not ours.
  const spoof = parseXml(serialize(late));
  spoof.attrs.from = "mallory@evil.lit/x";
  assert.equal(r.handleStanza(spoof), false);
});

test("session: transport-replace (XEP-0260 2.8 fallback) acked, then transport-accept or transport-reject, each acked", () => {
  const { i, r } = pair();
  const S5B: Content = { ...CONTENT, transport: { kind: "s5b", sid: "vj3hs98y", mode: "tcp", candidates: [] } };
  i.initiate([S5B]);
  run(i, r);
  // Before the session is active, a replacement is out of order on both sides.
  assert.throws(() => r.transportAccept([]));
  r.accept([S5B]);
  run(i, r);
  const IBB: Content = { creator: "initiator", name: "xmlstream", transport: { kind: "ibb", ns: "urn:xmpp:jingle:transports:ibb:1", sid: "ch3d9s71", blockSize: 4096 } };
  i.transportReplace([IBB]);
  let ev = run(i, r);
  const rep = ev.r.find((e) => e.type === "transport-replace");
  assert.ok(rep?.type === "transport-replace" && rep.contents[0]?.transport?.kind === "ibb");
  const repIq = ev.wire.find((s) => jingleChild(s)?.attrs.action === "transport-replace");
  assert.ok(ev.wire.some((s) => s.attrs.type === "result" && s.attrs.id === repIq?.attrs.id), "transport-replace acknowledged");
  // XEP-0260 2.8: the responder may lower the block-size in its transport-accept.
  r.transportAccept([{ ...IBB, transport: { kind: "ibb", ns: "urn:xmpp:jingle:transports:ibb:1", sid: "ch3d9s71", blockSize: 2048 } }]);
  ev = run(i, r);
  const acc = ev.i.find((e) => e.type === "transport-accept");
  assert.ok(acc?.type === "transport-accept" && acc.contents[0]?.transport?.kind === "ibb" && acc.contents[0].transport.blockSize === 2048);
  const accIq = ev.wire.find((s) => jingleChild(s)?.attrs.action === "transport-accept");
  assert.ok(ev.wire.some((s) => s.attrs.type === "result" && s.attrs.id === accIq?.attrs.id), "transport-accept acknowledged");
  i.transportReplace([IBB]);
  run(i, r);
  r.transportReject([IBB]);
  ev = run(i, r);
  assert.ok(ev.i.some((e) => e.type === "transport-reject"));
  // A peer that refuses transport-replace itself (an iq error) reads as a reject.
  const { i: i2, r: r2 } = pair();
  i2.initiate([S5B]);
  run(i2, r2);
  r2.accept([S5B]);
  run(i2, r2);
  i2.transportReplace([IBB]);
  const out = i2.outbox.drain().find((o) => o.kind === "send");
  assert.ok(out?.kind === "send");
  i2.handleStanza(el("iq", { xmlns: NS.client, type: "error", id: attrOf(out.stanza, "id"), from: J }, el("error", { type: "cancel" }, el("feature-not-implemented", { xmlns: NS.stanzas }))));
  assert.ok(i2.outbox.drain().some((o) => o.kind === "event" && o.event.type === "transport-reject"));
  // After the end, a late transport-accept gets <unknown-session/>.
  r.terminate({ condition: "success" });
  run(i, r);
  r.handleStanza(el("iq", { xmlns: NS.client, type: "set", id: "late", from: R, to: J }, buildJingle({ action: "transport-accept", sid: "a73sjjvkl37jfea", contents: [IBB] })));
  const late = r.outbox.drain().find((o) => o.kind === "send");
  assert.ok(late?.kind === "send" && late.stanza.getChild("error")?.getChild("unknown-session", NS_JINGLE_ERRORS));
});

test("session: the initiator attribute must be the sender (section 7.2)", () => {
  const { r } = pair();
  const forged = el("iq", { xmlns: NS.client, type: "set", id: "f1", from: R, to: J }, buildJingle({ action: "session-initiate", sid: "a73sjjvkl37jfea", initiator: "mallory@evil.lit/x", contents: [CONTENT] }));
  r.handleStanza(forged);
  const out = r.outbox.drain();
  assert.ok(out.some((o) => o.kind === "send" && errorCondition(o.stanza) === "bad-request"));
  assert.ok(!out.some((o) => o.kind === "event"));
});

test("session: no session-accept in time -> terminate with <timeout/>", () => {
  const { i, r, clock } = pair();
  i.initiate([CONTENT]);
  run(i, r); // acked, responder never decides
  assert.equal(i.nextDeadline(), clock.now() + 5000);
  clock.advance(5000);
  i.onTimer(clock.now());
  const ev = run(i, r);
  assert.ok(ev.i.some((e) => e.type === "failed" && e.error.condition === "timeout"));
  assert.deepEqual(ev.r.find((e) => e.type === "terminated"), { type: "terminated", by: "remote", reason: { condition: "timeout" } });
});

test("session: unacknowledged session-initiate times out; an error reply fails the session", () => {
  const { i, r, clock } = pair();
  i.initiate([CONTENT]);
  run(i, r, () => true); // everything lost
  clock.advance(1000);
  i.onTimer(clock.now());
  assert.ok(i.outbox.drain().some((o) => o.kind === "event" && o.event.type === "failed" && o.event.error.condition === "timeout"));

  const p = pair();
  p.i.initiate([CONTENT]);
  const sent = p.i.outbox.drain().find((o) => o.kind === "send");
  assert.ok(sent?.kind === "send");
  const refusal = el("iq", { xmlns: NS.client, type: "error", id: attrOf(sent.stanza, "id"), from: J }, el("error", { type: "cancel" }, el("service-unavailable", { xmlns: NS.stanzas })));
  assert.equal(p.i.handleStanza(refusal), true);
  const f = p.i.outbox.drain().find((o) => o.kind === "event");
  assert.ok(f?.kind === "event" && f.event.type === "failed" && f.event.error.stanzaCondition === "service-unavailable");
});

test("session: session-info ping is acked, unknown payloads get unsupported-info", () => {
  const { i, r } = pair();
  i.initiate([CONTENT]);
  run(i, r);
  const ping = el("iq", { xmlns: NS.client, type: "set", id: "p1", from: R, to: J }, buildJingle({ action: "session-info", sid: "a73sjjvkl37jfea", contents: [] }));
  r.handleStanza(ping);
  assert.ok(r.outbox.drain().some((o) => o.kind === "send" && o.stanza.attrs.type === "result"));
  const info = el("iq", { xmlns: NS.client, type: "set", id: "p2", from: R, to: J }, el("jingle", { xmlns: NS_JINGLE, action: "session-info", sid: "a73sjjvkl37jfea" }, el("ringing", { xmlns: "urn:xmpp:jingle:apps:rtp:info:1" })));
  r.handleStanza(info);
  const e = r.outbox.drain().find((o) => o.kind === "send");
  assert.ok(e?.kind === "send" && e.stanza.getChild("error")?.getChild("unsupported-info", NS_JINGLE_ERRORS));
});
