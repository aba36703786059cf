/**
 * Interop: XTLS (draft-meyer-xmpp-e2e-encryption-02) between two clients through a real
 * Prosody on loopback: Jingle (XEP-0166) with the security precondition, in-band
 * bytestreams (XEP-0047/XEP-0261), TLS with the x509 method, an end-to-end XML stream
 * (XEP-0246) with stanzas both ways and a clean close (section 4); a wrong fingerprint,
 * a tampered TLS record and a responder without XTLS support end as sections 3 and 6
 * prescribe; nothing the user asked to protect crosses the server unencrypted; a 1 MiB
 * file over XTLS+IBB arrives intact.
 *
 * The attacker is simulated where a compromised server would sit: a wrapper around a
 * client's StanzaConnection rewrites stanzas the server delivers to it.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";
import { connectXmpp } from "../../src/adapters/xmpp-client.js";
import type { StanzaConnection } from "../../src/adapters/connection.js";
import type { FullJid } from "../../src/core/types.js";
import { el, parseXml, serialize, type Element } from "../../src/xml/index.js";
import { jingleChild, parseJingle } from "../../src/jingle/index.js";
import { ibbChild } from "../../src/ibb/index.js";
import { openE2eStream } from "../../src/streams/index.js";
import { MemoryTrustStore, XtlsClient, XtlsError, generateIdentity, type XtlsIdentity, type XtlsOptions, type XtlsTunnel } from "../../src/xtls/index.js";

/** A StanzaConnection through which a test plays the compromised server. */
class Wiretap implements StanzaConnection {
  inbound: ((s: Element) => Element | undefined) | undefined;
  readonly sent: string[] = [];
  constructor(private readonly inner: StanzaConnection) {}
  get jid(): FullJid {
    return this.inner.jid;
  }
  send(stanza: Element): Promise<void> {
    this.sent.push(serialize(stanza));
    return this.inner.send(stanza);
  }
  onStanza(handler: (stanza: Element) => void): () => void {
    return this.inner.onStanza((s) => {
      const t = this.inbound === undefined ? s : this.inbound(s);
      if (t !== undefined) handler(t);
    });
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

let prosody: ProsodyInstance;
let proxyPort = 0;
let ca: Wiretap;
let cb: Wiretap;
let idA: XtlsIdentity;
let idB: XtlsIdentity;
let idM: XtlsIdentity;
const clients: XtlsClient[] = [];

before(async () => {
  proxyPort = await new Promise<number>((res) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => res(typeof a === "object" && a !== null ? a.port : 0));
    });
  });
  prosody = await startProsody({
    users: [["romeo", "pw-r"], ["juliet", "pw-j"]],
    // XEP-0065 proxy (mod_proxy65) on loopback, for the SOCKS5 proxy-candidate test.
    extraConfig: [
      'proxy65_address = "127.0.0.1"',
      `proxy65_ports = { ${proxyPort} }`,
      'proxy65_interfaces = { "127.0.0.1" }',
      'Component "proxy.localhost" "proxy65"',
    ].join("\n"),
  });
  const [a, b] = await Promise.all([
    connectXmpp({ service: prosody.service, domain: "localhost", username: "romeo", password: "pw-r", resource: "orchard" }),
    connectXmpp({ service: prosody.service, domain: "localhost", username: "juliet", password: "pw-j", resource: "balcony" }),
  ]);
  ca = new Wiretap(a);
  cb = new Wiretap(b);
  [idA, idB, idM] = await Promise.all([generateIdentity("romeo@localhost"), generateIdentity("juliet@localhost"), generateIdentity("mallory@localhost")]);
});

after(async () => {
  for (const c of clients) c.detach();
  await Promise.all([ca?.close().catch(() => undefined), cb?.close().catch(() => undefined)]);
  await prosody?.stop();
});

interface Pair {
  alice: XtlsClient;
  bob: XtlsClient;
  trustA: MemoryTrustStore;
  trustB: MemoryTrustStore;
  incoming: Promise<XtlsTunnel>;
  failures: XtlsError[];
  done(): void;
}

