/**
 * The XTLS layer's one error class; each condition maps to the Jingle reason the session
 * is terminated with.
 *
 * Spec: draft-meyer-xmpp-e2e-encryption-02
 * - section 6: "If either client cannot verify the certificate of the peer or receives
 *   an invalid message on the TLS layer, it MUST terminate the Jingle session
 *   immediately by sending a Jingle session-terminate message that includes a Jingle
 *   reason of <security-error/>" (conditions `peer-unverified`, `fingerprint-mismatch`,
 *   `tls-failure`);
 * - section 3 initiator rule 1: session-accept without <security/> (`no-xtls-support`,
 *   the downgrade of section 8.3);
 * - section 8.1: srp is mandatory to implement; until the TLS-SRP layer is supplied,
 *   selecting it ends with `srp-unavailable`.
 * Messages never contain passwords, keys or application data.
 */
import type { ReasonCondition } from "../jingle/codec.js";

export const XTLS_CONDITIONS = {
  /** We cannot verify the peer's certificate (not pinned, no password, no leap of faith). */
  "peer-unverified": "security-error",
  /** The certificate in the TLS handshake is not the one announced in Jingle. */
  "fingerprint-mismatch": "security-error",
  /** The TLS handshake or a record failed (bad MAC, alert, protocol error). */
  "tls-failure": "security-error",
  /** The peer answered without <security/> (no XTLS, or a downgrade attack). */
  "no-xtls-support": "security-error",
  /** The srp method was chosen but no TLS-SRP implementation is plugged in. */
  "srp-unavailable": "security-error",
  /** The peer terminated the session (its reason is in `reason`). */
  "terminated": "general-error",
  /** The user or peer declined the session. */
  "declined": "decline",
  /** A content we cannot use (application or transport). */
  "unsupported": "unsupported-applications",
  /** The bytestream underneath failed. */
  "transport-failed": "failed-transport",
  "timeout": "timeout",
  /** A stanza the user asked to protect cannot be protected (no tunnel). */
  "not-protected": "security-error",
} as const satisfies Record<string, ReasonCondition>;
export type XtlsCondition = keyof typeof XTLS_CONDITIONS;

export class XtlsError extends Error {
  override readonly name = "XtlsError";
  constructor(
    readonly condition: XtlsCondition,
    detail?: string,
    /** The Jingle reason the session ended with (sent or received). */
    readonly reason: ReasonCondition = XTLS_CONDITIONS[condition],
    options?: { cause?: unknown },
  ) {
    super(detail === undefined ? condition : `${condition}: ${detail}`, options);
  }
}
