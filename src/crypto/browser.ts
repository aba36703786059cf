/**
 * CryptoProvider for browsers (and any JS runtime without node:crypto), built only from
 * audited synchronous libraries: @noble/hashes (SHA-1/SHA-2, HMAC, HKDF-Expand),
 * @noble/ciphers (AES-CTR), @noble/curves (X25519; modular exponentiation for MODP).
 *
 * Why not WebCrypto: the provider interface is synchronous (src/crypto/provider.ts) so the
 * ESession cores stay plain state machines, and WebCrypto is promise-based; it also has no
 * finite-field Diffie-Hellman at all. Randomness still comes from WebCrypto's
 * `getRandomValues` (browserRandom below), which is synchronous.
 *
 * Spec: RFC 2104 (HMAC), FIPS 180-4 (SHA-2), FIPS 197 + NIST SP 800-38A (AES-CTR, the
 * 16-byte initial counter block incremented as a 128-bit big-endian integer, as XEP-0200
 * section 5 and node:crypto's aes-*-ctr use it), RFC 5869 section 2.3 (HKDF-Expand),
 * RFC 7748 sections 5 and 6.1 (X25519; an all-zero shared secret MUST be refused),
 * RFC 2409 section 6 and RFC 3526 sections 2-7 (MODP primes, generator 2; XEP-0116 section
 * 10 "Diffie-Hellman"). The primes below are those RFCs' hexadecimal values; a test checks
 * each against OpenSSL's copy (node's getDiffieHellman('modpN')).
 *
 * No primitive is implemented here. MODP exponentiation is @noble/curves' `pow` over
 * BigInt: its control flow depends on the (secret) exponent and BigInt arithmetic is not
 * constant-time, which is the usual trade-off of JS finite-field DH; the modern suite
 * (X25519, preferred between xmpp-e2e peers) avoids it.
 */
import { ctr } from "@noble/ciphers/aes.js";
import { pow } from "@noble/curves/abstract/modular.js";
import { x25519 } from "@noble/curves/ed25519.js";
import { bytesToNumberBE, numberToBytesBE } from "@noble/curves/utils.js";
import { expand } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha1 } from "@noble/hashes/legacy.js";
import { sha256, sha384, sha512 } from "@noble/hashes/sha2.js";
import { fromHex, mpi, utf8 } from "../core/bytes.js";
import type { Clock, Random } from "../core/types.js";
import { MODP_PRIMES_HEX } from "./modp-primes.js";
import { CryptoError, type CryptoProvider, type DhGroup, type DhGroupId, type HashAlg, type ModpGroup } from "./provider.js";


const HASHES = { sha1, sha256, sha384, sha512 } as const;

function hashFn(alg: HashAlg): (typeof HASHES)[HashAlg] {
  const h = HASHES[alg];
  if (!h) throw new CryptoError("unsupported");
  return h;
}

const groups = new Map<ModpGroup, DhGroup & { readonly prime: bigint }>();

function group(n: ModpGroup): DhGroup & { readonly prime: bigint } {
  let g = groups.get(n);
  if (!g) {
    const hex = MODP_PRIMES_HEX[n];
    if (hex === undefined) throw new CryptoError("unsupported");
    const p = fromHex(hex);
    g = { p, g: 2, bits: p.length * 8, prime: BigInt(`0x${hex}`) };
    groups.set(n, g);
  }
  return g;
}

function modpPow(n: ModpGroup, base: bigint, x: Uint8Array): Uint8Array {
  const g = group(n);
  const e = bytesToNumberBE(x);
  const r = pow(base, e, g.prime);
  return mpi(numberToBytesBE(r, g.p.length));
}

function x25519Shared(x: Uint8Array, peer: Uint8Array): Uint8Array {
  if (x.length !== 32 || peer.length !== 32) throw new CryptoError("bad-public-value");
  let k: Uint8Array;
  try {
    k = x25519.getSharedSecret(x, peer);
  } catch {
    // noble refuses small-order points itself (RFC 7748 section 6.1).
    throw new CryptoError("bad-public-value");
  }
  let acc = 0;
  for (const b of k) acc |= b;
  if (acc === 0) throw new CryptoError("bad-public-value");
  return k;
}

export const browserCrypto: CryptoProvider = {
  name: "@noble (browser)",
  hash(alg, ...parts) {
    const h = hashFn(alg).create();
    for (const p of parts) h.update(p);
    return h.digest();
  },
  hmac(alg, key, ...parts) {
    const m = hmac.create(hashFn(alg), key);
    for (const p of parts) m.update(typeof p === "string" ? utf8(p) : p);
    return m.digest();
  },
  aesCtr(key, iv, data) {
    if (![16, 24, 32].includes(key.length)) throw new RangeError("bad AES key length");
    if (iv.length !== 16) throw new RangeError("bad CTR counter block length");
    // noble's ctr increments the whole 16-byte block as a big-endian integer, like OpenSSL.
    return ctr(key, iv).encrypt(data);
  },
  modp(n) {
    const g = group(n);
    return { p: g.p, g: g.g, bits: g.bits };
  },
  dhPublic(n: DhGroupId, x) {
    if (n === "x25519") {
      if (x.length !== 32) throw new CryptoError("bad-public-value");
      return x25519.getPublicKey(x);
    }
    return modpPow(n, 2n, x);
  },
  dhShared(n: DhGroupId, x, peer) {
    if (n === "x25519") return x25519Shared(x, peer);
    // The caller range-checked `peer` (1 < peer < p - 1), as with node:crypto.
    return modpPow(n, bytesToNumberBE(peer), x);
  },
  hkdfExpand(hash, prk, info, length) {
    return expand(hashFn(hash), prk, info, length);
  },
};

/** WebCrypto's CSPRNG (`crypto.getRandomValues`, at most 65,536 bytes per call). */
export const browserRandom: Random = {
  bytes(n) {
    const out = new Uint8Array(n);
    for (let o = 0; o < n; o += 65536) globalThis.crypto.getRandomValues(out.subarray(o, Math.min(n, o + 65536)));
    return out;
  },
};

export const browserClock: Clock = { now: () => Date.now() };
