/**
 * TlsCrypto backed by node:crypto (OpenSSL): hashes, HMAC, AES-CBC, RSA PKCS#1 v1.5 and
 * RSA-PSS signatures, and X.509 parsing through crypto.X509Certificate. No primitive is
 * implemented here.
 *
 * Spec: FIPS 180-4, RFC 2104, FIPS 197 + SP 800-38A (CBC), RFC 8017 (RSASSA-PKCS1-v1_5,
 * RSASSA-PSS with salt length = hash length as RFC 8446 section 4.2.3 requires),
 * RFC 5280 (certificates).
 */
import {
  X509Certificate,
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  constants,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from "node:crypto";
import type { SignatureScheme, TlsCrypto, TlsHash, TlsPrivateKey } from "./crypto.js";

function aesName(key: Uint8Array): string {
  if (key.length === 16) return "aes-128-cbc";
  if (key.length === 32) return "aes-256-cbc";
  throw new RangeError("bad AES key length");
}

function schemeParams(scheme: SignatureScheme): { hash: TlsHash; pss: boolean } {
  switch (scheme) {
    case 0x0201:
      return { hash: "sha1", pss: false };
    case 0x0401:
      return { hash: "sha256", pss: false };
    case 0x0501:
      return { hash: "sha384", pss: false };
    case 0x0601:
      return { hash: "sha512", pss: false };
    case 0x0804:
      return { hash: "sha256", pss: true };
    case 0x0805:
      return { hash: "sha384", pss: true };
    case 0x0806:
      return { hash: "sha512", pss: true };
  }
}

const keyCache = new Map<string, KeyObject>();
function privateKey(k: TlsPrivateKey): KeyObject {
  let o = keyCache.get(k.pem);
  if (!o) {
    o = createPrivateKey(k.pem);
    if (keyCache.size > 32) keyCache.clear();
    keyCache.set(k.pem, o);
  }
  return o;
}

function certificate(der: Uint8Array): X509Certificate | undefined {
  try {
    return new X509Certificate(der);
  } catch {
    return undefined;
  }
}

export const nodeTlsCrypto: TlsCrypto = {
  hash(alg, ...parts) {
    const h = createHash(alg);
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest());
  },
  hmac(alg, key, ...parts) {
    const h = createHmac(alg, key);
    for (const p of parts) h.update(p);
    return new Uint8Array(h.digest());
  },
  aesCbcEncrypt(key, iv, data) {
    const c = createCipheriv(aesName(key), key, iv).setAutoPadding(false);
    return new Uint8Array(Buffer.concat([c.update(data), c.final()]));
  },
  aesCbcDecrypt(key, iv, data) {
    const c = createDecipheriv(aesName(key), key, iv).setAutoPadding(false);
    return new Uint8Array(Buffer.concat([c.update(data), c.final()]));
  },
  sign(scheme, key, data) {
    const { hash, pss } = schemeParams(scheme);
    const k = privateKey(key);
    return new Uint8Array(
      pss
        ? nodeSign(hash, data, { key: k, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST })
        : nodeSign(hash, data, { key: k, padding: constants.RSA_PKCS1_PADDING }),
    );
  },
  verify(scheme, cert, data, signature) {
    const c = certificate(cert);
    if (!c || c.publicKey.asymmetricKeyType !== "rsa") return false;
    const { hash, pss } = schemeParams(scheme);
    try {
      return pss
        ? nodeVerify(hash, data, { key: c.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature)
        : nodeVerify(hash, data, { key: c.publicKey, padding: constants.RSA_PKCS1_PADDING }, signature);
    } catch {
      return false;
    }
  },
  certificateKeyType(cert) {
    const c = certificate(cert);
    if (!c) return undefined;
    return c.publicKey.asymmetricKeyType === "rsa" ? "rsa" : "other";
  },
};
