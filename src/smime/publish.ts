/**
 * Publishing and fetching S/MIME certificates with XEP-0189: each certificate travels as
 * a `<pubkey xmlns='urn:xmpp:pubkey:2'/>` item whose `<key/>` is the certificate's
 * SubjectPublicKeyInfo and whose `<uri/>` is an RFC 2397 `data:` URI holding the
 * certificate itself (and its chain), so every XEP-0189 reader sees an ordinary key and
 * an RFC 3923 client gets the certificate it needs to encrypt and to check signatures.
 *
 * Spec:
 * - XEP-0189 v0.14 section 3 (`<pubkey/>` children `<begin/>`, `<end/>` "UTC DateTime",
 *   `<jid/>` "the XMPP address associated with this key", `<uri/>` "A URI at which the
 *   key can be retrieved outside the XMPP network; OPTIONAL"), sections 7-8 (the `<key/>`
 *   form: Base64 DER SubjectPublicKeyInfo with a sibling `<print/>`), section 2 ("A user
 *   might have more than one key (e.g., different keys for different clients)": one item
 *   per certificate, ItemID derived from the key), section 6 (PEP; XEP-0222 persistent
 *   items), section 8 (direct request), section 12 ("each client SHOULD maintain its own
 *   secure library of the public keys it associates with other users": fetched
 *   certificates are checked here, trusted by the CertificateStore).
 * - draft-meyer-xmpp-e2e-encryption-02 section 5.1 / XEP-0189 v0.9: the `urn:xmpp:pubkey:0`
 *   answer `<keyinfo><x509cert>Base64 DER</x509cert></keyinfo>`, which
 *   {@link certificateResponder} also serves.
 * - RFC 3923 section 6.2 ("the certificate MAY be retrieved ...") and 6.3 (the certificate
 *   names the XMPP address in id-on-xmppAddr: a fetched certificate must name the owner
 *   of the node it came from).
 * - RFC 2397 (`data:[<mediatype>][;base64],<data>`); RFC 2585 section 4.1
 *   (`application/pkix-cert`: one DER certificate); RFC 8551 section 3.2.2 and RFC 5652
 *   section 5 (`application/pkcs7-mime; smime-type=certs-only`: a SignedData with no
 *   signers carrying certificates, used when there is a chain to send).
 *
 * Our choices (docs/object-encryption.md): XEP-0189 v0.14 has no element for an X.509
 * certificate, so the certificate rides in `<uri/>` as a data: URI (a URI "at which the
 * key can be retrieved", and a reader that ignores it still has the key); ItemID
 * `x509-` + the first 20 octets of SHA-256(SPKI) in hex, so a device republishing the
 * same key replaces its own item and devices do not evict each other (publish-options
 * `pubsub#max_items`, default {@link DEFAULT_MAX_ITEMS}); the `<print/>` is the XEP-0116
 * fingerprint for RSA keys (as src/pubkey writes) and absent for EC keys, which have no
 * XEP-0116 fingerprint. Chain validation against trust anchors is NOT done here: it is the
 * CertificateStore's and ObjectSession's, as for any other certificate.
 */
import "reflect-metadata";
import { createHash } from "node:crypto";
import * as asn1js from "asn1js";
import * as pkijs from "pkijs";
import { fromBase64, toBase64 } from "../core/bytes.js";
import { bareJid, type FullJid, type Jid } from "../core/types.js";
import type { CryptoProvider } from "../crypto/provider.js";
import type { AccessModel, PubkeyResponder } from "../pubkey/client.js";
import type { LegacyPubKeys, PubKey } from "../pubkey/codec.js";
import { PubkeyError } from "../pubkey/errors.js";
import { hashOfAlgo, keyPrint, printMatches, xmppDateTime } from "../pubkey/keys.js";
import type { PubkeyService } from "../pubkey/service.js";
import { checkAddressBinding, xmppAddrs } from "./certs.js";
import { OID, parseCertificate } from "./cms.js";
import { asSmimeError, SmimeError } from "./errors.js";

