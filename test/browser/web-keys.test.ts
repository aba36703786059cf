/**
 * The web client's key pieces, run under Node against node:crypto (OpenSSL) as the
 * reference: the browser verifier (src/web/verifier.ts, @noble/curves) accepts exactly the
 * Ed25519 and P-256 signatures OpenSSL makes and nothing else; the browser's
 * createPublicKey / Buffer (src/web/shim-crypto.ts, shim-buffer.ts) give the same DER and
 * JWK as node:crypto; and the negotiation the page runs (an asynchronous Ed25519 signer,
 * the browser verifier, offer 'key' then 'none') against a terminal user's configuration
 * (src/client/keys.ts signingIdentity / keyVerifier): keys both ways with an Ed25519 peer,
 * whoever starts; with an RSA-only peer, what happens (XEP-0116 has one sign_algs value for
 * both signatures).
 *
 * Spec: XEP-0116 v0.16 sections 4.1 (sign_algs), 4.3-4.5 (SIGMA signatures), 10.3;
 * RFC 8032; RFC 6931 2.3.6 / XML-DSig 1.1 6.4.3 (ECDSA r || s); RFC 8410; RFC 5480.
 */
import assert from "node:assert/strict";
import { createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { test } from "node:test";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import type { ClientEvent } from "../../src/client/secure-client.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import type { AsyncSigningIdentity, SigningIdentity } from "../../src/esession/identity.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { nodeSigner, SIGN_ALG_URI } from "../../src/identity/keys.js";
import { keyFingerprint, keyValueElement } from "../../src/identity/keyvalue.js";
import { Buffer as WebBuffer } from "../../src/web/shim-buffer.js";
import { createPublicKey as webCreatePublicKey } from "../../src/web/shim-crypto.js";
import { browserKeyVerifier, peerKeyFingerprint, rawPublicKey } from "../../src/web/verifier.js";
import { makePair, type Pair } from "../sim/pair.js";
import { rsaIdentity } from "../support/rsa-identity.js";

const spkiOf = (k: KeyObject) => new Uint8Array(k.export({ format: "der", type: "spki" }));

test("the browser's createPublicKey gives node:crypto's SPKI and JWK for Ed25519 and P-256, and refuses the rest", () => {
  for (const pair of [generateKeyPairSync("ed25519"), generateKeyPairSync("ec", { namedCurve: "P-256" })]) {
    const spki = spkiOf(pair.publicKey);
    const jwk = pair.publicKey.export({ format: "jwk" });
    const fromDer = webCreatePublicKey({ key: spki, format: "der", type: "spki" });
    const fromJwk = webCreatePublicKey({ key: jwk, format: "jwk" });
    assert.deepEqual(fromDer.export({ format: "der", type: "spki" }), spki);
    assert.deepEqual(fromJwk.export({ format: "der", type: "spki" }), spki);
    assert.deepEqual(fromDer.export({ format: "jwk" }), jwk);
    assert.equal(fromDer.asymmetricKeyType, pair.publicKey.asymmetricKeyType);
  }
  const p256 = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ format: "jwk" });
  const yBytes = Buffer.from(p256.y ?? "", "base64url");
  yBytes[31] = (yBytes[31] ?? 0) ^ 1;
  assert.throws(() => webCreatePublicKey({ key: { ...p256, y: yBytes.toString("base64url") }, format: "jwk" }), "a point off the curve");
  assert.throws(() => createPublicKey({ key: { ...p256, y: yBytes.toString("base64url") }, format: "jwk" }), "(OpenSSL agrees)");
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey;
  assert.throws(() => webCreatePublicKey({ key: spkiOf(rsa), format: "der", type: "spki" }), /not available in the browser/);
  assert.throws(() => webCreatePublicKey({ key: rsa.export({ format: "jwk" }), format: "jwk" }), /not available in the browser/);
});

