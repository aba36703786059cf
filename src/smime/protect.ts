/**
 * S/MIME layering of a MIME entity: sign (multipart/signed), then encrypt
 * (application/pkcs7-mime), and the reverse with verification.
 *
 * Spec: draft-ietf-xmpp-e2e-03 section 3 step 2 ("Encrypt and/or sign both the headers
 * and content of the Message/CPIM object") and section 4 step 2; appendix B.3 ("Specified
 * order of encrypting and signing"), which RFC 3923 section 6.5 states as "it SHOULD be
 * signed first, then encrypted": the multipart/signed entity is what gets enveloped.
 * RFC 1847 section 2.1 (multipart/signed), RFC 5751 sections 3.2-3.5 (application/
 * pkcs7-mime smime-type=enveloped-data, detached signatures with micalg), RFC 8551
 * section 3.2.2 (smime-type=authEnveloped-data for AES-GCM). RFC 3923 section 6.6
 * (include the signer's certificate).
 *
 * Both directions work on canonical CRLF text; binary CMS is base64 in the MIME body.
 */
import { fromUtf8, utf8 } from "../core/bytes.js";
import { toHex } from "../core/bytes.js";
import {
  type CmsEnv,
  type ContentCipher,
  type DigestName,
  envelope,
  openEnvelope,
  type SmimeIdentity,
  signDetached,
  type VerifiedSignature,
  verifyDetached,
} from "./cms.js";
import { asSmimeError, SmimeError } from "./errors.js";
import {
  buildMultipartSigned,
  buildPkcs7Mime,
  canonicalize,
  contentTypeOf,
  decodeBase64Body,
  headerValue,
  type MicAlg,
  parseEntity,
  splitMultipart,
} from "./mime.js";

export interface ProtectOptions {
  /** Sign with this identity (multipart/signed). */
  readonly signer?: SmimeIdentity;
  /** Encrypt to these certificates (DER); include the sender's own to read it back on other devices. */
  readonly recipients?: readonly Uint8Array[];
  /** Default aes-128-cbc (RFC 3923 section 6.10 mandatory-to-implement); GCM gives AuthEnvelopedData. */
  readonly cipher?: ContentCipher;
  readonly digest?: DigestName;
  /** Default true (RFC 3923 section 6.6). */
  readonly includeCertificates?: boolean;
}

const MICALG: Record<DigestName, MicAlg> = { "sha-256": "sha-256", "sha-384": "sha-384", "sha-512": "sha-512" };

/** Signs and/or encrypts a canonical MIME entity, sign first (RFC 3923 section 6.5). */
export async function protectEntity(entity: string, o: ProtectOptions, env: CmsEnv): Promise<string> {
  let current = canonicalize(entity);
  if (o.signer === undefined && (o.recipients === undefined || o.recipients.length === 0))
    throw new SmimeError("bad-request", "neither signing nor encrypting");
  if (o.signer !== undefined) {
    const digest = o.digest ?? "sha-256";
    const sig = await signDetached(utf8(current), o.signer, env, {
      digest,
      ...(o.includeCertificates === undefined ? {} : { includeCertificates: o.includeCertificates }),
    });
    const boundary = `----=_smime_${toHex(env.random.bytes(12))}`;
    current = buildMultipartSigned(current, sig, MICALG[digest], boundary);
  }
  if (o.recipients !== undefined && o.recipients.length > 0) {
    const cipher = o.cipher ?? "aes-128-cbc";
    const der = envelope(utf8(current), o.recipients, cipher, env);
    current = buildPkcs7Mime(der, cipher.endsWith("gcm") ? "authEnveloped-data" : "enveloped-data");
  }
  return current;
}

export type SmimeLayer = "signed" | "enveloped" | "authEnveloped";

