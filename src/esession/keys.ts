/**
 * The ESession key schedule: every derivation of XEP-0217 / XEP-0116 and XEP-0200 in one
 * place, as pure functions over an injected CryptoProvider.
 *
 * Spec: XEP-0217 v0.1 sections "Generating Session Keys", "Hiding Alice's Identity",
 * "Verifying Alice's Identity", "Generating Bob's Final Session Keys", "Sending Bob's
 * Identity", "The sas28x5 SAS Algorithm"; XEP-0116 v0.16 sections 5 and 13; XEP-0200 v0.2
 * sections 5-7 (CTR counters, a_mac, re-key keys). Ambiguities resolved as in
 * ../shared/docs/esession-interpretation.md (rows 1-6, 10, 14, 15).
 */
import { mpi, utf8 } from "../core/bytes.js";
import { CIPHER_KEY_BYTES, HASH_BYTES, type CipherAlg, type CryptoProvider, type DhGroupId, type HashAlg } from "../crypto/provider.js";
import type { Profile } from "./profile.js";

export const BLOCK_BYTES = 16;

/** Keys for one direction. */
export interface DirectionKeys {
  /** Cipher key (KC). */
  readonly kc: Uint8Array;
  /** Integrity key (KM). */
  readonly km: Uint8Array;
  /** SIGMA key (KS); absent for re-keyed keys (XEP-0200 derives no SIGMA key). */
  readonly ks?: Uint8Array;
}

export interface SessionKeys {
  readonly initiator: DirectionKeys;
  readonly responder: DirectionKeys;
}

export interface Suite {
  readonly hash: HashAlg;
  readonly cipher: CipherAlg;
  /** A MODP group (XEP-0116), or "x25519": the modern suite with the HKDF key schedule. */
  readonly group: DhGroupId;
}

/** The modern suite's HKDF-Extract salt (docs/modern-suite.md). */
export const MODERN_SALT = utf8("urn:xmpp-e2e:esession:x25519:1");

/** The UTF-8 bytes of each key-schedule label, encoded once (the labels are constants). */
const labels = new Map<string, Uint8Array>();

function label(s: string): Uint8Array {
  let b = labels.get(s);
  if (!b) labels.set(s, (b = utf8(s)));
  return b;
}

/** The modern suite (x25519) expands keys with HKDF; the 2007 suites with HMAC(K, label). */
function expand(c: CryptoProvider, s: Suite, k: Uint8Array, text: string): Uint8Array {
  if (s.group === "x25519") return c.hkdfExpand(s.hash, k, label(text), HASH_BYTES[s.hash]);
  return c.hmac(s.hash, k, label(text));
}

/** A DH value as it enters hashes and MACs: an mpi for MODP, the raw 32 bytes for X25519. */
export function dhBytes(group: DhGroupId, v: Uint8Array): Uint8Array {
  return group === "x25519" ? v : mpi(v);
}

/** Row 4: the cipher key is the trailing bytes of the HMAC (spec) or the whole HMAC (gajim). */
export function cipherKey(raw: Uint8Array, cipher: CipherAlg, profile: Profile): Uint8Array {
  if (profile.cipherKey === "full") return raw;
  const n = CIPHER_KEY_BYTES[cipher];
  return raw.subarray(raw.length - n);
}

export type Side = "Initiator" | "Responder";

/**
 * One party's keys from K: KC, KM and, when `sigma` is set, KS (XEP-0217 "Generating
 * Session Keys"). Each key costs one HMAC / HKDF-Expand, so callers derive only the keys
 * they use; a key derived here equals the same key of {@link sessionKeys}.
 */
export function directionKeys(c: CryptoProvider, s: Suite, p: Profile, k: Uint8Array, side: Side, sigma = true): DirectionKeys {
  const kc = cipherKey(expand(c, s, k, `${side} Cipher Key`), s.cipher, p);
  const km = expand(c, s, k, `${side} MAC Key`);
  return sigma ? { kc, km, ks: expand(c, s, k, `${side} SIGMA Key`) } : { kc, km };
}

/** XEP-0217 "Generating Session Keys": six keys from K. */
export function sessionKeys(c: CryptoProvider, s: Suite, p: Profile, k: Uint8Array): SessionKeys {
  return { initiator: directionKeys(c, s, p, k, "Initiator"), responder: directionKeys(c, s, p, k, "Responder") };
}

