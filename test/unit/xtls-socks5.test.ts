/**
 * Unit tests for SOCKS5 bytestreams (XEP-0065 v1.8.2 sections 5.3.2/6.3.2 handshake,
 * RFC 1928 subset) and the XEP-0260 v1.0.3 Jingle transport under XTLS: the negotiators,
 * the loopback listener, candidate-used / candidate-error nomination, and TLS over the
 * nominated TCP connection.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { once } from "node:events";
import { parseFullJid } from "../../src/core/types.js";
import { Switchboard } from "../../src/adapters/switchboard.js";
import { parseXml, serialize, type Element } from "../../src/xml/index.js";
import { jingleChild, parseJingle } from "../../src/jingle/index.js";
import { ibbChild } from "../../src/ibb/index.js";
import { Socks5ClientNegotiator, Socks5Listener, Socks5ServerNegotiator, dstAddr, socks5Connect, Socks5Error } from "../../src/socks5/index.js";
import { MemoryTrustStore, XtlsClient, XtlsError, generateIdentity, type XtlsTunnel } from "../../src/xtls/index.js";

const R = parseFullJid("romeo@montague.lit/orchard");
const J = parseFullJid("juliet@capulet.lit/balcony");

test("dstAddr is SHA1(SID + requester + target) as in XEP-0260's example", () => {
  assert.equal(dstAddr("vj3hs98y", "romeo@montague.lit/orchard", "juliet@capulet.lit/balcony"), "972b7bf47291ca609517f67f86b5081086052dad");
  assert.equal(dstAddr("vj3hs98y", "juliet@capulet.lit/balcony", "romeo@montague.lit/orchard"), "1a12fb7bc625e55f3ed5b29a53dbe0e4aa7d80ba");
});

test("negotiators: greeting, CONNECT with a domain-name DST.ADDR and port 0, early data kept; refusals", () => {
  const addr = dstAddr("s", R, J);
  const c = new Socks5ClientNegotiator(addr);
  const s = new Socks5ServerNegotiator((a) => a === addr);
  const toServer = Buffer.concat(c.out.splice(0));
  assert.deepEqual([...toServer], [5, 1, 0]);
  assert.equal(s.feed(toServer).kind, "pending");
  assert.equal(c.feed(Buffer.concat(s.out.splice(0))).kind, "pending");
  const req = Buffer.concat(c.out.splice(0));
  assert.deepEqual([...req.subarray(0, 5)], [5, 1, 0, 3, 40]);
  assert.deepEqual([...req.subarray(-2)], [0, 0]);
  const sr = s.feed(Buffer.concat([req, Buffer.from("early")]));
  assert.ok(sr.kind === "done" && sr.addr === addr && Buffer.from(sr.rest).toString() === "early");
  const cr = c.feed(Buffer.concat([...s.out.splice(0), Buffer.from("hello")]));
  assert.ok(cr.kind === "done" && Buffer.from(cr.rest).toString() === "hello");
  // Unknown DST.ADDR: REP 0x02; no method 0x00: 0xFF.
  const s2 = new Socks5ServerNegotiator(() => false);
  s2.feed(new Uint8Array([5, 1, 0]));
  const bad = new Socks5ClientNegotiator("x".repeat(40));
  bad.out.splice(0);
  bad.feed(Buffer.concat(s2.out.splice(0)));
  const r2 = s2.feed(Buffer.concat(bad.out.splice(0)));
  assert.equal(r2.kind, "failed");
  assert.equal(s2.out[0]?.[1], 2);
  assert.equal(bad.feed(Buffer.concat(s2.out.splice(0))).kind, "failed");
  const s3 = new Socks5ServerNegotiator(() => true);
  s3.feed(new Uint8Array([5, 1, 2]));
  assert.deepEqual([...(s3.out[0] ?? [])], [5, 0xff]);
});

test("listener + connect over loopback: bytes both ways; a wrong DST.ADDR is refused", async () => {
  const l = await Socks5Listener.listen();
  const addr = dstAddr("sid1", R, J);
  const accepted = l.expect(addr, 5000);
  const { host, port } = l.address;
  const c = await socks5Connect(host, port, addr);
  const s = await accepted;
  c.write("ping");
  s.resume(); // handed over paused, so no early byte is lost
  const [d] = (await once(s, "data")) as [Buffer];
  assert.equal(d.toString(), "ping");
  await assert.rejects(socks5Connect(host, port, dstAddr("other", R, J)), (e: unknown) => e instanceof Socks5Error);
  c.destroy();
  s.destroy();
  l.close();
});

async function pairOverSwitchboard(): Promise<{ sb: Switchboard; alice: XtlsClient; bob: XtlsClient; incoming: Promise<XtlsTunnel>; wire: Element[] }> {
  const sb = new Switchboard();
  const wire: Element[] = [];
  sb.tap((x) => wire.push(x.stanza));
  const alice = new XtlsClient({ connection: sb.connect(R), identity: await generateIdentity("romeo@montague.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true });
  const bob = new XtlsClient({ connection: sb.connect(J), identity: await generateIdentity("juliet@capulet.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true, acceptSession: () => true });
  const incoming = new Promise<XtlsTunnel>((res) => bob.on((e) => e.type === "tunnel" && res(e.tunnel)));
  return { sb, alice, bob, incoming, wire };
}

test("XTLS over SOCKS5 (XEP-0260 direct candidate): candidate-used + candidate-error, TLS on the TCP connection, 4 MiB intact", async () => {
  const p = await pairOverSwitchboard();
  const ta = await p.alice.connect(J, { transport: "s5b" });
  const tb = await p.incoming;
  assert.equal(ta.method, "x509");
  const file = randomBytes(4 << 20);
  const got = new Promise<Buffer>((res) => {
    const parts: Buffer[] = [];
    let n = 0;
    tb.socket.on("data", (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (n >= file.length) res(Buffer.concat(parts));
    });
  });
  ta.socket.write(file);
  const r = await got;
  assert.equal(createHash("sha256").update(r).digest("hex"), createHash("sha256").update(file).digest("hex"));
  await ta.close();
  assert.equal((await tb.ended).reason?.condition, "success");
  const infos = p.wire.filter((w) => jingleChild(w)?.attrs.action === "transport-info").map((w) => {
    const j = parseJingle(jingleChild(w) ?? parseXml("<x/>"));
    const t = j.ok ? j.value.contents[0]?.transport : undefined;
    return t?.kind === "s5b" ? (t.candidateUsed !== undefined ? "used" : t.candidateError === true ? "error" : "?") : "?";
  });
  assert.deepEqual(infos.sort(), ["error", "used"]);
  assert.ok(!p.wire.some((w) => ibbChild(w) !== undefined), "no IBB");
  assert.ok(!p.wire.some((w) => serialize(w).includes(file.subarray(0, 16).toString("base64"))));
  p.alice.detach();
  p.bob.detach();
});

test("direct candidates are preferred over a proxy (XEP-0260 2.2 priorities; Prosody 0.12's proxy65 can stall, docs/xtls.md)", async () => {
  const sb = new Switchboard();
  const wire: Element[] = [];
  sb.tap((x) => wire.push(x.stanza));
  // The proxy is never contacted: the responder tries the direct candidate first.
  const alice = new XtlsClient({ connection: sb.connect(R), identity: await generateIdentity("romeo@montague.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true, s5bProxy: { jid: "proxy.montague.lit", host: "127.0.0.1", port: 1 } });
  const bob = new XtlsClient({ connection: sb.connect(J), identity: await generateIdentity("juliet@capulet.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true, acceptSession: () => true });
  const incoming = new Promise<XtlsTunnel>((res) => bob.on((e) => e.type === "tunnel" && res(e.tunnel)));
  const ta = await alice.connect(J, { transport: "s5b" });
  await incoming;
  const init = parseJingle(jingleChild(wire.find((w) => jingleChild(w)?.attrs.action === "session-initiate") ?? parseXml("<x/>")) ?? parseXml("<x/>"));
  const cands = init.ok && init.value.contents[0]?.transport?.kind === "s5b" ? init.value.contents[0].transport.candidates : [];
  const direct = cands.find((c) => c.type === "direct");
  const proxy = cands.find((c) => c.type === "proxy");
  assert.ok(direct !== undefined && proxy !== undefined && direct.priority > proxy.priority);
  const used = wire
    .map((w) => (jingleChild(w)?.attrs.action === "transport-info" ? parseJingle(jingleChild(w) ?? parseXml("<x/>")) : undefined))
    .map((j) => (j?.ok === true && j.value.contents[0]?.transport?.kind === "s5b" ? j.value.contents[0].transport.candidateUsed : undefined))
    .filter((x): x is string => x !== undefined);
  assert.deepEqual(used, [direct.cid]);
  assert.ok(!wire.some((w) => serialize(w).includes("<activate")), "no proxy activation");
  await ta.close();
  alice.detach();
  bob.detach();
});

/** Rewrites the candidate ports in the session-initiate to a closed one (nothing reachable). */
function unreachable(p: { sb: Switchboard }): void {
  p.sb.setAdversary((item) => {
    if (jingleChild(item.stanza)?.attrs.action !== "session-initiate") return { action: "deliver" };
    return { action: "replace", stanza: parseXml(serialize(item.stanza).replace(/port="\d+"/g, 'port="1"')) };
  });
}

