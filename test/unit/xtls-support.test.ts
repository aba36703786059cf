/**
 * Unit tests for determining XTLS support (draft-meyer-xmpp-e2e-encryption-02 sections 7
 * and 8.3) through entity capabilities (XEP-0115 v1.6.0 sections 5.4, 6.1, 6.2, 8.4),
 * with disco#info (XEP-0030 v2.5.0 section 3.1) only on a cache miss, over the
 * switchboard with an adversary that strips the feature: the downgrade warning notice and
 * the "require XTLS" policy.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseFullJid } from "../../src/core/types.js";
import { Switchboard } from "../../src/adapters/switchboard.js";
import type { StanzaConnection } from "../../src/adapters/connection.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { el, NS, parseXml, serialize, type Element } from "../../src/xml/index.js";
import { capsVer, parseCaps } from "../../src/disco/caps.js";
import { parseInfoResult } from "../../src/disco/codec.js";
import { jingleChild } from "../../src/jingle/index.js";
import {
  CapsBook,
  MemoryCapsCache,
  MemoryTrustStore,
  XTLS_FEATURE,
  XtlsClient,
  XtlsDiscovery,
  XtlsError,
  generateIdentity,
  serveDisco,
  xtlsDiscoResponder,
  type XtlsNotice,
  type XtlsTunnel,
} from "../../src/xtls/index.js";

const R = parseFullJid("romeo@montague.lit/orchard");
const J = parseFullJid("juliet@capulet.lit/balcony");
const J2 = parseFullJid("juliet@capulet.lit/phone");

const isDiscoGet = (s: Element): boolean => s.name === "iq" && s.attrs.type === "get" && s.getChild("query", NS.disco) !== undefined;

/** A party that advertises XTLS in its caps and answers disco#info. */
function advertise(conn: StanzaConnection): { ver: string } {
  const responder = xtlsDiscoResponder({ jid: conn.jid, crypto: nodeCrypto });
  serveDisco(conn, responder);
  void conn.send(el("presence", {}, responder.caps()));
  return { ver: responder.ver };
}

async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
}

test("our caps advertise urn:xmpp:jingle:security:xtls:1 and the 'ver' verifies (XEP-0115 5.1)", () => {
  const r = xtlsDiscoResponder({ jid: R, crypto: nodeCrypto });
  const c = parseCaps(r.caps());
  assert.ok(c !== undefined && c.hash === "sha-1");
  assert.ok(r.info.features.includes(XTLS_FEATURE));
  assert.ok(r.info.features.includes("urn:xmpp:jingle:transports:s5b:1"));
  assert.equal(capsVer(nodeCrypto, r.info), c.ver);
});

test("caps book: presence caps per full JID, unavailable forgets, only verified answers are cached", () => {
  const book = new CapsBook(nodeCrypto, new MemoryCapsCache());
  const info = { identities: [{ category: "client", type: "pc" }], features: [NS.disco, XTLS_FEATURE], forms: [] };
  const ver = capsVer(nodeCrypto, info);
  const pres = (from: string, v: string, type?: string): Element =>
    el("presence", { from, type }, el("c", { xmlns: NS.caps, hash: "sha-1", node: "n", ver: v }));
  book.handlePresence(pres(J, ver));
  const plan = book.plan(J);
  assert.ok(plan.kind === "query" && plan.node === `n#${ver}`);
  // A wrong 'ver' for the answer (poisoning): not cached.
  book.handlePresence(pres(J2, "AAAA"));
  const p2 = book.plan(J2);
  assert.equal(book.learn(p2.kind === "query" ? p2.caps : undefined, info), "mismatch");
  assert.equal(book.plan(J2).kind, "query");
  // The right one is cached and serves every JID announcing the same ver.
  assert.equal(book.learn(plan.kind === "query" ? plan.caps : undefined, info), "cached");
  assert.deepEqual(book.plan(J), { kind: "cached", features: info.features });
  book.handlePresence(pres(J, ver, "unavailable"));
  assert.equal(book.plan(J).kind, "query");
});

