/**
 * Certificates for object encryption: generation (self-signed or issued by a CA we hold)
 * carrying the XMPP address, import (PEM/DER), chain validation and the address binding.
 *
 * Spec: RFC 3923 section 6.3 "Certificate Names" (the certificate names the sender's XMPP
 * address in a subjectAltName otherName of type id-on-xmppAddr, and a receiving agent
 * checks it against the 'from' of the stanza), RFC 3920 section 5.1.1 / RFC 6120 section
 * 13.7.1.4 (id-on-xmppAddr = 1.3.6.1.5.5.7.8.5, a UTF8String of the bare JID), RFC 5280
 * sections 4.2.1.3 (keyUsage), 4.2.1.6 (subjectAltName / otherName), 4.2.1.9
 * (basicConstraints), 4.2.1.12 (extKeyUsage emailProtection) and 6 (path validation,
 * done by pkijs's CertificateChainValidationEngine). RFC 7468 (PEM).
 *
 * Key pairs and signatures come from WebCrypto (node:crypto); certificates are built by
 * @peculiar/x509; the otherName is encoded with asn1js. Serial numbers and validity come
 * from the injected Random and Clock.
 */
import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { bareJid, type Jid } from "../core/types.js";
import { toHex } from "../core/bytes.js";
import { cmsEngine, type CmsEnv, parseCertificate, type SmimeIdentity } from "./cms.js";
import { asSmimeError, SmimeError } from "./errors.js";

function ab(u: Uint8Array): ArrayBuffer {
  return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;
}

export const ID_ON_XMPP_ADDR = "1.3.6.1.5.5.7.8.5";
const SAN_OID = "2.5.29.17";
const EMAIL_PROTECTION = "1.3.6.1.5.5.7.3.4";

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export type KeyType = "rsa-2048" | "rsa-3072" | "ec-p256" | "ec-p384";

export interface GenerateOptions {
  /** The XMPP address to bind (the bare JID is used). */
  readonly jid: Jid;
  readonly keyType?: KeyType;
  /** Validity in days from the injected clock's now. Default 365. */
  readonly days?: number;
  /** Issue from this CA instead of self-signing. */
  readonly issuer?: SmimeIdentity;
  /** Make a CA certificate (basicConstraints cA, keyCertSign). */
  readonly ca?: boolean;
  /** Subject common name. Default: the bare JID. */
  readonly commonName?: string;
}

function keyAlgorithm(t: KeyType): RsaHashedKeyGenParams | EcKeyGenParams {
  switch (t) {
    case "rsa-2048":
    case "rsa-3072":
      return {
        name: "RSASSA-PKCS1-v1_5",
        modulusLength: t === "rsa-2048" ? 2048 : 3072,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: "SHA-256",
      };
    case "ec-p256":
      return { name: "ECDSA", namedCurve: "P-256" };
    case "ec-p384":
      return { name: "ECDSA", namedCurve: "P-384" };
  }
}

/** The subjectAltName extension value with one id-on-xmppAddr otherName. */
export function xmppAddrSan(jid: Jid): Uint8Array {
  const otherName = new asn1js.Constructed({
    idBlock: { tagClass: 3, tagNumber: 0 },
    value: [
      new asn1js.ObjectIdentifier({ value: ID_ON_XMPP_ADDR }),
      new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.Utf8String({ value: bareJid(jid) })] }),
    ],
  });
  return new Uint8Array(new asn1js.Sequence({ value: [otherName] }).toBER(false));
}

