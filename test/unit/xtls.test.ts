/**
 * Unit tests for XTLS (draft-meyer-xmpp-e2e-encryption-02) over the in-memory switchboard:
 * certificates and fingerprints (sections 2-3), the x509 method with TLS 1.2 and 1.3
 * (section 3: responder = TLS server with CertificateRequest, open only after the
 * handshake), leap of faith then pinning (section 5), the responder and initiator rules
 * (section 3) end to end, security-error termination on a wrong fingerprint or a tampered
 * record (section 6), the srp plug-in point, disco support (section 7), and that no
 * application byte crosses the wire unencrypted.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import type { Duplex } from "node:stream";
import { parseFullJid, type FullJid } from "../../src/core/types.js";
import { Switchboard } from "../../src/adapters/switchboard.js";
import { attrOf } from "../../src/adapters/connection.js";
import { el, NS, parseXml, serialize, type Element } from "../../src/xml/index.js";
import { buildJingle, jingleChild, NS_JINGLE, NS_JINGLE_ERRORS, parseJingle } from "../../src/jingle/index.js";
import { ibbChild, NS_IBB } from "../../src/ibb/index.js";
import {
  MemoryTrustStore,
  XtlsClient,
  XtlsError,
  fingerprintOf,
  generateIdentity,
  loadIdentity,
  xtlsSupport,
  XTLS_FEATURE,
  type SrpTlsOverDuplex,
  type XtlsIdentity,
  type XtlsOptions,
  type XtlsTunnel,
} from "../../src/xtls/index.js";

const A = parseFullJid("romeo@montague.lit/orchard");
const B = parseFullJid("juliet@capulet.lit/balcony");

let ids: { a: XtlsIdentity; b: XtlsIdentity; c: XtlsIdentity } | undefined;
async function identities(): Promise<{ a: XtlsIdentity; b: XtlsIdentity; c: XtlsIdentity }> {
  ids ??= { a: await generateIdentity("romeo@montague.lit"), b: await generateIdentity("juliet@capulet.lit"), c: await generateIdentity("mallory@evil.lit") };
  return ids;
}

interface Setup {
  sb: Switchboard;
  alice: XtlsClient;
  bob: XtlsClient;
  trustA: MemoryTrustStore;
  trustB: MemoryTrustStore;
  incoming: Promise<XtlsTunnel>;
  failures: XtlsError[];
  wire: Element[];
}

async function setup(a: Partial<XtlsOptions> = {}, b: Partial<XtlsOptions> = {}): Promise<Setup> {
  const { a: ia, b: ib } = await identities();
  const sb = new Switchboard();
  const trustA = new MemoryTrustStore();
  const trustB = new MemoryTrustStore();
  const wire: Element[] = [];
  sb.tap((r) => wire.push(r.stanza));
  const alice = new XtlsClient({ connection: sb.connect(A), identity: ia, trust: trustA, ackTimeoutMs: 5000, ...a });
  const bob = new XtlsClient({ connection: sb.connect(B), identity: ib, trust: trustB, acceptSession: () => true, ackTimeoutMs: 5000, ...b });
  const failures: XtlsError[] = [];
  const incoming = new Promise<XtlsTunnel>((resolve) =>
    bob.on((e) => {
      if (e.type === "tunnel") resolve(e.tunnel);
      else failures.push(e.error);
    }),
  );
  return { sb, alice, bob, trustA, trustB, incoming, failures, wire };
}

function teardown(s: Setup): void {
  s.alice.detach();
  s.bob.detach();
}

async function readN(sock: Duplex, n: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < n) {
    const [chunk] = (await once(sock, "data")) as [Buffer];
    parts.push(chunk);
    got += chunk.length;
  }
  return Buffer.concat(parts);
}

const jingleAction = (s: Element): string | undefined => jingleChild(s)?.attrs.action as string | undefined;
const reasonOf = (s: Element): string | undefined => {
  const j = jingleChild(s);
  if (j === undefined) return undefined;
  const p = parseJingle(j);
  return p.ok ? p.value.reason?.condition : undefined;
};

test("certificates: self-signed per device, fingerprint sha-256, load supplied PEM", async () => {
  const { a } = await identities();
  assert.match(a.certPem, /BEGIN CERTIFICATE/);
  assert.equal(a.fingerprint.algo, "sha-256");
  assert.match(a.fingerprint.value, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
  const again = loadIdentity(a.certPem, a.keyPem);
  assert.deepEqual(again.fingerprint, a.fingerprint);
  assert.deepEqual(fingerprintOf(a.der, "sha-1").algo, "sha-1");
  const { b } = await identities();
  assert.throws(() => loadIdentity(a.certPem, b.keyPem), RangeError);
});

test("disco: xtls:1 advertised, :0 accepted, absence is a downgrade warning", () => {
  assert.deepEqual(xtlsSupport([XTLS_FEATURE]), { kind: "supported", version: 1 });
  assert.deepEqual(xtlsSupport(["urn:xmpp:jingle:security:xtls:0"]), { kind: "supported", version: 0 });
  const no = xtlsSupport(["urn:xmpp:jingle:1"]);
  assert.ok(no.kind === "unsupported" && /downgrade/.test(no.warning));
});

for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
  test(`x509 first contact with leap of faith on both sides (${version}), then pinned; data both ways; clean close`, async () => {
    const s = await setup(
      { leapOfFaith: () => true, minTlsVersion: version, maxTlsVersion: version },
      { leapOfFaith: () => true, minTlsVersion: version, maxTlsVersion: version },
    );
    const ta = await s.alice.connect(B);
    const tb = await s.incoming;
    assert.equal(ta.method, "x509");
    assert.equal(ta.protocol, version);
    assert.ok(ta.leapOfFaith && tb.leapOfFaith);
    const { a, b } = await identities();
    assert.deepEqual(ta.peerFingerprint, b.fingerprint);
    assert.deepEqual(tb.peerFingerprint, a.fingerprint);
    assert.ok(await s.trustA.isPinned("juliet@capulet.lit", b.fingerprint), "leap of faith pins (section 5)");
    assert.ok(await s.trustB.isPinned("romeo@montague.lit", a.fingerprint));

    const secret = Buffer.from("SECRET-PLAINTEXT-MARKER ".repeat(500));
    ta.socket.write(secret);
    assert.deepEqual(await readN(tb.socket, secret.length), secret);
    tb.socket.write("juliet replies");
    assert.equal((await readN(ta.socket, 14)).toString(), "juliet replies");

    await ta.close();
    const endA = await ta.ended;
    const endB = await tb.ended;
    assert.deepEqual(endA, { by: "local", reason: { condition: "success" } });
    assert.equal(endB.by, "remote");
    assert.equal(endB.reason?.condition, "success");

    // The order on the wire: session-initiate, session-accept, security-info, IBB open, data..., close, session-terminate.
    const actions = s.wire.flatMap((w) => {
      const a1 = jingleAction(w);
      const c = ibbChild(w);
      return a1 !== undefined ? [a1] : c !== undefined && c.name !== "data" ? [`ibb-${c.name}`] : [];
    });
    assert.deepEqual(actions, ["session-initiate", "session-accept", "security-info", "ibb-open", "ibb-close", "session-terminate"]);
    // No application byte in the clear anywhere (stanza text or decoded IBB payloads).
    for (const w of s.wire) {
      assert.ok(!serialize(w).includes("SECRET-PLAINTEXT"));
      const c = ibbChild(w);
      if (c?.name === "data") assert.ok(!Buffer.from(c.getText(), "base64").includes("SECRET-PLAINTEXT"));
    }
    teardown(s);
  });
}

test("second session: pinned certificates verify without any leap of faith", async () => {
  const s = await setup({ leapOfFaith: () => assert.fail("not asked") }, { leapOfFaith: () => assert.fail("not asked") });
  const { a, b } = await identities();
  await s.trustA.pin("juliet@capulet.lit", b.fingerprint);
  await s.trustB.pin("romeo@montague.lit", a.fingerprint);
  const ta = await s.alice.connect(B);
  const tb = await s.incoming;
  assert.ok(!ta.leapOfFaith && !tb.leapOfFaith);
  ta.socket.write("x");
  assert.equal((await readN(tb.socket, 1)).toString(), "x");
  await ta.close();
  teardown(s);
});

test("responder cannot verify and has no password or leap of faith: terminates with security-error", async () => {
  const s = await setup({ leapOfFaith: () => true }, {});
  await assert.rejects(s.alice.connect(B), (e: unknown) => e instanceof XtlsError && e.reason === "security-error");
  assert.equal(reasonOf(s.wire.find((w) => jingleAction(w) === "session-terminate") ?? el("x")), "security-error");
  assert.ok(!s.wire.some((w) => ibbChild(w) !== undefined), "no bytestream was opened");
  teardown(s);
});

test("initiator cannot verify the responder and may not leap: terminates with security-error", async () => {
  const s = await setup({}, { leapOfFaith: () => true });
  await assert.rejects(s.alice.connect(B), (e: unknown) => e instanceof XtlsError && e.condition === "peer-unverified");
  await s.sb.idle();
  const term = s.wire.find((w) => jingleAction(w) === "session-terminate");
  assert.equal(attrOf(term ?? el("x"), "from"), A);
  assert.equal(reasonOf(term ?? el("x")), "security-error");
  teardown(s);
});

test("responder without XTLS support: initiator refuses to run the XML stream unencrypted (rule 1); a file only when allowed", async () => {
  const s = await setup({}, { supportsXtls: false });
  await assert.rejects(s.alice.connect(B), (e: unknown) => e instanceof XtlsError && e.condition === "no-xtls-support" && e.reason === "security-error");
  const accept = s.wire.find((w) => jingleAction(w) === "session-accept");
  assert.ok(accept && !serialize(accept).includes("security"), "the session-accept had no <security/>");
  assert.ok(!s.wire.some((w) => ibbChild(w) !== undefined), "nothing was sent over a transport");
  teardown(s);

  // Even when the user allows plain, an XML stream is never run unencrypted...
  const q = await setup({}, { supportsXtls: false });
  await assert.rejects(q.alice.connect(B, { allowPlain: true }), (e: unknown) => e instanceof XtlsError && e.condition === "no-xtls-support");
  teardown(q);
  // ...but a file transfer may continue unencrypted if the user said so (rule 1).
  const p = await setup({}, { supportsXtls: false });
  const file = { name: "f.txt", size: 1, hashes: [] };
  const t = await p.alice.connect(B, { allowPlain: true, application: { kind: "file", file } });
  assert.equal(t.method, "none");
  assert.deepEqual(t.description, { kind: "file", file });
  await t.close();
  teardown(p);
});

test("srp chosen but no TLS-SRP plugged in: typed srp-unavailable, session ends with security-error", async () => {
  const noop: SrpTlsOverDuplex = (stream) => Promise.resolve(stream);
  // The responder can do srp, the initiator has a password but no TLS-SRP: it fails typed.
  const s = await setup({ password: () => "pw" }, { password: () => "pw", srp: noop });
  await assert.rejects(s.alice.connect(B), (e: unknown) => e instanceof XtlsError && e.condition === "srp-unavailable");
  await s.sb.idle();
  assert.equal(reasonOf(s.wire.find((w) => jingleAction(w) === "session-terminate") ?? el("x")), "security-error");
  assert.ok(!s.wire.some((w) => ibbChild(w) !== undefined), "no bytestream was opened");
  const accept = s.wire.find((w) => jingleAction(w) === "session-accept");
  const acc = parseJingle(jingleChild(accept ?? el("x")) ?? el("x"));
  const sec = acc.ok ? acc.value.contents[0]?.security : undefined;
  assert.ok(sec?.kind === "xtls" && sec.fingerprint === undefined && sec.methods.join() === "srp", "rule 4: no fingerprint, srp");
  teardown(s);
  // The responder without TLS-SRP refuses before accepting; the initiator sees security-error.
  const r = await setup({ password: () => "pw", srp: noop }, { password: () => "pw" });
  await assert.rejects(r.alice.connect(B), (e: unknown) => e instanceof XtlsError && e.reason === "security-error");
  assert.equal(r.failures[0]?.condition, "srp-unavailable");
  teardown(r);
});

test("srp plug-in: the function gets role, initiator full JID as username, password; its Duplex is the tunnel", async () => {
  const calls: Array<{ role: string; username: string; password: string }> = [];
  const fakeSrp: SrpTlsOverDuplex = (stream, opts) => {
    calls.push(opts);
    return Promise.resolve(stream);
  };
  const s = await setup({ password: () => "pw", srp: fakeSrp }, { password: () => "pw", srp: fakeSrp });
  const ta = await s.alice.connect(B);
  const tb = await s.incoming;
  assert.equal(ta.method, "srp");
  assert.equal(tb.method, "srp");
  assert.deepEqual(calls.map((c) => [c.role, c.username, c.password]).sort(), [
    ["client", A, "pw"],
    ["server", A, "pw"],
  ]);
  ta.socket.write("hi");
  assert.equal((await readN(tb.socket, 2)).toString(), "hi");
  await ta.close();
  teardown(s);
});

test("wrong fingerprint: a MitM rewrites the session-accept fingerprint; the TLS client detects it and sends security-error", async () => {
  const s = await setup({}, {});
  const { a, b, c } = await identities();
  // Alice pinned Mallory's fingerprint as Juliet's (the attacker's goal: make a wrong cert pass).
  await s.trustA.pin("juliet@capulet.lit", c.fingerprint);
  await s.trustB.pin("romeo@montague.lit", a.fingerprint);
  s.sb.setAdversary((item) => {
    if (jingleAction(item.stanza) !== "session-accept") return { action: "deliver" };
    const x = serialize(item.stanza).replace(b.fingerprint.value, c.fingerprint.value);
    return { action: "replace", stanza: parseXml(x) };
  });
  await assert.rejects(s.alice.connect(B), (e: unknown) => e instanceof XtlsError && e.condition === "fingerprint-mismatch");
  await s.sb.idle();
  const term = s.wire.find((w) => jingleAction(w) === "session-terminate");
  assert.equal(attrOf(term ?? el("x"), "from"), A);
  assert.equal(reasonOf(term ?? el("x")), "security-error");
  teardown(s);
});

test("tampered TLS record after the handshake: the receiver terminates with security-error and nothing is delivered", async () => {
  const s = await setup({ leapOfFaith: () => true }, { leapOfFaith: () => true });
  const ta = await s.alice.connect(B);
  const tb = await s.incoming;
  s.sb.setAdversary((item) => {
    const c = ibbChild(item.stanza);
    if (c?.name !== "data" || item.from !== A) return { action: "deliver" };
    const bytes = Buffer.from(c.getText(), "base64");
    bytes[bytes.length - 3] = (bytes[bytes.length - 3] ?? 0) ^ 1;
    const st = parseXml(serialize(item.stanza));
    const d = ibbChild(st);
    if (d !== undefined) d.children = [bytes.toString("base64")];
    return { action: "replace", stanza: st };
  });
  const received: Buffer[] = [];
  tb.socket.on("data", (d: Buffer) => received.push(d));
  ta.socket.on("error", () => undefined);
  ta.socket.write("will be tampered");
  const endB = await tb.ended;
  assert.equal(endB.by, "local");
  assert.equal(endB.reason?.condition, "security-error");
  assert.equal(endB.error?.condition, "tls-failure");
  const endA = await ta.ended;
  assert.equal(endA.by, "remote");
  assert.equal(endA.reason?.condition, "security-error");
  assert.equal(received.length, 0);
  teardown(s);
});

test("truncation: an IBB <close/> before the TLS close_notify ends with security-error, not a clean end (RFC 8446 6.1, draft section 6)", async () => {
  const s = await setup({ leapOfFaith: () => true }, { leapOfFaith: () => true });
  const ta = await s.alice.connect(B);
  const tb = await s.incoming;
  tb.socket.on("data", () => undefined);
  ta.socket.write("delivered before the cut");
  await new Promise((r) => setTimeout(r, 200));
  const sid = s.wire.map((w) => ibbChild(w)).find((c) => c?.name === "open")?.attrs.sid as string;
  // Mallory (the server) forges Alice's <close/> with no close_notify before it.
  s.sb.inject(A, el("iq", { type: "set", id: "trunc", to: B }, el("close", { xmlns: NS_IBB, sid })));
  const endB = await tb.ended;
  assert.equal(endB.by, "local");
  assert.equal(endB.reason?.condition, "security-error");
  assert.equal(endB.error?.condition, "tls-failure");
  assert.equal((await ta.ended).reason?.condition, "security-error");
  teardown(s);
});

test("a clean close (close_notify both ways, then IBB <close/>) is still success after the truncation check", async () => {
  const s = await setup({ leapOfFaith: () => true }, { leapOfFaith: () => true });
  const ta = await s.alice.connect(B);
  const tb = await s.incoming;
  tb.socket.resume();
  ta.socket.write("x".repeat(100_000));
  await ta.close();
  assert.equal((await tb.ended).reason?.condition, "success");
  assert.equal((await ta.ended).reason?.condition, "success");
  teardown(s);
});

test("both sides close at once (each ends its side before the other's close_notify arrives): success both ways, no truncation", async () => {
  for (let i = 0; i < 5; i++) {
    const s = await setup({ leapOfFaith: () => true }, { leapOfFaith: () => true });
    const ta = await s.alice.connect(B);
    const tb = await s.incoming;
    tb.socket.resume();
    ta.socket.resume();
    ta.socket.write("x".repeat(10_000));
    await readN(tb.socket, 10_000).catch(() => undefined);
    // The receiver closes as soon as it has what it expects (as receiveFile does), in the
    // same tick as the sender: both TLS close_notify and both IBB <close/> cross.
    await Promise.all([tb.close(), ta.close()]);
    assert.equal((await tb.ended).reason?.condition, "success");
    assert.equal((await ta.ended).reason?.condition, "success");
    assert.deepEqual(s.failures, []);
    teardown(s);
  }
});

async function readToEnd(sock: Duplex): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of sock) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

test("a slow reader: the peer closes and ends the session before the reader took the data; all of it still arrives and the tunnel ends with success after 'end'", async () => {
  const s = await setup({ leapOfFaith: () => true }, { leapOfFaith: () => true });
  const ta = await s.alice.connect(B);
  const tb = await s.incoming;
  const payload = Buffer.alloc(40_000, 7);
  ta.socket.write(payload);
  // Bob reads nothing yet: Alice's close (close_notify, IBB <close/>, session-terminate
  // with <success/>) completes while Bob's TLS layer still holds plaintext.
  await ta.close();
  assert.equal((await ta.ended).reason?.condition, "success");
  let bobEnded = false;
  void tb.ended.then(() => (bobEnded = true));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(bobEnded, false, "the tunnel is still draining: Bob has not read the data");
  const got = await readToEnd(tb.socket);
  assert.equal(got.length, payload.length);
  assert.deepEqual(got, payload);
  const endB = await tb.ended;
  assert.equal(endB.reason?.condition, "success");
  assert.equal(endB.by, "remote");
  assert.deepEqual(s.failures, []);
  teardown(s);
});

test("truncation while draining: a forged IBB <close/> and session-terminate <success/> before close_notify still fail the reader with tls-failure", async () => {
  const s = await setup({ leapOfFaith: () => true }, { leapOfFaith: () => true });
  const ta = await s.alice.connect(B);
  const tb = await s.incoming;
  ta.socket.write(Buffer.alloc(30_000, 1));
  await new Promise((r) => setTimeout(r, 200));
  const ibbSid = s.wire.map((w) => ibbChild(w)).find((c) => c?.name === "open")?.attrs.sid as string;
  // Mallory (the server) forges Alice's <close/> and a clean session-terminate; Bob's reader
  // has not taken the data yet, so his TLS layer has not seen the (missing) close_notify.
  s.sb.inject(A, el("iq", { type: "set", id: "trunc", to: B }, el("close", { xmlns: NS_IBB, sid: ibbSid })));
  s.sb.inject(A, el("iq", { type: "set", id: "term", to: B }, buildJingle({ action: "session-terminate", sid: tb.sid, initiator: A, contents: [], reason: { condition: "success" } })));
  await s.sb.idle();
  await assert.rejects(readToEnd(tb.socket));
  const endB = await tb.ended;
  assert.equal(endB.reason?.condition, "security-error");
  assert.equal(endB.error?.condition, "tls-failure");
  teardown(s);
});

test("a Jingle request for an unknown session gets <unknown-session/>; declined sessions end with <decline/>", async () => {
  const s = await setup({ leapOfFaith: () => true }, { acceptSession: () => false, leapOfFaith: () => true });
  const replies: Element[] = [];
  const probe = s.sb.connect(parseFullJid("probe@x.lit/p"));
  probe.onStanza((x) => replies.push(x));
  await probe.send(el("iq", { type: "set", id: "q1", to: B }, buildJingle({ action: "security-info", sid: "nope", contents: [] })));
  await s.sb.idle();
  await new Promise((r) => setImmediate(r));
  assert.ok(replies[0]?.getChild("error")?.getChild("unknown-session", NS_JINGLE_ERRORS));
  await assert.rejects(s.alice.connect(B), (e: unknown) => e instanceof XtlsError && e.condition === "declined");
  void NS_JINGLE;
  void NS_IBB;
  void NS;
  teardown(s);
});

export type { FullJid };

test("file transfer over XTLS (XEP-0234 offer): progress, size and SHA-256 checked, session ends with success", async () => {
  const { mkdtempSync, writeFileSync, readFileSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const { randomBytes } = await import("node:crypto");
  const { sendFile, receiveFile } = await import("../../src/xtls/index.js");
  const dir = mkdtempSync(join(tmpdir(), "xtls-file-"));
  try {
    const src = join(dir, "report.bin");
    const content = randomBytes(200_000);
    writeFileSync(src, content);
    let offered: string | undefined;
    const s = await setup({ leapOfFaith: () => true }, {
      leapOfFaith: () => true,
      acceptSession: ({ description }) => {
        offered = description.kind === "file" ? `${description.file.name}:${description.file.size}` : undefined;
        return true;
      },
    });
    const progress: number[] = [];
    const received = s.incoming.then((t) => receiveFile(t, join(dir, "out.bin")));
    const sent = await sendFile(s.alice, B, src, { onProgress: (n) => progress.push(n) });
    const got = await received;
    assert.equal(offered, "report.bin:200000");
    assert.equal(sent.bytes, content.length);
    assert.equal(got.sha256, sent.sha256);
    assert.deepEqual(readFileSync(join(dir, "out.bin")), content);
    assert.equal(progress.at(-1), content.length);
    assert.equal((await got.tunnel.ended).reason?.condition, "success");
    teardown(s);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
