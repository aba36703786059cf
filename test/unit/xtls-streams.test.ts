/**
 * Unit tests for end-to-end XML streams (XEP-0246 v0.1.1; draft-meyer-xmpp-e2e-encryption-02
 * section 4): the sans-IO stream core (headers with full JIDs, stanzas both ways, 'from'
 * checks, restricted XML, split chunks, closing handshake) and the whole path over XTLS on
 * the switchboard (stream close, then Jingle session-terminate).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFullJid } from "../../src/core/types.js";
import { SeededRandom } from "../../src/core/testing.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { fromUtf8, utf8 } from "../../src/core/bytes.js";
import { el, NS, serialize, type Element } from "../../src/xml/index.js";
import { Switchboard } from "../../src/adapters/switchboard.js";
import { jingleChild } from "../../src/jingle/index.js";
import { XmlStreamSession, StreamError, openE2eStream, type StreamEvent } from "../../src/streams/index.js";
import { MemoryTrustStore, XtlsClient, generateIdentity, type XtlsTunnel } from "../../src/xtls/index.js";

const R = parseFullJid("romeo@montague.lit/orchard");
const J = parseFullJid("juliet@capulet.lit/balcony");

function pair(): { i: XmlStreamSession; r: XmlStreamSession } {
  return {
    i: new XmlStreamSession({ role: "initiator", self: R, peer: J, random: new SeededRandom(nodeCrypto, "i") }),
    r: new XmlStreamSession({ role: "responder", self: J, peer: R, random: new SeededRandom(nodeCrypto, "r") }),
  };
}

/** Moves bytes both ways (optionally one byte at a time); returns events and text sent by each. */
function pipe(i: XmlStreamSession, r: XmlStreamSession, byteWise = false): { i: StreamEvent[]; r: StreamEvent[]; iText: string; rText: string } {
  const out = { i: [] as StreamEvent[], r: [] as StreamEvent[], iText: "", rText: "" };
  for (let moved = true; moved; ) {
    moved = false;
    for (const [src, dst, evs, key] of [
      [i, r, out.i, "iText"],
      [r, i, out.r, "rText"],
    ] as const) {
      for (let o = src.poll(); o !== undefined; o = src.poll()) {
        moved = true;
        if (o.kind === "event") evs.push(o.event);
        else {
          out[key] += fromUtf8(o.data);
          if (byteWise) for (const b of o.data) dst.feed(new Uint8Array([b]));
          else dst.feed(o.data);
        }
      }
    }
  }
  return out;
}

