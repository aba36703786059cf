/**
 * CMS for object encryption: detached SignedData, EnvelopedData (AES-CBC) and
 * AuthEnvelopedData (AES-GCM), to RSA (RSAES-OAEP key transport) and EC (ECDH key
 * agreement) recipients, any number of them.
 *
 * Spec: draft-ietf-xmpp-e2e-03 section 2 requirement 3 ("Encryption MUST use S/MIME
 * encryption with CMS EnvelopeData", "Signing MUST use S/MIME signatures with CMS
 * SignedData", "The S/MIME algorithm SHOULD be AES"), reference [12] (AES and RSA-OAEP in
 * CMS, published as RFC 3565 / RFC 3560). RFC 5652 (CMS): 5.3-5.4 (SignerInfo; signed
 * attributes contentType, messageDigest, signingTime; "the DER encoding of the SET OF
 * attributes" is what is signed), 6.1-6.2 (EnvelopedData, version rules,
 * KeyTransRecipientInfo, KeyAgreeRecipientInfo), 6.3 (content-encryption, PKCS #7
 * padding). RFC 5083 (AuthEnvelopedData: mac is the GCM tag, authAttrs absent means empty
 * AAD) and RFC 5084 (id-aes128-GCM / id-aes256-GCM, GCMParameters with a 12-octet nonce).
 * RFC 5753 section 3.1 and RFC 3278 section 8.2 (ECDH stdDH with the ANSI X9.63 KDF over
 * ECC-CMS-SharedInfo: keyInfo = the wrap algorithm, entityUInfo = ukm if present,
 * suppPubInfo = key length in bits as 4 octets). RFC 3394 (AES key wrap). RFC 8017
 * section 7.1 (RSAES-OAEP).
 *
 * Split of work: ASN.1 structures come from pkijs/asn1js; signing and verifying go
 * through pkijs's CryptoEngine over WebCrypto (node:crypto's webcrypto); key management
 * and content encryption use node:crypto directly (ECDH, the X9.63 hash chain, AES-KW,
 * AES-CBC/GCM, RSA-OAEP) because pkijs 4.0.0 has no AuthEnvelopedData and its
 * EnvelopedData.decrypt fails on OpenSSL's KeyAgreeRecipientInfo without a ukm (it adds
 * an empty entityUInfo to the KDF input). No primitive is implemented here.
 *
 * Refused on purpose: RSAES-PKCS1-v1_5 key transport (rsaEncryption) on decryption, a
 * padding oracle (Bleichenbacher, "Marvin"); it is reported as unsupported-algorithm.
 * Randomness (content keys, IVs, GCM nonces, ephemeral EC keys) comes from the injected
 * Random; RSA-OAEP seeds and ECDSA nonces are drawn inside OpenSSL.
 */
import "reflect-metadata";
import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createPrivateKey,
  createPublicKey,
  constants as cryptoConstants,
  publicEncrypt,
  privateDecrypt,
  webcrypto,
  type KeyObject,
} from "node:crypto";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import type { Clock, Random } from "../core/types.js";
import { asSmimeError, SmimeError } from "./errors.js";

export const OID = {
  data: "1.2.840.113549.1.7.1",
  signedData: "1.2.840.113549.1.7.2",
  envelopedData: "1.2.840.113549.1.7.3",
  authEnvelopedData: "1.2.840.113549.1.9.16.1.23",
  contentType: "1.2.840.113549.1.9.3",
  messageDigest: "1.2.840.113549.1.9.4",
  signingTime: "1.2.840.113549.1.9.5",
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsaesOaep: "1.2.840.113549.1.1.7",
  mgf1: "1.2.840.113549.1.1.8",
  ecPublicKey: "1.2.840.10045.2.1",
  sha1: "1.3.14.3.2.26",
  sha256: "2.16.840.1.101.3.4.2.1",
  sha384: "2.16.840.1.101.3.4.2.2",
  sha512: "2.16.840.1.101.3.4.2.3",
  aes128Cbc: "2.16.840.1.101.3.4.1.2",
  aes256Cbc: "2.16.840.1.101.3.4.1.42",
  aes128Gcm: "2.16.840.1.101.3.4.1.6",
  aes256Gcm: "2.16.840.1.101.3.4.1.46",
  aes128Wrap: "2.16.840.1.101.3.4.1.5",
  aes256Wrap: "2.16.840.1.101.3.4.1.45",
  /** dhSinglePass-stdDH-sha1kdf-scheme (RFC 3278), OpenSSL's default. */
  ecdhSha1Kdf: "1.3.133.16.840.63.0.2",
  /** dhSinglePass-stdDH-sha256kdf-scheme (RFC 5753). */
  ecdhSha256Kdf: "1.3.132.1.11.1",
  ecdhSha384Kdf: "1.3.132.1.11.2",
  ecdhSha512Kdf: "1.3.132.1.11.3",
  p256: "1.2.840.10045.3.1.7",
  p384: "1.3.132.0.34",
  p521: "1.3.132.0.35",
} as const;