/**
 * The keys of the final K of a 4-message negotiation that are ever used: both parties'
 * KC and KM (the stanza channel) and the responder's KS (Bob's identity proof, XEP-0217
 * "Sending Bob's Identity"). The initiator's final KS is never used: Alice proved her
 * identity with the keys of the first K.
 */
export function finalSessionKeys(c: CryptoProvider, s: Suite, p: Profile, k: Uint8Array): SessionKeys {
  return { initiator: directionKeys(c, s, p, k, "Initiator", false), responder: directionKeys(c, s, p, k, "Responder") };
}

/**
 * The initiator's keys of the first K, for Bob's check of Alice's identity in every
 * profile a 4-message initiator may speak: KM and KS do not depend on the profile, the
 * cipher key's raw HMAC is sliced per profile (interpretation row 4). Derived once.
 */
export class InitiatorKeys {
  private readonly rawKc: Uint8Array;
  readonly km: Uint8Array;
  readonly ks: Uint8Array;
  constructor(c: CryptoProvider, s: Suite, k: Uint8Array, private readonly cipher: CipherAlg) {
    this.rawKc = expand(c, s, k, "Initiator Cipher Key");
    this.km = expand(c, s, k, "Initiator MAC Key");
    this.ks = expand(c, s, k, "Initiator SIGMA Key");
  }
  forProfile(p: Profile): DirectionKeys {
    return { kc: cipherKey(this.rawKc, this.cipher, p), km: this.km, ks: this.ks };
  }
  wipe(): void {
    this.rawKc.fill(0);
    this.km.fill(0);
    this.ks.fill(0);
  }
}

/**
 * K = H(mpi(g^xy mod p)) (row 3); for X25519 K = HKDF-Extract(MODERN_SALT, shared secret)
 * (RFC 5869 2.2: HMAC(salt, IKM)).
 */
export function dhSecret(c: CryptoProvider, s: Suite, x: Uint8Array, peer: Uint8Array): Uint8Array {
  const shared = c.dhShared(s.group, x, peer);
  if (s.group === "x25519") return c.hmac(s.hash, MODERN_SALT, shared);
  return c.hash(s.hash, mpi(shared));
}

/** K = H(K | SRS | OSS) ("Generating Bob's Final Session Keys"). */
export function finalSecret(c: CryptoProvider, s: Suite, k: Uint8Array, srs?: Uint8Array, oss?: Uint8Array): Uint8Array {
  return c.hash(s.hash, k, srs ?? new Uint8Array(0), oss ?? new Uint8Array(0));
}

/** He = SHA256(e), always SHA-256 (row 2); e as an mpi, or raw for X25519. */
export function dhCommitment(c: CryptoProvider, e: Uint8Array, group: DhGroupId = 14): Uint8Array {
  return c.hash("sha256", dhBytes(group, e));
}

/**
 * The check every received DH value must pass: 1 < v < p - 1 for MODP; for X25519 exactly
 * 32 bytes (small-order values are refused when the shared secret is computed).
 */
export function dhValueInRange(c: CryptoProvider, group: DhGroupId, v: Uint8Array): boolean {
  if (group === "x25519") return v.length === 32;
  // Big-endian comparison of the minimal encodings (no bigint conversion of a 2048+-bit value).
  const n = mpi(v);
  if (n.length === 1 && (n[0] ?? 0) <= 1) return false;
  return compareMpi(n, primeMinusOne(c, group)) < 0;
}

