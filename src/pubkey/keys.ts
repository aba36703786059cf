/**
 * XEP-0189 logic over the typed payloads: building a `<pubkey/>` from one of our keys,
 * turning a received one into a SubjectPublicKeyInfo, the fingerprints (`<print/>`,
 * `<keyprint/>`, ...), and signing / verifying revocations and attestations.
 *
 * Spec: XEP-0189 v0.14
 * - section 3: the `<rsakey/>` print is "Base64(SHA-256(UTF8-encode(begin + end + jid +
 *   str(modulus) + str(exponent))))", algorithm named by 'algo' (default "sha-256");
 *   the public exponent is RECOMMENDED to be 65537.
 * - section 4: "The data that is signed MUST be the revoked public key (... <key/>), the
 *   fingerprint of the revoked public key (... <keyprint/>), the fingerprint of the key
 *   used to sign the revocation (... <revocationprint/>), and the time of the revocation
 *   (... <revocationtime/>), concatenated together with no spaces or other additional
 *   characters" ("line breaks are not significant": whitespace is removed).
 * - section 5: an attestation signs key + keyprint + signerjid + signerprint + signtime
 *   the same way (the signed copy's key comes from the owner's `<pubkey/>`).
 * - section 12: "each client SHOULD maintain its own secure library of the public keys it
 *   associates with other users" (src/trust/).
 *
 * Our choices (docs/pubkey.md), since v0.14 leaves them open: the prints of the `<key/>`
 * and `<KeyValue/>` forms, and every `<keyprint/>`, `<revocationprint/>` and
 * `<signerprint/>` we write, are the XEP-0116 fingerprint of the key (Base64 of the hash
 * of its canonical Normalized `<KeyValue/>`), the same value users compare and the trust
 * store is keyed by; on input a print is also accepted in hex. Signatures use the
 * signer's algorithm (RSASSA-PKCS1-v1_5 SHA-256, DSA SHA-256 r||s, or Ed25519) and are
 * Base64. The spec's examples carry OpenPGP signatures and prints we cannot reproduce
 * from their inputs; they are parsed, not verified (test/vectors/pubkey/).
 */
import { fromBase64, toBase64, toHex, utf8 } from "../core/bytes.js";
import type { CryptoProvider, HashAlg } from "../crypto/provider.js";
import { IdentityError } from "../identity/errors.js";
import type { IdentityKey } from "../identity/keyfile.js";
import { inspectPublicKey, type SignatureProvider } from "../identity/keys.js";
import { fingerprint, keyValueElement, keyValueFromSpki, spkiFromKeyValue } from "../identity/keyvalue.js";
import type { Attestation, KeyMaterial, Print, PubKey, Revocation } from "./codec.js";
import { PubkeyError } from "./errors.js";

/** IANA hash names used in 'algo' attributes. */
const ALGO: Readonly<Record<string, HashAlg>> = { "sha-1": "sha1", "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512" };
const ALGO_NAME: Readonly<Record<HashAlg, string>> = { sha1: "sha-1", sha256: "sha-256", sha384: "sha-384", sha512: "sha-512" };

export function hashOfAlgo(algo: string | undefined): HashAlg {
  const h = ALGO[(algo ?? "sha-256").toLowerCase()];
  if (h === undefined) throw new PubkeyError("feature-not-implemented", `print algo ${algo ?? ""}`);
  return h;
}

function wrapIdentity<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof IdentityError) throw new PubkeyError(e.condition === "unsupported-algorithm" ? "feature-not-implemented" : "bad-request", `key: ${e.condition}`);
    throw e;
  }
}

function decimalToBytes(d: string): Uint8Array {
  // A radix conversion of a public value (no cryptographic arithmetic).
  let hex = BigInt(d).toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  return new Uint8Array(Buffer.from(hex, "hex"));
}

function bytesToDecimal(b: Uint8Array): string {
  return BigInt(`0x${toHex(b) || "00"}`).toString(10);
}

/** The SubjectPublicKeyInfo (canonical, policy-checked) of a received `<pubkey/>`'s key. */
export function spkiOfMaterial(m: KeyMaterial): Uint8Array {
  return wrapIdentity(() => {
    switch (m.kind) {
      case "rsakey":
        return spkiFromKeyValue({ type: "rsa", modulus: toBase64(decimalToBytes(m.modulus)), exponent: toBase64(decimalToBytes(m.publicExponent)) });
      case "key": {
        const der = fromBase64(m.key);
        if (der === undefined || der.length === 0) throw new PubkeyError("bad-request", "<key/> is not Base64");
        return spkiFromKeyValue(keyValueFromSpki(der));
      }
      case "keyvalue":
        return spkiFromKeyValue(m.keyValue);
    }
  });
}

/** XEP-0116 fingerprint of a key with the given hash (Base64). */
export function keyPrint(crypto: CryptoProvider, spki: Uint8Array, hash: HashAlg = "sha256"): string {
  return wrapIdentity(() => fingerprint(crypto, hash, keyValueElement(spki)));
}