/** The content ciphers: CBC in EnvelopedData, GCM in AuthEnvelopedData. */
export type ContentCipher = "aes-128-cbc" | "aes-256-cbc" | "aes-128-gcm" | "aes-256-gcm";
export const CONTENT_CIPHERS: readonly ContentCipher[] = ["aes-128-cbc", "aes-256-cbc", "aes-128-gcm", "aes-256-gcm"];

export type DigestName = "sha-256" | "sha-384" | "sha-512";

const CIPHER_OID: Record<ContentCipher, string> = {
  "aes-128-cbc": OID.aes128Cbc,
  "aes-256-cbc": OID.aes256Cbc,
  "aes-128-gcm": OID.aes128Gcm,
  "aes-256-gcm": OID.aes256Gcm,
};

const DIGESTS: Record<DigestName, { oid: string; node: string; webcrypto: string }> = {
  "sha-256": { oid: OID.sha256, node: "sha256", webcrypto: "SHA-256" },
  "sha-384": { oid: OID.sha384, node: "sha384", webcrypto: "SHA-384" },
  "sha-512": { oid: OID.sha512, node: "sha512", webcrypto: "SHA-512" },
};

const CURVES: Record<string, { node: string; webcrypto: string; bytes: number }> = {
  [OID.p256]: { node: "prime256v1", webcrypto: "P-256", bytes: 32 },
  [OID.p384]: { node: "secp384r1", webcrypto: "P-384", bytes: 48 },
  [OID.p521]: { node: "secp521r1", webcrypto: "P-521", bytes: 66 },
};

/** A certificate with its private key: what signs and what decrypts. */
export interface SmimeIdentity {
  /** DER X.509 certificate. */
  readonly certificate: Uint8Array;
  /** DER PKCS #8 private key. */
  readonly privateKey: Uint8Array;
  /** Intermediate certificates to send along (DER), leaf excluded. */
  readonly chain?: readonly Uint8Array[];
}

/** Effects the CMS layer needs (injected: never Date.now or Math.random). */
export interface CmsEnv {
  readonly random: Random;
  readonly clock: Clock;
}

/** pkijs's engine over node's WebCrypto. */
export const cmsEngine = new pkijs.CryptoEngine({ name: "node-webcrypto", crypto: webcrypto as unknown as Crypto });

function ab(u: Uint8Array): ArrayBuffer {
  return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;
}