function pair(a: Partial<XtlsOptions> = {}, b: Partial<XtlsOptions> = {}, trust?: { a: MemoryTrustStore; b: MemoryTrustStore }): Pair {
  const trustA = trust?.a ?? new MemoryTrustStore();
  const trustB = trust?.b ?? new MemoryTrustStore();
  const alice = new XtlsClient({ connection: ca, identity: idA, trust: trustA, blockSize: 8192, ...a });
  const bob = new XtlsClient({ connection: cb, identity: idB, trust: trustB, acceptSession: () => true, blockSize: 8192, ...b });
  clients.push(alice, bob);
  const failures: XtlsError[] = [];
  const incoming = new Promise<XtlsTunnel>((res) =>
    bob.on((e) => {
      if (e.type === "tunnel") res(e.tunnel);
      else failures.push(e.error);
    }),
  );
  return {
    alice,
    bob,
    trustA,
    trustB,
    incoming,
    failures,
    done: () => {
      alice.detach();
      bob.detach();
      ca.inbound = undefined;
      cb.inbound = undefined;
    },
  };
}

const reasonIn = (texts: string[]): string | undefined => {
  for (const t of texts) {
    const s = parseXml(t);
    const j = jingleChild(s);
    if (j?.attrs.action === "session-terminate") {
      const p = parseJingle(j);
      return p.ok ? p.value.reason?.condition : undefined;
    }
  }
  return undefined;
};

/** Every stanza a client sent, with IBB payloads decoded: must not contain `marker`. */
function assertNeverInClear(conn: Wiretap, marker: string): void {
  for (const t of conn.sent) {
    assert.ok(!t.includes(marker), "marker in a stanza");
    const s = parseXml(t);
    const c = ibbChild(s);
    if (c?.name === "data") assert.ok(!Buffer.from(c.getText(), "base64").includes(marker), "marker in IBB payload");
  }
}

