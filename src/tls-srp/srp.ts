/**
 * SRP-6a as profiled for TLS by RFC 5054 (November 2007), section 2.4 (verifier
 * creation), 2.5.3/2.5.4 (checks on B and A) and 2.6 (premaster secret):
 *
 *   x = SHA1(s | SHA1(I | ":" | P))          v = g^x % N
 *   k = SHA1(N | PAD(g))                     u = SHA1(PAD(A) | PAD(B))
 *   A = g^a % N                              B = k*v + g^b % N
 *   client: S = (B - (k * g^x)) ^ (a + (u * x)) % N
 *   server: S = (A * v^u) ^ b % N
 *
 * Section 2.1: an implicit integer -> octets conversion has a non-zero first octet;
 * PAD() left-pads to the length of N. The premaster secret is S converted implicitly.
 *
 * Arithmetic: every modular operation (exponentiation, +, -, * mod N) goes through the
 * audited @noble/curves `Field(N)` (abstract/modular). The one plain-BigInt expression is
 * the exponent a + u*x, an integer (not modular) sum that no audited helper offers.
 * BigInt arithmetic is not constant-time: see docs/tls-srp.md "Side channels".
 * Text preparation (RFC 5054 section 2.3, SASLprep) is not applied: I and P are UTF-8
 * as given, which is what GnuTLS's srptool and gnutls-cli do as well.
 */
import { Field, type IField } from "@noble/curves/abstract/modular.js";
import { bytesToNumberBE, numberToBytesBE } from "@noble/curves/utils.js";
import type { SrpGroup } from "./groups.js";

export type Sha1 = (...parts: readonly Uint8Array[]) => Uint8Array;

const fields = new WeakMap<SrpGroup, IField<bigint>>();
function field(group: SrpGroup): IField<bigint> {
  let f = fields.get(group);
  if (!f) {
    f = Field(group.N);
    fields.set(group, f);
  }
  return f;
}

const enc = new TextEncoder();

export function bytesToBigint(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : bytesToNumberBE(b);
}

/** Implicit conversion (RFC 5054 section 2.1): big-endian, first octet non-zero (one 0 octet for 0). */
export function bigintToBytes(n: bigint): Uint8Array {
  if (n < 0n) throw new RangeError("negative");
  const len = Math.max(1, Math.ceil(n.toString(16).length / 2));
  return numberToBytesBE(n, len);
}

/** PAD(): left-padded with zeros to the length of N. */
export function pad(group: SrpGroup, n: bigint): Uint8Array {
  return numberToBytesBE(n, bigintToBytes(group.N).length);
}

/** x = SHA1(s | SHA1(I | ":" | P)) (RFC 5054 section 2.4). */
export function srpX(sha1: Sha1, salt: Uint8Array, username: string, password: string): bigint {
  const inner = sha1(enc.encode(username), enc.encode(":"), enc.encode(password));
  return bytesToBigint(sha1(salt, inner));
}

/** v = g^x % N. */
export function srpVerifier(group: SrpGroup, x: bigint): bigint {
  return field(group).pow(group.g, x);
}

/** k = SHA1(N | PAD(g)). */
export function srpK(sha1: Sha1, group: SrpGroup): bigint {
  return bytesToBigint(sha1(bigintToBytes(group.N), pad(group, group.g)));
}

/** u = SHA1(PAD(A) | PAD(B)). */
export function srpU(sha1: Sha1, group: SrpGroup, A: bigint, B: bigint): bigint {
  return bytesToBigint(sha1(pad(group, A), pad(group, B)));
}

/** A = g^a % N. */
export function srpClientPublic(group: SrpGroup, a: bigint): bigint {
  return field(group).pow(group.g, a);
}

/** B = (k*v + g^b) % N. */
export function srpServerPublic(group: SrpGroup, k: bigint, v: bigint, b: bigint): bigint {
  const F = field(group);
  return F.add(F.mul(F.create(k), F.create(v)), F.pow(group.g, b));
}

/**
 * RFC 5054 section 2.5.3 / 2.5.4: the peer's public value MUST NOT be 0 mod N ("the
 * client MUST abort ... if B % N = 0", "the server MUST abort ... if A % N = 0").
 */
export function isValidPublic(group: SrpGroup, y: bigint): boolean {
  return field(group).create(y) !== 0n;
}

/** Client: S = (B - (k * g^x)) ^ (a + (u * x)) % N. */
export function srpClientPremaster(group: SrpGroup, k: bigint, x: bigint, a: bigint, u: bigint, B: bigint): bigint {
  const F = field(group);
  const base = F.sub(F.create(B), F.mul(F.create(k), F.pow(group.g, x)));
  // The exponent is an integer, not an element of Z_N: plain BigInt (see banner).
  const exponent = a + u * x;
  return F.pow(base, exponent);
}

/** Server: S = (A * v^u) ^ b % N. */
export function srpServerPremaster(group: SrpGroup, v: bigint, u: bigint, A: bigint, b: bigint): bigint {
  const F = field(group);
  return F.pow(F.mul(F.create(A), F.pow(F.create(v), u)), b);
}