function bytesOf(b: ArrayBuffer | ArrayBufferView): Uint8Array {
  return b instanceof ArrayBuffer ? new Uint8Array(b) : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export function parseCertificate(der: Uint8Array): pkijs.Certificate {
  try {
    return pkijs.Certificate.fromBER(ab(der));
  } catch (e) {
    throw asSmimeError(e, "malformed", "bad certificate");
  }
}

function berOf(x: { toSchema(): asn1js.BaseBlock }): Uint8Array {
  return new Uint8Array(x.toSchema().toBER(false));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

type KeyKind = { kind: "rsa" } | { kind: "ec"; curveOid: string };

function keyKindOfCert(c: pkijs.Certificate): KeyKind {
  const alg = c.subjectPublicKeyInfo.algorithm;
  if (alg.algorithmId === OID.rsaEncryption) return { kind: "rsa" };
  if (alg.algorithmId === OID.ecPublicKey) {
    const p: unknown = alg.algorithmParams;
    if (p instanceof asn1js.ObjectIdentifier) {
      const oid = p.valueBlock.toString();
      if (CURVES[oid] !== undefined) return { kind: "ec", curveOid: oid };
    }
  }
  throw new SmimeError("unsupported-algorithm", "certificate key is neither RSA nor EC P-256/384/521");
}

function privateKeyObject(pkcs8: Uint8Array): KeyObject {
  try {
    return createPrivateKey({ key: Buffer.from(pkcs8), format: "der", type: "pkcs8" });
  } catch (e) {
    throw asSmimeError(e, "malformed", "bad PKCS #8 private key");
  }
}

// ---------------------------------------------------------------------------------------
// SignedData (detached)

const keyCache = new WeakMap<Uint8Array, CryptoKey>();

async function signingKey(id: SmimeIdentity, cert: pkijs.Certificate, hash: DigestName): Promise<CryptoKey> {
  const cached = keyCache.get(id.privateKey);
  if (cached !== undefined) return cached;
  const kind = keyKindOfCert(cert);
  const alg =
    kind.kind === "rsa"
      ? { name: "RSASSA-PKCS1-v1_5", hash: DIGESTS[hash].webcrypto }
      : { name: "ECDSA", namedCurve: CURVES[kind.curveOid]?.webcrypto ?? "P-256" };
  const key = await webcrypto.subtle.importKey("pkcs8", ab(id.privateKey), alg, false, ["sign"]);
  keyCache.set(id.privateKey, key);
  return key;
}

export interface SignOptions {
  readonly digest?: DigestName;
  /** Include the signer's certificate and chain (RFC 3923 section 6.6: SHOULD, outside a session). Default true. */
  readonly includeCertificates?: boolean;
}

/**
 * A detached SignedData over `content` (RFC 5652 section 5, RFC 5751 section 3.5.3) with
 * the signed attributes contentType, signingTime (the injected clock) and messageDigest.
 */
export async function signDetached(content: Uint8Array, signer: SmimeIdentity, env: CmsEnv, opts: SignOptions = {}): Promise<Uint8Array> {
  const digest = opts.digest ?? "sha-256";
  const cert = parseCertificate(signer.certificate);
  const key = await signingKey(signer, cert, digest);
  const md = createHash(DIGESTS[digest].node).update(content).digest();
  const signerInfo = new pkijs.SignerInfo({
    version: 1,
    sid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
  });
  signerInfo.signedAttrs = new pkijs.SignedAndUnsignedAttributes({
    type: 0,
    attributes: [
      new pkijs.Attribute({ type: OID.contentType, values: [new asn1js.ObjectIdentifier({ value: OID.data })] }),
      new pkijs.Attribute({ type: OID.signingTime, values: [new asn1js.UTCTime({ valueDate: new Date(env.clock.now()) })] }),
      new pkijs.Attribute({ type: OID.messageDigest, values: [new asn1js.OctetString({ valueHex: ab(md) })] }),
    ],
  });
  const includeCerts = opts.includeCertificates ?? true;
  const sd = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: OID.data }),
    signerInfos: [signerInfo],
    ...(includeCerts ? { certificates: [cert, ...(signer.chain ?? []).map(parseCertificate)] } : {}),
  });
  await sd.sign(key, 0, DIGESTS[digest].webcrypto, undefined, cmsEngine);
  const ci = new pkijs.ContentInfo({ contentType: OID.signedData, content: sd.toSchema(true) });
  return berOf(ci);
}

export interface VerifiedSignature {
  /** The signer's certificate (DER). */
  readonly signer: Uint8Array;
  /** Every certificate carried in the SignedData (DER), for chain building. */
  readonly certificates: readonly Uint8Array[];
  /** signingTime, ms since the epoch, when present. */
  readonly signingTime?: number;
  readonly digest: string;
}

function parseContentInfo(der: Uint8Array): pkijs.ContentInfo {
  if (der.length === 0) throw new SmimeError("malformed", "empty CMS object");
  try {
    const asn = asn1js.fromBER(ab(der));
    if (asn.offset === -1 || asn.result.error) throw new SmimeError("malformed", "bad BER");
    return new pkijs.ContentInfo({ schema: asn.result });
  } catch (e) {
    throw asSmimeError(e, "malformed", "bad CMS ContentInfo");
  }
}

/**
 * Verifies a detached SignedData over `content` (the signature, and the messageDigest
 * attribute against the content). Trust in the signer is NOT decided here (see
 * ./certs.ts). `extraCertificates` help find a signer whose certificate was not included.
 */