test("lookup: disco#info to node#ver on the first contact, the caps cache afterwards (also for another device with the same caps)", async () => {
  const sb = new Switchboard();
  const wire: Element[] = [];
  sb.tap((x) => wire.push(x.stanza));
  const romeo = sb.connect(R);
  void romeo.send(el("presence", {}));
  const disco = new XtlsDiscovery({ connection: romeo, crypto: nodeCrypto });
  const j1 = sb.connect(J);
  const j2 = sb.connect(J2);
  const { ver } = advertise(j1);
  advertise(j2);
  await flush();
  const first = await disco.lookup(J);
  assert.deepEqual(first, { support: { kind: "supported", version: 1 }, source: "disco", caps: "cached" });
  const q = wire.filter(isDiscoGet);
  assert.equal(q.length, 1);
  assert.equal(q[0]?.getChild("query", NS.disco)?.attrs.node, `${"https://github.com/xmpp-e2e/xmpp-e2e"}#${ver}`);
  const second = await disco.lookup(J2);
  assert.equal(second.source, "caps-cache");
  assert.equal(second.support.kind, "supported");
  assert.equal(wire.filter(isDiscoGet).length, 1, "no second disco#info");
  // Without caps (no presence seen): a plain disco#info query.
  const b = parseFullJid("benvolio@montague.lit/x");
  serveDisco(sb.connect(b), xtlsDiscoResponder({ jid: b, crypto: nodeCrypto }));
  assert.deepEqual(await disco.lookup(b), { support: { kind: "supported", version: 1 }, source: "disco", caps: "none" });
  disco.detach();
});