test("the browser's Buffer converts as Node's does", () => {
  const bytes = Uint8Array.from([0, 1, 250, 251, 252, 253, 254, 255, 62, 63]);
  for (const enc of ["base64", "base64url", "hex"] as const) {
    const s = Buffer.from(bytes).toString(enc);
    assert.equal(WebBuffer.from(bytes).toString(enc), s);
    assert.deepEqual(new Uint8Array(WebBuffer.from(s, enc)), bytes);
  }
  assert.equal(WebBuffer.from("héllo").toString(), "héllo");
  assert.deepEqual(new Uint8Array(WebBuffer.concat([Uint8Array.of(1), Uint8Array.of(2, 3)])), Uint8Array.of(1, 2, 3));
});

test("the browser verifier accepts OpenSSL's Ed25519 and P-256 signatures and nothing else", () => {
  const v = browserKeyVerifier({ crypto: nodeCrypto });
  assert.deepEqual(v.signAlgs, [SIGN_ALG_URI.ed25519, SIGN_ALG_URI["ecdsa-p256-sha256"]]);
  const data = new Uint8Array(32).fill(7);
  for (const alg of ["ed25519", "ecdsa-p256-sha256"] as const) {
    const key = createIdentityKey(alg, 0);
    const kv = keyValueElement(key.publicKey);
    // Many P-256 signatures: about half of OpenSSL's have a high s.
    for (let i = 0; i < (alg === "ed25519" ? 2 : 16); i++) {
      const d = Uint8Array.from(data, (x) => x ^ i);
      const sig = nodeSigner.sign(alg, key.privateKey, d);
      assert.equal(v.verify(SIGN_ALG_URI[alg], kv, d, sig), true, `${alg} #${i}`);
      const bad = sig.slice();
      bad[5] = (bad[5] ?? 0) ^ 1;
      assert.equal(v.verify(SIGN_ALG_URI[alg], kv, d, bad), false);
      assert.equal(v.verify(SIGN_ALG_URI[alg], kv, Uint8Array.from(d, (x) => x ^ 0xff), sig), false);
    }
    const other = alg === "ed25519" ? "ecdsa-p256-sha256" : "ed25519";
    assert.equal(v.verify(SIGN_ALG_URI[other], kv, data, nodeSigner.sign(alg, key.privateKey, data)), false, "the key's type must match sign_algs");
    assert.equal(rawPublicKey(kv)?.alg, alg);
    assert.equal(peerKeyFingerprint(nodeCrypto, kv), keyFingerprint(nodeCrypto, key.publicKey), "the trust store's fingerprint");
  }
  const rsa = rsaIdentity();
  assert.equal(v.verify(rsa.signAlg, rsa.keyValue, data, rsa.sign(data)), false, "RSA is not verified in the browser");
  assert.equal(rawPublicKey(rsa.keyValue), undefined);
});

/** The page's identity: the key behind a Promise that settles a macrotask later (as WebCrypto). */
function asyncOf(key: SigningIdentity): AsyncSigningIdentity {
  return { async: true, signAlg: key.signAlg, keyValue: key.keyValue, sign: (d) => new Promise((r) => setTimeout(() => r(key.sign(d)), 1)) };
}

type Est = Extract<ClientEvent, { type: "established" }>;

async function until(p: Pair, done: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !done(); i++) {
    await p.settle();
    await new Promise((r) => setTimeout(r, 5));
  }
}

const browserSide = (key: SigningIdentity) => ({
  identity: asyncOf(key),
  verifier: browserKeyVerifier({ crypto: nodeCrypto }),
  policy: { offerPubkey: ["key", "none"] as const, acceptPubkey: ["key", "none"] as const },
});
const terminalSide = (key: SigningIdentity) => ({
  identity: key,
  verifier: keyVerifier(),
  policy: { offerPubkey: ["key", "none"] as const, acceptPubkey: ["key", "hash", "none"] as const },
});

