/**
 * The web client's verifier of peers' identity keys: a synchronous KeyVerifier
 * (src/esession/identity.ts) for the ESession negotiation, on @noble/curves, for the key
 * types a browser can check without node:crypto: Ed25519 (RFC 8032, RFC 9231
 * `eddsa-ed25519`) and ECDSA P-256 with SHA-256 (RFC 6931 `ecdsa-sha256`, XML-DSig 1.1
 * section 6.4.3: SignatureValue = r || s, 64 octets). RSA and DSA (XEP-0116 section 10.3)
 * are not verified here: WebCrypto verifies asynchronously only (the core's verifier is
 * synchronous) and there is no audited synchronous RSA/DSA in the page, so
 * `signAlgs` names only the two above; the negotiation then never agrees on an algorithm
 * this verifier cannot check, and a peer whose key is RSA or DSA is told "sign_algs"
 * (the user is told to compare the SAS, see ./app.ts).
 *
 * The peer's key is read from the XML-DSig `<KeyValue/>` by the library's codec
 * (src/identity/keyvalue.ts parseKeyValue, pure XML + Base64) and used raw: the 32-octet
 * Ed25519 key, the 65-octet uncompressed P-256 point. No SubjectPublicKeyInfo and no
 * node:crypto on this path.
 *
 * Verification is strict, as OpenSSL's (the terminal's verifier): Ed25519 per RFC 8032
 * (no ZIP-215 relaxations), ECDSA with high-S signatures accepted (OpenSSL does not
 * normalize s when signing, XML-DSig does not require low-S).
 *
 * Spec: XEP-0116 v0.16 sections 4.4.2 / 4.5.1 (verifying the peer's signature over the
 * SIGMA mac), 4.1 ('hash': a key we already hold, looked up by fingerprint), 10.3;
 * RFC 8032 section 5.1.7; FIPS 186-5 ECDSA verification; XML-DSig 1.1 section 4.5.2.3.
 */
import { ed25519 } from "@noble/curves/ed25519.js";
import { p256 } from "@noble/curves/nist.js";
import { equalBytes, fromBase64 } from "../core/bytes.js";
import type { CryptoProvider, HashAlg } from "../crypto/provider.js";
import { keyFingerprint, type KeyVerifier } from "../esession/identity.js";
import { SIGN_ALG_URI, signAlgFromUri, type SignAlg } from "../identity/keys.js";
import { buildKeyValue, fingerprint, parseKeyValue } from "../identity/keyvalue.js";
import type { Element } from "../xml/index.js";

/** What the browser verifies, in the order it offers them in `sign_algs`. */
export const BROWSER_SIGN_ALGS: readonly SignAlg[] = ["ed25519", "ecdsa-p256-sha256"];

/** A peer's public key as the browser can use it: the algorithm and the raw key octets. */
export interface RawPublicKey {
  readonly alg: SignAlg;
  /** Ed25519: the 32-octet RFC 8032 key; P-256: 0x04 || X || Y (65 octets). */
  readonly raw: Uint8Array;
}

/**
 * The raw public key in a `<KeyValue/>`, or undefined for a key the browser cannot use
 * (RSA, DSA, another curve, malformed). Never throws on peer input.
 */
export function rawPublicKey(keyValue: Element): RawPublicKey | undefined {
  try {
    const k = parseKeyValue(keyValue);
    if (k.type !== "ed25519" && k.type !== "ec-p256") return undefined;
    const raw = fromBase64(k.publicKey);
    if (!raw) return undefined;
    return { alg: k.type === "ed25519" ? "ed25519" : "ecdsa-p256-sha256", raw };
  } catch {
    return undefined;
  }
}

/**
 * The project's fingerprint of a peer's key (docs/identity-and-trust.md): Base64 SHA-256
 * of the Normalized canonical `<KeyValue/>`, whatever whitespace or prefixes the peer
 * used, so it equals what the trust store records and `xmpp-e2e trust list` shows.
 * Undefined for a key that does not parse.
 */
export function peerKeyFingerprint(c: CryptoProvider, keyValue: Element): string | undefined {
  try {
    return fingerprint(c, "sha256", buildKeyValue(parseKeyValue(keyValue)));
  } catch {
    return undefined;
  }
}

function check(alg: SignAlg, key: RawPublicKey, data: Uint8Array, signature: Uint8Array): boolean {
  if (key.alg !== alg) return false;
  try {
    if (alg === "ed25519") return signature.length === 64 && ed25519.verify(signature, data, key.raw, { zip215: false });
    // prehash: SHA-256 of the data (ecdsa-sha256); r || s, 32 octets each.
    return signature.length === 64 && p256.verify(signature, data, key.raw, { prehash: true, lowS: false, format: "compact" });
  } catch {
    // A point off the curve, a malformed encoding: simply not a valid signature.
    return false;
  }
}

export interface BrowserVerifierOptions {
  readonly crypto: CryptoProvider;
  /** Keys of peers we already hold (for the 'hash' method), as KeyValue elements. */
  readonly known?: () => readonly Element[];
}

/** The verifier the web client gives SecureClient (see the banner). */
export function browserKeyVerifier(o: BrowserVerifierOptions): KeyVerifier {
  // Peers present the same key session after session: decoded once (bounded).
  const decoded = new Map<string, RawPublicKey | undefined>();
  const keyOf = (keyValue: Element, normalized: string | undefined): RawPublicKey | undefined => {
    if (normalized === undefined) return rawPublicKey(keyValue);
    if (decoded.has(normalized)) return decoded.get(normalized);
    const k = rawPublicKey(keyValue);
    if (decoded.size >= 256) decoded.delete(decoded.keys().next().value ?? "");
    decoded.set(normalized, k);
    return k;
  };
  return {
    signAlgs: BROWSER_SIGN_ALGS.map((a) => SIGN_ALG_URI[a]),
    verify(uri, keyValue, data, signature, normalized) {
      const alg = signAlgFromUri(uri);
      if (alg === undefined || !BROWSER_SIGN_ALGS.includes(alg)) return false;
      const key = keyOf(keyValue, normalized);
      return key !== undefined && check(alg, key, data, signature);
    },
    lookup(fp: Uint8Array, hash: HashAlg) {
      return (o.known?.() ?? []).find((k) => equalBytes(keyFingerprint(o.crypto, hash, k), fp));
    },
  };
}
