/**
 * The one error class of the object-encryption layer and its mapping to stanza errors.
 *
 * Spec: draft-ietf-xmpp-e2e-03 (published as RFC 3923), section 2 requirement 1 (the
 * RFC 2779 requirements: tamper detection 2.5.1, replay detection 2.5.2, confidentiality
 * 2.5.3) and the recipient error handling of RFC 3923 section 7: a stanza that cannot be
 * decrypted is answered with <bad-request/> plus the application condition
 * <decryption-failed/>, one whose signature cannot be verified with <not-acceptable/> plus
 * <signature-unverified/>, one whose timestamp is out of range with <not-acceptable/> plus
 * <bad-timestamp/> (all in urn:ietf:params:xml:ns:xmpp-e2e). RFC 6120 section 8.3 for the
 * stanza error syntax. Messages never contain key material or user content.
 */

export const SMIME_ERROR_CONDITIONS = [
  /** Malformed MIME, CPIM, PIDF, base64 or ASN.1 (anything we cannot parse). */
  "malformed",
  /** An algorithm, key type or structure we do not implement (or refuse, e.g. PKCS#1 v1.5 key transport). */
  "unsupported-algorithm",
  /** None of the recipient infos is for one of our certificates, or the key cannot unwrap it. */
  "decryption-failed",
  /** The signature or the message digest does not verify (tampered object). */
  "signature-unverified",
  /** The signer's certificate does not chain to a trusted anchor, or is outside its validity. */
  "untrusted-certificate",
  /** The certificate's id-on-xmppAddr, the CPIM From and the stanza 'from' disagree. */
  "address-mismatch",
  /** The object is addressed (CPIM To) to someone else than the receiving entity. */
  "wrong-recipient",
  /** The CPIM DateTime is missing or outside the accepted window. */
  "bad-timestamp",
  /** The object was already seen (same sender and Content-ID or digest). */
  "replayed",
  /** The policy requires a signature (or encryption) and the object has none. */
  "not-protected",
  /** No certificate is known for a recipient we were asked to encrypt to. */
  "no-recipient-certificate",
  /** The recipient answered that it does not support the protocol. */
  "recipient-unsupported",
  /** A caller error: bad arguments (e.g. encrypting broadcast presence). */
  "bad-request",
] as const;
export type SmimeErrorCondition = (typeof SMIME_ERROR_CONDITIONS)[number];

export class SmimeError extends Error {
  override readonly name = "SmimeError";
  readonly condition: SmimeErrorCondition;
  constructor(condition: SmimeErrorCondition, detail?: string, options?: { cause?: unknown }) {
    super(detail === undefined ? condition : `${condition}: ${detail}`, options);
    this.condition = condition;
  }
}

export function isSmimeError(e: unknown): e is SmimeError {
  return e instanceof SmimeError;
}

/** Wraps anything thrown by a parser or library into a typed error (never leaks content). */
export function asSmimeError(e: unknown, condition: SmimeErrorCondition, detail: string): SmimeError {
  if (e instanceof SmimeError) return e;
  return new SmimeError(condition, detail, { cause: e });
}

/** What a receiving entity answers for each condition (RFC 3923 section 7). */
export interface StanzaErrorMapping {
  readonly type: "cancel" | "modify" | "auth";
  /** RFC 6120 defined condition. */
  readonly condition: string;
  /** Application condition in urn:ietf:params:xml:ns:xmpp-e2e, if the spec defines one. */
  readonly e2e?: "decryption-failed" | "signature-unverified" | "bad-timestamp";
}

/**
 * The stanza error for a rejected object, or undefined when the receiver stays silent:
 * replays are dropped without an answer (an answer would let whoever replays the object
 * bounce errors at its real sender).
 */
export function stanzaErrorFor(c: SmimeErrorCondition): StanzaErrorMapping | undefined {
  switch (c) {
    case "decryption-failed":
      return { type: "modify", condition: "bad-request", e2e: "decryption-failed" };
    case "signature-unverified":
    case "untrusted-certificate":
    case "address-mismatch":
      return { type: "modify", condition: "not-acceptable", e2e: "signature-unverified" };
    case "bad-timestamp":
      return { type: "modify", condition: "not-acceptable", e2e: "bad-timestamp" };
    case "malformed":
    case "not-protected":
    case "bad-request":
      return { type: "modify", condition: "bad-request" };
    case "unsupported-algorithm":
      return { type: "cancel", condition: "feature-not-implemented" };
    case "wrong-recipient":
      return { type: "modify", condition: "not-acceptable" };
    case "replayed":
    case "no-recipient-certificate":
    case "recipient-unsupported":
      return undefined;
  }
}
