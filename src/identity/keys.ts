/**
 * Long-term signing keys: the algorithms an ESession identity can use, the injected
 * signature provider interface, and its node:crypto implementation.
 *
 * Spec: XEP-0116 v0.16 section 10.3 "Key Signing Algorithms": an implementation MUST
 * support `http://www.w3.org/2000/09/xmldsig#rsa-sha256` ("the same as ...#rsa-sha1
 * except that it uses SHA256", i.e. RSASSA-PKCS1-v1_5 with SHA-256, XML-DSig 1.1 section
 * 6.4.2 / RFC 9231 section 2.3.2) and SHOULD support `...#dsa-sha256` (DSA with SHA-256,
 * XML-DSig 1.1 section 6.4.1 `http://www.w3.org/2009/xmldsig11#dsa-sha256`, FIPS 186-4
 * L=2048, N=256; the SignatureValue is r || s, each |q| octets). Ed25519 (RFC 8032,
 * RFC 9231 section 2.3.10 `http://www.w3.org/2021/04/xmldsig-more#eddsa-ed25519`) is the
 * modern-suite addition of issue 4 item 4. ECDSA over P-256 with SHA-256 (RFC 6931
 * section 2.3.6 / RFC 4051 `http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256`, XML-DSig
 * 1.1 section 6.4.3: "the signature value is ... the concatenation of the octet-strings
 * r and s", each the size of the group order, i.e. IEEE P1363, not DER) is the key type
 * S/MIME certificates default to (src/smime/certs.ts), so that their keys live in the same
 * trust store.
 *
 * Keys travel between layers as DER: private keys as PKCS#8 (RFC 5208), public keys as
 * SubjectPublicKeyInfo (RFC 5280 section 4.1.2.7). No primitive is implemented here:
 * every operation is node:crypto (OpenSSL).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign as nodeSign, verify as nodeVerify, type KeyObject } from "node:crypto";
import { IdentityError } from "./errors.js";

export type SignAlg = "rsa-sha256" | "dsa-sha256" | "ed25519" | "ecdsa-p256-sha256";

/** Every algorithm, in the order we offer them as a verifier (XEP-0116's first, then the additions). */
export const SIGN_ALGS: readonly SignAlg[] = ["rsa-sha256", "dsa-sha256", "ed25519", "ecdsa-p256-sha256"];

export function isSignAlg(s: string): s is SignAlg {
  return (SIGN_ALGS as readonly string[]).includes(s);
}

/**
 * The URI each algorithm is offered under in the ESession `sign_algs` field. The first
 * two are the names XEP-0116 section 4.1 and 10.3 use (its examples); the Ed25519 URI is
 * RFC 9231's; the ECDSA one is RFC 6931 section 2.3.6's (also XML-DSig 1.1 section 6.4.3).
 */
export const SIGN_ALG_URI: Readonly<Record<SignAlg, string>> = {
  "rsa-sha256": "http://www.w3.org/2000/09/xmldsig#rsa-sha256",
  "dsa-sha256": "http://www.w3.org/2000/09/xmldsig#dsa-sha256",
  ed25519: "http://www.w3.org/2021/04/xmldsig-more#eddsa-ed25519",
  "ecdsa-p256-sha256": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
};

/** Also accepted on input: the URIs XML-DSig 1.1 / RFC 9231 define for the same algorithms. */
const URI_ALIASES: Readonly<Record<string, SignAlg>> = {
  "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": "rsa-sha256",
  "http://www.w3.org/2009/xmldsig11#dsa-sha256": "dsa-sha256",
};

/** The algorithm a `sign_algs` value names, or undefined when we do not implement it. */
export function signAlgFromUri(uri: string): SignAlg | undefined {
  for (const a of SIGN_ALGS) if (SIGN_ALG_URI[a] === uri) return a;
  return URI_ALIASES[uri];
}

export interface GenerateOptions {
  /** RSA modulus bits (default 3072; at least 2048). */
  readonly rsaBits?: number;
  /** DSA (L, N): default (2048, 256), the FIPS 186-4 size dsa-sha256 is defined for. */
  readonly dsaBits?: 2048 | 3072;
}

export interface SigningKeyPair {
  /** PKCS#8 DER. A secret: wipe it when done. */
  readonly privateKey: Uint8Array;
  /** SubjectPublicKeyInfo DER. */
  readonly publicKey: Uint8Array;
}

/**
 * The signature operations the negotiation and key publishing need, injected like
 * CryptoProvider (a browser provider can be built on WebCrypto / @noble). Synchronous
 * like CryptoProvider. `verify` never throws on peer input: a malformed key or
 * signature is simply `false`.
 */