test("x509 tunnel (leap of faith, then pinned), e2e stream stanzas both ways, clean close; nothing in the clear", async (t) => {
  const trust = { a: new MemoryTrustStore(), b: new MemoryTrustStore() };
  const first = pair({ leapOfFaith: () => true }, { leapOfFaith: () => true }, trust);
  t.after(() => first.done());
  const t1 = await first.alice.connect(cb.jid);
  const u1 = await first.incoming;
  assert.ok(t1.leapOfFaith && u1.leapOfFaith);
  await t1.close();
  assert.equal((await u1.ended).reason?.condition, "success");
  first.done();

  ca.sent.length = 0;
  cb.sent.length = 0;
  const p = pair({ leapOfFaith: () => assert.fail("pinned: no prompt") }, { leapOfFaith: () => assert.fail("pinned: no prompt") }, trust);
  t.after(() => p.done());
  const ta = await p.alice.connect(cb.jid);
  const tb = await p.incoming;
  assert.equal(ta.method, "x509");
  assert.ok(!ta.leapOfFaith && !tb.leapOfFaith);
  const [sa, sbs] = await Promise.all([openE2eStream(ta, ca.jid), openE2eStream(tb, cb.jid)]);
  assert.equal(sa.header?.from, cb.jid, "full JIDs in the stream headers");
  assert.equal(sbs.header?.from, ca.jid);
  const atB: Element[] = [];
  const atA: Element[] = [];
  sbs.onStanza((s) => {
    atB.push(s);
    if (s.name === "iq" && s.attrs.type === "get") void sbs.send(el("iq", { type: "result", id: String(s.attrs.id), to: ca.jid }, el("query", { xmlns: "jabber:iq:version" }, el("name", {}, "PROTECTED-MARKER-v"))));
  });
  sa.onStanza((s) => atA.push(s));
  await sa.send(el("message", { to: cb.jid, type: "chat" }, el("body", {}, "PROTECTED-MARKER M'lady")));
  await sa.send(el("presence", {}, el("status", {}, "PROTECTED-MARKER status")));
  await sa.send(el("iq", { type: "get", id: "v1", to: cb.jid }, el("query", { xmlns: "jabber:iq:version" })));
  await sbs.send(el("message", { to: ca.jid }, el("body", {}, "PROTECTED-MARKER Art thou not Romeo")));
  for (let k = 0; k < 1500 && (atB.length < 3 || atA.length < 2); k++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(atB.map((s) => s.name), ["message", "presence", "iq"]);
  assert.equal(atB[0]?.getChildText("body"), "PROTECTED-MARKER M'lady");
  assert.equal(atB[0]?.attrs.from, ca.jid);
  assert.deepEqual(atA.map((s) => s.name).sort(), ["iq", "message"]);
  await sa.close();
  assert.deepEqual(await ta.ended, { by: "local", reason: { condition: "success" } });
  const endB = await tb.ended;
  assert.equal(endB.by, "remote");
  assert.equal(endB.reason?.condition, "success");
  assertNeverInClear(ca, "PROTECTED-MARKER");
  assertNeverInClear(cb, "PROTECTED-MARKER");
  p.done();
});

test("wrong fingerprint: the server rewrites the responder's fingerprint; the initiator ends with security-error", async (t) => {
  const trust = { a: new MemoryTrustStore(), b: new MemoryTrustStore() };
  await trust.a.pin("juliet@localhost", idM.fingerprint); // the attacker's certificate looks pinned
  await trust.b.pin("romeo@localhost", idA.fingerprint);
  const p = pair({}, {}, trust);
  t.after(() => p.done());
  ca.inbound = (s) => {
    const j = jingleChild(s);
    if (j?.attrs.action !== "session-accept") return s;
    return parseXml(serialize(s).replace(idB.fingerprint.value, idM.fingerprint.value));
  };
  ca.sent.length = 0;
  await assert.rejects(p.alice.connect(cb.jid), (e: unknown) => e instanceof XtlsError && e.condition === "fingerprint-mismatch");
  assert.equal(reasonIn(ca.sent), "security-error");
  p.done();
});

test("tampered TLS record: the receiver terminates with security-error, nothing is delivered", async (t) => {
  const p = pair({ leapOfFaith: () => true }, { leapOfFaith: () => true });
  t.after(() => p.done());
  const ta = await p.alice.connect(cb.jid);
  const tb = await p.incoming;
  const got: Buffer[] = [];
  tb.socket.on("data", (d: Buffer) => got.push(d));
  ta.socket.on("error", () => undefined);
  cb.sent.length = 0;
  cb.inbound = (s) => {
    const c = ibbChild(s);
    if (c?.name !== "data") return s;
    const t = parseXml(serialize(s));
    const d = ibbChild(t);
    const bytes = Buffer.from(c.getText(), "base64");
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0x80;
    if (d !== undefined) d.children = [bytes.toString("base64")];
    return t;
  };
  ta.socket.write("PROTECTED-MARKER tampered");
  const endB = await tb.ended;
  assert.deepEqual([endB.by, endB.reason?.condition, endB.error?.condition], ["local", "security-error", "tls-failure"]);
  assert.equal(reasonIn(cb.sent), "security-error");
  // Alice learns it from Bob's session-terminate or, first, from Bob's fatal TLS alert.
  const endA = await ta.ended;
  assert.equal(endA.reason?.condition, "security-error");
  assert.equal(got.length, 0);
  p.done();
});

test("responder without XTLS support: the initiator refuses an unencrypted XML stream (security-error), no transport", async (t) => {
  const p = pair({}, { supportsXtls: false });
  t.after(() => p.done());
  ca.sent.length = 0;
  cb.sent.length = 0;
  await assert.rejects(p.alice.connect(cb.jid), (e: unknown) => e instanceof XtlsError && e.condition === "no-xtls-support");
  assert.equal(reasonIn(ca.sent), "security-error");
  assert.ok(![...ca.sent, ...cb.sent].some((t) => ibbChild(parseXml(t)) !== undefined), "no bytestream traffic");
  p.done();
});

test("a 1 MiB file over XTLS+IBB arrives intact (SHA-256)", async (t) => {
  const p = pair({ leapOfFaith: () => true }, { leapOfFaith: () => true });
  t.after(() => p.done());
  const ta = await p.alice.connect(cb.jid);
  const tb = await p.incoming;
  const file = randomBytes(1 << 20);
  const received = new Promise<Buffer>((res) => {
    const parts: Buffer[] = [];
    let n = 0;
    tb.socket.on("data", (d: Buffer) => {
      parts.push(d);
      n += d.length;
      if (n >= file.length) res(Buffer.concat(parts));
    });
  });
  ta.socket.write(file);
  const got = await received;
  assert.equal(got.length, file.length);
  assert.equal(createHash("sha256").update(got).digest("hex"), createHash("sha256").update(file).digest("hex"));
  await ta.close();
  assert.equal((await tb.ended).reason?.condition, "success");
  p.done();
});

test("CLI: send-file / receive-file (over SOCKS5) and chat (over IBB) between two `xtls` runs through Prosody", async () => {
  const { mkdtempSync, writeFileSync, readFileSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const { run } = await import("../../src/cli/xtls.js");
  const dir = mkdtempSync(join(tmpdir(), "xtls-cli-"));
  const io = (lines: AsyncIterable<string> = (async function* () {})()) => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s), secret: () => Promise.resolve("unused"), lines: () => lines } };
  };
  try {
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(dir, "in"));
    const file = join(dir, "notes.bin");
    const content = randomBytes(300_000);
    writeFileSync(file, content);
    const common = ["--service", prosody.service, "--leap-of-faith"];
    const r = io();
    const receiver = run(["receive-file", "--jid", "juliet@localhost/cli-r", "--password", "pw-j", "--dir", join(dir, "j"), "--out", join(dir, "in"), ...common], r.io);
    await new Promise((res) => setTimeout(res, 700));
    const s = io();
    const sent = await run(["send-file", "--jid", "romeo@localhost/cli-s", "--password", "pw-r", "--dir", join(dir, "r"), "--to", "juliet@localhost/cli-r", "--transport", "s5b", ...common, file], s.io);
    assert.equal(sent, 0, s.err.join(""));
    assert.equal(await receiver, 0, r.err.join(""));
    assert.deepEqual(readFileSync(join(dir, "in", "notes.bin")), content);
    assert.match(s.out.join(""), /sent 300000 bytes, sha-256 .* secured with x509/);

    // chat: juliet waits, romeo sends two lines and /quit.
    let release: () => void = () => undefined;
    const gate = new Promise<void>((res) => (release = res));
    const romeoLines = (async function* () {
      yield "PROTECTED-MARKER hello";
      await gate;
      yield "/quit";
    })();
    const j = io((async function* () {
      await new Promise(() => undefined); // juliet types nothing
    })());
    const jRun = run(["chat", "--jid", "juliet@localhost/cli-c", "--password", "pw-j", "--dir", join(dir, "j2"), ...common], j.io);
    await new Promise((res) => setTimeout(res, 700));
    const ro = io(romeoLines);
    const rRun = run(["chat", "--jid", "romeo@localhost/cli-c", "--password", "pw-r", "--dir", join(dir, "r2"), "--to", "juliet@localhost/cli-c", ...common], ro.io);
    for (let k = 0; k < 300 && !j.out.join("").includes("PROTECTED-MARKER hello"); k++) await new Promise((res) => setTimeout(res, 20));
    release();
    assert.equal(await rRun, 0, ro.err.join(""));
    assert.equal(await jRun, 0, j.err.join(""));
    assert.match(j.out.join(""), /romeo@localhost\/cli-c: PROTECTED-MARKER hello/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a 20 MiB file over XTLS+SOCKS5 (XEP-0260 direct candidate, signalled through Prosody) arrives intact", async (t) => {
  const p = pair({ leapOfFaith: () => true }, { leapOfFaith: () => true });
  t.after(() => p.done());
  ca.sent.length = 0;
  const ta = await p.alice.connect(cb.jid, { transport: "s5b" });
  const tb = await p.incoming;
  const file = randomBytes(20 << 20);
  const received = new Promise<string>((res) => {
    const h = createHash("sha256");
    let n = 0;
    tb.socket.on("data", (d: Buffer) => {
      h.update(d);
      n += d.length;
      if (n >= file.length) res(`${n}:${h.digest("hex")}`);
    });
  });
  ta.socket.write(file);
  assert.equal(await received, `${file.length}:${createHash("sha256").update(file).digest("hex")}`);
  await ta.close();
  assert.equal((await tb.ended).reason?.condition, "success");
  assert.ok(!ca.sent.some((x) => ibbChild(parseXml(x)) !== undefined), "no IBB: the bytes went over SOCKS5");
});

