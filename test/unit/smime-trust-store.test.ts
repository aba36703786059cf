/**
 * TrustCertificateStore (src/smime/trust-store.ts): certificate keys recorded in the
 * shared trust store with the JIDs they were seen with, and the XEP-0116 section 7.4
 * alerts for object encryption: trust on first use of a signer, a changed key refused
 * (key-changed) until the user accepts it, a key shared by two JIDs (key-shared), a
 * revoked key neither trusted nor encrypted to, explicit anchors and CA-issued
 * certificates, EC P-256 certificates recorded and alerted on like RSA ones, keys the
 * store cannot hold (P-384) left to explicit anchors, persistence in SQLite.
 *
 * Spec: RFC 3923 sections 6.2-6.4; XEP-0116 v0.16 sections 7.3-7.4; XEP-0189 v0.14
 * section 4 (revocation).
 */
import "reflect-metadata";
import assert from "node:assert/strict";
import { webcrypto } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import * as x509 from "@peculiar/x509";
import { type FullJid, type Jid, parseFullJid, parseJid } from "../../src/core/types.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { nodeCrypto, systemClock, systemRandom } from "../../src/crypto/node.js";
import { generateIdentity, xmppAddrSan } from "../../src/smime/certs.js";
import { FileCertificateStore, MemoryCertificateStore } from "../../src/smime/certstore.js";
import type { SmimeIdentity } from "../../src/smime/cms.js";
import { type ObjectEvent, ObjectSession } from "../../src/smime/session.js";
import { isCaCertificate, TrustCertificateStore } from "../../src/smime/trust-store.js";
import { MemoryStore } from "../../src/store/memory.js";
import { MemoryReplayCache } from "../../src/store/replay.js";
import { openSqliteStore } from "../../src/store/sqlite.js";
import type { TrustStoreDeps } from "../../src/trust/index.js";
import type { TrustAlert, TrustVerdict } from "../../src/trust/index.js";
import { el, type Element, parseXml } from "../../src/xml/index.js";

const env = { random: systemRandom, clock: systemClock };
const ALICE = parseFullJid("alice@example.org/phone");
const BOB = parseFullJid("bob@example.net/desk");
const CAROL = parseFullJid("carol@example.com/pad");
let alice: SmimeIdentity, alice2: SmimeIdentity, aliceEc: SmimeIdentity, aliceEc2: SmimeIdentity, aliceP384: SmimeIdentity;
let bob: SmimeIdentity, carolWithAliceKey: SmimeIdentity, carolWithAliceEcKey: SmimeIdentity;
let ca: SmimeIdentity, aliceIssued: SmimeIdentity;
let dir: string;

function ab(u: Uint8Array): ArrayBuffer {
  return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;
}

