/**
 * The Jingle layer's one error class.
 *
 * Spec: XEP-0166 v1.1.2 section 9 (errors: out-of-order, tie-break, unknown-session,
 * unsupported-info, security-required in 'urn:xmpp:jingle:errors:1') and section 7.4
 * (reason conditions, which a failed session is terminated with). Local conditions:
 * `timeout` (no acknowledgement, or no answer from the responder, in time),
 * `remote-error` (the peer answered one of our requests with an error stanza; the XMPP
 * condition is in `stanzaCondition`), `bad-request` (malformed Jingle from the peer),
 * `closed` (the stanza connection is gone).
 */
import type { ReasonCondition } from "./codec.js";

export type JingleFailure = "timeout" | "remote-error" | "bad-request" | "closed" | "out-of-order" | "unknown-session";

export class JingleError extends Error {
  override readonly name = "JingleError";
  constructor(
    readonly condition: JingleFailure,
    detail?: string,
    readonly stanzaCondition?: string,
    /** The reason the session ended with, when one was sent or received. */
    readonly reason?: ReasonCondition,
  ) {
    super(detail === undefined ? condition : `${condition}: ${detail}`);
  }
}