function actions(wire: Element[]): string[] {
  return wire.map((w) => jingleChild(w)?.attrs.action).filter((a): a is string => typeof a === "string");
}

test("SOCKS5 fallback (XEP-0260 2.8): no candidate reachable -> transport-replace to IBB, transport-accept, TLS over IBB, data intact", async () => {
  const p = await pairOverSwitchboard();
  unreachable(p);
  const notices: string[] = [];
  p.alice.onNotice((n) => notices.push(`alice ${n.type}`));
  p.bob.onNotice((n) => notices.push(`bob ${n.type}`));
  const ta = await p.alice.connect(J, { transport: "s5b" });
  const tb = await p.incoming;
  assert.equal(ta.method, "x509");
  assert.deepEqual(notices.sort(), ["alice transport-fallback", "bob transport-fallback"]);
  const data = randomBytes(200_000);
  const got = new Promise<Buffer>((res) => {
    const parts: Buffer[] = [];
    let n = 0;
    tb.socket.on("data", (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (n >= data.length) res(Buffer.concat(parts));
    });
  });
  ta.socket.write(data);
  assert.ok((await got).equals(data));
  await ta.close();
  assert.equal((await tb.ended).reason?.condition, "success");
  const acts = actions(p.wire);
  const iReplace = acts.indexOf("transport-replace");
  assert.ok(iReplace > 0 && acts.indexOf("transport-accept") > iReplace, acts.join(","));
  // The replacement is an IBB transport; the IBB stream opens only after transport-accept.
  const rep = p.wire.find((w) => jingleChild(w)?.attrs.action === "transport-replace");
  const parsed = parseJingle(jingleChild(rep ?? parseXml("<x/>")) ?? parseXml("<x/>"));
  assert.ok(parsed.ok && parsed.value.contents[0]?.transport?.kind === "ibb");
  const accIdx = p.wire.findIndex((w) => jingleChild(w)?.attrs.action === "transport-accept");
  const openIdx = p.wire.findIndex((w) => ibbChild(w)?.name === "open");
  assert.ok(openIdx > accIdx, "IBB <open/> after transport-accept");
  // Encrypted on the IBB wire: the data's first bytes never appear in a payload.
  assert.ok(!p.wire.some((w) => serialize(w).includes(data.subarray(0, 12).toString("base64"))));
  p.alice.detach();
  p.bob.detach();
});

