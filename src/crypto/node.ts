/**
 * CryptoProvider backed by node:crypto (OpenSSL). No primitive is implemented here.
 *
 * Spec: RFC 2104 (HMAC), FIPS 180-4 (SHA-2), FIPS 197 + SP 800-38A (AES-CTR), RFC 2409 /
 * RFC 3526 MODP groups (served by OpenSSL through `getDiffieHellman('modpN')`).
 */
import {
  createCipheriv,
  createDiffieHellman,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  getDiffieHellman,
  hash as oneShotHash,
  type KeyObject,
  randomBytes,
  randomFillSync,
} from "node:crypto";
import { mpi } from "../core/bytes.js";
import type { Random } from "../core/types.js";
import { CryptoError, type CryptoProvider, type DhGroup, type DhGroupId, type HashAlg, type ModpGroup } from "./provider.js";

// RFC 8410 DER prefixes for raw X25519 keys (PKCS#8 private, SubjectPublicKeyInfo public).
const X25519_PKCS8 = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
const X25519_SPKI = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00]);

/**
 * A private value is used twice (public key, then shared secret), so the KeyObject is kept
 * for the lifetime of that byte array (it dies with it; wiping the array does not reach
 * this copy, which is private to OpenSSL and freed with the array).
 */
const x25519Keys = new WeakMap<Uint8Array, KeyObject>();

function b64url(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64url");
}

/**
 * Raw X25519 keys enter OpenSSL as JWK (RFC 8037 OKP): node hands the raw octets to
 * EVP_PKEY_new_raw_*_key, which costs a fraction of OpenSSL 3's DER decoder (measured
 * about 15x less for a private key on this project's bench machine). Should a node version
 * refuse the JWK form, the RFC 8410 DER form is used instead: same key, same result.
 */
function rawKey(kind: "private" | "public", v: Uint8Array): KeyObject {
  try {
    // For a private key node derives the public half from d; x is only type-checked.
    return kind === "private"
      ? createPrivateKey({ key: { kty: "OKP", crv: "X25519", d: b64url(v), x: "" }, format: "jwk" })
      : createPublicKey({ key: { kty: "OKP", crv: "X25519", x: b64url(v) }, format: "jwk" });
  } catch {
    const der = Buffer.concat([kind === "private" ? X25519_PKCS8 : X25519_SPKI, v]);
    return kind === "private" ? createPrivateKey({ key: der, format: "der", type: "pkcs8" }) : createPublicKey({ key: der, format: "der", type: "spki" });
  }
}

function x25519Private(x: Uint8Array): KeyObject {
  if (x.length !== 32) throw new CryptoError("bad-public-value");
  let k = x25519Keys.get(x);
  if (!k) {
    k = rawKey("private", x);
    x25519Keys.set(x, k);
  }
  return k;
}

function x25519Public(v: Uint8Array): KeyObject {
  if (v.length !== 32) throw new CryptoError("bad-public-value");
  return rawKey("public", v);
}

const groups = new Map<ModpGroup, DhGroup>();

function group(n: ModpGroup): DhGroup {
  let g = groups.get(n);
  if (!g) {
    const dh = getDiffieHellman(`modp${n}`);
    const p = new Uint8Array(dh.getPrime());
    g = { p, g: dh.getGenerator()[0] ?? 2, bits: p.length * 8 };
    groups.set(n, g);
  }
  return g;
}

function dh(n: ModpGroup, x: Uint8Array) {
  const g = group(n);
  const d = createDiffieHellman(g.p, Uint8Array.of(g.g));
  d.setPrivateKey(x);
  return d;
}

/**
 * A digest Buffer as a plain Uint8Array view, without a copy: node allocates every
 * digest() result in its own ArrayBuffer (never in the shared Buffer pool), so the view
 * pins nothing else.
 */