// Prosody 0.12's mod_proxy65 was seen to hold back the last few KiB of a multi-MiB burst
// (also without TLS: 4,190,208 of 4,194,304 bytes relayed), so this test moves 16 KiB (below its relay buffer).
test("XTLS over SOCKS5 through Prosody's proxy65 (XEP-0260 proxy candidate, XEP-0065 activation): 16 KiB intact", async (t) => {
  const p = pair({ leapOfFaith: () => true, s5bDirect: false, s5bProxy: { jid: "proxy.localhost", host: "127.0.0.1", port: proxyPort } }, { leapOfFaith: () => true });
  t.after(() => p.done());
  ca.sent.length = 0;
  const ta = await p.alice.connect(cb.jid, { transport: "s5b" });
  const tb = await p.incoming;
  const file = randomBytes(16 << 10);
  const received = new Promise<string>((res) => {
    const h = createHash("sha256");
    let n = 0;
    tb.socket.on("data", (d: Buffer) => {
      h.update(d);
      n += d.length;
      if (n >= file.length) res(`${n}:${h.digest("hex")}`);
    });
  });
  ta.socket.write(file);
  assert.equal(await received, `${file.length}:${createHash("sha256").update(file).digest("hex")}`);
  await ta.close();
  assert.equal((await tb.ended).reason?.condition, "success");
  assert.ok(ca.sent.some((x) => x.includes("<activate>")), "the initiator activated the bytestream at the proxy");
  assert.ok(ca.sent.some((x) => x.includes("<activated ")), "and told the responder");
});

