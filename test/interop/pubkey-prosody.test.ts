/**
 * Interop: XEP-0189 public key publishing through a real Prosody 0.12 (its mod_pep, which
 * test/harness/prosody.ts loads by default) and direct key requests routed by it.
 *
 * Spec: XEP-0189 v0.14 sections 3-6 (publish keys, revocations and attestations via
 * XEP-0163 PEP, one item "current"), 8 (request a key directly) and the XTLS draft's
 * `urn:xmpp:pubkey:0` request (draft-meyer-xmpp-e2e-encryption-02 section 5.1);
 * XEP-0060 sections 6.5, 7.1 (items, publish, publish-options), XEP-0222 (persistent,
 * access model). The retrieved keys go through src/trust/ as a client's "secure library
 * of the public keys it associates with other users" (XEP-0189 section 12).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { connectXmpp } from "../../src/adapters/xmpp-client.js";
import type { StanzaConnection } from "../../src/adapters/connection.js";
import { parseJid, type Jid } from "../../src/core/types.js";
import { nodeCrypto, systemClock, systemRandom } from "../../src/crypto/node.js";
import { createIdentityKey, keyFingerprint, keyValueFromSpki, nodeSigner } from "../../src/identity/index.js";
import {
  buildPubKey,
  createAttestation,
  createRevocation,
  PubkeyError,
  PubkeyService,
  verifyAttestation,
  verifyPubKey,
  verifyRevocation,
  type PubkeyPayload,
} from "../../src/pubkey/index.js";
import { MemoryStore } from "../../src/store/memory.js";
import { TrustManager } from "../../src/trust/index.js";
import { startProsody, type ProsodyInstance } from "../harness/prosody.js";

const T0 = Date.now();
const aliceKey = createIdentityKey("rsa-sha256", T0, { rsaBits: 2048 });
const carolKey = createIdentityKey("ed25519", T0);

function payloadOf(items: readonly { payload: PubkeyPayload | PubkeyError }[], i = 0): PubkeyPayload {
  const p = items[i]?.payload;
  if (p === undefined || p instanceof PubkeyError) throw new Error(`item ${i} unusable: ${String(p)}`);
  return p;
}

describe("XEP-0189 through Prosody", () => {
  let prosody: ProsodyInstance;
  const conns: StanzaConnection[] = [];
  let alice: PubkeyService;
  let bob: PubkeyService;
  let mallory: PubkeyService;
  let aliceConn: StanzaConnection;
  const aliceBare = parseJid("alice@localhost");

  before(async () => {
    prosody = await startProsody({ users: [["alice", "pw-a"], ["bob", "pw-b"], ["mallory", "pw-m"]] });
    const connect = async (username: string, password: string) => {
      const c = await connectXmpp({ service: prosody.service, domain: prosody.domain, username, password, resource: "keys" });
      conns.push(c);
      return c;
    };
    aliceConn = await connect("alice", "pw-a");
    const mk = (connection: StanzaConnection, responder?: ConstructorParameters<typeof PubkeyService>[0]["responder"]) =>
      new PubkeyService({ connection, random: systemRandom, clock: systemClock, timeoutMs: 10_000, ...(responder ? { responder } : {}) });
    alice = mk(aliceConn, {
      pubkey: () => buildPubKey(nodeCrypto, aliceKey.publicKey, { jid: "alice@localhost", form: "key" }),
      legacy: () => ({ type: "pubkeys-legacy", keyinfos: [{ x509certs: [], keyValues: [keyValueFromSpki(aliceKey.publicKey)] }] }),
    });
    bob = mk(await connect("bob", "pw-b"));
    mallory = mk(await connect("mallory", "pw-m"));
  });

  after(async () => {
    for (const s of [alice, bob, mallory]) s?.close();
    for (const c of conns) await c.close().catch(() => undefined);
    await prosody?.stop();
  });

  it("publishes a key to the pubkey PEP node (item 'current'), and a contact retrieves, verifies and records it", async () => {
    const pk = buildPubKey(nodeCrypto, aliceKey.publicKey, { jid: "alice@localhost", begin: T0 - 1000, end: T0 + 86400_000 });
    assert.equal(await alice.publish(pk, { accessModel: "open" }), "current");
    // Republishing 'current' replaces the single item (section 6).
    assert.equal(await alice.publish(pk, { accessModel: "open" }), "current");
    const own = await alice.retrieve(undefined, "pubkey");
    assert.equal(own.length, 1);

    const items = await bob.retrieve(aliceBare, "pubkey");
    assert.deepEqual(
      items.map((i) => i.id),
      ["current"],
    );
    const got = payloadOf(items);
    assert.equal(got.type, "pubkey");
    if (got.type !== "pubkey") return;
    assert.deepEqual(got, pk, "the server stored and returned the payload unchanged");
    const v = verifyPubKey(nodeCrypto, got, { now: Date.now(), jid: "alice@localhost" });
    assert.equal(v.fingerprint, keyFingerprint(nodeCrypto, aliceKey.publicKey));

    const trust = new TrustManager({ store: new MemoryStore(), crypto: nodeCrypto });
    const bobJid = parseJid("bob@localhost");
    const verdict = await trust.observe({ account: bobJid, jid: aliceBare, publicKey: v.spki, now: Date.now() });
    assert.equal(verdict.trust, "accepted");
  });

  it("publishes a signed revocation; a contact verifies it and the trust store flags the key", async () => {
    const rev = createRevocation({ crypto: nodeCrypto, signer: nodeSigner, revoked: aliceKey.publicKey, signingKey: aliceKey, time: T0 });
    await alice.publish(rev, { accessModel: "open", itemId: keyFingerprint(nodeCrypto, aliceKey.publicKey).replace(/[^A-Za-z0-9]/g, "") });
    const items = await bob.retrieve(aliceBare, "revocation");
    const got = payloadOf(items);
    assert.equal(got.type, "revocation");
    if (got.type !== "revocation") return;
    const v = verifyRevocation(nodeCrypto, nodeSigner, got);
    const store = new MemoryStore();
    const trust = new TrustManager({ store, crypto: nodeCrypto });
    const bobJid = parseJid("bob@localhost");
    await trust.observe({ account: bobJid, jid: aliceBare, publicKey: v.revoked, now: T0 });
    await trust.revoke(bobJid, v.fingerprint, v.revokedAt);
    const after = await trust.observe({ account: bobJid, jid: aliceBare, publicKey: aliceKey.publicKey, now: T0 + 1 });
    assert.equal(after.trust, "revoked");
    assert.ok(after.alerts.some((a) => a.kind === "key-revoked"));
  });

  it("publishes an attestation signed by another user's key; a contact verifies it", async () => {
    const att = createAttestation({ crypto: nodeCrypto, signer: nodeSigner, attested: aliceKey.publicKey, signingKey: carolKey, signerJid: "carol@localhost", time: T0 });
    await alice.publish(att, { accessModel: "open", itemId: "carol" });
    const got = payloadOf(await bob.retrieve(aliceBare, "attestation"));
    assert.equal(got.type, "attestation");
    if (got.type !== "attestation") return;
    verifyAttestation(nodeCrypto, nodeSigner, got, aliceKey.publicKey, carolKey.publicKey);
    assert.throws(() => verifyAttestation(nodeCrypto, nodeSigner, got, carolKey.publicKey, carolKey.publicKey), PubkeyError);
  });

  it("requests a key directly from a full JID (section 8) and with the XTLS draft's urn:xmpp:pubkey:0", async () => {
    const pk = await bob.request(aliceConn.jid);
    assert.equal(verifyPubKey(nodeCrypto, pk, { jid: "alice@localhost" }).fingerprint, keyFingerprint(nodeCrypto, aliceKey.publicKey));
    const legacy = await bob.requestLegacy(aliceConn.jid);
    assert.deepEqual(legacy.keyinfos[0]?.keyValues[0], keyValueFromSpki(aliceKey.publicKey));
  });

  it("typed errors: a presence-only key refused to a stranger, a missing node, an offline resource", async () => {
    const malloryJid: Jid = parseJid("mallory@localhost");
    // bob publishes with the XEP-0222 default access model (presence): mallory is not subscribed.
    const bobPk = buildPubKey(nodeCrypto, carolKey.publicKey, { jid: "bob@localhost" });
    await bob.publish(bobPk);
    const cond = (p: Promise<unknown>) => p.then(() => "resolved", (e: unknown) => (e instanceof PubkeyError ? e.condition : String(e)));
    const got = {
      stranger: await cond(mallory.retrieve(parseJid("bob@localhost"), "pubkey")),
      strangersMissingNode: await cond(bob.retrieve(malloryJid, "attestation")),
      ownMissingNode: await cond(bob.retrieve(undefined, "revocation")),
      offline: await cond(bob.request(parseJid("alice@localhost/nowhere") as never)),
    };
    // Prosody 0.12 mod_pep: the presence access model refuses non-subscribers with
    // <forbidden/> (and does not reveal which nodes a stranger has); RFC 6121 section 8.5.3.2.1:
    // an iq to an unavailable resource is answered with <service-unavailable/>.
    assert.deepEqual(got, { stranger: "forbidden", strangersMissingNode: "forbidden", ownMissingNode: "item-not-found", offline: "service-unavailable" });
    // bob can read his own.
    assert.equal((await bob.retrieve(undefined, "pubkey")).length, 1);
  });
});
