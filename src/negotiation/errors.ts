/**
 * The negotiation layer's error class and the stanza error conditions it maps to.
 *
 * Spec: XEP-0155 v1.2 section 4.3 "Rejecting a Session" (service-unavailable 503 cancel,
 * feature-not-implemented 501 cancel, not-acceptable 406 modify, each with a
 * `<feature xmlns='http://jabber.org/protocol/feature-neg'><field var=.../></feature>`
 * naming the fields) and section 6 (the same errors for renegotiation). RFC 6120 section
 * 8.3.3 (defined conditions and their error types); XEP-0086 (legacy `code` values).
 * XEP-0116 v0.16 section 4.4 shows the same shapes with type='cancel' and no code.
 */

/** The conditions this layer produces (the spec's negotiation errors plus protocol misuse). */
export const NEGOTIATION_CONDITIONS = [
  "feature-not-implemented",
  "not-acceptable",
  "service-unavailable",
  "bad-request",
  "unexpected-request",
  /** Too many negotiations pending (../limits.ts): RFC 6120 8.3.3.18, retry later. */
  "resource-constraint",
] as const;
export type NegotiationCondition = (typeof NEGOTIATION_CONDITIONS)[number];

/** Every RFC 6120 section 8.3.3 stanza error condition (what a peer may send us). */
export const STANZA_ERROR_CONDITIONS = [
  "bad-request",
  "conflict",
  "feature-not-implemented",
  "forbidden",
  "gone",
  "internal-server-error",
  "item-not-found",
  "jid-malformed",
  "not-acceptable",
  "not-allowed",
  "not-authorized",
  "payment-required",
  "policy-violation",
  "recipient-unavailable",
  "redirect",
  "registration-required",
  "remote-server-not-found",
  "remote-server-timeout",
  "resource-constraint",
  "service-unavailable",
  "subscription-required",
  "undefined-condition",
  "unexpected-request",
] as const;
export type StanzaErrorCondition = (typeof STANZA_ERROR_CONDITIONS)[number];

export type StanzaErrorType = "auth" | "cancel" | "continue" | "modify" | "wait";
export const STANZA_ERROR_TYPES: readonly StanzaErrorType[] = ["auth", "cancel", "continue", "modify", "wait"];

export function isStanzaErrorCondition(s: string): s is StanzaErrorCondition {
  return (STANZA_ERROR_CONDITIONS as readonly string[]).includes(s);
}

export function isNegotiationCondition(s: string): s is NegotiationCondition {
  return (NEGOTIATION_CONDITIONS as readonly string[]).includes(s);
}

/**
 * Error type and legacy code per condition, as XEP-0155 section 4.3 shows them
 * (503/cancel, 501/cancel, 406/modify) and XEP-0086 for the two it does not show
 * (bad-request 400/modify; unexpected-request 400/wait; resource-constraint 500/wait).
 */
export const NEGOTIATION_ERROR_TYPES: Readonly<Record<NegotiationCondition, { type: StanzaErrorType; code: string }>> = {
  "feature-not-implemented": { type: "cancel", code: "501" },
  "not-acceptable": { type: "modify", code: "406" },
  "service-unavailable": { type: "cancel", code: "503" },
  "bad-request": { type: "modify", code: "400" },
  "unexpected-request": { type: "wait", code: "400" },
  "resource-constraint": { type: "wait", code: "500" },
};

/** Raised by codecs and commands of this layer; `handle*` methods never let it escape. */
export class NegotiationError extends Error {
  override readonly name = "NegotiationError";
  readonly condition: NegotiationCondition;
  /** The form fields concerned (echoed in the error's `<feature/>` for the two field errors). */
  readonly fields: readonly string[] | undefined;
  constructor(condition: NegotiationCondition, reason: string, fields?: readonly string[]) {
    super(`${condition}: ${reason}`);
    this.condition = condition;
    this.fields = fields;
  }
}