for (const browserStarts of [true, false]) {
  test(`the page and an Ed25519 terminal user negotiate with keys both ways (${browserStarts ? "the page" : "the terminal"} starts)`, async () => {
    const web = signingIdentity(createIdentityKey("ed25519", 0));
    const term = signingIdentity(createIdentityKey("ed25519", 0));
    const p = makePair({
      seed: `web-keys-${browserStarts}`,
      alice: browserStarts ? browserSide(web) : terminalSide(term),
      bob: browserStarts ? terminalSide(term) : browserSide(web),
    });
    p.alice.startSession(p.bobJid).catch(() => undefined);
    await until(p, () => p.aliceEvents.some((e) => e.type === "established") && p.bobEvents.some((e) => e.type === "established"));
    const a = p.aliceEvents.find((e): e is Est => e.type === "established");
    const b = p.bobEvents.find((e): e is Est => e.type === "established");
    assert.ok(a && b, `established: ${JSON.stringify([...p.aliceEvents, ...p.bobEvents].filter((e) => e.type === "failed").map((e) => e.type === "failed" && e.error.message))}`);
    assert.deepEqual([a.initPubkey, a.respPubkey, b.initPubkey, b.respPubkey], ["key", "key", "key", "key"]);
    const [webKey, termKey] = browserStarts ? [a.peerKey, b.peerKey] : [b.peerKey, a.peerKey];
    assert.equal(webKey && peerKeyFingerprint(nodeCrypto, webKey.keyValue), peerKeyFingerprint(nodeCrypto, term.keyValue), "the page verified the terminal's key");
    assert.equal(termKey && peerKeyFingerprint(nodeCrypto, termKey.keyValue), peerKeyFingerprint(nodeCrypto, web.keyValue), "the terminal verified the page's key");
  });
}

// XEP-0116 4.2: one sign_algs value serves both signatures. When the page starts, the
// terminal (responder) sees that the page can neither verify RSA nor sign it and falls back
// to 'none' for its own signature: the page still signs (Ed25519, which the terminal
// verifies) and the users compare the SAS for the other direction. When the terminal starts,
// the page (responder) takes the first algorithm of the offer as the terminal's signing
// algorithm (RSA, which it cannot verify) and drops the terminal's signature to 'none': the
// page signs and the SAS covers the terminal's direction.
test("an RSA-only terminal user and the page (the page starts): the terminal drops its own signature to 'none' (SAS), the page still signs", async () => {
  const web = signingIdentity(createIdentityKey("ed25519", 0));
  const term = rsaIdentity();
  const p = makePair({ seed: "web-rsa-true", alice: browserSide(web), bob: terminalSide(term) });
  p.alice.startSession(p.bobJid).catch(() => undefined);
  await until(p, () => p.aliceEvents.some((e) => e.type === "established") && p.bobEvents.some((e) => e.type === "established"));
  const a = p.aliceEvents.find((e): e is Est => e.type === "established");
  const b = p.bobEvents.find((e): e is Est => e.type === "established");
  assert.ok(a && b, "established");
  assert.deepEqual([a.initPubkey, a.respPubkey], ["key", "none"]);
  assert.ok(a.sas !== undefined && a.sas === b.sas, "the SAS covers the unsigned direction");
  assert.equal(b.peerKey && peerKeyFingerprint(nodeCrypto, b.peerKey.keyValue), peerKeyFingerprint(nodeCrypto, web.keyValue), "the terminal verified the page's key");
});

test("an RSA-only terminal user and the page (the terminal starts): the page signs, the terminal's direction is covered by the SAS", async () => {
  const web = signingIdentity(createIdentityKey("ed25519", 0));
  const term = rsaIdentity();
  const p = makePair({ seed: "web-rsa-false", alice: terminalSide(term), bob: browserSide(web) });
  p.alice.startSession(p.bobJid).catch(() => undefined);
  await until(p, () => p.aliceEvents.some((e) => e.type === "established") && p.bobEvents.some((e) => e.type === "established"));
  const a = p.aliceEvents.find((e): e is Est => e.type === "established");
  const b = p.bobEvents.find((e): e is Est => e.type === "established");
  assert.ok(a && b, "established");
  assert.deepEqual([a.initPubkey, a.respPubkey], ["none", "key"]);
  assert.ok(a.sas !== undefined && a.sas === b.sas, "the SAS covers the unsigned direction");
  assert.equal(a.peerKey && peerKeyFingerprint(nodeCrypto, a.peerKey.keyValue), peerKeyFingerprint(nodeCrypto, web.keyValue), "the terminal verified the page's key");
});