/** The value a `<pubkey/>`'s `<print/>` should have, with the print's (or the given) algorithm. */
export function expectedPubkeyPrint(crypto: CryptoProvider, pk: PubKey, algo?: string): string {
  const hash = hashOfAlgo(algo ?? pk.print?.algo);
  const m = pk.material;
  if (m.kind === "rsakey") {
    // XEP-0116 section 3: begin + end + jid + str(modulus) + str(exponent), UTF-8.
    return toBase64(crypto.hash(hash, utf8(`${pk.begin ?? ""}${pk.end ?? ""}${pk.jid ?? ""}${m.modulus}${m.publicExponent}`)));
  }
  return keyPrint(crypto, spkiOfMaterial(m), hash);
}

/** Whether a print value (Base64 or hex) equals the expected Base64 digest. */
export function printMatches(p: Print | string, expectedBase64: string): boolean {
  const v = typeof p === "string" ? p : p.value;
  if (v === expectedBase64) return true;
  const want = fromBase64(expectedBase64);
  return want !== undefined && /^[0-9a-fA-F]+$/.test(v) && v.toLowerCase() === toHex(want);
}

export interface VerifiedPubKey {
  readonly spki: Uint8Array;
  /** The XEP-0116 fingerprint (SHA-256) the trust store uses. */
  readonly fingerprint: string;
  /** Whether a `<print/>` was present and matched. */
  readonly printChecked: boolean;
}

/**
 * Checks a received `<pubkey/>`: the key parses and passes our policy, the print (when
 * present) matches, and, given `now`, the validity window holds. Throws PubkeyError
 * "bad-request", "feature-not-implemented" or "bad-signature" (print mismatch).
 */
export function verifyPubKey(crypto: CryptoProvider, pk: PubKey, opts: { now?: number; jid?: string } = {}): VerifiedPubKey {
  const spki = spkiOfMaterial(pk.material);
  if (pk.print !== undefined && !printMatches(pk.print, expectedPubkeyPrint(crypto, pk)))
    throw new PubkeyError("bad-signature", "the <print/> does not match the key");
  if (opts.now !== undefined) {
    const begin = pk.begin === undefined ? undefined : Date.parse(pk.begin);
    const end = pk.end === undefined ? undefined : Date.parse(pk.end);
    if ((begin !== undefined && !(begin <= opts.now)) || (end !== undefined && !(opts.now <= end)))
      throw new PubkeyError("bad-request", "the key is outside its validity period");
  }
  if (opts.jid !== undefined && pk.jid !== undefined && pk.jid !== opts.jid) throw new PubkeyError("bad-request", "the key is for another JID");
  return { spki, fingerprint: keyPrint(crypto, spki), printChecked: pk.print !== undefined };
}

/** XEP-0082 DateTime without milliseconds. */
export function xmppDateTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

export interface BuildPubKeyOptions {
  readonly jid?: string;
  readonly begin?: number;
  readonly end?: number;
  readonly uri?: string;
  /** "rsakey" (RSA only; section 3), "key" (Base64 SPKI; sections 8-9) or "keyvalue" (ours). Default: rsakey for RSA, keyvalue otherwise. */
  readonly form?: KeyMaterial["kind"];
}

/** Builds the `<pubkey/>` of one of our public keys, with its print (SHA-256). */
export function buildPubKey(crypto: CryptoProvider, spki: Uint8Array, opts: BuildPubKeyOptions = {}): PubKey {
  const alg = wrapIdentity(() => inspectPublicKey(spki).alg);
  const form = opts.form ?? (alg === "rsa-sha256" ? "rsakey" : "keyvalue");
  const kv = wrapIdentity(() => keyValueFromSpki(spki));
  let material: KeyMaterial;
  if (form === "rsakey") {
    if (kv.type !== "rsa") throw new PubkeyError("feature-not-implemented", "<rsakey/> holds RSA keys only");
    material = { kind: "rsakey", modulus: bytesToDecimal(fromBase64(kv.modulus) ?? new Uint8Array()), publicExponent: bytesToDecimal(fromBase64(kv.exponent) ?? new Uint8Array()) };
  } else material = form === "key" ? { kind: "key", key: toBase64(spki) } : { kind: "keyvalue", keyValue: kv };
  const base: PubKey = {
    type: "pubkey",
    ...(opts.begin === undefined ? {} : { begin: xmppDateTime(opts.begin) }),
    ...(opts.end === undefined ? {} : { end: xmppDateTime(opts.end) }),
    ...(opts.jid === undefined ? {} : { jid: opts.jid }),
    material,
    ...(opts.uri === undefined ? {} : { uri: opts.uri }),
  };
  return { ...base, print: { algo: "sha-256", value: expectedPubkeyPrint(crypto, base, "sha-256") } };
}

const strip = (s: string) => s.replace(/\s+/g, "");

