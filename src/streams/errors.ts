/**
 * The end-to-end XML stream layer's one error class; conditions are RFC 6120 stream
 * error conditions (section 4.9.3, namespace 'urn:ietf:params:xml:ns:xmpp-streams').
 *
 * Spec: RFC 6120 section 4.9 (stream errors are unrecoverable: the stream is closed),
 * 4.9.3.9 invalid-from, 4.9.3.10 invalid-namespace, 4.9.3.13 not-well-formed,
 * 4.9.3.14 policy-violation (stanza too large), 4.9.3.18 restricted-xml (comments,
 * processing instructions, DTDs: section 11.1), 4.9.3.20 unsupported-stanza-type;
 * local: `not-open` (send before the stream is up or after it closed: nothing is sent
 * unencrypted or after close), `closed` (the tunnel went away).
 */
export const STREAM_CONDITIONS = [
  "bad-format",
  "invalid-from",
  "invalid-namespace",
  "not-well-formed",
  "policy-violation",
  "restricted-xml",
  "unsupported-stanza-type",
  "undefined-condition",
  "not-open",
  "closed",
] as const;
export type StreamCondition = (typeof STREAM_CONDITIONS)[number];

export class StreamError extends Error {
  override readonly name = "StreamError";
  constructor(
    readonly condition: StreamCondition,
    detail?: string,
    /** The peer sent this condition in a <stream:error/>. */
    readonly remote = false,
  ) {
    super(detail === undefined ? condition : `${condition}: ${detail}`);
  }
}