test("SOCKS5 without fallback (fallbackToIbb: false): connectivity-error; responder refusing IBB: transport-reject -> failed-transport", async () => {
  const p = await pairOverSwitchboard();
  unreachable(p);
  await assert.rejects(p.alice.connect(J, { transport: "s5b", fallbackToIbb: false }), (e: unknown) => e instanceof XtlsError && e.reason === "connectivity-error");
  assert.ok(!actions(p.wire).includes("transport-replace"));
  p.alice.detach();
  p.bob.detach();

  const sb = new Switchboard();
  const wire: Element[] = [];
  sb.tap((x) => wire.push(x.stanza));
  const alice = new XtlsClient({ connection: sb.connect(R), identity: await generateIdentity("romeo@montague.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true });
  const bob = new XtlsClient({ connection: sb.connect(J), identity: await generateIdentity("juliet@capulet.lit"), trust: new MemoryTrustStore(), leapOfFaith: () => true, acceptSession: () => true, fallbackTransports: [] });
  unreachable({ sb });
  await assert.rejects(alice.connect(J, { transport: "s5b" }), (e: unknown) => e instanceof XtlsError && e.reason === "failed-transport");
  const acts = actions(wire);
  assert.ok(acts.includes("transport-replace") && acts.includes("transport-reject") && !acts.includes("transport-accept"), acts.join(","));
  assert.ok(!wire.some((w) => ibbChild(w) !== undefined), "no IBB after a reject");
  alice.detach();
  bob.detach();
});
