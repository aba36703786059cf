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
  getDiffieHellman,
  randomBytes,
} from "node:crypto";
import { mpi } from "../core/bytes.js";
import type { Random } from "../core/types.js";
import type { CryptoProvider, DhGroup, HashAlg, ModpGroup } from "./provider.js";

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

export const nodeCrypto: CryptoProvider = {
  name: "node:crypto",
  hash(alg: HashAlg, ...parts) {
    const h = createHash(alg);
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest());
  },
  hmac(alg: HashAlg, key, ...parts) {
    const h = createHmac(alg, key);
    for (const p of parts) if (typeof p === "string") h.update(p, "utf8");
    else h.update(p);
    return new Uint8Array(h.digest());
  },
  aesCtr(key, iv, data) {
    const alg = key.length === 16 ? "aes-128-ctr" : key.length === 24 ? "aes-192-ctr" : "aes-256-ctr";
    if (![16, 24, 32].includes(key.length)) throw new RangeError("bad AES key length");
    const c = createCipheriv(alg, key, iv);
    const a = c.update(data);
    const b = c.final();
    // CTR is a stream mode: final() is empty and update() returned a fresh buffer.
    return b.length === 0 ? a : Buffer.concat([a, b]);
  },
  modp: group,
  dhPublic(n, x) {
    const d = dh(n, x);
    d.generateKeys();
    return mpi(new Uint8Array(d.getPublicKey()));
  },
  dhShared(n, x, peer) {
    return mpi(new Uint8Array(dh(n, x).computeSecret(peer)));
  },
};

/** The operating system's CSPRNG. */
export const systemRandom: Random = {
  bytes: (n) => new Uint8Array(randomBytes(n)),
};

export const systemClock = { now: () => Date.now() };
