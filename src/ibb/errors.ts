/**
 * The in-band bytestream layer's one error class.
 *
 * Spec: XEP-0047 v2.0.1 (In-Band Bytestreams) section 2.1 (open errors:
 * service-unavailable / feature-not-implemented, resource-constraint, not-acceptable),
 * section 2.2 (data errors: item-not-found, unexpected-request, bad-request; delivery
 * errors recipient-unavailable / remote-server-timeout), section 2.3 (close:
 * item-not-found). Local conditions: `timeout` (no reply to an iq in time) and `closed`
 * (the stanza connection or the bytestream is gone).
 *
 * Messages never carry stream content.
 */

export const IBB_CONDITIONS = [
  "service-unavailable",
  "feature-not-implemented",
  "resource-constraint",
  "not-acceptable",
  "item-not-found",
  "unexpected-request",
  "bad-request",
  "recipient-unavailable",
  "remote-server-timeout",
  "timeout",
  "closed",
  "undefined-condition",
] as const;
export type IbbCondition = (typeof IBB_CONDITIONS)[number];

export function isIbbCondition(s: string): s is IbbCondition {
  return (IBB_CONDITIONS as readonly string[]).includes(s);
}

export class IbbError extends Error {
  override readonly name = "IbbError";
  constructor(
    readonly condition: IbbCondition,
    detail?: string,
    /** Whether the peer reported it (an error stanza) rather than we detecting it. */
    readonly remote = false,
  ) {
    super(detail === undefined ? condition : `${condition}: ${detail}`);
  }
}
