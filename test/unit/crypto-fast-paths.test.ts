/**
 * The handshake's fast paths give the same answers as the straightforward ones: keys
 * decoded once (SignatureProvider.signerFor / verifierFor, signingIdentity, keyVerifier),
 * the pooled CSPRNG, and the MODP range checks done on big-endian bytes instead of bigints.
 *
 * Spec: XEP-0116 v0.16 section 10.3 (signature algorithms) and sections 4.3 / 4.5.1 (the
 * range check 1 < e < p - 1 and the exponent bound 2^(2n) < x < p - 1, n = 128); RFC 3526
 * / RFC 2409 (the MODP primes).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { keyVerifier, signingIdentity } from "../../src/client/keys.js";
import { fromBigInt, toBigInt, toHex } from "../../src/core/bytes.js";
import { nodeCrypto, systemRandom } from "../../src/crypto/node.js";
import type { ModpGroup } from "../../src/crypto/provider.js";
import { normalizedKey } from "../../src/esession/identity.js";
import { dhPrivate, dhValueInRange } from "../../src/esession/keys.js";
import { createIdentityKey } from "../../src/identity/keyfile.js";
import { nodeSigner, SIGN_ALG_URI, type SignAlg } from "../../src/identity/keys.js";
import { keyValueElement } from "../../src/identity/keyvalue.js";

const ALGS: readonly SignAlg[] = ["rsa-sha256", "dsa-sha256", "ed25519", "ecdsa-p256-sha256"];
const data = new TextEncoder().encode("SIGMA mac stand-in");

for (const alg of ALGS) {
  test(`${alg}: signerFor / verifierFor agree with sign / verify`, () => {
    const k = nodeSigner.generate(alg, alg === "rsa-sha256" ? { rsaBits: 2048 } : {});
    const sign = nodeSigner.signerFor(alg, k.privateKey);
    const check = nodeSigner.verifierFor(alg, k.publicKey);
    const a = sign(data);
    const b = nodeSigner.sign(alg, k.privateKey, data);
    // RSASSA-PKCS1-v1_5 and Ed25519 are deterministic; DSA and ECDSA are not.
    if (alg === "rsa-sha256" || alg === "ed25519") assert.equal(toHex(a), toHex(b));
    for (const sig of [a, b]) {
      assert.equal(check(data, sig), true);
      assert.equal(nodeSigner.verify(alg, k.publicKey, data, sig), true);
      assert.equal(check(new TextEncoder().encode("other"), sig), false);
    }
    assert.equal(check(data, new Uint8Array(0)), false);
    assert.equal(nodeSigner.verifierFor(alg, new Uint8Array([1, 2, 3]))(data, a), false, "a malformed key never throws");
    for (const other of ALGS.filter((x) => x !== alg)) {
      assert.equal(nodeSigner.verifierFor(other, k.publicKey)(data, a), false);
      assert.throws(() => nodeSigner.signerFor(other, k.privateKey));
    }
  });
}

test("signingIdentity and keyVerifier: keys decoded once, same signatures and verdicts", () => {
  const key = createIdentityKey("ed25519", 0);
  const id = signingIdentity(key);
  const sig = id.sign(data);
  assert.equal(toHex(sig), toHex(nodeSigner.sign("ed25519", key.privateKey, data)));
  assert.equal(toHex(id.sign(data)), toHex(sig), "the decoded key is reused");
  const v = keyVerifier();
  const kv = keyValueElement(key.publicKey);
  const uri = SIGN_ALG_URI.ed25519;
  assert.equal(v.verify(uri, kv, data, sig), true);
  assert.equal(v.verify(uri, kv, data, sig, normalizedKey(kv)), true, "with the caller's normalized key");
  assert.equal(v.verify(uri, kv, data, sig.map((b, i) => (i === 0 ? b ^ 1 : b))), false);
  assert.equal(v.verify(SIGN_ALG_URI["rsa-sha256"], kv, data, sig), false, "another algorithm");
  assert.equal(v.verify("urn:unknown", kv, data, sig), false);
  const other = keyValueElement(createIdentityKey("ed25519", 0).publicKey);
  assert.equal(v.verify(uri, other, data, sig), false, "another key");
});

test("systemRandom: fresh bytes of the asked length from the pool and beyond it", () => {
  const seen = new Set<string>();
  for (const n of [1, 16, 32, 64, 255, 256, 257, 4096, 5000]) {
    for (let i = 0; i < 40; i++) {
      const b = systemRandom.bytes(n);
      assert.equal(b.length, n);
      assert.equal(b.buffer.byteLength, n, "a private copy, not a view of the pool");
      if (n >= 16) {
        const h = toHex(b);
        assert.ok(!seen.has(h), "no value handed out twice");
        seen.add(h);
      }
    }
  }
  assert.equal(systemRandom.bytes(0).length, 0);
});

test("MODP range checks and exponents on bytes match the bigint definitions", () => {
  for (const g of [1, 2, 5, 14, 18] as const satisfies readonly ModpGroup[]) {
    const pb = nodeCrypto.modp(g).p;
    const p = toBigInt(pb);
    const width = pb.length;
    const cases = [0n, 1n, 2n, 3n, 1n << 256n, p - 2n, p - 1n, p, p + 1n, (1n << BigInt(8 * width)) - 1n];
    for (const v of cases) {
      for (const pad of [0, 1, 3]) {
        const bytes = new Uint8Array([...new Uint8Array(pad), ...fromBigInt(v, width)]);
        assert.equal(dhValueInRange(nodeCrypto, g, bytes), v > 1n && v < p - 1n, `group ${g}, value ${v === p - 1n ? "p-1" : v === p - 2n ? "p-2" : String(v).slice(0, 12)}, ${pad} zero octets`);
      }
    }
    for (let i = 0; i < 50; i++) {
      const x = toBigInt(dhPrivate(nodeCrypto, systemRandom, g));
      assert.ok(x > 1n << 256n && x < p - 1n);
    }
  }
  // 2^256 itself is not above the bound: the sampler draws again.
  const draws = [1n << 256n, (1n << 256n) + 1n];
  let i = 0;
  const scripted = { bytes: (n: number) => fromBigInt(draws[i++] ?? 0n, n) };
  assert.equal(toBigInt(dhPrivate(nodeCrypto, scripted, 14)), (1n << 256n) + 1n);
});
