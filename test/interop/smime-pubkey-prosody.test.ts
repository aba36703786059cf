/**
 * Interop: S/MIME certificates published and fetched with XEP-0189 through a real
 * Prosody 0.12 (mod_pep), then used for RFC 3923 object encryption. Alice (RSA-2048) and
 * Bob (EC P-256) subscribe to each other's presence, publish their certificates with the
 * XEP-0222 default access model, fetch each other's, check the address binding, and Bob
 * sends Alice an encrypted and signed message that she decrypts and verifies. Also: the
 * certificate item coexists with an ordinary XEP-0189 key on the same node, a stranger is
 * refused, a certificate naming someone else is rejected, and the direct requests
 * (section 8 and urn:xmpp:pubkey:0) return the certificate.
 *
 * Spec: XEP-0189 v0.14 sections 3, 6, 8; XEP-0222 (access model "presence"); RFC 6121
 * section 3 (subscriptions); RFC 3923 sections 6.2-6.3; draft-ietf-xmpp-e2e-03 section 3.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectXmpp, type XmppConnection } from "../../src/adapters/xmpp-client.js";
import { fromBase64 } from "../../src/core/bytes.js";
import { parseFullJid, parseJid } from "../../src/core/types.js";
import { nodeCrypto, systemClock, systemRandom } from "../../src/crypto/node.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { buildPubKey, PubkeyError, PubkeyService } from "../../src/pubkey/index.js";
import { generateIdentity } from "../../src/smime/certs.js";
import { MemoryCertificateStore } from "../../src/smime/certstore.js";
import type { SmimeIdentity } from "../../src/smime/cms.js";
import { SmimeError } from "../../src/smime/errors.js";
import { certificateItemId, certificateResponder, fetchCertificates, publishCertificate, requestCertificate } from "../../src/smime/publish.js";
import { type ObjectEvent, ObjectClient } from "../../src/smime/session.js";
import { MemoryReplayCache } from "../../src/store/replay.js";
import { el, type Element } from "../../src/xml/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

const env = { random: systemRandom, clock: systemClock };
const ALICE = parseJid("alice@localhost");
const BOB = parseJid("bob@localhost");
const MALLORY = parseJid("mallory@localhost");

interface Side {
  readonly conn: XmppConnection;
  readonly keys: PubkeyService;
  readonly certificates: MemoryCertificateStore;
  readonly objects: ObjectClient;
  readonly events: ObjectEvent[];
  readonly presence: Element[];
}

function waitFor<T>(get: () => T | undefined, what: string, server: ProsodyInstance, ms = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = () => {
      const v = get();
      if (v !== undefined) return resolve(v);
      if (Date.now() - start > ms) return reject(new Error(`timed out waiting for ${what}; prosody log:\n${server.logTail(8)}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

describe("S/MIME certificates over XEP-0189 through Prosody", () => {
  let server: ProsodyInstance;
  let alice: Side, bob: Side, mallory: Side;
  let aliceId: SmimeIdentity, bobId: SmimeIdentity, malloryAsAlice: SmimeIdentity;

  async function side(user: string, id: SmimeIdentity): Promise<Side> {
    const conn = await connectXmpp({ service: server.service, domain: server.domain, username: user, password: `${user}-pw`, resource: "r1" });
    const presence: Element[] = [];
    conn.onStanza((s) => {
      if (s.name === "presence") presence.push(s);
    });
    const keys = new PubkeyService({
      connection: conn,
      random: systemRandom,
      clock: systemClock,
      timeoutMs: 10_000,
      responder: certificateResponder(nodeCrypto, () => ({ certificate: id.certificate, chain: id.chain ?? [] })),
    });
    const certificates = new MemoryCertificateStore();
    // RFC 6121 section 2.1.6: an "interested resource" (one that requested the roster) is
    // the one that gets subscription approvals.
    await conn.send(el("iq", { type: "get", id: `roster-${user}` }, el("query", { xmlns: "jabber:iq:roster" })));
    const objects = new ObjectClient({ connection: conn, identity: id, certificates, replay: new MemoryReplayCache(), clock: systemClock, random: systemRandom });
    const events: ObjectEvent[] = [];
    objects.on((e) => events.push(e));
    return { conn, keys, certificates, objects, events, presence };
  }

  /** RFC 6121 section 3: `from` asks to see `to`'s presence and `to` approves. */
  async function subscribe(from: Side, to: Side, toJid: string, fromJid: string): Promise<void> {
    await from.conn.send(el("presence", { type: "subscribe", to: toJid }));
    await waitFor(() => to.presence.find((p) => p.attrs.type === "subscribe" && String(p.attrs.from).startsWith(fromJid)), "subscribe", server);
    await to.conn.send(el("presence", { type: "subscribed", to: fromJid }));
    await waitFor(() => from.presence.find((p) => p.attrs.type === "subscribed" && String(p.attrs.from).startsWith(toJid)), "subscribed", server);
  }

  before(async () => {
    server = await startProsody({ users: [["alice", "alice-pw"], ["bob", "bob-pw"], ["mallory", "mallory-pw"]] });
    aliceId = await generateIdentity({ jid: ALICE, keyType: "rsa-2048" }, env);
    bobId = await generateIdentity({ jid: BOB, keyType: "ec-p256" }, env);
    const malloryId = await generateIdentity({ jid: MALLORY, keyType: "ec-p256" }, env);
    malloryAsAlice = await generateIdentity({ jid: ALICE, keyType: "ec-p256" }, env);
    alice = await side("alice", aliceId);
    bob = await side("bob", bobId);
    mallory = await side("mallory", malloryId);
    await subscribe(bob, alice, ALICE, BOB);
    await subscribe(alice, bob, BOB, ALICE);
  });

  after(async () => {
    for (const s of [alice, bob, mallory]) {
      if (s === undefined) continue;
      s.keys.close();
      await s.objects.close();
      await s.conn.close().catch(() => undefined);
    }
    await server?.stop();
  });

  it("Alice and Bob publish their certificates; each fetches the other's, checks it, and Bob's encrypted+signed message verifies", async () => {
    const aliceItem = await publishCertificate(alice.keys, { certificate: aliceId.certificate, chain: [] }, { crypto: nodeCrypto });
    assert.equal(aliceItem, certificateItemId(aliceId.certificate));
    // Republishing the same certificate replaces its item (same ItemID, same node configuration).
    assert.equal(await publishCertificate(alice.keys, { certificate: aliceId.certificate, chain: [] }, { crypto: nodeCrypto }), aliceItem);
    // An ordinary XEP-0189 key on the same node, item "current", does not evict the certificate.
    const esessionKey = createIdentityKey("ed25519", Date.now());
    assert.equal(await alice.keys.publish(buildPubKey(nodeCrypto, esessionKey.publicKey, { jid: ALICE })), "current");
    await publishCertificate(bob.keys, { certificate: bobId.certificate, chain: [] }, { crypto: nodeCrypto });

    const ownItems = await alice.keys.retrieve(undefined, "pubkey");
    assert.deepEqual(ownItems.map((i) => i.id).sort(), [aliceItem, "current"].sort());

    const fetchedByBob = await fetchCertificates(bob.keys, ALICE, { crypto: nodeCrypto, now: Date.now() });
    assert.equal(fetchedByBob.rejected.length, 0);
    assert.equal(fetchedByBob.certificates.length, 1, "the plain XEP-0189 key is skipped");
    assert.deepEqual(fetchedByBob.certificates[0]?.certificate, aliceId.certificate);
    assert.equal(fetchedByBob.certificates[0]?.itemId, aliceItem);
    const fetchedByAlice = await fetchCertificates(alice.keys, BOB, { crypto: nodeCrypto, now: Date.now() });
    assert.deepEqual(
      fetchedByAlice.certificates.map((c) => c.certificate),
      [bobId.certificate],
    );
    // Each pins what it fetched (the address binding was checked by fetchCertificates).
    for (const c of fetchedByBob.certificates) await bob.certificates.add(c.certificate, { anchor: true });
    for (const c of fetchedByAlice.certificates) await alice.certificates.add(c.certificate, { anchor: true });

    await bob.objects.sendMessage(ALICE, "meet me at the orchard");
    const got = await waitFor(() => alice.events.find((e) => e.type === "message" || e.type === "rejected"), "Alice's object event", server);
    assert.equal(got.type, "message", got.type === "rejected" ? got.error.message : "");
    if (got.type !== "message") return;
    assert.equal(got.signedBy, BOB);
    assert.equal(got.encrypted, true);
    assert.deepEqual(got.layers, ["enveloped", "signed"]);
    assert.equal(got.stanza.getChildText("body"), "meet me at the orchard");
  });

  it("a stranger without a presence subscription is refused (XEP-0222 presence access model)", async () => {
    await assert.rejects(fetchCertificates(mallory.keys, ALICE, { crypto: nodeCrypto, now: Date.now() }), (e: unknown) => e instanceof PubkeyError && e.condition === "forbidden");
  });

  it("a certificate naming someone else than the node's owner is rejected, never returned", async () => {
    // Mallory publishes (openly) a certificate that claims alice@localhost.
    await publishCertificate(mallory.keys, { certificate: malloryAsAlice.certificate, chain: [] }, { crypto: nodeCrypto, accessModel: "open" });
    const r = await fetchCertificates(bob.keys, MALLORY, { crypto: nodeCrypto, now: Date.now() });
    assert.equal(r.certificates.length, 0);
    assert.equal(r.rejected.length, 1);
    assert.ok(r.rejected[0]?.error instanceof SmimeError && r.rejected[0].error.condition === "address-mismatch");
  });

  it("direct requests (section 8 and urn:xmpp:pubkey:0) return the certificate", async () => {
    const aliceFull = parseFullJid(alice.conn.jid);
    const direct = await requestCertificate(bob.keys, aliceFull, { crypto: nodeCrypto, now: Date.now() });
    assert.deepEqual(direct.certificate, aliceId.certificate);
    const legacy = await bob.keys.requestLegacy(aliceFull);
    assert.deepEqual(fromBase64(legacy.keyinfos[0]?.x509certs[0] ?? ""), aliceId.certificate);
  });
});