/** Moves `n` random bytes a -> b over a tunnel; resolves with "length:sha256" of what arrived. */
async function moveBytes(ta: XtlsTunnel, tb: XtlsTunnel, n: number): Promise<void> {
  const file = randomBytes(n);
  const received = new Promise<string>((res) => {
    const h = createHash("sha256");
    let got = 0;
    tb.socket.on("data", (d: Buffer) => {
      h.update(d);
      got += d.length;
      if (got >= file.length) res(`${got}:${h.digest("hex")}`);
    });
  });
  ta.socket.write(file);
  assert.equal(await received, `${file.length}:${createHash("sha256").update(file).digest("hex")}`);
}

test("SOCKS5 -> IBB fallback through Prosody (XEP-0260 2.8): proxy-error at activation, then no reachable candidate; TLS over IBB each time", async (t) => {
  // 1. The proxy accepts both connections but the activation goes to a JID that does not
  //    exist, so the server refuses it: <proxy-error/>, then transport-replace to IBB.
  const notices: string[] = [];
  const p = pair({ leapOfFaith: () => true, s5bDirect: false, s5bProxy: { jid: "noproxy.localhost", host: "127.0.0.1", port: proxyPort } }, { leapOfFaith: () => true });
  t.after(() => p.done());
  p.alice.onNotice((n) => notices.push(n.type === "transport-fallback" ? n.why : n.type));
  ca.sent.length = 0;
  cb.sent.length = 0;
  const ta = await p.alice.connect(cb.jid, { transport: "s5b" });
  const tb = await p.incoming;
  assert.equal(ta.method, "x509");
  await moveBytes(ta, tb, 300_000);
  await ta.close();
  assert.equal((await tb.ended).reason?.condition, "success");
  assert.ok(ca.sent.some((x) => x.includes("<proxy-error/>")), "the initiator reported proxy-error");
  assert.ok(ca.sent.some((x) => x.includes('action="transport-replace"')), "then replaced the transport");
  assert.ok(cb.sent.some((x) => x.includes('action="transport-accept"')), "the responder accepted");
  assert.ok(ca.sent.some((x) => ibbChild(parseXml(x))?.name === "data"), "the bytes went in-band");
  assert.deepEqual(notices, ["our SOCKS5 proxy failed (connect or activation)"]);
  p.done();

  // 2. Nothing reachable: only a proxy candidate on a closed port -> candidate-error both ways.
  const closedPort = await new Promise<number>((res) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => res(typeof a === "object" && a !== null ? a.port : 0));
    });
  });
  const q = pair({ leapOfFaith: () => true, s5bDirect: false, s5bProxy: { jid: "proxy.localhost", host: "127.0.0.1", port: closedPort } }, { leapOfFaith: () => true });
  t.after(() => q.done());
  ca.sent.length = 0;
  const qa = await q.alice.connect(cb.jid, { transport: "s5b" });
  const qb = await q.incoming;
  await moveBytes(qa, qb, 100_000);
  await qa.close();
  assert.equal((await qb.ended).reason?.condition, "success");
  assert.ok(ca.sent.some((x) => x.includes("<candidate-error/>")), "candidate-error");
  assert.ok(ca.sent.some((x) => x.includes('action="transport-replace"')));
});

