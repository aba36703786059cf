/**
 * XTLS with the srp method through a real Prosody, using this project's TLS-SRP
 * (RFC 5054 over TLS 1.2, src/tls-srp, itself proven against GnuTLS): the peers have never
 * pinned each other's certificates, share a password, set up the tunnel, exchange stanzas
 * over the end-to-end stream; a wrong password ends the session with <security-error/>.
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02 sections 3 (methods: srp), 4 (TLS over the
 * transport), 6 (security-error); RFC 5054; XEP-0246.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { connectXmpp, type XmppConnection } from "../../src/adapters/xmpp-client.js";
import type { FullJid } from "../../src/core/types.js";
import { openE2eStream } from "../../src/streams/index.js";
import { srpTlsOverDuplex } from "../../src/tls-srp/index.js";
import { generateIdentity, MemoryTrustStore, XtlsClient, XtlsError, type XtlsIdentity, type XtlsTunnel } from "../../src/xtls/index.js";
import { el } from "../../src/xml/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

let prosody: ProsodyInstance;
let ca: XmppConnection;
let cb: XmppConnection;
let idA: XtlsIdentity;
let idB: XtlsIdentity;

before(async () => {
  prosody = await startProsody({ users: [["romeo", "pw-r"], ["juliet", "pw-j"]] });
  [ca, cb] = await Promise.all([
    connectXmpp({ service: prosody.service, domain: "localhost", username: "romeo", password: "pw-r", resource: "srp-a" }),
    connectXmpp({ service: prosody.service, domain: "localhost", username: "juliet", password: "pw-j", resource: "srp-b" }),
  ]);
  [idA, idB] = await Promise.all([generateIdentity("romeo@localhost"), generateIdentity("juliet@localhost")]);
});

after(async () => {
  await Promise.all([ca?.close().catch(() => undefined), cb?.close().catch(() => undefined)]);
  await prosody?.stop();
});

function pair(alicePassword: string, bobPassword: string) {
  const alice = new XtlsClient({ connection: ca, identity: idA, trust: new MemoryTrustStore(), srp: srpTlsOverDuplex, password: () => alicePassword });
  const bob = new XtlsClient({
    connection: cb,
    identity: idB,
    trust: new MemoryTrustStore(),
    srp: srpTlsOverDuplex,
    password: () => bobPassword,
    acceptSession: () => true,
  });
  const failures: XtlsError[] = [];
  const incoming = new Promise<XtlsTunnel>((res) =>
    bob.on((e) => {
      if (e.type === "tunnel") res(e.tunnel);
      else failures.push(e.error);
    }),
  );
  return { alice, bob, incoming, failures, done: () => (alice.detach(), bob.detach()) };
}

test("srp: unpinned peers with a shared password get a TLS-SRP tunnel and an end-to-end stream", { timeout: 60_000 }, async () => {
  const p = pair("correct horse battery", "correct horse battery");
  try {
    const [ta, tb] = await Promise.all([p.alice.connect(cb.jid as FullJid), p.incoming]);
    assert.equal(ta.method, "srp");
    assert.equal(tb.method, "srp");
    const [sa, sb] = await Promise.all([openE2eStream(ta, ca.jid as FullJid), openE2eStream(tb, cb.jid as FullJid)]);
    const got = new Promise<string>((res) => sb.onStanza((s) => res(s.getChildText("body") ?? "")));
    await sa.send(el("message", { to: cb.jid, type: "chat" }, el("body", {}, "over TLS-SRP")));
    assert.equal(await got, "over TLS-SRP");
    await sa.close();
  } finally {
    p.done();
  }
});

test("srp: a wrong password ends the session with security-error on both sides", { timeout: 60_000 }, async () => {
  const p = pair("correct horse battery", "wrong guess");
  try {
    await assert.rejects(p.alice.connect(cb.jid as FullJid), (e: unknown) => e instanceof XtlsError);
    // The responder reports its own failure too; nothing was established.
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(p.failures.length >= 1, "the responder did not report the failure");
  } finally {
    p.done();
  }
});
