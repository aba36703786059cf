/**
 * XEP-0189 v0.14 logic and the sans-IO core: prints (section 3), revocations (section 4)
 * and attestations (section 5) signed and verified with every algorithm, publishing and
 * retrieving through PEP (section 6; XEP-0060 / XEP-0222 stanzas), direct requests
 * (section 8 and the XTLS draft's urn:xmpp:pubkey:0), keys in messages (section 9),
 * generating presence (section 10), timeouts and spoofed answers.
 */
import assert from "node:assert/strict";
import { createHash, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { Switchboard } from "../../src/adapters/switchboard.js";
import { toBase64 } from "../../src/core/bytes.js";
import { SeededRandom, VirtualClock } from "../../src/core/testing.js";
import { parseFullJid, type Jid } from "../../src/core/types.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { createIdentityKey, keyFingerprint, keyValueFromSpki, nodeSigner, type SignAlg } from "../../src/identity/index.js";
import {
  buildPubKey,
  buildPubkeyPayload,
  createAttestation,
  createRevocation,
  expectedPubkeyPrint,
  NS_PUBKEY,
  parsePubkeyPayload,
  PubkeyClient,
  PubkeyError,
  PubkeyService,
  spkiOfMaterial,
  verifyAttestation,
  verifyPubKey,
  verifyRevocation,
  type PubKey,
  type PubkeyEvent,
  type Revocation,
} from "../../src/pubkey/index.js";
import { el, NS, parseXml, type Element } from "../../src/xml/index.js";

const T0 = Date.UTC(2026, 0, 1);
const ALGS: readonly SignAlg[] = ["rsa-sha256", "dsa-sha256", "ed25519", "ecdsa-p256-sha256"];
const keys = new Map(ALGS.map((a) => [a, createIdentityKey(a, T0, { rsaBits: 2048 })]));
const key = (a: SignAlg) => {
  const k = keys.get(a);
  assert.ok(k);
  return k;
};
const isErr = (c: PubkeyError["condition"]) => (e: unknown) => e instanceof PubkeyError && e.condition === c;
const roundTrip = <T>(x: T & { type: string }): T => parsePubkeyPayload(parseXml(buildPubkeyPayload(x as never).toString())) as T;

describe("public keys and prints", () => {
  it("rsakey form: decimal modulus/exponent and the section 3 print Base64(SHA-256(begin+end+jid+modulus+exponent))", () => {
    const k = key("rsa-sha256");
    const pk = buildPubKey(nodeCrypto, k.publicKey, { jid: "alice@example.org", begin: T0, end: T0 + 365 * 86400_000 });
    assert.equal(pk.material.kind, "rsakey");
    if (pk.material.kind !== "rsakey") return;
    const jwk = createPublicKey({ key: Buffer.from(k.publicKey), format: "der", type: "spki" }).export({ format: "jwk" });
    assert.equal(pk.material.modulus, BigInt(`0x${Buffer.from(jwk.n ?? "", "base64url").toString("hex")}`).toString());
    assert.equal(pk.material.publicExponent, "65537");
    assert.equal(pk.begin, "2026-01-01T00:00:00Z");
    const want = createHash("sha256").update(`2026-01-01T00:00:00Z2027-01-01T00:00:00Zalice@example.org${pk.material.modulus}65537`).digest("base64");
    assert.deepEqual(pk.print, { algo: "sha-256", value: want });
    const v = verifyPubKey(nodeCrypto, roundTrip<PubKey>(pk), { now: T0 + 1, jid: "alice@example.org" });
    assert.equal(v.fingerprint, keyFingerprint(nodeCrypto, k.publicKey));
    assert.equal(v.printChecked, true);
  });

  for (const alg of ALGS) {
    for (const form of ["key", "keyvalue"] as const) {
      it(`${alg}, ${form} form: round trip, print = XEP-0116 fingerprint, SPKI recovered`, () => {
        const k = key(alg);
        const pk = roundTrip<PubKey>(buildPubKey(nodeCrypto, k.publicKey, { jid: "a@b", form }));
        assert.equal(pk.print?.value, keyFingerprint(nodeCrypto, k.publicKey));
        assert.equal(toBase64(spkiOfMaterial(pk.material)), toBase64(k.publicKey));
        verifyPubKey(nodeCrypto, pk);
      });
    }
  }

  it("refuses: an altered print, a key outside its validity period or for another JID, rsakey for a non-RSA key, a weak key", () => {
    const pk = buildPubKey(nodeCrypto, key("ed25519").publicKey, { jid: "a@b", begin: T0, end: T0 + 1000 });
    assert.throws(() => verifyPubKey(nodeCrypto, { ...pk, print: { value: "AAAA" } }), isErr("bad-signature"));
    assert.throws(() => verifyPubKey(nodeCrypto, pk, { now: T0 + 2000 }), isErr("bad-request"));
    assert.throws(() => verifyPubKey(nodeCrypto, pk, { now: T0 - 1 }), isErr("bad-request"));
    assert.throws(() => verifyPubKey(nodeCrypto, pk, { jid: "mallory@evil" }), isErr("bad-request"));
    assert.throws(() => buildPubKey(nodeCrypto, key("ed25519").publicKey, { form: "rsakey" }), isErr("feature-not-implemented"));
    // The spec's Example 1 key has a 1,000-bit modulus: parsed, but below our 2048-bit policy.
    const ex1 = parsePubkeyPayload(parseXml(readFileSync(new URL("../vectors/pubkey/pubkey-rsakey.xml", import.meta.url), "utf8").replace(/<!--[\s\S]*?-->/g, "").trim()));
    assert.equal(ex1.type, "pubkey");
    if (ex1.type === "pubkey") assert.throws(() => verifyPubKey(nodeCrypto, ex1), isErr("bad-request"));
  });

  it("a hex print (as the section 8 example writes it) is accepted", () => {
    const k = key("ed25519");
    const pk = buildPubKey(nodeCrypto, k.publicKey, { form: "key" });
    const hex = Buffer.from(pk.print?.value ?? "", "base64").toString("hex");
    verifyPubKey(nodeCrypto, { ...pk, print: { value: hex } });
    assert.equal(expectedPubkeyPrint(nodeCrypto, pk, "sha-512"), createHash("sha512").update(`<KeyValue><ECKeyValue><NamedCurve URI="urn:oid:1.3.101.112"></NamedCurve><PublicKey>${(keyValueFromSpki(k.publicKey) as { publicKey: string }).publicKey}</PublicKey></ECKeyValue></KeyValue>`).digest("base64"));
  });
});

describe("revocations and attestations", () => {
  for (const alg of ALGS) {
    it(`${alg}: a self-revocation signs key+keyprint+revocationprint+revocationtime and verifies after a round trip`, () => {
      const k = key(alg);
      const r = roundTrip<Revocation>(createRevocation({ crypto: nodeCrypto, signer: nodeSigner, revoked: k.publicKey, signingKey: k, time: T0 }));
      assert.equal(r.revocationtime, "2026-01-01T00:00:00Z");
      assert.equal(r.keyprint.value, keyFingerprint(nodeCrypto, k.publicKey));
      const v = verifyRevocation(nodeCrypto, nodeSigner, r);
      assert.equal(v.fingerprint, keyFingerprint(nodeCrypto, k.publicKey));
      assert.equal(v.revokedAt, T0);
      // Independently: the signature is over the concatenation, as section 4 says.
      const data = Buffer.from(r.key + r.keyprint.value + r.revocationprint.value + r.revocationtime);
      assert.equal(nodeSigner.verify(alg, k.publicKey, data, Buffer.from(r.signature, "base64")), true);
      assert.throws(() => verifyRevocation(nodeCrypto, nodeSigner, { ...r, revocationtime: "2030-01-01T00:00:00Z" }), isErr("bad-signature"));
    });
  }

  it("a revocation signed by another key of ours verifies only against that key", () => {
    const revoked = key("ed25519");
    const by = key("rsa-sha256");
    const r = createRevocation({ crypto: nodeCrypto, signer: nodeSigner, revoked: revoked.publicKey, signingKey: by, time: T0 });
    verifyRevocation(nodeCrypto, nodeSigner, r, by.publicKey);
    assert.throws(() => verifyRevocation(nodeCrypto, nodeSigner, r), isErr("bad-signature"));
    assert.throws(() => verifyRevocation(nodeCrypto, nodeSigner, r, key("dsa-sha256").publicKey), isErr("bad-signature"));
  });

  it("the spec's example revocation (an OpenPGP signature, unverifiable prints) is parsed but refused", () => {
    const ex = parsePubkeyPayload(parseXml(readFileSync(new URL("../vectors/pubkey/revocation.xml", import.meta.url), "utf8").replace(/<!--[\s\S]*?-->/g, "").trim()));
    assert.equal(ex.type, "revocation");
    if (ex.type === "revocation") assert.throws(() => verifyRevocation(nodeCrypto, nodeSigner, ex), (e: unknown) => e instanceof PubkeyError);
  });

  for (const alg of ALGS) {
    it(`${alg}: an attestation signs key+keyprint+signerjid+signerprint+signtime`, () => {
      const attested = key("ed25519").publicKey;
      const signer = key(alg);
      const a = roundTrip<ReturnType<typeof createAttestation>>(
        createAttestation({ crypto: nodeCrypto, signer: nodeSigner, attested, signingKey: signer, signerJid: "ca@example.org", time: T0 }),
      );
      verifyAttestation(nodeCrypto, nodeSigner, a, attested, signer.publicKey);
      assert.throws(() => verifyAttestation(nodeCrypto, nodeSigner, { ...a, signerjid: "mallory@evil" }, attested, signer.publicKey), isErr("bad-signature"));
      assert.throws(() => verifyAttestation(nodeCrypto, nodeSigner, a, key("rsa-sha256").publicKey, signer.publicKey), isErr("bad-signature"));
    });
  }
});

// ---- the sans-IO core ----

const me = parseFullJid("alice@example.org/pda");
const peer = parseFullJid("bob@example.com/laptop");
function core(responder?: ConstructorParameters<typeof PubkeyClient>[0]["responder"]) {
  const clock = new VirtualClock(T0);
  const c = new PubkeyClient({ jid: me, random: new SeededRandom(nodeCrypto, "pk"), clock, timeoutMs: 5000, ...(responder ? { responder } : {}) });
  return { c, clock };
}
const sent = (c: PubkeyClient): Element[] => c.drain().flatMap((o) => (o.kind === "send" ? [o.stanza] : []));
const events = (c: PubkeyClient): PubkeyEvent[] => c.drain().flatMap((o) => (o.kind === "event" ? [o.event] : []));
const myPub = buildPubKey(nodeCrypto, key("ed25519").publicKey, { jid: "alice@example.org" });

describe("PubkeyClient (sans-IO)", () => {
  it("publish: XEP-0060 publish to node urn:xmpp:pubkey:2, item 'current', XEP-0222 publish-options", () => {
    const { c } = core();
    const id = c.publish(myPub);
    const [iq] = sent(c);
    assert.ok(iq);
    assert.equal(iq.attrs["type"], "set");
    assert.equal(iq.attrs["to"], undefined, "PEP: to our own account");
    const pubsub = iq.getChild("pubsub", "http://jabber.org/protocol/pubsub");
    const publish = pubsub?.getChild("publish");
    assert.equal(publish?.attrs["node"], NS_PUBKEY);
    assert.equal(publish?.getChild("item")?.attrs["id"], "current");
    assert.ok(publish?.getChild("item")?.getChild("pubkey", NS_PUBKEY));
    const form = pubsub?.getChild("publish-options")?.getChild("x", NS.data);
    const fields = Object.fromEntries((form?.getChildren("field") ?? []).map((f) => [f.attrs["var"], f.getChildText("value")]));
    assert.deepEqual(fields, {
      FORM_TYPE: "http://jabber.org/protocol/pubsub#publish-options",
      "pubsub#persist_items": "true",
      "pubsub#access_model": "presence",
    });
    // A result from someone else is not the answer.
    assert.equal(c.handleStanza(el("iq", { type: "result", id, from: "mallory@evil.example" })), false);
    assert.equal(c.handleStanza(el("iq", { type: "result", id })), true);
    assert.deepEqual(events(c), [{ type: "published", requestId: id, node: NS_PUBKEY, itemId: "current" }]);
  });

  it("retrieve: <items node=.../> to the owner's bare JID; items parsed, a bad item reported, not fatal", () => {
    const { c } = core();
    const id = c.retrieve(peer, "pubkey");
    const [iq] = sent(c);
    assert.equal(iq?.attrs["to"], "bob@example.com");
    const good = buildPubKey(nodeCrypto, key("rsa-sha256").publicKey, { jid: "bob@example.com" });
    const reply = el(
      "iq",
      { type: "result", id, from: "bob@example.com" },
      el(
        "pubsub",
        { xmlns: "http://jabber.org/protocol/pubsub" },
        el("items", { node: NS_PUBKEY }, el("item", { id: "current" }, buildPubkeyPayload(good)), el("item", { id: "bad" }, el("pubkey", { xmlns: NS_PUBKEY }, el("key", {}, "x"), el("rsakey", {})))),
      ),
    );
    assert.equal(c.handleStanza(reply), true);
    const [e] = events(c);
    assert.equal(e?.type, "items");
    if (e?.type !== "items") return;
    assert.equal(e.owner, "bob@example.com");
    assert.deepEqual(e.items[0], { id: "current", payload: parsePubkeyPayload(buildPubkeyPayload(good)) });
    assert.ok(e.items[1]?.payload instanceof PubkeyError);
  });

  it("errors map to typed conditions; unanswered requests time out at nextDeadline", () => {
    const { c, clock } = core();
    const a = c.retrieve(peer, "revocation");
    const b = c.request(peer);
    sent(c);
    c.handleStanza(el("iq", { type: "error", id: a, from: "bob@example.com" }, el("error", { type: "cancel" }, el("item-not-found", { xmlns: NS.stanzas }))));
    const [fa] = events(c);
    assert.ok(fa?.type === "failed" && fa.requestId === a && fa.error.condition === "item-not-found");
    assert.equal(c.nextDeadline(), T0 + 5000);
    clock.advance(5000);
    c.handleTimer(clock.now());
    const [fb] = events(c);
    assert.ok(fb?.type === "failed" && fb.requestId === b && fb.error.condition === "timeout");
    assert.equal(c.nextDeadline(), undefined);
  });

  it("answers a section 8 request with our key, and the XTLS urn:xmpp:pubkey:0 request with keyinfo", () => {
    const { c } = core({
      pubkey: () => myPub,
      legacy: () => ({ type: "pubkeys-legacy", keyinfos: [{ x509certs: [], keyValues: [keyValueFromSpki(key("ed25519").publicKey)] }] }),
    });
    assert.equal(c.handleStanza(parseXml(`<iq xmlns="jabber:client" type="get" id="q1" from="${peer}" to="${me}"><pubkey xmlns="urn:xmpp:pubkey:2"/></iq>`)), true);
    const [r1] = sent(c);
    assert.equal(r1?.attrs["type"], "result");
    assert.equal(r1?.attrs["id"], "q1");
    assert.equal(r1?.attrs["to"], peer);
    assert.deepEqual(parsePubkeyPayload(r1?.getChild("pubkey", NS_PUBKEY) as Element), myPub);
    assert.equal(c.handleStanza(parseXml(`<iq xmlns="jabber:client" type="get" id="q2" from="${peer}"><pubkeys xmlns="urn:xmpp:pubkey:0"/></iq>`)), true);
    const [r2] = sent(c);
    assert.ok(r2?.getChild("pubkeys", "urn:xmpp:pubkey:0")?.getChild("keyinfo")?.getChild("KeyValue", "http://www.w3.org/2000/09/xmldsig#"));
  });

  it("without a key: item-not-found; without a responder: service-unavailable", () => {
    const req = parseXml(`<iq xmlns="jabber:client" type="get" id="q" from="${peer}"><pubkey xmlns="urn:xmpp:pubkey:2"/></iq>`);
    const a = core({ pubkey: () => undefined }).c;
    a.handleStanza(req);
    assert.ok(sent(a)[0]?.getChild("error")?.getChild("item-not-found", NS.stanzas));
    const b = core().c;
    b.handleStanza(req);
    assert.ok(sent(b)[0]?.getChild("error")?.getChild("service-unavailable", NS.stanzas));
  });

  it("PEP notifications, keys in messages and generating presence become events", () => {
    const { c } = core();
    const note = el(
      "message",
      { from: "bob@example.com", to: me },
      el("event", { xmlns: "http://jabber.org/protocol/pubsub#event" }, el("items", { node: "urn:xmpp:revoke:2" }, el("retract", { id: "old" }))),
    );
    assert.equal(c.handleStanza(note), true);
    assert.deepEqual(events(c), [{ type: "notification", from: "bob@example.com", node: "urn:xmpp:revoke:2", items: [], retracted: ["old"] }]);
    assert.equal(c.handleStanza(el("message", { from: peer }, buildPubkeyPayload(myPub))), true);
    assert.deepEqual(events(c), [{ type: "key-message", from: peer, pubkey: myPub }]);
    assert.equal(c.handleStanza(el("presence", { from: peer }, el("generating", { xmlns: NS_PUBKEY }))), false);
    assert.equal(c.handleStanza(el("presence", { from: peer })), false);
    assert.deepEqual(events(c), [
      { type: "generating", from: peer, generating: true },
      { type: "generating", from: peer, generating: false },
    ]);
    // Unrelated stanzas are not consumed.
    assert.equal(c.handleStanza(el("message", { from: peer }, el("body", {}, "hi"))), false);
    assert.equal(c.handleStanza(el("iq", { type: "get", id: "x", from: peer }, el("query", { xmlns: NS.disco }))), false);
  });
});

describe("PubkeyService over the switchboard", () => {
  it("alice requests bob's key directly (section 8 and urn:xmpp:pubkey:0); bob's answer verifies", async () => {
    const board = new Switchboard();
    const a = board.connect(me);
    const b = board.connect(peer);
    const bobKey = key("dsa-sha256");
    const answered: PubkeyEvent[] = [];
    const bob = new PubkeyService({
      connection: b,
      random: new SeededRandom(nodeCrypto, "b"),
      clock: new VirtualClock(T0),
      responder: {
        pubkey: () => buildPubKey(nodeCrypto, bobKey.publicKey, { jid: "bob@example.com" }),
        legacy: () => ({ type: "pubkeys-legacy", keyinfos: [{ x509certs: [], keyValues: [keyValueFromSpki(bobKey.publicKey)] }] }),
      },
      onEvent: (e) => answered.push(e),
    });
    const alice = new PubkeyService({ connection: a, random: new SeededRandom(nodeCrypto, "a"), clock: new VirtualClock(T0) });
    const pk = await alice.request(peer);
    assert.equal(verifyPubKey(nodeCrypto, pk, { jid: "bob@example.com" }).fingerprint, keyFingerprint(nodeCrypto, bobKey.publicKey));
    const legacy = await alice.requestLegacy(peer);
    assert.equal(legacy.keyinfos[0]?.keyValues.length, 1);
    assert.deepEqual(
      answered.map((e) => e.type),
      ["answered", "answered"],
    );
    const jids: Jid[] = answered.flatMap((e) => (e.type === "answered" ? [e.from] : []));
    assert.deepEqual(jids, [me, me]);
    alice.close();
    bob.close();
  });
});
