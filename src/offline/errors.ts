/**
 * The offline/multi-device layer's error: one class with a typed condition and the XMPP
 * stanza error condition it maps to.
 *
 * Spec: XEP-0187 v0.5 sections 3.2-3.4 (options that cannot be used: "MUST NOT send
 * encrypted stanzas to her"; an offline session Alice cannot accept: "terminate the
 * ESession without sending an error"), RFC 6120 section 8.3.3 (stanza error conditions).
 * Messages never contain key material or content.
 */

export type OfflineCondition =
  /** The published options are malformed. */
  | "bad-options"
  /** The options have expired (XEP-0187 3.2). */
  | "expired"
  /** No signature of the options verifies with a key we trust (XEP-0187 3.2). */
  | "unsigned"
  /** We support none of the offered values of some field (XEP-0187 3.2). */
  | "unsupported"
  /**
   * The sender chose a value the publisher did not offer (XEP-0187 3.3: Bob's form is an
   * XEP-0116 response, whose every value is chosen from Alice's options; XEP-0116 answers
   * such a response with not-acceptable).
   */
  | "not-offered"
  /** The peer has published no usable options. */
  | "no-options"
  /** The offline `<init/>` form is malformed. */
  | "bad-init"
  /** The one-time options named by the init are unknown or already used (XEP-0187 3.4, 6.1). */
  | "unknown-options"
  /** A d or N_B value was seen before (XEP-0187 6.1 replay). */
  | "replayed"
  /** The sender's identity (mac/signature) does not verify. */
  | "identity-mismatch"
  /** An iq to the server failed or timed out. */
  | "server";

export type OfflineStanzaCondition = "not-acceptable" | "item-not-found" | "bad-request" | "feature-not-implemented" | "service-unavailable";

const MAP: Record<OfflineCondition, OfflineStanzaCondition> = {
  "bad-options": "bad-request",
  expired: "not-acceptable",
  unsigned: "not-acceptable",
  unsupported: "feature-not-implemented",
  "not-offered": "not-acceptable",
  "no-options": "item-not-found",
  "bad-init": "bad-request",
  "unknown-options": "item-not-found",
  replayed: "not-acceptable",
  "identity-mismatch": "not-acceptable",
  server: "service-unavailable",
};

export class OfflineError extends Error {
  override readonly name = "OfflineError";
  constructor(
    readonly condition: OfflineCondition,
    detail?: string,
  ) {
    super(detail ? `${condition}: ${detail}` : condition);
  }
  get stanzaCondition(): OfflineStanzaCondition {
    return MAP[this.condition];
  }
}
