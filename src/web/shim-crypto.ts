/**
 * `createPublicKey` of node:crypto for the browser bundle, for the two public key types the
 * web client can verify (./verifier.ts): Ed25519 and ECDSA P-256. ./build.ts routes
 * `node:crypto` here; every other node:crypto function stays a stub that throws ("not
 * available in the browser"), and an RSA or DSA key throws too, so the key codec
 * (src/identity/keyvalue.ts spkiFromKeyValue / keyValueFromSpki) and the key policy
 * (src/identity/keys.ts inspectPublicKey) work unchanged for those two types in the page:
 * SecureClient records the peer's key in the trust store (XEP-0116 7.4), TrustManager
 * fingerprints it and raises the key alerts, as in the terminal.
 *
 * Only encodings, no primitive: a SubjectPublicKeyInfo is one fixed DER prefix plus the
 * key (RFC 8410 section 4 for Ed25519; RFC 5480 section 2 id-ecPublicKey + secp256r1 with
 * the uncompressed point); the P-256 point is checked to be on the curve by @noble/curves
 * (as OpenSSL does when importing coordinates); JWK per RFC 7517 / RFC 8037.
 *
 * Spec: RFC 8410 section 4, RFC 5480 section 2, RFC 7518 section 6.2 (EC JWK), RFC 8037
 * section 2 (OKP JWK), SEC 1 v2.0 section 2.3.4 (point decoding).
 */
import { p256 } from "@noble/curves/nist.js";
import { concat, equalBytes, fromBase64, toBase64 } from "../core/bytes.js";

/** 30 2a 30 05 06 03 2b6570 03 21 00: SEQUENCE { AlgorithmIdentifier { id-Ed25519 }, BIT STRING (32 octets) }. */
const ED25519_SPKI_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);
/** SEQUENCE { AlgorithmIdentifier { id-ecPublicKey, secp256r1 }, BIT STRING (65 octets) }. */
const P256_SPKI_PREFIX = Uint8Array.from([
  0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03,
  0x42, 0x00,
]);

type Jwk = { readonly kty: "OKP"; readonly crv: "Ed25519"; readonly x: string } | { readonly kty: "EC"; readonly crv: "P-256"; readonly x: string; readonly y: string };

/** The subset of node:crypto's KeyObject the key codec reads. */
export interface BrowserPublicKeyObject {
  readonly type: "public";
  readonly asymmetricKeyType: "ed25519" | "ec";
  readonly asymmetricKeyDetails: { readonly namedCurve?: string };
  export(o: { readonly format: "der"; readonly type: "spki" }): Uint8Array;
  export(o: { readonly format: "jwk" }): Jwk;
}

function unsupported(what: string): Error {
  return new Error(`createPublicKey: ${what} is not available in the browser`);
}

function b64url(b: Uint8Array): string {
  return toBase64(b).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromB64url(s: unknown): Uint8Array {
  if (typeof s !== "string") throw new TypeError("JWK member is not a string");
  const std = s.replace(/-/g, "+").replace(/_/g, "/");
  const b = fromBase64(std + "=".repeat((4 - (std.length % 4)) % 4));
  if (b === undefined) throw new TypeError("JWK member is not base64url");
  return b;
}

function keyObject(alg: "ed25519" | "p256", raw: Uint8Array): BrowserPublicKeyObject {
  const spki = concat(alg === "ed25519" ? ED25519_SPKI_PREFIX : P256_SPKI_PREFIX, raw);
  const jwk: Jwk = alg === "ed25519" ? { kty: "OKP", crv: "Ed25519", x: b64url(raw) } : { kty: "EC", crv: "P-256", x: b64url(raw.subarray(1, 33)), y: b64url(raw.subarray(33)) };
  function exportKey(o: { readonly format: "der"; readonly type: "spki" }): Uint8Array;
  function exportKey(o: { readonly format: "jwk" }): Jwk;
  function exportKey(o: { readonly format: "der" | "jwk"; readonly type?: "spki" }): Uint8Array | Jwk {
    if (o.format === "jwk") return { ...jwk };
    if (o.type !== "spki") throw unsupported(`export as ${o.type ?? "?"}`);
    return spki.slice();
  }
  return {
    type: "public",
    asymmetricKeyType: alg === "ed25519" ? "ed25519" : "ec",
    asymmetricKeyDetails: alg === "ed25519" ? {} : { namedCurve: "prime256v1" },
    export: exportKey,
  };
}

function p256Point(point: Uint8Array): BrowserPublicKeyObject {
  if (point.length !== 65 || point[0] !== 0x04) throw new Error("not an uncompressed P-256 point");
  p256.Point.fromBytes(point).assertValidity(); // throws for a point off the curve
  return keyObject("p256", point);
}

export interface CreatePublicKeyInput {
  readonly key: unknown;
  readonly format?: string;
  readonly type?: string;
}

/** node:crypto createPublicKey for Ed25519 and P-256 public keys (DER SPKI or JWK); throws otherwise. */
export function createPublicKey(input: CreatePublicKeyInput): BrowserPublicKeyObject {
  if (input.format === "jwk" && typeof input.key === "object" && input.key !== null) {
    const j = input.key as Record<string, unknown>;
    if (j.kty === "OKP" && j.crv === "Ed25519") {
      const x = fromB64url(j.x);
      if (x.length !== 32) throw new Error("an Ed25519 public key is 32 octets");
      return keyObject("ed25519", x);
    }
    if (j.kty === "EC" && j.crv === "P-256") {
      const x = fromB64url(j.x);
      const y = fromB64url(j.y);
      if (x.length !== 32 || y.length !== 32) throw new Error("P-256 coordinates are 32 octets");
      return p256Point(concat(Uint8Array.of(0x04), x, y));
    }
    throw unsupported(`a ${String(j.kty)} key`);
  }
  if (input.format === "der" && input.type === "spki" && input.key instanceof Uint8Array) {
    const der = input.key;
    if (der.length === 44 && equalBytes(der.subarray(0, 12), ED25519_SPKI_PREFIX)) return keyObject("ed25519", der.slice(12));
    if (der.length === 91 && equalBytes(der.subarray(0, 26), P256_SPKI_PREFIX)) return p256Point(der.slice(26));
    throw unsupported("this SubjectPublicKeyInfo (only Ed25519 and P-256)");
  }
  throw unsupported(`a ${input.format ?? "?"} ${input.type ?? ""} key`);
}