/** RFC 2585 section 4.1: one DER certificate. */
export const PKIX_CERT_URI_PREFIX = "data:application/pkix-cert;base64,";
/** RFC 8551 section 3.2.2: a certs-only SignedData (leaf first, then its chain). */
export const CERTS_ONLY_URI_PREFIX = "data:application/pkcs7-mime;smime-type=certs-only;base64,";
/** Room for several devices' certificates and an ESession key ("current") on one node. */
export const DEFAULT_MAX_ITEMS = 16;
/** Prefix of the ItemIDs of certificate items. */
export const CERTIFICATE_ITEM_PREFIX = "x509-";

/** A certificate with the intermediates needed to reach its issuer's anchor. */
export interface CertificateWithChain {
  /** DER X.509, the end-entity certificate. */
  readonly certificate: Uint8Array;
  /** DER intermediates, leaf's issuer first (may be empty). */
  readonly chain: readonly Uint8Array[];
}

function ab(u: Uint8Array): ArrayBuffer {
  return u.buffer.slice(u.byteOffset, u.byteOffset + u.byteLength) as ArrayBuffer;
}

function spkiOf(certDer: Uint8Array): Uint8Array {
  return new Uint8Array(parseCertificate(certDer).subjectPublicKeyInfo.toSchema().toBER(false));
}

