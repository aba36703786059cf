/**
 * The archive layer's error: one class with a typed condition and the XMPP stanza error
 * condition it maps to.
 *
 * Spec: XEP-0136 v1.3.1 sections 5.2 (not-acceptable: collection too large), 7.2 and 7.3
 * (item-not-found: no such collection), 6 (feature-not-implemented, not-allowed);
 * XEP-0049 v1.2 section 3 (not-acceptable / bad-format for private storage); RFC 6120
 * section 8.3.3 (forbidden, not-authorized, recipient-unavailable for the archive key
 * transfer between the user's devices, key-transfer.ts). Messages never contain key material, passphrases or archived content.
 */

export type ArchiveCondition =
  /** An archive element (XEP-0136 / XML Encryption) is malformed. */
  | "bad-format"
  /** Decryption or key unwrapping failed: wrong archive key, or tampered ciphertext. */
  | "decrypt-failed"
  /** The collection or key is not there. */
  | "not-found"
  /** No archive key is configured, or the data is wrapped for a key we do not hold. */
  | "no-key"
  /** The passphrase of an exported key is wrong (or the export was altered). */
  | "bad-passphrase"
  /** An algorithm or feature we do not implement. */
  | "unsupported"
  /** The server answered an archive request with an error, or did not answer. */
  | "server"
  /** Key transfer (key-transfer.ts): the holder device refused to send the archive key. */
  | "refused"
  /** Key transfer: the session with the other device is not authenticated (no SAS confirmed, key not verified). */
  | "not-authenticated"
  /** Key transfer: the other device did not answer in time. */
  | "timeout";

export type ArchiveStanzaCondition =
  | "bad-request"
  | "not-acceptable"
  | "item-not-found"
  | "feature-not-implemented"
  | "service-unavailable"
  | "forbidden"
  | "not-authorized"
  | "recipient-unavailable";

const MAP: Record<ArchiveCondition, ArchiveStanzaCondition> = {
  "bad-format": "bad-request",
  "decrypt-failed": "not-acceptable",
  "not-found": "item-not-found",
  "no-key": "not-acceptable",
  "bad-passphrase": "not-acceptable",
  unsupported: "feature-not-implemented",
  server: "service-unavailable",
  refused: "forbidden",
  "not-authenticated": "not-authorized",
  timeout: "recipient-unavailable",
};

export class ArchiveError extends Error {
  override readonly name = "ArchiveError";
  constructor(
    readonly condition: ArchiveCondition,
    detail?: string,
  ) {
    super(detail ? `${condition}: ${detail}` : condition);
  }
  get stanzaCondition(): ArchiveStanzaCondition {
    return MAP[this.condition];
  }
}
