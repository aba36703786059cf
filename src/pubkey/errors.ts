/**
 * The pubkey layer's one error class, with the XMPP stanza error condition each case
 * maps to.
 *
 * Spec: XEP-0189 v0.14 (payload syntax -> bad-request; an unknown payload ->
 * feature-not-implemented; no key to return -> item-not-found), XEP-0060 section 6.5.9 /
 * 7.1.3 (PEP retrieval and publish errors: item-not-found, forbidden, not-authorized,
 * service-unavailable, ...), RFC 6120 section 8.3.3 (stanza error conditions). A request
 * that is not answered in time is "timeout" (no stanza error).
 */

export const PUBKEY_ERROR_CONDITIONS = [
  "bad-request",
  "feature-not-implemented",
  "item-not-found",
  "forbidden",
  "not-authorized",
  "not-allowed",
  "service-unavailable",
  "remote-server-not-found",
  "internal-server-error",
  "conflict",
  /** The signature or print of a revocation / attestation / pubkey does not verify. */
  "bad-signature",
  /** No answer within the request timeout. */
  "timeout",
  /** The connection closed before the answer. */
  "closed",
  /** Any other stanza error condition (kept in `stanzaCondition`). */
  "other",
] as const;
export type PubkeyErrorCondition = (typeof PUBKEY_ERROR_CONDITIONS)[number];

export class PubkeyError extends Error {
  override readonly name = "PubkeyError";
  constructor(
    readonly condition: PubkeyErrorCondition,
    detail?: string,
    /** The stanza error condition as received, for "other". */
    readonly stanzaCondition?: string,
  ) {
    super(`${condition}${detail === undefined ? "" : `: ${detail}`}`);
  }
}

/** Maps a received stanza error condition to ours. */
export function pubkeyConditionOf(stanzaCondition: string): PubkeyErrorCondition {
  return (PUBKEY_ERROR_CONDITIONS as readonly string[]).includes(stanzaCondition) && !["bad-signature", "timeout", "closed", "other"].includes(stanzaCondition)
    ? (stanzaCondition as PubkeyErrorCondition)
    : "other";
}
