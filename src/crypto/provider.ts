/**
 * The crypto provider interface every core receives. Cores never import node:crypto.
 *
 * Spec: XEP-0116 v0.16 section 10 "Mandatory-to-Implement Technologies" (Diffie-Hellman,
 * aes128-ctr, sha256, HMAC per RFC 2104) and XEP-0200 v0.2 section 5 (CTR mode, NIST SP
 * 800-38A). MODP groups: RFC 2409 (1, 2) and RFC 3526 (5, 14-18).
 *
 * The interface is synchronous: node:crypto serves every operation synchronously, and a
 * browser provider can be built on audited synchronous libraries (@noble/*). This keeps
 * the cores plain state machines without async steps.
 */

export type HashAlg = "sha1" | "sha256" | "sha384" | "sha512";
export type CipherAlg = "aes128-ctr" | "aes192-ctr" | "aes256-ctr";
export type ModpGroup = 1 | 2 | 5 | 14 | 15 | 16 | 17 | 18;

export const MODP_GROUPS: readonly ModpGroup[] = [1, 2, 5, 14, 15, 16, 17, 18];

/**
 * A Diffie-Hellman group for ESessions: a MODP group, or X25519 (RFC 7748) offered as the
 * additional `modp` option value "x25519" by this project's modern suite (docs/modern-suite.md).
 */
export type DhGroupId = ModpGroup | "x25519";

export function isDhGroup(v: string): DhGroupId | undefined {
  if (v === "x25519") return "x25519";
  const n = Number(v);
  return /^[0-9]+$/.test(v) && isModpGroup(n) ? n : undefined;
}

export class CryptoError extends Error {
  override readonly name = "CryptoError";
  constructor(readonly condition: "bad-public-value" | "unsupported") {
    super(condition);
  }
}

export function isModpGroup(n: number): n is ModpGroup {
  return (MODP_GROUPS as readonly number[]).includes(n);
}

/** Output length of each hash (also the HMAC output length). */
export const HASH_BYTES: Record<HashAlg, number> = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 };

export const CIPHER_KEY_BYTES: Record<CipherAlg, number> = {
  "aes128-ctr": 16,
  "aes192-ctr": 24,
  "aes256-ctr": 32,
};

export interface DhGroup {
  /** The prime, big-endian, minimal. */
  readonly p: Uint8Array;
  readonly g: number;
  readonly bits: number;
}

export interface CryptoProvider {
  readonly name: string;
  hash(alg: HashAlg, ...parts: readonly Uint8Array[]): Uint8Array;
  /** HMAC over the concatenated parts; a string part means its UTF-8 bytes. */
  hmac(alg: HashAlg, key: Uint8Array, ...parts: readonly (Uint8Array | string)[]): Uint8Array;
  /** AES in CTR mode; `iv` is the 16-byte initial counter block. Encrypt = decrypt. */
  aesCtr(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array;
  modp(group: ModpGroup): DhGroup;
  /** g^x mod p as an mpi; for X25519 the 32-byte public key of private key x. */
  dhPublic(group: DhGroupId, x: Uint8Array): Uint8Array;
  /**
   * peer^x mod p as an mpi (the caller has range-checked `peer`); for X25519 the 32-byte
   * shared secret. Throws CryptoError("bad-public-value") for an X25519 value of small
   * order (an all-zero result, RFC 7748 section 6.1).
   */
  dhShared(group: DhGroupId, x: Uint8Array, peer: Uint8Array): Uint8Array;
  /** HKDF-Expand (RFC 5869 section 2.3) with `hash`, for the modern suite. */
  hkdfExpand(hash: HashAlg, prk: Uint8Array, info: Uint8Array, length: number): Uint8Array;
}
