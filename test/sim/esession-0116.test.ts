/**
 * XEP-0116 Encrypted Session Negotiation beyond XEP-0217: public-key identification
 * ('key', 'hash', 'none' on each side) with signatures over the SIGMA MACs, the 3-message
 * SIGMA-I negotiation, the Other Shared Secret, and the attacks each mechanism stops.
 *
 * Spec: XEP-0116 v0.16 sections 4.2-4.6 (3- and 4-message negotiation, hiding and
 * verifying identities), 7 (security considerations).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ClientEvent } from "../../src/client/secure-client.js";
import { toBase64, utf8 } from "../../src/core/bytes.js";
import { normalizedKey, type PubkeyMethod } from "../../src/esession/identity.js";
import { NS, parseXml } from "../../src/xml/index.js";
import { rsaIdentity, rsaVerifier } from "../support/rsa-identity.js";
import { makePair, type Pair } from "./pair.js";

const aliceKey = rsaIdentity();
const bobKey = rsaIdentity();
const malloryKey = rsaIdentity();

type Est = Extract<ClientEvent, { type: "established" }>;

async function run(p: Pair): Promise<{ a: Est; b: Est }> {
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  await est;
  const a = p.aliceEvents.find((e): e is Est => e.type === "established");
  const b = p.bobEvents.find((e): e is Est => e.type === "established");
  assert.ok(a && b, "both established");
  return { a, b };
}

function failures(evs: readonly ClientEvent[]): string[] {
  return evs.flatMap((e) => (e.type === "failed" ? [e.error.condition] : []));
}

const methods: PubkeyMethod[] = ["key", "hash", "none"];

for (const messages of [4, 3] as const) {
  for (const init of methods) {
    for (const resp of methods) {
      if (messages === 3 && (init === "none" || resp === "none")) continue; // 'none' MUST NOT be used with 3 messages
      test(`${messages}-message negotiation, init_pubkey=${init}, resp_pubkey=${resp}`, async () => {
        const p = makePair({
          seed: `m${messages}-${init}-${resp}`,
          policy: { messages },
          // Alice offers exactly `init`; she accepts exactly `resp` from Bob (and knows Bob's key for 'hash').
          alice: { identity: aliceKey, verifier: rsaVerifier([bobKey.keyValue]), policy: { offerPubkey: [init], acceptPubkey: [resp] } },
          bob: { identity: bobKey, verifier: rsaVerifier([aliceKey.keyValue]), policy: { acceptPubkey: [init] } },
        });
        const { a, b } = await run(p);
        assert.equal(a.initPubkey, init);
        assert.equal(a.respPubkey, resp);
        assert.equal(a.options.messages, messages);
        // Each side learned the other's real key when one was used.
        if (resp !== "none") assert.equal(normalizeKey(a.peerKey?.keyValue), normalizeKey(bobKey.keyValue));
        else assert.equal(a.peerKey, undefined);
        if (init !== "none") assert.equal(normalizeKey(b.peerKey?.keyValue), normalizeKey(aliceKey.keyValue));
        else assert.equal(b.peerKey, undefined);
        if (messages === 4) assert.equal(a.sas, b.sas);
        else assert.equal(a.sas, undefined, "no SAS without hash commitment");
        await p.alice.sendMessage(p.bobJid, "signed and sealed");
        await p.bob.sendMessage(p.aliceJid, "and back");
        await p.settle();
        assert.deepEqual(p.bodies("bob"), ["signed and sealed"]);
        assert.deepEqual(p.bodies("alice"), ["and back"]);
        // Identity protection: keys never cross the wire in the clear.
        const modulus = bobKey.keyValue.getChild("RSAKeyValue")?.getChildText("Modulus") ?? "";
        for (const r of p.relayed) assert.ok(!r.text.includes(modulus.slice(0, 40)), "public key visible on the wire");
      });
    }
  }
}

function normalizeKey(k: import("../../src/xml/index.js").Element | undefined): string | undefined {
  return k ? normalizedKey(k) : undefined;
}

test("a responder that only does 4 messages answers a 3-message request with feature-not-implemented on dhkeys", async () => {
  const p = makePair({
    seed: "only4",
    alice: { identity: aliceKey, verifier: rsaVerifier(), policy: { messages: 3, offerPubkey: ["key"], acceptPubkey: ["key"] } },
    bob: { identity: bobKey, verifier: rsaVerifier(), policy: { allowThreeMessage: false, acceptPubkey: ["key"] } },
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  await assert.rejects(est);
  const err = p.relayed.find((r) => r.stanza.attrs.type === "error");
  assert.ok(err?.stanza.getChild("error")?.getChild("feature-not-implemented", NS.stanzas));
  assert.equal(err?.stanza.getChild("error")?.getChild("feature", NS.featureNeg)?.getChild("field")?.attrs.var, "dhkeys");
});

test("a substituted public key (man in the middle with his own key) fails the signature", async () => {
  // Mallory swaps Bob's identity for his own in flight cannot re-encrypt it (he lacks KC);
  // the realistic attack is a responder presenting a different key: the trust check rejects it.
  const p = makePair({
    seed: "keyswap",
    alice: { identity: aliceKey, verifier: rsaVerifier([], (k) => normalizeKey(k.keyValue) === normalizeKey(bobKey.keyValue)), policy: { acceptPubkey: ["key"] } },
    bob: { identity: malloryKey, verifier: rsaVerifier(), policy: {} },
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  await assert.rejects(est, /identity-mismatch|not trusted/);
  assert.ok(failures(p.aliceEvents).includes("identity-mismatch"));
});

test("a tampered identity (ID) fails M before anything is decrypted", async () => {
  const p = makePair({
    seed: "idtamper",
    alice: { identity: aliceKey, verifier: rsaVerifier(), policy: { offerPubkey: ["key"], acceptPubkey: ["key"] } },
    bob: { identity: bobKey, verifier: rsaVerifier(), policy: { acceptPubkey: ["key"] } },
  });
  p.board.setAdversary((item) => {
    const x = item.stanza.getChild("init", NS.esessionInit)?.getChild("x", NS.data);
    if (!x) return { action: "deliver" };
    const s = parseXml(item.stanza.toString());
    const f = s.getChild("init", NS.esessionInit)?.getChild("x", NS.data)?.getChildren("field").find((fl) => fl.attrs.var === "identity");
    const v = f?.getChild("value");
    v?.children.splice(0, v.children.length, toBase64(utf8("x".repeat(300))));
    return { action: "replace", stanza: s };
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  await assert.rejects(est, /identity-mismatch/);
});

test("the Other Shared Secret: equal passwords agree, different passwords fail the identity check", async () => {
  const same = makePair({ seed: "oss1", alice: { otherSecret: utf8("correct horse") }, bob: { otherSecret: utf8("correct horse") } });
  const r = await run(same);
  assert.equal(r.a.sas, r.b.sas);
  const diff = makePair({ seed: "oss2", alice: { otherSecret: utf8("correct horse") }, bob: { otherSecret: utf8("battery staple") } });
  const est = diff.alice.startSession(diff.bobJid);
  est.catch(() => undefined);
  await diff.settle();
  await assert.rejects(est, /identity-mismatch/);
});

test("disclosure: we answer 'never' even when more is tolerated; a peer declaring 'enabled' is refused by default", async () => {
  const rewrite = (value: string) => (item: { stanza: import("../../src/xml/index.js").Element }) => {
    if (item.stanza.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.attrs.type !== "submit") return { action: "deliver" as const };
    const s = parseXml(item.stanza.toString());
    const v = s.getChild("feature", NS.featureNeg)?.getChild("x", NS.data)?.getChildren("field").find((f) => f.attrs.var === "disclosure")?.getChild("value");
    v?.children.splice(0, v.children.length, value);
    return { action: "replace" as const, stanza: s };
  };
  // Our responder says "never" even when more is tolerated.
  const p = makePair({ seed: "disc-never", alice: { policy: { acceptDisclosure: ["never", "enabled"] } } });
  const { a } = await run(p);
  assert.equal(a.options.disclosure, "never");
  assert.ok(!p.aliceEvents.some((e) => e.type === "alert" && e.alert === "disclosure"));
  // A responder that declares "enabled" (simulated in flight) is refused by default ...
  const q = makePair({ seed: "disc-refuse" });
  q.board.setAdversary(rewrite("enabled"));
  const est = q.alice.startSession(q.bobJid);
  est.catch(() => undefined);
  await q.settle();
  await assert.rejects(est, /not-acceptable/);
});

// Production keys from src/identity through the src/client adapters.
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";

for (const alg of ["rsa-sha256", "dsa-sha256", "ed25519", "ecdsa-p256-sha256"] as const) {
  test(`identity keys ${alg}: mutual 'key' authentication, 4- and 3-message`, async () => {
    const ka = createIdentityKey(alg, 0, alg === "rsa-sha256" ? { rsaBits: 2048 } : {});
    const kb = createIdentityKey(alg, 0, alg === "rsa-sha256" ? { rsaBits: 2048 } : {});
    for (const messages of [4, 3] as const) {
      const p = makePair({
        seed: `prod-${alg}-${messages}`,
        policy: { messages },
        alice: { identity: signingIdentity(ka), verifier: keyVerifier(), policy: { offerPubkey: ["key"], acceptPubkey: ["key"] } },
        bob: { identity: signingIdentity(kb), verifier: keyVerifier(), policy: { acceptPubkey: ["key"] } },
      });
      const { a, b } = await run(p);
      assert.equal(normalizeKey(a.peerKey?.keyValue), normalizeKey(signingIdentity(kb).keyValue));
      assert.equal(normalizeKey(b.peerKey?.keyValue), normalizeKey(signingIdentity(ka).keyValue));
      await p.alice.sendMessage(p.bobJid, alg);
      await p.settle();
      assert.deepEqual(p.bodies("bob"), [alg]);
    }
  });
}

test("keys of different algorithms cannot share XEP-0116's single sign_algs value: a clear error names it", async () => {
  const p = makePair({
    seed: "mixed-algs",
    alice: { identity: signingIdentity(createIdentityKey("ed25519", 0)), verifier: keyVerifier(), policy: { offerPubkey: ["key"], acceptPubkey: ["key"] } },
    bob: { identity: signingIdentity(createIdentityKey("rsa-sha256", 0, { rsaBits: 2048 })), verifier: keyVerifier(), policy: { acceptPubkey: ["key"] } },
  });
  const est = p.alice.startSession(p.bobJid);
  est.catch(() => undefined);
  await p.settle();
  const err = await est.then(() => undefined, (e: Error) => e);
  assert.match(String(err?.message), /not-acceptable/);
  // Bob sees it already: Alice's first sign_algs value (her key's) is one his key cannot
  // produce, and neither offered 'none'; his error names the field.
  assert.ok(p.bobEvents.some((e) => e.type === "failed" && e.error.fields.includes("sign_algs")));
  assert.ok(![...p.aliceEvents, ...p.bobEvents].some((e) => e.type === "established"));
});

// A browser verifies only Ed25519/P-256 (src/web/verifier.ts); an RSA-only peer cannot
// share one sign_algs value with it. XEP-0116 4.2 negotiates one value for both
// signatures, so the responder drops 'key' to 'none' for the direction that cannot work,
// when both sides accept 'none' (4 messages only), and the SAS covers that direction.
test("no common sign_algs: the 4-message negotiation falls back to 'none' for one direction (SAS), never to no session", async () => {
  const { createIdentityKey } = await import("../../src/identity/keyfile.js");
  const { keyVerifier, signingIdentity } = await import("../../src/client/keys.js");
  const { SIGN_ALG_URI } = await import("../../src/identity/keys.js");
  const edKey = signingIdentity(createIdentityKey("ed25519", 0));
  const full = keyVerifier();
  const edOnly = { ...full, signAlgs: [SIGN_ALG_URI.ed25519] };
  const both = { offerPubkey: ["key", "none"] as PubkeyMethod[], acceptPubkey: ["key", "none"] as PubkeyMethod[] };
  const p = makePair({
    seed: "sign-algs-fallback",
    policy: { messages: 4 },
    alice: { identity: edKey, verifier: edOnly, policy: both },
    bob: { identity: bobKey, verifier: full, policy: both },
  });
  const { a, b } = await run(p);
  assert.equal(a.initPubkey, "key", "Alice (Ed25519) still signs: Bob verifies Ed25519");
  assert.equal(a.respPubkey, "none", "Bob's RSA signature could not be verified by Alice: SAS instead");
  assert.equal(b.peerKey && normalizeKey(b.peerKey.keyValue), normalizeKey(edKey.keyValue));
  assert.ok(a.sas !== undefined && a.sas === b.sas);
  await p.alice.sendMessage(p.bobJid, "fell back, still sealed");
  await p.settle();
  assert.deepEqual(p.bodies("bob"), ["fell back, still sealed"]);

  // With 3 messages 'none' is not allowed: the same pair gets the error naming sign_algs.
  const p3 = makePair({
    seed: "sign-algs-3",
    policy: { messages: 3 },
    alice: { identity: edKey, verifier: edOnly, policy: { offerPubkey: ["key"], acceptPubkey: ["key"] } },
    bob: { identity: bobKey, verifier: full, policy: { offerPubkey: ["key"], acceptPubkey: ["key"] } },
  });
  const est = p3.alice.startSession(p3.bobJid);
  est.catch(() => undefined);
  await p3.settle();
  await assert.rejects(est, /not-acceptable|feature-not-implemented/);
  assert.ok(!p3.aliceEvents.some((e) => e.type === "established"));
});