export interface UnprotectedEntity {
  /** The innermost canonical entity (e.g. the Message/CPIM object). */
  readonly entity: string;
  /** Outermost first. */
  readonly layers: readonly SmimeLayer[];
  readonly signature?: VerifiedSignature;
  readonly encryption?: { readonly cipher: ContentCipher; readonly recipient: Uint8Array };
}

export interface UnprotectOptions {
  /** Our identities (decryption keys): every device certificate we hold. */
  readonly identities: readonly SmimeIdentity[];
  /** Certificates that may be the signer's when the SignedData does not carry it. */
  readonly extraCertificates?: readonly Uint8Array[];
}

const MAX_LAYERS = 4;

/**
 * Removes the S/MIME layers of `smime` (decrypting and verifying) until a non-S/MIME
 * entity remains. The signature's cryptographic validity is checked here; trust in the
 * signer and the address binding are the caller's (see ./session.ts).
 */
export async function unprotectEntity(smime: string, o: UnprotectOptions): Promise<UnprotectedEntity> {
  let current = canonicalize(smime);
  const layers: SmimeLayer[] = [];
  let signature: VerifiedSignature | undefined;
  let encryption: UnprotectedEntity["encryption"];
  for (let depth = 0; depth <= MAX_LAYERS; depth++) {
    const entity = parseEntity(current);
    const ct = contentTypeOf(entity);
    if (ct.type === "multipart/signed") {
      if (signature !== undefined) throw new SmimeError("unsupported-algorithm", "nested signatures");
      const protocol = (ct.params.protocol ?? "").toLowerCase();
      if (protocol !== "application/pkcs7-signature" && protocol !== "application/x-pkcs7-signature")
        throw new SmimeError("unsupported-algorithm", "multipart/signed protocol is not S/MIME");
      const parts = splitMultipart(entity.body, ct.params.boundary ?? "");
      const [content, sigPart] = parts;
      if (parts.length !== 2 || content === undefined || sigPart === undefined)
        throw new SmimeError("malformed", "multipart/signed needs exactly two parts");
      const sigEntity = parseEntity(sigPart);
      const st = contentTypeOf(sigEntity).type;
      if (st !== "application/pkcs7-signature" && st !== "application/x-pkcs7-signature")
        throw new SmimeError("malformed", "second part is not a signature");
      const cte = (headerValue(sigEntity.headers, "content-transfer-encoding") ?? "base64").toLowerCase();
      if (cte !== "base64") throw new SmimeError("unsupported-algorithm", "signature transfer encoding");
      signature = await verifyDetached(decodeBase64Body(sigEntity.body), utf8(content), o.extraCertificates ?? []);
      layers.push("signed");
      current = content;
      continue;
    }
    if (ct.type === "application/pkcs7-mime" || ct.type === "application/x-pkcs7-mime") {
      const smimeType = (ct.params["smime-type"] ?? "").toLowerCase();
      if (smimeType !== "enveloped-data" && smimeType !== "authenveloped-data")
        throw new SmimeError("unsupported-algorithm", "only enveloped-data and authEnveloped-data are read");
      if (encryption !== undefined) throw new SmimeError("unsupported-algorithm", "nested encryption");
      const cte = (headerValue(entity.headers, "content-transfer-encoding") ?? "base64").toLowerCase();
      if (cte !== "base64") throw new SmimeError("unsupported-algorithm", "envelope transfer encoding");
      const opened = openEnvelope(decodeBase64Body(entity.body), o.identities);
      encryption = { cipher: opened.cipher, recipient: opened.recipient };
      layers.push(opened.cipher.endsWith("gcm") ? "authEnveloped" : "enveloped");
      try {
        current = canonicalize(fromUtf8(opened.content));
      } catch (e) {
        throw asSmimeError(e, "malformed", "decrypted content is not UTF-8");
      }
      continue;
    }
    return {
      entity: current,
      layers,
      ...(signature === undefined ? {} : { signature }),
      ...(encryption === undefined ? {} : { encryption }),
    };
  }
  throw new SmimeError("malformed", "too many S/MIME layers");
}