/** Compares two minimal big-endian unsigned integers. */
function compareMpi(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

const primesMinusOne = new WeakMap<CryptoProvider, Map<number, Uint8Array>>();

/** p - 1 as a minimal big-endian integer (p is odd: only the last octet changes). */
function primeMinusOne(c: CryptoProvider, group: Exclude<DhGroupId, "x25519">): Uint8Array {
  let m = primesMinusOne.get(c);
  if (!m) primesMinusOne.set(c, (m = new Map()));
  let v = m.get(group);
  if (v === undefined) {
    v = mpi(c.modp(group).p).slice();
    v[v.length - 1] = (v[v.length - 1] ?? 1) - 1;
    m.set(group, v);
  }
  return v;
}

/** Default private exponent length: 512 bits, at least twice the strength of every group. */
export const DEFAULT_EXPONENT_BYTES = 64;

/**
 * A private exponent x with 2^(2n) < x < p - 1 (n = 128, the AES block size in bits), drawn
 * by rejection sampling at `bytes` octets (capped at the prime's length; 0 = the prime's
 * full length, as Gajim did). 512-bit exponents keep every MODP group at full strength
 * (RFC 3526 section 8) at a fraction of the cost of full-length ones.
 */
export function dhPrivate(
  c: CryptoProvider,
  random: { bytes(n: number): Uint8Array },
  group: DhGroupId,
  bytes: number = DEFAULT_EXPONENT_BYTES,
): Uint8Array {
  if (group === "x25519") return random.bytes(32); // clamped by X25519 itself (RFC 7748 5)
  const pb = c.modp(group).p;
  const pm1 = primeMinusOne(c, group);
  const len = bytes <= 0 ? pb.length : Math.min(bytes, pb.length);
  for (;;) {
    const x = random.bytes(len);
    const v = mpi(x);
    if (above2to256(v) && compareMpi(v, pm1) < 0) return x;
  }
}

/** v > 2^256 for a minimal big-endian v (2^256 is 0x01 followed by 32 zero octets). */
function above2to256(v: Uint8Array): boolean {
  if (v.length !== 33) return v.length > 33;
  if ((v[0] ?? 0) > 1) return true;
  for (let i = 1; i < 33; i++) if (v[i] !== 0) return true;
  return false;
}

/**
 * A 128-bit CTR block counter (XEP-0200: incremented mod 2^n for each block), kept as 16
 * big-endian bytes and advanced with a carry loop: counter arithmetic, not crypto bignums.
 */
export class BlockCounter {
  private readonly v: Uint8Array;
  private constructor(bytes: Uint8Array) {
    this.v = bytes;
  }
  /** From up to 16 big-endian bytes (longer input keeps its low 128 bits). */
  static fromBytes(b: Uint8Array): BlockCounter {
    const v = new Uint8Array(BLOCK_BYTES);
    const src = b.length > BLOCK_BYTES ? b.subarray(b.length - BLOCK_BYTES) : b;
    v.set(src, BLOCK_BYTES - src.length);
    return new BlockCounter(v);
  }
  /**
   * A counter kept in `view` (16 bytes of a caller's buffer, so that a session's counters
   * and keys share one ArrayBuffer), starting at the value of `from`.
   */
  static over(view: Uint8Array, from: BlockCounter): BlockCounter {
    if (view.length !== BLOCK_BYTES) throw new RangeError("a block counter takes 16 bytes");
    view.set(from.v);
    return new BlockCounter(view);
  }
  /** Overwrites the counter with zeros (a destroyed session keeps no counter state). */
  wipe(): void {
    this.v.fill(0);
  }
  /** C_B = C_A xor 2^(n-1) (XEP-0217 "ESession Response"). */
  flipTopBit(): BlockCounter {
    const v = this.v.slice();
    v[0] = (v[0] ?? 0) ^ 0x80;
    return new BlockCounter(v);
  }
  /** The counter as an mpi (row 1), as MACed in XEP-0200 and in M_A / M_B. */
  mpi(): Uint8Array {
    return mpi(this.v).slice();
  }
  /** The counter as 16 bytes (the XEP-0217 'counter' field; Gajim's padded MAC input). */
  bytes(): Uint8Array {
    return this.v.slice();
  }
  /**
   * The CTR initial block: the counter plus `offset` (0, or 1 in the gajim profile, row 5).
   * With no offset this is a view of the counter itself: use it before advancing (the
   * cipher copies its IV).
   */
  block(offset: number): Uint8Array {
    if (offset === 0) return this.v;
    const c = BlockCounter.fromBytes(this.v);
    c.advance(offset);
    return c.v;
  }
  advance(blocks: number): void {
    let carry = blocks;
    for (let i = BLOCK_BYTES - 1; i >= 0 && carry > 0; i--) {
      const sum = (this.v[i] ?? 0) + (carry % 256);
      this.v[i] = sum & 0xff;
      carry = Math.floor(carry / 256) + (sum >> 8);
    }
  }
  clone(): BlockCounter {
    return new BlockCounter(this.v.slice());
  }
}

export function blocksFor(len: number): number {
  return len === 0 ? 1 : Math.ceil(len / BLOCK_BYTES);
}

/**
 * CIPHER(KC, C, m) / DECIPHER: AES-CTR starting at block C (+1 in the gajim profile, row 5);
 * advances C by one per block or partial block (and by one for empty input, XEP-0200 6).
 */
export function ctrCrypt(c: CryptoProvider, p: Profile, key: Uint8Array, counter: BlockCounter, data: Uint8Array): Uint8Array {
  const iv = counter.block(p.ctrOffset);
  const out = data.length === 0 ? new Uint8Array(0) : c.aesCtr(key, iv, data);
  counter.advance(blocksFor(data.length));
  return out;
}

/** M = HMAC(H, KM, C | ID) (the counter before encryption, as an mpi). */
export function identityMac(c: CryptoProvider, s: Suite, km: Uint8Array, counterBefore: Uint8Array, id: Uint8Array): Uint8Array {
  return c.hmac(s.hash, km, counterBefore, id);
}

/** HMAC(H, N_A, RS): the 'rshashes' entry for a retained secret. */
export function retainedSecretHash(c: CryptoProvider, s: Suite, nonceA: Uint8Array, secret: Uint8Array): Uint8Array {
  return c.hmac(s.hash, nonceA, secret);
}

/** HMAC(H, SRS, "Shared Retained Secret"): Bob's 'srshash'. */
export function sharedRetainedSecretHash(c: CryptoProvider, s: Suite, srs: Uint8Array): Uint8Array {
  return c.hmac(s.hash, srs, label("Shared Retained Secret"));
}

/** HMAC(H, K, "New Retained Secret"). */
export function newRetainedSecret(c: CryptoProvider, s: Suite, k: Uint8Array): Uint8Array {
  return c.hmac(s.hash, k, label("New Retained Secret"));
}

const SAS_DIGITS = "acdefghikmopqruvwxy123456789";

/**
 * sas28x5: H(M_A | formB | "Short Authentication String"), low 24 bits, base 28, most
 * significant digit first; padded with 'a' to 5 characters in the spec profile (row 10).
 */
export function sas28x5(c: CryptoProvider, p: Profile, macA: Uint8Array, formB: string): string {
  const h = c.hash("sha256", macA, utf8(formB), label("Short Authentication String"));
  let n = ((h[h.length - 3] ?? 0) << 16) | ((h[h.length - 2] ?? 0) << 8) | (h[h.length - 1] ?? 0);
  let out = "";
  while (n > 0) {
    out = SAS_DIGITS[n % 28] + out;
    n = Math.floor(n / 28);
  }
  return p.sasPadded ? out.padStart(5, "a") : out;
}

/**
 * XEP-0200 section 7 re-key keys from K = g^xy mod p (NOT hashed, row 14); "Initiator" is
 * whoever initiated this re-key.
 */
export function rekeyKeys(
  c: CryptoProvider,
  s: Suite,
  p: Profile,
  shared: Uint8Array,
): { readonly initiator: DirectionKeys; readonly acceptor: DirectionKeys } {
  const k = s.group === "x25519" ? c.hmac(s.hash, MODERN_SALT, shared) : mpi(shared);
  return {
    initiator: {
      kc: cipherKey(expand(c, s, k, "Rekey Initiator Crypt"), s.cipher, p),
      km: expand(c, s, k, "Rekey Initiator MAC"),
    },
    acceptor: {
      kc: cipherKey(expand(c, s, k, "Rekey Acceptor Crypt"), s.cipher, p),
      km: expand(c, s, k, "Rekey Acceptor MAC"),
    },
  };
}

/** The counter as appended to m_content: an mpi, or padded to 16 bytes (row 15). */
export function macCounter(counter: BlockCounter, encoding: "mpi" | "pad16"): Uint8Array {
  return encoding === "mpi" ? counter.mpi() : counter.bytes();
}

/**
 * a_mac = HMAC(H, KM, m_content | C) where C is the counter before encryption, already
 * encoded by {@link macCounter} (take it before the counter advances).
 */
export function stanzaMac(c: CryptoProvider, s: Suite, km: Uint8Array, mContent: string, counterBefore: Uint8Array): Uint8Array {
  return c.hmac(s.hash, km, mContent, counterBefore);
}