function escapeDn(s: string): string {
  return s.replace(/([,+"\\<>;=#])/g, "\\$1");
}

/** Generates a key pair and a certificate binding it to `jid` (RFC 3923 section 6.3). */
export async function generateIdentity(o: GenerateOptions, env: CmsEnv): Promise<SmimeIdentity> {
  const keyType = o.keyType ?? "ec-p256";
  const alg = keyAlgorithm(keyType);
  const keys = (await webcrypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = env.clock.now();
  const serial = env.random.bytes(16);
  serial[0] = ((serial[0] ?? 0) & 0x7f) | 0x01; // positive, non-zero, 16 octets
  const isRsa = keyType.startsWith("rsa");
  const usages = o.ca
    ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature
    : x509.KeyUsageFlags.digitalSignature |
      x509.KeyUsageFlags.nonRepudiation |
      (isRsa ? x509.KeyUsageFlags.keyEncipherment : x509.KeyUsageFlags.keyAgreement);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(o.ca === true, undefined, true),
    new x509.KeyUsagesExtension(usages, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (!o.ca) {
    extensions.push(new x509.ExtendedKeyUsageExtension([EMAIL_PROTECTION]));
  }
  extensions.push(new x509.Extension(SAN_OID, false, ab(xmppAddrSan(o.jid))));
  const name = `CN=${escapeDn(o.commonName ?? bareJid(o.jid))}`;
  const signingAlgorithm = isRsa ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "ECDSA", hash: "SHA-256" };
  const validity = {
    serialNumber: toHex(serial),
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (o.days ?? 365) * 86_400_000),
  };
  let cert: x509.X509Certificate;
  if (o.issuer === undefined) {
    cert = await x509.X509CertificateGenerator.createSelfSigned({ ...validity, name, keys, extensions, signingAlgorithm });
  } else {
    const issuerCert = new x509.X509Certificate(ab(o.issuer.certificate));
    const issuerIsRsa = issuerCert.publicKey.algorithm.name.startsWith("RSA");
    const issuerKey = await webcrypto.subtle.importKey(
      "pkcs8",
      ab(o.issuer.privateKey),
      issuerIsRsa ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "ECDSA", namedCurve: (issuerCert.publicKey.algorithm as EcKeyAlgorithm).namedCurve },
      false,
      ["sign"],
    );
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuerCert.publicKey));
    cert = await x509.X509CertificateGenerator.create({
      ...validity,
      subject: name,
      issuer: issuerCert.subject,
      publicKey: keys.publicKey,
      signingKey: issuerKey,
      extensions,
      signingAlgorithm: issuerIsRsa ? { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" } : { name: "ECDSA", hash: "SHA-256" },
    });
  }
  const pkcs8 = new Uint8Array(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
  // An issued certificate travels with its issuer's certificates (RFC 5652 section 5.1:
  // certificates "sufficient to contain certification paths").
  const chain = o.issuer === undefined ? [] : [o.issuer.certificate, ...(o.issuer.chain ?? [])];
  return { certificate: new Uint8Array(cert.rawData), privateKey: pkcs8, ...(chain.length > 0 ? { chain } : {}) };
}

/** The id-on-xmppAddr values of a certificate's subjectAltName (RFC 3923 section 6.3). */
export function xmppAddrs(certDer: Uint8Array): string[] {
  const cert = parseCertificate(certDer);
  const out: string[] = [];
  for (const ext of cert.extensions ?? []) {
    if (ext.extnID !== SAN_OID) continue;
    const asn = asn1js.fromBER(ext.extnValue.valueBlock.valueHexView);
    if (asn.offset === -1 || !(asn.result instanceof asn1js.Sequence)) throw new SmimeError("malformed", "bad subjectAltName");
    for (const gn of asn.result.valueBlock.value) {
      if (gn.idBlock.tagClass !== 3 || gn.idBlock.tagNumber !== 0 || !(gn instanceof asn1js.Constructed)) continue;
      const [oid, value] = gn.valueBlock.value;
      if (!(oid instanceof asn1js.ObjectIdentifier) || oid.valueBlock.toString() !== ID_ON_XMPP_ADDR) continue;
      if (!(value instanceof asn1js.Constructed)) continue;
      const s = value.valueBlock.value[0];
      if (s instanceof asn1js.Utf8String) out.push(s.valueBlock.value);
    }
  }
  return out;
}

/** Compares JIDs as RFC 6122 would after nodeprep/nameprep for ASCII: case-insensitively. */
function sameBareJid(a: string, b: string): boolean {
  return bareJid(a as Jid).toLowerCase() === bareJid(b as Jid).toLowerCase();
}

/** Throws SmimeError("address-mismatch") unless the certificate names `jid`. */
export function checkAddressBinding(certDer: Uint8Array, jid: Jid): void {
  const addrs = xmppAddrs(certDer);
  if (!addrs.some((a) => sameBareJid(a, jid)))
    throw new SmimeError("address-mismatch", addrs.length === 0 ? "certificate has no id-on-xmppAddr" : "certificate is for another address");
}

export interface ValidationOptions {
  /** Trust anchors (DER): CA certificates, or pinned end-entity certificates. */
  readonly anchors: readonly Uint8Array[];
  /** Intermediates (DER) carried in the message or known locally. */
  readonly intermediates?: readonly Uint8Array[];
  /** The time to validate at (ms since the epoch). */
  readonly at: number;
}

/**
 * Validates the certification path from `leaf` to one of the anchors (RFC 5280 section 6)
 * at the given time. A pinned self-signed certificate is its own anchor. Throws
 * SmimeError("untrusted-certificate").
 */
export async function validateChain(leaf: Uint8Array, o: ValidationOptions): Promise<void> {
  if (o.anchors.length === 0) throw new SmimeError("untrusted-certificate", "no trust anchors");
  const cert = parseCertificate(leaf);
  const at = new Date(o.at);
  if (cert.notBefore.value.getTime() > o.at || cert.notAfter.value.getTime() < o.at)
    throw new SmimeError("untrusted-certificate", "certificate outside its validity period");
  const leafHex = toHex(leaf);
  if (o.anchors.some((a) => toHex(a) === leafHex)) return; // pinned
  try {
    const engine = new pkijs.CertificateChainValidationEngine({
      trustedCerts: o.anchors.map(parseCertificate),
      certs: [cert, ...(o.intermediates ?? []).map(parseCertificate)],
      checkDate: at,
    });
    const r = await engine.verify({}, cmsEngine);
    if (!r.result) throw new SmimeError("untrusted-certificate", "no valid path to a trust anchor");
  } catch (e) {
    throw asSmimeError(e, "untrusted-certificate", "path validation failed");
  }
}

// ---------------------------------------------------------------------------------------
// PEM (RFC 7468)

export function toPem(der: Uint8Array, label: "CERTIFICATE" | "PRIVATE KEY"): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Every PEM block with `label` in `text`, as DER. */
export function fromPem(text: string, label: "CERTIFICATE" | "PRIVATE KEY"): Uint8Array[] {
  const out: Uint8Array[] = [];
  const begin = `-----BEGIN ${label}-----`;
  const end = `-----END ${label}-----`;
  let pos = 0;
  for (;;) {
    const b = text.indexOf(begin, pos);
    if (b === -1) break;
    const e = text.indexOf(end, b);
    if (e === -1) throw new SmimeError("malformed", "unterminated PEM block");
    const body = text.slice(b + begin.length, e).replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) throw new SmimeError("malformed", "bad PEM base64");
    out.push(new Uint8Array(Buffer.from(body, "base64")));
    pos = e + end.length;
  }
  return out;
}

/** Reads a certificate given as PEM or DER (import of CA-issued certificates). */
export function importCertificates(data: Uint8Array): Uint8Array[] {
  const text = Buffer.from(data).toString("latin1");
  const pems = text.includes("-----BEGIN CERTIFICATE-----") ? fromPem(text, "CERTIFICATE") : [data];
  for (const d of pems) parseCertificate(d);
  return pems;
}

/** Reads a private key given as PEM or DER PKCS #8. */
export function importPrivateKey(data: Uint8Array): Uint8Array {
  const text = Buffer.from(data).toString("latin1");
  if (text.includes("-----BEGIN PRIVATE KEY-----")) {
    const k = fromPem(text, "PRIVATE KEY")[0];
    if (k === undefined) throw new SmimeError("malformed", "no private key");
    return k;
  }
  if (text.includes("-----BEGIN")) throw new SmimeError("unsupported-algorithm", "only PKCS #8 'PRIVATE KEY' PEM is read");
  return data;
}