export async function verifyDetached(
  der: Uint8Array,
  content: Uint8Array,
  extraCertificates: readonly Uint8Array[] = [],
): Promise<VerifiedSignature> {
  const ci = parseContentInfo(der);
  if (ci.contentType !== OID.signedData) throw new SmimeError("malformed", "not a SignedData");
  let sd: pkijs.SignedData;
  try {
    sd = new pkijs.SignedData({ schema: ci.content });
  } catch (e) {
    throw asSmimeError(e, "malformed", "bad SignedData");
  }
  if (sd.signerInfos.length !== 1) throw new SmimeError("unsupported-algorithm", "exactly one signer is supported");
  if (sd.encapContentInfo.eContent !== undefined) throw new SmimeError("malformed", "SignedData is not detached");
  const carried = (sd.certificates ?? []).filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate);
  const extra = extraCertificates.map(parseCertificate);
  sd.certificates = [...carried, ...extra];
  let result: pkijs.SignedDataVerifyResult;
  try {
    result = await sd.verify({ signer: 0, data: ab(content), extendedMode: true, checkChain: false }, cmsEngine);
  } catch (e) {
    const r = e as { signatureVerified?: boolean | null; code?: number; message?: string };
    // pkijs throws a SignedDataVerifyError: code 3 = signer certificate not found.
    if (r.code === 3) throw new SmimeError("untrusted-certificate", "signer certificate not found", { cause: e });
    throw new SmimeError("signature-unverified", "signature or message digest does not verify", { cause: e });
  }
  if (result.signatureVerified !== true || result.signerCertificate === undefined || result.signerCertificate === null)
    throw new SmimeError("signature-unverified", "signature does not verify");
  const si = sd.signerInfos[0];
  let signingTime: number | undefined;
  for (const a of si?.signedAttrs?.attributes ?? []) {
    if (a.type !== OID.signingTime) continue;
    const v: unknown = a.values[0];
    if (v instanceof asn1js.UTCTime || v instanceof asn1js.GeneralizedTime) signingTime = v.toDate().getTime();
  }
  // SHA-1 digests are still read (the draft's examples use micalg=sha1); we never produce them.
  const digest = si?.digestAlgorithm.algorithmId ?? "";
  return {
    signer: berOf(result.signerCertificate),
    certificates: sd.certificates.filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate).map(berOf),
    digest,
    ...(signingTime === undefined ? {} : { signingTime }),
  };
}

// ---------------------------------------------------------------------------------------
// Key management

function aesWrap(kek: Uint8Array, cek: Uint8Array): Uint8Array {
  const c = createCipheriv(`id-aes${kek.length * 8}-wrap`, kek, Buffer.from("A6A6A6A6A6A6A6A6", "hex"));
  return new Uint8Array(Buffer.concat([c.update(cek), c.final()]));
}

function aesUnwrap(kek: Uint8Array, wrapped: Uint8Array): Uint8Array {
  const d = createDecipheriv(`id-aes${kek.length * 8}-wrap`, kek, Buffer.from("A6A6A6A6A6A6A6A6", "hex"));
  return new Uint8Array(Buffer.concat([d.update(wrapped), d.final()]));
}

const KDF_HASH: Record<string, string> = {
  [OID.ecdhSha1Kdf]: "sha1",
  [OID.ecdhSha256Kdf]: "sha256",
  [OID.ecdhSha384Kdf]: "sha384",
  [OID.ecdhSha512Kdf]: "sha512",
};

/** ANSI X9.63 KDF over ECC-CMS-SharedInfo (RFC 5753 section 7.2). */
function x963Kdf(hash: string, z: Uint8Array, wrapOid: string, kekBytes: number, ukm: Uint8Array | undefined): Uint8Array {
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, kekBytes * 8);
  const info = new pkijs.ECCCMSSharedInfo({
    keyInfo: new pkijs.AlgorithmIdentifier({ algorithmId: wrapOid }),
    ...(ukm === undefined ? {} : { entityUInfo: new asn1js.OctetString({ valueHex: ab(ukm) }) }),
    suppPubInfo: new asn1js.OctetString({ valueHex: ab(len) }),
  });
  const sharedInfo = berOf(info);
  const out: Buffer[] = [];
  let have = 0;
  for (let counter = 1; have < kekBytes; counter++) {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter);
    const block = createHash(hash).update(z).update(c).update(sharedInfo).digest();
    out.push(block);
    have += block.length;
  }
  return new Uint8Array(Buffer.concat(out).subarray(0, kekBytes));
}

function ecPointOfCert(c: pkijs.Certificate): Uint8Array {
  return new Uint8Array(c.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView);
}

/** An ephemeral ECDH key from the injected Random (retry until the scalar is in range). */
function ephemeralEcdh(curve: string, bytes: number, random: Random) {
  for (let i = 0; i < 16; i++) {
    const e = createECDH(curve);
    try {
      const d = random.bytes(bytes);
      if (curve === "secp521r1") d[0] = (d[0] ?? 0) & 1;
      e.setPrivateKey(d);
      return e;
    } catch {
      // out of range (zero or >= n): draw again
    }
  }
  throw new SmimeError("bad-request", "random source gives no valid EC scalar");
}