/** XEP-0189 section 4: the bytes a revocation signs. */
export function revocationSignedData(r: Pick<Revocation, "key" | "keyprint" | "revocationprint" | "revocationtime">): Uint8Array {
  return utf8(strip(r.key) + strip(r.keyprint.value) + strip(r.revocationprint.value) + strip(r.revocationtime));
}

/** XEP-0189 section 5: the bytes an attestation signs (`key` is the attested key's Base64 SPKI). */
export function attestationSignedData(key: string, a: Pick<Attestation, "keyprint" | "signerjid" | "signerprint" | "signtime">): Uint8Array {
  return utf8(strip(key) + strip(a.keyprint.value) + strip(a.signerjid) + strip(a.signerprint.value) + strip(a.signtime));
}

function print(crypto: CryptoProvider, spki: Uint8Array): Print {
  return { algo: "sha-256", value: keyPrint(crypto, spki) };
}

/** Signs a revocation of `revoked` with `signer` (the revoked key itself, or another key of ours). */
export function createRevocation(args: { crypto: CryptoProvider; signer: SignatureProvider; revoked: Uint8Array; signingKey: IdentityKey; time: number }): Revocation {
  const unsigned = {
    key: toBase64(args.revoked),
    keyprint: print(args.crypto, args.revoked),
    revocationprint: print(args.crypto, args.signingKey.publicKey),
    revocationtime: xmppDateTime(args.time),
  };
  const sig = args.signer.sign(args.signingKey.alg, args.signingKey.privateKey, revocationSignedData(unsigned));
  return { type: "revocation", element: "revocation", ...unsigned, signature: toBase64(sig) };
}

export interface VerifiedRevocation {
  /** The revoked key and its XEP-0116 fingerprint. */
  readonly revoked: Uint8Array;
  readonly fingerprint: string;
  readonly revokedAt: number;
}

/**
 * Verifies a revocation: the signing key's print must be `revocationprint`, the keyprint
 * must match the revoked key, and the signature must verify. `signingKey` is the SPKI of
 * the key that signed (by default the revoked key itself: a self-revocation).
 */
export function verifyRevocation(crypto: CryptoProvider, signer: SignatureProvider, r: Revocation, signingKey?: Uint8Array): VerifiedRevocation {
  const revoked = spkiOfMaterial({ kind: "key", key: r.key });
  const by = signingKey ?? revoked;
  const alg = wrapIdentity(() => inspectPublicKey(by).alg);
  if (!printMatches(r.keyprint, keyPrint(crypto, revoked, hashOfAlgo(r.keyprint.algo)))) throw new PubkeyError("bad-signature", "keyprint does not match the revoked key");
  if (!printMatches(r.revocationprint, keyPrint(crypto, by, hashOfAlgo(r.revocationprint.algo))))
    throw new PubkeyError("bad-signature", "revocationprint does not match the signing key");
  const sig = fromBase64(r.signature);
  if (sig === undefined || !signer.verify(alg, by, revocationSignedData(r), sig)) throw new PubkeyError("bad-signature", "the revocation signature does not verify");
  const t = Date.parse(r.revocationtime);
  if (Number.isNaN(t)) throw new PubkeyError("bad-request", "bad revocationtime");
  return { revoked, fingerprint: keyPrint(crypto, revoked), revokedAt: t };
}

/** Signs an attestation of `attested` (someone's key) by `signingKey`, as `signerJid`. */
export function createAttestation(args: {
  crypto: CryptoProvider;
  signer: SignatureProvider;
  attested: Uint8Array;
  signingKey: IdentityKey;
  signerJid: string;
  time: number;
}): Attestation {
  const unsigned = {
    keyprint: print(args.crypto, args.attested),
    signerjid: args.signerJid,
    signerprint: print(args.crypto, args.signingKey.publicKey),
    signtime: xmppDateTime(args.time),
  };
  const sig = args.signer.sign(args.signingKey.alg, args.signingKey.privateKey, attestationSignedData(toBase64(args.attested), unsigned));
  return { type: "attestation", ...unsigned, signature: toBase64(sig) };
}

/** Verifies an attestation of `attested` by the key `signingKey`. Throws PubkeyError "bad-signature". */
export function verifyAttestation(crypto: CryptoProvider, signer: SignatureProvider, a: Attestation, attested: Uint8Array, signingKey: Uint8Array): void {
  const alg = wrapIdentity(() => inspectPublicKey(signingKey).alg);
  if (!printMatches(a.keyprint, keyPrint(crypto, attested, hashOfAlgo(a.keyprint.algo)))) throw new PubkeyError("bad-signature", "keyprint does not match the attested key");
  if (!printMatches(a.signerprint, keyPrint(crypto, signingKey, hashOfAlgo(a.signerprint.algo))))
    throw new PubkeyError("bad-signature", "signerprint does not match the signing key");
  const sig = fromBase64(a.signature);
  if (sig === undefined || !signer.verify(alg, signingKey, attestationSignedData(toBase64(attested), a), sig))
    throw new PubkeyError("bad-signature", "the attestation signature does not verify");
}

export { ALGO_NAME };