export interface SignatureProvider {
  readonly name: string;
  generate(alg: SignAlg, opts?: GenerateOptions): SigningKeyPair;
  sign(alg: SignAlg, privatePkcs8: Uint8Array, data: Uint8Array): Uint8Array;
  verify(alg: SignAlg, publicSpki: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
  /**
   * Optional: decodes a long-term private key once and returns a signer equivalent to
   * `sign(alg, privatePkcs8, data)` for each call. Decoding a PKCS#8 key costs more than an
   * Ed25519 signature, so a key that signs session after session is decoded only here.
   * The decoded key lives as long as the returned function (wiping `privatePkcs8` later
   * does not reach it). Throws like `sign` for a malformed key or another algorithm.
   */
  signerFor?(alg: SignAlg, privatePkcs8: Uint8Array): (data: Uint8Array) => Uint8Array;
  /**
   * Optional: decodes a public key once and returns a check equivalent to
   * `verify(alg, publicSpki, data, signature)`; never throws (a malformed key or one of
   * another algorithm gives a check that is always false).
   */
  verifierFor?(alg: SignAlg, publicSpki: Uint8Array): (data: Uint8Array, signature: Uint8Array) => boolean;
}

/** What we accept from peers and generate ourselves. */
export interface KeyPolicy {
  /** Minimum RSA modulus bits (default 2048: NIST SP 800-57 112-bit security). */
  readonly minRsaBits: number;
  /** Minimum DSA p bits (default 2048) and q bits (default 224). */
  readonly minDsaBits: number;
  readonly minDsaQBits: number;
}

export const DEFAULT_KEY_POLICY: KeyPolicy = { minRsaBits: 2048, minDsaBits: 2048, minDsaQBits: 224 };

export interface PublicKeyInfo {
  readonly alg: SignAlg;
  /** RSA modulus bits, DSA p bits, 256 for Ed25519 and P-256. */
  readonly bits: number;
}

function spkiObject(spki: Uint8Array): KeyObject {
  try {
    return createPublicKey({ key: Buffer.from(spki.buffer, spki.byteOffset, spki.byteLength), format: "der", type: "spki" });
  } catch {
    throw new IdentityError("malformed-key", "not a SubjectPublicKeyInfo");
  }
}

function pkcs8Object(pkcs8: Uint8Array): KeyObject {
  try {
    return createPrivateKey({ key: Buffer.from(pkcs8.buffer, pkcs8.byteOffset, pkcs8.byteLength), format: "der", type: "pkcs8" });
  } catch {
    throw new IdentityError("malformed-key", "not a PKCS#8 private key");
  }
}

function infoOf(k: KeyObject): PublicKeyInfo {
  const d = k.asymmetricKeyDetails ?? {};
  switch (k.asymmetricKeyType) {
    case "rsa":
      return { alg: "rsa-sha256", bits: d.modulusLength ?? 0 };
    case "dsa":
      return { alg: "dsa-sha256", bits: d.modulusLength ?? 0 };
    case "ed25519":
      return { alg: "ed25519", bits: 256 };
    case "ec":
      // Only P-256 (RFC 5480 secp256r1, OpenSSL's "prime256v1"): the only curve the trust
      // store and the ECDSA sign_algs value are defined for here.
      if (d.namedCurve === "prime256v1" || d.namedCurve === "P-256") return { alg: "ecdsa-p256-sha256", bits: 256 };
      throw new IdentityError("unsupported-algorithm", `EC curve ${d.namedCurve ?? "with explicit parameters"}`);
    default:
      throw new IdentityError("unsupported-algorithm", `key type ${k.asymmetricKeyType ?? "unknown"}`);
  }
}

/**
 * The algorithm and size of a public key, checked against `policy`. Throws IdentityError
 * "malformed-key", "unsupported-algorithm" (RSA-PSS, EC curves other than P-256, ...) or
 * "weak-key".
 */
export function inspectPublicKey(spki: Uint8Array, policy: KeyPolicy = DEFAULT_KEY_POLICY): PublicKeyInfo {
  const k = spkiObject(spki);
  const info = infoOf(k);
  const d = k.asymmetricKeyDetails ?? {};
  if (info.alg === "rsa-sha256") {
    if (info.bits < policy.minRsaBits) throw new IdentityError("weak-key", `RSA modulus of ${info.bits} bits`);
    const e = d.publicExponent ?? 0n;
    // RFC 8017 section 3.1: 3 <= e <= n-1, odd. We also refuse e > 2^256 (no sane key has one).
    if (e < 3n || e % 2n === 0n || e > 1n << 256n) throw new IdentityError("weak-key", "bad RSA public exponent");
  } else if (info.alg === "dsa-sha256") {
    if (info.bits < policy.minDsaBits) throw new IdentityError("weak-key", `DSA p of ${info.bits} bits`);
    if ((d.divisorLength ?? 0) < policy.minDsaQBits) throw new IdentityError("weak-key", `DSA q of ${d.divisorLength ?? 0} bits`);
  }
  return info;
}

/** The algorithm of a PKCS#8 private key. */
export function privateKeyAlg(pkcs8: Uint8Array): SignAlg {
  return infoOf(pkcs8Object(pkcs8)).alg;
}

/** The SubjectPublicKeyInfo of a PKCS#8 private key. */
export function publicFromPrivate(pkcs8: Uint8Array): Uint8Array {
  return new Uint8Array(createPublicKey(pkcs8Object(pkcs8)).export({ format: "der", type: "spki" }));
}

function digestOf(alg: SignAlg): string | null {
  return alg === "ed25519" ? null : "sha256";
}

function checkAlg(alg: SignAlg, k: KeyObject): void {
  if (infoOf(k).alg !== alg) throw new IdentityError("unsupported-algorithm", `the key is not a ${alg} key`);
}

/**
 * dsa-sha256 and ecdsa-p256-sha256: XML-DSig 1.1 sections 6.4.1 / 6.4.3 SignatureValue =
 * r || s (IEEE P1363, each the size of the group order: 64 octets for P-256), not DER.
 * rsa-sha256: RSASSA-PKCS1-v1_5 is node's default RSA padding.
 */
function signWith(alg: SignAlg, key: KeyObject, data: Uint8Array): Uint8Array {
  return new Uint8Array(nodeSign(digestOf(alg), data, { key, dsaEncoding: "ieee-p1363" }));
}

function verifyWith(alg: SignAlg, key: KeyObject, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return nodeVerify(digestOf(alg), data, { key, dsaEncoding: "ieee-p1363" }, signature);
  } catch {
    return false;
  }
}