function ktri(cert: pkijs.Certificate, cek: Uint8Array): pkijs.RecipientInfo {
  const pub = createPublicKey({ key: Buffer.from(berOf(cert.subjectPublicKeyInfo)), format: "der", type: "spki" });
  const encryptedKey = publicEncrypt({ key: pub, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: "sha256" }, cek);
  const sha256 = new pkijs.AlgorithmIdentifier({ algorithmId: OID.sha256, algorithmParams: new asn1js.Null() });
  const params = new pkijs.RSAESOAEPParams({
    hashAlgorithm: sha256,
    maskGenAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID.mgf1, algorithmParams: sha256.toSchema() }),
  });
  const value = new pkijs.KeyTransRecipientInfo({
    version: 0,
    rid: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
    keyEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: OID.rsaesOaep, algorithmParams: params.toSchema() }),
    encryptedKey: new asn1js.OctetString({ valueHex: ab(new Uint8Array(encryptedKey)) }),
  });
  return new pkijs.RecipientInfo({ variant: 1, value });
}

function kari(cert: pkijs.Certificate, curveOid: string, cek: Uint8Array, random: Random): pkijs.RecipientInfo {
  const curve = CURVES[curveOid];
  if (curve === undefined) throw new SmimeError("unsupported-algorithm", "curve");
  const eph = ephemeralEcdh(curve.node, curve.bytes, random);
  const z = new Uint8Array(eph.computeSecret(ecPointOfCert(cert)));
  const wrapOid = cek.length === 16 ? OID.aes128Wrap : OID.aes256Wrap;
  const kek = x963Kdf("sha256", z, wrapOid, cek.length, undefined);
  const value = new pkijs.KeyAgreeRecipientInfo({
    version: 3,
    originator: new pkijs.OriginatorIdentifierOrKey({
      variant: 3,
      value: new pkijs.OriginatorPublicKey({
        algorithm: new pkijs.AlgorithmIdentifier({
          algorithmId: OID.ecPublicKey,
          algorithmParams: new asn1js.ObjectIdentifier({ value: curveOid }),
        }),
        publicKey: new asn1js.BitString({ valueHex: ab(new Uint8Array(eph.getPublicKey())) }),
      }),
    }),
    keyEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({
      algorithmId: OID.ecdhSha256Kdf,
      algorithmParams: new pkijs.AlgorithmIdentifier({ algorithmId: wrapOid }).toSchema(),
    }),
    recipientEncryptedKeys: new pkijs.RecipientEncryptedKeys({
      encryptedKeys: [
        new pkijs.RecipientEncryptedKey({
          rid: new pkijs.KeyAgreeRecipientIdentifier({
            variant: 1,
            value: new pkijs.IssuerAndSerialNumber({ issuer: cert.issuer, serialNumber: cert.serialNumber }),
          }),
          encryptedKey: new asn1js.OctetString({ valueHex: ab(aesWrap(kek, cek)) }),
        }),
      ],
    }),
  });
  return new pkijs.RecipientInfo({ variant: 2, value });
}

function recipientInfoFor(certDer: Uint8Array, cek: Uint8Array, random: Random): pkijs.RecipientInfo {
  const cert = parseCertificate(certDer);
  const kind = keyKindOfCert(cert);
  return kind.kind === "rsa" ? ktri(cert, cek) : kari(cert, kind.curveOid, cek, random);
}

// ---------------------------------------------------------------------------------------
// Envelopes

/**
 * Encrypts `content` to every certificate in `recipients` (the peer's devices and, when
 * the caller adds them, the sender's own): EnvelopedData for CBC, AuthEnvelopedData for
 * GCM. Returns the DER ContentInfo.
 */
