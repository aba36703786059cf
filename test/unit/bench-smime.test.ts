/**
 * Smoke test of the object-encryption benchmark (bench/smime.ts): the 500-byte CPIM
 * object has exactly that size, and one op of each subject and baseline runs, for RSA
 * and EC (the figures themselves are produced by `npm run bench`).
 *
 * Spec: draft-ietf-xmpp-e2e-03 section 3 (CPIM object signed then encrypted); see the
 * banner of bench/smime.ts for the operations each baseline reproduces.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { CPIM_BYTES, cpimObject, decryptVerify, pair, rawDecryptVerify, rawKeys, rawSignEncrypt, signEncrypt } from "../../bench/smime.js";
import { utf8 } from "../../src/core/bytes.js";

test("cpimObject builds a CRLF-canonical Message/CPIM object of the requested size", () => {
  const o = cpimObject(CPIM_BYTES);
  assert.equal(utf8(o).length, CPIM_BYTES);
  assert.match(o, /^Content-type: Message\/CPIM\r\n\r\nFrom: <im:alice@example\.org>\r\n/);
  assert.throws(() => cpimObject(10), RangeError);
});

for (const keyType of ["rsa-2048", "ec-p256"] as const) {
  test(`one op of each smime subject and baseline runs (${keyType})`, async () => {
    const p = await pair(keyType);
    assert.ok(p.signedEntityBytes > CPIM_BYTES);
    const keys = rawKeys(p);
    await signEncrypt(p)();
    await decryptVerify(p)();
    rawSignEncrypt(keys, CPIM_BYTES, p.signedEntityBytes)();
    rawDecryptVerify(keys, CPIM_BYTES, p.signedEntityBytes)();
  });
}