function isRsa(certDer: Uint8Array): boolean {
  return parseCertificate(certDer).subjectPublicKeyInfo.algorithm.algorithmId === OID.rsaEncryption;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The ItemID of a certificate's item: derived from its key, so a re-issued certificate for the same key replaces it. */
export function certificateItemId(certDer: Uint8Array): string {
  return CERTIFICATE_ITEM_PREFIX + createHash("sha256").update(spkiOf(certDer)).digest("hex").slice(0, 40);
}

/** The data: URI carrying a certificate (and its chain, as certs-only PKCS #7). */
export function certificateUri(c: CertificateWithChain): string {
  parseCertificate(c.certificate);
  if (c.chain.length === 0) return PKIX_CERT_URI_PREFIX + toBase64(c.certificate);
  const sd = new pkijs.SignedData({
    version: 1,
    encapContentInfo: new pkijs.EncapsulatedContentInfo({ eContentType: OID.data }),
    certificates: [c.certificate, ...c.chain].map(parseCertificate),
    signerInfos: [],
  });
  const ci = new pkijs.ContentInfo({ contentType: OID.signedData, content: sd.toSchema(true) });
  return CERTS_ONLY_URI_PREFIX + toBase64(new Uint8Array(ci.toSchema().toBER(false)));
}

/** Reads a {@link certificateUri} back. Throws SmimeError("malformed") for anything else. */
export function certificatesFromUri(uri: string): CertificateWithChain {
  const pkix = uri.startsWith(PKIX_CERT_URI_PREFIX);
  const certsOnly = uri.startsWith(CERTS_ONLY_URI_PREFIX);
  if (!pkix && !certsOnly) throw new SmimeError("malformed", "<uri/> is not a certificate data: URI");
  const der = fromBase64(uri.slice(pkix ? PKIX_CERT_URI_PREFIX.length : CERTS_ONLY_URI_PREFIX.length));
  if (der === undefined || der.length === 0) throw new SmimeError("malformed", "certificate data: URI is not Base64");
  if (pkix) {
    parseCertificate(der);
    return { certificate: der, chain: [] };
  }
  let certs: Uint8Array[];
  try {
    const asn = asn1js.fromBER(ab(der));
    if (asn.offset === -1 || asn.result.error) throw new SmimeError("malformed", "bad BER");
    const ci = new pkijs.ContentInfo({ schema: asn.result });
    if (ci.contentType !== OID.signedData) throw new SmimeError("malformed", "certs-only is not a SignedData");
    const sd = new pkijs.SignedData({ schema: ci.content });
    certs = (sd.certificates ?? [])
      .filter((c): c is pkijs.Certificate => c instanceof pkijs.Certificate)
      .map((c) => new Uint8Array(c.toSchema().toBER(false)));
  } catch (e) {
    throw asSmimeError(e, "malformed", "bad certs-only SignedData");
  }
  const [certificate, ...chain] = certs;
  if (certificate === undefined) throw new SmimeError("malformed", "certs-only SignedData carries no certificate");
  return { certificate, chain };
}

/**
 * The `<pubkey/>` for one of our certificates: `<begin/>`/`<end/>` from its validity,
 * `<jid/>` its (first) id-on-xmppAddr, `<key/>` its SPKI, `<print/>` (RSA only) and the
 * certificate in `<uri/>`. Throws SmimeError("address-mismatch") for a certificate that
 * names no XMPP address.
 */
export function certificatePubKey(crypto: CryptoProvider, c: CertificateWithChain): PubKey {
  const cert = parseCertificate(c.certificate);
  const jid = xmppAddrs(c.certificate)[0];
  if (jid === undefined) throw new SmimeError("address-mismatch", "certificate has no id-on-xmppAddr");
  const spki = spkiOf(c.certificate);
  let print: PubKey["print"];
  if (isRsa(c.certificate)) {
    try {
      print = { algo: "sha-256", value: keyPrint(crypto, spki) };
    } catch (e) {
      throw asSmimeError(e, "unsupported-algorithm", "RSA key refused by the key policy");
    }
  }
  return {
    type: "pubkey",
    begin: xmppDateTime(cert.notBefore.value.getTime()),
    end: xmppDateTime(cert.notAfter.value.getTime()),
    jid: bareJid(jid as Jid),
    material: { kind: "key", key: toBase64(spki) },
    ...(print === undefined ? {} : { print }),
    uri: certificateUri(c),
  };
}

/** A certificate found in a `<pubkey/>`, checked against its owner. */
export interface FetchedCertificate extends CertificateWithChain {
  /** The PEP ItemID ("" for a direct answer). */
  readonly itemId: string;
}

/**
 * Extracts and checks the certificate of a received `<pubkey/>` for `owner`: the `<uri/>`
 * holds a certificate whose SPKI is the `<key/>`, whose id-on-xmppAddr names `owner`
 * (RFC 3923 section 6.3), whose `<jid/>` (if any) is `owner`, whose `<print/>` (if any)
 * matches, and which is within its validity at `now`. Throws SmimeError: "malformed"
 * (no or bad certificate), "address-mismatch", "untrusted-certificate" (expired or not
 * yet valid), "signature-unverified" (key or print mismatch).
 */
export function certificateFromPubKey(crypto: CryptoProvider, pk: PubKey, owner: Jid, now: number, itemId = ""): FetchedCertificate {
  if (pk.uri === undefined) throw new SmimeError("malformed", "<pubkey/> carries no certificate");
  const c = certificatesFromUri(pk.uri);
  const spki = spkiOf(c.certificate);
  if (pk.material.kind !== "key") throw new SmimeError("signature-unverified", "certificate <pubkey/> without a <key/>");
  const key = fromBase64(pk.material.key);
  if (key === undefined || !sameBytes(key, spki)) throw new SmimeError("signature-unverified", "<key/> is not the certificate's key");
  if (pk.print !== undefined) {
    let ok = false;
    try {
      ok = printMatches(pk.print, keyPrint(crypto, spki, hashOfAlgo(pk.print.algo)));
    } catch (e) {
      if (!(e instanceof PubkeyError)) throw e;
    }
    if (!ok) throw new SmimeError("signature-unverified", "<print/> does not match the certificate's key");
  }
  const bare = bareJid(owner);
  if (pk.jid !== undefined && pk.jid.toLowerCase() !== bare.toLowerCase()) throw new SmimeError("address-mismatch", "<jid/> is not the node's owner");
  checkAddressBinding(c.certificate, bare);
  const cert = parseCertificate(c.certificate);
  if (cert.notBefore.value.getTime() > now || cert.notAfter.value.getTime() < now)
    throw new SmimeError("untrusted-certificate", "certificate outside its validity period");
  return { ...c, itemId };
}

export interface PublishCertificateOptions {
  /** XEP-0222 access model; default "presence" (contacts with a subscription). */
  readonly accessModel?: AccessModel;
  /** `pubsub#max_items` of the node; default {@link DEFAULT_MAX_ITEMS}. */
  readonly maxItems?: number;
  readonly crypto: CryptoProvider;
}

/**
 * Publishes our certificate to our XEP-0189 pubkey node. Resolves the ItemID. Rejects
 * with SmimeError for an unusable certificate, PubkeyError for what the server answers
 * (e.g. "conflict" when the node exists with another configuration: XEP-0060
 * precondition-not-met).
 */
export async function publishCertificate(service: PubkeyService, c: CertificateWithChain, o: PublishCertificateOptions): Promise<string> {
  const pk = certificatePubKey(o.crypto, c);
  return service.publish(pk, {
    itemId: certificateItemId(c.certificate),
    accessModel: o.accessModel ?? "presence",
    maxItems: o.maxItems ?? DEFAULT_MAX_ITEMS,
  });
}

/** Removes one of our certificates from the node (after a key rotation or compromise). */
export async function retractCertificate(service: PubkeyService, certDer: Uint8Array): Promise<void> {
  await service.retract("pubkey", certificateItemId(certDer));
}

export interface FetchedCertificates {
  /** Certificates that passed {@link certificateFromPubKey}, in node order. */
  readonly certificates: readonly FetchedCertificate[];
  /** Items that carry a certificate but failed a check (never used). */
  readonly rejected: readonly { readonly itemId: string; readonly error: SmimeError | PubkeyError }[];
}

/**
 * Fetches `owner`'s certificates from their XEP-0189 pubkey node. Items without a
 * certificate (plain XEP-0189 / ESession keys) are skipped; items whose certificate
 * fails a check are reported in `rejected`. Rejects with PubkeyError for what the server
 * answers (forbidden without a presence subscription, item-not-found, timeout...).
 */
export async function fetchCertificates(service: PubkeyService, owner: Jid, o: { readonly crypto: CryptoProvider; readonly now: number }): Promise<FetchedCertificates> {
  const items = await service.retrieve(bareJid(owner), "pubkey");
  const certificates: FetchedCertificate[] = [];
  const rejected: { itemId: string; error: SmimeError | PubkeyError }[] = [];
  for (const item of items) {
    const p = item.payload;
    if (p instanceof PubkeyError) {
      if (item.id.startsWith(CERTIFICATE_ITEM_PREFIX)) rejected.push({ itemId: item.id, error: p });
      continue;
    }
    if (p.type !== "pubkey" || p.uri === undefined || !p.uri.startsWith("data:")) continue;
    try {
      certificates.push(certificateFromPubKey(o.crypto, p, owner, o.now, item.id));
    } catch (e) {
      rejected.push({ itemId: item.id, error: asSmimeError(e, "malformed", "bad certificate item") });
    }
  }
  return { certificates, rejected };
}

/**
 * Asks a client directly for its certificate (XEP-0189 section 8). Rejects with
 * PubkeyError (transport, item-not-found) or SmimeError (the answer has no usable
 * certificate for the peer's bare JID).
 */
export async function requestCertificate(service: PubkeyService, peer: FullJid, o: { readonly crypto: CryptoProvider; readonly now: number }): Promise<FetchedCertificate> {
  const pk = await service.request(peer);
  return certificateFromPubKey(o.crypto, pk, peer, o.now);
}

/**
 * A PubkeyService responder that answers direct requests with our certificate: the
 * section 8 `<pubkey/>` and the XTLS draft's `urn:xmpp:pubkey:0` `<keyinfo><x509cert/>`
 * (leaf, then chain). `current()` returns the certificate to serve (undefined:
 * item-not-found).
 */
export function certificateResponder(crypto: CryptoProvider, current: () => CertificateWithChain | undefined): PubkeyResponder {
  return {
    pubkey: () => {
      const c = current();
      return c === undefined ? undefined : certificatePubKey(crypto, c);
    },
    legacy: (): LegacyPubKeys | undefined => {
      const c = current();
      if (c === undefined) return undefined;
      return { type: "pubkeys-legacy", keyinfos: [{ x509certs: [c.certificate, ...c.chain].map(toBase64), keyValues: [] }] };
    },
  };
}
