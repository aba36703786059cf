/**
 * Test-only RSA identity for XEP-0116 public-key identification: an XML-DSig RSAKeyValue
 * (Modulus, Exponent as Base64 CryptoBinary) and PKCS#1 v1.5 SHA-256 signatures, from
 * node:crypto. Production keys live in src/identity.
 *
 * Spec: XML-DSig 4.4.2.2 (RSAKeyValue), xmldsig#rsa-sha256 as XEP-0116 names it.
 */
import { createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from "node:crypto";
import { fromBase64, toBase64 } from "../../src/core/bytes.js";
import { nodeCrypto } from "../../src/crypto/node.js";
import type { HashAlg } from "../../src/crypto/provider.js";
import { equalBytes } from "../../src/core/bytes.js";
import { type KeyVerifier, keyFingerprint, NS_XMLDSIG, type PeerKey, type SigningIdentity } from "../../src/esession/identity.js";
import { el, type Element } from "../../src/xml/index.js";

export const RSA_SHA256 = "http://www.w3.org/2000/09/xmldsig#rsa-sha256";

function b64url(s: string): string {
  return s.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(s.length / 4) * 4, "=");
}

export function rsaKeyValue(pub: KeyObject): Element {
  const jwk = pub.export({ format: "jwk" });
  return el("KeyValue", { xmlns: NS_XMLDSIG }, el("RSAKeyValue", {}, el("Modulus", {}, b64url(jwk.n ?? "")), el("Exponent", {}, b64url(jwk.e ?? ""))));
}

export function keyFromValue(kv: Element): KeyObject | undefined {
  const r = kv.getChild("RSAKeyValue");
  const n = fromBase64(r?.getChildText("Modulus") ?? "");
  const e = fromBase64(r?.getChildText("Exponent") ?? "");
  if (!n || !e) return undefined;
  const u = (b: Uint8Array) => toBase64(b).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return createPublicKey({ key: { kty: "RSA", n: u(n), e: u(e) }, format: "jwk" });
}

export function rsaIdentity(bits = 2048): SigningIdentity & { readonly publicKey: KeyObject } {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: bits });
  return {
    signAlg: RSA_SHA256,
    keyValue: rsaKeyValue(publicKey),
    publicKey,
    sign: (data) => new Uint8Array(sign("sha256", data, privateKey)),
  };
}

/** A verifier that knows some keys (for 'hash') and records what it accepted. */
export function rsaVerifier(known: readonly Element[] = [], accept: (k: PeerKey) => boolean = () => true): KeyVerifier & {
  accept(k: PeerKey): boolean;
} {
  return {
    signAlgs: [RSA_SHA256],
    verify(alg, keyValue, data, signature) {
      const key = alg === RSA_SHA256 ? keyFromValue(keyValue) : undefined;
      return key !== undefined && verify("sha256", data, key, signature);
    },
    lookup(fp: Uint8Array, hash: HashAlg) {
      return known.find((k) => equalBytes(keyFingerprint(nodeCrypto, hash, k), fp));
    },
    accept,
  };
}