export function envelope(content: Uint8Array, recipients: readonly Uint8Array[], cipher: ContentCipher, env: CmsEnv): Uint8Array {
  if (recipients.length === 0) throw new SmimeError("no-recipient-certificate", "no recipients");
  const keyBytes = cipher.startsWith("aes-128") ? 16 : 32;
  const cek = env.random.bytes(keyBytes);
  const infos = recipients.map((r) => recipientInfoFor(r, cek, env.random));
  const riSet = new asn1js.Set({ value: infos.map((i) => i.toSchema()) });
  const allV0 = infos.every((i) => i.variant === 1);
  if (cipher.endsWith("cbc")) {
    const iv = env.random.bytes(16);
    const c = createCipheriv(cipher, cek, iv);
    const ct = new Uint8Array(Buffer.concat([c.update(content), c.final()]));
    const eci = new pkijs.EncryptedContentInfo({
      contentType: OID.data,
      contentEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({
        algorithmId: CIPHER_OID[cipher],
        algorithmParams: new asn1js.OctetString({ valueHex: ab(iv) }),
      }),
      encryptedContent: new asn1js.OctetString({ valueHex: ab(ct) }),
    });
    const ed = new asn1js.Sequence({
      value: [new asn1js.Integer({ value: allV0 ? 0 : 2 }), riSet, eci.toSchema()],
    });
    return new Uint8Array(new pkijs.ContentInfo({ contentType: OID.envelopedData, content: ed }).toSchema().toBER(false));
  }
  const nonce = env.random.bytes(12);
  const c = createCipheriv(cipher as "aes-128-gcm", cek, nonce, { authTagLength: 16 });
  const ct = new Uint8Array(Buffer.concat([c.update(content), c.final()]));
  const tag = new Uint8Array(c.getAuthTag());
  const gcmParams = new asn1js.Sequence({
    value: [new asn1js.OctetString({ valueHex: ab(nonce) }), new asn1js.Integer({ value: 16 })],
  });
  const eci = new pkijs.EncryptedContentInfo({
    contentType: OID.data,
    contentEncryptionAlgorithm: new pkijs.AlgorithmIdentifier({ algorithmId: CIPHER_OID[cipher], algorithmParams: gcmParams }),
    encryptedContent: new asn1js.OctetString({ valueHex: ab(ct) }),
  });
  const aed = new asn1js.Sequence({
    value: [new asn1js.Integer({ value: 0 }), riSet, eci.toSchema(), new asn1js.OctetString({ valueHex: ab(tag) })],
  });
  return new Uint8Array(new pkijs.ContentInfo({ contentType: OID.authEnvelopedData, content: aed }).toSchema().toBER(false));
}

export interface OpenedEnvelope {
  readonly content: Uint8Array;
  readonly cipher: ContentCipher;
  /** The certificate (DER) of the identity that decrypted it. */
  readonly recipient: Uint8Array;
}

interface ParsedEnvelope {
  readonly infos: pkijs.RecipientInfo[];
  readonly eci: pkijs.EncryptedContentInfo;
  readonly mac?: Uint8Array;
  readonly aad?: Uint8Array;
}

function parseEnvelope(ci: pkijs.ContentInfo): ParsedEnvelope {
  const seq: unknown = ci.content;
  if (!(seq instanceof asn1js.Sequence)) throw new SmimeError("malformed", "envelope is not a SEQUENCE");
  const items = seq.valueBlock.value;
  let i = 0;
  if (!(items[i] instanceof asn1js.Integer)) throw new SmimeError("malformed", "no version");
  i++;
  // originatorInfo [0] IMPLICIT: certificates we do not need.
  const oi = items[i];
  if (oi !== undefined && oi.idBlock.tagClass === 3 && oi.idBlock.tagNumber === 0) i++;
  const ri = items[i++];
  if (!(ri instanceof asn1js.Set)) throw new SmimeError("malformed", "no recipientInfos");
  const infos = ri.valueBlock.value.map((x) => new pkijs.RecipientInfo({ schema: x }));
  const eciBlock = items[i++];
  if (!(eciBlock instanceof asn1js.Sequence)) throw new SmimeError("malformed", "no encryptedContentInfo");
  const eci = new pkijs.EncryptedContentInfo({ schema: eciBlock });
  if (ci.contentType === OID.envelopedData) return { infos, eci };
  let aad: Uint8Array | undefined;
  const aa = items[i];
  if (aa !== undefined && aa.idBlock.tagClass === 3 && aa.idBlock.tagNumber === 1) {
    // RFC 5083 section 2.2: the AAD is the DER of authAttrs with an explicit SET OF tag.
    const der = new Uint8Array(aa.toBER(false));
    der[0] = 0x31;
    aad = der;
    i++;
  }
  const mac = items[i];
  if (!(mac instanceof asn1js.OctetString)) throw new SmimeError("malformed", "no mac");
  return { infos, eci, mac: new Uint8Array(mac.valueBlock.valueHexView), ...(aad === undefined ? {} : { aad }) };
}

