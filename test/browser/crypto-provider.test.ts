/**
 * The browser CryptoProvider (src/crypto/browser.ts, @noble/*) against known answers and
 * against node:crypto on the same inputs, then a whole ESession between a @noble client and
 * a node:crypto client (MODP and X25519), so the web page and the terminal client agree.
 *
 * Spec: RFC 7748 section 6.1 (X25519), RFC 5869 A.1 (HKDF-Expand), RFC 4231 test case 2
 * (HMAC), NIST SP 800-38A F.5.1 (AES-128-CTR), RFC 2409 / RFC 3526 (MODP primes),
 * XEP-0217 v0.1 (negotiation), XEP-0200 v0.2 (stanza encryption).
 */
import assert from "node:assert/strict";
import { getDiffieHellman, randomBytes } from "node:crypto";
import { test } from "node:test";
import { Switchboard } from "../../src/adapters/switchboard.js";
import { SecureClient } from "../../src/client/secure-client.js";
import { fromHex, toHex, utf8 } from "../../src/core/bytes.js";
import { parseFullJid } from "../../src/core/types.js";
import { browserCrypto, browserRandom } from "../../src/crypto/browser.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import { CryptoError, MODP_GROUPS, type HashAlg } from "../../src/crypto/provider.js";
import { MemoryStore } from "../../src/store/memory.js";

test("RFC 7748 6.1: X25519 with @noble/curves", () => {
  const a = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const b = fromHex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  const pa = browserCrypto.dhPublic("x25519", a);
  const pb = browserCrypto.dhPublic("x25519", b);
  assert.equal(toHex(pa), "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  assert.equal(toHex(pb), "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  assert.equal(toHex(browserCrypto.dhShared("x25519", a, pb)), "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
  // RFC 7748 6.1: an all-zero shared secret (small-order peer value) MUST be refused.
  assert.throws(() => browserCrypto.dhShared("x25519", a, new Uint8Array(32)), CryptoError);
  assert.throws(() => browserCrypto.dhShared("x25519", a, Uint8Array.of(1, ...new Uint8Array(31))), CryptoError);
});

test("RFC 5869 A.1 and RFC 4231 case 2: HKDF-Expand and HMAC", () => {
  const prk = fromHex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
  assert.equal(
    toHex(browserCrypto.hkdfExpand("sha256", prk, fromHex("f0f1f2f3f4f5f6f7f8f9"), 42)),
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
  );
  const key = utf8("Jefe");
  assert.equal(toHex(browserCrypto.hmac("sha256", key, "what do ya ", utf8("want for nothing?"))), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
});

test("SP 800-38A F.5.1: AES-128-CTR", () => {
  const key = fromHex("2b7e151628aed2a6abf7158809cf4f3c");
  const iv = fromHex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
  const pt = fromHex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
  assert.equal(toHex(browserCrypto.aesCtr(key, iv, pt)), "874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff");
});

test("every MODP prime equals OpenSSL's (RFC 2409 / RFC 3526)", () => {
  const names = { 1: "modp1", 2: "modp2", 5: "modp5", 14: "modp14", 15: "modp15", 16: "modp16", 17: "modp17", 18: "modp18" } as const;
  for (const g of MODP_GROUPS) {
    const ours = browserCrypto.modp(g);
    assert.equal(toHex(ours.p), getDiffieHellman(names[g]).getPrime("hex"), `group ${g}`);
    assert.equal(ours.g, 2);
    assert.equal(ours.bits, nodeCrypto.modp(g).bits);
  }
});

test("same outputs as node:crypto on random inputs (hash, hmac, AES-CTR with counter carry, DH)", () => {
  for (let i = 0; i < 20; i++) {
    const data = new Uint8Array(randomBytes(i * 37));
    for (const h of ["sha1", "sha256", "sha384", "sha512"] as HashAlg[]) {
      assert.equal(toHex(browserCrypto.hash(h, data, data)), toHex(nodeCrypto.hash(h, data, data)));
      const k = new Uint8Array(randomBytes(i + 1));
      assert.equal(toHex(browserCrypto.hmac(h, k, data, "x")), toHex(nodeCrypto.hmac(h, k, data, "x")));
    }
    for (const klen of [16, 24, 32]) {
      const key = new Uint8Array(randomBytes(klen));
      // A counter block about to carry across the 64-bit halves.
      const iv = i % 2 ? fromHex("00000000000000fffffffffffffffffe") : new Uint8Array(randomBytes(16));
      assert.equal(toHex(browserCrypto.aesCtr(key, iv, data)), toHex(nodeCrypto.aesCtr(key, iv, data)));
    }
  }
  for (const g of [1, 2, 5, 14] as const) {
    const x = new Uint8Array(randomBytes(64));
    const y = new Uint8Array(randomBytes(64));
    const gx = browserCrypto.dhPublic(g, x);
    assert.equal(toHex(gx), toHex(nodeCrypto.dhPublic(g, x)));
    const gy = nodeCrypto.dhPublic(g, y);
    assert.equal(toHex(browserCrypto.dhShared(g, x, gy)), toHex(nodeCrypto.dhShared(g, y, gx)));
  }
  const x = new Uint8Array(randomBytes(32));
  assert.equal(toHex(browserCrypto.dhPublic("x25519", x)), toHex(nodeCrypto.dhPublic("x25519", x)));
  assert.equal(browserRandom.bytes(70000).length, 70000);
});

for (const groups of [["x25519"], [14]] as const) {
  test(`an ESession between a @noble client and a node:crypto client (${groups[0]})`, async () => {
    const board = new Switchboard();
    const relayed: string[] = [];
    board.tap((r) => relayed.push(r.text));
    const web = new SecureClient({ connection: board.connect(parseFullJid("alice@example.org/web")), store: new MemoryStore(), crypto: browserCrypto, random: browserRandom, policy: { groups } });
    const term = new SecureClient({ connection: board.connect(parseFullJid("bob@example.org/tty")), store: new MemoryStore(), policy: { groups } });
    const bobSas = new Promise<string | undefined>((resolve) => term.on((e) => e.type === "established" && resolve(e.sas)));
    const got = new Promise<string | undefined>((resolve) => term.on((e) => e.type === "message" && resolve(e.body)));
    const est = await web.startSession(term.jid);
    assert.equal(est.options.group, groups[0]);
    assert.equal(est.sas, await bobSas);
    await web.sendMessage(term.jid, "secret from the browser");
    assert.equal(await got, "secret from the browser");
    const back = new Promise<string | undefined>((resolve) => web.on((e) => e.type === "message" && resolve(e.body)));
    await term.sendMessage(web.jid, "reply from the terminal");
    assert.equal(await back, "reply from the terminal");
    assert.ok(!relayed.some((t) => t.includes("secret from the browser") || t.includes("reply from the terminal")));
    await web.close();
    await term.close();
  });
}
