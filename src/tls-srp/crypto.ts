/**
 * The primitives the TLS-SRP core needs, behind an injected interface so the core never
 * imports node:crypto (sans-IO rule; a WebCrypto-free browser provider can implement it
 * over @noble/*). Nothing here is implemented by us: see node-crypto.ts.
 *
 * Spec: RFC 5246 (TLS 1.2) section 5 (PRF over HMAC-SHA256), section 6.2.3.2 (CBC block
 * ciphers, AES per RFC 3268/5246 suites), section 4.7 and 7.4.1.4.1 (digitally-signed,
 * SignatureAndHashAlgorithm); RFC 8446 section 4.2.3 for the rsa_pss_rsae_* code points
 * that TLS 1.2 implementations also use.
 */

export type TlsHash = "sha1" | "sha256" | "sha384" | "sha512";

/**
 * TLS 1.2 SignatureAndHashAlgorithm values for RSA keys (hash << 8 | signature), plus
 * the RSA-PSS code points of RFC 8446 section 4.2.3 (usable in TLS 1.2).
 */
export const SIGNATURE_SCHEMES = {
  rsa_pkcs1_sha1: 0x0201,
  rsa_pkcs1_sha256: 0x0401,
  rsa_pkcs1_sha384: 0x0501,
  rsa_pkcs1_sha512: 0x0601,
  rsa_pss_rsae_sha256: 0x0804,
  rsa_pss_rsae_sha384: 0x0805,
  rsa_pss_rsae_sha512: 0x0806,
} as const;

export type SignatureSchemeName = keyof typeof SIGNATURE_SCHEMES;
export type SignatureScheme = (typeof SIGNATURE_SCHEMES)[SignatureSchemeName];

export function signatureSchemeName(code: number): SignatureSchemeName | undefined {
  for (const [name, c] of Object.entries(SIGNATURE_SCHEMES)) if (c === code) return name as SignatureSchemeName;
  return undefined;
}

/** An opaque private key the provider can sign with (for node-crypto: a PEM string). */
export interface TlsPrivateKey {
  readonly pem: string;
}

export interface TlsCrypto {
  hash(alg: TlsHash, ...parts: readonly Uint8Array[]): Uint8Array;
  hmac(alg: TlsHash, key: Uint8Array, ...parts: readonly Uint8Array[]): Uint8Array;
  /** AES-CBC without padding (the record layer pads itself); `data.length % 16 === 0`. */
  aesCbcEncrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array;
  aesCbcDecrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array;
  /** Signs `data` with the scheme's hash and padding. */
  sign(scheme: SignatureScheme, key: TlsPrivateKey, data: Uint8Array): Uint8Array;
  /**
   * Verifies a signature with the public key of an X.509 certificate (DER). Returns false
   * (never throws) on a bad signature, a non-RSA key or an unparsable certificate.
   */
  verify(scheme: SignatureScheme, certificate: Uint8Array, data: Uint8Array, signature: Uint8Array): boolean;
  /** "rsa" when the certificate (DER) carries an RSA public key, undefined when unparsable. */
  certificateKeyType(certificate: Uint8Array): "rsa" | "other" | undefined;
}

/** Constant-time equality of two byte strings of public length. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return d === 0;
}
