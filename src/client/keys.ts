/**
 * Adapters from the identity layer (src/identity: long-term keys, XML-DSig KeyValue codec,
 * signature provider) to what the ESession negotiation consumes (SigningIdentity and
 * KeyVerifier), plus a verifier backed by a set of known peer keys.
 *
 * Spec: XEP-0116 v0.16 section 4 (init_pubkey / resp_pubkey 'key' and 'hash', sign_algs
 * xmldsig#rsa-sha256, xmldsig#dsa-sha256; the modern suite's Ed25519 per RFC 9231).
 */
import type { CryptoProvider, HashAlg } from "../crypto/provider.js";
import { equalBytes } from "../core/bytes.js";
import { nodeCrypto } from "../crypto/node.js";
import { keyFingerprint, type KeyVerifier, normalizedKey, type PeerKey, type SigningIdentity } from "../esession/identity.js";
import type { IdentityKey } from "../identity/keyfile.js";
import { nodeSigner, SIGN_ALG_URI, SIGN_ALGS, type SignatureProvider, signAlgFromUri } from "../identity/keys.js";
import { keyValueElement, parseKeyValue, spkiFromKeyValue } from "../identity/keyvalue.js";
import type { Element } from "../xml/index.js";

/** Our long-term key as the negotiation signs with it. */
export function signingIdentity(key: IdentityKey, signer: SignatureProvider = nodeSigner): SigningIdentity {
  return {
    signAlg: SIGN_ALG_URI[key.alg],
    keyValue: keyValueElement(key.publicKey),
    sign: (data) => signer.sign(key.alg, key.privateKey, data),
  };
}

export interface KeyVerifierOptions {
  /** Keys of peers we already hold (for the 'hash' method), as KeyValue elements. */
  readonly known?: () => readonly Element[];
  /** Trust policy for a verified key (default: accept). */
  readonly accept?: (key: PeerKey) => boolean;
  readonly signer?: SignatureProvider;
  readonly crypto?: CryptoProvider;
}

/** Verifies RSA, DSA and Ed25519 signatures over SIGMA MACs; never throws on peer input. */
export function keyVerifier(o: KeyVerifierOptions = {}): KeyVerifier & { accept(key: PeerKey): boolean } {
  const signer = o.signer ?? nodeSigner;
  const crypto = o.crypto ?? nodeCrypto;
  // Peers present the same keys session after session: keep the parsed and policy-checked
  // SPKI per normalized KeyValue (bounded).
  const parsed = new Map<string, Uint8Array>();
  const spkiOf = (keyValue: Element): Uint8Array => {
    const id = normalizedKey(keyValue);
    let spki = parsed.get(id);
    if (!spki) {
      spki = spkiFromKeyValue(parseKeyValue(keyValue));
      if (parsed.size >= 256) parsed.delete(parsed.keys().next().value ?? "");
      parsed.set(id, spki);
    }
    return spki;
  };
  return {
    signAlgs: SIGN_ALGS.map((a) => SIGN_ALG_URI[a]),
    verify(uri, keyValue, data, signature) {
      const alg = signAlgFromUri(uri);
      if (!alg) return false;
      let spki: Uint8Array;
      try {
        spki = spkiOf(keyValue);
      } catch {
        return false;
      }
      return signer.verify(alg, spki, data, signature);
    },
    lookup(fp: Uint8Array, hash: HashAlg) {
      return (o.known?.() ?? []).find((k) => equalBytes(keyFingerprint(crypto, hash, k), fp));
    },
    accept: o.accept ?? (() => true),
  };
}
