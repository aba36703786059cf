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
import { nodeSigner, SIGN_ALG_URI, SIGN_ALGS, type SignAlg, type SignatureProvider, signAlgFromUri } from "../identity/keys.js";
import { keyValueElement, parseKeyValue, spkiFromKeyValue } from "../identity/keyvalue.js";
import type { Element } from "../xml/index.js";

/**
 * Our long-term key as the negotiation signs with it. With a provider that offers
 * `signerFor` the private key is decoded at the first signature and kept decoded for the
 * identity's lifetime (decoding costs more than an Ed25519 signature).
 */
export function signingIdentity(key: IdentityKey, signer: SignatureProvider = nodeSigner): SigningIdentity {
  let prepared: ((data: Uint8Array) => Uint8Array) | undefined;
  return {
    signAlg: SIGN_ALG_URI[key.alg],
    keyValue: keyValueElement(key.publicKey),
    sign(data) {
      if (!signer.signerFor) return signer.sign(key.alg, key.privateKey, data);
      prepared ??= signer.signerFor(key.alg, key.privateKey);
      return prepared(data);
    },
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
  // key per normalized KeyValue and algorithm (bounded), decoded once when the provider
  // offers `verifierFor`.
  type Check = (data: Uint8Array, signature: Uint8Array) => boolean;
  const parsed = new Map<string, Check>();
  const checkOf = (alg: SignAlg, keyValue: Element, normalized: string | undefined): Check => {
    const id = `${alg} ${normalized ?? normalizedKey(keyValue)}`;
    let check = parsed.get(id);
    if (!check) {
      const spki = spkiFromKeyValue(parseKeyValue(keyValue));
      check = signer.verifierFor ? signer.verifierFor(alg, spki) : (data, signature) => signer.verify(alg, spki, data, signature);
      if (parsed.size >= 256) parsed.delete(parsed.keys().next().value ?? "");
      parsed.set(id, check);
    }
    return check;
  };
  return {
    signAlgs: SIGN_ALGS.map((a) => SIGN_ALG_URI[a]),
    verify(uri, keyValue, data, signature, normalized) {
      const alg = signAlgFromUri(uri);
      if (!alg) return false;
      let check: Check;
      try {
        check = checkOf(alg, keyValue, normalized);
      } catch {
        return false;
      }
      return check(data, signature);
    },
    lookup(fp: Uint8Array, hash: HashAlg) {
      return (o.known?.() ?? []).find((k) => equalBytes(keyFingerprint(crypto, hash, k), fp));
    },
    accept: o.accept ?? (() => true),
  };
}