function isMine(ias: unknown, cert: pkijs.Certificate): boolean {
  if (!(ias instanceof pkijs.IssuerAndSerialNumber)) return false;
  return (
    sameBytes(berOf(ias.issuer), berOf(cert.issuer)) &&
    sameBytes(new Uint8Array(ias.serialNumber.toBER(false)), new Uint8Array(cert.serialNumber.toBER(false)))
  );
}

function unwrapKtri(info: pkijs.KeyTransRecipientInfo, key: KeyObject): Uint8Array {
  const alg = info.keyEncryptionAlgorithm;
  if (alg.algorithmId === OID.rsaEncryption)
    throw new SmimeError("unsupported-algorithm", "RSAES-PKCS1-v1_5 key transport is refused (use RSAES-OAEP)");
  if (alg.algorithmId !== OID.rsaesOaep) throw new SmimeError("unsupported-algorithm", "key transport algorithm");
  let hash = "sha1";
  if (alg.algorithmParams !== undefined && !(alg.algorithmParams instanceof asn1js.Null)) {
    const p = new pkijs.RSAESOAEPParams({ schema: alg.algorithmParams });
    const h = Object.entries({ [OID.sha1]: "sha1", [OID.sha256]: "sha256", [OID.sha384]: "sha384", [OID.sha512]: "sha512" }).find(
      ([o]) => o === p.hashAlgorithm.algorithmId,
    );
    if (h === undefined) throw new SmimeError("unsupported-algorithm", "OAEP hash");
    hash = h[1];
    // MGF1 with the same hash is all node:crypto offers (and all senders use).
    const mgfParams: unknown = p.maskGenAlgorithm.algorithmParams;
    if (mgfParams !== undefined && !(mgfParams instanceof asn1js.Null)) {
      const mgfHash = new pkijs.AlgorithmIdentifier({ schema: mgfParams }).algorithmId;
      if (mgfHash !== p.hashAlgorithm.algorithmId) throw new SmimeError("unsupported-algorithm", "OAEP MGF1 hash differs");
    }
  }
  return new Uint8Array(
    privateDecrypt(
      { key, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash },
      Buffer.from(info.encryptedKey.valueBlock.valueHexView),
    ),
  );
}

function unwrapKari(info: pkijs.KeyAgreeRecipientInfo, cert: pkijs.Certificate, key: KeyObject, curveOid: string): Uint8Array | undefined {
  const rek = info.recipientEncryptedKeys.encryptedKeys.find((k) => k.rid.variant === 1 && isMine(k.rid.value, cert));
  if (rek === undefined) return undefined;
  const kdfHash = KDF_HASH[info.keyEncryptionAlgorithm.algorithmId];
  if (kdfHash === undefined) throw new SmimeError("unsupported-algorithm", "key agreement algorithm");
  const wrap = new pkijs.AlgorithmIdentifier({ schema: info.keyEncryptionAlgorithm.algorithmParams });
  const kekBytes = wrap.algorithmId === OID.aes128Wrap ? 16 : wrap.algorithmId === OID.aes256Wrap ? 32 : 0;
  if (kekBytes === 0) throw new SmimeError("unsupported-algorithm", "key wrap algorithm");
  if (info.originator.variant !== 3) throw new SmimeError("unsupported-algorithm", "originator is not an ephemeral key");
  const opk = info.originator.value as pkijs.OriginatorPublicKey;
  const point = new Uint8Array(opk.publicKey.valueBlock.valueHexView);
  const curve = CURVES[curveOid];
  if (curve === undefined) throw new SmimeError("unsupported-algorithm", "curve");
  const jwk = key.export({ format: "jwk" });
  if (typeof jwk.d !== "string") throw new SmimeError("decryption-failed", "EC private key");
  const ecdh = createECDH(curve.node);
  ecdh.setPrivateKey(Buffer.from(jwk.d, "base64url"));
  const z = new Uint8Array(ecdh.computeSecret(point));
  const ukm = info.ukm === undefined ? undefined : new Uint8Array(info.ukm.valueBlock.valueHexView);
  const kek = x963Kdf(kdfHash, z, wrap.algorithmId, kekBytes, ukm);
  return aesUnwrap(kek, new Uint8Array(rek.encryptedKey.valueBlock.valueHexView));
}

function contentCipherOf(eci: pkijs.EncryptedContentInfo): ContentCipher {
  const oid = eci.contentEncryptionAlgorithm.algorithmId;
  const c = (Object.keys(CIPHER_OID) as ContentCipher[]).find((k) => CIPHER_OID[k] === oid);
  if (c === undefined) throw new SmimeError("unsupported-algorithm", "content encryption algorithm");
  return c;
}