test("CLI: a peer that does not advertise XTLS (caps/disco#info) gets the downgrade warning and nothing is sent (require-XTLS)", async () => {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const { run } = await import("../../src/cli/xtls.js");
  const dir = mkdtempSync(join(tmpdir(), "xtls-cli-"));
  const err: string[] = [];
  const seen: string[] = [];
  const off = cb.onStanza((s) => seen.push(serialize(s)));
  try {
    // juliet@localhost/balcony is a plain client here: no XTLS in its disco#info.
    const code = await run(
      ["chat", "--jid", "romeo@localhost/cli-d", "--password", "pw-r", "--dir", dir, "--service", prosody.service, "--leap-of-faith", "--to", cb.jid],
      { out: () => undefined, err: (s) => void err.push(s), secret: () => Promise.resolve("unused"), lines: () => (async function* () {})() },
    );
    assert.equal(code, 1);
    assert.match(err.join(""), /does not advertise XTLS.*downgrade attack/s);
    assert.ok(seen.some((x) => x.includes("http://jabber.org/protocol/disco#info")), "it asked disco#info");
    assert.ok(!seen.some((x) => x.includes("urn:xmpp:jingle:1")), "no Jingle stanza reached the peer");
  } finally {
    off();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("CLI --srp: the shared password is prompted for (never echoed or logged), the tunnel is TLS-SRP, certificates are pinned for the next x509 session; a wrong password fails", async () => {
  const { mkdtempSync, rmSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { tmpdir } = await import("node:os");
  const { run } = await import("../../src/cli/xtls.js");
  const dir = mkdtempSync(join(tmpdir(), "xtls-cli-srp-"));
  const common = ["--service", prosody.service];
  /** One chat: juliet waits, romeo says one line and quits; returns both transcripts. */
  const chat = async (tag: string, jPw: string | undefined, rPw: string | undefined) => {
    const mkIo = (pw: string | undefined, lines: AsyncIterable<string>) => {
      const out: string[] = [];
      const err: string[] = [];
      const prompts: string[] = [];
      return { out, err, prompts, io: { out: (s: string) => void out.push(s), err: (s: string) => void err.push(s), secret: (p: string) => (prompts.push(p), Promise.resolve(pw ?? "")), lines: () => lines } };
    };
    let release: () => void = () => undefined;
    const gate = new Promise<void>((res) => (release = res));
    const j = mkIo(jPw, (async function* () {
      await new Promise(() => undefined);
    })());
    const r = mkIo(rPw, (async function* () {
      yield `hello over ${tag}`;
      await gate;
      yield "/quit";
    })());
    const srp = (pw: string | undefined) => (pw === undefined ? [] : ["--srp"]);
    const jRun = run(["chat", "--jid", `juliet@localhost/srp-${tag}`, "--password", "pw-j", "--dir", join(dir, "j"), ...srp(jPw), ...common], j.io);
    await new Promise((res) => setTimeout(res, 700));
    const rRun = run(["chat", "--jid", "romeo@localhost/srp", "--password", "pw-r", "--dir", join(dir, `r`), "--to", `juliet@localhost/srp-${tag}`, ...srp(rPw), ...common], r.io);
    for (let k = 0; k < 300 && !j.out.join("").includes(`hello over ${tag}`) && !r.err.join("").includes("xtls:"); k++) await new Promise((res) => setTimeout(res, 20));
    release();
    const rc = await rRun;
    const jc = await Promise.race([jRun, new Promise<number>((res) => setTimeout(() => res(-1), 5000))]);
    return { rc, jc, j, r };
  };
  try {
    const first = await chat("a", "tinned-peaches", "tinned-peaches");
    assert.equal(first.rc, 0, first.r.err.join(""));
    assert.equal(first.jc, 0, first.j.err.join(""));
    assert.match(first.r.err.join(""), /secured with srp/);
    assert.match(first.r.err.join(""), /pinned juliet@localhost's certificate/);
    assert.match(first.j.err.join(""), /pinned romeo@localhost's certificate/);
    assert.match(first.r.prompts.join(""), /password shared with juliet@localhost\/srp-a \(TLS-SRP\)/);
    assert.ok(![...first.r.err, ...first.j.err, ...first.r.out, ...first.j.out].join("").includes("tinned-peaches"), "the password is never printed");
    assert.match(first.j.out.join(""), /hello over a/);
    // Second session, same devices, no password: pinned x509 (no leap of faith needed).
    const second = await chat("b", undefined, undefined);
    assert.equal(second.rc, 0, second.r.err.join(""));
    assert.match(second.r.err.join(""), /secured with x509/);
    assert.doesNotMatch(second.r.err.join(""), /not verified/);
    // Wrong password on fresh devices: the handshake fails, the session ends with security-error.
    rmSync(join(dir, "j"), { recursive: true, force: true });
    rmSync(join(dir, "r"), { recursive: true, force: true });
    const wrong = await chat("c", "tinned-peaches", "tinned-pears");
    assert.equal(wrong.rc, 1);
    assert.match(wrong.r.err.join(""), /xtls: (tls-failure|terminated|peer-unverified)/);
    assert.doesNotMatch(wrong.j.out.join(""), /hello over c/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