/** A self-signed certificate for `jid` over an existing RSA or EC P-256 identity's key (the same key under another address). */
async function certWithKey(id: SmimeIdentity, jid: Jid, type: "rsa" | "ec" = "rsa"): Promise<SmimeIdentity> {
  const alg = type === "rsa" ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const privateKey = await webcrypto.subtle.importKey("pkcs8", ab(id.privateKey), alg, true, ["sign"]);
  const spki = new x509.X509Certificate(ab(id.certificate)).publicKey.rawData;
  const publicKey = await webcrypto.subtle.importKey("spki", spki, alg, true, ["verify"]);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "0badc0de01",
    name: `CN=${jid}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
    keys: { privateKey, publicKey } as CryptoKeyPair,
    signingAlgorithm: alg,
    extensions: [new x509.Extension("2.5.29.17", false, ab(xmppAddrSan(jid)))],
  });
  return { certificate: new Uint8Array(cert.rawData), privateKey: id.privateKey };
}

before(async () => {
  alice = await generateIdentity({ jid: ALICE, keyType: "rsa-2048" }, env);
  alice2 = await generateIdentity({ jid: ALICE, keyType: "rsa-2048" }, env);
  aliceEc = await generateIdentity({ jid: ALICE, keyType: "ec-p256" }, env);
  aliceEc2 = await generateIdentity({ jid: ALICE, keyType: "ec-p256" }, env);
  aliceP384 = await generateIdentity({ jid: ALICE, keyType: "ec-p384" }, env);
  bob = await generateIdentity({ jid: BOB, keyType: "rsa-2048" }, env);
  carolWithAliceKey = await certWithKey(alice, parseJid("carol@example.com"));
  carolWithAliceEcKey = await certWithKey(aliceEc, parseJid("carol@example.com"), "ec");
  ca = await generateIdentity({ jid: parseJid("ca@example.org"), keyType: "ec-p256", ca: true }, env);
  aliceIssued = await generateIdentity({ jid: ALICE, keyType: "rsa-2048", issuer: ca }, env);
  dir = mkdtempSync(join(tmpdir(), "xmpp-e2e-smime-trust-"));
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Receiver {
  readonly store: TrustCertificateStore;
  readonly session: ObjectSession;
  readonly alerts: TrustAlert[];
  readonly verdicts: TrustVerdict[];
  readonly unrecorded: Uint8Array[];
  readonly events: ObjectEvent[];
}

function receiver(clock: VirtualClock, trustStore: TrustStoreDeps = new MemoryStore(), certificates = new MemoryCertificateStore()): Receiver {
  const alerts: TrustAlert[] = [];
  const verdicts: TrustVerdict[] = [];
  const unrecorded: Uint8Array[] = [];
  const store = new TrustCertificateStore({
    account: parseJid("bob@example.net"),
    store: trustStore,
    crypto: nodeCrypto,
    clock,
    certificates,
    onAlert: (a) => alerts.push(a),
    onVerdict: (v) => verdicts.push(v),
    onUnrecorded: (c) => unrecorded.push(c),
  });
  const session = new ObjectSession({ self: BOB, identity: bob, certificates: store, replay: new MemoryReplayCache(), clock, random: new SeededRandom(nodeCrypto, "bob") });
  return { store, session, alerts, verdicts, unrecorded, events: [] };
}

/** A signed (not encrypted) message from `jid` with `id`, as the server delivers it. */
async function signedFrom(jid: FullJid, id: SmimeIdentity, clock: VirtualClock, text: string): Promise<Element> {
  const certs = new MemoryCertificateStore();
  const s = new ObjectSession({ self: jid, identity: id, certificates: certs, replay: new MemoryReplayCache(), clock, random: new SeededRandom(nodeCrypto, text) });
  await s.sendMessage(BOB, el("message", { xmlns: "jabber:client", type: "chat" }, el("body", {}, text)), { encrypt: false });
  const out = s.drain().find((o) => o.kind === "send");
  assert.ok(out?.kind === "send");
  const x = parseXml(out.stanza.toString().replace(/\r\n/g, "\n"));
  x.attrs.from = jid;
  x.attrs.to = BOB;
  return x;
}

async function receive(r: Receiver, stanza: Element): Promise<ObjectEvent | undefined> {
  await r.session.receive(stanza);
  const outs = r.session.drain();
  for (const o of outs) if (o.kind === "event") r.events.push(o.event);
  return outs.find((o) => o.kind === "event")?.event as ObjectEvent | undefined;
}

const kinds = (alerts: readonly TrustAlert[]) => alerts.map((a) => a.kind);
const rejectedWith = (e: ObjectEvent | undefined) => (e?.type === "rejected" ? e.error.condition : e?.type);

describe("TrustCertificateStore", () => {
  it("trust on first use of a signer; a changed key alerts and is refused until accepted", async () => {
    const clock = new VirtualClock(Date.now());
    const r = receiver(clock);
    const first = await receive(r, await signedFrom(ALICE, alice, clock, "hello"));
    assert.equal(first?.type, "message", rejectedWith(first));
    assert.deepEqual(kinds(r.alerts), [], "first contact: no alert (sas-never-confirmed is not forwarded)");
    assert.equal(r.verdicts[0]?.trust, "accepted");
    assert.equal(r.verdicts[0]?.firstContact, true);
    // The signer's certificate is now held, pinned, and used for encryption.
    assert.deepEqual(await r.store.certificatesFor(ALICE), [alice.certificate]);
    assert.ok((await r.store.anchors()).some((a) => Buffer.from(a).equals(alice.certificate)));

    // Alice (or someone with her password) signs with a new key.
    const changed = await receive(r, await signedFrom(ALICE, alice2, clock, "it is me, new phone"));
    assert.equal(rejectedWith(changed), "untrusted-certificate");
    assert.deepEqual(kinds(r.alerts), ["key-changed"]);
    const alert = r.alerts[0];
    assert.ok(alert?.kind === "key-changed");
    assert.equal(alert.jid, "alice@example.org");
    assert.deepEqual(alert.previous, [r.store.fingerprint(alice.certificate)]);
    // Not encrypted to either, the unaccepted key is left out.
    assert.deepEqual(await r.store.certificatesFor(ALICE), [alice.certificate]);

    // The user compares fingerprints out of band and verifies the new key: accepted from now on.
    const fp2 = r.store.fingerprint(alice2.certificate);
    assert.ok(fp2 !== undefined);
    await r.store.trust.verifyFingerprint(parseJid("bob@example.net"), parseJid("alice@example.org"), fp2, clock.now());
    const after = await receive(r, await signedFrom(ALICE, alice2, clock, "verified now"));
    assert.equal(after?.type, "message", rejectedWith(after));
    assert.equal(r.verdicts.at(-1)?.trust, "verified");
    assert.equal((await r.store.certificatesFor(ALICE)).length, 2, "both devices' keys are accepted");
  });

  it("a key already seen with another JID raises key-shared and is not trusted for the new JID", async () => {
    const clock = new VirtualClock(Date.now());
    const r = receiver(clock);
    await r.store.add(alice.certificate);
    assert.deepEqual(kinds(r.alerts), []);
    await r.store.add(carolWithAliceKey.certificate);
    assert.deepEqual(kinds(r.alerts), ["key-shared"]);
    const a = r.alerts[0];
    assert.ok(a?.kind === "key-shared");
    assert.deepEqual(a.otherJids, ["alice@example.org"]);
    assert.deepEqual(await r.store.certificatesFor(CAROL), [], "never encrypt to Carol with Alice's key");
    const ev = await receive(r, await signedFrom(CAROL, carolWithAliceKey, clock, "hi, I'm carol"));
    assert.equal(rejectedWith(ev), "untrusted-certificate");
    assert.deepEqual(kinds(r.alerts), ["key-shared", "key-shared"], "raised again at the next use");
  });

  it("a revoked key is neither an anchor nor a recipient, even when pinned explicitly", async () => {
    const clock = new VirtualClock(Date.now());
    const r = receiver(clock);
    await r.store.add(alice.certificate, { anchor: true });
    assert.equal((await r.store.anchors()).length, 1);
    const fp = r.store.fingerprint(alice.certificate);
    assert.ok(fp !== undefined);
    await r.store.trust.revoke(parseJid("bob@example.net"), fp, clock.now());
    assert.deepEqual(await r.store.anchors(), []);
    assert.deepEqual(await r.store.certificatesFor(ALICE), []);
    const ev = await receive(r, await signedFrom(ALICE, alice, clock, "still me"));
    assert.equal(rejectedWith(ev), "untrusted-certificate");
    assert.ok(kinds(r.alerts).includes("key-revoked"));
  });

  it("an explicit anchor accepts a changed key (the user's decision); CA anchors vouch for issued certificates", async () => {
    const clock = new VirtualClock(Date.now());
    const r = receiver(clock);
    await r.store.add(alice.certificate);
    await r.store.add(alice2.certificate, { anchor: true });
    assert.deepEqual(kinds(r.alerts), ["key-changed"]);
    assert.equal((await r.store.certificatesFor(ALICE)).length, 2, "explicit anchor");

    const r2 = receiver(clock);
    await r2.store.add(ca.certificate, { anchor: true });
    assert.ok(isCaCertificate(ca.certificate) && !isCaCertificate(alice.certificate));
    await r2.store.add(alice.certificate);
    // A CA-issued certificate with yet another key: key-changed is raised, but the CA vouches for it.
    await r2.store.add(aliceIssued.certificate);
    assert.deepEqual(kinds(r2.alerts), ["key-changed"]);
    assert.equal((await r2.store.certificatesFor(ALICE)).length, 2);
    const ev = await receive(r2, await signedFrom(ALICE, aliceIssued, clock, "from my CA-issued cert"));
    assert.equal(ev?.type, "message", rejectedWith(ev));
  });

  it("EC P-256 certificates are recorded like RSA ones: trust on first use, then key-changed for a new key", async () => {
    const clock = new VirtualClock(Date.now());
    const db = new MemoryStore();
    const r = receiver(clock, db);
    const fp = r.store.fingerprint(aliceEc.certificate);
    assert.ok(fp !== undefined, "a P-256 key has an XEP-0116 fingerprint");
    const first = await receive(r, await signedFrom(ALICE, aliceEc, clock, "ec"));
    assert.equal(first?.type, "message", rejectedWith(first));
    assert.deepEqual(r.unrecorded, []);
    assert.deepEqual(kinds(r.alerts), []);
    assert.equal(r.verdicts[0]?.trust, "accepted");
    assert.equal(r.verdicts[0]?.fingerprint, fp);
    const pk = await db.getPeerKey(parseJid("bob@example.net"), fp);
    assert.equal(pk?.alg, "ecdsa-p256-sha256");
    assert.deepEqual(await r.store.certificatesFor(ALICE), [aliceEc.certificate]);

    const changed = await receive(r, await signedFrom(ALICE, aliceEc2, clock, "new ec key"));
    assert.equal(rejectedWith(changed), "untrusted-certificate");
    assert.deepEqual(kinds(r.alerts), ["key-changed"]);
    const alert = r.alerts[0];
    assert.ok(alert?.kind === "key-changed");
    assert.deepEqual(alert.previous, [fp]);
    assert.deepEqual(await r.store.certificatesFor(ALICE), [aliceEc.certificate]);
    assert.deepEqual(r.unrecorded, []);
  });

  it("an EC P-256 key already seen with another JID raises key-shared and is not trusted for the new JID", async () => {
    const clock = new VirtualClock(Date.now());
    const r = receiver(clock);
    await r.store.add(aliceEc.certificate);
    await r.store.add(carolWithAliceEcKey.certificate);
    assert.deepEqual(kinds(r.alerts), ["key-shared"]);
    const a = r.alerts[0];
    assert.ok(a?.kind === "key-shared");
    assert.deepEqual(a.otherJids, ["alice@example.org"]);
    assert.equal(r.store.fingerprint(carolWithAliceEcKey.certificate), r.store.fingerprint(aliceEc.certificate));
    assert.deepEqual(await r.store.certificatesFor(CAROL), [], "never encrypt to Carol with Alice's key");
    const ev = await receive(r, await signedFrom(CAROL, carolWithAliceEcKey, clock, "hi, I'm carol"));
    assert.equal(rejectedWith(ev), "untrusted-certificate");
    assert.deepEqual(kinds(r.alerts), ["key-shared", "key-shared"]);
    assert.deepEqual(r.unrecorded, []);
  });

  it("keys the store cannot hold (P-384) are reported, and trusted through explicit anchors only", async () => {
    const clock = new VirtualClock(Date.now());
    const r = receiver(clock);
    assert.equal(r.store.fingerprint(aliceP384.certificate), undefined);
    const ev = await receive(r, await signedFrom(ALICE, aliceP384, clock, "p384"));
    assert.equal(rejectedWith(ev), "untrusted-certificate");
    assert.equal(r.unrecorded.length, 1);
    assert.deepEqual(await r.store.certificatesFor(ALICE), []);
    await r.store.add(aliceP384.certificate, { anchor: true });
    const ok = await receive(r, await signedFrom(ALICE, aliceP384, clock, "p384 again"));
    assert.equal(ok?.type, "message", rejectedWith(ok));
    assert.deepEqual(await r.store.certificatesFor(ALICE), [aliceP384.certificate]);
  });

  it("persists: SQLite trust store + certificate file, reopened", async () => {
    const clock = new VirtualClock(Date.now());
    const dbPath = join(dir, "trust.db");
    const certPath = join(dir, "certs.json");
    const db = openSqliteStore(dbPath);
    const r = receiver(clock, db, new FileCertificateStore(certPath));
    assert.equal((await receive(r, await signedFrom(ALICE, alice, clock, "persist me")))?.type, "message");
    db.close();
    const db2 = openSqliteStore(dbPath);
    const r2 = receiver(clock, db2, new FileCertificateStore(certPath));
    assert.deepEqual(await r2.store.certificatesFor(ALICE), [alice.certificate]);
    const ev = await receive(r2, await signedFrom(ALICE, alice2, clock, "new key after restart"));
    assert.equal(rejectedWith(ev), "untrusted-certificate");
    assert.deepEqual(kinds(r2.alerts), ["key-changed"]);
    db2.close();
  });
});