/** Two XtlsClients on a switchboard, Romeo looking up support through caps/disco. */
async function setup(requireXtls: boolean): Promise<{ sb: Switchboard; alice: XtlsClient; bob: XtlsClient; notices: XtlsNotice[]; wire: Element[]; incoming: Promise<XtlsTunnel>; disco: XtlsDiscovery; juliet: StanzaConnection }> {
  const sb = new Switchboard();
  const wire: Element[] = [];
  sb.tap((x) => wire.push(x.stanza));
  const romeo = sb.connect(R);
  const juliet = sb.connect(J);
  const disco = new XtlsDiscovery({ connection: romeo, crypto: nodeCrypto });
  const alice = new XtlsClient({ connection: romeo, identity: await generateIdentity("romeo@montague.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true, discovery: disco, requireXtls });
  const bob = new XtlsClient({ connection: juliet, identity: await generateIdentity("juliet@capulet.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true, acceptSession: () => true });
  const notices: XtlsNotice[] = [];
  alice.onNotice((n) => notices.push(n));
  const incoming = new Promise<XtlsTunnel>((res) => bob.on((e) => e.type === "tunnel" && res(e.tunnel)));
  return { sb, alice, bob, notices, wire, incoming, disco, juliet };
}

/** The adversary of draft section 8.3: removes the XTLS feature from disco#info results. */
function stripXtlsFeature(sb: Switchboard): void {
  sb.setAdversary((item) => {
    if (item.stanza.name !== "iq" || item.stanza.attrs.type !== "result" || item.stanza.getChild("query", NS.disco) === undefined) return { action: "deliver" };
    const t = serialize(item.stanza).replace(/<feature var="urn:xmpp:jingle:security:xtls:[01]"\/>/g, "");
    return { action: "replace", stanza: parseXml(t) };
  });
}

test("downgrade (draft 8.3): the feature stripped from disco#info -> caps mismatch, not cached; require-XTLS refuses before sending anything", async () => {
  const p = await setup(true);
  advertise(p.juliet);
  await flush();
  stripXtlsFeature(p.sb);
  await assert.rejects(p.alice.connect(J), (e: unknown) => e instanceof XtlsError && e.condition === "no-xtls-support");
  assert.equal(p.notices.length, 1);
  const n = p.notices[0];
  assert.ok(n?.type === "downgrade-warning" && n.refused && n.source === "disco" && /downgrade/.test(n.warning));
  assert.ok(!p.wire.some((w) => jingleChild(w) !== undefined), "no Jingle stanza was sent");
  // The stripped answer did not match the announced 'ver', so it was not cached.
  assert.equal(p.disco.book.plan(J).kind, "query");
  p.alice.detach();
  p.bob.detach();
  p.disco.detach();
});

test("downgrade with the warn policy: the notice is raised, XTLS is still attempted and succeeds (the peer does support it)", async () => {
  const p = await setup(false);
  advertise(p.juliet);
  await flush();
  stripXtlsFeature(p.sb);
  const ta = await p.alice.connect(J);
  await p.incoming;
  assert.equal(ta.method, "x509");
  const n = p.notices[0];
  assert.ok(n?.type === "downgrade-warning" && !n.refused);
  await ta.close();
  p.alice.detach();
  p.bob.detach();
  p.disco.detach();
});

test("caps poisoning: a presence rewritten to the 'ver' of a known non-XTLS client is answered from the cache as unsupported (warning, refused)", async () => {
  const p = await setup(true);
  // Alice already knows a client without XTLS (verified and cached).
  const plain = { identities: [{ category: "client", type: "pc", name: "old" }], features: [NS.disco, NS.caps], forms: [] };
  const oldVer = capsVer(nodeCrypto, plain);
  p.disco.book.cache.set("sha-1", oldVer, plain.features);
  p.sb.setAdversary((item) => {
    if (item.stanza.name !== "presence") return { action: "deliver" };
    const t = serialize(item.stanza).replace(/ver="[^"]*"/, `ver="${oldVer}"`);
    return { action: "replace", stanza: parseXml(t) };
  });
  advertise(p.juliet);
  await flush();
  await assert.rejects(p.alice.connect(J), (e: unknown) => e instanceof XtlsError && e.condition === "no-xtls-support");
  const n = p.notices[0];
  assert.ok(n?.type === "downgrade-warning" && n.source === "caps-cache" && n.refused);
  assert.ok(!p.wire.some((w) => isDiscoGet(w) || jingleChild(w) !== undefined), "answered from the cache: nothing sent");
  p.alice.detach();
  p.bob.detach();
  p.disco.detach();
});

test("require-XTLS: a file transfer never falls back to clear, even with allowPlain, when the responder answers without <security/>", async () => {
  const sb = new Switchboard();
  const alice = new XtlsClient({ connection: sb.connect(R), identity: await generateIdentity("romeo@montague.lit"), trust: new MemoryTrustStore(), requireXtls: true });
  const bob = new XtlsClient({ connection: sb.connect(J), identity: await generateIdentity("juliet@capulet.lit"), trust: new MemoryTrustStore(), acceptSession: () => true, supportsXtls: false });
  const file = { name: "a.txt", size: 3, hashes: [] };
  await assert.rejects(
    alice.connect(J, { application: { kind: "file", file }, allowPlain: true }),
    (e: unknown) => e instanceof XtlsError && e.condition === "no-xtls-support" && e.reason === "security-error",
  );
  alice.detach();
  bob.detach();
});

test("the disco answer parses back to the advertised features (result shape of XEP-0030 3.1)", async () => {
  const sb = new Switchboard();
  const romeo = sb.connect(R);
  const juliet = sb.connect(J);
  serveDisco(juliet, xtlsDiscoResponder({ jid: J, crypto: nodeCrypto }));
  const got = new Promise<Element>((res) => romeo.onStanza((s) => s.name === "iq" && res(s)));
  await romeo.send(el("iq", { type: "get", id: "d1", to: J }, el("query", { xmlns: NS.disco })));
  const info = parseInfoResult(await got);
  assert.ok(info.features.includes(XTLS_FEATURE) && info.features.includes(NS.disco));
});