test("stream core: headers with full JIDs and version 1.0, stanzas both ways, close both directions", () => {
  const { i, r } = pair();
  i.start();
  r.start();
  let ev = pipe(i, r);
  assert.match(ev.iText, /^<stream:stream /);
  assert.ok(ev.iText.includes(`from="${R}"`) && ev.iText.includes(`to="${J}"`) && ev.iText.includes('version="1.0"'));
  assert.ok(ev.rText.includes(`from="${J}"`) && ev.rText.includes(`to="${R}"`) && /id="e2e-[0-9a-f]+"/.test(ev.rText));
  assert.deepEqual(ev.i.find((e) => e.type === "open"), { type: "open", header: { from: J, to: R, id: ev.rText.match(/id="([^"]+)"/)?.[1], version: "1.0" } });
  i.send(el("message", { to: J }, el("body", {}, "M'lady, I would be pleased to make your acquaintance.")));
  r.send(el("iq", { type: "get", id: "q1" }, el("pubkeys", { xmlns: "urn:xmpp:pubkey:0" })));
  r.send(el("presence", {}));
  ev = pipe(i, r, true);
  const atR = ev.r.filter((e) => e.type === "stanza").map((e) => (e.type === "stanza" ? e.stanza : el("x")));
  assert.equal(atR[0]?.getChildText("body"), "M'lady, I would be pleased to make your acquaintance.");
  assert.equal(atR[0]?.attrs.from, R, "stamped with the peer's full JID");
  assert.equal(atR[0]?.attrs.xmlns, NS.client);
  const atI = ev.i.filter((e) => e.type === "stanza").map((e) => (e.type === "stanza" ? e.stanza.name : ""));
  assert.deepEqual(atI, ["iq", "presence"]);
  r.close();
  ev = pipe(i, r);
  assert.equal(ev.rText, "</stream:stream>");
  assert.equal(ev.iText, "</stream:stream>");
  assert.deepEqual(ev.i.find((e) => e.type === "closed"), { type: "closed", by: "remote" });
  assert.deepEqual(ev.r.find((e) => e.type === "closed"), { type: "closed", by: "local" });
  assert.throws(() => i.send(el("message", {})), (e: unknown) => e instanceof StreamError && e.condition === "not-open");
});

test("stream core: nothing can be sent before the stream is open", () => {
  const { i } = pair();
  assert.throws(() => i.send(el("message", {})), (e: unknown) => e instanceof StreamError && e.condition === "not-open");
  i.start();
  assert.throws(() => i.send(el("message", {})), (e: unknown) => e instanceof StreamError && e.condition === "not-open");
});

function responderAfterHeader(): XmlStreamSession {
  const { r } = pair();
  r.start();
  r.feed(utf8(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='${R}' to='${J}' version='1.0'>`));
  while (r.poll() !== undefined);
  return r;
}

function lastError(s: XmlStreamSession): { cond: string | undefined; text: string } {
  let text = "";
  let cond: string | undefined;
  for (let o = s.poll(); o !== undefined; o = s.poll()) {
    if (o.kind === "write") text += fromUtf8(o.data);
    else if (o.event.type === "error") cond = o.event.error.condition;
  }
  return { cond, text };
}

test("stream core: a stanza claiming another sender is invalid-from; header from a stranger too", () => {
  const r = responderAfterHeader();
  r.feed(utf8(`<message from='mallory@evil.lit/x'><body>hi</body></message>`));
  const e = lastError(r);
  assert.equal(e.cond, "invalid-from");
  assert.ok(e.text.includes("<stream:error><invalid-from") && e.text.endsWith("</stream:stream>"));
  const { r: r2 } = pair();
  r2.start();
  r2.feed(utf8(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' from='mallory@evil.lit/x' version='1.0'>`));
  assert.equal(lastError(r2).cond, "invalid-from");
});

test("stream core: restricted XML (comments, PIs, DTD), bad XML, bad UTF-8, oversize, unknown elements", () => {
  for (const [input, cond] of [
    ["<!-- hidden -->", "restricted-xml"],
    ["<?pi x?>", "restricted-xml"],
    ["<!DOCTYPE x>", "restricted-xml"],
    ["<message><body>x</bod></message>", "not-well-formed"],
    ["<foo/>", "unsupported-stanza-type"],
  ] as const) {
    const r = responderAfterHeader();
    r.feed(utf8(input));
    assert.equal(lastError(r).cond, cond, input);
  }
  const r = responderAfterHeader();
  r.feed(new Uint8Array([0x3c, 0x6d, 0xff, 0xfe]));
  assert.equal(lastError(r).cond, "not-well-formed");
  const small = new XmlStreamSession({ role: "responder", self: J, peer: R, random: new SeededRandom(nodeCrypto, "s"), maxStanzaChars: 100 });
  small.start();
  small.feed(utf8(`<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`));
  while (small.poll() !== undefined);
  small.feed(utf8(`<message><body>${"x".repeat(200)}</body></message>`));
  assert.equal(lastError(small).cond, "policy-violation");
  // A CDATA section is allowed.
  const c = responderAfterHeader();
  c.feed(utf8("<message><body><![CDATA[a<b]]></body></message>"));
  const got = c.poll();
  assert.ok(got?.kind === "event" && got.event.type === "stanza" && got.event.stanza.getChildText("body") === "a<b");
});

test("e2e stream over XTLS on the switchboard: stanzas both ways, stream close then session-terminate", async () => {
  const sb = new Switchboard();
  const wire: Element[] = [];
  sb.tap((x) => wire.push(x.stanza));
  const alice = new XtlsClient({ connection: sb.connect(R), identity: await generateIdentity("romeo@montague.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true });
  const bob = new XtlsClient({ connection: sb.connect(J), identity: await generateIdentity("juliet@capulet.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true, acceptSession: () => true });
  const incoming = new Promise<XtlsTunnel>((res) => bob.on((e) => e.type === "tunnel" && res(e.tunnel)));
  const ta = await alice.connect(J);
  const tb = await incoming;
  const [sa, sbStream] = await Promise.all([openE2eStream(ta, R), openE2eStream(tb, J)]);
  const gotB: Element[] = [];
  const gotA: Element[] = [];
  sbStream.onStanza((s) => {
    gotB.push(s);
    if (s.name === "iq") void sbStream.send(el("iq", { type: "result", id: s.attrs.id as string, to: R }));
  });
  sa.onStanza((s) => gotA.push(s));
  await sa.send(el("message", { to: J, type: "chat" }, el("body", {}, "TOP-SECRET-BODY")));
  await sa.send(el("iq", { type: "get", id: "v1", to: J }, el("query", { xmlns: "jabber:iq:version" })));
  await sbStream.send(el("presence", {}, el("status", {}, "TOP-SECRET-STATUS")));
  for (let k = 0; k < 100 && (gotB.length < 2 || gotA.length < 2); k++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(gotB[0]?.getChildText("body"), "TOP-SECRET-BODY");
  assert.deepEqual(gotA.map((s) => s.name).sort(), ["iq", "presence"]);
  await sa.close();
  const endB = await tb.ended;
  assert.equal(endB.reason?.condition, "success");
  await assert.rejects(sa.send(el("message", {})), (e: unknown) => e instanceof StreamError && e.condition === "not-open");
  const seq = wire.flatMap((w) => (jingleChild(w) === undefined ? [] : [jingleChild(w)?.attrs.action as string]));
  assert.equal(seq.at(-1), "session-terminate");
  for (const w of wire) assert.ok(!serialize(w).includes("TOP-SECRET"));
  alice.detach();
  bob.detach();
});

test("after an SRP session the parties exchange certificates over the e2e stream (draft 5.1); the next session is pinned x509", async () => {
  const { servePubkeys, fetchAndPinPeerCertificate } = await import("../../src/xtls/index.js");
  const sb = new Switchboard();
  const idR = await generateIdentity("romeo@montague.lit");
  const idJ = await generateIdentity("juliet@capulet.lit");
  const trustR = new MemoryTrustStore();
  const trustJ = new MemoryTrustStore();
  // Stand-in for src/tls-srp (authentication by password): hands the stream through.
  const srp = (stream: import("node:stream").Duplex): Promise<import("node:stream").Duplex> => Promise.resolve(stream);
  const alice = new XtlsClient({ connection: sb.connect(R), identity: idR, trust: trustR, srp, password: () => "shared" });
  const bob = new XtlsClient({ connection: sb.connect(J), identity: idJ, trust: trustJ, srp, password: () => "shared", acceptSession: () => true });
  let incoming = new Promise<XtlsTunnel>((res) => bob.on((e) => e.type === "tunnel" && res(e.tunnel)));
  const ta = await alice.connect(J);
  const tb = await incoming;
  assert.equal(ta.method, "srp");
  const [sa, sbs] = await Promise.all([openE2eStream(ta, R), openE2eStream(tb, J)]);
  servePubkeys(sa, idR);
  servePubkeys(sbs, idJ);
  const [fpJ, fpR] = await Promise.all([fetchAndPinPeerCertificate(sa, trustR), fetchAndPinPeerCertificate(sbs, trustJ)]);
  assert.deepEqual(fpJ, idJ.fingerprint);
  assert.deepEqual(fpR, idR.fingerprint);
  await sa.close();
  await tb.ended;
  alice.detach();
  bob.detach();

  // Next session: no password, no leap of faith, x509 verified by the pins.
  const sb2 = new Switchboard();
  const alice2 = new XtlsClient({ connection: sb2.connect(R), identity: idR, trust: trustR });
  const bob2 = new XtlsClient({ connection: sb2.connect(J), identity: idJ, trust: trustJ, acceptSession: () => true });
  incoming = new Promise<XtlsTunnel>((res) => bob2.on((e) => e.type === "tunnel" && res(e.tunnel)));
  const t2 = await alice2.connect(J);
  await incoming;
  assert.equal(t2.method, "x509");
  assert.equal(t2.leapOfFaith, false);
  await t2.close();
  alice2.detach();
  bob2.detach();
});