function view(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** The single-octet HKDF block counters 0x01..0x10 (RFC 5869 2.3), allocated once. */
const HKDF_COUNTERS = Array.from({ length: 16 }, (_, i) => Uint8Array.of(i + 1));

const AES_CTR: Record<number, string> = { 16: "aes-128-ctr", 24: "aes-192-ctr", 32: "aes-256-ctr" };

export const nodeCrypto: CryptoProvider = {
  name: "node:crypto",
  hash(alg: HashAlg, ...parts) {
    // One part (the common case): node's one-shot hash skips the Hash object.
    if (parts.length === 1 && parts[0] !== undefined) return view(oneShotHash(alg, parts[0], "buffer"));
    const h = createHash(alg);
    for (const p of parts) h.update(p);
    return view(h.digest());
  },
  hmac(alg: HashAlg, key, ...parts) {
    const h = createHmac(alg, key);
    for (const p of parts) if (typeof p === "string") h.update(p, "utf8");
    else h.update(p);
    return view(h.digest());
  },
  aesCtr(key, iv, data) {
    const alg = AES_CTR[key.length];
    if (alg === undefined) throw new RangeError("bad AES key length");
    // CTR is a stream mode: update() returns every output octet and final() none, so the
    // cipher is not finalized (one native call less per stanza).
    return createCipheriv(alg, key, iv).update(data);
  },
  modp(n: ModpGroup) {
    return group(n);
  },
  dhPublic(n: DhGroupId, x) {
    if (n === "x25519") {
      // The JWK export (RFC 8037 'x': the raw public key) skips OpenSSL 3's DER encoder.
      const jwk = createPublicKey(x25519Private(x)).export({ format: "jwk" });
      const pub = typeof jwk.x === "string" ? Buffer.from(jwk.x, "base64url") : undefined;
      if (!pub || pub.length !== 32) throw new CryptoError("unsupported");
      return new Uint8Array(pub);
    }
    const d = dh(n, x);
    d.generateKeys();
    return mpi(new Uint8Array(d.getPublicKey()));
  },
  dhShared(n: DhGroupId, x, peer) {
    if (n === "x25519") {
      try {
        // OpenSSL refuses an all-zero result (a small-order peer value, RFC 7748 6.1).
        return new Uint8Array(diffieHellman({ privateKey: x25519Private(x), publicKey: x25519Public(peer) }));
      } catch {
        throw new CryptoError("bad-public-value");
      }
    }
    return mpi(new Uint8Array(dh(n, x).computeSecret(peer)));
  },
  hkdfExpand(hash, prk, info, length) {
    // RFC 5869 Expand only: `prk` is already pseudorandom (an Extract output). node's
    // hkdfSync runs Extract too, so Expand is the RFC 5869 2.3 loop over node's HMAC.
    // T(0) is empty, so the first block is HMAC(PRK, info | 0x01).
    const first = view(createHmac(hash, prk).update(info).update(HKDF_COUNTERS[0] ?? Uint8Array.of(1)).digest());
    // One block is all every key of this project needs (length <= HashLen).
    if (length === first.length) return first;
    if (length < first.length) {
      const r = first.slice(0, length);
      first.fill(0);
      return r;
    }
    if (length > 255 * first.length) throw new RangeError("HKDF-Expand: length over 255 blocks");
    const out = new Uint8Array(length);
    out.set(first);
    let t = first;
    for (let i = 2, o = first.length; o < length; i++) {
      t = view(createHmac(hash, prk).update(t).update(info).update(HKDF_COUNTERS[i - 1] ?? Uint8Array.of(i)).digest());
      out.set(t.subarray(0, Math.min(t.length, length - o)), o);
      o += t.length;
    }
    first.fill(0);
    return out;
  },
};

/** Requests up to this size are served from the pool; larger ones go to the CSPRNG directly. */
const POOL_MAX_REQUEST = 256;
const POOL_BYTES = 4096;
let pool = new Uint8Array(0);
let poolPos = 0;

/**
 * The operating system's CSPRNG (OpenSSL's RAND_bytes through node). A negotiation draws a
 * dozen small values (nonces, counters, private keys, decoys); each call costs far more
 * than the bytes, so small requests are cut from a 4 KiB draw, as node's randomUUID does.
 * Every byte is handed out once and zeroed in the pool as it is handed out, so a secret
 * drawn here stays only in the caller's copy.
 */
export const systemRandom: Random = {
  bytes(n) {
    if (n > POOL_MAX_REQUEST) return new Uint8Array(randomBytes(n));
    if (poolPos + n > pool.length) {
      pool = randomFillSync(new Uint8Array(POOL_BYTES));
      poolPos = 0;
    }
    const out = pool.slice(poolPos, poolPos + n);
    pool.fill(0, poolPos, poolPos + n);
    poolPos += n;
    return out;
  },
};

export const systemClock = { now: () => Date.now() };
