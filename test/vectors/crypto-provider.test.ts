/**
 * Known answers for the crypto provider: RFC 7748 section 6.1 (X25519), RFC 5869 appendix
 * A.1 (HKDF-Expand with SHA-256), RFC 4231 test case 2 (HMAC-SHA-256/512), and the MODP
 * groups of RFC 2409 / RFC 3526.
 *
 * Spec: the RFCs named above.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { fromHex, toHex, utf8 } from "../../src/core/bytes.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { CryptoError, MODP_GROUPS } from "../../src/crypto/provider.js";

test("RFC 7748 6.1: X25519 public keys and shared secret", () => {
  const a = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const b = fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  const pa = nodeCrypto.dhPublic("x25519", a);
  const pb = nodeCrypto.dhPublic("x25519", b);
  assert.equal(toHex(pa), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  assert.equal(toHex(pb), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  const k = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
  assert.equal(toHex(nodeCrypto.dhShared("x25519", a, pb)), k);
  assert.equal(toHex(nodeCrypto.dhShared("x25519", b, pa)), k);
  assert.throws(() => nodeCrypto.dhShared("x25519", a, new Uint8Array(32)), CryptoError);
});

test("RFC 5869 A.1: HKDF-Expand (SHA-256)", () => {
  const prk = fromHex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
  const info = fromHex("f0f1f2f3f4f5f6f7f8f9");
  assert.equal(
    toHex(nodeCrypto.hkdfExpand("sha256", prk, info, 42)),
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  );
});

test("RFC 4231 test case 2: HMAC-SHA-256 and HMAC-SHA-512, string and byte parts agree", () => {
  const key = utf8("Jefe");
  const msg = "what do ya want for nothing?";
  assert.equal(toHex(nodeCrypto.hmac("sha256", key, msg)), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  assert.equal(toHex(nodeCrypto.hmac("sha256", key, utf8("what do ya "), "want for nothing?")), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  assert.equal(
    toHex(nodeCrypto.hmac("sha512", key, msg)),
    "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
  );
});

test("RFC 2409 / RFC 3526: MODP group sizes and generator", () => {
  const bits = MODP_GROUPS.map((g) => nodeCrypto.modp(g).bits);
  assert.deepEqual(bits, [768, 1024, 1536, 2048, 3072, 4096, 6144, 8192]);
  for (const g of MODP_GROUPS) assert.equal(nodeCrypto.modp(g).g, 2);
});
