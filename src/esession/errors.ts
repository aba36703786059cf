/**
 * The ESession layer's error: one class, a typed condition, and the XMPP stanza error
 * condition it maps to.
 *
 * Spec: XEP-0116 v0.16 section 4 / XEP-0217 (feature-not-implemented, not-acceptable
 * naming fields, "feature" errors during identity verification); XEP-0200 v0.2 section 6
 * (a bad MAC or unparsable decrypted XML terminates the session, optionally with
 * not-acceptable). Messages never contain key material or plaintext.
 */

export type ESessionCondition =
  /** An option the peer requires is not supported (XEP-0116 4.x). */
  | "feature-not-implemented"
  /** A negotiated value is unacceptable (names the fields). */
  | "not-acceptable"
  /** The peer's identity (M or mac) did not verify. */
  | "identity-mismatch"
  /** A DH value failed its range or commitment check. */
  | "bad-dh-value"
  /** XEP-0200 MAC mismatch: tampered, replayed, reordered or out-of-sync stanza. */
  | "bad-mac"
  /** Decrypted content is not well-formed XML or not UTF-8. */
  | "bad-content"
  /** A stanza arrived that does not fit the session state. */
  | "unexpected-request"
  /** Malformed protocol element. */
  | "bad-request"
  /** The session was asked to protect something it cannot (type not negotiated, ended). */
  | "not-protected"
  /** The XEP-0200 re-key limit would be exceeded and re-keying is not allowed. */
  | "rekey-limit";

export type StanzaErrorCondition =
  | "feature-not-implemented"
  | "not-acceptable"
  | "bad-request"
  | "unexpected-request"
  | "service-unavailable";

export const STANZA_CONDITION: Record<ESessionCondition, StanzaErrorCondition> = {
  "feature-not-implemented": "feature-not-implemented",
  "not-acceptable": "not-acceptable",
  "identity-mismatch": "feature-not-implemented",
  "bad-dh-value": "not-acceptable",
  "bad-mac": "not-acceptable",
  "bad-content": "not-acceptable",
  "unexpected-request": "unexpected-request",
  "bad-request": "bad-request",
  "not-protected": "not-acceptable",
  "rekey-limit": "not-acceptable",
};

export class ESessionError extends Error {
  override readonly name = "ESessionError";
  constructor(
    readonly condition: ESessionCondition,
    detail?: string,
    /** Form fields the error is about (not-acceptable / feature-not-implemented). */
    readonly fields: readonly string[] = [],
  ) {
    super(detail ? `${condition}: ${detail}` : condition);
  }
  get stanzaCondition(): StanzaErrorCondition {
    return STANZA_CONDITION[this.condition];
  }
}