/**
 * Decrypts an EnvelopedData or AuthEnvelopedData with whichever of `identities` it is
 * addressed to. Any failure to find our recipient info, unwrap the key, unpad or
 * authenticate is SmimeError("decryption-failed"); malformed structures are "malformed".
 */
export function openEnvelope(der: Uint8Array, identities: readonly SmimeIdentity[]): OpenedEnvelope {
  const ci = parseContentInfo(der);
  if (ci.contentType !== OID.envelopedData && ci.contentType !== OID.authEnvelopedData)
    throw new SmimeError("malformed", "not an EnvelopedData or AuthEnvelopedData");
  let parsed: ParsedEnvelope;
  try {
    parsed = parseEnvelope(ci);
  } catch (e) {
    throw asSmimeError(e, "malformed", "bad envelope");
  }
  const cipher = contentCipherOf(parsed.eci);
  const gcm = cipher.endsWith("gcm");
  if (gcm !== (ci.contentType === OID.authEnvelopedData))
    throw new SmimeError("unsupported-algorithm", "GCM outside AuthEnvelopedData or CBC inside it");
  let lastError: SmimeError | undefined;
  for (const id of identities) {
    const cert = parseCertificate(id.certificate);
    const kind = keyKindOfCert(cert);
    for (const info of parsed.infos) {
      let cek: Uint8Array | undefined;
      try {
        if (info.variant === 1 && kind.kind === "rsa") {
          const k = info.value as pkijs.KeyTransRecipientInfo;
          if (k.rid instanceof pkijs.IssuerAndSerialNumber ? !isMine(k.rid, cert) : true) continue;
          cek = unwrapKtri(k, privateKeyObject(id.privateKey));
        } else if (info.variant === 2 && kind.kind === "ec") {
          cek = unwrapKari(info.value as pkijs.KeyAgreeRecipientInfo, cert, privateKeyObject(id.privateKey), kind.curveOid);
          if (cek === undefined) continue;
        } else continue;
      } catch (e) {
        lastError = e instanceof SmimeError && e.condition === "unsupported-algorithm" ? e : new SmimeError("decryption-failed", "key unwrap failed", { cause: e });
        continue;
      }
      return { content: decryptContent(parsed, cipher, cek), cipher, recipient: id.certificate };
    }
  }
  throw lastError ?? new SmimeError("decryption-failed", "not encrypted to any of our certificates");
}

function decryptContent(p: ParsedEnvelope, cipher: ContentCipher, cek: Uint8Array): Uint8Array {
  const want = cipher.startsWith("aes-128") ? 16 : 32;
  if (cek.length !== want) throw new SmimeError("decryption-failed", "content key has the wrong length");
  const ct = new Uint8Array(p.eci.getEncryptedContent());
  const params: unknown = p.eci.contentEncryptionAlgorithm.algorithmParams;
  try {
    if (cipher.endsWith("cbc")) {
      if (!(params instanceof asn1js.OctetString) || params.valueBlock.valueHexView.length !== 16)
        throw new SmimeError("malformed", "CBC IV");
      const d = createDecipheriv(cipher, cek, params.valueBlock.valueHexView);
      return new Uint8Array(Buffer.concat([d.update(ct), d.final()]));
    }
    if (!(params instanceof asn1js.Sequence)) throw new SmimeError("malformed", "GCM parameters");
    const [nonceBlock, icvBlock] = params.valueBlock.value;
    if (!(nonceBlock instanceof asn1js.OctetString)) throw new SmimeError("malformed", "GCM nonce");
    const icv = icvBlock instanceof asn1js.Integer ? icvBlock.valueBlock.valueDec : 12;
    const mac = p.mac ?? new Uint8Array(0);
    if (icv < 12 || icv > 16 || mac.length !== icv) throw new SmimeError("decryption-failed", "GCM tag length");
    const d = createDecipheriv(cipher as "aes-128-gcm", cek, nonceBlock.valueBlock.valueHexView, { authTagLength: icv });
    d.setAuthTag(mac);
    if (p.aad !== undefined) d.setAAD(p.aad);
    return new Uint8Array(Buffer.concat([d.update(ct), d.final()]));
  } catch (e) {
    if (e instanceof SmimeError && e.condition === "malformed") throw e;
    throw new SmimeError("decryption-failed", "content does not decrypt", { cause: e });
  }
}

/** Exported for tests and the bench: the raw byte view helpers. */
export const _internal = { ab, bytesOf };