/** The public key of `alg` in `spki`, or undefined when it is malformed or of another algorithm. */
function publicKeyFor(alg: SignAlg, spki: Uint8Array): KeyObject | undefined {
  try {
    const key = spkiObject(spki);
    return infoOf(key).alg === alg ? key : undefined;
  } catch {
    return undefined;
  }
}

/** SignatureProvider backed by node:crypto. */
export const nodeSigner: SignatureProvider & Required<Pick<SignatureProvider, "signerFor" | "verifierFor">> = {
  name: "node:crypto",
  generate(alg, opts = {}) {
    let pair: { privateKey: KeyObject; publicKey: KeyObject };
    switch (alg) {
      case "rsa-sha256": {
        const bits = opts.rsaBits ?? 3072;
        if (!Number.isInteger(bits) || bits < 2048 || bits > 16384) throw new IdentityError("weak-key", `RSA modulus of ${bits} bits`);
        pair = generateKeyPairSync("rsa", { modulusLength: bits, publicExponent: 65537 });
        break;
      }
      case "dsa-sha256":
        pair = generateKeyPairSync("dsa", { modulusLength: opts.dsaBits ?? 2048, divisorLength: 256 });
        break;
      case "ed25519":
        pair = generateKeyPairSync("ed25519");
        break;
      case "ecdsa-p256-sha256":
        pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
        break;
    }
    return {
      privateKey: new Uint8Array(pair.privateKey.export({ format: "der", type: "pkcs8" })),
      publicKey: new Uint8Array(pair.publicKey.export({ format: "der", type: "spki" })),
    };
  },
  sign(alg, privatePkcs8, data) {
    const key = pkcs8Object(privatePkcs8);
    checkAlg(alg, key);
    return signWith(alg, key, data);
  },
  verify(alg, publicSpki, data, signature) {
    const key = publicKeyFor(alg, publicSpki);
    return key !== undefined && verifyWith(alg, key, data, signature);
  },
  signerFor(alg, privatePkcs8) {
    const key = pkcs8Object(privatePkcs8);
    checkAlg(alg, key);
    return (data) => signWith(alg, key, data);
  },
  verifierFor(alg, publicSpki) {
    const key = publicKeyFor(alg, publicSpki);
    return key === undefined ? () => false : (data, signature) => verifyWith(alg, key, data, signature);
  },
};
